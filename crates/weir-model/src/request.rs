//! The canonical chat request.

use crate::content::{Content, Message};
use crate::json_str::JsonStr;
use crate::raw::{Dialect, Extra, RawJson};

/// What [`ChatRequest::estimate_input_tokens`] charges an image: about what Anthropic
/// charges its largest (1.15 megapixels), and more than OpenAI charges a high-detail one.
pub const IMAGE_TOKENS: u64 = 1_600;

/// A chat request, whichever dialect it arrived in.
///
/// Decoders fill what the dialect says and keep the rest in `extra` fields; encoders of the
/// same dialect (`origin`) write everything back, so a request routed to a provider of its
/// own dialect reaches it unchanged but for the model name.
#[derive(Clone, Debug, Default)]
pub struct ChatRequest {
    /// The dialect the request was decoded from; `None` for requests built in code.
    pub origin: Option<Dialect>,
    /// The model name (client's, then the upstream's once routed).
    pub model: String,
    /// Anthropic top-level `system`. OpenAI carries system text as messages instead
    /// ([`crate::Role::System`] / [`crate::Role::Developer`]), which stay in `messages`.
    pub system: Option<Content>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools offered to the model; `None` when the field was absent.
    pub tools: Option<Vec<Tool>>,
    /// How the model may use tools.
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn (OpenAI `parallel_tool_calls`,
    /// Anthropic `!tool_choice.disable_parallel_tool_use`).
    pub parallel_tool_calls: Option<bool>,
    /// Output token limit.
    pub max_tokens: Option<u32>,
    /// Which OpenAI field carried `max_tokens`.
    pub max_tokens_field: MaxTokensField,
    /// Whether to stream.
    pub stream: Option<bool>,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: Option<bool>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic, Gemini).
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Option<StopSequences>,
    /// Extended thinking (Anthropic).
    pub thinking: Option<ThinkingConfig>,
    /// OpenAI `reasoning_effort`.
    pub reasoning_effort: Option<String>,
    /// End-user identity and request metadata.
    pub metadata: Option<Metadata>,
    /// Unknown top-level fields.
    pub extra: Extra,
    /// Size in bytes of the wire form this was decoded from (0 if built in code); encoders
    /// size their output buffers from it.
    pub size_hint: usize,
    /// Built by the gateway in `origin`'s shape from another API (the Responses bridge),
    /// not sent by a client: where a target's options decide what goes (earlier reasoning
    /// sent back), they are followed rather than the request passed as it came.
    pub bridged: bool,
    /// The largest output limit the target takes (its `max_output_tokens`, set by the
    /// router), not on the wire: an encoder that raises `max_tokens` (to make room beside a
    /// thinking budget) stays within it, fitting the budget below.
    pub output_cap: Option<u32>,
}

/// How a request uses Anthropic's message threads (`thread`), which only an upstream
/// that keeps conversations can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadUse {
    /// `{"type": "create"}` (or a form not known here): the upstream keeps the
    /// conversation under the answer's id.
    Create,
    /// `{"type": "continue", "previous_message_id": id}`: the request holds only the new
    /// messages; the rest is held where the answer `id` was made.
    Continue(String),
}

impl ChatRequest {
    /// The request with a thinking object the decoder kept verbatim (an Anthropic client's
    /// `{"type": "enabled", "budget_tokens": N, "display": ...}`, or an OpenAI client's
    /// own `thinking`, Anthropic's object sent as an extra field) read as the budget or
    /// adaptive thinking it is, for encoders of other dialects, which would otherwise
    /// leave it out: a copy only when there is one.
    pub fn with_thinking_read(&self) -> std::borrow::Cow<'_, ChatRequest> {
        let raw = match &self.thinking {
            Some(ThinkingConfig::Unknown(raw)) => &**raw,
            None if self.origin == Some(Dialect::OpenAi) => match self.extra.get("thinking") {
                Some(raw) => raw,
                None => return std::borrow::Cow::Borrowed(self),
            },
            _ => return std::borrow::Cow::Borrowed(self),
        };
        #[derive(serde::Deserialize)]
        struct Form {
            r#type: String,
            budget_tokens: Option<u32>,
        }
        let read = match serde_json::from_str::<Form>(raw.get()) {
            Ok(Form {
                r#type,
                budget_tokens: Some(budget_tokens),
            }) if r#type == "enabled" => ThinkingConfig::Enabled { budget_tokens },
            Ok(Form { r#type, .. }) if r#type == "adaptive" => {
                ThinkingConfig::Adaptive(Some(crate::raw::to_raw(raw)))
            }
            _ => return std::borrow::Cow::Borrowed(self),
        };
        let mut r = self.clone();
        r.thinking = Some(read);
        std::borrow::Cow::Owned(r)
    }

