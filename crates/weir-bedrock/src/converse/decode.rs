//! Converse answers in canonical form: whole responses, and ConverseStream events as a
//! state machine producing the canonical event sequence.
//!
//! ConverseStream differs from Anthropic's stream in ways the machine absorbs: text and
//! reasoning blocks may start without a `contentBlockStart` (they open on their first
//! non-empty delta; a block that never had content is left out), there are no ids, and
//! the stop reason (`messageStop`) comes before the usage (`metadata`): the canonical
//! `MessageDelta` + `MessageStop` go out once both are known, or at the end of the body.

use std::borrow::Cow;

use serde::Deserialize;
use weir_model::{
    ChatResponse, ContentBlock, Delta, ErrorKind, Frame, JsonStr, ProviderError, RawJson,
    RedactedThinkingBlock, StopReason, StreamEvent, TextBlock, ThinkingBlock, ToolInput,
    ToolUseBlock, Usage,
};
use weir_upstream::decode_error as stream_decode_error;

use crate::eventstream::EventHandler;

/// A Converse stop reason. `malformed_model_output` and `malformed_tool_use` are the
/// model failing, not stopping: errors.
pub fn stop_reason(s: &str) -> Result<StopReason, ProviderError> {
    Ok(match s {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "guardrail_intervened" | "content_filtered" => StopReason::Refusal,
        "model_context_window_exceeded" => StopReason::ContextWindowExceeded,
        "malformed_model_output" | "malformed_tool_use" => {
            let mut e = ProviderError::new(
                ErrorKind::Upstream,
                format!("the model's output could not be used (Bedrock stop reason `{s}`)"),
            );
            e.status = Some(502);
            // The model failed, not the service: tried again, not held against the
            // target's health.
            e.counts_against_health = false;
            return Err(e);
        }
        other => StopReason::Other(other.to_owned()),
    })
}

/// Converse usage. `inputTokens` already excludes the cache reads and writes (Anthropic's
/// convention), so the figures map one to one.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
    /// The cache writes by TTL (`5m`, `1h`), which are priced apart.
    #[serde(default)]
    cache_details: Vec<CacheDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheDetail {
    ttl: Option<String>,
    input_tokens: Option<u64>,
}

