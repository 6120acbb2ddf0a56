//! The Responses API bridge: a Responses request served by a chat upstream (Anthropic,
//! Bedrock, Vertex, Gemini, Ollama), for clients that speak nothing else (Codex, the
//! Vercel AI SDK's default OpenAI model, the OpenAI Agents SDK).
//!
//! The request becomes a canonical chat request as an OpenAI client's would
//! ([`chat_request`]); the answer becomes a Responses object ([`response_body`]) or the
//! Responses stream events ([`StreamBridge`]). What needs a response an upstream account
//! stored (`previous_response_id`, `conversation`, background mode, stored prompts,
//! `file_id`s) is refused, so the router passes the target over; `item_reference`s to
//! items this process answered the same client key with are read from its memory
//! (`remember`).
//!
//! Reasoning: a Claude thinking block goes out as a `reasoning` item whose one summary part
//! is the whole thinking text and whose `encrypted_content` carries its signature
//! ([`SIGNED_THINKING`]); sent back (Codex keeps `encrypted_content` with
//! `store: false`), it is the signed thinking block again. Other providers' encrypted
//! reasoning (OpenAI's own) is left out: only its account can read it.

use serde_json::{json, Map, Value};
use weir_model::raw::to_raw;
use weir_model::request::{FunctionTool, Metadata, Tool, ToolChoice};
use weir_model::stream::Delta;
use weir_model::{
    ApiError, ChatRequest, ChatResponse, Content, ContentBlock, ContentForm, Dialect,
    DocumentBlock, Extra, ImageBlock, JsonStr, MediaSource, Message, RedactedThinkingBlock,
    ResponsesRequest, Role, StopReason, StreamEvent, TextBlock, ThinkingBlock, ToolInput,
    ToolResultBlock, ToolUseBlock, Usage, WireError,
};

/// The prefix of a `reasoning` item's `encrypted_content` that is a Claude thinking
/// block's signature (the item's summary being its text).
pub const SIGNED_THINKING: &str = "weir.thinking.v1:";
/// The prefix of a `reasoning` item's `encrypted_content` that is Claude's redacted
/// thinking.
pub const REDACTED_THINKING: &str = "weir.redacted.v1:";
/// The `encrypted_content` of a `reasoning` item whose thinking has no signature (an
/// OpenAI-compatible upstream's `reasoning_content`: DeepSeek, Z.AI): clients that keep
/// encrypted reasoning (Codex) send the item back, and its summary goes back to the
/// upstream as the turn's reasoning, which DeepSeek's thinking mode requires on tool-call
/// turns.
pub const UNSIGNED_REASONING: &str = "weir.reasoning.v1:";

/// `req` without the reasoning items the bridge wrote (their `encrypted_content` starts
/// `weir.`: Claude's signed or redacted thinking, another service's reasoning), or `None`
/// when it holds none. For an upstream that serves the Responses API itself: it would
/// refuse encrypted content it did not write (a conversation that moved to it from a
/// bridged target), as the bridge leaves out OpenAI's. (`input` is then written anew: its
/// objects' keys in sorted order.)
pub fn without_bridged_reasoning(req: &ResponsesRequest) -> Option<ResponsesRequest> {
    let i = req
        .fields
        .iter()
        .position(|(k, v)| k == "input" && v.get().contains("\"weir."))?;
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(req.fields[i].1.get()) else {
        return None;
    };
    let bridged = |item: &Value| {
        item.get("type").and_then(Value::as_str) == Some("reasoning")
            && item
                .get("encrypted_content")
                .and_then(Value::as_str)
                .is_some_and(|c| {
                    [SIGNED_THINKING, REDACTED_THINKING, UNSIGNED_REASONING]
                        .iter()
                        .any(|p| c.starts_with(p))
                })
    };
    if !items.iter().any(bridged) {
        return None;
    }
    let kept: Vec<Value> = items.into_iter().filter(|item| !bridged(item)).collect();
    let mut out = req.clone();
    out.fields[i].1 = to_raw(&kept);
    Some(out)
}

/// Hosted tools OpenAI runs itself: no chat upstream has them, so they are left out.
const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer_use_preview",
    "computer_use",
    "local_shell",
    "mcp",
];

/// Records of hosted tool runs in a conversation's history: their results are in the
/// messages that follow, and no chat upstream can take the records.
const HOSTED_CALLS: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "computer_call",
    "computer_call_output",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
];

/// A Responses request as a chat request, with what its answer needs.
#[derive(Clone, Debug)]
pub struct Bridged {
    /// The chat request (an OpenAI client's, as far as encoders are concerned).
    pub chat: ChatRequest,
    /// What the answer is written with.
    pub answer: AnswerInfo,
}

/// What writing the answer back as a Responses object needs from the request.
#[derive(Clone, Debug, Default)]
pub struct AnswerInfo {
    /// Custom (free-text) tools, by the name the upstream knows, whose calls are
    /// `custom_tool_call` items.
    pub custom_tools: Vec<String>,
    /// Tools of a `namespace` (Codex's): the name the upstream knows, the namespace and
    /// the tool's own name, which calls are written back with.
    pub namespaced: Vec<(String, String, String)>,
    /// Whether the client lets its responses be kept (`store`, true unless it says
    /// false): then the items of the answer are remembered for `item_reference`s.
    pub store: bool,
    /// Hosted tools left out of the request (the answer's warning names them).
    pub dropped_tools: Vec<String>,
    /// The hosted web search asked for, as an OpenAI chat client's `web_search_options`
    /// (see [`search_options`]): sent where the upstream has a web search of its own
    /// (Claude's, Gemini's grounding), else left out, and said so.
    pub web_search: Option<Value>,
    /// The client key the answer's items are remembered for (`item_reference`s of
    /// another key never read them).
    pub owner: String,
    /// Echoed fields of the response object.
    pub echo: Map<String, Value>,
}

fn unsupported(what: impl Into<String>) -> WireError {
    WireError::Unsupported(what.into())
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError::Malformed(what.into())
}

/// Reads a Responses request as a chat request, for the client key `owner` (whose
/// remembered items its `item_reference`s may name).
pub fn chat_request(req: &ResponsesRequest, owner: &str) -> Result<Bridged, WireError> {
    let mut chat = ChatRequest {
        origin: Some(Dialect::OpenAi),
        bridged: true,
        model: req.model.clone(),
        output_cap: req.output_cap,
        ..ChatRequest::default()
    };
    let mut answer = AnswerInfo {
        store: req.stores(),
        owner: owner.to_owned(),
        ..AnswerInfo::default()
    };
    let mut messages: Vec<Message> = Vec::new();
    let mut instructions: Option<String> = None;
    let mut input: Option<Value> = None;
    let mut tools: Vec<Value> = Vec::new();
    let mut instruction_items: Option<Value> = None;
    let mut choice_namespace: Option<String> = None;
    for (k, raw) in &req.fields {
        let v: Value =
            serde_json::from_str(raw.get()).map_err(|e| WireError::from_json(k.as_str(), &e))?;
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "previous_response_id" | "conversation" | "prompt" => {
                return Err(unsupported(format!(
                    "`{k}` names state an OpenAI account keeps; a target reached through the Responses bridge has none"
                )))
            }
            "background" if v == Value::Bool(true) => {
                return Err(unsupported(
                    "background mode needs an upstream that serves the Responses API",
                ))
            }
            "input" => input = Some(v),
            "instructions" => match v {
                Value::String(s) => instructions = Some(s),
                // Instructions as input items (a stored prompt's): their messages first.
                items @ Value::Array(_) => instruction_items = Some(items),
                _ => return Err(malformed("instructions must be a string")),
            },
            "tools" => {
                let Value::Array(t) = v else {
                    return Err(malformed("tools must be an array"));
                };
                tools.extend(t);
            }
            "tool_choice" => {
                if !(v.is_string() || v.is_object()) {
                    return Err(malformed("tool_choice must be a string or an object"));
                }
                chat.tool_choice = Some(read_tool_choice(&v));
                choice_namespace = v.get("namespace").and_then(Value::as_str).map(str::to_owned);
            }
            "parallel_tool_calls" => {
                chat.parallel_tool_calls =
                    Some(v.as_bool().ok_or_else(|| malformed("parallel_tool_calls must be a boolean"))?)
            }
            "max_output_tokens" => {
                chat.max_tokens = Some(
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| malformed("max_output_tokens must be a positive integer"))?,
                );
            }
            "temperature" | "top_p" => {
                let n = v
                    .as_f64()
                    .ok_or_else(|| malformed(format!("{k} must be a number")))?;
                if k == "temperature" {
                    chat.temperature = Some(n);
                } else {
                    chat.top_p = Some(n);
                }
            }
            "stream" => {
                chat.stream = Some(v.as_bool().ok_or_else(|| malformed("stream must be a boolean"))?)
            }
            "reasoning" => {
                if let Some(e) = v.get("effort").and_then(Value::as_str) {
                    chat.reasoning_effort = Some(e.to_owned());
                }
            }
            "text" => {
                if let Some(f) = v.get("format").filter(|f| {
                    matches!(
                        f.get("type").and_then(Value::as_str),
                        Some("json_schema" | "json_object")
                    )
                }) {
                    // As Chat Completions' `response_format` (an OpenAI-compatible upstream,
                    // an Azure deployment, takes it as it is).
                    let format = if f["type"] == "json_schema" {
                        let mut named = Map::new();
                        for k in ["name", "schema", "strict", "description"] {
                            if let Some(v) = f.get(k) {
                                named.insert(k.to_owned(), v.clone());
                            }
                        }
                        json!({"type": "json_schema", "json_schema": named})
                    } else {
                        f.clone()
                    };
                    chat.extra.insert("response_format", to_raw(&format));
                }
            }
            // The end user: `user`, else `safety_identifier` (as for chat).
            "user" | "safety_identifier" => {
                if let Some(u) = v.as_str().filter(|u| !u.is_empty()) {
                    let m = chat.metadata.get_or_insert_with(Metadata::default);
                    if m.user_id.is_none() || k == "user" {
                        m.user_id = Some(u.to_owned());
                    }
                }
            }
            // Read by the gateway, or asking nothing a chat upstream could do: `store`
            // (nothing is stored: a bridged response cannot be continued by its id),
            // `include` (encrypted reasoning always comes), `metadata`,
            // `prompt_cache_key`, `service_tier`, `truncation`, `top_logprobs`,
            // `stream_options`, `max_tool_calls`, `text.verbosity`.
            _ => {}
        }
        if matches!(
            k.as_str(),
            "temperature"
                | "top_p"
                | "parallel_tool_calls"
                | "max_output_tokens"
                | "metadata"
                | "instructions"
                | "tools"
                | "tool_choice"
                | "reasoning"
                | "text"
        ) {
            answer.echo.insert(
                k.clone(),
                serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            );
        }
    }
    // Tools first (the `tools` field's, and those an input item adds: Codex's
    // `additional_tools`), so the history's calls are named as the tools are.
    if let Some(Value::Array(items)) = &input {
        for item in items {
            if item.get("type").and_then(Value::as_str) == Some("additional_tools") {
                if let Some(Value::Array(t)) = item.get("tools") {
                    tools.extend(t.iter().cloned());
                }
            }
        }
    }
    if !tools.is_empty() {
        let mut names: Vec<String> = Vec::new();
        tool_names(&tools, &mut names);
        let mut out = Vec::with_capacity(names.len());
        read_tools(&tools, None, &names, &mut out, &mut answer)?;
        chat.tools = Some(out);
    }
    // A tool named by its own name, as the upstream knows it: a namespace's by its
    // namespace, else the top-level tool of that name, else a namespace's of that name.
    let tools = chat.tools.as_deref().unwrap_or_default();
    if let Some(ToolChoice::Tool(n)) = &mut chat.tool_choice {
        let top_level = tools.iter().any(|t| {
            matches!(t, Tool::Function(f) if f.name == *n)
                && !answer.namespaced.iter().any(|(e, _, _)| e == n)
        });
        let exposed = match &choice_namespace {
            Some(ns) => answer.exposed(Some(ns), n).to_owned(),
            None if top_level => n.clone(),
            None => answer
                .namespaced
                .iter()
                .find(|(_, _, own)| own == n)
                .map_or_else(|| n.clone(), |(e, _, _)| e.clone()),
        };
        *n = exposed;
    }
    if let Some(items) = &instruction_items {
        input_items(items, &mut messages, &answer)?;
    }
    if let Some(text) = instructions {
        messages.insert(0, Message::text(Role::System, text));
    }
    match input {
        Some(Value::String(s)) => messages.push(Message::text(Role::User, s)),
        Some(items @ Value::Array(_)) => input_items(&items, &mut messages, &answer)?,
        Some(_) => return Err(malformed("input must be a string or an array of items")),
        None => {}
    }
    if !messages
        .iter()
        .any(|m| m.role != Role::System && m.role != Role::Developer)
    {
        return Err(malformed("input must hold at least one message"));
    }
    // As a chat client writes them: one text part as a string, and an assistant turn
    // without text (only calls) with `null` content (some services refuse `[]`).
    for m in &mut messages {
        let texts = m
            .content
            .blocks
            .iter()
            .filter(|b| {
                !matches!(
                    b,
                    ContentBlock::ToolUse(_)
                        | ContentBlock::Thinking(_)
                        | ContentBlock::RedactedThinking(_)
                )
            })
            .count();
        let text_only = m.content.blocks.iter().all(|b| {
            matches!(
                b,
                ContentBlock::Text(_)
                    | ContentBlock::ToolUse(_)
                    | ContentBlock::Thinking(_)
                    | ContentBlock::RedactedThinking(_)
            )
        });
        if m.role == Role::Assistant && texts == 0 {
            m.content.form = ContentForm::Null;
        } else if texts == 1 && text_only && m.role != Role::Tool {
            m.content.form = ContentForm::String;
        }
    }
    chat.messages = messages;
    // (The stream's usage, which chat streams report only when asked, is asked for by the
    // encoder for a bridged request, as the provider's options say.)
    Ok(Bridged { chat, answer })
}

