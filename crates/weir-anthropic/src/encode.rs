//! Encoding a canonical request as an Anthropic Messages body: planning (hoisting,
//! merging, reordering, id sanitizing for requests from other dialects), then writing.

use std::borrow::Cow;

use serde_json::value::RawValue;

use weir_model::json_writer::JsonWriter;
use weir_model::{
    ChatRequest, Content, ContentBlock, Dialect, Message, RawJson, Role, TextBlock, ThinkingConfig,
    Tool, ToolChoice, WireError,
};

use crate::ids::sanitize_tool_id;
use crate::write::{block, content, BlockEdits, Out};

/// Options for encoding a request to an Anthropic upstream.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// `max_tokens` when the request has none (Anthropic requires it); `None`: the
    /// model's own output limit ([`default_max_tokens`]).
    pub default_max_tokens: Option<u32>,
    /// Map OpenAI `reasoning_effort` to extended thinking (the target model supports it).
    pub thinking_from_reasoning_effort: bool,
    /// Leave `model` out of the body (Bedrock and Vertex put it in the URL).
    pub omit_model: bool,
    /// Leave `stream` out of the body (Bedrock chooses by endpoint).
    pub omit_stream: bool,
    /// Leave `max_tokens` out of the body (the token-counting endpoint refuses it).
    pub omit_max_tokens: bool,
    /// The upstream has Anthropic's web search tool (Anthropic, Vertex AI; not Bedrock):
    /// an OpenAI client's `web_search_options` becomes that tool instead of a refusal.
    pub web_search: bool,
}

impl EncodeOptions {
    /// The `max_tokens` sent for a request to `model` that sets none: the configured
    /// default, else the model's own ([`default_max_tokens`]).
    pub fn limit_for(&self, model: &str, stream: bool) -> u32 {
        self.default_max_tokens
            .unwrap_or_else(|| default_max_tokens(model, stream))
    }
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            default_max_tokens: None,
            thinking_from_reasoning_effort: true,
            omit_model: false,
            omit_stream: false,
            omit_max_tokens: false,
            web_search: true,
        }
    }
}

/// Encodes a canonical request as an Anthropic Messages body.
///
/// A request that came from an Anthropic client is written back as it came (model name
/// aside). A request from another dialect is reshaped for Anthropic's rules: system and
/// developer messages hoisted into `system`; `tool` messages turned into `tool_result`
/// blocks placed first in one user message; consecutive same-role messages merged; tool
/// call ids made valid; `max_tokens` filled in.
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, WireError> {
    // An OpenAI assistant's refusal is what the model said: Anthropic has it as text.
    let req = &*req.with_refusals_as_text();
    // OpenAI tool calls kept verbatim (no id or type, arguments not a string) go as calls.
    let req = &*req.with_lenient_tool_calls();
    let plan = Plan::build(req, opts)?;
    let mut w = JsonWriter::with_capacity(req.size_hint + req.size_hint / 8 + 256);
    plan.write(&mut w).map_err(WireError::Unsupported)?;
    Ok(w.into_bytes())
}

/// The `max_tokens` sent for a request that set none (an OpenAI client's means "as much
/// as the model can"): the model's output limit for the Claude models whose limit is
/// known (by name, also as a dated, Bedrock or Vertex id), 32000 for later Claude 4+
/// models, else 4096 (other Anthropic-compatible servers). A whole (non-streamed) answer
/// is held to 21333 tokens: about ten minutes of generation, the default `total`
/// timeout, and where Anthropic's SDKs require streaming.
pub fn default_max_tokens(model: &str, stream: bool) -> u32 {
    known_limit(model, stream).unwrap_or(4_096)
}

/// [`default_max_tokens`] for a Claude model whose output limit is known.
fn known_limit(model: &str, stream: bool) -> Option<u32> {
    const LIMITS: &[(&str, u32)] = &[
        ("claude-opus-4-5", 64_000),
        ("claude-opus-4-1", 32_000),
        ("claude-opus-4-0", 32_000),
        ("claude-opus-4-2", 32_000),
        ("claude-opus-4@", 32_000),
        ("claude-sonnet-4", 64_000),
        ("claude-haiku-4", 64_000),
        ("claude-3-7-sonnet", 64_000),
        ("claude-3-5-", 8_192),
        ("claude-3-", 4_096),
    ];
    let m = model.to_ascii_lowercase();
    let limit = match ClaudeVersion::of(&m) {
        // Opus from 4.6, and every Claude 5 model and family after (Fable, Mythos):
        // 128K. (Sonnet 4.6 and Haiku 4.x are in the table.)
        Some(v) if v.at_least(5, 0) || (v.family == "opus" && v.at_least(4, 6)) => 128_000,
        _ => LIMITS
            .iter()
            .find(|(name, _)| m.contains(name))
            .map(|&(_, limit)| limit)
            .or_else(|| ClaudeVersion::of(&m).map(|_| 32_000))?,
    };
    Some(if stream { limit } else { limit.min(21_333) })
}

/// The forms of thinking a Claude model takes, by its id (also a dated, Bedrock or Vertex
/// one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThinkingForm {
    /// Only a budget (`{"type":"enabled","budget_tokens":N}`): Claude before 4.6, and any
    /// model not named as a Claude model.
    Budget,
    /// Adaptive thinking (`{"type":"adaptive"}`, `output_config.effort`) and a budget:
    /// Claude 4.6.
    Both,
    /// Adaptive thinking only, a budget being refused with a 400: Claude 4.7 on.
    Adaptive,
}