impl From<CUsage> for Usage {
    fn from(u: CUsage) -> Usage {
        let one_hour = u
            .cache_details
            .iter()
            .filter(|d| d.ttl.as_deref() == Some("1h"))
            .filter_map(|d| d.input_tokens)
            .fold(None, |sum: Option<u64>, n| {
                Some(sum.unwrap_or(0).saturating_add(n))
            });
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens,
            cache_write_tokens: u.cache_write_input_tokens,
            cache_write_1h_tokens: one_hour,
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
struct CResponse {
    output: Option<COutput>,
    #[serde(rename = "stopReason")]
    stop_reason: Option<String>,
    usage: Option<CUsage>,
}

#[derive(Deserialize)]
struct COutput {
    message: Option<CMessage>,
}

#[derive(Deserialize)]
struct CMessage {
    #[serde(default)]
    content: Vec<CBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CBlock {
    text: Option<JsonStr>,
    tool_use: Option<CToolUse>,
    reasoning_content: Option<CReasoning>,
    citations_content: Option<CCitations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CToolUse {
    tool_use_id: String,
    name: String,
    input: Option<RawJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CReasoning {
    reasoning_text: Option<CReasoningText>,
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
struct CReasoningText {
    text: JsonStr,
    signature: Option<String>,
}

#[derive(Deserialize)]
struct CCitations {
    #[serde(default)]
    content: Vec<CCitationText>,
}

#[derive(Deserialize)]
struct CCitationText {
    text: Option<JsonStr>,
}

fn empty_object() -> RawJson {
    weir_model::raw::to_raw(&serde_json::Map::new())
}

fn block(b: CBlock, out: &mut Vec<ContentBlock>) {
    if let Some(t) = b.text {
        out.push(ContentBlock::Text(TextBlock::new(t)));
    } else if let Some(t) = b.tool_use {
        out.push(ContentBlock::ToolUse(ToolUseBlock {
            id: t.tool_use_id,
            name: t.name,
            input: ToolInput::Json(t.input.unwrap_or_else(empty_object)),
            cache_control: None,
            extra: Default::default(),
        }));
    } else if let Some(r) = b.reasoning_content {
        if let Some(t) = r.reasoning_text {
            out.push(ContentBlock::Thinking(ThinkingBlock {
                thinking: t.text,
                signature: t.signature,
                extra: Default::default(),
            }));
        } else if let Some(data) = r.redacted_content {
            out.push(ContentBlock::RedactedThinking(RedactedThinkingBlock {
                data,
                extra: Default::default(),
            }));
        }
    } else if let Some(c) = b.citations_content {
        // Cited text is still the answer's text; the citations have no canonical home.
        let parts: Vec<JsonStr> = c.content.into_iter().filter_map(|p| p.text).collect();
        if let Some(t) = JsonStr::join(&parts, "") {
            out.push(ContentBlock::Text(TextBlock::new(t)));
        }
    } else {
        tracing::debug!("dropping a Converse output block of a kind Weir does not model");
    }
}

/// Decodes a (non-streamed) Converse response. Converse answers carry no id and no model:
/// `id` (the `x-amzn-requestid`) and `model` (the model id asked for) stand in.
pub fn decode_converse_response(
    body: &[u8],
    id: &str,
    model: &str,
) -> Result<ChatResponse, ProviderError> {
    let decode = |e: String| {
        ProviderError::new(
            ErrorKind::Decode,
            format!("the upstream's response could not be decoded: {e}"),
        )
    };
    let text = weir_model::wire::utf8("response body", body).map_err(|e| decode(e.to_string()))?;
    let r: CResponse = serde_json::from_str(text)
        .map_err(|e| decode(format!("invalid Converse response: {e}")))?;
    // A 200 without `output` (`{}`, an error object such as `{"message": ...}`) carries
    // no answer.
    if r.output.is_none() {
        return Err(decode("not a Converse response: it has no `output`".into()));
    }
    let mut content = Vec::new();
    for b in r
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default()
    {
        block(b, &mut content);
    }
    Ok(ChatResponse {
        origin: None,
        id: id.to_owned(),
        model: model.to_owned(),
        content,
        stop_reason: r.stop_reason.as_deref().map(stop_reason).transpose()?,
        stop_sequence: None,
        usage: r.usage.map(Usage::from).unwrap_or_default(),
        ..Default::default()
    })
}

/// The fields of every ConverseStream event, in one shape (they do not clash).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CEvent<'a> {
    content_block_index: Option<u32>,
    start: Option<CStart>,
    delta: Option<CDelta>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<CUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CStart {
    tool_use: Option<CToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CToolStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CDelta {
    text: Option<JsonStr>,
    tool_use: Option<CToolDelta>,
    reasoning_content: Option<CReasoningDelta>,
}

#[derive(Deserialize)]
struct CToolDelta {
    input: JsonStr,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CReasoningDelta {
    text: Option<JsonStr>,
    signature: Option<String>,
    redacted_content: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    ToolUse,
    Redacted,
}

/// A Converse block that has opened as a canonical block.
#[derive(Debug)]
struct Open {
    converse: u32,
    index: u32,
    kind: Kind,
}

/// Decodes ConverseStream events into canonical frames (no source event: no client
/// speaks Converse).
#[derive(Debug)]
pub struct ConverseStream {
    id: String,
    model: String,
    started: bool,
    open: Vec<Open>,
    next_index: u32,
    stop: Option<StopReason>,
    stopped: bool,
    usage: Option<Usage>,
    done: bool,
}

impl ConverseStream {
    /// A decoder for one stream; `id` and `model` fill `MessageStart` (Converse sends
    /// neither).
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        ConverseStream {
            id: id.into(),
            model: model.into(),
            started: false,
            open: Vec::new(),
            next_index: 0,
            stop: None,
            stopped: false,
            usage: None,
            done: false,
        }
    }

    fn start(&mut self, ev: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            ev.push(StreamEvent::MessageStart {
                id: self.id.clone(),
                model: self.model.clone(),
                usage: Usage::default(),
            });
        }
    }

    /// The canonical index of Converse block `converse`, opening it as `kind` (and
    /// closing a block of another kind that had that Converse index).
    fn ensure(
        &mut self,
        converse: u32,
        kind: Kind,
        block: impl FnOnce() -> ContentBlock,
        ev: &mut Vec<StreamEvent>,
    ) -> u32 {
        if let Some(pos) = self.open.iter().position(|o| o.converse == converse) {
            if self.open[pos].kind == kind {
                return self.open[pos].index;
            }
            let old = self.open.remove(pos);
            ev.push(StreamEvent::BlockStop { index: old.index });
        }
        let index = self.next_index;
        self.next_index += 1;
        self.open.push(Open {
            converse,
            index,
            kind,
        });
        ev.push(StreamEvent::BlockStart {
            index,
            block: block(),
        });
        index
    }

    fn close(&mut self, converse: Option<u32>, ev: &mut Vec<StreamEvent>) {
        self.open.retain(|o| {
            let closing = converse.is_none_or(|c| c == o.converse);
            if closing {
                ev.push(StreamEvent::BlockStop { index: o.index });
            }
            !closing
        });
    }

    fn finish_message(&mut self, ev: &mut Vec<StreamEvent>) {
        if !self.done {
            self.done = true;
            ev.push(StreamEvent::MessageDelta {
                stop_reason: self.stop.take(),
                stop_sequence: None,
                usage: self.usage.take().unwrap_or_default(),
            });
            ev.push(StreamEvent::MessageStop);
        }
    }

    /// Decodes one event into canonical events.
    pub fn decode(
        &mut self,
        event_type: &str,
        payload: &[u8],
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        let text = weir_model::wire::utf8("stream event", payload).map_err(stream_decode_error)?;
        let e: CEvent<'_> = serde_json::from_str(text).map_err(|err| {
            stream_decode_error(weir_model::WireError::from_json(event_type, &err))
        })?;
        let mut ev = Vec::new();
        let index = || {
            e.content_block_index.ok_or_else(|| {
                stream_decode_error(weir_model::WireError::Malformed(format!(
                    "{event_type} without contentBlockIndex"
                )))
            })
        };
        match event_type {
            "messageStart" => self.start(&mut ev),
            "contentBlockStart" => {
                self.start(&mut ev);
                let at = index()?;
                if let Some(t) = e.start.and_then(|s| s.tool_use) {
                    self.ensure(
                        at,
                        Kind::ToolUse,
                        || {
                            ContentBlock::ToolUse(ToolUseBlock {
                                id: t.tool_use_id,
                                name: t.name,
                                input: ToolInput::Json(empty_object()),
                                cache_control: None,
                                extra: Default::default(),
                            })
                        },
                        &mut ev,
                    );
                }
            }
            "contentBlockDelta" => {
                self.start(&mut ev);
                let at = index()?;
                let Some(d) = e.delta else { return Ok(ev) };
                if let Some(t) = d.text {
                    if !t.is_empty() {
                        let i = self.ensure(
                            at,
                            Kind::Text,
                            || ContentBlock::Text(TextBlock::new("")),
                            &mut ev,
                        );
                        ev.push(StreamEvent::BlockDelta {
                            index: i,
                            delta: Delta::Text(t),
                        });
                    }
                } else if let Some(t) = d.tool_use {
                    let Some(open) = self
                        .open
                        .iter()
                        .find(|o| o.converse == at && o.kind == Kind::ToolUse)
                    else {
                        return Err(stream_decode_error(weir_model::WireError::Malformed(
                            "toolUse delta for a block that did not start as a tool call"
                                .to_owned(),
                        )));
                    };
                    ev.push(StreamEvent::BlockDelta {
                        index: open.index,
                        delta: Delta::InputJson(t.input),
                    });
                } else if let Some(r) = d.reasoning_content {
                    let thinking = || ContentBlock::Thinking(ThinkingBlock::default());
                    if let Some(t) = r.text.filter(|t| !t.is_empty()) {
                        let i = self.ensure(at, Kind::Thinking, thinking, &mut ev);
                        ev.push(StreamEvent::BlockDelta {
                            index: i,
                            delta: Delta::Thinking(t),
                        });
                    }
                    if let Some(sig) = r.signature.filter(|s| !s.is_empty()) {
                        let i = self.ensure(at, Kind::Thinking, thinking, &mut ev);
                        ev.push(StreamEvent::BlockDelta {
                            index: i,
                            delta: Delta::Signature(sig),
                        });
                    }
                    if let Some(data) = r.redacted_content {
                        self.ensure(
                            at,
                            Kind::Redacted,
                            || {
                                ContentBlock::RedactedThinking(RedactedThinkingBlock {
                                    data,
                                    extra: Default::default(),
                                })
                            },
                            &mut ev,
                        );
                    }
                } else {
                    tracing::debug!("ignoring a Converse delta of a kind Weir does not model");
                }
            }
            "contentBlockStop" => {
                let at = index()?;
                self.close(Some(at), &mut ev);
            }
            "messageStop" => {
                self.start(&mut ev);
                self.close(None, &mut ev);
                self.stop = e.stop_reason.as_deref().map(stop_reason).transpose()?;
                self.stopped = true;
                if self.usage.is_some() {
                    self.finish_message(&mut ev);
                }
            }
            "metadata" => {
                self.usage = Some(e.usage.map(Usage::from).unwrap_or_default());
                if self.stopped {
                    self.finish_message(&mut ev);
                }
            }
            other => tracing::debug!(event_type = other, "ignoring a ConverseStream event"),
        }
        Ok(ev)
    }

    /// The body ended: the message's end if it is still owed; an error if the stream
    /// stopped before `messageStop`.
    pub fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut ev = Vec::new();
        if self.done {
            return Ok(ev);
        }
        if !self.stopped {
            return Err(ProviderError::new(
                ErrorKind::Upstream,
                "the upstream's stream ended before the message was complete",
            ));
        }
        self.finish_message(&mut ev);
        Ok(ev)
    }
}

impl EventHandler for ConverseStream {
    fn event(
        &mut self,
        event_type: &str,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), ProviderError> {
        let events = self.decode(event_type, payload)?;
        if !events.is_empty() {
            out.push(Frame::from_events(events));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let events = self.end()?;
        if !events.is_empty() {
            out.push(Frame::from_events(events));
        }
        Ok(())
    }
}
