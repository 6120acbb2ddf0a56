//! Chat Completions streams: chunks to canonical frames (a state machine that opens and
//! closes blocks the way Anthropic streams do), and canonical frames back to chunks.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::{
    ContentBlock, Delta, Dialect, Frame, JsonStr, SourceEvent, StopReason, StreamEvent, TextBlock,
    ThinkingBlock, ToolInput, ToolUseBlock, Usage, WireError,
};
use weir_sse::Event;

use crate::error::{api_error_from_value, openai_error_body};
use crate::response::{now_secs, OUsage, UsageOut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    Tool(u32),
}

impl Open {
    fn index(self) -> u32 {
        match self {
            Open::Text(i) | Open::Thinking(i) | Open::Tool(i) => i,
        }
    }
}

/// Turns an upstream's Chat Completions SSE events into canonical frames.
///
/// Blocks open when their first fragment arrives and close when another kind of content
/// starts or the choice finishes. The stop reason and usage go out together as one
/// `MessageDelta`: when the upstream sends usage in a separate final chunk (as it does
/// with `include_usage`), the delta waits for it, or for `[DONE]`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    open: Option<Open>,
    next_index: u32,
    /// OpenAI tool-call index -> canonical block index.
    tools: Vec<(u32, u32)>,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    delta_sent: bool,
    done: bool,
    /// An error event ended the stream.
    failed: bool,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default, borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    x_groq: Option<XGroq<'a>>,
}

#[derive(Deserialize)]
struct XGroq<'a> {
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    delta: Option<ChunkDelta<'a>>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    content: Option<JsonStr>,
    reasoning_content: Option<JsonStr>,
    /// Groq, OpenRouter and Ollama name it `reasoning`.
    reasoning: Option<JsonStr>,
    refusal: Option<JsonStr>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    #[serde(borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    name: Option<String>,
    arguments: Option<JsonStr>,
    #[serde(skip)]
    _borrow: std::marker::PhantomData<&'a ()>,
}