/// Whether a model id names Claude `major.minor` or later (also a dated, Bedrock or Vertex
/// id; Claude 3's `claude-3-5-sonnet` form is never).
pub fn claude_at_least(model: &str, major: u32, minor: u32) -> bool {
    ClaudeVersion::of(&model.to_ascii_lowercase()).is_some_and(|v| v.at_least(major, minor))
}

/// OpenAI's `reasoning_effort` as Anthropic's `output_config.effort` for a Claude model
/// that takes adaptive thinking: `minimal` is the least there is (`low`); `xhigh` came
/// with Claude 4.7 (`adaptive_only`; 4.6 has `max` above `high`). `None`: no thinking
/// (`none`, or a level Anthropic has no counterpart for).
pub fn effort_level(reasoning_effort: &str, adaptive_only: bool) -> Option<&'static str> {
    Some(match reasoning_effort {
        "minimal" | "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "xhigh" if adaptive_only => "xhigh",
        "xhigh" => "max",
        _ => return None,
    })
}

/// Whether a Claude model refuses `temperature`, `top_p` and `top_k` (a 400, "`temperature`
/// is deprecated for this model"): Claude 4.7 on, as for thinking budgets (also a dated,
/// Bedrock or Vertex id).
pub fn sampling_refused(model: &str) -> bool {
    thinking_form(model) == ThinkingForm::Adaptive
}

/// [`ThinkingForm`] for a model id.
pub fn thinking_form(model: &str) -> ThinkingForm {
    match ClaudeVersion::of(&model.to_ascii_lowercase()) {
        Some(v) if v.budget_refused() => ThinkingForm::Adaptive,
        Some(v) if v.adaptive() => ThinkingForm::Both,
        _ => ThinkingForm::Budget,
    }
}

/// A Claude model's family and version, read from its id (also a dated, Bedrock or
/// Vertex one): `claude-opus-4-6` is opus 4.6, `us.anthropic.claude-fable-5-1-v1:0` fable
/// 5.1, `claude-sonnet-4-20250514` sonnet 4.0. Only the `claude-<family>-<major>` form
/// (Claude 4 on) is read; Claude 3's `claude-3-5-sonnet` form is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClaudeVersion<'a> {
    family: &'a str,
    major: u32,
    minor: u32,
}

