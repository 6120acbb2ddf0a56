//! The `/api/chat` wire format both ways.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use weir_model::{
    ApiError, ChatRequest, ChatResponse, Content, ContentBlock, Delta, ErrorKind, Frame, JsonStr,
    MediaSource, OutputFormat, ProviderError, Role, StopReason, StreamEvent, TextBlock,
    ThinkingBlock, ThinkingConfig, Tool, ToolChoice, ToolInput, ToolUseBlock, Usage, WireError,
};

/// The longest NDJSON line accepted (a whole answer fits many times over).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The text of `c`, its text blocks joined by newlines; `media` says whether images and
/// documents may be in it (taken elsewhere: a tool result's images), else they are
/// refused, as any other block is (`what` names where).
fn text_of(c: &Content, what: &str, media: bool) -> Result<String, WireError> {
    let mut out = String::new();
    for b in &c.blocks {
        match b {
            ContentBlock::Text(t) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&t.text.as_str());
            }
            ContentBlock::Image(_) | ContentBlock::Document(_) if media => {}
            other => {
                return Err(unsupported(&format!(
                    "{what} content of type `{}`",
                    other.type_name()
                )))
            }
        }
    }
    Ok(out)
}

fn unsupported(what: &str) -> WireError {
    WireError::Unsupported(format!("Ollama's /api/chat does not accept {what}"))
}