/// Every tool name `tools` holds, namespaces' members included (a name twice: two tools).
fn tool_names(tools: &[Value], into: &mut Vec<String>) {
    for t in tools {
        match t.get("type").and_then(Value::as_str) {
            Some("namespace") => {
                if let Some(Value::Array(members)) = t.get("tools") {
                    tool_names(members, into);
                }
            }
            _ => {
                if let Some(n) = t.get("name").and_then(Value::as_str) {
                    into.push(n.to_owned());
                }
            }
        }
    }
}

/// The longest tool name upstreams take (Gemini's and Bedrock's limit, and OpenAI's).
const MAX_TOOL_NAME: usize = 64;

/// `name` as an upstream takes it: at most [`MAX_TOOL_NAME`] characters, a longer one cut
/// and ended with a hash of the whole (FNV-1a: the same on every instance and turn, so the
/// history's calls are named alike), which the answer maps back.
fn fitting(name: String) -> String {
    if name.len() <= MAX_TOOL_NAME {
        return name;
    }
    // (Bedrock's rule for the characters too: `[a-zA-Z0-9_-]`.)
    weir_model::wire::rewritten_id(&name, MAX_TOOL_NAME, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    })
}

/// Reads tools into `out`: functions; custom tools as functions taking `input`; a
/// namespace's tools as their own (named `<namespace>__<name>` when another tool anywhere
/// has the name: `names` holds them all), remembered in `answer` to name their calls
/// back; hosted tools left out.
fn read_tools(
    tools: &[Value],
    namespace: Option<(&str, &str)>,
    names: &[String],
    out: &mut Vec<Tool>,
    answer: &mut AnswerInfo,
) -> Result<(), WireError> {
    for t in tools {
        let ty = t.get("type").and_then(Value::as_str).unwrap_or("function");
        let name = |answer: &mut AnswerInfo| {
            let own = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| malformed(format!("a {ty} tool needs a name")))?;
            let Some((ns, _)) = namespace else {
                return Ok::<String, WireError>(own.to_owned());
            };
            let exposed = fitting(if names.iter().filter(|n| *n == own).count() > 1 {
                format!("{ns}__{own}")
            } else {
                own.to_owned()
            });
            answer
                .namespaced
                .push((exposed.clone(), ns.to_owned(), own.to_owned()));
            Ok(exposed)
        };
        // A namespace's description, which was the model's only word on the group.
        let described = |d: Option<&str>| -> Option<String> {
            match namespace {
                Some((ns, about)) if !about.is_empty() => Some(format!(
                    "{}\n\n(One of the `{ns}` tools: {about})",
                    d.unwrap_or_default()
                )),
                _ => d.map(str::to_owned),
            }
        };
        let description = t.get("description").and_then(Value::as_str);
        match ty {
            "namespace" => {
                let ns = t
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| malformed("a namespace tool needs a name"))?;
                let about = description.unwrap_or_default();
                if let Some(Value::Array(members)) = t.get("tools") {
                    read_tools(members, Some((ns, about)), names, out, answer)?;
                }
            }
            "function" => out.push(Tool::Function(FunctionTool {
                name: name(answer)?,
                description: described(description).map(JsonStr::from),
                parameters: t.get("parameters").filter(|p| !p.is_null()).map(to_raw),
                strict: t.get("strict").and_then(Value::as_bool),
                cache_control: None,
                extra: Extra::new(),
            })),
            "custom" => {
                // A free-text tool (Codex's `apply_patch`): a function taking the text as
                // `input`, its grammar told in the description.
                let name = name(answer)?;
                let mut desc = described(description).unwrap_or_default();
                if let Some(f) = t.get("format").filter(|f| f["type"] == "grammar") {
                    let syntax = f["syntax"].as_str().unwrap_or("grammar");
                    if let Some(def) = f["definition"].as_str() {
                        desc.push_str(&format!(
                            "\n\nThe input is text in this {syntax} grammar:\n{def}"
                        ));
                    }
                }
                out.push(Tool::Function(FunctionTool {
                    name: name.clone(),
                    description: Some(JsonStr::from(desc)),
                    parameters: Some(to_raw(&json!({
                        "type": "object",
                        "properties": {"input": {"type": "string", "description": "The tool's input, as free text."}},
                        "required": ["input"],
                        "additionalProperties": false
                    }))),
                    strict: None,
                    cache_control: None,
                    extra: Extra::new(),
                }));
                answer.custom_tools.push(name);
            }
            // (One search is enough: a second search tool adds nothing.)
            other if other.starts_with("web_search") => match search_options(t) {
                Some(_) if answer.web_search.is_some() => {}
                Some(opts) => answer.web_search = Some(opts),
                None => answer.dropped_tools.push(other.to_owned()),
            },
            other if HOSTED_TOOLS.contains(&other) => {
                answer.dropped_tools.push(other.to_owned());
            }
            other => {
                return Err(unsupported(format!(
                    "tools of type `{other}` cannot be sent through the Responses bridge"
                )))
            }
        }
    }
    Ok(())
}

/// A hosted `web_search` tool as an OpenAI chat client's `web_search_options`, which the
/// encoders of upstreams with a web search of their own translate: its approximate
/// `user_location` nested as chat completions have it, its `search_context_size` kept.
/// `None` for a search limited to some domains (`filters.allowed_domains`), which
/// `web_search_options` cannot say, or to OpenAI's cached index (`external_web_access:
/// false`, Codex's cached mode), where upstreams' searches are live: it is left out rather
/// than run wider than asked.
fn search_options(tool: &Value) -> Option<Value> {
    let domains = tool
        .pointer("/filters/allowed_domains")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty());
    if domains || tool.get("external_web_access") == Some(&Value::Bool(false)) {
        return None;
    }
    let mut opts = Map::new();
    if let Some(size @ Value::String(s)) = tool.get("search_context_size") {
        if matches!(s.as_str(), "low" | "medium" | "high") {
            opts.insert("search_context_size".into(), size.clone());
        }
    }
    if let Some(loc) = tool.get("user_location").and_then(Value::as_object) {
        let approximate: Map<String, Value> = ["city", "region", "country", "timezone"]
            .iter()
            .filter_map(|f| {
                loc.get(*f)
                    .filter(|v| v.is_string())
                    .map(|v| ((*f).to_owned(), v.clone()))
            })
            .collect();
        if !approximate.is_empty() {
            opts.insert(
                "user_location".into(),
                json!({"type": "approximate", "approximate": approximate}),
            );
        }
    }
    Some(Value::Object(opts))
}

impl AnswerInfo {
    /// The name the upstream knows a call of the client's tool by (a namespace's tool may
    /// have been renamed).
    fn exposed<'a>(&'a self, namespace: Option<&str>, name: &'a str) -> &'a str {
        match namespace {
            Some(ns) => self
                .namespaced
                .iter()
                .find(|(_, n, own)| n == ns && own == name)
                .map_or(name, |(exposed, _, _)| exposed.as_str()),
            None => name,
        }
    }

    /// The namespace and own name of a tool the upstream called by `exposed`.
    fn called<'a>(&'a self, exposed: &'a str) -> (Option<&'a str>, &'a str) {
        self.namespaced
            .iter()
            .find(|(e, _, _)| e == exposed)
            .map_or((None, exposed), |(_, ns, own)| {
                (Some(ns.as_str()), own.as_str())
            })
    }
}

fn read_tool_choice(v: &Value) -> ToolChoice {
    match v {
        Value::String(s) => match s.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => ToolChoice::Auto,
        },
        Value::Object(o) => match (
            o.get("type").and_then(Value::as_str),
            o.get("name").and_then(Value::as_str),
        ) {
            (Some("function" | "custom"), Some(n)) => ToolChoice::Tool(n.to_owned()),
            _ => ToolChoice::Auto,
        },
        _ => ToolChoice::Auto,
    }
}