impl<'a> ClaudeVersion<'a> {
    /// `m` in lower case.
    fn of(m: &'a str) -> Option<ClaudeVersion<'a>> {
        let rest = &m[m.find("claude-")? + "claude-".len()..];
        let family_len = rest.find(|c: char| !c.is_ascii_lowercase())?;
        let (family, rest) = rest.split_at(family_len);
        let rest = rest.strip_prefix('-')?;
        // One or two digits: more is a date (`claude-opus-4-20250514`).
        let number = |s: &str| -> Option<(u32, usize)> {
            let n = s.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || n > 2 {
                return None;
            }
            Some((s[..n].parse().ok()?, n))
        };
        let (major, n) = number(rest)?;
        let minor = rest[n..]
            .strip_prefix(['-', '.'])
            .and_then(number)
            .map_or(0, |(minor, _)| minor);
        (!family.is_empty() && major >= 4).then_some(ClaudeVersion {
            family,
            major,
            minor,
        })
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Takes adaptive thinking (`{"type":"adaptive"}` and `output_config.effort`): Claude
    /// 4.6 on. From 4.7 (and Claude 5, Fable, Mythos) the budget form is refused.
    fn adaptive(&self) -> bool {
        self.at_least(4, 6)
    }

    /// Refuses `{"type":"enabled","budget_tokens":N}` with a 400.
    fn budget_refused(&self) -> bool {
        self.at_least(4, 7)
    }
}

/// Keys written by the encoder, so kept fields never duplicate them.
struct Written(Vec<&'static str>);

impl Written {
    fn key(&mut self, w: &mut JsonWriter, k: &'static str) {
        self.0.push(k);
        w.key(k);
    }
}

fn thinking(w: &mut JsonWriter, t: &ThinkingConfig) {
    match t {
        ThinkingConfig::Unknown(raw) => w.raw_value(raw),
        ThinkingConfig::Enabled { budget_tokens } => {
            w.begin_object();
            w.key("type");
            w.raw("\"enabled\"");
            w.key("budget_tokens");
            w.u64(u64::from(*budget_tokens));
            w.end_object();
        }
        ThinkingConfig::Adaptive(Some(raw)) => w.raw_value(raw),
        ThinkingConfig::Adaptive(None) => w.raw(r#"{"type":"adaptive"}"#),
        ThinkingConfig::Disabled => w.raw(r#"{"type":"disabled"}"#),
    }
}

fn tool(w: &mut JsonWriter, t: &Tool, out: Out) -> Result<(), String> {
    match t {
        Tool::Unknown { dialect, raw, .. } if *dialect == Dialect::Anthropic => w.raw_value(raw),
        Tool::Unknown { name, .. } => {
            return Err(format!(
                "tool `{}` is not a function tool and cannot be sent to Anthropic",
                name.as_deref().unwrap_or("?")
            ))
        }
        Tool::Function(f) => {
            w.begin_object();
            w.key("name");
            w.string(&f.name);
            if let Some(d) = &f.description {
                w.key("description");
                w.json_str(d);
            }
            match &f.parameters {
                Some(p) if out.same => {
                    w.key("input_schema");
                    w.raw_value(p);
                }
                // Anthropic requires `"type": "object"`; OpenAI takes `{}` or a schema of
                // properties alone. A strict tool's schema is fitted to what Claude's
                // constrained decoding takes.
                Some(p) => {
                    w.key("input_schema");
                    let fitted = (f.strict == Some(true))
                        .then(|| crate::schema::for_claude(p))
                        .flatten();
                    object_schema(w, fitted.as_deref().unwrap_or(p));
                }
                // Anthropic requires a schema; OpenAI allows none.
                None if !out.same => {
                    w.key("input_schema");
                    w.raw(r#"{"type":"object","properties":{}}"#);
                }
                None => {}
            }
            if let Some(st) = f.strict {
                w.key("strict");
                w.bool(st);
            }
            if let Some(c) = &f.cache_control {
                w.key("cache_control");
                w.raw_value(c);
            }
            if out.same {
                w.extra(&f.extra, &[]);
            }
            w.end_object();
        }
    }
    Ok(())
}

/// Writes an OpenAI function's parameters as an Anthropic `input_schema`: as they are
/// when they say `"type"`, else with `"type": "object"` added (not an object: an empty
/// object schema).
fn object_schema(w: &mut JsonWriter, p: &RawValue) {
    // (Keys as `String`: a borrowed key cannot hold an escape.)
    let Ok(fields) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(p.get())
    else {
        w.raw(r#"{"type":"object","properties":{}}"#);
        return;
    };
    if fields.contains_key("type") {
        w.raw_value(p);
        return;
    }
    w.begin_object();
    w.key("type");
    w.raw("\"object\"");
    for (k, v) in fields {
        w.key_escaped(&k);
        w.raw_value(v);
    }
    w.end_object();
}

fn tool_choice(
    w: &mut JsonWriter,
    choice: Option<&ToolChoice>,
    parallel: Option<bool>,
) -> Result<(), String> {
    if let Some(ToolChoice::Unknown { dialect, raw }) = choice {
        if *dialect == Dialect::Anthropic {
            w.raw_value(raw);
            return Ok(());
        }
        return Err("this tool_choice form cannot be sent to Anthropic".into());
    }
    w.begin_object();
    w.key("type");
    match choice {
        Some(ToolChoice::Required) => w.raw("\"any\""),
        Some(ToolChoice::None) => w.raw("\"none\""),
        Some(ToolChoice::Tool(name)) => {
            w.raw("\"tool\"");
            w.key("name");
            w.string(name);
        }
        _ => w.raw("\"auto\""),
    }
    // (`none` takes no other field: Anthropic refuses it with one.)
    if let Some(p) = parallel.filter(|_| !matches!(choice, Some(ToolChoice::None))) {
        w.key("disable_parallel_tool_use");
        w.bool(!p);
    }
    w.end_object();
    Ok(())
}

fn system_blocks(w: &mut JsonWriter, blocks: &[&TextBlock]) {
    if let [only] = blocks {
        if only.cache_control.is_none() {
            w.json_str(&only.text);
            return;
        }
    }
    w.begin_array();
    for t in blocks {
        w.begin_object();
        w.key("type");
        w.raw("\"text\"");
        w.key("text");
        w.json_str(&t.text);
        if let Some(c) = &t.cache_control {
            w.key("cache_control");
            w.raw_value(c);
        }
        w.end_object();
    }
    w.end_array();
}

impl Plan<'_> {
    fn message(&self, w: &mut JsonWriter, m: &OutMessage<'_>) -> Result<(), String> {
        w.begin_object();
        w.key("role");
        w.string(m.role);
        match m.source {
            Some(src) => {
                if src.content.form != weir_model::ContentForm::Absent
                    || !src.content.blocks.is_empty()
                {
                    w.key("content");
                    content(w, &src.content, self.out)?;
                }
                w.extra(&src.extra, &[]);
            }
            None => {
                w.key("content");
                w.begin_array();
                for b in &m.blocks {
                    let edits = BlockEdits {
                        id: b.id.as_deref(),
                        input: b.input.as_deref(),
                    };
                    block(w, b.block, self.out, edits)?;
                }
                w.end_array();
            }
        }
        w.end_object();
        Ok(())
    }

    fn write(&self, w: &mut JsonWriter) -> Result<(), String> {
        let r = self.req;
        let same = self.out.same;
        let mut k = Written(Vec::with_capacity(16));
        w.begin_object();
        if !self.opts.omit_model {
            k.key(w, "model");
            w.string(&r.model);
        }
        if same {
            if let Some(sys) = &r.system {
                k.key(w, "system");
                content(w, sys, self.out)?;
            }
        } else if !self.system.is_empty() {
            k.key(w, "system");
            system_blocks(w, &self.system);
        }
        k.key(w, "messages");
        w.begin_array();
        for m in &self.messages {
            self.message(w, m)?;
        }
        w.end_array();
        if self.opts.omit_max_tokens {
            // (Counting tokens: no output limit.)
        } else if !same || r.max_tokens.is_some() || !r.extra.contains("max_tokens") {
            k.key(w, "max_tokens");
            w.u64(u64::from(
                r.max_tokens.filter(|_| same).unwrap_or(self.max_tokens),
            ));
        }
        if let (Some(st), false) = (r.stream, self.opts.omit_stream) {
            k.key(w, "stream");
            w.bool(st);
        }
        if let Some(t) = self.temperature {
            k.key(w, "temperature");
            w.f64(t);
        }
        if let Some(t) = self.top_p {
            k.key(w, "top_p");
            w.f64(t);
        }
        if let Some(t) = self.top_k {
            k.key(w, "top_k");
            w.u64(u64::from(t));
        }
        if let Some(stop) = &r.stop {
            // Anthropic refuses a sequence of whitespace alone ("\n" is a common OpenAI
            // stop): it is left out of a translated request.
            let kept = |s: &&String| same || !s.trim().is_empty();
            if same || stop.sequences.iter().any(|s| kept(&s)) {
                k.key(w, "stop_sequences");
                w.begin_array();
                for s in stop.sequences.iter().filter(kept) {
                    w.string(s);
                }
                w.end_array();
            }
        }
        let has_tools = r.tools.as_ref().is_some_and(|t| !t.is_empty());
        if let (Some(tools), None) = (&r.tools, &self.web_search) {
            if same || has_tools {
                k.key(w, "tools");
                w.begin_array();
                for t in tools {
                    tool(w, t, self.out)?;
                }
                w.end_array();
            }
        } else if let Some(search) = &self.web_search {
            k.key(w, "tools");
            w.begin_array();
            for t in r.tools() {
                tool(w, t, self.out)?;
            }
            w.raw(search);
            w.end_array();
        }
        let parallel = if same {
            r.parallel_tool_calls
        } else {
            r.parallel_tool_calls.filter(|p| !p)
        };
        let wants_choice = r.tool_choice.is_some() || parallel.is_some();
        if wants_choice && (same || has_tools) {
            k.key(w, "tool_choice");
            tool_choice(w, r.tool_choice.as_ref(), parallel)?;
        }
        if let Some(t) = &self.thinking {
            k.key(w, "thinking");
            thinking(w, t);
        }
        if self.output_schema.is_some() || self.effort.is_some() {
            k.key(w, "output_config");
            w.begin_object();
            if let Some(effort) = self.effort {
                w.key("effort");
                w.string(effort);
            }
            if let Some(schema) = &self.output_schema {
                w.key("format");
                w.begin_object();
                w.key("type");
                w.string("json_schema");
                w.key("schema");
                w.raw_value(schema);
                w.end_object();
            }
            w.end_object();
        }
        match &r.metadata {
            Some(md) if same => {
                k.key(w, "metadata");
                w.begin_object();
                if let Some(u) = &md.user_id {
                    w.key("user_id");
                    w.string(u);
                }
                w.extra(&md.extra, &["user_id"]);
                w.end_object();
            }
            _ if same => {}
            _ => {
                if let Some(u) = r.end_user() {
                    k.key(w, "metadata");
                    w.begin_object();
                    w.key("user_id");
                    w.string(u);
                    w.end_object();
                }
            }
        }
        if same {
            let mut skip = k.0;
            if self.opts.omit_model || self.opts.omit_stream {
                skip.extend(["model", "stream"]);
            }
            if self.opts.omit_max_tokens {
                skip.push("max_tokens");
            }
            w.extra(&r.extra, &skip);
        }
        w.end_object();
        Ok(())
    }
}

/// A message to write, borrowing the canonical blocks.
struct OutMessage<'a> {
    role: &'static str,
    /// The source message's extra fields and content form (same-dialect only).
    source: Option<&'a Message>,
    blocks: Vec<OutBlock<'a>>,
}

struct OutBlock<'a> {
    block: &'a ContentBlock,
    id: Option<Cow<'a, str>>,
    input: Option<RawJson>,
}

struct Plan<'a> {
    req: &'a ChatRequest,
    opts: &'a EncodeOptions,
    out: Out,
    system: Vec<&'a TextBlock>,
    messages: Vec<OutMessage<'a>>,
    thinking: Option<Cow<'a, ThinkingConfig>>,
    max_tokens: u32,
    temperature: Option<f64>,
    /// `top_p` and `top_k` as sent: none where the model refuses sampling parameters.
    top_p: Option<f64>,
    top_k: Option<u32>,
    /// The JSON Schema an OpenAI client's `response_format` asks the answer to follow,
    /// sent as `output_config.format` (Anthropic's structured outputs).
    output_schema: Option<std::borrow::Cow<'a, serde_json::value::RawValue>>,
    /// `output_config.effort` for adaptive thinking mapped from `reasoning_effort`.
    effort: Option<&'static str>,
    /// Anthropic's web search tool, written as JSON, for an OpenAI client's
    /// `web_search_options`.
    web_search: Option<String>,
}

impl<'a> Plan<'a> {
    fn build(req: &'a ChatRequest, opts: &'a EncodeOptions) -> Result<Plan<'a>, WireError> {
        let same = req.origin == Some(Dialect::Anthropic);
        let mut system: Vec<&'a TextBlock> = Vec::new();
        let mut messages: Vec<OutMessage<'a>> = Vec::with_capacity(req.messages.len());
        if same {
            for m in &req.messages {
                let role = match m.role {
                    Role::Assistant => "assistant",
                    Role::System => "system",
                    _ => "user",
                };
                messages.push(OutMessage {
                    role,
                    source: Some(m),
                    // Written from `source` as it came; nothing to plan per block.
                    blocks: Vec::new(),
                });
            }
        } else {
            if let Some(sys) = &req.system {
                collect_system(sys, &mut system)?;
            }
            for (i, m) in req.messages.iter().enumerate() {
                let role = match m.role {
                    Role::System | Role::Developer => {
                        collect_system(&m.content, &mut system)?;
                        continue;
                    }
                    Role::Assistant => "assistant",
                    Role::User | Role::Tool => "user",
                    Role::Function => {
                        return Err(WireError::Unsupported(format!(
                            "messages[{i}]: `function` messages (deprecated OpenAI function calling) carry no call id; use tools"
                        )))
                    }
                };
                let mut blocks = Vec::with_capacity(m.content.blocks.len());
                for b in &m.content.blocks {
                    if let Some(ob) = OutBlock::translated(b)
                        .map_err(|e| WireError::Unsupported(format!("messages[{i}]: {e}")))?
                    {
                        blocks.push(ob);
                    }
                }
                if blocks.is_empty() {
                    continue;
                }
                match messages.last_mut() {
                    Some(last) if last.role == role => last.blocks.extend(blocks),
                    _ => messages.push(OutMessage {
                        role,
                        source: None,
                        blocks,
                    }),
                }
            }
            // Anthropic refuses empty content, so empty messages were left out above.
            req.check_kept_messages("Anthropic", messages.last().map(|m| m.role == "assistant"))?;
            // Anthropic wants every tool_result of a turn at the start of the next user
            // message, before any text.
            for m in messages.iter_mut().filter(|m| m.role == "user") {
                m.blocks
                    .sort_by_key(|b| !matches!(b.block, ContentBlock::ToolResult(_)));
            }
            req.check_translatable_to("Anthropic", opts.web_search)?;
        }
        let web_search = if same || !opts.web_search {
            None
        } else {
            web_search_tool(req)?
        };
        // JSON mode without a schema has no Anthropic counterpart: the prompt asks for
        // JSON (OpenAI requires it to), and the answer comes as text.
        // (Anthropic's own field passes through untouched, unread, for Anthropic clients.)
        let output_schema = if same {
            None
        } else {
            // (Fitted to what Claude's structured outputs take.)
            match req.output_format()? {
                Some(weir_model::OutputFormat::JsonSchema(s)) => Some(
                    crate::schema::for_claude(s)
                        .map_or(std::borrow::Cow::Borrowed(s), std::borrow::Cow::Owned),
                ),
                _ => None,
            }
        };
        let (mut thinking, effort) = thinking_for(req, opts, same, &messages);
        // (Looked up only when needed: most requests set their limit.)
        let default = || opts.limit_for(&req.model, req.stream == Some(true));
        let mut max_tokens = req.max_tokens.unwrap_or_else(default);
        if let Some(ThinkingConfig::Enabled { budget_tokens }) = thinking.as_deref() {
            // (A budget mapped from reasoning_effort already fits below a limit the client
            // set; this raises only the default limit, or one given with explicit thinking.)
            if !same && *budget_tokens >= max_tokens {
                max_tokens = budget_tokens.saturating_add(default().min(4096));
            }
        }
        // The target's own cap (`output_cap`) holds over any raise; a budget that no longer
        // fits below the limit is halved (at least the least Anthropic takes), or, with no
        // room for one, thinking goes.
        if let Some(cap) = req.output_cap.filter(|cap| max_tokens > *cap) {
            max_tokens = cap;
            if let Some(ThinkingConfig::Enabled { budget_tokens }) = thinking.as_deref() {
                if *budget_tokens >= max_tokens {
                    thinking = (max_tokens > MIN_BUDGET).then(|| {
                        Cow::Owned(ThinkingConfig::Enabled {
                            budget_tokens: (max_tokens / 2).max(MIN_BUDGET),
                        })
                    });
                }
            }
        }
        // Claude 4.7 on (Claude 5, Fable, Mythos) refuses temperature, top_p and top_k with
        // a 400 ("`temperature` is deprecated for this model"): a translated request, whose
        // client did not write it for Claude, leaves them out. (An Anthropic client's go as
        // they came: Anthropic's own error says what to change.)
        let sampling = same || !sampling_refused(&req.model);
        // OpenAI's temperature goes to 2; Anthropic's stops at 1.
        let temperature =
            req.temperature
                .filter(|_| sampling)
                .map(|t| if same { t } else { t.min(1.0) });
        // Current Claude models refuse temperature and top_p together; OpenAI clients
        // often send both (an Anthropic client's choice goes as it came).
        let top_p = req
            .top_p
            .filter(|_| sampling && (same || temperature.is_none()));
        let top_k = req.top_k.filter(|_| sampling);
        Ok(Plan {
            req,
            opts,
            out: Out {
                same,
                answer: false,
            },
            system,
            messages,
            thinking,
            max_tokens,
            temperature,
            top_p,
            top_k,
            output_schema,
            effort,
            web_search,
        })
    }
}

/// The name Anthropic's web search tool goes by.
const WEB_SEARCH: &str = "web_search";

/// Anthropic's web search tool for an OpenAI client's `web_search_options` (none when
/// absent or null): its approximate `user_location` moved up a level, as Anthropic has it.
/// `search_context_size` has no Anthropic counterpart and is not sent.
fn web_search_tool(req: &ChatRequest) -> Result<Option<String>, WireError> {
    let Some(raw) = req.extra.get("web_search_options") else {
        return Ok(None);
    };
    let bad = |what: &str| WireError::Malformed(format!("web_search_options: {what}"));
    let opts = match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Null) => return Ok(None),
        Ok(serde_json::Value::Object(o)) => o,
        _ => return Err(bad("must be an object")),
    };
    if req
        .tools()
        .iter()
        .any(|t| matches!(t, Tool::Function(f) if f.name == WEB_SEARCH))
    {
        return Err(WireError::Unsupported(format!(
            "web_search_options asks for Anthropic's web search tool, named `{WEB_SEARCH}`, and a function tool has that name too; rename the function"
        )));
    }
    let mut tool = serde_json::json!({"type": "web_search_20250305", "name": WEB_SEARCH});
    match opts.get("search_context_size") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(s)) if matches!(s.as_str(), "low" | "medium" | "high") => {}
        Some(_) => return Err(bad("search_context_size must be low, medium or high")),
    }
    match opts.get("user_location") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(loc)) => {
            if loc.get("type").and_then(serde_json::Value::as_str) != Some("approximate") {
                return Err(bad("user_location.type must be `approximate`"));
            }
            let mut out = serde_json::Map::new();
            out.insert("type".into(), "approximate".into());
            match loc.get("approximate") {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Object(a)) => {
                    for field in ["city", "region", "country", "timezone"] {
                        match a.get(field) {
                            None | Some(serde_json::Value::Null) => {}
                            Some(v @ serde_json::Value::String(_)) => {
                                out.insert(field.into(), v.clone());
                            }
                            Some(_) => {
                                return Err(bad(&format!(
                                    "user_location.approximate.{field} must be a string"
                                )))
                            }
                        }
                    }
                }
                Some(_) => return Err(bad("user_location.approximate must be an object")),
            }
            tool["user_location"] = serde_json::Value::Object(out);
        }
        Some(_) => return Err(bad("user_location must be an object")),
    }
    Ok(Some(tool.to_string()))
}

