//! `streamGenerateContent?alt=sse` streams as canonical frames.

use weir_model::{
    ContentBlock, Delta, Dialect, Frame, JsonStr, StopReason, StreamEvent, TextBlock,
    ThinkingBlock, ToolInput, ToolUseBlock, WireError,
};
use weir_sse::Event;
use weir_upstream::FrameDecoder;

use crate::response::{part_blocks, search_id, stop_reason, GResponse, Part, UsageMetadata};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
}

impl Open {
    fn index(self) -> u32 {
        match self {
            Open::Text(i) | Open::Thinking(i) => i,
        }
    }
}

/// Turns the SSE events of a Gemini stream into canonical frames, one event at a time.
///
/// Each event is a whole `GenerateContentResponse` holding the next parts. The first opens
/// the message. Text and thought parts extend an open text or thinking block while the
/// kind stays the same, and open a new block when it changes; a signature on a thought
/// part closes its block (one signature per block); each function call is a complete
/// tool-use block (start, its arguments in one `InputJson` delta, stop). The message ends
/// (`MessageDelta` with the stop reason and the last usage reported, then `MessageStop`)
/// when the body ends after a `finishReason` (or stays silent for
/// [`weir_upstream::COMPLETE_GRACE`] after one with usage): a stream has no terminator, and
/// relays (and Gemini itself in 2024) put `finishReason` on chunks that more parts follow.
/// A body that
/// ends before any `finishReason` was cut short: an error. An `{"error": ...}` event
/// becomes a [`StreamEvent::Error`] and ends the stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    open: Option<Open>,
    next_index: u32,
    response_id: String,
    model: String,
    calls: u32,
    /// Calls after the first are left out (see [`StreamDecoder::one_call_only`]).
    one_call: bool,
    stop: Option<StopReason>,
    /// The last `finishReason`, read into `stop` when the body ends (after every call).
    finish_reason: Option<String>,
    usage: Option<UsageMetadata>,
    done: bool,
    failed: bool,
    /// Signatures of later chunks of the open text block, carried once it closes.
    after_text: Vec<String>,
    /// Grounding with Google Search (the last chunk's), told when the message ends.
    grounding: Option<crate::grounding::Grounding>,
    /// The answer's text so far (where grounding's spans are found), and where the open
    /// text block's began in it.
    text: String,
    text_at: usize,
}