    /// An Anthropic client's request with the `tool_reference` blocks of its tool results
    /// (Claude Code's tool search naming the tools it loaded) as text (`Tool loaded:
    /// <name>`), for dialects that have no such block: their tools are all declared
    /// (`defer_loading` is Anthropic's alone), so nothing is lost. A copy only when it
    /// holds some.
    pub fn with_tool_references_as_text(&self) -> std::borrow::Cow<'_, ChatRequest> {
        use crate::ContentBlock;
        fn reference(b: &ContentBlock) -> Option<String> {
            let ContentBlock::Unknown(u) = b else {
                return None;
            };
            if u.dialect != Dialect::Anthropic || u.type_name.as_deref() != Some("tool_reference") {
                return None;
            }
            #[derive(serde::Deserialize)]
            struct Reference {
                tool_name: Option<String>,
            }
            let name = serde_json::from_str::<Reference>(u.raw.get())
                .ok()
                .and_then(|r| r.tool_name)
                .unwrap_or_default();
            Some(format!("Tool loaded: {name}"))
        }
        let has = |m: &crate::Message| {
            m.content.blocks.iter().any(|b| {
                matches!(b, ContentBlock::ToolResult(r) if r.content.blocks.iter().any(|c| reference(c).is_some()))
            })
        };
        if self.origin != Some(Dialect::Anthropic) || !self.messages.iter().any(has) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        for m in &mut r.messages {
            for b in &mut m.content.blocks {
                if let ContentBlock::ToolResult(t) = b {
                    for c in &mut t.content.blocks {
                        if let Some(text) = reference(c) {
                            *c = ContentBlock::Text(crate::TextBlock::new(text.as_str()));
                        }
                    }
                }
            }
        }
        std::borrow::Cow::Owned(r)
    }

    /// An OpenAI client's request with its assistants' refusals (`refusal` beside a null
    /// `content`, or `{"type": "refusal"}` parts of it) as their text, for dialects that
    /// have a refusal only as text: a copy only when it holds some.
    pub fn with_refusals_as_text(&self) -> std::borrow::Cow<'_, ChatRequest> {
        let has_part = |m: &crate::Message| {
            m.content
                .blocks
                .iter()
                .any(|b| crate::content::refusal_part(b).is_some())
        };
        if self.origin != Some(Dialect::OpenAi)
            || !self
                .messages
                .iter()
                .any(|m| m.refusal_text().is_some() || has_part(m))
        {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        for m in &mut r.messages {
            for b in &mut m.content.blocks {
                if let Some(text) = crate::content::refusal_part(b) {
                    *b = crate::ContentBlock::Text(crate::TextBlock {
                        text,
                        ..Default::default()
                    });
                }
            }
            if let Some(text) = m.refusal_text() {
                m.content.blocks.insert(
                    0,
                    crate::ContentBlock::Text(crate::TextBlock {
                        text,
                        ..Default::default()
                    }),
                );
            }
        }
        std::borrow::Cow::Owned(r)
    }

    /// Whether the messages an encoder kept (`kept_last_role`: the role of the last one
    /// it will send, `None` if none) still make the client's request: refuses a request
    /// left with no message, or whose last (user) message was left out as empty, so that
    /// it would end on the assistant's turn (a prefill to continue) instead.
    pub fn check_kept_messages(
        &self,
        to: &str,
        kept_last_is_assistant: Option<bool>,
    ) -> Result<(), crate::WireError> {
        let last_spoken = self
            .messages
            .iter()
            .rposition(|m| !matches!(m.role, crate::Role::System | crate::Role::Developer));
        match (last_spoken, kept_last_is_assistant) {
            (_, None) => Err(crate::WireError::Unsupported(format!(
                "the request has no message with content; {to} needs at least one user message"
            ))),
            (Some(i), Some(true)) if self.messages[i].role != crate::Role::Assistant => {
                Err(crate::WireError::Unsupported(format!(
                    "messages[{i}] is empty; {to} refuses empty content, and without it the request would end on the assistant's turn"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses what a client sent that `to` (another dialect) has no counterpart for and
    /// that would otherwise be dropped unnoticed, changing what the client gets:
    /// - from an OpenAI client: the deprecated `functions` and `function_call` (the answer
    ///   could not come back in their shape either), several choices (`n` > 1),
    ///   `logprobs`/`top_logprobs`, `web_search_options`, and audio output (`audio`, or
    ///   `"audio"` in `modalities`);
    /// - from an Anthropic client: `mcp_servers` (tools the model would not see) and
    ///   `container` (code execution's).
    ///
    /// Fields set to their defaults (null, `n: 1`, `logprobs: false`, `top_logprobs: 0`,
    /// an empty list) ask for nothing and pass.
    pub fn check_translatable(&self, to: &str) -> Result<(), crate::WireError> {
        self.check_translatable_to(to, false)
    }

    /// [`ChatRequest::check_translatable`] for an upstream that has a web search of its own
    /// (`web_search`: Anthropic's and Vertex AI's Claude), to which an OpenAI client's
    /// `web_search_options` is translated rather than refused.
    pub fn check_translatable_to(
        &self,
        to: &str,
        web_search: bool,
    ) -> Result<(), crate::WireError> {
        let asks = |field: &str| {
            self.extra
                .get(field)
                .is_some_and(|v| !asks_nothing(field, v.get()))
                .then_some(())
        };
        let refuse = |what: String| Err(crate::WireError::Unsupported(what));
        match self.origin {
            Some(Dialect::OpenAi) => {
                for field in ["functions", "function_call"] {
                    if asks(field).is_some() {
                        return refuse(format!(
                            "`{field}` (deprecated OpenAI function calling) cannot be sent to {to}; use `tools` and `tool_choice`"
                        ));
                    }
                }
                if asks("n").is_some() {
                    return refuse(format!(
                        "`n` other than 1 (several choices) is not supported by {to}; send one request per choice"
                    ));
                }
                for field in ["logprobs", "top_logprobs"] {
                    if asks(field).is_some() {
                        return refuse(format!("`{field}` is not supported by {to}"));
                    }
                }
                if !web_search && asks("web_search_options").is_some() {
                    return refuse(format!(
                        "`web_search_options` (OpenAI web search) cannot be sent to {to}"
                    ));
                }
                for field in ["modalities", "audio"] {
                    if asks(field).is_some() {
                        return refuse(format!(
                            "audio output (`{field}`) is not supported by {to}"
                        ));
                    }
                }
            }
            Some(Dialect::Anthropic) => {
                if asks("mcp_servers").is_some() {
                    return refuse(format!(
                        "`mcp_servers` (Anthropic's MCP connector) cannot be sent to {to}; give the model the servers' tools as `tools`"
                    ));
                }
                if asks("container").is_some() {
                    return refuse(format!(
                        "`container` (Anthropic code execution) cannot be sent to {to}"
                    ));
                }
            }
            _ => {}
        }
        self.check_data_urls()
    }

    /// Input tokens the request is estimated at, before any upstream has counted them:
    /// about four bytes of its JSON (`body_len`) per token, except inline image data,
    /// which is charged [`IMAGE_TOKENS`] an image whatever its size (a megabyte of
    /// base64 is not 250,000 tokens: providers scale images down and charge by pixels).
    /// Documents stay charged by their bytes, which errs high for PDFs.
    pub fn estimate_input_tokens(&self, body_len: usize) -> u64 {
        use crate::{ContentBlock, MediaSource};
        fn inline_len(s: &MediaSource) -> usize {
            match s {
                MediaSource::Base64 { data, .. } => data.len(),
                MediaSource::Url(u)
                    if u.trim_start()
                        .get(..5)
                        .is_some_and(|p| p.eq_ignore_ascii_case("data:")) =>
                {
                    u.len()
                }
                _ => 0,
            }
        }
        // (Bytes of image data, images.)
        fn images(blocks: &[ContentBlock], depth: u8, acc: &mut (usize, u64)) {
            for b in blocks {
                match b {
                    ContentBlock::Image(i) => {
                        acc.0 += inline_len(&i.source);
                        acc.1 += 1;
                    }
                    // Tool results hold blocks; the decoders bound their nesting.
                    ContentBlock::ToolResult(r) if depth < 16 => {
                        images(&r.content.blocks, depth + 1, acc)
                    }
                    _ => {}
                }
            }
        }
        let mut acc = (0, 0);
        for m in &self.messages {
            images(&m.content.blocks, 0, &mut acc);
        }
        let text = body_len.saturating_sub(acc.0) as u64;
        text.div_ceil(4)
            .saturating_add(acc.1.saturating_mul(IMAGE_TOKENS))
    }

    /// A `data:` URL a client's dialect left as a URL (it could not be read as base64
    /// data of a media type) is an error here: other upstreams take only http(s) URLs, so
    /// theirs would be a puzzling 400.
    pub fn check_data_urls(&self) -> Result<(), crate::WireError> {
        use crate::{ContentBlock, MediaSource};
        fn unread(blocks: &[ContentBlock]) -> bool {
            // (One in the form the encoders read is taken as data.)
            let data_url = |s: &MediaSource| {
                matches!(s, MediaSource::Url(u)
                    if u.trim_start().get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"))
                        && crate::inline_data_url(u).is_none())
            };
            blocks.iter().any(|b| match b {
                ContentBlock::Image(i) => data_url(&i.source),
                ContentBlock::Document(d) => data_url(&d.source),
                ContentBlock::ToolResult(r) => unread(&r.content.blocks),
                _ => false,
            })
        }
        match self.messages.iter().position(|m| unread(&m.content.blocks)) {
            Some(i) => Err(crate::WireError::Malformed(format!(
                "messages[{i}]: a data URL could not be read: it must be \
                 `data:<media type>;base64,<data>` (the media type may be left out for PNG, \
                 JPEG, GIF, WebP and PDF data)"
            ))),
            None => Ok(()),
        }
    }

    /// The request with OpenAI tool calls kept verbatim read as function calls where they
    /// can be ([`crate::content::lenient_tool_calls`]), and OpenAI function tools kept
    /// verbatim read as function tools ([`Tool::lenient_function`]), for dialects that
    /// must have them as calls and functions: a copy only when it holds some.
    pub fn with_lenient_tool_calls(&self) -> std::borrow::Cow<'_, ChatRequest> {
        let tools = self
            .tools()
            .iter()
            .any(|t| t.lenient_function().is_some())
            .then(|| {
                self.tools()
                    .iter()
                    .map(|t| {
                        t.lenient_function()
                            .map_or_else(|| t.clone(), Tool::Function)
                    })
                    .collect::<Vec<_>>()
            });
        let fixed: Vec<(usize, Vec<crate::ContentBlock>)> = self
            .messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                crate::content::lenient_tool_calls(&m.content.blocks, false).map(|b| (i, b))
            })
            .collect();
        if fixed.is_empty() && tools.is_none() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        if tools.is_some() {
            r.tools = tools;
        }
        for (i, blocks) in fixed {
            r.messages[i].content.blocks = blocks;
        }
        std::borrow::Cow::Owned(r)
    }

    /// The end user the client names: `metadata.user_id` (Anthropic), `user` (OpenAI),
    /// else OpenAI's `safety_identifier`, which replaces `user`.
    pub fn end_user(&self) -> Option<&str> {
        if let Some(u) = self.metadata.as_ref().and_then(|m| m.user_id.as_deref()) {
            return Some(u);
        }
        if self.origin != Some(Dialect::OpenAi) {
            return None;
        }
        let raw = self.extra.get("safety_identifier")?;
        // A plain string (no escapes) as it is in the JSON; anything else names no one.
        let s = raw.get().strip_prefix('"')?.strip_suffix('"')?;
        (!s.is_empty() && !s.contains('\\')).then_some(s)
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// How an Anthropic client's request uses message threads (its `thread` field);
    /// `None` without one (or with `null`).
    pub fn thread(&self) -> Option<ThreadUse> {
        if self.origin != Some(Dialect::Anthropic) {
            return None;
        }
        let raw = self.extra.get("thread")?;
        #[derive(serde::Deserialize)]
        struct Thread<'a> {
            #[serde(rename = "type", borrow)]
            ty: Option<std::borrow::Cow<'a, str>>,
            previous_message_id: Option<String>,
        }
        match serde_json::from_str::<Option<Thread<'_>>>(raw.get()) {
            Ok(None) => None,
            Ok(Some(Thread {
                ty: Some(ty),
                previous_message_id: Some(id),
            })) if ty == "continue" => Some(ThreadUse::Continue(id)),
            _ => Some(ThreadUse::Create),
        }
    }

    /// The tools, or an empty slice.
    pub fn tools(&self) -> &[Tool] {
        self.tools.as_deref().unwrap_or(&[])
    }

    /// The answer format the client asked for in its dialect's field, for encoders of
    /// other dialects: OpenAI `response_format` (`json_object`, `json_schema`), Anthropic
    /// `output_config.format` or the beta's `output_format` (`json_schema`). `None` for
    /// free text, and for an Anthropic field of a shape not known here. An OpenAI
    /// `response_format` that is not the shape OpenAI defines, or a `json_schema` without
    /// its schema, is an error.
    pub fn output_format(&self) -> Result<Option<OutputFormat<'_>>, crate::WireError> {
        #[derive(serde::Deserialize)]
        struct Format<'a> {
            #[serde(rename = "type")]
            ty: std::borrow::Cow<'a, str>,
            #[serde(borrow, default)]
            schema: Option<&'a serde_json::value::RawValue>,
            #[serde(borrow, default)]
            json_schema: Option<Named<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Named<'a> {
            #[serde(borrow, default)]
            schema: Option<&'a serde_json::value::RawValue>,
        }
        #[derive(serde::Deserialize)]
        struct Config<'a> {
            #[serde(borrow, default)]
            format: Option<Format<'a>>,
        }
        let malformed = |field: &str, shape: &str| {
            crate::WireError::Malformed(format!("{field} must be {shape}"))
        };
        let (field, format) = match self.origin {
            Some(Dialect::OpenAi) => {
                let Some(raw) = self.extra.get("response_format") else {
                    return Ok(None);
                };
                let f: Format<'_> = serde_json::from_str(raw.get()).map_err(|_| {
                    malformed(
                        "response_format",
                        "an object with a type (text, json_object or json_schema)",
                    )
                })?;
                ("response_format", f)
            }
            // Anthropic's fields grow new shapes: one that cannot be read here is left
            // out like any other Anthropic-only field.
            Some(Dialect::Anthropic) => {
                if let Some(raw) = self.extra.get("output_config") {
                    match serde_json::from_str::<Config<'_>>(raw.get()) {
                        Ok(Config { format: Some(f) }) => ("output_config.format", f),
                        _ => return Ok(None),
                    }
                } else if let Some(raw) = self.extra.get("output_format") {
                    match serde_json::from_str::<Format<'_>>(raw.get()) {
                        Ok(f) => ("output_format", f),
                        Err(_) => return Ok(None),
                    }
                } else {
                    return Ok(None);
                }
            }
            None => return Ok(None),
        };
        match format.ty.as_ref() {
            "json_object" => Ok(Some(OutputFormat::Json)),
            "json_schema" => format
                .schema
                .or(format.json_schema.and_then(|n| n.schema))
                .map(|s| Some(OutputFormat::JsonSchema(s)))
                .ok_or_else(|| {
                    crate::WireError::Malformed(format!(
                        "{field} of type json_schema needs its schema"
                    ))
                }),
            _ => Ok(None),
        }
    }

    /// The effort an Anthropic client asked for (`output_config.effort`: `low`, `medium`,
    /// `high`, ...), as written; `None` for other dialects and other shapes.
    pub fn anthropic_effort(&self) -> Option<std::borrow::Cow<'_, str>> {
        #[derive(serde::Deserialize)]
        struct Config<'a> {
            #[serde(borrow, default)]
            effort: Option<std::borrow::Cow<'a, str>>,
        }
        if self.origin != Some(Dialect::Anthropic) {
            return None;
        }
        let raw = self.extra.get("output_config")?;
        serde_json::from_str::<Config<'_>>(raw.get()).ok()?.effort
    }
}

