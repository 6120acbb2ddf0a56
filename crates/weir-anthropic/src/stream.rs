//! Anthropic Messages streams: SSE events to canonical frames, and back.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::{
    ApiError, ContentBlock, Delta, Dialect, Frame, JsonStr, SourceEvent, StopReason, StreamEvent,
    Usage, WireError,
};
use weir_sse::Event;

use crate::blocks::{ABlock, BlockOut, Out};
use crate::error::api_error_from_body;
use crate::response::{AUsage, ClientStopName, UsageOut};

/// Turns an upstream's Messages SSE events into canonical frames. Stateless: every
/// Anthropic event maps to at most one canonical event.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    _private: (),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    index: Option<u32>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    usage: Option<Box<RawValue>>,
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

fn usage(raw: Option<&RawValue>) -> Result<Usage, WireError> {
    match raw {
        Some(r) => Ok(json::<AUsage>("usage", r.get())?.0),
        None => Ok(Usage::default()),
    }
}

impl StreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
        let data = event.data();
        if let Some((index, delta)) = fast_delta(data) {
            return Ok(Frame {
                events: vec![StreamEvent::BlockDelta { index, delta }],
                source: Some(SourceEvent {
                    dialect: Dialect::Anthropic,
                    event,
                }),
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
                let msg = env
                    .message
                    .ok_or_else(|| WireError::Malformed("message_start without message".into()))?;
                let m: StartMessage = json("message_start", msg.get())?;
                StreamEvent::MessageStart {
                    id: m.id,
                    model: m.model,
                    usage: usage(m.usage.as_deref())?,
                }
            }
            "content_block_start" => {
                let b = env.content_block.ok_or_else(|| {
                    WireError::Malformed("content_block_start without content_block".into())
                })?;
                StreamEvent::BlockStart {
                    index: index()?,
                    block: json::<ABlock>("content_block", b.get())?.0,
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
                    usage: usage(env.usage)?,
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
        Ok(Frame {
            events: vec![ev],
            source: Some(SourceEvent {
                dialect: Dialect::Anthropic,
                event,
            }),
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

/// Writes canonical frames as a Messages SSE stream for an Anthropic client.
///
/// Frames that came from an Anthropic upstream are written exactly as received. Frames
/// from other dialects are translated event by event.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    empty: JsonStr,
}

impl StreamEncoder {
    /// An encoder for one stream.
    pub fn new() -> Self {
        StreamEncoder::default()
    }

    /// Appends the SSE bytes for `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(src) = &frame.source {
            if src.dialect == Dialect::Anthropic {
                return weir_sse::encode(&src.event, out)
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
        let (name, data) = match ev {
            StreamEvent::MessageStart { id, model, usage } => (
                "message_start",
                to_json(&MessageStartOut { id, model, usage })?,
            ),
            StreamEvent::BlockStart { index, block } => (
                "content_block_start",
                to_json(&BlockStartOut {
                    index: *index,
                    block,
                })?,
            ),
            StreamEvent::BlockDelta { index, delta } => {
                // The hot path: text arrives as a JSON token and is copied into a
                // pre-shaped event, no serializer involved.
                let (ty, key, tok) = match delta {
                    Delta::Text(t) => ("text_delta", "text", t),
                    Delta::InputJson(j) => ("input_json_delta", "partial_json", j),
                    Delta::Thinking(t) => ("thinking_delta", "thinking", t),
                    _ => ("", "", &self.empty),
                };
                if !ty.is_empty() {
                    out.extend_from_slice(
                        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
                    );
                    out.extend_from_slice(index.to_string().as_bytes());
                    out.extend_from_slice(b",\"delta\":{\"type\":\"");
                    out.extend_from_slice(ty.as_bytes());
                    out.extend_from_slice(b"\",\"");
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(b"\":");
                    out.extend_from_slice(tok.token().as_bytes());
                    out.extend_from_slice(b"}}\n\n");
                    return Ok(());
                }
                let Some(d) = DeltaOut::new(delta) else {
                    return Ok(());
                };
                (
                    "content_block_delta",
                    to_json(&IndexedOut {
                        ty: "content_block_delta",
                        index: *index,
                        delta: Some(d),
                    })?,
                )
            }
            StreamEvent::BlockStop { index } => (
                "content_block_stop",
                to_json(&IndexedOut::<DeltaOut<'_>> {
                    ty: "content_block_stop",
                    index: *index,
                    delta: None,
                })?,
            ),
            StreamEvent::MessageDelta {
                stop_reason,
                stop_sequence,
                usage,
            } => (
                "message_delta",
                to_json(&MessageDeltaOut {
                    stop_reason: stop_reason.as_ref(),
                    stop_sequence: stop_sequence.as_deref(),
                    usage,
                })?,
            ),
            StreamEvent::MessageStop => ("message_stop", r#"{"type":"message_stop"}"#.to_owned()),
            StreamEvent::Ping => ("ping", r#"{"type":"ping"}"#.to_owned()),
            StreamEvent::Error(e) => ("error", stream_error_json(e)),
            StreamEvent::Unknown { .. } => return Ok(()),
        };
        weir_sse::encode(&Event::new(data).with_event(name), out)
            .map_err(|e| WireError::Malformed(e.to_string()))
    }
}

/// The data of an `event: error` for a client.
pub(crate) fn stream_error_json(e: &ApiError) -> String {
    crate::error::error_json(e, None)
}

fn to_json<T: Serialize>(v: &T) -> Result<String, WireError> {
    serde_json::to_string(v).map_err(|e| WireError::Unsupported(e.to_string()))
}

struct MessageStartOut<'a> {
    id: &'a str,
    model: &'a str,
    usage: &'a Usage,
}

impl Serialize for MessageStartOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Msg<'a>(&'a MessageStartOut<'a>);
        impl Serialize for Msg<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("id", self.0.id)?;
                m.serialize_entry("type", "message")?;
                m.serialize_entry("role", "assistant")?;
                m.serialize_entry("model", self.0.model)?;
                m.serialize_entry("content", &[(); 0])?;
                m.serialize_entry("stop_reason", &())?;
                m.serialize_entry("stop_sequence", &())?;
                m.serialize_entry(
                    "usage",
                    &UsageOut {
                        usage: self.0.usage,
                        same: false,
                    },
                )?;
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "message_start")?;
        m.serialize_entry("message", &Msg(self))?;
        m.end()
    }
}

struct BlockStartOut<'a> {
    index: u32,
    block: &'a ContentBlock,
}

impl Serialize for BlockStartOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "content_block_start")?;
        m.serialize_entry("index", &self.index)?;
        match self.block {
            ContentBlock::Text(_) => {
                m.serialize_entry("content_block", &StartBlock::Text { text: "" })?
            }
            ContentBlock::Thinking(_) => m.serialize_entry(
                "content_block",
                &StartBlock::Thinking {
                    thinking: "",
                    signature: "",
                },
            )?,
            ContentBlock::ToolUse(t) => m.serialize_entry(
                "content_block",
                &StartBlock::ToolUse {
                    id: &t.id,
                    name: &t.name,
                    input: EmptyObject,
                },
            )?,
            other => {
                let out = Out { same: false };
                let b = BlockOut::new(other, out);
                m.serialize_entry("content_block", &b)
                    .map_err(|e| S::Error::custom(format_args!("content_block_start: {e}")))?
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

enum DeltaOut<'a> {
    Text(&'a JsonStr),
    Json(&'a JsonStr),
    Thinking(&'a JsonStr),
    Signature(&'a str),
}

impl<'a> DeltaOut<'a> {
    fn new(d: &'a Delta) -> Option<Self> {
        Some(match d {
            Delta::Text(t) => DeltaOut::Text(t),
            Delta::InputJson(j) => DeltaOut::Json(j),
            Delta::Thinking(t) => DeltaOut::Thinking(t),
            Delta::Signature(s) => DeltaOut::Signature(s),
            Delta::Unknown { .. } => return None,
        })
    }
}

impl Serialize for DeltaOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self {
            DeltaOut::Text(t) => {
                m.serialize_entry("type", "text_delta")?;
                m.serialize_entry("text", t)?;
            }
            DeltaOut::Json(j) => {
                m.serialize_entry("type", "input_json_delta")?;
                m.serialize_entry("partial_json", j)?;
            }
            DeltaOut::Thinking(t) => {
                m.serialize_entry("type", "thinking_delta")?;
                m.serialize_entry("thinking", t)?;
            }
            DeltaOut::Signature(sig) => {
                m.serialize_entry("type", "signature_delta")?;
                m.serialize_entry("signature", sig)?;
            }
        }
        m.end()
    }
}

struct IndexedOut<D> {
    ty: &'static str,
    index: u32,
    delta: Option<D>,
}

impl<D: Serialize> Serialize for IndexedOut<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.ty)?;
        m.serialize_entry("index", &self.index)?;
        if let Some(d) = &self.delta {
            m.serialize_entry("delta", d)?;
        }
        m.end()
    }
}

struct MessageDeltaOut<'a> {
    stop_reason: Option<&'a StopReason>,
    stop_sequence: Option<&'a str>,
    usage: &'a Usage,
}

impl Serialize for MessageDeltaOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct D<'a>(&'a MessageDeltaOut<'a>);
        impl Serialize for D<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry(
                    "stop_reason",
                    &self.0.stop_reason.map(|r| r.anthropic_name_for_client()),
                )?;
                m.serialize_entry("stop_sequence", &self.0.stop_sequence)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "message_delta")?;
        m.serialize_entry("delta", &D(self))?;
        m.serialize_entry(
            "usage",
            &UsageOut {
                usage: self.usage,
                same: false,
            },
        )?;
        m.end()
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
        for other in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","extra":1}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"bad \q escape"}}"#,
        ] {
            assert!(fast_delta(other).is_none(), "{other}");
        }
    }
}