impl StreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// The model named in `MessageStart` when the stream names none (`modelVersion`).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The client asked for one tool call per turn (`parallel_tool_calls: false`), which
    /// Gemini has no switch for: calls after the first are left out (see
    /// [`crate::keep_one_call`]).
    pub fn one_call_only(mut self, one: bool) -> Self {
        self.one_call = one;
        self
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: &Event) -> Result<Frame, WireError> {
        let data = event.data().trim();
        let mut out = Vec::new();
        if data.is_empty() || self.done || self.failed {
            return Ok(Frame::from_events(out));
        }
        let mut chunk: GResponse<'_> =
            serde_json::from_str(data).map_err(|e| WireError::from_json("stream chunk", &e))?;
        if let Some(err) = chunk.error {
            let v: serde_json::Value = serde_json::from_str(err.get()).unwrap_or_default();
            self.close(&mut out);
            out.push(StreamEvent::Error(crate::error::from_value(200, &v)));
            self.failed = true;
            return Ok(Frame::from_events(out));
        }
        if !self.started {
            self.started = true;
            self.response_id = chunk.response_id.take().unwrap_or_default();
            if let Some(m) = chunk.model_version.take() {
                self.model = m;
            }
            out.push(StreamEvent::MessageStart {
                id: self.response_id.clone(),
                model: self.model.clone(),
                usage: chunk
                    .usage_metadata
                    .map(|u| u.input_usage())
                    .unwrap_or_default(),
            });
        }
        let has_usage = chunk.usage_metadata.is_some();
        if has_usage {
            self.usage = chunk.usage_metadata;
        }
        if let Some(cand) = chunk.take_candidate() {
            if let Some(g) = cand.grounding() {
                self.grounding = Some(g);
            }
            for p in cand.content.and_then(|c| c.parts).unwrap_or_default() {
                self.part(p, &mut out);
            }
            if let Some(f) = cand.finish_reason {
                // (A finish that is a failure fails the stream here.)
                self.stop = Some(stop_reason(&f, self.calls > 0)?);
                self.finish_reason = Some(f);
            }
        } else if chunk
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some())
        {
            self.stop = Some(StopReason::Refusal);
        }
        Ok(Frame::from_events(out))
    }

    /// The body ended: the message is completed if it finished and has not ended yet.
    pub fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        if self.done || self.failed {
            return Ok(None);
        }
        if !self.started {
            return Err(WireError::Malformed(
                "the stream ended before any response chunk".into(),
            ));
        }
        if self.stop.is_none() {
            return Err(WireError::Malformed(
                "the stream ended before the response finished (no finishReason)".into(),
            ));
        }
        let mut out = Vec::new();
        self.end(&mut out);
        Ok(Some(Frame::from_events(out)))
    }

    fn part(&mut self, p: Part<'_>, out: &mut Vec<StreamEvent>) {
        let d = part_blocks(p, &self.response_id, &mut self.calls);
        if self.one_call && self.calls > 1 && matches!(d.block, Some(ContentBlock::ToolUse(_))) {
            return;
        }
        // (A signature on an empty text part, as Gemini ends a turn, is taken as the text's:
        // the text stays open for what the answer's last chunk says of it, its grounding.)
        let extends_text = matches!(self.open, Some(Open::Text(_)))
            && matches!(d.block, Some(ContentBlock::Text(_)) | None);
        if let (Some(ContentBlock::Thinking(carrier)), true) = (&d.carrier, extends_text) {
            // A signature on a later chunk of the text under way: the text stays one block
            // (a client shows one message), and the signature follows it, written back as a
            // signature-only part after the text, as Gemini ends a turn.
            self.after_text.extend(carrier.signature.clone());
        } else if let Some(ContentBlock::Thinking(carrier)) = d.carrier {
            let i = self.open_block(out, ContentBlock::Thinking(ThinkingBlock::default()));
            if let Some(sig) = carrier.signature {
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::Signature(sig),
                });
            }
            out.push(StreamEvent::BlockStop { index: i });
        }
        match d.block {
            None => {}
            Some(ContentBlock::Text(t)) => {
                let i = self.ensure_open(out, Open::Text);
                self.text.push_str(&t.text.as_str());
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::Text(t.text),
                });
            }
            Some(ContentBlock::Thinking(t)) if t.thinking.is_empty() && t.signature.is_none() => {}
            Some(ContentBlock::Thinking(t)) => {
                let i = self.ensure_open(out, Open::Thinking);
                if !t.thinking.is_empty() {
                    out.push(StreamEvent::BlockDelta {
                        index: i,
                        delta: Delta::Thinking(t.thinking),
                    });
                }
                if let Some(sig) = t.signature {
                    out.push(StreamEvent::BlockDelta {
                        index: i,
                        delta: Delta::Signature(sig),
                    });
                    self.close(out);
                }
            }
            Some(ContentBlock::ToolUse(t)) => {
                let args = match &t.input {
                    ToolInput::Json(raw) => weir_model::wire::compact_json(raw.get()).into_owned(),
                    ToolInput::Arguments(s) => s.clone(),
                };
                let i = self.open_block(
                    out,
                    ContentBlock::ToolUse(ToolUseBlock {
                        input: ToolInput::Arguments(String::new()),
                        ..t
                    }),
                );
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::InputJson(JsonStr::new(&args)),
                });
                out.push(StreamEvent::BlockStop { index: i });
            }
            // Media arrive whole.
            Some(other) => {
                let i = self.open_block(out, other);
                out.push(StreamEvent::BlockStop { index: i });
            }
        }
    }

    /// Opens a block that is not extended by later parts (the caller closes it).
    fn open_block(&mut self, out: &mut Vec<StreamEvent>, block: ContentBlock) -> u32 {
        self.close(out);
        let i = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::BlockStart { index: i, block });
        i
    }

    fn ensure_open(&mut self, out: &mut Vec<StreamEvent>, kind: fn(u32) -> Open) -> u32 {
        if let Some(o) = self.open {
            if o == kind(o.index()) {
                return o.index();
            }
        }
        self.close(out);
        let i = self.next_index;
        self.next_index += 1;
        let o = kind(i);
        self.open = Some(o);
        self.text_at = self.text.len();
        out.push(StreamEvent::BlockStart {
            index: i,
            block: match o {
                Open::Text(_) => ContentBlock::Text(TextBlock::default()),
                Open::Thinking(_) => ContentBlock::Thinking(ThinkingBlock::default()),
            },
        });
        i
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(o) = self.open.take() {
            out.push(StreamEvent::BlockStop { index: o.index() });
        }
        for sig in std::mem::take(&mut self.after_text) {
            let i = self.next_index;
            self.next_index += 1;
            out.push(StreamEvent::BlockStart {
                index: i,
                block: ContentBlock::Thinking(ThinkingBlock::default()),
            });
            out.push(StreamEvent::BlockDelta {
                index: i,
                delta: Delta::Signature(sig),
            });
            out.push(StreamEvent::BlockStop { index: i });
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        // Grounding: the pages cited, for the text block still open, then the search
        // itself (see `grounding`).
        let grounding = self.grounding.take();
        if let (Some(g), Some(Open::Text(i))) = (&grounding, self.open) {
            for d in g.citation_deltas(&self.text, self.text_at) {
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::Unknown {
                        dialect: Dialect::Anthropic,
                        raw: weir_model::raw::to_raw(&d),
                    },
                });
            }
        }
        self.close(out);
        if let Some(g) = &grounding {
            let [call, result] = g.search_blocks(&search_id(&self.response_id), true);
            let i = self.open_block(out, call);
            out.push(StreamEvent::BlockDelta {
                index: i,
                delta: Delta::InputJson(JsonStr::new(&g.input().to_string())),
            });
            out.push(StreamEvent::BlockStop { index: i });
            let i = self.open_block(out, result);
            out.push(StreamEvent::BlockStop { index: i });
        }
        self.done = true;
        if let Some(f) = &self.finish_reason {
            // Calls that came after the finish make it a tool-use stop.
            if let Ok(stop) = stop_reason(f, self.calls > 0) {
                self.stop = Some(stop);
            }
        }
        let mut usage = self.usage.map(|u| u.usage()).unwrap_or_default();
        usage.web_search_requests = grounding.as_ref().map(|g| g.searches());
        out.push(StreamEvent::MessageDelta {
            stop_reason: self.stop.clone(),
            stop_sequence: None,
            usage,
        });
        out.push(StreamEvent::MessageStop);
    }
}

impl FrameDecoder for StreamDecoder {
    fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
        StreamDecoder::decode(self, &event)
    }

    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        StreamDecoder::finish(self)
    }

    /// A finish reason and usage came: the answer may be whole (Gemini ends its body right
    /// after; a body that lingers is ended after a grace).
    fn complete(&self) -> bool {
        self.stop.is_some() && self.usage.is_some() && !self.done && !self.failed
    }
}