fn collect_system<'a>(c: &'a Content, into: &mut Vec<&'a TextBlock>) -> Result<(), WireError> {
    for b in &c.blocks {
        match b {
            // Anthropic refuses blank system text ("must contain non-whitespace text").
            ContentBlock::Text(t) if t.text.is_blank() => {}
            ContentBlock::Text(t) => into.push(t),
            other => {
                return Err(WireError::Unsupported(format!(
                    "system content of type `{}` cannot be sent to Anthropic",
                    other.type_name()
                )))
            }
        }
    }
    Ok(())
}

impl<'a> OutBlock<'a> {
    fn plain(block: &'a ContentBlock) -> Self {
        OutBlock {
            block,
            id: None,
            input: None,
        }
    }

    /// Prepares a block from another dialect; `None` drops it (empty text, unsigned
    /// reasoning that Anthropic would reject).
    fn translated(block: &'a ContentBlock) -> Result<Option<Self>, String> {
        Ok(Some(match block {
            // Anthropic refuses text blocks of whitespace alone; OpenAI answers often
            // hold one ("\n\n" before tool calls) that clients send back.
            ContentBlock::Text(t) if t.text.is_blank() => return Ok(None),
            ContentBlock::Thinking(t) if t.signature.is_none() || t.carries_state() => {
                return Ok(None)
            }
            ContentBlock::ToolUse(t) => OutBlock {
                block,
                id: Some(sanitize_tool_id(&t.id)),
                input: Some(t.input.to_object()),
            },
            ContentBlock::ToolResult(r) => {
                for inner in &r.content.blocks {
                    if !matches!(
                        inner,
                        ContentBlock::Text(_) | ContentBlock::Image(_) | ContentBlock::Document(_)
                    ) {
                        return Err(format!(
                            "tool result content of type `{}` cannot be sent to Anthropic",
                            inner.type_name()
                        ));
                    }
                }
                OutBlock {
                    block,
                    id: Some(sanitize_tool_id(&r.tool_use_id)),
                    input: None,
                }
            }
            ContentBlock::Unknown(u) if u.dialect != Dialect::Anthropic => {
                return Err(format!(
                    "content of type `{}` cannot be sent to Anthropic",
                    block.type_name()
                ))
            }
            _ => OutBlock::plain(block),
        }))
    }
}