/// Encodes a canonical request as an `/api/chat` body.
pub fn encode_request(req: &ChatRequest) -> Result<Vec<u8>, WireError> {
    req.check_translatable("Ollama")?;
    // An OpenAI assistant's refusal is what the model said: Ollama has it as text.
    let req = &*req.with_refusals_as_text();
    // Claude Code's tool search results name tools Ollama has declared anyway.
    let req = &*req.with_tool_references_as_text();
    // OpenAI tool calls kept verbatim (no id or type, arguments not a string) go as calls.
    let req = &*req.with_lenient_tool_calls();
    // Each call's name and place among its message's calls: Ollama pairs results with
    // calls by name and order only, so results go in the order of their calls. Filled as
    // the conversation goes: a result answers the latest call of its id before it (a
    // client may number each turn's calls from 0 again).
    let mut names: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut messages: Vec<Value> = Vec::new();
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": text_of(s, "system", false)?}));
    }
    // Tool results waiting to go out in the order of their calls: an Anthropic client's
    // come in one user message, an OpenAI client's in consecutive tool messages.
    let mut results: Vec<(usize, Value)> = Vec::new();
    let flush = |results: &mut Vec<(usize, Value)>, messages: &mut Vec<Value>| {
        // (A stable sort: results of one call keep their order.)
        results.sort_by_key(|(place, _)| *place);
        messages.extend(results.drain(..).map(|(_, m)| m));
    };
    for m in &req.messages {
        if m.role != Role::Tool {
            flush(&mut results, &mut messages);
        }
        let calls = m.content.blocks.iter().filter_map(|b| match b {
            ContentBlock::ToolUse(t) => Some(t),
            _ => None,
        });
        for (i, t) in calls.enumerate() {
            names.insert(&t.id, (&t.name, i));
        }
        let role = match m.role {
            Role::System | Role::Developer => "system",
            Role::User | Role::Tool | Role::Function => "user",
            Role::Assistant => "assistant",
        };
        let mut text = String::new();
        let mut thinking = String::new();
        let mut images: Vec<&str> = Vec::new();
        let mut calls: Vec<Value> = Vec::new();
        for b in &m.content.blocks {
            match b {
                ContentBlock::Text(t) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&t.text.as_str());
                }
                ContentBlock::Image(i) => match &i.source {
                    MediaSource::Base64 { data, .. } => images.push(data),
                    _ => return Err(unsupported("image URLs (only base64 images)")),
                },
                ContentBlock::Document(_) => return Err(unsupported("documents")),
                ContentBlock::ToolUse(t) => {
                    let args = t.input.to_object();
                    let args: Value = serde_json::from_str(args.get())
                        .map_err(|e| WireError::Malformed(e.to_string()))?;
                    calls.push(json!({"function": {"name": t.name, "arguments": args}}));
                }
                ContentBlock::ToolResult(r) => {
                    let (name, place) = names.get(r.tool_use_id.as_str()).ok_or_else(|| {
                        WireError::Malformed(format!(
                            "tool result for `{}` has no matching tool call in the conversation",
                            r.tool_use_id
                        ))
                    })?;
                    // A tool message carries text: a result's images go in the user
                    // message after the tool messages (a screenshot the tool took).
                    for part in &r.content.blocks {
                        match part {
                            ContentBlock::Image(i) => match &i.source {
                                MediaSource::Base64 { data, .. } => images.push(data),
                                _ => return Err(unsupported("image URLs (only base64 images)")),
                            },
                            ContentBlock::Document(_) => {
                                return Err(unsupported("documents in tool results"))
                            }
                            _ => {}
                        }
                    }
                    let mut content = text_of(&r.content, "tool result", true)?;
                    if r.is_error == Some(true) {
                        content = format!("Error: {content}");
                    }
                    results.push((
                        *place,
                        json!({"role": "tool", "content": content, "tool_name": name}),
                    ));
                }
                ContentBlock::Thinking(t) => thinking.push_str(&t.thinking.as_str()),
                // Opaque to Ollama; earlier turns' redacted thinking is left out.
                ContentBlock::RedactedThinking(_) => {}
                ContentBlock::Unknown(u) => {
                    return Err(unsupported(&format!(
                        "`{}` content blocks",
                        u.type_name.as_deref().unwrap_or("unknown")
                    )))
                }
            }
        }
        if m.role != Role::Tool {
            flush(&mut results, &mut messages);
        }
        if text.is_empty() && images.is_empty() && calls.is_empty() && thinking.is_empty() {
            continue;
        }
        let mut msg = Map::new();
        msg.insert("role".into(), role.into());
        msg.insert("content".into(), text.into());
        if !images.is_empty() {
            msg.insert("images".into(), json!(images));
        }
        if !thinking.is_empty() {
            msg.insert("thinking".into(), thinking.into());
        }
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), calls.into());
        }
        messages.push(Value::Object(msg));
    }
    flush(&mut results, &mut messages);
    // Ollama takes an empty list as a request to load the model, and answers nothing.
    req.check_kept_messages(
        "Ollama",
        messages
            .iter()
            .rev()
            .find(|m| m["role"] != "system")
            .map(|m| m["role"] == "assistant"),
    )?;
    let mut body = Map::new();
    body.insert("model".into(), req.model.clone().into());
    body.insert("messages".into(), messages.into());
    // Ollama streams unless told not to.
    body.insert("stream".into(), req.is_stream().into());
    // Ollama has no `tool_choice`: `none` sends no tools and a named tool is the only
    // one sent; `required` (some tool, any) cannot be asked for: the tools go as they
    // are (models called with tools and a request for them call them; agent frameworks
    // send `required` routinely).
    let only = match &req.tool_choice {
        None | Some(ToolChoice::Auto) | Some(ToolChoice::Required) => None,
        Some(ToolChoice::None) => Some(None),
        Some(ToolChoice::Tool(name)) => {
            // Sending no tools would answer as if `none` were asked; OpenAI and Anthropic
            // refuse such a request too.
            let offered = req
                .tools
                .iter()
                .flatten()
                .any(|t| matches!(t, Tool::Function(f) if f.name == *name));
            if !offered {
                return Err(WireError::Unsupported(format!(
                    "`tool_choice` names the tool `{name}`, which is not among the request's tools"
                )));
            }
            Some(Some(name.as_str()))
        }
        Some(ToolChoice::Unknown { .. }) => {
            return Err(unsupported(
                "this `tool_choice` form (it has no tool_choice)",
            ))
        }
    };
    if let (Some(tools), false) = (&req.tools, only == Some(None)) {
        let mut out = Vec::new();
        for t in tools {
            match t {
                Tool::Function(f) if only.is_some_and(|n| n != Some(f.name.as_str())) => {}
                Tool::Function(f) => {
                    let params: Value = match &f.parameters {
                        Some(p) => serde_json::from_str(p.get())
                            .map_err(|e| WireError::Malformed(e.to_string()))?,
                        None => json!({"type": "object", "properties": {}}),
                    };
                    let mut func = Map::new();
                    func.insert("name".into(), f.name.clone().into());
                    if let Some(d) = &f.description {
                        func.insert("description".into(), d.as_str().into_owned().into());
                    }
                    func.insert("parameters".into(), params);
                    out.push(json!({"type": "function", "function": func}));
                }
                Tool::Unknown { name, .. } => {
                    return Err(unsupported(&format!(
                        "provider tools (`{}`)",
                        name.as_deref().unwrap_or("unnamed")
                    )))
                }
            }
        }
        if !out.is_empty() {
            body.insert("tools".into(), out.into());
        }
    }
    // gpt-oss takes a level (`true` is its default, medium); other thinking models only
    // on or off.
    let levels = req.model.starts_with("gpt-oss");
    match &req.thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) if levels => {
            body.insert(
                "think".into(),
                ThinkingConfig::budget_level(*budget_tokens).into(),
            );
        }
        Some(ThinkingConfig::Enabled { .. }) => {
            body.insert("think".into(), true.into());
        }
        // The model decides: Ollama's thinking models think unless told not to, and the
        // others answer 400 to any `think: true` (Claude Code asks for adaptive thinking
        // on every request).
        Some(ThinkingConfig::Adaptive(_)) => {}
        Some(ThinkingConfig::Disabled) => {
            body.insert("think".into(), false.into());
        }
        Some(ThinkingConfig::Unknown(_)) => {}
        // An OpenAI client's `reasoning_effort`: `none` turns thinking off; a level turns
        // it on (gpt-oss takes the level itself; other thinking models only on or off).
        None => match req.reasoning_effort.as_deref() {
            Some("none") => {
                body.insert("think".into(), false.into());
            }
            Some(level @ ("low" | "medium" | "high")) if levels => {
                body.insert("think".into(), level.into());
            }
            Some("minimal") if levels => {
                body.insert("think".into(), "low".into());
            }
            Some("xhigh") if levels => {
                body.insert("think".into(), "high".into());
            }
            Some("minimal" | "low" | "medium" | "high" | "xhigh") => {
                body.insert("think".into(), true.into());
            }
            _ => {}
        },
    }
    // Structured outputs: `format` takes "json" or a JSON Schema.
    match req.output_format()? {
        Some(OutputFormat::Json) => {
            body.insert("format".into(), "json".into());
        }
        Some(OutputFormat::JsonSchema(schema)) => {
            let schema: Value = serde_json::from_str(schema.get())
                .map_err(|e| WireError::Malformed(format!("the response schema: {e}")))?;
            body.insert("format".into(), schema);
        }
        None => {}
    }
    let mut options = Map::new();
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        options.insert("top_p".into(), p.into());
    }
    if let Some(k) = req.top_k {
        options.insert("top_k".into(), k.into());
    }
    if let Some(m) = req.max_tokens {
        options.insert("num_predict".into(), m.into());
    }
    if let Some(s) = &req.stop {
        options.insert("stop".into(), json!(s.sequences));
    }
    // An OpenAI client's seed and penalties are Ollama options of the same names.
    if req.origin == Some(weir_model::Dialect::OpenAi) {
        for field in ["seed", "presence_penalty", "frequency_penalty"] {
            if let Some(v) = req
                .extra
                .get(field)
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .filter(Value::is_number)
            {
                options.insert(field.into(), v);
            }
        }
    }
    if !options.is_empty() {
        body.insert("options".into(), options.into());
    }
    serde_json::to_vec(&body).map_err(|e| WireError::Malformed(e.to_string()))
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    thinking: String,
    #[serde(default)]
    tool_calls: Vec<WireCall>,
}