/// The last message if it is the assistant's, else a new one.
fn assistant(messages: &mut Vec<Message>) -> &mut Message {
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        messages.push(Message {
            role: Role::Assistant,
            content: Content::blocks(Vec::new()),
            extra: Extra::new(),
        });
    }
    let last = messages.len() - 1;
    &mut messages[last]
}

fn input_items(
    items: &Value,
    messages: &mut Vec<Message>,
    answer: &AnswerInfo,
) -> Result<(), WireError> {
    let Value::Array(items) = items else {
        return Err(malformed("input must be a string or an array of items"));
    };
    // Reasoning given before the assistant turn it belongs to.
    let mut thinking: Vec<ContentBlock> = Vec::new();
    // An `item_reference` to an item this gateway answered with (and remembers), read as
    // that item; one it does not know (another instance's, forgotten, or an OpenAI
    // account's) is left out: the conversation goes on without it.
    let mut unknown = false;
    let resolved: Vec<std::borrow::Cow<'_, Value>> = items
        .iter()
        .filter_map(|item| {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                return Some(std::borrow::Cow::Borrowed(item));
            }
            let found = item
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| recall(&answer.owner, id));
            unknown |= found.is_none();
            found.map(std::borrow::Cow::Owned)
        })
        .collect();
    for item in resolved.iter().map(|c| c.as_ref()) {
        let ty =
            item.get("type")
                .and_then(Value::as_str)
                .unwrap_or(if item.get("role").is_some() {
                    "message"
                } else {
                    ""
                });
        // Reasoning after a turn's content (Gemini's signature on its last text comes as a
        // reasoning item after the message) stays with that turn, not the next.
        let closes_turn = match ty {
            "message" => item.get("role").and_then(Value::as_str) != Some("assistant"),
            "function_call_output" | "custom_tool_call_output" => true,
            _ => false,
        };
        if closes_turn && !thinking.is_empty() {
            if let Some(m) = messages.last_mut().filter(|m| m.role == Role::Assistant) {
                m.content.blocks.append(&mut thinking);
            }
        }
        match ty {
            "message" => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    // Chat-only services know `system`, not always `developer` (DeepSeek
                    // refuses it; chat templates drop it): Codex's instructions are in such
                    // messages.
                    Some("system" | "developer") => Role::System,
                    other => {
                        return Err(malformed(format!(
                            "a message's role must be user, assistant, system or developer, not {}",
                            other.unwrap_or("missing")
                        )))
                    }
                };
                let blocks = content_parts(item.get("content").unwrap_or(&Value::Null))?;
                if role == Role::Assistant {
                    let m = assistant(messages);
                    m.content.blocks.append(&mut thinking);
                    m.content.blocks.extend(blocks);
                } else {
                    messages.push(Message {
                        role,
                        content: Content::blocks(blocks),
                        extra: Extra::new(),
                    });
                }
            }
            "function_call" | "custom_tool_call" => {
                let call_id = str_field(item, "call_id")?;
                let name = answer.exposed(
                    item.get("namespace").and_then(Value::as_str),
                    str_field(item, "name")?,
                );
                let input = if ty == "function_call" {
                    item.get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                } else {
                    json!({"input": item.get("input").and_then(Value::as_str).unwrap_or_default()})
                        .to_string()
                };
                let m = assistant(messages);
                m.content.blocks.append(&mut thinking);
                m.content.blocks.push(ContentBlock::ToolUse(ToolUseBlock {
                    id: call_id.to_owned(),
                    name: name.to_owned(),
                    input: ToolInput::Arguments(input),
                    cache_control: None,
                    extra: Extra::new(),
                }));
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = str_field(item, "call_id")?;
                let content = match item.get("output") {
                    Some(Value::String(s)) => Content::text(s.as_str()),
                    Some(parts @ Value::Array(_)) => Content::blocks(content_parts(parts)?),
                    _ => Content::text(""),
                };
                messages.push(Message {
                    role: Role::Tool,
                    content: Content::blocks(vec![ContentBlock::ToolResult(ToolResultBlock {
                        tool_use_id: call_id.to_owned(),
                        content,
                        is_error: None,
                        cache_control: None,
                        extra: Extra::new(),
                    })]),
                    extra: Extra::new(),
                });
            }
            "reasoning" => {
                let sealed = item.get("encrypted_content").and_then(Value::as_str);
                let summary = || -> String {
                    item.get("summary")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect()
                };
                if let Some(sig) = sealed.and_then(|s| s.strip_prefix(SIGNED_THINKING)) {
                    thinking.push(ContentBlock::Thinking(ThinkingBlock {
                        thinking: JsonStr::from(summary()),
                        signature: Some(sig.to_owned()),
                        extra: Extra::new(),
                    }));
                } else if sealed == Some(UNSIGNED_REASONING) {
                    // (Unsigned: an upstream that signs its thinking drops it.)
                    thinking.push(ContentBlock::Thinking(ThinkingBlock {
                        thinking: JsonStr::from(summary()),
                        signature: None,
                        extra: Extra::new(),
                    }));
                } else if let Some(data) = sealed.and_then(|s| s.strip_prefix(REDACTED_THINKING)) {
                    thinking.push(ContentBlock::RedactedThinking(RedactedThinkingBlock {
                        data: data.to_owned(),
                        extra: Extra::new(),
                    }));
                }
                // (Another account's reasoning: only it can read it.)
            }
            // (Tools, read above.)
            "additional_tools" => {}
            t if HOSTED_CALLS.contains(&t) => {}
            other => {
                return Err(unsupported(format!(
                    "input items of type `{}` cannot be sent through the Responses bridge",
                    if other.is_empty() { "(none)" } else { other }
                )))
            }
        }
    }
    if !thinking.is_empty() {
        if let Some(m) = messages.last_mut().filter(|m| m.role == Role::Assistant) {
            m.content.blocks.append(&mut thinking);
        }
    }
    // A reference left out that took a call with it: its result would answer nothing,
    // which the upstream refuses. Said as what it is.
    if unknown {
        let calls: Vec<&str> = messages
            .iter()
            .flat_map(|m| &m.content.blocks)
            .filter_map(|b| match b {
                ContentBlock::ToolUse(c) => Some(c.id.as_str()),
                _ => None,
            })
            .collect();
        let orphan = messages.iter().flat_map(|m| &m.content.blocks).any(|b| {
            matches!(b, ContentBlock::ToolResult(r) if !calls.contains(&r.tool_use_id.as_str()))
        });
        if orphan {
            return Err(unsupported(
                "an item_reference names an item this gateway does not remember (made on another instance, or over an hour ago): send the items themselves (\"store\": false)",
            ));
        }
    }
    Ok(())
}

fn str_field<'a>(item: &'a Value, key: &str) -> Result<&'a str, WireError> {
    item.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(format!(
                "a {} item needs its `{key}`",
                item.get("type").and_then(Value::as_str).unwrap_or("input")
            ))
        })
}

fn content_parts(content: &Value) -> Result<Vec<ContentBlock>, WireError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![ContentBlock::Text(TextBlock::new(s.as_str()))]),
        Value::Array(parts) => parts,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(malformed(
                "a message's content must be a string or an array",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
        match ty {
            "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
                let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
                out.push(ContentBlock::Text(TextBlock::new(text)));
            }
            "refusal" => {
                let text = p.get("refusal").and_then(Value::as_str).unwrap_or_default();
                out.push(ContentBlock::Text(TextBlock::new(text)));
            }
            "input_image" => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    return Err(unsupported(
                        "an input_image by file_id names a file an OpenAI account stored",
                    ));
                };
                out.push(ContentBlock::Image(ImageBlock {
                    source: media(url),
                    detail: p.get("detail").and_then(Value::as_str).map(str::to_owned),
                    cache_control: None,
                    extra: Extra::new(),
                }));
            }
            "input_file" => {
                let source = if let Some(d) = p.get("file_data").and_then(Value::as_str) {
                    if d.starts_with("data:") {
                        media(d)
                    } else {
                        MediaSource::Base64 {
                            media_type: "application/pdf".to_owned(),
                            data: d.to_owned(),
                        }
                    }
                } else if let Some(u) = p.get("file_url").and_then(Value::as_str) {
                    MediaSource::Url(u.to_owned())
                } else {
                    return Err(unsupported(
                        "an input_file by file_id names a file an OpenAI account stored",
                    ));
                };
                out.push(ContentBlock::Document(DocumentBlock {
                    source,
                    title: p.get("filename").and_then(Value::as_str).map(str::to_owned),
                    cache_control: None,
                    extra: Extra::new(),
                }));
            }
            other => {
                return Err(unsupported(format!(
                    "content parts of type `{other}` cannot be sent through the Responses bridge"
                )))
            }
        }
    }
    Ok(out)
}

fn media(url: &str) -> MediaSource {
    match weir_model::parse_data_url(url) {
        Some((media_type, data)) => MediaSource::Base64 { media_type, data },
        None => MediaSource::Url(url.to_owned()),
    }
}

/// The prefix of a bridged response's id: such a response cannot be continued by its id
/// (the gateway does not remember where it was made).
pub const BRIDGED_ID: &str = "resp_wb";

/// Whether a response id is one the bridge made ([`BRIDGED_ID`]).
pub fn is_bridged_id(id: &str) -> bool {
    id.starts_with(BRIDGED_ID)
}

/// A response id no one can guess (its items are recalled by id): 128 bits of SipHash,
/// keyed at random per process, over a counter.
fn fresh_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(Default::default);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{BRIDGED_ID}{:016x}{:016x}",
        keys.hash_one(n.wrapping_mul(2)),
        keys.hash_one(n.wrapping_mul(2) | 1)
    )
}