/// Thinking to request: the client's own for Anthropic clients; for others, mapped from
/// `reasoning_effort`, and off when the tool turn the request continues holds calls
/// without the signed thinking Anthropic would demand before them.
/// With the effort to send as `output_config.effort` beside adaptive thinking mapped from
/// `reasoning_effort`.
fn thinking_for<'a>(
    req: &'a ChatRequest,
    opts: &EncodeOptions,
    same: bool,
    messages: &[OutMessage<'_>],
) -> (Option<Cow<'a, ThinkingConfig>>, Option<&'static str>) {
    if same {
        return (thinking_as_sent(req), None);
    }
    let model = req.model.to_ascii_lowercase();
    let claude = ClaudeVersion::of(&model);
    let mut effort = None;
    let t = translated_thinking(req, opts, messages, claude, &mut effort);
    // Claude 4.7 on refuses a thinking budget: the budget form an OpenAI client asked for
    // is adaptive thinking there, as Anthropic's migration guide has it.
    let t = match t {
        Some(t)
            if matches!(*t, ThinkingConfig::Enabled { .. })
                && claude.is_some_and(|c| c.budget_refused()) =>
        {
            Some(Cow::Owned(ThinkingConfig::Adaptive(None)))
        }
        t => t,
    };
    (t, effort)
}

