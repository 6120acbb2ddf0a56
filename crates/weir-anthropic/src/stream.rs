//! Anthropic Messages streams: SSE events to canonical frames, and back.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::{
    ContentBlock, Delta, Dialect, Frame, JsonStr, SourceEvent, StopReason, StreamEvent, Usage,
    WireError,
};
use weir_sse::Event;

use crate::blocks::ABlock;
use crate::error::api_error_from_body;
use crate::response::AUsage;
use crate::write::{block, delta_usage, usage as write_usage, BlockEdits, Out};
use weir_model::json_writer::JsonWriter;

/// Turns an upstream's Messages SSE events into canonical frames: every Anthropic event
/// maps to at most one canonical event. It remembers only how far the message got, so that
/// [`StreamDecoder::finish`] can tell a complete stream from one cut short.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// A `message_delta` with a stop reason arrived.
    stopped: bool,
    /// `message_stop` or an `error` event arrived: nothing more is owed.
    ended: bool,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    index: Option<u32>,
    // The fields only one kind of event has are decoded in the same pass (`message` in
    // `message_start`, `content_block` in `content_block_start`, `usage` in
    // `message_delta`); `delta` differs by event, so it is decoded once the type is known.
    message: Option<StartMessage>,
    content_block: Option<ABlock>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    usage: Option<AUsage>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    usage: Option<AUsage>,
}

#[derive(Deserialize)]
struct DeltaEnv<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    text: Option<JsonStr>,
    partial_json: Option<JsonStr>,
    thinking: Option<JsonStr>,
    signature: Option<String>,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

fn json<'a, T: Deserialize<'a>>(what: &str, s: &'a str) -> Result<T, WireError> {
    serde_json::from_str(s).map_err(|e| WireError::from_json(what, &e))
}

fn usage(u: Option<AUsage>) -> Usage {
    u.map(|u| u.0).unwrap_or_default()
}

