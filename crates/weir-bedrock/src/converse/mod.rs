//! Encoding a canonical request as a Converse body (`/converse`, `/converse-stream`), for
//! every model that is not Anthropic's.
//!
//! Converse is its own dialect: system prompts in `system[]`, content blocks keyed by
//! kind (`{text}`, `{image}`, `{document}`, `{toolUse}`, `{toolResult}`,
//! `{reasoningContent}`, `{cachePoint}`), sampling in `inferenceConfig`, tools in
//! `toolConfig`, model-specific settings in `additionalModelRequestFields`. Requests from
//! either client dialect are translated the same way; fields Converse has no place for
//! are dropped (`top_k`, `metadata`, `parallel_tool_calls`).

use std::borrow::Cow;

use weir_anthropic::{sanitize_tool_id, EncodeOptions};
use weir_model::json_writer::JsonWriter;
use weir_model::{
    ChatRequest, Content, ContentBlock, DocumentBlock, ImageBlock, JsonStr, RawJson, Role,
    ThinkingConfig, Tool, ToolChoice, ToolResultBlock, WireError,
};

use crate::models::{base_model, claude_effort, reasoning_fields, supports_cache_points};

mod decode;
mod media;

pub use decode::{decode_converse_response, stop_reason, ConverseStream};
use media::{check_media, document, image, Names};

/// A block to write, with what the planner prepared for it.
enum Out<'a> {
    Text(&'a JsonStr),
    Image(&'a ImageBlock),
    Document(&'a DocumentBlock, String),
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: RawJson,
    },
    ToolResult(&'a ToolResultBlock, Cow<'a, str>, Vec<String>),
    Reasoning {
        text: &'a JsonStr,
        signature: &'a str,
    },
    Redacted(&'a str),
}

struct Block<'a> {
    out: Out<'a>,
    /// A `cachePoint` follows the block: the block's `cache_control`.
    cache: Option<&'a RawJson>,
}

struct Msg<'a> {
    role: &'static str,
    blocks: Vec<Block<'a>>,
}

/// The cache points a model takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caching {
    Off,
    FiveMinutes,
    OneHour,
}

impl Caching {
    fn on(self) -> bool {
        self != Caching::Off
    }
}

/// A `cachePoint` for a block's `cache_control`: with Anthropic's one-hour `ttl`, that
/// one where the model keeps it (Converse's default is five minutes).
fn cache_point(w: &mut JsonWriter, cache_control: &RawJson, caching: Caching) {
    #[derive(serde::Deserialize)]
    struct Cc<'a> {
        #[serde(borrow)]
        ttl: Option<&'a str>,
    }
    match serde_json::from_str::<Cc<'_>>(cache_control.get()) {
        Ok(Cc { ttl: Some("1h") }) if caching == Caching::OneHour => {
            w.raw(r#"{"cachePoint":{"type":"default","ttl":"1h"}}"#)
        }
        _ => w.raw(r#"{"cachePoint":{"type":"default"}}"#),
    }
}