/// An Anthropic client's own thinking, as it came, but for a continued tool turn another
/// upstream served.
fn thinking_as_sent(req: &ChatRequest) -> Option<Cow<'_, ThinkingConfig>> {
    // The tool turn the request continues (the last assistant turn, when the user
    // messages after it hold tool results), if another upstream served it: its
    // thinking carried that upstream's state, which is not sent, so it has no thinking
    // block before its calls, which Anthropic demands of that turn when thinking is
    // on: off for this request, as for translated history. (Earlier turns need none.)
    let last = req.messages.iter().rposition(|m| m.role == Role::Assistant);
    let continued = last.filter(|&i| {
        req.messages[i + 1..].iter().any(|m| {
            m.content
                .blocks
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolResult(_)))
        })
    });
    let lost_lead = continued.map(|i| &req.messages[i]).is_some_and(|m| {
        let blocks = &m.content.blocks;
        blocks.iter().any(|b| matches!(b, ContentBlock::ToolUse(_)))
            && blocks
                .iter()
                .any(|b| matches!(b, ContentBlock::Thinking(t) if t.carries_state()))
            && !matches!(
                blocks
                    .iter()
                    .find(|b| !matches!(b, ContentBlock::Thinking(t) if t.carries_state())),
                Some(ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_))
            )
    });
    if lost_lead
        && matches!(
            req.thinking,
            Some(ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive(_))
        )
    {
        return None;
    }
    req.thinking.as_ref().map(Cow::Borrowed)
}