impl StreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
        let data = event.data();
        let mut events = Vec::new();
        if data.trim_end() == "[DONE]" {
            self.finish_into(&mut events);
        } else {
            let chunk: Chunk<'_> =
                serde_json::from_str(data).map_err(|e| WireError::from_json("stream chunk", &e))?;
            self.chunk(chunk, &mut events)?;
        }
        Ok(Frame {
            events,
            source: Some(SourceEvent {
                dialect: Dialect::OpenAi,
                event,
            }),
        })
    }

    /// The stream ended without `[DONE]`. If the choice had finished, the message is
    /// completed; otherwise the stream was cut short and that is an error.
    pub fn finish(&mut self) -> Result<Frame, WireError> {
        let mut events = Vec::new();
        if self.done || self.failed || !self.started {
            return Ok(Frame::from_events(events));
        }
        if self.stop.is_none() && !self.delta_sent {
            return Err(WireError::Malformed(
                "stream ended before the response finished".into(),
            ));
        }
        self.finish_into(&mut events);
        Ok(Frame::from_events(events))
    }

    fn chunk(&mut self, c: Chunk<'_>, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if let Some(err) = c.error {
            let v: serde_json::Value = serde_json::from_str(err.get()).unwrap_or_default();
            out.push(StreamEvent::Error(api_error_from_value(None, &v)));
            self.failed = true;
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                id: c.id.clone(),
                model: c.model.clone(),
                usage: Usage::default(),
            });
        }
        for choice in c.choices.unwrap_or_default() {
            if choice.index != 0 {
                // Canonical streams carry one choice; `n > 1` streams are only passed
                // through to OpenAI clients (via the frame's source).
                continue;
            }
            if let Some(d) = choice.delta {
                if let Some(r) = d
                    .reasoning_content
                    .or(d.reasoning)
                    .filter(|s| !s.is_empty())
                {
                    let i = self.ensure_open(out, Open::Thinking, || {
                        ContentBlock::Thinking(ThinkingBlock::default())
                    });
                    out.push(StreamEvent::BlockDelta {
                        index: i,
                        delta: Delta::Thinking(r),
                    });
                }
                for text in [d.content, d.refusal]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                {
                    let i = self
                        .ensure_open(out, Open::Text, || ContentBlock::Text(TextBlock::default()));
                    out.push(StreamEvent::BlockDelta {
                        index: i,
                        delta: Delta::Text(text),
                    });
                }
                for tc in d.tool_calls.unwrap_or_default() {
                    self.tool_delta(tc, out);
                }
            }
            if let Some(fr) = choice.finish_reason {
                self.close(out);
                self.stop = Some(StopReason::from_openai(&fr));
            }
        }
        let usage = c
            .usage
            .or(c.x_groq.and_then(|x| x.usage))
            .filter(|u| u.get() != "null");
        if let Some(u) = usage {
            let u: OUsage =
                serde_json::from_str(u.get()).map_err(|e| WireError::from_json("usage", &e))?;
            self.usage = Some(u.0);
        }
        if self.stop.is_some() && self.usage.is_some() && !self.delta_sent {
            self.message_delta(out);
        }
        Ok(())
    }

    fn tool_delta(&mut self, tc: ToolCallDelta<'_>, out: &mut Vec<StreamEvent>) {
        let known = self
            .tools
            .iter()
            .find(|(oi, _)| *oi == tc.index)
            .map(|(_, bi)| *bi);
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let index = match known {
            Some(bi) => bi,
            None => {
                self.close(out);
                let bi = self.next_index;
                self.next_index += 1;
                self.tools.push((tc.index, bi));
                self.open = Some(Open::Tool(bi));
                // Some compatible servers omit ids; synthesize a stable one.
                let id = tc.id.unwrap_or_else(|| format!("call_{bi}"));
                out.push(StreamEvent::BlockStart {
                    index: bi,
                    block: ContentBlock::ToolUse(ToolUseBlock {
                        id,
                        name: name.unwrap_or_default(),
                        input: ToolInput::Arguments(String::new()),
                        cache_control: None,
                        extra: weir_model::Extra::new(),
                    }),
                });
                bi
            }
        };
        if let Some(a) = args.filter(|a| !a.is_empty()) {
            out.push(StreamEvent::BlockDelta {
                index,
                delta: Delta::InputJson(a),
            });
        }
    }

    fn ensure_open(
        &mut self,
        out: &mut Vec<StreamEvent>,
        kind: impl Fn(u32) -> Open,
        block: impl FnOnce() -> ContentBlock,
    ) -> u32 {
        if let Some(o) = self.open {
            if o == kind(o.index()) {
                return o.index();
            }
        }
        self.close(out);
        let i = self.next_index;
        self.next_index += 1;
        self.open = Some(kind(i));
        out.push(StreamEvent::BlockStart {
            index: i,
            block: block(),
        });
        i
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(o) = self.open.take() {
            out.push(StreamEvent::BlockStop { index: o.index() });
        }
    }

    fn message_delta(&mut self, out: &mut Vec<StreamEvent>) {
        self.delta_sent = true;
        out.push(StreamEvent::MessageDelta {
            stop_reason: self.stop.clone(),
            stop_sequence: None,
            usage: self.usage.clone().unwrap_or_default(),
        });
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.started {
            return;
        }
        self.close(out);
        if !self.delta_sent {
            self.message_delta(out);
        }
        out.push(StreamEvent::MessageStop);
    }
}

/// Options for writing a stream to an OpenAI client.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamEncodeOptions {
    /// The client asked for `stream_options.include_usage`: end with a usage chunk.
    pub include_usage: bool,
    /// `created` for every chunk (unix seconds); the current time when `None`.
    pub created: Option<u64>,
}

/// Writes canonical frames as a Chat Completions SSE stream for an OpenAI client.
///
/// Frames that came from an OpenAI upstream are written as received. Frames from other
/// dialects become chunks: the role in the first, tool id and name in each call's first
/// fragment, the finish reason in its own chunk, a `choices: []` usage chunk if asked,
/// and `[DONE]`.
#[derive(Debug)]
pub struct StreamEncoder {
    opts: StreamEncodeOptions,
    id: String,
    model: String,
    created: u64,
    /// Canonical block index -> (OpenAI tool-call index, whether arguments were sent).
    tools: Vec<(u32, u32, bool)>,
    usage: Usage,
    done: bool,
    empty: JsonStr,
    empty_object: JsonStr,
}

impl StreamEncoder {
    /// An encoder for one stream.
    pub fn new(opts: StreamEncodeOptions) -> Self {
        let created = opts.created.unwrap_or_else(now_secs);
        StreamEncoder {
            opts,
            id: String::new(),
            model: String::new(),
            created,
            tools: Vec::new(),
            usage: Usage::default(),
            done: false,
            empty: JsonStr::empty(),
            empty_object: JsonStr::new("{}"),
        }
    }