/// How long answered items are remembered for `item_reference`s.
const ITEM_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most bytes the remembered items take (their JSON, keys and about 96 bytes of
/// bookkeeping each), per process; past it, the memory is brought down to three
/// quarters (expired items first, then the oldest).
const ITEM_BYTES: usize = 64 << 20;
/// An item larger than this is not remembered.
const ITEM_MAX: usize = ITEM_BYTES / 16;
const ITEM_OVERHEAD: usize = 96;

#[derive(Default)]
struct Items {
    /// By client key and item id: when, and the item's JSON.
    map: std::collections::HashMap<(String, String), (std::time::Instant, String)>,
    bytes: usize,
}

fn cost(key: &(String, String), text: &str) -> usize {
    key.0.len() + key.1.len() + text.len() + ITEM_OVERHEAD
}

fn items() -> std::sync::MutexGuard<'static, Items> {
    static ITEMS: std::sync::OnceLock<std::sync::Mutex<Items>> = std::sync::OnceLock::new();
    let m = ITEMS.get_or_init(Default::default);
    // (A panic while holding it leaves only a map of strings: still usable.)
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers answered items by client key and id, for a client that stores its
/// responses and refers to them later (`item_reference`, as the AI SDK does by default).
fn remember(owner: &str, output: &[Value]) {
    let now = std::time::Instant::now();
    let mut g = items();
    for item in output {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            continue;
        };
        let text = item.to_string();
        let key = (owner.to_owned(), id.to_owned());
        let c = cost(&key, &text);
        if c > ITEM_MAX {
            continue;
        }
        if g.bytes + c > ITEM_BYTES {
            let g = &mut *g;
            g.map
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ITEM_TTL);
            let mut ages: Vec<(std::time::Instant, usize)> =
                g.map.iter().map(|(k, (at, t))| (*at, cost(k, t))).collect();
            let mut total: usize = ages.iter().map(|(_, c)| c).sum();
            if total + c > ITEM_BYTES / 4 * 3 {
                ages.sort_unstable();
                let mut cut = None;
                for (at, c) in &ages {
                    if total + c <= ITEM_BYTES / 4 * 3 {
                        break;
                    }
                    total -= c;
                    cut = Some(*at);
                }
                if let Some(cut) = cut {
                    g.map.retain(|_, (at, _)| *at > cut);
                }
            }
            g.bytes = g.map.iter().map(|(k, (_, t))| cost(k, t)).sum();
        }
        if let Some((_, old)) = g.map.insert(key.clone(), (now, text)) {
            g.bytes -= cost(&key, &old);
        }
        g.bytes += c;
    }
}

/// An item [`remember`]ed for `owner`, if it is still known.
fn recall(owner: &str, id: &str) -> Option<Value> {
    let g = items();
    let (at, text) = g.map.get(&(owner.to_owned(), id.to_owned()))?;
    if at.elapsed() >= ITEM_TTL {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Responses usage: input counts cache reads (`cached_tokens`) and writes
/// (`cache_creation_input_tokens`, Weir's own field, read back by
/// [`weir_model::responses::response_usage`]); output counts reasoning.
pub fn usage_json(u: &Usage) -> Value {
    let input = u.total_input();
    let output = u.output_tokens.unwrap_or(0);
    let mut details = json!({"cached_tokens": u.cache_read_tokens.unwrap_or(0)});
    if let Some(w) = u.cache_write_tokens.filter(|w| *w > 0) {
        details["cache_creation_input_tokens"] = json!(w);
    }
    json!({
        "input_tokens": input,
        "input_tokens_details": details,
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": input.saturating_add(output),
    })
}

/// The response object around `output`.
#[allow(clippy::too_many_arguments)]
fn response_object(
    id: &str,
    created_at: u64,
    model: &str,
    status: &str,
    stop: Option<&StopReason>,
    output: Vec<Value>,
    usage: Option<&Usage>,
    info: &AnswerInfo,
) -> Value {
    let incomplete = match stop {
        Some(StopReason::MaxTokens | StopReason::ContextWindowExceeded) => {
            Some(json!({"reason": "max_output_tokens"}))
        }
        Some(StopReason::Refusal) => Some(json!({"reason": "content_filter"})),
        _ => None,
    };
    let status = if status == "completed" && incomplete.is_some() {
        "incomplete"
    } else {
        status
    };
    let mut o = json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": if status == "incomplete" { incomplete.unwrap_or(Value::Null) } else { Value::Null },
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": info.store,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage.map_or(Value::Null, usage_json),
        "metadata": {},
    });
    if let Value::Object(m) = &mut o {
        for (k, v) in &info.echo {
            m.insert(k.clone(), v.clone());
        }
        // (`text` always says its format, as OpenAI's does.)
        if let Some(Value::Object(t)) = m.get_mut("text") {
            t.entry("format").or_insert_with(|| json!({"type": "text"}));
        }
    }
    o
}

/// A finished output item for a content block (`None`: nothing to show).
fn output_item(block: &ContentBlock, info: &AnswerInfo, tag: &str) -> Option<Value> {
    Some(match block {
        ContentBlock::Thinking(t) => {
            let text = t.thinking.as_str();
            if text.is_empty() && t.signature.is_none() {
                return None;
            }
            reasoning_item(&format!("rs_{tag}"), &text, t.signature.as_deref(), None)
        }
        ContentBlock::RedactedThinking(r) => {
            reasoning_item(&format!("rs_{tag}"), "", None, Some(&r.data))
        }
        ContentBlock::ToolUse(c) => {
            let (namespace, name) = info.called(&c.name);
            let arguments = c.input.as_arguments();
            let status = call_status(&arguments);
            call_item(
                &format!("fc_{tag}"),
                &c.id,
                (namespace, name),
                &arguments,
                info.custom_tools.contains(&c.name),
                status,
            )
        }
        ContentBlock::Unknown(u) => {
            search_item(&format!("ws_{tag}"), &search_call(u)?, "completed")
        }
        _ => return None,
    })
}

/// A call's status: `incomplete` when its arguments are not whole JSON (the answer was
/// cut by its output limit mid-call), as OpenAI marks such items, so a client does not run
/// half a call.
fn call_status(arguments: &str) -> &'static str {
    // (No arguments at all, as some servers write a call without any: whole.)
    if arguments.trim().is_empty()
        || serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok()
    {
        "completed"
    } else {
        "incomplete"
    }
}

fn reasoning_item(id: &str, text: &str, signature: Option<&str>, redacted: Option<&str>) -> Value {
    let mut item = json!({
        "id": id,
        "type": "reasoning",
        "summary": if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) },
    });
    if let Some(s) = signature {
        item["encrypted_content"] = json!(format!("{SIGNED_THINKING}{s}"));
    } else if let Some(d) = redacted {
        item["encrypted_content"] = json!(format!("{REDACTED_THINKING}{d}"));
    } else if !text.is_empty() {
        item["encrypted_content"] = json!(UNSIGNED_REASONING);
    }
    item
}

/// The input a custom tool's call carries: its arguments' `input`, else the arguments.
fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| arguments.to_owned())
}

/// A call item: `custom_tool_call` for a custom tool, else `function_call`; a namespace's
/// tool's names its namespace.
fn call_item(
    id: &str,
    call_id: &str,
    (namespace, name): (Option<&str>, &str),
    arguments: &str,
    custom: bool,
    status: &str,
) -> Value {
    let mut item = if custom {
        json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name, "input": custom_input(arguments)})
    } else {
        json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
    };
    if let Some(ns) = namespace {
        item["namespace"] = json!(ns);
    }
    item
}