/// Thinking for a request from another dialect: its own (an OpenAI client's `thinking`
/// extra field), else mapped from `reasoning_effort`: a budget, or for a Claude model
/// that takes adaptive thinking, that and an `effort`.
fn translated_thinking<'a>(
    req: &'a ChatRequest,
    opts: &EncodeOptions,
    messages: &[OutMessage<'_>],
    claude: Option<ClaudeVersion<'_>>,
    effort: &mut Option<&'static str>,
) -> Option<Cow<'a, ThinkingConfig>> {
    if let Some(t) = &req.thinking {
        if !matches!(t, ThinkingConfig::Unknown(_)) {
            return Some(Cow::Borrowed(t));
        }
    }
    // The tool turn the request continues (the last assistant turn, when a message after
    // it holds tool results) without thinking before its calls: Anthropic refuses thinking
    // then. Earlier turns need none (their thinking may be left out), so an agent that
    // made tool calls once keeps its reasoning for the next questions.
    let unsigned_tool_turn = || {
        let Some(last) = messages.iter().rposition(|m| m.role == "assistant") else {
            return false;
        };
        let continued = messages[last + 1..].iter().any(|m| {
            m.blocks
                .iter()
                .any(|b| matches!(b.block, ContentBlock::ToolResult(_)))
        });
        let m = &messages[last];
        continued
            && m.blocks
                .iter()
                .any(|b| matches!(b.block, ContentBlock::ToolUse(_)))
            && !matches!(
                m.blocks.first().map(|b| b.block),
                Some(ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_))
            )
    };
    // An OpenAI client's own `thinking` (Anthropic's object, sent as an extra field, as
    // Anthropic's OpenAI-compatible endpoint takes it) wins over its reasoning_effort;
    // off, like that, when a tool turn of the history lacks the signed thinking Anthropic
    // would demand before its calls.
    if let Some(raw) = req.extra.get("thinking") {
        let t = crate::request::thinking_from_raw(raw.to_owned());
        match t {
            ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive(_) => {
                return (!unsigned_tool_turn()).then_some(Cow::Owned(t));
            }
            ThinkingConfig::Disabled => return Some(Cow::Owned(t)),
            // Enabled with more than a budget (`display`): enabled with that budget (the
            // rest is Anthropic's default display); without a budget (DeepSeek's and Z.AI's
            // form), nothing Anthropic takes.
            ThinkingConfig::Unknown(raw) => {
                #[derive(serde::Deserialize)]
                struct Loose {
                    #[serde(rename = "type")]
                    ty: String,
                    budget_tokens: u32,
                }
                if let Ok(l) = serde_json::from_str::<Loose>(raw.get()) {
                    if l.ty == "enabled" && !unsigned_tool_turn() {
                        return Some(Cow::Owned(ThinkingConfig::Enabled {
                            budget_tokens: l.budget_tokens,
                        }));
                    }
                }
            }
        }
    }
    if !opts.thinking_from_reasoning_effort {
        return None;
    }
    // What the client set explicitly wins over reasoning it asked for by effort: Anthropic
    // refuses thinking with a forced tool, a temperature other than 1, top_k, or top_p
    // below 0.95. And OpenAI's output limit counts reasoning, so a limit that leaves no room
    // for Anthropic's smallest budget (1024) means no thinking.
    let forced_tool = matches!(
        req.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Tool(_))
    );
    // (Models that refuse sampling parameters are sent none.)
    let sampling = !claude.is_some_and(|c| c.budget_refused())
        && (req.temperature.is_some_and(|t| t != 1.0)
            || req.top_k.is_some()
            || req.top_p.is_some_and(|p| p < 0.95));
    if forced_tool || sampling || req.max_tokens.is_some_and(|m| m <= MIN_BUDGET) {
        return None;
    }
    if let Some(c) = claude.filter(ClaudeVersion::adaptive) {
        let level = effort_level(req.reasoning_effort.as_deref()?, c.budget_refused())?;
        if unsigned_tool_turn() {
            return None;
        }
        *effort = Some(level);
        return Some(Cow::Owned(ThinkingConfig::Adaptive(None)));
    }
    let budget = match req.reasoning_effort.as_deref()? {
        "minimal" | "none" => return None,
        "low" => 1024,
        "medium" => 4096,
        "high" => 16384,
        "xhigh" => 32768,
        _ => return None,
    };
    if unsigned_tool_turn() {
        return None;
    }
    // Below the client's own limit, which OpenAI counts reasoning in; without one, below
    // the limit sent for it (the model's, when known), leaving room for the answer.
    let budget = match req.max_tokens {
        Some(m) => budget.min(m - MIN_BUDGET).max(MIN_BUDGET),
        None => match opts
            .default_max_tokens
            .or_else(|| known_limit(&req.model, req.stream == Some(true)))
        {
            Some(limit) => budget.min(limit.saturating_sub(4096)).max(MIN_BUDGET),
            None => budget,
        },
    };
    Some(Cow::Owned(ThinkingConfig::Enabled {
        budget_tokens: budget,
    }))
}