fn block(w: &mut JsonWriter, b: &Block<'_>, caching: Caching) -> Result<(), String> {
    match &b.out {
        Out::Text(t) => {
            w.begin_object();
            w.key("text");
            w.json_str(t);
            w.end_object();
        }
        Out::Image(img) => image(w, img)?,
        Out::Document(doc, name) => document(w, doc, name)?,
        Out::ToolUse { id, name, input } => {
            w.begin_object();
            w.key("toolUse");
            w.begin_object();
            w.key("toolUseId");
            w.string(id);
            w.key("name");
            w.string(name);
            w.key("input");
            w.raw_value(input);
            w.end_object();
            w.end_object();
        }
        Out::ToolResult(r, id, doc_names) => {
            w.begin_object();
            w.key("toolResult");
            w.begin_object();
            w.key("toolUseId");
            w.string(id);
            w.key("content");
            w.begin_array();
            let mut wrote = false;
            let mut names = doc_names.iter();
            for inner in &r.content.blocks {
                match inner {
                    ContentBlock::Text(t) if t.text.is_blank() => {}
                    ContentBlock::Text(t) => {
                        w.begin_object();
                        w.key("text");
                        w.json_str(&t.text);
                        w.end_object();
                        wrote = true;
                    }
                    ContentBlock::Image(img) => {
                        image(w, img)?;
                        wrote = true;
                    }
                    ContentBlock::Document(doc) => {
                        document(w, doc, names.next().map_or("Document", String::as_str))?;
                        wrote = true;
                    }
                    other => {
                        return Err(format!(
                            "tool result content of type `{}` cannot be sent to Bedrock",
                            other.type_name()
                        ))
                    }
                }
            }
            if !wrote {
                // Converse refuses an empty result; an empty JSON object says "nothing".
                w.raw(r#"{"json":{}}"#);
            }
            w.end_array();
            if r.is_error == Some(true) {
                w.key("status");
                w.raw("\"error\"");
            }
            w.end_object();
            w.end_object();
        }
        Out::Reasoning { text, signature } => {
            w.begin_object();
            w.key("reasoningContent");
            w.begin_object();
            w.key("reasoningText");
            w.begin_object();
            w.key("text");
            w.json_str(text);
            w.key("signature");
            w.string(signature);
            w.end_object();
            w.end_object();
            w.end_object();
        }
        Out::Redacted(data) => {
            w.begin_object();
            w.key("reasoningContent");
            w.begin_object();
            w.key("redactedContent");
            w.string(data);
            w.end_object();
            w.end_object();
        }
    }
    if let Some(cc) = b.cache.filter(|_| caching.on()) {
        cache_point(w, cc, caching);
    }
    Ok(())
}

/// Prepares a block; `None` drops it (blank text, which Converse refuses as "blank";
/// reasoning without a signature, which
/// no Converse model takes back).
fn plan_block<'a>(b: &'a ContentBlock, names: &mut Names) -> Result<Option<Block<'a>>, String> {
    check_media(b)?;
    let (out, cache) = match b {
        ContentBlock::Text(t) if t.text.is_blank() => return Ok(None),
        ContentBlock::Text(t) => (Out::Text(&t.text), t.cache_control.as_ref()),
        ContentBlock::Image(i) => (Out::Image(i), i.cache_control.as_ref()),
        ContentBlock::Document(d) => (
            Out::Document(d, names.name(d.title.as_deref())),
            d.cache_control.as_ref(),
        ),
        ContentBlock::ToolUse(t) => (
            Out::ToolUse {
                id: sanitize_tool_id(&t.id),
                name: &t.name,
                input: t.input.to_object(),
            },
            t.cache_control.as_ref(),
        ),
        ContentBlock::ToolResult(r) => {
            let docs = r
                .content
                .blocks
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::Document(d) => Some(names.name(d.title.as_deref())),
                    _ => None,
                })
                .collect();
            (
                Out::ToolResult(r, sanitize_tool_id(&r.tool_use_id), docs),
                r.cache_control.as_ref(),
            )
        }
        // (Another upstream's state carried as a signature is none Bedrock takes.)
        ContentBlock::Thinking(t) => match &t.signature {
            Some(sig) if !sig.is_empty() && !t.carries_state() => (
                Out::Reasoning {
                    text: &t.thinking,
                    signature: sig,
                },
                None,
            ),
            _ => return Ok(None),
        },
        ContentBlock::RedactedThinking(r) => (Out::Redacted(&r.data), None),
        ContentBlock::Unknown(_) => {
            return Err(format!(
                "content of type `{}` cannot be sent to Bedrock Converse",
                b.type_name()
            ))
        }
    };
    Ok(Some(Block { out, cache }))
}

/// System text: from `system` and from system/developer messages, in order.
fn system_text<'a>(
    c: &'a Content,
    into: &mut Vec<(&'a JsonStr, Option<&'a RawJson>)>,
) -> Result<(), WireError> {
    for b in &c.blocks {
        match b {
            ContentBlock::Text(t) if t.text.is_blank() => {}
            ContentBlock::Text(t) => into.push((&t.text, t.cache_control.as_ref())),
            other => {
                return Err(WireError::Unsupported(format!(
                    "system content of type `{}` cannot be sent to Bedrock",
                    other.type_name()
                )))
            }
        }
    }
    Ok(())
}