impl StreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// The upstream's body ended. A stream must end with `message_stop` (or an `error`
    /// event); one that stopped (a `message_delta` with its stop reason) but lost its
    /// `message_stop` is completed here; any other is an error, so the client is told the
    /// answer was cut short instead of seeing the stream end as if it were whole.
    pub fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        if self.ended {
            return Ok(None);
        }
        self.ended = true;
        if self.stopped {
            return Ok(Some(Frame::from_events(vec![StreamEvent::MessageStop])));
        }
        Err(WireError::Malformed(
            "the stream ended before the message was complete (no message_stop)".to_owned(),
        ))
    }

    /// Reads an event the SSE reader relays by its shape (see
    /// `weir_upstream::FrameDecoder::relay`): the events the fast paths read in full,
    /// when the event's name agrees with its data's type. Anything else: `false`, nothing
    /// read.
    pub fn relay(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        let ev = match name {
            "content_block_delta" => match fast_delta(data) {
                Some((index, delta)) => StreamEvent::BlockDelta { index, delta },
                None => return false,
            },
            "content_block_start" => match fast_text_start(data) {
                Some(ev) => ev,
                None => return false,
            },
            "message_delta" => match fast_message_delta(data) {
                Some(ev) => ev,
                None => return false,
            },
            "content_block_stop" | "ping" | "message_stop" => match fast_bodiless(data) {
                Some(ev)
                    if matches!(
                        (name, &ev),
                        ("content_block_stop", StreamEvent::BlockStop { .. })
                            | ("ping", StreamEvent::Ping)
                            | ("message_stop", StreamEvent::MessageStop)
                    ) =>
                {
                    ev
                }
                _ => return false,
            },
            _ => return false,
        };
        self.note(&ev);
        out.push(ev);
        true
    }

    fn note(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::MessageDelta {
                stop_reason: Some(_),
                ..
            } => self.stopped = true,
            StreamEvent::MessageStop | StreamEvent::Error(_) => self.ended = true,
            _ => {}
        }
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
        let data = event.data();
        let fast = match fast_delta(data) {
            Some((index, delta)) => Some(StreamEvent::BlockDelta { index, delta }),
            None => fast_bodiless(data)
                .or_else(|| fast_text_start(data))
                .or_else(|| fast_message_delta(data)),
        };
        if let Some(ev) = fast {
            self.note(&ev);
            return Ok(Frame {
                events: vec![ev],
                source: Some(SourceEvent::new(Dialect::Anthropic, event)),
            });
        }
        let env: Envelope<'_> = json("stream event", data)?;
        let ty = env.ty.as_deref().unwrap_or(event.event_type());
        let index = || {
            env.index
                .ok_or_else(|| WireError::Malformed(format!("`{ty}` event without index")))
        };
        let ev = match ty {
            "message_start" => {
                let m = env
                    .message
                    .ok_or_else(|| WireError::Malformed("message_start without message".into()))?;
                StreamEvent::MessageStart {
                    id: m.id,
                    model: m.model,
                    usage: usage(m.usage),
                }
            }
            "content_block_start" => {
                let b = env.content_block.ok_or_else(|| {
                    WireError::Malformed("content_block_start without content_block".into())
                })?;
                StreamEvent::BlockStart {
                    index: index()?,
                    block: b.0,
                }
            }
            "content_block_delta" => {
                let d = env.delta.ok_or_else(|| {
                    WireError::Malformed("content_block_delta without delta".into())
                })?;
                let de: DeltaEnv<'_> = json("delta", d.get())?;
                let missing = |f: &str| WireError::Malformed(format!("{} without {f}", de.ty));
                let delta = match de.ty.as_ref() {
                    "text_delta" => Delta::Text(de.text.ok_or_else(|| missing("text"))?),
                    "input_json_delta" => Delta::InputJson(
                        de.partial_json
                            .clone()
                            .ok_or_else(|| missing("partial_json"))?,
                    ),
                    "thinking_delta" => {
                        Delta::Thinking(de.thinking.ok_or_else(|| missing("thinking"))?)
                    }
                    "signature_delta" => {
                        Delta::Signature(de.signature.ok_or_else(|| missing("signature"))?)
                    }
                    _ => Delta::Unknown {
                        dialect: Dialect::Anthropic,
                        raw: d.to_owned(),
                    },
                };
                StreamEvent::BlockDelta {
                    index: index()?,
                    delta,
                }
            }
            "content_block_stop" => StreamEvent::BlockStop { index: index()? },
            "message_delta" => {
                let body: MessageDeltaBody = match env.delta {
                    Some(d) => json("message_delta", d.get())?,
                    None => MessageDeltaBody {
                        stop_reason: None,
                        stop_sequence: None,
                    },
                };
                StreamEvent::MessageDelta {
                    stop_reason: body.stop_reason.map(|s| StopReason::from_anthropic(&s)),
                    stop_sequence: body.stop_sequence,
                    usage: usage(env.usage),
                }
            }
            "message_stop" => StreamEvent::MessageStop,
            "ping" => StreamEvent::Ping,
            "error" => {
                let body = env.error.map(RawValue::get).unwrap_or("{}");
                StreamEvent::Error(api_error_from_body(None, body))
            }
            other => StreamEvent::Unknown {
                event: other.to_owned(),
            },
        };
        self.note(&ev);
        Ok(Frame {
            events: vec![ev],
            source: Some(SourceEvent::new(Dialect::Anthropic, event)),
        })
    }
}

/// Most of a stream is `content_block_delta` events in exactly the shape Anthropic writes
/// them. Those are read without a JSON parser: the prefix is matched, the text token is
/// taken as it is (validated when it becomes a `JsonStr`), and the rest must be `}}`.
/// Anything else returns `None` and goes through the general decoder.
fn fast_delta(data: &str) -> Option<(u32, Delta)> {
    let rest = data.strip_prefix(r#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let index: u32 = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(r#","delta":{"type":""#)?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix(r#"text_delta","text":"#) {
        (0, r)
    } else if let Some(r) = rest.strip_prefix(r#"input_json_delta","partial_json":"#) {
        (1, r)
    } else if let Some(r) = rest.strip_prefix(r#"thinking_delta","thinking":"#) {
        (2, r)
    } else {
        return None;
    };
    let (token, tail) = weir_model::wire::split_string_token(rest)?;
    if tail.trim_end() != "}}" {
        return None;
    }
    let tok = JsonStr::from_token(token)?;
    Some((
        index,
        match kind {
            0 => Delta::Text(tok),
            1 => Delta::InputJson(tok),
            _ => Delta::Thinking(tok),
        },
    ))
}