/// Anthropic's smallest thinking budget.
const MIN_BUDGET: u32 = 1024;

#[cfg(test)]
mod tests {
    use super::default_max_tokens as d;

    #[test]
    fn default_max_tokens_knows_claude_ids_of_every_cloud() {
        assert_eq!(d("anthropic.claude-sonnet-4-5-20250929-v1:0", true), 64_000);
        assert_eq!(d("us.anthropic.claude-opus-4-20250514-v1:0", true), 32_000);
        assert_eq!(d("claude-opus-4@20250514", true), 32_000);
        assert_eq!(d("claude-opus-4-5@20251101", true), 64_000);
        assert_eq!(d("claude-haiku-4-5", false), 21_333);
        assert_eq!(d("claude-3-7-sonnet-latest", true), 64_000);
        assert_eq!(d("claude-sonnet-5", true), 128_000);
        assert_eq!(d("claude-opus-4-6", true), 128_000);
        assert_eq!(d("claude-opus-4-7@20260301", true), 128_000);
        assert_eq!(d("claude-sonnet-4-6", true), 64_000);
        assert_eq!(d("us.anthropic.claude-fable-5-1-v1:0", true), 128_000);
        assert_eq!(d("claude-mythos-5", false), 21_333);
        assert_eq!(d("claude-opus-5-5", true), 128_000);
        assert_eq!(d("anthropic.claude-v2", true), 4_096);
        assert_eq!(d("deepseek-chat", true), 4_096);
    }

    #[test]
    fn claude_versions_are_read_from_every_cloud_s_ids() {
        use super::ClaudeVersion as V;
        let v = |family, major, minor| {
            Some(V {
                family,
                major,
                minor,
            })
        };
        for (id, want) in [
            ("claude-opus-4-6", v("opus", 4, 6)),
            ("claude-sonnet-4-20250514", v("sonnet", 4, 0)),
            ("claude-sonnet-4-5-20250929", v("sonnet", 4, 5)),
            ("claude-opus-4@20250514", v("opus", 4, 0)),
            ("claude-opus-4-7@20260301", v("opus", 4, 7)),
            ("us.anthropic.claude-fable-5-1-v1:0", v("fable", 5, 1)),
            ("claude-opus-5", v("opus", 5, 0)),
            ("claude-sonnet-4.6", v("sonnet", 4, 6)),
            ("claude-3-5-sonnet-20241022", None),
            ("claude-3-7-sonnet-latest", None),
            ("anthropic.claude-v2", None),
            ("claude-instant-1", None),
            ("deepseek-chat", None),
        ] {
            assert_eq!(V::of(id), want, "{id}");
        }
        assert!(!V::of("claude-opus-4-5").unwrap().adaptive());
        assert!(V::of("claude-sonnet-4-6").unwrap().adaptive());
        assert!(!V::of("claude-sonnet-4-6").unwrap().budget_refused());
        assert!(V::of("claude-opus-4-7").unwrap().budget_refused());
        assert!(V::of("claude-mythos-5").unwrap().budget_refused());
    }
}