#[derive(Deserialize)]
struct WireCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{:024x}", rand::random::<u128>() >> 32)
}

fn tool_block(c: &WireCall) -> ToolUseBlock {
    let args = if c.function.arguments.is_null() {
        json!({})
    } else {
        c.function.arguments.clone()
    };
    // Some models send the arguments as a JSON string; keep it as arguments text then.
    let input = match &args {
        Value::String(s) => ToolInput::Arguments(s.clone()),
        v => ToolInput::Json(weir_model::raw::to_raw(v)),
    };
    ToolUseBlock {
        id: c
            .id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| new_id("call_")),
        name: c.function.name.clone(),
        input,
        cache_control: None,
        extra: Default::default(),
    }
}

fn stop_reason(done_reason: Option<&str>, tools: bool) -> StopReason {
    if tools {
        return StopReason::ToolUse;
    }
    match done_reason {
        Some("stop") | None => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

fn usage(c: &WireChunk) -> Usage {
    Usage {
        input_tokens: c.prompt_eval_count,
        output_tokens: c.eval_count,
        ..Default::default()
    }
}

fn in_stream_error(message: &str) -> ApiError {
    let mut e = ApiError::new(ErrorKind::Upstream, message);
    e.error_type = Some("api_error".into());
    e
}

/// Decodes a whole (non-streamed) `/api/chat` answer.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let c: WireChunk =
        serde_json::from_slice(body).map_err(|e| WireError::from_json("Ollama response", &e))?;
    if let Some(e) = &c.error {
        return Err(WireError::Malformed(format!(
            "Ollama answered an error: {e}"
        )));
    }
    let m = c
        .message
        .as_ref()
        .ok_or_else(|| WireError::Malformed("Ollama response has no `message`".to_owned()))?;
    let mut content = Vec::new();
    if !m.thinking.is_empty() {
        content.push(ContentBlock::Thinking(ThinkingBlock {
            thinking: JsonStr::new(&m.thinking),
            ..Default::default()
        }));
    }
    if !m.content.is_empty() {
        content.push(ContentBlock::Text(TextBlock {
            text: JsonStr::new(&m.content),
            ..Default::default()
        }));
    }
    for call in &m.tool_calls {
        content.push(ContentBlock::ToolUse(tool_block(call)));
    }
    Ok(ChatResponse {
        id: new_id("msg_"),
        model: c.model.clone(),
        stop_reason: Some(stop_reason(
            c.done_reason.as_deref(),
            !m.tool_calls.is_empty(),
        )),
        usage: usage(&c),
        content,
        ..Default::default()
    })
}

/// Decodes an error body (`{"error": "..."}`) with its status.
pub fn decode_error(status: u16, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    let message = serde_json::from_slice::<E>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| format!("Ollama answered HTTP {status}"));
    let mut e = ApiError::new(ErrorKind::from_status(status), message);
    e.status = status;
    e
}