/// Encodes a canonical request as a Converse body for `model`.
pub fn encode_converse(
    req: &ChatRequest,
    model: &str,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, WireError> {
    req.check_translatable("Bedrock")?;
    // An OpenAI assistant's refusal is what the model said: Converse has it as text.
    let req = &*req.with_refusals_as_text();
    // An Anthropic client's thinking with more than its type (`display`) is still thinking.
    let req = &*req.with_thinking_read();
    // OpenAI tool calls kept verbatim (no id or type, arguments not a string) go as calls.
    let req = &*req.with_lenient_tool_calls();
    // Claude Code's tool search results name tools Converse has declared anyway.
    let req = &*req.with_tool_references_as_text();
    let caching = match supports_cache_points(model) {
        false => Caching::Off,
        // Bedrock keeps an hour's cache for Claude 4.5 on only.
        true if weir_anthropic::claude_at_least(base_model(model), 4, 5) => Caching::OneHour,
        true => Caching::FiveMinutes,
    };
    let mut system: Vec<(&JsonStr, Option<&RawJson>)> = Vec::new();
    if let Some(sys) = &req.system {
        system_text(sys, &mut system)?;
    }
    let mut names = Names(Vec::new());
    let mut messages: Vec<Msg<'_>> = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            Role::System | Role::Developer => {
                system_text(&m.content, &mut system)?;
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
            if let Some(b) = plan_block(b, &mut names)
                .map_err(|e| WireError::Unsupported(format!("messages[{i}]: {e}")))?
            {
                blocks.push(b);
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => messages.push(Msg { role, blocks }),
        }
    }
    // Converse refuses empty content, so empty messages were left out above.
    req.check_kept_messages("Bedrock", messages.last().map(|m| m.role == "assistant"))?;
    // Tool results of a turn come first in the next user message, before any text.
    for m in messages.iter_mut().filter(|m| m.role == "user") {
        m.blocks
            .sort_by_key(|b| !matches!(b.out, Out::ToolResult(..)));
    }
    let has_tool_blocks = messages
        .iter()
        .flat_map(|m| &m.blocks)
        .any(|b| matches!(b.out, Out::ToolUse { .. } | Out::ToolResult(..)));

    let thinking_explicit = matches!(
        req.thinking,
        Some(ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive(_))
    );
    let (reasoning, budget) = if thinking_explicit
        || (opts.thinking_from_reasoning_effort && req.reasoning_effort.is_some())
    {
        reasoning_fields(model, req)
    } else {
        (None, None)
    };
    // A turn with tool calls but no signed reasoning before them: Claude refuses thinking
    // when earlier tool calls came so.
    let unsigned = |m: &Msg<'_>| {
        m.role == "assistant"
            && m.blocks
                .iter()
                .any(|b| matches!(b.out, Out::ToolUse { .. }))
            && !matches!(
                m.blocks.first().map(|b| &b.out),
                Some(Out::Reasoning { .. } | Out::Redacted(_))
            )
    };
    let unsigned_tool_turn = messages.iter().any(unsigned);
    // The turn being continued (tool results after it) so: refused even when the client
    // asked for thinking (its reasoning there came from another upstream, whose state is
    // not sent).
    let continued_unsigned = messages
        .iter()
        .rposition(|m| m.role == "assistant")
        .is_some_and(|last| {
            unsigned(&messages[last])
                && messages[last + 1..].iter().any(|n| {
                    n.blocks
                        .iter()
                        .any(|b| matches!(b.out, Out::ToolResult(..)))
                })
        });
    // (Adaptive thinking has no budget, and is thinking all the same.)
    let claude_thinking = reasoning.as_ref().is_some_and(|(k, _)| *k == "thinking");
    let (mut reasoning, budget) =
        if claude_thinking && ((!thinking_explicit && unsigned_tool_turn) || continued_unsigned) {
            (None, None)
        } else {
            (reasoning, budget)
        };
    // Adaptive thinking's effort, in Anthropic's `output_config`.
    let effort = reasoning
        .as_ref()
        .filter(|(k, v)| *k == "thinking" && v.contains("adaptive"))
        .and_then(|_| claude_effort(model, req));
    // A request without a limit (an OpenAI client's, Codex's) keeps the model's own
    // default: the provider's `default_max_tokens` is often set for its Claude models (read
    // through InvokeModel), and would be too large for others (a ValidationException).
    let mut max_tokens = req.max_tokens;
    if let Some(b) = budget {
        let default = opts.default_max_tokens.unwrap_or(4096);
        let needed = max_tokens.unwrap_or(default);
        max_tokens = Some(if b >= needed {
            b.saturating_add(default)
        } else {
            needed
        });
        // The target's own cap (`output_cap`) holds over that raise; the budget is fitted
        // below it (halved, at least 1024, Claude's least), or thinking goes.
        if let Some(cap) = req
            .output_cap
            .filter(|cap| max_tokens.is_some_and(|m| m > *cap))
        {
            max_tokens = Some(cap);
            if b >= cap {
                reasoning = (cap > 1024).then(|| {
                    (
                        "thinking",
                        format!(
                            r#"{{"type":"enabled","budget_tokens":{}}}"#,
                            (cap / 2).max(1024)
                        ),
                    )
                });
            }
        }
    }

    let mut w = JsonWriter::with_capacity(req.size_hint + req.size_hint / 4 + 256);
    let fail = |e: String| WireError::Unsupported(e);
    w.begin_object();
    w.key("messages");
    w.begin_array();
    for m in &messages {
        w.begin_object();
        w.key("role");
        w.string(m.role);
        w.key("content");
        w.begin_array();
        for b in &m.blocks {
            block(&mut w, b, caching).map_err(fail)?;
        }
        w.end_array();
        w.end_object();
    }
    w.end_array();
    if !system.is_empty() {
        w.key("system");
        w.begin_array();
        for (t, cache) in &system {
            w.begin_object();
            w.key("text");
            w.json_str(t);
            w.end_object();
            if let Some(cc) = cache.filter(|_| caching.on()) {
                cache_point(&mut w, cc, caching);
            }
        }
        w.end_array();
    }
    // (Converse refuses an empty sequence, which stops nothing anyway.)
    let stops: Vec<&String> = req
        .stop
        .iter()
        .flat_map(|s| &s.sequences)
        .filter(|s| !s.is_empty())
        .collect();
    // Claude 4.7 on refuses temperature and top_p (a 400); earlier Claude models refuse
    // the two together (OpenAI clients often send both): the temperature is kept.
    let sampling = !weir_anthropic::sampling_refused(base_model(model));
    let temperature = req.temperature.filter(|_| sampling);
    let top_p = req
        .top_p
        .filter(|_| sampling && (temperature.is_none() || !model.contains("anthropic.")));
    if max_tokens.is_some() || temperature.is_some() || top_p.is_some() || !stops.is_empty() {
        w.key("inferenceConfig");
        w.begin_object();
        if let Some(n) = max_tokens {
            w.key("maxTokens");
            w.u64(u64::from(n));
        }
        if let Some(t) = temperature {
            w.key("temperature");
            // OpenAI's range goes to 2; Converse models take 0..=1.
            w.f64(t.clamp(0.0, 1.0));
        }
        if let Some(p) = top_p {
            w.key("topP");
            w.f64(p);
        }
        if !stops.is_empty() {
            w.key("stopSequences");
            w.begin_array();
            for s in stops {
                w.string(s);
            }
            w.end_array();
        }
        w.end_object();
    }
    tool_config(&mut w, req, &messages, has_tool_blocks, caching)?;
    // Structured outputs: Converse takes the JSON Schema as a string. JSON mode without a
    // schema has no Converse counterpart (the prompt asks for JSON).
    if let Some(weir_model::OutputFormat::JsonSchema(schema)) = req.output_format()? {
        w.key("outputConfig");
        w.begin_object();
        w.key("textFormat");
        w.begin_object();
        w.key("type");
        w.string("json_schema");
        w.key("structure");
        w.begin_object();
        w.key("jsonSchema");
        w.begin_object();
        w.key("schema");
        w.string(schema.get());
        w.end_object();
        w.end_object();
        w.end_object();
        w.end_object();
    }
    if let Some((key, value)) = reasoning {
        w.key("additionalModelRequestFields");
        w.begin_object();
        w.key(key);
        w.raw(&value);
        if let Some(effort) = effort {
            w.key("output_config");
            w.begin_object();
            w.key("effort");
            w.string(effort);
            w.end_object();
        }
        w.end_object();
    }
    w.end_object();
    tracing::trace!(model = base_model(model), "encoded a Converse request");
    Ok(w.into_bytes())
}