/// An answer format a client asked for ([`ChatRequest::output_format`]).
#[derive(Clone, Copy, Debug)]
pub enum OutputFormat<'a> {
    /// Any JSON object (OpenAI's JSON mode).
    Json,
    /// JSON following this JSON Schema.
    JsonSchema(&'a serde_json::value::RawValue),
}

/// Which OpenAI field carries the output token limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens` (current) or Anthropic `max_tokens`.
    #[default]
    MaxCompletionTokens,
    /// The deprecated OpenAI `max_tokens`.
    MaxTokens,
}

/// Stop sequences and how they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopSequences {
    /// The sequences.
    pub sequences: Vec<String>,
    /// OpenAI allows a single string instead of an array.
    pub single_string: bool,
}

/// A tool offered to the model.
#[derive(Clone, Debug)]
pub enum Tool {
    /// A function the client implements.
    Function(FunctionTool),
    /// A provider-specific tool (Anthropic server tools such as `web_search_20250305`,
    /// OpenAI `custom` tools), verbatim; only its own dialect can carry it.
    Unknown {
        /// Source dialect.
        dialect: Dialect,
        /// The tool's name, when it has one (for routing decisions and errors).
        name: Option<String>,
        /// The whole tool object.
        raw: RawJson,
    },
}

