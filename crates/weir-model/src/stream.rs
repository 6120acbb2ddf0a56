//! Canonical stream events.
//!
//! The event shape follows Anthropic's, the richest of the dialects: a message opens,
//! blocks open, receive deltas and close, the message reports its stop reason and usage,
//! and closes. Other dialects' decoders are state machines that produce this sequence
//! (OpenAI tool calls keyed by `index` become blocks); their encoders are the mirror.

use crate::content::ContentBlock;
use crate::error::ApiError;
use crate::json_str::JsonStr;
use crate::raw::{Dialect, RawJson};
use crate::response::{StopReason, Usage};

/// One canonical stream event.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// The response begins.
    MessageStart {
        /// Response id.
        id: String,
        /// Model that answers.
        model: String,
        /// Usage known at the start (Anthropic reports input tokens here).
        usage: Usage,
    },
    /// A content block opens. Text blocks open empty; tool-use blocks carry id and name
    /// with empty input, which arrives as [`Delta::InputJson`] fragments.
    BlockStart {
        /// Block index, from 0, in the order blocks open.
        index: u32,
        /// The block as it opens.
        block: ContentBlock,
    },
    /// More of an open block.
    BlockDelta {
        /// Block index.
        index: u32,
        /// The increment.
        delta: Delta,
    },
    /// A block is complete.
    BlockStop {
        /// Block index.
        index: u32,
    },
    /// The stop reason and final usage (cumulative for what the upstream reports here:
    /// Anthropic reports input tokens only in [`StreamEvent::MessageStart`]; fold both with
    /// [`Usage::merge`](crate::Usage::merge)).
    MessageDelta {
        /// Why generation stopped.
        stop_reason: Option<StopReason>,
        /// The stop sequence that matched.
        stop_sequence: Option<String>,
        /// Usage so far.
        usage: Usage,
    },
    /// The response is complete.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// The upstream failed after the stream began.
    Error(ApiError),
    /// An event the decoder does not model; only its own dialect can carry it.
    Unknown {
        /// The SSE event name.
        event: String,
    },
}

impl StreamEvent {
    /// Whether this event carries content a client would see (the point after which a
    /// stream can no longer move to another target): any delta, or a block that opens
    /// with something in it (a tool call's id and name, a non-empty text). An empty text
    /// or thinking block opening is not yet content: upstreams send one before failing.
    pub fn is_content(&self) -> bool {
        match self {
            StreamEvent::BlockDelta { .. } => true,
            StreamEvent::BlockStart { block, .. } => match block {
                crate::content::ContentBlock::Text(t) => !t.text.is_empty(),
                crate::content::ContentBlock::Thinking(t) => !t.thinking.is_empty(),
                _ => true,
            },
            _ => false,
        }
    }
}

/// An increment to an open block.
#[derive(Clone, Debug)]
pub enum Delta {
    /// Text.
    Text(JsonStr),
    /// A fragment of a tool call's JSON arguments (fragments concatenate; any single one
    /// may be invalid JSON on its own).
    InputJson(JsonStr),
    /// Reasoning text.
    Thinking(JsonStr),
    /// The thinking block's signature (arrives just before the block stops).
    Signature(String),
    /// A delta type the decoder does not model (citations, ...), verbatim.
    Unknown {
        /// Source dialect.
        dialect: Dialect,
        /// The whole delta object.
        raw: RawJson,
    },
}

/// The SSE event an upstream sent, kept so a client of the same dialect receives exactly it.
#[derive(Clone, Debug)]
pub struct SourceEvent {
    /// The upstream's dialect.
    pub dialect: Dialect,
    /// The event as received (moved here, not copied). Empty when `wire` holds the events.
    pub event: weir_sse::Event,
    /// Relayed events: the SSE bytes of one or more events exactly as the upstream sent
    /// them, which the reader recognised by their shape without decoding their framing
    /// (see [`SourceEvent::relayed`]). An encoder of the same dialect writes these bytes.
    pub wire: Option<Vec<u8>>,
}

impl SourceEvent {
    /// A decoded event.
    pub fn new(dialect: Dialect, event: weir_sse::Event) -> Self {
        SourceEvent {
            dialect,
            event,
            wire: None,
        }
    }

    /// Relayed events, as they came on the wire.
    pub fn relayed(dialect: Dialect, wire: Vec<u8>) -> Self {
        SourceEvent {
            dialect,
            event: weir_sse::Event::new(String::new()),
            wire: Some(wire),
        }
    }

    /// Appends the source's SSE bytes to `out`: the wire bytes of relayed events, or the
    /// decoded event written again.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), weir_sse::EncodeError> {
        match &self.wire {
            Some(w) => {
                out.extend_from_slice(w);
                Ok(())
            }
            None => weir_sse::encode(&self.event, out),
        }
    }
}

/// What one upstream SSE event turned into.
///
/// `events` is the canonical reading (possibly empty, possibly several: one OpenAI chunk
/// can open a block and fill it). `source` is the original event: an encoder of the same
/// dialect writes it verbatim, which is how same-dialect streams stay lossless without
/// re-serializing anything; encoders of other dialects translate `events`.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// Canonical events.
    pub events: Vec<StreamEvent>,
    /// The upstream event, when the frame came from an upstream.
    pub source: Option<SourceEvent>,
}

impl Frame {
    /// Bytes of the upstream event this frame holds (its data and relayed bytes), to
    /// bound what is held in memory.
    pub fn source_bytes(&self) -> usize {
        self.source.as_ref().map_or(0, |s| {
            s.event.data().len() + s.wire.as_ref().map_or(0, Vec::len)
        })
    }

    /// A frame built in code, without a source event.
    pub fn from_events(events: Vec<StreamEvent>) -> Self {
        Frame {
            events,
            source: None,
        }
    }

    /// Whether any event carries content.
    pub fn has_content(&self) -> bool {
        self.events.iter().any(StreamEvent::is_content)
    }
}