fn tool_config(
    w: &mut JsonWriter,
    req: &ChatRequest,
    messages: &[Msg<'_>],
    has_tool_blocks: bool,
    caching: Caching,
) -> Result<(), WireError> {
    let tools = req.tools();
    let choice_none = matches!(req.tool_choice, Some(ToolChoice::None));
    // Converse has no "none": without tool history the tools are left out; with it they
    // must stay (Converse refuses toolUse blocks without a toolConfig), unenforced.
    if !has_tool_blocks && (tools.is_empty() || choice_none) {
        return Ok(());
    }
    w.key("toolConfig");
    w.begin_object();
    w.key("tools");
    w.begin_array();
    if tools.is_empty() {
        // Tool history without tools (OpenAI allows it): declare the tools it used.
        let mut seen: Vec<&str> = Vec::new();
        for b in messages.iter().flat_map(|m| &m.blocks) {
            if let Out::ToolUse { name, .. } = &b.out {
                if !seen.contains(name) {
                    seen.push(name);
                    w.begin_object();
                    w.key("toolSpec");
                    w.begin_object();
                    w.key("name");
                    w.string(name);
                    w.key("inputSchema");
                    w.raw(r#"{"json":{"type":"object","properties":{}}}"#);
                    w.end_object();
                    w.end_object();
                }
            }
        }
    }
    for t in tools {
        let f = match t {
            Tool::Function(f) => f,
            Tool::Unknown { name, .. } => {
                return Err(WireError::Unsupported(format!(
                    "tool `{}` is not a function tool and cannot be sent to Bedrock Converse",
                    name.as_deref().unwrap_or("?")
                )))
            }
        };
        w.begin_object();
        w.key("toolSpec");
        w.begin_object();
        w.key("name");
        w.string(&f.name);
        if let Some(d) = f.description.as_ref().filter(|d| !d.is_empty()) {
            w.key("description");
            w.json_str(d);
        }
        w.key("inputSchema");
        w.begin_object();
        w.key("json");
        match &f.parameters {
            Some(p) => w.raw_value(p),
            None => w.raw(r#"{"type":"object","properties":{}}"#),
        }
        w.end_object();
        w.end_object();
        w.end_object();
        if let Some(cc) = f.cache_control.as_ref().filter(|_| caching.on()) {
            cache_point(w, cc, caching);
        }
    }
    w.end_array();
    match &req.tool_choice {
        Some(ToolChoice::Auto) => w.raw_fields(r#""toolChoice":{"auto":{}}"#),
        Some(ToolChoice::Required) => w.raw_fields(r#""toolChoice":{"any":{}}"#),
        Some(ToolChoice::Tool(name)) => {
            w.key("toolChoice");
            w.begin_object();
            w.key("tool");
            w.begin_object();
            w.key("name");
            w.string(name);
            w.end_object();
            w.end_object();
        }
        Some(ToolChoice::Unknown { .. }) => {
            return Err(WireError::Unsupported(
                "this tool_choice form cannot be sent to Bedrock Converse".to_owned(),
            ))
        }
        Some(ToolChoice::None) | None => {}
    }
    w.end_object();
    Ok(())
}