impl Tool {
    /// Whether this is Claude's web search tool (an Anthropic `web_search_*` tool), which
    /// an upstream with a web search of its own (`to`) can stand in for. Its `max_uses`
    /// and `user_location` are hints left to that search; domain lists, which would change
    /// what may be found, are refused ([`crate::WireError::Unsupported`]) unless that
    /// search takes them (`domains`).
    pub fn is_web_search(&self, to: &str, domains: bool) -> Result<bool, crate::WireError> {
        let Tool::Unknown {
            dialect: Dialect::Anthropic,
            raw,
            ..
        } = self
        else {
            return Ok(false);
        };
        #[derive(serde::Deserialize)]
        struct WebSearch {
            #[serde(rename = "type")]
            ty: Option<String>,
            allowed_domains: Option<Vec<serde_json::Value>>,
            blocked_domains: Option<Vec<serde_json::Value>>,
        }
        let Ok(t) = serde_json::from_str::<WebSearch>(raw.get()) else {
            return Ok(false);
        };
        if !t
            .ty
            .as_deref()
            .is_some_and(|t| t.starts_with("web_search_"))
        {
            return Ok(false);
        }
        for (field, list) in [
            ("allowed_domains", &t.allowed_domains),
            ("blocked_domains", &t.blocked_domains),
        ] {
            if !domains && list.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(crate::WireError::Unsupported(format!(
                    "the web search tool's `{field}` cannot be sent to {to}: its web search takes no domain list"
                )));
            }
        }
        Ok(true)
    }

    /// An OpenAI function tool kept verbatim because its object has fields beside `type`
    /// and `function` (a relay's `cache_control`, or any other), read as the function tool
    /// it is for a dialect that can carry only that: `cache_control` kept (Anthropic's
    /// prompt caching takes it on a tool), the other fields left out. `None` for anything
    /// else.
    pub fn lenient_function(&self) -> Option<FunctionTool> {
        let Tool::Unknown {
            dialect: Dialect::OpenAi,
            raw,
            ..
        } = self
        else {
            return None;
        };
        #[derive(serde::Deserialize)]
        struct Func {
            name: String,
            description: Option<JsonStr>,
            parameters: Option<RawJson>,
            strict: Option<bool>,
        }
        #[derive(serde::Deserialize)]
        struct Outer {
            #[serde(rename = "type")]
            ty: String,
            function: Func,
            cache_control: Option<RawJson>,
        }
        let o: Outer = serde_json::from_str(raw.get()).ok()?;
        if o.ty != "function" {
            return None;
        }
        Some(FunctionTool {
            name: o.function.name,
            description: o.function.description,
            parameters: o.function.parameters.filter(|p| p.get() != "null"),
            strict: o.function.strict,
            cache_control: o.cache_control.filter(|c| c.get() != "null"),
            extra: Extra::new(),
        })
    }
}