    /// Appends the SSE bytes for `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(src) = &frame.source {
            if src.dialect == Dialect::OpenAi {
                return weir_sse::encode(&src.event, out)
                    .map_err(|e| WireError::Malformed(e.to_string()));
            }
        }
        for ev in &frame.events {
            self.encode_event(ev, out)?;
        }
        Ok(())
    }

    fn chunk(
        &self,
        delta: DeltaOut<'_>,
        finish: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let c = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[ChoiceOut {
                index: 0,
                delta,
                logprobs: (),
                finish_reason: finish,
            }],
            usage: None,
        };
        data_json(&c, out)
    }

    /// Appends the SSE bytes for one canonical event.
    pub fn encode_event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) -> Result<(), WireError> {
        match ev {
            StreamEvent::MessageStart { id, model, usage } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.usage.merge(usage);
                let d = DeltaOut {
                    role: Some("assistant"),
                    content: Some(&self.empty),
                    ..DeltaOut::default()
                };
                self.chunk(d, None, out)?;
            }
            StreamEvent::BlockStart { index, block } => {
                if let ContentBlock::ToolUse(t) = block {
                    let ti = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.push((*index, ti, false));
                    let call = ToolCallOut {
                        index: ti,
                        id: Some(&t.id),
                        ty: Some("function"),
                        function: FunctionOut {
                            name: Some(&t.name),
                            arguments: &self.empty,
                        },
                    };
                    self.chunk(DeltaOut::tool(call), None, out)?;
                }
            }
            StreamEvent::BlockDelta { index, delta } => match delta {
                Delta::Text(t) => {
                    let d = DeltaOut {
                        content: Some(t),
                        ..DeltaOut::default()
                    };
                    self.chunk(d, None, out)?;
                }
                Delta::Thinking(t) => {
                    let d = DeltaOut {
                        reasoning_content: Some(t),
                        ..DeltaOut::default()
                    };
                    self.chunk(d, None, out)?;
                }
                Delta::InputJson(j) if !j.is_empty() => {
                    if let Some(t) = self.tools.iter_mut().find(|t| t.0 == *index) {
                        t.2 = true;
                        let ti = t.1;
                        self.chunk(DeltaOut::tool(ToolCallOut::arguments(ti, j)), None, out)?;
                    }
                }
                _ => {}
            },
            StreamEvent::BlockStop { index } => {
                // A tool called without arguments streams only `partial_json: ""`; OpenAI
                // clients parse the concatenated arguments, so they must get `{}`.
                if let Some(&(_, ti, false)) = self.tools.iter().find(|t| t.0 == *index) {
                    self.chunk(
                        DeltaOut::tool(ToolCallOut::arguments(ti, &self.empty_object)),
                        None,
                        out,
                    )?;
                }
            }
            StreamEvent::MessageDelta {
                stop_reason, usage, ..
            } => {
                self.usage.merge(usage);
                let finish = stop_reason.as_ref().map_or("stop", |r| r.openai_name());
                self.chunk(DeltaOut::default(), Some(finish), out)?;
            }
            StreamEvent::MessageStop => self.done_into(out)?,
            StreamEvent::Error(e) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&openai_error_body(e));
                out.extend_from_slice(b"\n\n");
            }
            StreamEvent::Ping | StreamEvent::Unknown { .. } => {}
        }
        Ok(())
    }

    fn done_into(&mut self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if self.opts.include_usage {
            let c = ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(UsageOut {
                    usage: &self.usage,
                    same: false,
                }),
            };
            data_json(&c, out)?;
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Ok(())
    }
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceOut<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut<'a>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a JsonStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a JsonStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

impl<'a> DeltaOut<'a> {
    fn tool(call: ToolCallOut<'a>) -> Self {
        DeltaOut {
            tool_calls: Some([call]),
            ..DeltaOut::default()
        }
    }
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    ty: Option<&'a str>,
    function: FunctionOut<'a>,
}

impl<'a> ToolCallOut<'a> {
    fn arguments(index: u32, arguments: &'a JsonStr) -> Self {
        ToolCallOut {
            index,
            id: None,
            ty: None,
            function: FunctionOut {
                name: None,
                arguments,
            },
        }
    }
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a JsonStr,
}

/// Writes a JSON value as one SSE `data:` line: serialized JSON holds no raw newline,
/// so it needs no splitting.
fn data_json<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, v).map_err(|e| WireError::Unsupported(e.to_string()))?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}