/// What block is open in a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
}

/// Decodes an `/api/chat` NDJSON stream into canonical frames, line by line as they
/// complete (lines may be split across reads).
pub struct NdjsonDecoder {
    line: Vec<u8>,
    started: bool,
    open: Open,
    index: u32,
    tools: bool,
    done: bool,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        NdjsonDecoder::new()
    }
}

impl NdjsonDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        NdjsonDecoder {
            line: Vec::new(),
            started: false,
            open: Open::None,
            index: 0,
            tools: false,
            done: false,
        }
    }

    fn close(&mut self, ev: &mut Vec<StreamEvent>) {
        if self.open != Open::None {
            ev.push(StreamEvent::BlockStop { index: self.index });
            self.index += 1;
            self.open = Open::None;
        }
    }

    fn ensure(&mut self, kind: Open, ev: &mut Vec<StreamEvent>) {
        if self.open == kind {
            return;
        }
        self.close(ev);
        let block = match kind {
            Open::Thinking => ContentBlock::Thinking(ThinkingBlock::default()),
            _ => ContentBlock::Text(TextBlock::default()),
        };
        ev.push(StreamEvent::BlockStart {
            index: self.index,
            block,
        });
        self.open = kind;
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let line = trim(line);
        if line.is_empty() {
            return Ok(());
        }
        let c: WireChunk = serde_json::from_slice(line).map_err(|e| {
            weir_upstream::decode_error(WireError::from_json("Ollama stream line", &e))
        })?;
        let mut ev = Vec::new();
        if let Some(e) = &c.error {
            ev.push(StreamEvent::Error(in_stream_error(e)));
            self.done = true;
            out.push(Frame::from_events(ev));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            ev.push(StreamEvent::MessageStart {
                id: new_id("msg_"),
                model: c.model.clone(),
                usage: Usage::default(),
            });
        }
        if let Some(m) = &c.message {
            if !m.thinking.is_empty() {
                self.ensure(Open::Thinking, &mut ev);
                ev.push(StreamEvent::BlockDelta {
                    index: self.index,
                    delta: Delta::Thinking(JsonStr::new(&m.thinking)),
                });
            }
            if !m.content.is_empty() {
                self.ensure(Open::Text, &mut ev);
                ev.push(StreamEvent::BlockDelta {
                    index: self.index,
                    delta: Delta::Text(JsonStr::new(&m.content)),
                });
            }
            for call in &m.tool_calls {
                self.close(&mut ev);
                self.tools = true;
                let mut block = tool_block(call);
                let args = block.input.as_arguments().into_owned();
                block.input = ToolInput::Arguments(String::new());
                ev.push(StreamEvent::BlockStart {
                    index: self.index,
                    block: ContentBlock::ToolUse(block),
                });
                ev.push(StreamEvent::BlockDelta {
                    index: self.index,
                    delta: Delta::InputJson(JsonStr::new(&args)),
                });
                ev.push(StreamEvent::BlockStop { index: self.index });
                self.index += 1;
            }
        }
        if c.done {
            self.close(&mut ev);
            ev.push(StreamEvent::MessageDelta {
                stop_reason: Some(stop_reason(c.done_reason.as_deref(), self.tools)),
                stop_sequence: None,
                usage: usage(&c),
            });
            ev.push(StreamEvent::MessageStop);
            self.done = true;
        }
        if !ev.is_empty() {
            out.push(Frame::from_events(ev));
        }
        Ok(())
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

impl weir_upstream::BodyDecoder for NdjsonDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            if self.line.is_empty() {
                self.line(head, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.line(&line, out)?;
            }
            rest = &tail[1..];
        }
        if self.line.len() + rest.len() > MAX_LINE {
            return Err(ProviderError::new(
                ErrorKind::Decode,
                format!("an Ollama stream line exceeds {MAX_LINE} bytes"),
            ));
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let line = std::mem::take(&mut self.line);
        self.line(&line, out)?;
        if !self.done {
            return Err(ProviderError::new(
                ErrorKind::Decode,
                if self.started {
                    "the Ollama stream ended before its last (`done`) line"
                } else {
                    "the Ollama stream ended before any response line"
                },
            ));
        }
        Ok(())
    }
}