/// A function tool.
#[derive(Clone, Debug)]
pub struct FunctionTool {
    /// Name.
    pub name: String,
    /// Description for the model.
    pub description: Option<JsonStr>,
    /// JSON Schema of the arguments, verbatim.
    pub parameters: Option<RawJson>,
    /// Strict schema adherence.
    pub strict: Option<bool>,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<RawJson>,
    /// Unknown fields (of the OpenAI `function` object for OpenAI-origin tools).
    pub extra: Extra,
}

/// How the model may use tools.
#[derive(Clone, Debug)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`).
    Required,
    /// No tool calls.
    None,
    /// The model must call this tool.
    Tool(String),
    /// A form the decoder does not model (OpenAI `allowed_tools`), verbatim.
    Unknown {
        /// Source dialect.
        dialect: Dialect,
        /// The whole value.
        raw: RawJson,
    },
}

/// Whether `raw`, the value a client gave an optional request field, asks for nothing
/// beyond the field's absence: null, `n: 1`, `logprobs: false`, a zero `top_logprobs` or
/// penalty, an empty `logit_bias` or `mcp_servers`, `modalities` without audio. (For the
/// refusals of [`ChatRequest::check_translatable`] and the fields presets strip.)
pub fn asks_nothing(field: &str, raw: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return false;
    };
    match (field, &v) {
        (_, serde_json::Value::Null) => true,
        ("n", v) => v.as_f64() == Some(1.0),
        ("logprobs", v) => v.as_bool() == Some(false),
        ("top_logprobs" | "frequency_penalty" | "presence_penalty", v) => v.as_f64() == Some(0.0),
        ("logit_bias", v) => v.as_object().is_some_and(serde_json::Map::is_empty),
        ("mcp_servers", v) => v.as_array().is_some_and(Vec::is_empty),
        ("modalities", v) => v
            .as_array()
            .is_some_and(|m| m.iter().all(|x| x.as_str() != Some("audio"))),
        _ => false,
    }
}

/// Anthropic extended thinking.
#[derive(Clone, Debug)]
pub enum ThinkingConfig {
    /// Thinking with a token budget.
    Enabled {
        /// Tokens the model may think for; below `max_tokens`.
        budget_tokens: u32,
    },
    /// The model decides how much to think; with the object verbatim when it has more
    /// than its type (`display`, ...), for the same dialect to write back.
    Adaptive(Option<RawJson>),
    /// No thinking.
    Disabled,
    /// A form the decoder does not model, verbatim.
    Unknown(RawJson),
}

impl ThinkingConfig {
    /// The effort level a thinking budget amounts to, for upstreams that take levels:
    /// up to 2048 tokens `low`, up to 8192 `medium`, above `high`.
    pub fn budget_level(budget_tokens: u32) -> &'static str {
        match budget_tokens {
            0..=2048 => "low",
            2049..=8192 => "medium",
            _ => "high",
        }
    }
}

/// End-user identity and other request metadata.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// Anthropic `metadata.user_id`, OpenAI `user`.
    pub user_id: Option<String>,
    /// Unknown fields of the metadata object.
    pub extra: Extra,
}