/// The events that carry nothing but their type (and a block's index), in exactly the
/// shape Anthropic writes them: one per block and one per message, read without a parser.
fn fast_bodiless(data: &str) -> Option<StreamEvent> {
    let data = data.trim_end();
    match data {
        r#"{"type":"message_stop"}"# => return Some(StreamEvent::MessageStop),
        r#"{"type":"ping"}"# => return Some(StreamEvent::Ping),
        _ => {}
    }
    let digits = data
        .strip_prefix(r#"{"type":"content_block_stop","index":"#)?
        .strip_suffix('}')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(StreamEvent::BlockStop {
        index: digits.parse().ok()?,
    })
}

/// `data` without its object's closing brace and the spaces around it (Anthropic pads
/// some events with spaces before that brace).
fn unclosed(data: &str) -> Option<&str> {
    Some(data.trim_end().strip_suffix('}')?.trim_end())
}

/// A text block opening empty, in exactly the shape Anthropic writes it (every text block
/// of every stream opens this way).
fn fast_text_start(data: &str) -> Option<StreamEvent> {
    let rest = unclosed(data)?
        .strip_prefix(r#"{"type":"content_block_start","index":"#)?
        .strip_suffix(r#","content_block":{"type":"text","text":""}"#)?;
    Some(StreamEvent::BlockStart {
        index: digits(rest)?,
        block: ContentBlock::Text(weir_model::TextBlock::new(JsonStr::default())),
    })
}

/// `message_delta` in the shape Anthropic writes it: a stop reason, a `null` stop
/// sequence, and usage made only of the token counts the decoder names, each an integer.
/// Any other shape (a matched stop sequence, server tool use, context management, a
/// `null` count) goes through the general decoder.
fn fast_message_delta(data: &str) -> Option<StreamEvent> {
    let rest =
        unclosed(data)?.strip_prefix(r#"{"type":"message_delta","delta":{"stop_reason":""#)?;
    let (reason, rest) = rest.split_once('"')?;
    if !reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let mut fields = rest
        .strip_prefix(r#","stop_sequence":null},"usage":{"#)?
        .strip_suffix('}')?;
    let mut usage = Usage::default();
    while !fields.is_empty() {
        let (key, rest) = fields.strip_prefix('"')?.split_once("\":")?;
        let end = rest.find(',').unwrap_or(rest.len());
        let n = Some(digits(&rest[..end])?.into());
        let slot = match key {
            "input_tokens" => &mut usage.input_tokens,
            "output_tokens" => &mut usage.output_tokens,
            "cache_read_input_tokens" => &mut usage.cache_read_tokens,
            "cache_creation_input_tokens" => &mut usage.cache_write_tokens,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = n;
        fields = rest[end..].strip_prefix(',').unwrap_or("");
        if end < rest.len() && fields.is_empty() {
            return None;
        }
    }
    Some(StreamEvent::MessageDelta {
        stop_reason: Some(StopReason::from_anthropic(reason)),
        stop_sequence: None,
        usage,
    })
}

/// A non-negative decimal that fits a u32, written without sign or leading zeros.
fn digits(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    s.parse().ok()
}

/// Writes canonical frames as a Messages SSE stream for an Anthropic client.
///
/// Frames that came from an Anthropic upstream are written exactly as received. Frames
/// from other dialects are translated event by event, written directly as bytes (text
/// arrives as JSON tokens and is copied).
#[derive(Debug, Default)]
pub struct StreamEncoder {
    empty: JsonStr,
    /// A tool-use block was started: the message's stop is then a tool-use one.
    called: bool,
    /// The gateway's request id, put on the error events the gateway itself makes (as on
    /// its error bodies).
    request_id: Option<String>,
}

impl StreamEncoder {
    /// An encoder for one stream.
    pub fn new() -> Self {
        StreamEncoder::default()
    }

    /// An encoder whose own error events carry `request_id`.
    pub fn with_request_id(request_id: String) -> Self {
        StreamEncoder {
            request_id: Some(request_id),
            ..StreamEncoder::default()
        }
    }

    /// Appends the SSE bytes for `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(src) = &frame.source {
            if src.dialect == Dialect::Anthropic {
                return src
                    .write(out)
                    .map_err(|e| WireError::Malformed(e.to_string()));
            }
        }
        for ev in &frame.events {
            self.encode_event(ev, out)?;
        }
        Ok(())
    }

    /// Appends the SSE bytes for one canonical event (nothing for events Anthropic clients
    /// cannot receive).
    pub fn encode_event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) -> Result<(), WireError> {
        // The hot path, most of any stream: text deltas go straight into the output.
        if let StreamEvent::BlockDelta { index, delta } = ev {
            let (ty, key, tok) = match delta {
                Delta::Text(t) => ("text_delta", "text", t),
                Delta::InputJson(j) => ("input_json_delta", "partial_json", j),
                Delta::Thinking(t) => ("thinking_delta", "thinking", t),
                Delta::Signature(_) | Delta::Unknown { .. } => ("", "", &self.empty),
            };
            if !ty.is_empty() {
                out.extend_from_slice(
                    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
                );
                out.extend_from_slice(itoa::Buffer::new().format(*index).as_bytes());
                out.extend_from_slice(b",\"delta\":{\"type\":\"");
                out.extend_from_slice(ty.as_bytes());
                out.extend_from_slice(b"\",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                out.extend_from_slice(tok.token().as_bytes());
                out.extend_from_slice(b"}}\n\n");
                return Ok(());
            }
        }
        let mut w = JsonWriter::with_capacity(128);
        let name = match ev {
            StreamEvent::MessageStart {
                id,
                model,
                usage: u,
            } => {
                w.begin_object();
                w.key("type");
                w.raw("\"message_start\"");
                w.key("message");
                w.begin_object();
                w.key("id");
                if id.is_empty() {
                    // An upstream that gave none (Bedrock Converse, some Gemini answers).
                    w.string(&weir_model::generated_id("msg_"));
                } else {
                    w.string(id);
                }
                w.raw_fields(r#""type":"message","role":"assistant""#);
                w.key("model");
                w.string(model);
                w.raw_fields(r#""content":[],"stop_reason":null,"stop_sequence":null"#);
                w.key("usage");
                write_usage(&mut w, u, false);
                w.end_object();
                w.end_object();
                "message_start"
            }
            StreamEvent::BlockStart { index, block: b } => {
                self.called |= matches!(b, ContentBlock::ToolUse(_));
                w.begin_object();
                w.key("type");
                w.raw("\"content_block_start\"");
                w.key("index");
                w.u64(u64::from(*index));
                w.key("content_block");
                match b {
                    ContentBlock::Text(_) => w.raw(r#"{"type":"text","text":""}"#),
                    ContentBlock::Thinking(_) => {
                        w.raw(r#"{"type":"thinking","thinking":"","signature":""}"#)
                    }
                    ContentBlock::ToolUse(t) => {
                        w.begin_object();
                        w.key("type");
                        w.raw("\"tool_use\"");
                        w.key("id");
                        w.string(&t.id);
                        w.key("name");
                        w.string(&t.name);
                        w.key("input");
                        w.raw("{}");
                        w.end_object();
                    }
                    other => block(
                        &mut w,
                        other,
                        Out {
                            same: false,
                            answer: true,
                        },
                        BlockEdits::default(),
                    )
                    .map_err(|e| WireError::Unsupported(format!("content_block_start: {e}")))?,
                }
                w.end_object();
                "content_block_start"
            }
            StreamEvent::BlockDelta { index, delta } => {
                w.begin_object();
                w.key("type");
                w.raw("\"content_block_delta\"");
                w.key("index");
                w.u64(u64::from(*index));
                w.key("delta");
                w.begin_object();
                match delta {
                    Delta::Signature(sig) => {
                        w.key("type");
                        w.raw("\"signature_delta\"");
                        w.key("signature");
                        w.string(sig);
                    }
                    // Another upstream's citation made in Anthropic's shape (Gemini's
                    // grounding with Google Search).
                    Delta::Unknown {
                        dialect: Dialect::Anthropic,
                        raw,
                    } => {
                        w.raw_fields(&raw.get()[1..raw.get().len() - 1]);
                    }
                    // Text deltas took the hot path above.
                    _ => return Ok(()),
                }
                w.end_object();
                w.end_object();
                "content_block_delta"
            }
            StreamEvent::BlockStop { index } => {
                w.begin_object();
                w.key("type");
                w.raw("\"content_block_stop\"");
                w.key("index");
                w.u64(u64::from(*index));
                w.end_object();
                "content_block_stop"
            }
            StreamEvent::MessageDelta {
                stop_reason,
                stop_sequence,
                usage: u,
            } => {
                w.begin_object();
                w.key("type");
                w.raw("\"message_delta\"");
                w.key("delta");
                w.begin_object();
                w.key("stop_reason");
                // (Another dialect's stream: tool calls are a tool-use stop whatever the
                // upstream said, and a missing reason is the turn's end.)
                w.string(match stop_reason {
                    None | Some(StopReason::EndTurn) if self.called => "tool_use",
                    None => "end_turn",
                    Some(r) => r.anthropic_client_name(),
                });
                w.key("stop_sequence");
                match stop_sequence {
                    Some(s) => w.string(s),
                    None => w.null(),
                }
                w.end_object();
                w.key("usage");
                delta_usage(&mut w, u);
                w.end_object();
                "message_delta"
            }
            StreamEvent::MessageStop => {
                w.raw(r#"{"type":"message_stop"}"#);
                "message_stop"
            }
            StreamEvent::Ping => {
                w.raw(r#"{"type":"ping"}"#);
                "ping"
            }
            StreamEvent::Error(e) => {
                // An upstream's error is its own; the gateway's says which request it was.
                let id = self.request_id.as_deref().filter(|_| e.dialect.is_none());
                w.raw(&crate::error::error_json(e, id));
                "error"
            }
            StreamEvent::Unknown { .. } => return Ok(()),
        };
        // Compact JSON holds no raw newline: one `data:` line.
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(w.as_bytes());
        out.extend_from_slice(b"\n\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(data: &str) -> String {
        let f = StreamDecoder::new().decode(Event::new(data)).unwrap();
        format!("{:?}", f.events)
    }

    #[test]
    fn fast_delta_path_agrees_with_the_general_decoder() {
        let cases = [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"there\"\n\u00e9"}}"#,
            r#"{"type":"content_block_delta","index":12,"delta":{"type":"input_json_delta","partial_json":"{\"a\": "}}   "#,
            r#"{"type":"content_block_delta","index":3,"delta":{"type":"thinking_delta","thinking":""}}"#,
        ];
        for data in cases {
            assert!(fast_delta(data).is_some(), "{data}");
            // A space after the first brace defeats the fast path's exact prefix match.
            let general = data.replacen('{', "{ ", 1);
            assert!(fast_delta(&general).is_none());
            assert_eq!(events(data), events(&general), "{data}");
        }
        for data in [
            r#"{"type":"message_stop"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_stop","index":17}  "#,
        ] {
            assert!(fast_bodiless(data).is_some(), "{data}");
            let general = data.replacen('{', "{ ", 1);
            assert!(fast_bodiless(&general).is_none());
            assert_eq!(events(data), events(&general), "{data}");
        }
        for data in [
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_start","index":10,"content_block":{"type":"text","text":""}}  "#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}      }"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":124}    }"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":4096,"output_tokens":130}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{}}"#,
        ] {
            let fast = fast_text_start(data).or_else(|| fast_message_delta(data));
            assert!(fast.is_some(), "{data}");
            let general = data.replacen('{', "{ ", 1);
            assert!(fast_text_start(&general).is_none() && fast_message_delta(&general).is_none());
            assert_eq!(events(data), events(&general), "{data}");
        }
        for other in [
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"x"}}"#,
            r#"{"type":"content_block_start","index":01,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"END"},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":null}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9,}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9,"output_tokens":9}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":09}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9,"server_tool_use":{"web_search_requests":1}}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end\u005fturn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}},"context_management":{}}"#,
        ] {
            assert!(fast_text_start(other).is_none(), "{other}");
            assert!(fast_message_delta(other).is_none(), "{other}");
        }
        for other in [
            r#"{"type":"content_block_stop","index":}"#,
            r#"{"type":"content_block_stop","index":1,"x":2}"#,
            r#"{"type":"content_block_stop","index":-1}"#,
            r#"{"type":"content_block_stop","index":99999999999}"#,
            r#"{"type":"message_stop","x":1}"#,
        ] {
            assert!(fast_bodiless(other).is_none(), "{other}");
        }
        for other in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","extra":1}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"bad \q escape"}}"#,
        ] {
            assert!(fast_delta(other).is_none(), "{other}");
        }
    }
}