/// A message item: `texts` as its one `output_text`, with `annotations`.
fn message_item(id: &str, texts: &[String], annotations: Vec<Value>, status: &str) -> Value {
    // Consecutive text blocks (an answer cut at the spans it cites) are one text, as a
    // Responses message has it.
    let content: Vec<Value> = (!texts.is_empty())
        .then(|| json!({"type": "output_text", "text": texts.concat(), "annotations": annotations, "logprobs": []}))
        .into_iter()
        .collect();
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// The web pages a text block cites (Claude's `web_search_result_location`s, or those
/// Weir told in their shape for another upstream's search): URL and title.
fn cited_pages(extra: &Extra) -> Vec<(String, String)> {
    extra
        .get("citations")
        .and_then(|raw| serde_json::from_str::<Vec<crate::response::Citation>>(raw.get()).ok())
        .map(|cites| {
            cites
                .iter()
                .filter_map(|c| c.page())
                .map(|(u, t)| (u.to_owned(), t.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A `url_citation` annotation of the characters `start..end` of a message's text.
fn url_annotation(start: usize, end: usize, (url, title): &(String, String)) -> Value {
    json!({"type": "url_citation", "start_index": start, "end_index": end, "url": url, "title": title})
}

/// The query of a web search's `server_tool_use` block (Claude's, or another upstream's
/// search Weir told in that shape); `None` for any other block.
fn search_call(b: &weir_model::UnknownBlock) -> Option<Value> {
    if b.type_name.as_deref() != Some("server_tool_use") {
        return None;
    }
    let v: Value = serde_json::from_str(b.raw.get()).ok()?;
    (v.get("name").and_then(Value::as_str) == Some("web_search"))
        .then(|| v.get("input").cloned().unwrap_or(Value::Null))
}

/// A `web_search_call` item for a search whose input is `input` (`{"query": ...}`).
fn search_item(id: &str, input: &Value, status: &str) -> Value {
    let query = input
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({"id": id, "type": "web_search_call", "status": status, "action": {"type": "search", "query": query}})
}

/// A whole chat answer as a Responses object: the body and its id.
pub fn response_body(resp: &ChatResponse, info: &AnswerInfo) -> (Vec<u8>, String) {
    let id = fresh_id();
    // Item ids unique across responses: the response's, numbered.
    let tag = |n: usize| format!("{}_{n}", &id["resp_".len()..]);
    let mut output: Vec<Value> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    // The message's annotations, and where its text has come to (in characters).
    let mut annotations: Vec<Value> = Vec::new();
    let mut at = 0;
    let flush = |texts: &mut Vec<String>,
                 annotations: &mut Vec<Value>,
                 at: &mut usize,
                 output: &mut Vec<Value>| {
        if !texts.is_empty() {
            output.push(message_item(
                &format!("msg_{}", tag(output.len())),
                texts,
                std::mem::take(annotations),
                "completed",
            ));
            texts.clear();
            *at = 0;
        }
    };
    for (n, b) in resp.content.iter().enumerate() {
        if let ContentBlock::Text(t) = b {
            let end = at + t.text.chars();
            for page in cited_pages(&t.extra) {
                annotations.push(url_annotation(at, end, &page));
            }
            at = end;
            texts.push(t.text.as_str().into_owned());
            continue;
        }
        flush(&mut texts, &mut annotations, &mut at, &mut output);
        if let Some(item) = output_item(b, info, &tag(n)) {
            output.push(item);
        }
    }
    flush(&mut texts, &mut annotations, &mut at, &mut output);
    if info.store {
        remember(&info.owner, &output);
    }
    let o = response_object(
        &id,
        resp.created.unwrap_or_else(crate::response::now_secs),
        &resp.model,
        "completed",
        resp.stop_reason.as_ref(),
        output,
        Some(&resp.usage),
        info,
    );
    (serde_json::to_vec(&o).unwrap_or_default(), id)
}

/// The most content blocks a bridged answer may have (the index sizes a table).
const MAX_BLOCKS: usize = 4096;

/// An open block of a stream.
#[derive(Debug)]
enum Open {
    Text {
        text: String,
        /// The pages it cites (see [`cited_pages`]): annotations over the whole text.
        pages: Vec<(String, String)>,
    },
    /// A web search the upstream ran (Claude's `server_tool_use`): its input, whole or
    /// streamed.
    Search {
        input: String,
    },
    Reasoning {
        text: String,
        signature: Option<String>,
        redacted: Option<String>,
    },
    Call {
        call_id: String,
        /// The tool's own name (a namespace's, as the client named it).
        name: String,
        namespace: Option<String>,
        arguments: String,
        custom: bool,
    },
    Other,
}

#[derive(Debug)]
struct OpenBlock {
    open: Open,
    item_id: String,
    /// Its output index, once announced (`output_item.added`).
    output_index: Option<usize>,
}

/// Canonical stream events as the Responses API's stream events.
#[derive(Debug)]
pub struct StreamBridge {
    info: AnswerInfo,
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    finished: bool,
    blocks: Vec<Option<OpenBlock>>,
    output: Vec<Value>,
    usage: Usage,
    stop: Option<StopReason>,
}

impl StreamBridge {
    /// A bridge for one stream, answering a request with `info`.
    pub fn new(info: AnswerInfo, model: &str) -> Self {
        StreamBridge {
            info,
            id: fresh_id(),
            model: model.to_owned(),
            created_at: crate::response::now_secs(),
            seq: 0,
            started: false,
            finished: false,
            blocks: Vec::new(),
            output: Vec::new(),
            usage: Usage::default(),
            stop: None,
        }
    }

    /// Whether the stream's final event was written.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether the client has seen an item (after which the stream cannot move to another
    /// target).
    pub fn committed(&self) -> bool {
        !self.output.is_empty()
            || self
                .blocks
                .iter()
                .flatten()
                .any(|b| b.output_index.is_some())
    }

    /// Ends a committed stream the upstream failed: `response.failed` with the error's
    /// code and message, the items finished so far and the usage known (Codex reads the
    /// failure there, not in a bare `error` event; the gateway reads the usage).
    pub fn fail(
        &mut self,
        e: &ApiError,
        retry_after: Option<std::time::Duration>,
        out: &mut Vec<u8>,
    ) {
        // (An overload is `server_error`, which Codex retries: its `server_is_overloaded`
        // means "choose another model" to it, and a Claude overload passes.)
        let code = if e.is_context_overflow() {
            "context_length_exceeded"
        } else {
            match e.kind {
                weir_model::ErrorKind::RateLimited => "rate_limit_exceeded",
                weir_model::ErrorKind::InvalidRequest => "invalid_prompt",
                _ => "server_error",
            }
        };
        let mut message = e.message.clone();
        if let Some(d) = retry_after.filter(|_| {
            e.kind == weir_model::ErrorKind::RateLimited && !message.contains("try again in")
        }) {
            // Where Codex reads a rate limit's wait.
            message.push_str(&format!(" Please try again in {:.1}s.", d.as_secs_f64()));
        }
        let mut o = self.object("failed", true);
        o["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": o}));
        self.finished = true;
    }

    fn emit(&mut self, out: &mut Vec<u8>, ty: &str, mut data: Value) {
        if let Value::Object(m) = &mut data {
            m.insert("type".into(), json!(ty));
            m.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&serde_json::to_vec(&data).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }

    fn object(&self, status: &str, usage: bool) -> Value {
        response_object(
            &self.id,
            self.created_at,
            &self.model,
            status,
            self.stop.as_ref().filter(|_| status != "in_progress"),
            if status == "in_progress" {
                Vec::new()
            } else {
                self.output.clone()
            },
            usage.then_some(&self.usage),
            &self.info,
        )
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let o = self.object("in_progress", false);
            self.emit(out, "response.created", json!({"response": o}));
            let o = self.object("in_progress", false);
            self.emit(out, "response.in_progress", json!({"response": o}));
        }
    }

    /// Announces block `i` (its item added) if not yet.
    fn announce(&mut self, i: usize, out: &mut Vec<u8>) {
        let next = self.output.len()
            + self
                .blocks
                .iter()
                .flatten()
                .filter(|b| b.output_index.is_some())
                .count();
        let Some(Some(b)) = self.blocks.get_mut(i) else {
            return;
        };
        if b.output_index.is_some() || matches!(b.open, Open::Other) {
            return;
        }
        b.output_index = Some(next);
        let item_id = b.item_id.clone();
        let (item, part) = match &b.open {
            Open::Text { .. } => (
                message_item(&item_id, &[], Vec::new(), "in_progress"),
                Some((
                    "response.content_part.added",
                    json!({"item_id": item_id, "output_index": next, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                )),
            ),
            Open::Reasoning { .. } => (
                json!({"id": item_id, "type": "reasoning", "summary": []}),
                Some((
                    "response.reasoning_summary_part.added",
                    json!({"item_id": item_id, "output_index": next, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                )),
            ),
            Open::Call {
                call_id,
                name,
                namespace,
                custom,
                ..
            } => (
                call_item(
                    &item_id,
                    call_id,
                    (namespace.as_deref(), name),
                    "",
                    *custom,
                    "in_progress",
                ),
                None,
            ),
            Open::Search { .. } => (
                json!({"id": item_id, "type": "web_search_call", "status": "in_progress"}),
                Some((
                    "response.web_search_call.in_progress",
                    json!({"item_id": item_id, "output_index": next}),
                )),
            ),
            Open::Other => return,
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": next, "item": item}),
        );
        if let Some((ty, data)) = part {
            self.emit(out, ty, data);
        }
    }

    fn delta(&mut self, i: usize, delta: &Delta, out: &mut Vec<u8>) {
        let announce = match self.blocks.get(i) {
            Some(Some(b)) => matches!(
                (&b.open, delta),
                (Open::Text { .. }, Delta::Text(_))
                    | (Open::Reasoning { .. }, Delta::Thinking(_))
                    | (Open::Call { .. }, Delta::InputJson(_))
            ),
            _ => false,
        };
        if announce {
            self.announce(i, out);
        }
        let Some(Some(b)) = self.blocks.get_mut(i) else {
            return;
        };
        let item_id = b.item_id.clone();
        let index = b.output_index.unwrap_or(0);
        match (&mut b.open, delta) {
            (Open::Text { pages, .. }, Delta::Unknown { raw, .. }) => {
                #[derive(serde::Deserialize)]
                struct Cited {
                    #[serde(rename = "type")]
                    ty: Option<String>,
                    citation: Option<crate::response::Citation>,
                }
                if let Ok(Cited {
                    ty: Some(ty),
                    citation: Some(c),
                }) = serde_json::from_str::<Cited>(raw.get())
                {
                    if let (true, Some((url, title))) = (ty == "citations_delta", c.page()) {
                        pages.push((url.to_owned(), title.to_owned()));
                    }
                }
            }
            (Open::Search { input }, Delta::InputJson(d)) => input.push_str(&d.as_str()),
            (Open::Text { text, .. }, Delta::Text(d)) => {
                let d = d.as_str();
                text.push_str(&d);
                let data = json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": d, "logprobs": []});
                self.emit(out, "response.output_text.delta", data);
            }
            (Open::Reasoning { text, .. }, Delta::Thinking(d)) => {
                let d = d.as_str();
                text.push_str(&d);
                let data = json!({"item_id": item_id, "output_index": index, "summary_index": 0, "delta": d});
                self.emit(out, "response.reasoning_summary_text.delta", data);
            }
            (Open::Reasoning { signature, .. }, Delta::Signature(s)) => {
                signature.get_or_insert_with(String::new).push_str(s);
            }
            (
                Open::Call {
                    arguments, custom, ..
                },
                Delta::InputJson(d),
            ) => {
                let d = d.as_str();
                arguments.push_str(&d);
                if !*custom {
                    let data = json!({"item_id": item_id, "output_index": index, "delta": d});
                    self.emit(out, "response.function_call_arguments.delta", data);
                }
            }
            _ => {}
        }
    }

    fn stop_block(&mut self, i: usize, out: &mut Vec<u8>) {
        let worth = match self.blocks.get(i) {
            Some(Some(b)) => match &b.open {
                Open::Text { text, .. } => !text.is_empty() || b.output_index.is_some(),
                Open::Search { .. } => true,
                Open::Reasoning {
                    text,
                    signature,
                    redacted,
                } => !text.is_empty() || signature.is_some() || redacted.is_some(),
                Open::Call { .. } => true,
                Open::Other => false,
            },
            _ => false,
        };
        if worth {
            self.announce(i, out);
        }
        let Some(b) = self.blocks.get_mut(i).and_then(Option::take) else {
            return;
        };
        let Some(index) = b.output_index else {
            return;
        };
        let id = b.item_id;
        let item = match b.open {
            Open::Text { text, pages } => {
                let end = text.chars().count();
                let annotations: Vec<Value> =
                    pages.iter().map(|p| url_annotation(0, end, p)).collect();
                for (n, a) in annotations.iter().enumerate() {
                    self.emit(out, "response.output_text.annotation.added", json!({"item_id": id, "output_index": index, "content_index": 0, "annotation_index": n, "annotation": a}));
                }
                self.emit(out, "response.output_text.done", json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, "response.content_part.done", json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}}));
                message_item(&id, &[text], annotations, "completed")
            }
            Open::Search { input } => {
                let input = serde_json::from_str::<Value>(&input).unwrap_or(Value::Null);
                for ty in [
                    "response.web_search_call.searching",
                    "response.web_search_call.completed",
                ] {
                    self.emit(out, ty, json!({"item_id": id, "output_index": index}));
                }
                search_item(&id, &input, "completed")
            }
            Open::Reasoning {
                text,
                signature,
                redacted,
            } => {
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(out, "response.reasoning_summary_part.done", json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": text}}));
                reasoning_item(&id, &text, signature.as_deref(), redacted.as_deref())
            }
            Open::Call {
                call_id,
                name,
                namespace,
                arguments,
                custom,
            } => {
                let arguments = if arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    arguments
                };
                if custom {
                    let input = custom_input(&arguments);
                    self.emit(
                        out,
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": index, "delta": input}),
                    );
                    self.emit(
                        out,
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": index, "input": input}),
                    );
                } else {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "arguments": arguments}),
                    );
                }
                let status = call_status(&arguments);
                call_item(
                    &id,
                    &call_id,
                    (namespace.as_deref(), &name),
                    &arguments,
                    custom,
                    status,
                )
            }
            Open::Other => return,
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        if self.info.store {
            remember(&self.info.owner, std::slice::from_ref(&item));
        }
        // (Items finish in the order they opened: Claude's blocks never interleave.)
        self.output.push(item);
    }

    /// Writes what one canonical event amounts to. `Err`: the upstream failed mid-stream
    /// (the gateway ends the stream with the API's `error` event).
    pub fn push(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) -> Result<(), Box<ApiError>> {
        match ev {
            StreamEvent::MessageStart { model, usage, .. } => {
                if !model.is_empty() {
                    model.clone_into(&mut self.model);
                }
                self.usage.merge(usage);
                self.start(out);
            }
            StreamEvent::BlockStart { index, block } => {
                self.start(out);
                let i = *index as usize;
                if i >= MAX_BLOCKS {
                    let mut e = ApiError::new(
                        weir_model::ErrorKind::Decode,
                        format!("the upstream's stream opened a content block at index {i}"),
                    );
                    e.status = 502;
                    return Err(Box::new(e));
                }
                if self.blocks.len() <= i {
                    self.blocks.resize_with(i + 1, || None);
                }
                let (open, prefix, initial) = match block {
                    ContentBlock::Text(t) => (
                        Open::Text {
                            text: String::new(),
                            pages: cited_pages(&t.extra),
                        },
                        "msg",
                        Some(Delta::Text(t.text.clone())),
                    ),
                    ContentBlock::Thinking(t) => (
                        Open::Reasoning {
                            text: String::new(),
                            signature: t.signature.clone(),
                            redacted: None,
                        },
                        "rs",
                        Some(Delta::Thinking(t.thinking.clone())),
                    ),
                    ContentBlock::RedactedThinking(r) => (
                        Open::Reasoning {
                            text: String::new(),
                            signature: None,
                            redacted: Some(r.data.clone()),
                        },
                        "rs",
                        None,
                    ),
                    ContentBlock::ToolUse(c) => {
                        let args = match &c.input {
                            ToolInput::Arguments(a) => a.clone(),
                            ToolInput::Json(raw) if raw.get().trim() == "{}" => String::new(),
                            ToolInput::Json(raw) => raw.get().to_owned(),
                        };
                        let (namespace, name) = self.info.called(&c.name);
                        (
                            Open::Call {
                                call_id: c.id.clone(),
                                name: name.to_owned(),
                                namespace: namespace.map(str::to_owned),
                                arguments: String::new(),
                                custom: self.info.custom_tools.contains(&c.name),
                            },
                            "fc",
                            (!args.is_empty()).then(|| Delta::InputJson(JsonStr::from(args))),
                        )
                    }
                    ContentBlock::Unknown(u) => match search_call(u) {
                        // (A streamed call's input comes as deltas after an empty one.)
                        Some(input) => (
                            Open::Search {
                                input: match input {
                                    Value::Object(o) if o.is_empty() => String::new(),
                                    Value::Null => String::new(),
                                    v => v.to_string(),
                                },
                            },
                            "ws",
                            None,
                        ),
                        None => (Open::Other, "x", None),
                    },
                    _ => (Open::Other, "x", None),
                };
                self.blocks[i] = Some(OpenBlock {
                    open,
                    item_id: format!("{prefix}_{}_{i}", &self.id["resp_".len()..]),
                    output_index: None,
                });
                if matches!(
                    self.blocks[i].as_ref().map(|b| &b.open),
                    Some(Open::Call { .. } | Open::Search { .. })
                ) {
                    self.announce(i, out);
                }
                if let Some(d) = initial {
                    let empty = match &d {
                        Delta::Text(t) | Delta::Thinking(t) | Delta::InputJson(t) => t.is_empty(),
                        _ => true,
                    };
                    if !empty {
                        self.delta(i, &d, out);
                    }
                }
            }
            StreamEvent::BlockDelta { index, delta } => self.delta(*index as usize, delta, out),
            StreamEvent::BlockStop { index } => self.stop_block(*index as usize, out),
            StreamEvent::MessageDelta {
                stop_reason, usage, ..
            } => {
                if stop_reason.is_some() {
                    self.stop.clone_from(stop_reason);
                }
                self.usage.merge(usage);
            }
            StreamEvent::MessageStop => {
                self.start(out);
                for i in 0..self.blocks.len() {
                    self.stop_block(i, out);
                }
                let o = self.object("completed", true);
                let ty = if o["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.emit(out, ty, json!({"response": o}));
                self.finished = true;
            }
            StreamEvent::Error(e) => return Err(Box::new(e.clone())),
            // A keep-alive: an SSE comment, which clients skip.
            StreamEvent::Ping if !self.finished => out.extend_from_slice(b": keep-alive\n\n"),
            StreamEvent::Ping | StreamEvent::Unknown { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_model::ErrorKind;

    fn bridged(body: Value) -> Result<Bridged, WireError> {
        bridged_for("", body)
    }

    fn bridged_for(owner: &str, body: Value) -> Result<Bridged, WireError> {
        chat_request(
            &ResponsesRequest::decode(body.to_string().as_bytes()).unwrap(),
            owner,
        )
    }

    #[test]
    fn a_hosted_web_search_becomes_web_search_options_unless_limited_to_domains() {
        let b = bridged(json!({"model": "m", "input": "hi", "tools": [
            {"type": "web_search", "search_context_size": "high", "external_web_access": true,
             "user_location": {"type": "approximate", "country": "GB", "city": 7}},
            {"type": "file_search", "vector_store_ids": ["vs_1"]}
        ]}))
        .unwrap();
        assert_eq!(
            b.answer.web_search,
            Some(json!({"search_context_size": "high",
                        "user_location": {"type": "approximate", "approximate": {"country": "GB"}}}))
        );
        assert_eq!(b.answer.dropped_tools, ["file_search"]);
        // (Not on the chat request itself: the provider decides where it can go.)
        assert!(b.chat.extra.get("web_search_options").is_none());
        // A search limited to some domains cannot be said in `web_search_options`: it is
        // left out rather than run on the whole web.
        let b = bridged(json!({"model": "m", "input": "hi", "tools": [
            {"type": "web_search", "filters": {"allowed_domains": ["example.com"]}}
        ]}))
        .unwrap();
        assert_eq!(b.answer.web_search, None);
        assert_eq!(b.answer.dropped_tools, ["web_search"]);
        let b = bridged(json!({"model": "m", "input": "hi", "tools": [
            {"type": "web_search", "filters": {"allowed_domains": []}}
        ]}))
        .unwrap();
        assert_eq!(b.answer.web_search, Some(json!({})));
        // Nor is a search of OpenAI's cached index only (Codex's cached mode): upstreams'
        // searches are live.
        let b = bridged(json!({"model": "m", "input": "hi", "tools": [
            {"type": "web_search", "external_web_access": false}
        ]}))
        .unwrap();
        assert_eq!(b.answer.web_search, None);
        assert_eq!(b.answer.dropped_tools, ["web_search"]);
    }

    #[test]
    fn fields_of_the_wrong_type_are_refused_naming_them() {
        for (field, v) in [
            ("temperature", json!("x")),
            ("temperature", json!(false)),
            ("top_p", json!("0.5")),
            ("parallel_tool_calls", json!("no")),
            ("tool_choice", json!(2)),
        ] {
            let mut body = json!({"model": "m", "input": "hi"});
            body[field] = v.clone();
            let err = bridged(body).unwrap_err();
            assert!(
                matches!(&err, WireError::Malformed(m) if m.contains(field)),
                "{field} {v}: {err}"
            );
        }
        let ok = bridged(json!({"model": "m", "input": "hi", "temperature": 0.5, "top_p": null, "parallel_tool_calls": false, "tool_choice": "auto"})).unwrap();
        assert_eq!(ok.chat.temperature, Some(0.5));
        assert_eq!(ok.chat.parallel_tool_calls, Some(false));
    }

    fn events(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// The target's cap the router set on the Responses request reaches the chat request
    /// the bridge makes (its encoder keeps within it).
    #[test]
    fn the_targets_output_cap_carries_over() {
        let mut req = ResponsesRequest::decode(
            br#"{"model":"m","input":"hi","reasoning":{"effort":"high"}}"#,
        )
        .unwrap();
        req.output_cap = Some(8192);
        assert_eq!(chat_request(&req, "").unwrap().chat.output_cap, Some(8192));
    }

    /// Reasoning after a turn's content (Gemini's signature on its last text) stays with
    /// that turn rather than moving to the next one.
    #[test]
    fn trailing_reasoning_stays_with_its_turn() {
        let sig = json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "weir.thinking.v1:gemini-next-part:S"});
        let b = bridged(json!({
            "model": "m",
            "input": [
                {"role": "user", "content": "q1"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A1"}]},
                sig.clone(),
                {"role": "user", "content": "q2"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A2"}]},
                sig
            ]
        }))
        .unwrap();
        let turns: Vec<Vec<&str>> = b
            .chat
            .messages
            .iter()
            .map(|m| {
                m.content
                    .blocks
                    .iter()
                    .map(|b| match b {
                        ContentBlock::Text(_) => "text",
                        ContentBlock::Thinking(_) => "thinking",
                        _ => "other",
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            turns,
            [
                vec!["text"],
                vec!["text", "thinking"],
                vec!["text"],
                vec!["text", "thinking"]
            ]
        );
    }

    /// A call cut by the output limit (arguments not whole JSON) is `incomplete`.
    #[test]
    fn a_call_cut_short_is_incomplete() {
        assert_eq!(call_status(r#"{"city": "Paris"}"#), "completed");
        assert_eq!(call_status("{}"), "completed");
        assert_eq!(call_status(""), "completed");
        assert_eq!(call_status(r#"{"city": ""#), "incomplete");
        let mut s = StreamBridge::new(AnswerInfo::default(), "m");
        let mut out = Vec::new();
        let stream = [
            StreamEvent::MessageStart {
                id: "m1".into(),
                model: "m".into(),
                usage: Usage::default(),
            },
            StreamEvent::BlockStart {
                index: 0,
                block: ContentBlock::ToolUse(ToolUseBlock {
                    id: "call_1".into(),
                    name: "weather".into(),
                    input: ToolInput::Arguments(String::new()),
                    cache_control: None,
                    extra: Extra::new(),
                }),
            },
            StreamEvent::BlockDelta {
                index: 0,
                delta: Delta::InputJson(r#"{"city": ""#.into()),
            },
            StreamEvent::BlockStop { index: 0 },
            StreamEvent::MessageDelta {
                stop_reason: Some(StopReason::MaxTokens),
                stop_sequence: None,
                usage: Usage::default(),
            },
            StreamEvent::MessageStop,
        ];
        for e in &stream {
            s.push(e, &mut out).unwrap();
        }
        let done: Vec<Value> = events(&out)
            .into_iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .collect();
        assert_eq!(done[0]["item"]["status"], "incomplete", "{done:?}");
    }

    /// Names two namespaces share are qualified, and a qualified name past 64 bytes (two
    /// MCP servers' long tool names) is cut with a hash, the same on every turn; calls
    /// come back by the client's own names.
    #[test]
    fn long_qualified_tool_names_fit_upstreams() {
        let long = "get_long_descriptive_tool_name_for_issue_tracker_x";
        let body = json!({
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "namespace": "mcp__issue_tracker", "name": long, "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"}
            ],
            "tools": [
                {"type": "namespace", "name": "mcp__docs_srv", "tools": [{"type": "function", "name": long, "parameters": {"type": "object"}}]},
                {"type": "namespace", "name": "mcp__issue_tracker", "tools": [{"type": "function", "name": long, "parameters": {"type": "object"}}]}
            ]
        });
        let tool_names = |b: &Bridged| -> Vec<String> {
            b.chat
                .tools
                .as_deref()
                .unwrap()
                .iter()
                .map(|t| match t {
                    Tool::Function(f) => f.name.clone(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let b = bridged(body.clone()).unwrap();
        let names = tool_names(&b);
        assert!(names.iter().all(|n| n.len() <= 64), "{names:?}");
        assert_ne!(names[0], names[1]);
        assert!(
            names[1].starts_with("mcp__issue_tracker__get_long"),
            "{names:?}"
        );
        // The history's call is named as its tool is, and the same on the next turn.
        let ContentBlock::ToolUse(call) = &b.chat.messages[1].content.blocks[0] else {
            panic!("{:?}", b.chat.messages[1]);
        };
        assert_eq!(call.name, names[1]);
        assert_eq!(tool_names(&bridged(body).unwrap()), names);
        assert_eq!(
            b.answer.called(&names[1]),
            (Some("mcp__issue_tracker"), long)
        );
        assert_eq!(fitting("short".into()), "short");
    }

    /// A conversation that moves from a bridged target to one serving the API itself
    /// loses the bridge's reasoning items (the upstream would refuse their content), and
    /// nothing else.
    #[test]
    fn bridged_reasoning_is_left_out_for_native_upstreams() {
        let req = |input: Value| {
            ResponsesRequest::decode(
                json!({"model": "m", "input": input, "store": false})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap()
        };
        let mixed = req(json!([
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "weir.thinking.v1:sig"},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": "weir.reasoning.v1:"},
            {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAAA-openai-own"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "weir.thinking.v1: as text"}]}
        ]));
        let out = without_bridged_reasoning(&mixed).unwrap();
        let input: Value = serde_json::from_str(
            out.fields
                .iter()
                .find(|(k, _)| k == "input")
                .unwrap()
                .1
                .get(),
        )
        .unwrap();
        let ids: Vec<&str> = input
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.get("id").and_then(Value::as_str).unwrap_or("-"))
            .collect();
        assert_eq!(ids, ["-", "rs_3", "-"]);
        assert_eq!(out.fields.len(), mixed.fields.len());
        // Nothing of the bridge's: untouched.
        assert!(without_bridged_reasoning(&req(json!("weir.thinking.v1: just text"))).is_none());
        assert!(without_bridged_reasoning(&req(json!([
            {"type": "message", "role": "user", "content": "weir.thinking.v1:x"}
        ])))
        .is_none());
    }

    /// Reasoning without a signature (DeepSeek's, Z.AI's `reasoning_content`) goes out
    /// marked, and comes back on the tool-call turn it preceded, where DeepSeek's thinking
    /// mode requires it; streams ask for the usage chat streams report only when asked.
    #[test]
    fn unsigned_reasoning_comes_back_and_streams_ask_for_usage() {
        let item = reasoning_item("rs_1", "Let me look.", None, None);
        assert_eq!(item["encrypted_content"], UNSIGNED_REASONING);
        assert!(reasoning_item("rs_2", "", None, None)
            .get("encrypted_content")
            .is_none());
        let b = bridged(json!({
            "model": "m",
            "stream": true,
            "input": [
                {"role": "user", "content": "list files"},
                item,
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
            ]
        }))
        .unwrap();
        assert!(b.chat.bridged);
        let turn = &b.chat.messages[1];
        assert!(matches!(
            &turn.content.blocks[0],
            ContentBlock::Thinking(t) if t.signature.is_none() && t.thinking == *"Let me look."
        ));
        // Sent back where the target takes reasoning back (DeepSeek's and Z.AI's presets);
        // elsewhere left out, as for another dialect's request (Mistral refuses the field).
        let opts = crate::EncodeOptions {
            reasoning_content_in_history: true,
            ..Default::default()
        };
        let body: Value =
            serde_json::from_slice(&crate::encode_request(&b.chat, &opts).unwrap()).unwrap();
        let sent = &body["messages"][1];
        assert_eq!(sent["reasoning_content"], "Let me look.", "{body}");
        let plain: Value =
            serde_json::from_slice(&crate::encode_request(&b.chat, &Default::default()).unwrap())
                .unwrap();
        assert!(
            plain["messages"][1].get("reasoning_content").is_none(),
            "{plain}"
        );
        // An OpenAI client's own reasoning_content passes as it came, whatever the options.
        let client = crate::decode_request(
            br#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"reasoning_content":"mine","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}"#,
        )
        .unwrap();
        let passed: Value =
            serde_json::from_slice(&crate::encode_request(&client, &Default::default()).unwrap())
                .unwrap();
        assert_eq!(passed["messages"][1]["reasoning_content"], "mine");
        assert_eq!(sent["content"], Value::Null, "{body}");
        assert_eq!(sent["tool_calls"][0]["id"], "call_1", "{body}");
        assert_eq!(body["stream_options"]["include_usage"], true, "{body}");
    }

    #[test]
    fn requests_become_an_openai_clients_chat_request() {
        let b = bridged(json!({
            "model": "m",
            "instructions": "Sys",
            "input": [
                {"role": "developer", "content": "Dev"},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}
                ]},
                {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin"},
                {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"type": "reasoning", "summary": [], "encrypted_content": "weir.redacted.v1:xyz"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
            "safety_identifier": "u-1",
            "temperature": 0.5
        }))
        .unwrap();
        let c = &b.chat;
        assert_eq!(c.origin, Some(Dialect::OpenAi));
        let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Assistant
            ]
        );
        // Written as a chat client writes them: one text as a string, a turn of calls
        // only with null content, parts where there is more than text.
        let forms: Vec<ContentForm> = c.messages.iter().map(|m| m.content.form).collect();
        assert_eq!(forms[1], ContentForm::String);
        assert_eq!(forms[2], ContentForm::Blocks);
        assert_eq!(forms[3], ContentForm::Null);
        assert_eq!(forms[5], ContentForm::String);
        assert_eq!(c.include_usage, None);
        // (Claude's redacted thinking has no OpenAI form: left out.)
        let body: Value =
            serde_json::from_slice(&crate::encode_request(c, &Default::default()).unwrap())
                .unwrap();
        assert_eq!(
            body["messages"][5],
            json!({"role": "assistant", "content": "done"})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "system", "content": "Dev"})
        );
        assert_eq!(body["messages"][3]["content"], Value::Null, "{body}");
        let user = &c.messages[2].content.blocks;
        assert!(
            matches!(&user[1], ContentBlock::Image(i) if matches!(&i.source, MediaSource::Base64 { media_type, .. } if media_type == "image/png"))
        );
        assert!(
            matches!(&user[2], ContentBlock::Document(d) if d.title.as_deref() == Some("a.pdf"))
        );
        let ContentBlock::ToolUse(call) = &c.messages[3].content.blocks[0] else {
            panic!("{:?}", c.messages[3]);
        };
        assert_eq!(call.input.as_arguments(), r#"{"input":"*** Begin"}"#);
        assert!(matches!(
            c.messages[5].content.blocks[0],
            ContentBlock::RedactedThinking(_)
        ));
        assert!(matches!(&c.tool_choice, Some(ToolChoice::Tool(n)) if n == "f"));
        assert!(matches!(
            c.output_format().unwrap(),
            Some(weir_model::OutputFormat::JsonSchema(_))
        ));
        assert_eq!(c.end_user(), Some("u-1"));
        assert_eq!(b.answer.echo["temperature"], json!(0.5));
        // State kept by an OpenAI account, and what cannot be carried: refused.
        for body in [
            json!({"model": "m", "input": "x", "previous_response_id": "r"}),
            json!({"model": "m", "input": "x", "conversation": "c"}),
            json!({"model": "m", "input": "x", "background": true}),
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            json!({"model": "m", "input": "x", "tools": [{"type": "made_up"}]}),
        ] {
            assert!(
                matches!(bridged(body.clone()), Err(WireError::Unsupported(_))),
                "{body}"
            );
        }
        assert!(matches!(
            bridged(json!({"model": "m"})),
            Err(WireError::Malformed(_))
        ));
    }

    fn start(bridge: &mut StreamBridge, out: &mut Vec<u8>) {
        bridge
            .push(
                &StreamEvent::MessageStart {
                    id: "m".into(),
                    model: "claude".into(),
                    usage: Usage {
                        input_tokens: Some(5),
                        ..Usage::default()
                    },
                },
                out,
            )
            .unwrap();
    }

    #[test]
    fn custom_tool_calls_stream_their_input_and_a_cut_answer_is_incomplete() {
        let info = AnswerInfo {
            custom_tools: vec!["apply_patch".into()],
            ..AnswerInfo::default()
        };
        let mut b = StreamBridge::new(info, "m");
        let mut out = Vec::new();
        start(&mut b, &mut out);
        let call = ContentBlock::ToolUse(ToolUseBlock {
            id: "toolu_1".into(),
            name: "apply_patch".into(),
            input: ToolInput::Json(to_raw(&json!({}))),
            cache_control: None,
            extra: Extra::new(),
        });
        for ev in [
            // An empty text block that never fills: no item.
            StreamEvent::BlockStart {
                index: 0,
                block: ContentBlock::Text(TextBlock::new("")),
            },
            StreamEvent::BlockStop { index: 0 },
            StreamEvent::BlockStart {
                index: 1,
                block: call,
            },
            StreamEvent::BlockDelta {
                index: 1,
                delta: Delta::InputJson(JsonStr::from(r#"{"input":"*** Be"#)),
            },
            StreamEvent::BlockDelta {
                index: 1,
                delta: Delta::InputJson(JsonStr::from(r#"gin"}"#)),
            },
            StreamEvent::BlockStop { index: 1 },
            StreamEvent::MessageDelta {
                stop_reason: Some(StopReason::MaxTokens),
                stop_sequence: None,
                usage: Usage {
                    output_tokens: Some(9),
                    ..Usage::default()
                },
            },
            StreamEvent::MessageStop,
        ] {
            b.push(&ev, &mut out).unwrap();
        }
        let evs = events(&out);
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        assert_eq!(evs[2]["output_index"], 0);
        assert_eq!(evs[4]["input"], "*** Begin");
        let done = &evs[6]["response"];
        assert_eq!(done["status"], "incomplete");
        assert_eq!(done["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(done["output"][0]["type"], "custom_tool_call");
        assert_eq!(done["output"][0]["call_id"], "toolu_1");
        assert_eq!(done["usage"]["input_tokens"], 5);
        assert_eq!(done["usage"]["output_tokens"], 9);
        assert!(b.finished());
    }

    #[test]
    fn namespaces_and_additional_tools_are_flattened_and_named_back() {
        let b = bridged(json!({
            "model": "m",
            "input": [
                {"type": "additional_tools", "role": "developer", "tools": [
                    {"type": "namespace", "name": "functions", "tools": [
                        {"type": "custom", "name": "exec", "description": "Run JS"},
                        {"type": "function", "name": "wait", "parameters": {"type": "object"}}
                    ]}
                ]},
                {"role": "user", "content": "go"},
                {"type": "function_call", "namespace": "multi", "name": "wait", "call_id": "c1", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "parameters": {"type": "object"}},
                {"type": "namespace", "name": "multi", "tools": [
                    {"type": "function", "name": "spawn", "parameters": {"type": "object"}},
                    {"type": "function", "name": "wait", "parameters": {"type": "object"}}
                ]}
            ]
        }))
        .unwrap();
        let names: Vec<&str> = b
            .chat
            .tools()
            .iter()
            .map(|t| match t {
                Tool::Function(f) => f.name.as_str(),
                Tool::Unknown { .. } => "?",
            })
            .collect();
        // (`wait` in two namespaces: both qualified, whatever their order.)
        assert_eq!(
            names,
            ["shell", "spawn", "multi__wait", "exec", "functions__wait"]
        );
        // The history's call of multi's `wait` is the tool the upstream knows by that name.
        let ContentBlock::ToolUse(call) = &b.chat.messages[1].content.blocks[0] else {
            panic!("{:?}", b.chat.messages);
        };
        assert_eq!(call.name, "multi__wait");
        // A namespace's tool clashing with a top-level one declared after it.
        let clash = bridged(json!({"model": "m", "input": "x", "tools": [
            {"type": "namespace", "name": "mcp", "description": "MCP tools", "tools": [
                {"type": "function", "name": "shell"}
            ]},
            {"type": "function", "name": "shell"}
        ]}))
        .unwrap();
        let tools: Vec<(&str, String)> = clash
            .chat
            .tools()
            .iter()
            .map(|t| match t {
                Tool::Function(f) => (
                    f.name.as_str(),
                    f.description
                        .as_ref()
                        .map(|d| d.as_str().into_owned())
                        .unwrap_or_default(),
                ),
                Tool::Unknown { .. } => ("?", String::new()),
            })
            .collect();
        // `tool_choice` names the tool meant: by its namespace, else the top-level one.
        let choice = |tools: Value, choice: Value| {
            let b =
                bridged(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": choice}))
                    .unwrap();
            match b.chat.tool_choice {
                Some(ToolChoice::Tool(n)) => n,
                other => panic!("{other:?}"),
            }
        };
        let two = json!([
            {"type": "namespace", "name": "a", "tools": [{"type": "function", "name": "wait"}]},
            {"type": "namespace", "name": "b", "tools": [{"type": "function", "name": "wait"}]},
            {"type": "function", "name": "wait"}
        ]);
        assert_eq!(
            choice(two.clone(), json!({"type": "function", "name": "wait"})),
            "wait"
        );
        assert_eq!(
            choice(
                two,
                json!({"type": "function", "namespace": "b", "name": "wait"})
            ),
            "b__wait"
        );
        assert_eq!(
            choice(
                json!([{"type": "namespace", "name": "a", "tools": [{"type": "function", "name": "wait"}]}]),
                json!({"type": "function", "name": "wait"})
            ),
            "wait"
        );
        assert_eq!(tools[0].0, "mcp__shell");
        assert!(tools[0].1.contains("MCP tools"), "{tools:?}");
        assert_eq!(tools[1].0, "shell");
        // Calls come back with their namespace and own name.
        let resp = ChatResponse {
            content: vec![
                ContentBlock::ToolUse(ToolUseBlock {
                    id: "t1".into(),
                    name: "functions__wait".into(),
                    input: ToolInput::Arguments("{}".into()),
                    cache_control: None,
                    extra: Extra::new(),
                }),
                ContentBlock::ToolUse(ToolUseBlock {
                    id: "t2".into(),
                    name: "exec".into(),
                    input: ToolInput::Arguments(r#"{"input":"1+1"}"#.into()),
                    cache_control: None,
                    extra: Extra::new(),
                }),
                ContentBlock::ToolUse(ToolUseBlock {
                    id: "t3".into(),
                    name: "shell".into(),
                    input: ToolInput::Arguments("{}".into()),
                    cache_control: None,
                    extra: Extra::new(),
                }),
            ],
            ..ChatResponse::default()
        };
        let (body, _) = response_body(&resp, &b.answer);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let o = &v["output"];
        assert_eq!(
            (&o[0]["namespace"], &o[0]["name"]),
            (&json!("functions"), &json!("wait"))
        );
        assert_eq!(o[1]["type"], "custom_tool_call");
        assert_eq!(
            (&o[1]["namespace"], &o[1]["input"]),
            (&json!("functions"), &json!("1+1"))
        );
        assert!(o[2].get("namespace").is_none(), "{v}");
    }

    #[test]
    fn item_references_to_answered_items_are_read_as_them_others_left_out() {
        let resp = ChatResponse {
            content: vec![
                ContentBlock::Thinking(ThinkingBlock {
                    thinking: JsonStr::from("hmm"),
                    signature: Some("sig-r".into()),
                    extra: Extra::new(),
                }),
                ContentBlock::Text(TextBlock::new("said")),
            ],
            ..ChatResponse::default()
        };
        let stored = AnswerInfo {
            store: true,
            ..AnswerInfo::default()
        };
        let (body, _) = response_body(&resp, &stored);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let (rs, msg) = (v["output"][0]["id"].clone(), v["output"][1]["id"].clone());
        let input = json!([
            {"role": "user", "content": "q"},
            {"type": "item_reference", "id": rs},
            {"type": "item_reference", "id": msg},
            {"type": "item_reference", "id": "rs_unknown"},
            {"role": "user", "content": "more"}
        ]);
        let b = bridged(json!({"model": "m", "input": input})).unwrap();
        let a = &b.chat.messages[1];
        assert_eq!(a.role, Role::Assistant);
        assert!(
            matches!(&a.content.blocks[0], ContentBlock::Thinking(t) if t.signature.as_deref() == Some("sig-r"))
        );
        assert!(matches!(&a.content.blocks[1], ContentBlock::Text(t) if t.text.as_str() == "said"));
        assert_eq!(b.chat.messages.len(), 3);
        // Another client key reads none of them.
        let other = bridged_for("other", json!({"model": "m", "input": input})).unwrap();
        assert_eq!(other.chat.messages.len(), 2, "{:?}", other.chat.messages);
        // A reference lost with a call, whose result would answer nothing: said so.
        let lost = bridged(json!({"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "item_reference", "id": "fc_unknown"},
            {"type": "function_call_output", "call_id": "call_1", "output": "ok"}
        ]}));
        assert!(
            matches!(&lost, Err(WireError::Unsupported(m)) if m.contains("does not remember")),
            "{lost:?}"
        );
        // A client that stores nothing has nothing remembered.
        let (body, _) = response_body(&resp, &AnswerInfo::default());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(recall("", v["output"][1]["id"].as_str().unwrap()).is_none());
        // Ids cannot be guessed from one another.
        assert!(is_bridged_id(v["id"].as_str().unwrap()));
        assert_eq!(v["id"].as_str().unwrap().len(), BRIDGED_ID.len() + 32);
    }

    #[test]
    fn an_answer_cut_at_its_citations_is_one_output_text() {
        let resp = ChatResponse {
            content: vec![
                ContentBlock::Text(TextBlock::new("Spain won. ")),
                ContentBlock::Text(TextBlock::new("2-1.")),
            ],
            ..Default::default()
        };
        let (body, _) = response_body(&resp, &AnswerInfo::default());
        let v: Value = serde_json::from_slice(&body).unwrap();
        let parts = v["output"][0]["content"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{v}");
        assert_eq!(parts[0]["text"], "Spain won. 2-1.");
    }

    #[test]
    fn a_committed_stream_that_fails_ends_with_response_failed() {
        let mut b = StreamBridge::new(AnswerInfo::default(), "m");
        let mut out = Vec::new();
        start(&mut b, &mut out);
        assert!(!b.committed());
        for ev in [
            StreamEvent::BlockStart {
                index: 0,
                block: ContentBlock::Text(TextBlock::new("")),
            },
            StreamEvent::BlockDelta {
                index: 0,
                delta: Delta::Text(JsonStr::from("par")),
            },
        ] {
            b.push(&ev, &mut out).unwrap();
        }
        assert!(b.committed());
        let mut e = ApiError::new(ErrorKind::Overloaded, "busy");
        e.status = 529;
        b.fail(&e, None, &mut out);
        let evs = events(&out);
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        // (An overload passes: Codex retries a `server_error`.)
        assert_eq!(last["response"]["error"]["code"], "server_error");
        assert_eq!(last["response"]["error"]["message"], "busy");
        assert_eq!(last["response"]["usage"]["input_tokens"], 5);
        assert!(b.finished());
        // A rate limit says its wait, once (its message may name it already).
        for (message, want) in [
            ("slow down", "slow down Please try again in 2.5s."),
            ("Please try again in 2.5s.", "Please try again in 2.5s."),
        ] {
            let mut b = StreamBridge::new(AnswerInfo::default(), "m");
            let mut out = Vec::new();
            start(&mut b, &mut out);
            let e = ApiError::new(ErrorKind::RateLimited, message);
            b.fail(&e, Some(std::time::Duration::from_millis(2500)), &mut out);
            let evs = events(&out);
            let last = evs.last().unwrap();
            assert_eq!(last["response"]["error"]["code"], "rate_limit_exceeded");
            assert_eq!(last["response"]["error"]["message"], want);
        }
    }

    #[test]
    fn an_upstream_error_mid_stream_is_returned_for_the_gateway_to_end_the_stream() {
        let mut b = StreamBridge::new(AnswerInfo::default(), "m");
        let mut out = Vec::new();
        start(&mut b, &mut out);
        let e = b
            .push(
                &StreamEvent::Error(ApiError::new(ErrorKind::Overloaded, "busy")),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert!(!b.finished());
    }

    #[test]
    fn whole_answers_keep_usage_with_cache_writes_readable_back() {
        let resp = ChatResponse {
            model: "claude".into(),
            content: vec![
                ContentBlock::Text(TextBlock::new("a")),
                ContentBlock::Text(TextBlock::new("b")),
            ],
            stop_reason: Some(StopReason::EndTurn),
            usage: Usage {
                input_tokens: Some(10),
                cache_read_tokens: Some(4),
                cache_write_tokens: Some(6),
                output_tokens: Some(2),
                ..Usage::default()
            },
            ..ChatResponse::default()
        };
        let (body, id) = response_body(&resp, &AnswerInfo::default());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["output"].as_array().unwrap().len(), 1, "{v}");
        // (Consecutive text blocks are one text.)
        assert_eq!(v["output"][0]["content"].as_array().unwrap().len(), 1);
        assert_eq!(v["output"][0]["content"][0]["text"], "ab");
        assert_eq!(v["usage"]["input_tokens"], 20);
        let u = weir_model::responses::response_usage(&String::from_utf8(body).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens),
            (Some(10), Some(4), Some(6))
        );
    }
}
