//! OpenAI Chat Completions requests: decoding a client's body, encoding an upstream body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::raw::{to_raw, Key};
use weir_model::wire::{object_text, opt_value, RawFields, TrackedMap};
use weir_model::JsonStr;
use weir_model::{
    ChatRequest, Content, ContentBlock, ContentForm, Dialect, Extra, FunctionTool, MaxTokensField,
    Message, Metadata, RawJson, Role, StopSequences, ThinkingBlock, ThinkingConfig, Tool,
    ToolChoice, ToolInput, ToolResultBlock, ToolUseBlock, UnknownBlock, WireError,
};

use crate::parts::{ContentOut, OContent};

/// Options for encoding a request to an OpenAI-compatible upstream.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Which field carries the output limit when translating (`None`: the request's own
    /// choice, `max_completion_tokens` for other dialects). Older compatible servers only
    /// know `max_tokens`.
    pub max_tokens_field: Option<MaxTokensField>,
    /// Ask for a final usage chunk on streams (`stream_options.include_usage`).
    pub request_stream_usage: bool,
    /// Map Anthropic extended thinking to `reasoning_effort` (the target is a reasoning
    /// model; others reject the field).
    pub reasoning_effort_from_thinking: bool,
    /// Send earlier reasoning back as `reasoning_content` on assistant messages (DeepSeek-
    /// style servers); OpenAI itself rejects it.
    pub reasoning_content_in_history: bool,
    /// Send earlier `reasoning_details` back on assistant messages (OpenRouter, which
    /// needs reasoning signatures and encrypted reasoning back in tool loops); OpenAI
    /// itself rejects the field.
    pub reasoning_details_in_history: bool,
    /// Send text-only message content as one string, never an array of parts (servers
    /// that refuse arrays: DeepSeek).
    pub text_as_string: bool,
    /// Put an empty assistant message between a tool message and a user message that
    /// follows it (Mistral refuses that order).
    pub assistant_after_tool: bool,
    /// An Anthropic client's system messages inside `messages` (Claude Code sends one
    /// after the first user turn) go as user text, joined to the user message next to them:
    /// chat templates that take one leading system message and alternating turns (vLLM
    /// with Gemma's or Mistral's) refuse a system message later on.
    pub system_as_user: bool,
    /// The largest output limit the upstream accepts: a larger one is lowered to it.
    pub max_output_tokens: Option<u32>,
    /// Another dialect's client's thinking turned on or off goes as `thinking: {"type":
    /// "enabled" | "disabled"}` (Z.AI's GLM models); adaptive thinking leaves it to the
    /// model.
    pub thinking_type: bool,
    /// With [`EncodeOptions::thinking_type`]: thinking goes off (`{"type":"disabled"}`)
    /// for a request continuing a tool-call turn that carries no reasoning (served by
    /// another upstream, or without thinking), which a service that wants the turn's
    /// reasoning back in thinking mode refuses (DeepSeek).
    pub thinking_off_for_unreasoned_tool_turn: bool,
    /// Another dialect's client's thinking goes as OpenRouter's `reasoning` object: a
    /// budget as `max_tokens`, off as `enabled: false`, adaptive thinking with an effort
    /// (`output_config.effort`) as that `effort`.
    pub reasoning_object: bool,
    /// Another dialect's prompt-caching markers (`cache_control`) stay on the text parts
    /// they mark, system and tool results included (OpenRouter passes them to Claude and
    /// Gemini; without them every turn pays the full input price).
    pub cache_control: bool,
    /// Another dialect's tool calls in the history carry Google's placeholder thought
    /// signature (`extra_content.google.thought_signature`): Gemini's OpenAI-compatible
    /// endpoint refuses a Gemini 3 function call without one (a 400), and a client of
    /// another dialect did not keep Gemini's own.
    pub placeholder_thought_signature: bool,
    /// Claude's web search tool (Claude Code's web search) goes as OpenRouter's web search
    /// server tool (`{"type": "openrouter:web_search", "parameters": {"max_uses": n}}`),
    /// which searches for any model; the answer's `url_citation` annotations come back to
    /// an Anthropic client as a web search.
    pub web_search_tool: bool,
    /// Tool call ids over 40 characters are shortened (a prefix and a hash, the same for a
    /// call and its result) even in an OpenAI client's own history: OpenAI's own API and
    /// Azure's refuse longer ones, and an OpenAI client may hold longer ids Weir wrote
    /// (Gemini's calls, carrying their signatures). Other services get ids as they came.
    pub short_tool_ids: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            max_tokens_field: None,
            request_stream_usage: true,
            reasoning_effort_from_thinking: false,
            reasoning_content_in_history: false,
            reasoning_details_in_history: false,
            text_as_string: false,
            assistant_after_tool: false,
            system_as_user: false,
            max_output_tokens: None,
            thinking_type: false,
            cache_control: false,
            placeholder_thought_signature: false,
            thinking_off_for_unreasoned_tool_turn: false,
            reasoning_object: false,
            web_search_tool: false,
            short_tool_ids: false,
        }
    }
}

/// Decodes a client's Chat Completions request body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, WireError> {
    let r: ORequest = serde_json::from_str(weir_model::wire::utf8("request body", body)?)
        .map_err(|e| WireError::from_json("request body", &e))?;
    let mut req = r.0;
    req.size_hint = body.len();
    Ok(req)
}

struct ORequest(ChatRequest);

impl<'de> Deserialize<'de> for ORequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = ORequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat completions request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ORequest, A::Error> {
        let mut r = ChatRequest {
            origin: Some(Dialect::OpenAi),
            ..Default::default()
        };
        let (mut have_model, mut have_messages) = (false, false);
        while let Some(k) = map.next_key::<Key<'de>>()? {
            match k.as_str() {
                "model" => {
                    r.model = map.next_value()?;
                    have_model = true;
                }
                "messages" => {
                    r.messages = map.next_value::<Messages>()?.0;
                    have_messages = true;
                }
                // Both fields may be present; `max_completion_tokens` is the canonical
                // limit whatever their order (OpenAI deprecates `max_tokens` for it, and
                // vLLM reads them so), else the non-null `max_tokens`; the other is kept
                // as it came.
                "max_completion_tokens"
                    if r.max_tokens_field == MaxTokensField::MaxTokens
                        && r.max_tokens.is_some() =>
                {
                    if let Some(v) = opt_value::<_, u32>(&mut map, &k, &mut r.extra)? {
                        if let Some(old) = r.max_tokens.replace(v) {
                            let old = serde_json::value::to_raw_value(&old)
                                .map_err(serde::de::Error::custom)?;
                            r.extra.insert("max_tokens".to_owned(), old);
                        }
                        r.max_tokens_field = MaxTokensField::MaxCompletionTokens;
                    }
                }
                "max_completion_tokens" | "max_tokens" if r.max_tokens.is_some() => {
                    r.extra.insert(k.into_owned(), map.next_value()?)
                }
                "max_completion_tokens" => {
                    r.max_tokens = opt_value(&mut map, &k, &mut r.extra)?;
                    r.max_tokens_field = MaxTokensField::MaxCompletionTokens;
                }
                "max_tokens" => {
                    r.max_tokens = opt_value(&mut map, &k, &mut r.extra)?;
                    r.max_tokens_field = MaxTokensField::MaxTokens;
                }
                "stream" => r.stream = opt_value(&mut map, &k, &mut r.extra)?,
                "stream_options" => {
                    // `include_usage` is read whatever else the object holds (e.g. OpenAI's
                    // `include_obfuscation`); the other keys are kept for an OpenAI
                    // upstream, which gets them back beside `include_usage`.
                    let raw: RawJson = map.next_value()?;
                    #[derive(Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct Only {
                        include_usage: bool,
                    }
                    #[derive(Deserialize)]
                    struct Usage {
                        include_usage: bool,
                    }
                    if let Ok(o) = serde_json::from_str::<Only>(raw.get()) {
                        r.include_usage = Some(o.include_usage);
                    } else {
                        if let Ok(u) = serde_json::from_str::<Usage>(raw.get()) {
                            r.include_usage = Some(u.include_usage);
                        }
                        r.extra.insert("stream_options", raw);
                    }
                }
                "temperature" => r.temperature = opt_value(&mut map, &k, &mut r.extra)?,
                "top_p" => r.top_p = opt_value(&mut map, &k, &mut r.extra)?,
                "top_k" => r.top_k = opt_value(&mut map, &k, &mut r.extra)?,
                "stop" => {
                    if let Some(s) = opt_value::<_, Stop>(&mut map, &k, &mut r.extra)? {
                        r.stop = Some(s.0);
                    }
                }
                "tools" => {
                    r.tools = opt_value::<_, Tools>(&mut map, &k, &mut r.extra)?.map(|t| t.0)
                }
                "tool_choice" => {
                    if let Some(raw) = opt_value::<_, RawJson>(&mut map, &k, &mut r.extra)? {
                        // (A string or an object, as OpenAI takes it; anything else would
                        // be dropped by other dialects' encoders.)
                        if !matches!(raw.get().as_bytes().first(), Some(b'"' | b'{')) {
                            return Err(de::Error::custom(
                                "`tool_choice`: expected a string or an object",
                            ));
                        }
                        r.tool_choice = Some(tool_choice_from_raw(raw));
                    }
                }
                "parallel_tool_calls" => {
                    r.parallel_tool_calls = opt_value(&mut map, &k, &mut r.extra)?
                }
                "reasoning_effort" => r.reasoning_effort = opt_value(&mut map, &k, &mut r.extra)?,
                "user" => {
                    if let Some(u) = opt_value::<_, String>(&mut map, &k, &mut r.extra)? {
                        r.metadata = Some(Metadata {
                            user_id: Some(u),
                            extra: Extra::new(),
                        });
                    }
                }
                _ => r.extra.insert(k.into_owned(), map.next_value()?),
            }
        }
        if !have_model {
            return Err(de::Error::missing_field("model"));
        }
        if !have_messages {
            return Err(de::Error::missing_field("messages"));
        }
        Ok(ORequest(r))
    }
}

struct Stop(StopSequences);

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a string or an array of strings")]
        enum S {
            One(String),
            Many(Vec<String>),
        }
        Ok(Stop(match S::deserialize(d)? {
            S::One(s) => StopSequences {
                sequences: vec![s],
                single_string: true,
            },
            S::Many(v) => StopSequences {
                sequences: v,
                single_string: false,
            },
        }))
    }
}

fn tool_choice_from_raw(raw: RawJson) -> ToolChoice {
    match raw.get() {
        r#""auto""# => return ToolChoice::Auto,
        r#""none""# => return ToolChoice::None,
        r#""required""# => return ToolChoice::Required,
        _ => {}
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        #[serde(rename = "type")]
        ty: String,
        function: Func,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Func {
        name: String,
    }
    match serde_json::from_str::<Named>(raw.get()) {
        Ok(n) if n.ty == "function" => ToolChoice::Tool(n.function.name),
        _ => ToolChoice::Unknown {
            dialect: Dialect::OpenAi,
            raw,
        },
    }
}

struct Messages(Vec<Message>);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Messages, S::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(m) = seq.next_element_seed(MessageSeed(v.len()))? {
                    v.push(m);
                }
                Ok(Messages(v))
            }
        }
        d.deserialize_seq(V)
    }
}

struct MessageSeed(usize);

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Message;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Message, D::Error> {
        d.deserialize_map(MessageVisitor)
            .map_err(|e| de::Error::custom(format_args!("messages[{}]: {e}", self.0)))
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut role = None;
        let mut content = Content {
            blocks: Vec::new(),
            form: ContentForm::Absent,
        };
        let mut tool_calls: Option<Vec<ContentBlock>> = None;
        let mut reasoning: Option<JsonStr> = None;
        let mut tool_call_id: Option<String> = None;
        let mut extra = Extra::new();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            match k.as_str() {
                "role" => {
                    let r: Key<'de> = map.next_value()?;
                    role = Some(match r.as_str() {
                        "system" => Role::System,
                        "developer" => Role::Developer,
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        "tool" => Role::Tool,
                        "function" => Role::Function,
                        other => {
                            return Err(de::Error::unknown_variant(
                                other,
                                &[
                                    "system",
                                    "developer",
                                    "user",
                                    "assistant",
                                    "tool",
                                    "function",
                                ],
                            ))
                        }
                    });
                }
                "content" => content = map.next_value::<OContent>()?.0,
                "tool_calls" => {
                    let raw: RawJson = map.next_value()?;
                    match serde_json::from_str::<Vec<OToolCall>>(raw.get()) {
                        Ok(calls) if !calls.is_empty() => {
                            tool_calls = Some(calls.into_iter().map(|c| c.0).collect())
                        }
                        // `null` and `[]` carry nothing; keep them as they came.
                        Ok(_) => extra.insert("tool_calls", raw),
                        Err(e) => return Err(de::Error::custom(format_args!("tool_calls: {e}"))),
                    }
                }
                "reasoning_content" => reasoning = opt_value(&mut map, &k, &mut extra)?,
                "tool_call_id" => tool_call_id = Some(map.next_value()?),
                _ => extra.insert(k.into_owned(), map.next_value()?),
            }
        }
        let role = role.ok_or_else(|| de::Error::missing_field("role"))?;
        if role == Role::Tool {
            let id = tool_call_id.ok_or_else(|| de::Error::missing_field("tool_call_id"))?;
            return Ok(Message {
                role,
                content: Content {
                    blocks: vec![ContentBlock::ToolResult(ToolResultBlock {
                        tool_use_id: id,
                        content,
                        is_error: None,
                        cache_control: None,
                        extra: Extra::new(),
                    })],
                    form: ContentForm::Blocks,
                },
                extra,
            });
        }
        if let Some(id) = tool_call_id {
            extra.insert("tool_call_id", to_raw(&id));
        }
        if reasoning.is_some() || tool_calls.is_some() {
            // Canonical order: reasoning, then text, then tool calls. The form of the text
            // part is kept in `content.form`, so the same dialect rebuilds the fields.
            let mut blocks = Vec::new();
            if let Some(thinking) = reasoning {
                blocks.push(ContentBlock::Thinking(ThinkingBlock {
                    thinking,
                    signature: None,
                    extra: Extra::new(),
                }));
            }
            blocks.append(&mut content.blocks);
            for call in tool_calls.into_iter().flatten() {
                // A call Gemini signed, its signature carried in its id (as Weir writes
                // Gemini's calls for OpenAI clients): the signature goes back on an empty
                // thinking block before the call, where Gemini's decoder put it. The id
                // stays as it came (an OpenAI-compatible upstream may have made it, as
                // LiteLLM does); the Gemini encoder sends the call's own part of it.
                if let ContentBlock::ToolUse(t) = call {
                    if let Some((_, sig)) = weir_model::content::split_signed_id(&t.id) {
                        blocks.push(ContentBlock::Thinking(ThinkingBlock {
                            thinking: JsonStr::empty(),
                            signature: Some(sig),
                            extra: Extra::new(),
                        }));
                    }
                    blocks.push(ContentBlock::ToolUse(t));
                } else {
                    blocks.push(call);
                }
            }
            content.blocks = blocks;
        }
        Ok(Message {
            role,
            content,
            extra,
        })
    }
}

/// One entry of an assistant's `tool_calls`.
pub(crate) struct OToolCall(pub ContentBlock);

impl<'de> Deserialize<'de> for OToolCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = RawFields::deserialize(d)?.0;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| *v)
        };
        let ty: Option<String> = get("type").and_then(|v| serde_json::from_str(v.get()).ok());
        let id: Option<String> = get("id").and_then(|v| serde_json::from_str(v.get()).ok());
        #[derive(Deserialize)]
        struct Func {
            name: String,
            arguments: String,
        }
        let func = get("function").and_then(|v| serde_json::from_str::<Func>(v.get()).ok());
        match (ty.as_deref(), id, func) {
            (Some("function"), Some(id), Some(f)) => {
                let mut extra = Extra::new();
                for (k, v) in &fields {
                    if !["type", "id", "function"].contains(&k.as_str()) {
                        extra.insert(k.as_str(), (*v).to_owned());
                    }
                }
                // A function object with more than name and arguments is kept whole.
                if let Some(fraw) = get("function") {
                    let n: RawFields<'_> = serde_json::from_str(fraw.get())
                        .map_err(|e| weir_model::wire::nested_error(&e))?;
                    if n.0.len() != 2 {
                        extra.insert("function", fraw.to_owned());
                    }
                }
                Ok(OToolCall(ContentBlock::ToolUse(ToolUseBlock {
                    id,
                    name: f.name,
                    input: ToolInput::Arguments(f.arguments),
                    cache_control: None,
                    extra,
                })))
            }
            _ => Ok(OToolCall(ContentBlock::Unknown(UnknownBlock {
                dialect: Dialect::OpenAi,
                type_name: Some(TOOL_CALL_TYPE.to_owned()),
                raw: RawValue::from_string(object_text(
                    fields.iter().map(|(k, v)| (k.as_str(), *v)),
                ))
                .map_err(de::Error::custom)?,
            }))),
        }
    }
}

/// The `type_name` of unknown blocks that belong in `tool_calls` (custom tool calls).
pub(crate) const TOOL_CALL_TYPE: &str = weir_model::content::OPENAI_TOOL_CALL;

struct Tools(Vec<Tool>);

impl<'de> Deserialize<'de> for Tools {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raws: Vec<&'de RawValue> = Vec::deserialize(d)?;
        let mut tools = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            tools.push(
                tool_from_raw(raw)
                    .map_err(|e| de::Error::custom(format_args!("tools[{i}]: {e}")))?,
            );
        }
        Ok(Tools(tools))
    }
}

fn tool_from_raw(raw: &RawValue) -> Result<Tool, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer<'a> {
        #[serde(rename = "type")]
        ty: String,
        #[serde(borrow)]
        function: Option<&'a RawValue>,
    }
    let unknown = |name: Option<String>| Tool::Unknown {
        dialect: Dialect::OpenAi,
        name,
        raw: raw.to_owned(),
    };
    // Another kind of tool (OpenAI's `custom`, a provider's own): its name, for errors.
    let other = || {
        #[derive(Deserialize)]
        struct Named {
            name: Option<String>,
        }
        #[derive(Deserialize)]
        struct Other {
            name: Option<String>,
            custom: Option<Named>,
            function: Option<Named>,
        }
        let o: Option<Other> = serde_json::from_str(raw.get()).ok();
        unknown(o.and_then(|o| {
            o.name
                .or(o.custom.and_then(|c| c.name))
                .or(o.function.and_then(|f| f.name))
        }))
    };
    let outer: Outer<'_> = match serde_json::from_str(raw.get()) {
        Ok(o) => o,
        // (A function tool with more fields is kept as it came, for OpenAI upstreams;
        // `Tool::lenient_function` reads it for other dialects.)
        Err(_) => return Ok(other()),
    };
    let (true, Some(func)) = (outer.ty == "function", outer.function) else {
        return Ok(other());
    };
    let fields: RawFields<'_> = serde_json::from_str(func.get())?;
    let mut t = FunctionTool {
        name: String::new(),
        description: None,
        parameters: None,
        strict: None,
        cache_control: None,
        extra: Extra::new(),
    };
    let mut have_name = false;
    for (k, v) in fields.0 {
        let is_null = v.get() == "null";
        match k.as_str() {
            "name" => {
                t.name = serde_json::from_str(v.get())?;
                have_name = true;
            }
            "description" if !is_null => t.description = Some(serde_json::from_str(v.get())?),
            "parameters" if !is_null => t.parameters = Some(v.to_owned()),
            "strict" if !is_null => t.strict = Some(serde_json::from_str(v.get())?),
            _ => t.extra.insert(k.as_str(), v.to_owned()),
        }
    }
    if !have_name {
        return Err(de::Error::missing_field("name"));
    }
    Ok(Tool::Function(t))
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Encodes a canonical request as a Chat Completions body.
///
/// A request from an OpenAI client is written back as it came (model name aside). One
/// from another dialect is reshaped: the system prompt becomes the first message;
/// `tool_result` blocks become `tool` messages placed right after the assistant turn (any
/// images they hold move to a following user message, errors are marked in the text);
/// tool inputs become argument strings; thinking becomes `reasoning_effort` only where
/// the options say the target understands it.
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, WireError> {
    let same = req.origin == Some(Dialect::OpenAi);
    // Claude Code's tool search results name tools the upstream has declared anyway.
    let req = &*req.with_tool_references_as_text();
    let messages = plan_messages(req, opts, same)?;
    if !same {
        // (Messages left out as empty must not leave the request ending on the
        // assistant's turn, or empty.)
        req.check_kept_messages(
            "an OpenAI-compatible upstream",
            messages
                .iter()
                .rev()
                .find(|m| m.role != "system")
                .map(|m| m.role == "assistant"),
        )?;
        req.check_translatable("an OpenAI-compatible upstream")?;
        for t in req.tools() {
            if opts.web_search_tool && t.is_web_search("OpenRouter", true)? {
                continue;
            }
            if let Tool::Unknown { name, .. } = t {
                return Err(WireError::Unsupported(format!(
                    "tool `{}` is a provider-specific tool and cannot be sent to an OpenAI-compatible upstream",
                    name.as_deref().unwrap_or("?")
                )));
            }
        }
        if let Some(ToolChoice::Unknown { dialect, .. }) = &req.tool_choice {
            if *dialect != Dialect::OpenAi {
                return Err(WireError::Unsupported(
                    "this tool_choice cannot be sent to an OpenAI upstream".into(),
                ));
            }
        }
    }
    let body = RequestOut {
        req,
        opts,
        same,
        messages,
    };
    let mut out = Vec::with_capacity(req.size_hint + req.size_hint / 8 + 256);
    serde_json::to_writer(&mut out, &body).map_err(|e| WireError::Unsupported(e.to_string()))?;
    Ok(out)
}

/// A message to write.
pub(crate) struct OutMessage<'a> {
    role: &'static str,
    /// Text and media parts.
    parts: Vec<&'a ContentBlock>,
    form: ContentForm,
    tool_calls: Vec<&'a ContentBlock>,
    reasoning: Option<JsonStr>,
    /// `reasoning_details` carried in thinking signatures (a JSON array).
    reasoning_details: Option<Box<RawValue>>,
    /// For tool messages.
    tool_call_id: Option<Cow<'a, str>>,
    /// Tool-result text when it had to be rewritten (error marker, flattened parts).
    tool_text: Option<JsonStr>,
    /// The tool result's caching marker, where the upstream takes one: the text goes as
    /// a part carrying it.
    tool_cache: Option<&'a RawJson>,
    extra: Option<&'a Extra>,
}

impl<'a> OutMessage<'a> {
    fn new(role: &'static str) -> Self {
        OutMessage {
            role,
            parts: Vec::new(),
            form: ContentForm::Blocks,
            tool_calls: Vec::new(),
            reasoning: None,
            reasoning_details: None,
            tool_call_id: None,
            tool_text: None,
            tool_cache: None,
            extra: None,
        }
    }
}

/// Whether a block carries Anthropic's prompt-caching marker.
fn has_cache_control(b: &ContentBlock) -> bool {
    match b {
        ContentBlock::Text(t) => t.cache_control.is_some(),
        ContentBlock::ToolResult(r) => {
            r.cache_control.is_some() || r.content.blocks.iter().any(has_cache_control)
        }
        _ => false,
    }
}

fn plan_messages<'a>(
    req: &'a ChatRequest,
    opts: &EncodeOptions,
    same: bool,
) -> Result<Vec<OutMessage<'a>>, WireError> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if let Some(sys) = &req.system {
        let mut m = OutMessage::new("system");
        for b in &sys.blocks {
            match b {
                ContentBlock::Text(_) => m.parts.push(b),
                other => {
                    return Err(WireError::Unsupported(format!(
                        "system content of type `{}` cannot be sent to an OpenAI upstream",
                        other.type_name()
                    )))
                }
            }
        }
        // (Kept as parts where a part carries a caching marker the upstream takes.)
        let marked = opts.cache_control && sys.blocks.iter().any(has_cache_control);
        m.form = if same {
            sys.form
        } else if marked {
            ContentForm::Blocks
        } else {
            ContentForm::String
        };
        if !m.parts.is_empty() {
            if !same && !marked && m.parts.len() > 1 {
                // Several system blocks become one string: OpenAI-compatible servers differ
                // in whether they accept parts on system messages.
                m.tool_text = Some(JsonStr::new(&sys.joined_text("\n\n")));
            }
            out.push(m);
        }
    }
    // A client's own reasoning goes as it sent it; the bridge's only where the target
    // takes it back (a service that knows no `reasoning_content` may refuse the field).
    let keep_reasoning = !req.bridged || opts.reasoning_content_in_history;
    for (i, msg) in req.messages.iter().enumerate() {
        let at = |e: String| WireError::Unsupported(format!("messages[{i}]: {e}"));
        if same {
            out.push(same_message(msg, keep_reasoning, opts.short_tool_ids));
            continue;
        }
        match msg.role {
            // Only OpenAI decodes `function` messages; write them as they are.
            Role::Function => out.push(same_message(msg, false, opts.short_tool_ids)),
            Role::System | Role::Developer | Role::User => {
                let role = if msg.role == Role::User {
                    "user"
                } else {
                    "system"
                };
                let mut user = OutMessage::new(role);
                let mut trailing_media: Vec<&'a ContentBlock> = Vec::new();
                for b in &msg.content.blocks {
                    match b {
                        ContentBlock::ToolResult(r) => {
                            out.push(
                                tool_message(r, &mut trailing_media, opts.cache_control)
                                    .map_err(at)?,
                            );
                        }
                        ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {}
                        ContentBlock::ToolUse(_) => {
                            return Err(at("a tool call in a user message".into()))
                        }
                        _ => user.parts.push(b),
                    }
                }
                user.parts.extend(trailing_media);
                user.form = msg.content.form;
                if user.parts.is_empty() {
                    continue;
                }
                if opts.system_as_user && req.origin == Some(Dialect::Anthropic) {
                    // A user or system message next to a user message of this kind joins
                    // it, as parts (the template wants user and assistant in turn).
                    let joinable = |m: &OutMessage<'_>| {
                        m.role == "user" && m.tool_call_id.is_none() && m.tool_text.is_none()
                    };
                    if role == "system" {
                        user.role = "user";
                    }
                    if let Some(prev) = out.last_mut().filter(|m| joinable(m)) {
                        prev.parts.extend(user.parts);
                        prev.form = ContentForm::Blocks;
                        continue;
                    }
                }
                out.push(user);
            }
            Role::Tool => {
                let mut media = Vec::new();
                for b in &msg.content.blocks {
                    if let ContentBlock::ToolResult(r) = b {
                        out.push(tool_message(r, &mut media, opts.cache_control).map_err(at)?);
                    }
                }
                if !media.is_empty() {
                    let mut m = OutMessage::new("user");
                    m.parts = media;
                    out.push(m);
                }
            }
            Role::Assistant => {
                let mut m = OutMessage::new("assistant");
                let mut reasoning = Vec::new();
                let mut details = Vec::new();
                for b in &msg.content.blocks {
                    match b {
                        ContentBlock::Thinking(t) => {
                            if !t.thinking.is_empty() {
                                reasoning.push(&t.thinking);
                            }
                            details.extend(
                                t.signature.as_deref().and_then(|s| {
                                    s.strip_prefix(crate::REASONING_DETAILS_SIGNATURE)
                                }),
                            );
                        }
                        ContentBlock::RedactedThinking(_) => {}
                        ContentBlock::ToolUse(_) => m.tool_calls.push(b),
                        ContentBlock::Unknown(u) if u.dialect != Dialect::OpenAi => {
                            // Server-tool turns (web search calls and results) have no
                            // OpenAI form; the text around them carries the answer.
                        }
                        ContentBlock::Text(t) if t.text.is_empty() => {}
                        _ => m.parts.push(b),
                    }
                }
                if opts.reasoning_content_in_history {
                    m.reasoning = JsonStr::join(reasoning, "");
                }
                if opts.reasoning_details_in_history {
                    m.reasoning_details = joined_details(&details);
                }
                m.form = ContentForm::String;
                if m.parts.is_empty() && m.tool_calls.is_empty() {
                    continue;
                }
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The `reasoning_details` arrays thinking signatures carried, as one array, pieces of one
/// item joined (a stream's signature that came in a block of its own); `None` if there are
/// none (or none is an array: a signature a client altered is left out).
fn joined_details(details: &[&str]) -> Option<Box<RawValue>> {
    let mut items: Vec<serde_json::Value> = Vec::new();
    for d in details {
        if let Ok(v) = serde_json::from_str::<Vec<serde_json::Value>>(d) {
            crate::stream::merge_details(&mut items, v);
        }
    }
    if items.is_empty() {
        return None;
    }
    serde_json::value::to_raw_value(&items).ok()
}

/// An OpenAI-origin message, rebuilt field by field.
/// A message of an OpenAI client's request as it came; its reasoning (`reasoning_content`)
/// kept where `keep_reasoning`.
fn same_message(msg: &Message, keep_reasoning: bool, short_ids: bool) -> OutMessage<'_> {
    let mut m = OutMessage::new(msg.role.as_str());
    m.form = msg.content.form;
    m.extra = Some(&msg.extra);
    for b in &msg.content.blocks {
        match b {
            ContentBlock::ToolResult(r) if msg.role == Role::Tool => {
                m.tool_call_id = Some(same_tool_id(&r.tool_use_id, short_ids));
                m.parts.extend(r.content.blocks.iter());
                m.form = r.content.form;
            }
            // (Not the empty block a signed call id left: see `split_signed_id`.)
            ContentBlock::Thinking(t) if keep_reasoning && !t.thinking.is_empty() => {
                // (Several only from the bridge: reasoning items before one turn.)
                m.reasoning = match m.reasoning.take() {
                    Some(before) => JsonStr::join([&before, &t.thinking], "\n"),
                    None => Some(t.thinking.clone()),
                }
            }
            ContentBlock::Thinking(_) => {}
            // (Only Claude's redacted thinking, carried through the Responses bridge: no
            // OpenAI-compatible service could read it.)
            ContentBlock::RedactedThinking(_) => {}
            ContentBlock::ToolUse(_) => m.tool_calls.push(b),
            ContentBlock::Unknown(u) if u.type_name.as_deref() == Some(TOOL_CALL_TYPE) => {
                m.tool_calls.push(b)
            }
            _ => m.parts.push(b),
        }
    }
    m
}

/// A `tool` message for a tool result. OpenAI tool messages carry text only: images move
/// to `media` (sent in a user message after the tool messages), and an error is marked.
fn tool_message<'a>(
    r: &'a ToolResultBlock,
    media: &mut Vec<&'a ContentBlock>,
    cache: bool,
) -> Result<OutMessage<'a>, String> {
    let mut m = OutMessage::new("tool");
    m.tool_call_id = Some(openai_tool_id(&r.tool_use_id));
    let mut texts = Vec::new();
    for b in &r.content.blocks {
        match b {
            ContentBlock::Text(t) => texts.push(&t.text),
            ContentBlock::Image(_) | ContentBlock::Document(_) => media.push(b),
            other => {
                return Err(format!(
                    "tool result content of type `{}` has no OpenAI form",
                    other.type_name()
                ))
            }
        }
    }
    let mut text = JsonStr::join(texts, "\n").unwrap_or_default();
    if r.is_error == Some(true) {
        text = JsonStr::new(&format!("Error: {}", text.as_str()));
    }
    m.tool_text = Some(text);
    m.form = ContentForm::String;
    if cache {
        m.tool_cache = r.cache_control.as_ref().or_else(|| {
            r.content.blocks.iter().rev().find_map(|b| match b {
                ContentBlock::Text(t) => t.cache_control.as_ref(),
                _ => None,
            })
        });
    }
    Ok(m)
}

struct MessageOut<'a, 'b> {
    m: &'b OutMessage<'a>,
    same: bool,
    join_text: bool,
    /// Caching markers written on translated text parts.
    cache: bool,
    /// Translated tool calls carry Google's placeholder thought signature.
    placeholder_signature: bool,
    /// (See [`EncodeOptions::short_tool_ids`].)
    short_ids: bool,
}

impl Serialize for MessageOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.m;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", m.role)?;
        if let (Some(text), Some(cache)) = (&m.tool_text, m.tool_cache) {
            #[derive(Serialize)]
            struct Part<'a> {
                #[serde(rename = "type")]
                ty: &'static str,
                text: &'a JsonStr,
                cache_control: &'a RawJson,
            }
            let part = Part {
                ty: "text",
                text,
                cache_control: cache,
            };
            map.serialize_entry("content", &[part])?;
        } else if let Some(text) = &m.tool_text {
            map.serialize_entry("content", text)?;
        } else {
            let null_content = m.parts.is_empty()
                && (m.form == ContentForm::Null || (!self.same && !m.tool_calls.is_empty()));
            if null_content {
                map.serialize_entry("content", &())?;
            } else if !(m.parts.is_empty() && m.form == ContentForm::Absent) {
                map.serialize_entry(
                    "content",
                    &ContentOut {
                        blocks: &m.parts,
                        form: m.form,
                        same: self.same,
                        join_text: self.join_text,
                        cache: self.cache,
                    },
                )?;
            }
        }
        if let Some(r) = &m.reasoning {
            map.serialize_entry("reasoning_content", r)?;
        }
        if let Some(d) = &m.reasoning_details {
            map.serialize_entry("reasoning_details", d)?;
        }
        if !m.tool_calls.is_empty() {
            map.serialize_entry(
                "tool_calls",
                &ToolCallsOut {
                    calls: &m.tool_calls,
                    same: self.same,
                    placeholder_signature: self.placeholder_signature,
                    signatures: &[],
                    short_ids: self.short_ids,
                },
            )?;
        }
        if let Some(id) = &m.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if let Some(extra) = m.extra {
            extra.serialize_into(&mut map, &[])?;
        }
        map.end()
    }
}

pub(crate) struct ToolCallsOut<'a, 'b> {
    pub calls: &'b [&'a ContentBlock],
    pub same: bool,
    /// (See [`EncodeOptions::placeholder_thought_signature`].)
    pub placeholder_signature: bool,
    /// For an OpenAI client, each call's carried signature, written into its id
    /// ([`weir_model::content::signed_call_id`]); empty towards upstreams.
    pub signatures: &'b [Option<&'a str>],
    /// (See [`EncodeOptions::short_tool_ids`].)
    pub short_ids: bool,
}

impl Serialize for ToolCallsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.calls.len()))?;
        for (i, c) in self.calls.iter().enumerate() {
            seq.serialize_element(&ToolCallOut {
                block: c,
                same: self.same,
                placeholder_signature: self.placeholder_signature,
                signature: self.signatures.get(i).copied().flatten(),
                short_ids: self.short_ids,
            })?;
        }
        seq.end()
    }
}

/// A tool call id OpenAI accepts: at most 40 characters. Longer ones (from other
/// dialects) are shortened deterministically, the same way for the call and its result: a
/// prefix of the id and a hash of all of it.
/// An OpenAI client's own tool call id as an OpenAI-compatible upstream gets it: without a
/// signature Weir wrote into it (the upstream never saw it: Gemini's, see
/// [`weir_model::content::signed_call_id`]), shortened where the upstream takes 40
/// characters at most (`short`); otherwise as it came.
fn same_tool_id(id: &str, short: bool) -> Cow<'_, str> {
    let id = weir_model::content::without_weir_signature(id);
    if short {
        openai_tool_id(id)
    } else {
        Cow::Borrowed(id)
    }
}

pub(crate) fn openai_tool_id(id: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    if id.len() <= MAX {
        return Cow::Borrowed(id);
    }
    Cow::Owned(weir_model::wire::rewritten_id(id, MAX, |_| true))
}

struct ToolCallOut<'a> {
    block: &'a ContentBlock,
    same: bool,
    placeholder_signature: bool,
    signature: Option<&'a str>,
    short_ids: bool,
}

/// Google's documented placeholder for a thought signature a client did not keep.
const PLACEHOLDER_THOUGHT_SIGNATURE: &str =
    r#"{"google":{"thought_signature":"skip_thought_signature_validator"}}"#;

impl Serialize for ToolCallOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.block {
            ContentBlock::ToolUse(t) => {
                let mut m = s.serialize_map(None)?;
                if self.same {
                    m.serialize_entry("id", &same_tool_id(&t.id, self.short_ids))?;
                } else {
                    let id = openai_tool_id(&t.id);
                    m.serialize_entry(
                        "id",
                        &weir_model::content::signed_call_id(&id, self.signature),
                    )?;
                }
                m.serialize_entry("type", "function")?;
                match (self.same, t.extra.get("function")) {
                    (true, Some(f)) => m.serialize_entry("function", f)?,
                    _ => {
                        let mut f = Extra::new();
                        f.insert("name", to_raw(&t.name));
                        f.insert("arguments", to_raw(&t.input.as_arguments()));
                        m.serialize_entry("function", &f)?;
                    }
                }
                if self.same {
                    t.extra.serialize_into(&mut m, &["function"])?;
                }
                // (An OpenAI client that kept Google's signature sends it; one that did
                // not, or another dialect's, gets the placeholder.)
                if self.placeholder_signature && !(self.same && t.extra.contains("extra_content")) {
                    m.serialize_entry(
                        "extra_content",
                        &RawValue::from_string(PLACEHOLDER_THOUGHT_SIGNATURE.to_owned())
                            .map_err(serde::ser::Error::custom)?,
                    )?;
                }
                m.end()
            }
            ContentBlock::Unknown(u) => u.raw.serialize(s),
            _ => s.serialize_unit(),
        }
    }
}

struct RequestOut<'a> {
    req: &'a ChatRequest,
    opts: &'a EncodeOptions,
    same: bool,
    messages: Vec<OutMessage<'a>>,
}

impl Serialize for RequestOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let same = self.same;
        let mut m = TrackedMap::new(s.serialize_map(None)?);
        m.entry("model", &r.model)?;
        m.entry("messages", &MessagesOut(self))?;
        if let Some(mt) = r.max_tokens {
            let mt = self.opts.max_output_tokens.map_or(mt, |cap| mt.min(cap));
            let field = self.opts.max_tokens_field.unwrap_or(if same {
                r.max_tokens_field
            } else {
                MaxTokensField::MaxCompletionTokens
            });
            let (key, other) = match field {
                MaxTokensField::MaxTokens => ("max_tokens", "max_completion_tokens"),
                MaxTokensField::MaxCompletionTokens => ("max_completion_tokens", "max_tokens"),
            };
            m.entry(key, &mt)?;
            // A client that sent both keeps both; where a cap is in play (the provider's,
            // the target's, a model's ceiling the upstream named) the other one keeps
            // within it too.
            if same && (r.output_cap.is_some() || self.opts.max_output_tokens.is_some()) {
                let larger = r
                    .extra
                    .get(other)
                    .and_then(|v| v.get().parse::<f64>().ok())
                    .is_some_and(|n| n > f64::from(mt));
                if larger {
                    m.entry(other, &mt)?;
                }
            }
        }
        if let Some(st) = r.stream {
            m.entry("stream", &st)?;
        }
        // The stream's usage is asked for where the gateway wrote the request (another
        // dialect's, or the Responses bridge's): an OpenAI client's asks as it chose.
        let asked_for_us = !same || r.bridged;
        let include_usage = match r.include_usage {
            Some(v) => Some(v || (self.opts.request_stream_usage && asked_for_us && r.is_stream())),
            None if self.opts.request_stream_usage && r.is_stream() && asked_for_us => Some(true),
            None => None,
        };
        match (
            include_usage,
            r.extra.get("stream_options").filter(|_| same),
        ) {
            (Some(iu), Some(raw)) => {
                let mut obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(raw.get()).map_err(serde::ser::Error::custom)?;
                obj.insert("include_usage".into(), iu.into());
                m.entry("stream_options", &obj)?;
            }
            (Some(iu), None) => m.entry(
                "stream_options",
                &serde_json::json!({ "include_usage": iu }),
            )?,
            (None, Some(raw)) => m.entry("stream_options", raw)?,
            (None, None) => {}
        }
        let asked = r.anthropic_effort();
        let effort = match (&r.reasoning_effort, &r.thinking) {
            (Some(e), _) => Some(e.as_str()),
            (None, t) if self.opts.reasoning_effort_from_thinking && !same => asked
                .as_deref()
                .and_then(effort_named)
                .or_else(|| t.as_ref().and_then(effort_for)),
            _ => None,
        };
        // Another dialect's client did not write its sampling settings for OpenAI's
        // reasoning models, which refuse them (a 400): they are left out. (An OpenAI
        // client's go as they came: OpenAI's own error says what to change.)
        // (OpenRouter's `reasoning` object carries thinking as well as `reasoning_effort`.)
        let reasoning = effort.or_else(|| {
            (self.opts.reasoning_object
                && matches!(
                    r.thinking,
                    Some(
                        ThinkingConfig::Enabled { .. }
                            | ThinkingConfig::Adaptive(_)
                            | ThinkingConfig::Unknown(_)
                    )
                ))
            .then_some("medium")
        });
        let sampling = same || !sampling_refused(&r.model, reasoning);
        if let (Some(t), true) = (r.temperature, sampling) {
            m.entry("temperature", &t)?;
        }
        if let (Some(t), true) = (r.top_p, sampling) {
            m.entry("top_p", &t)?;
        }
        if let (Some(t), true) = (r.top_k, same) {
            m.entry("top_k", &t)?;
        }
        if let Some(stop) = &r.stop {
            match (stop.single_string && same, stop.sequences.as_slice()) {
                (true, [one]) => m.entry("stop", one)?,
                (_, []) if !same => {}
                (_, seqs) => m.entry("stop", seqs)?,
            }
        }
        // Claude's web search tool, as OpenRouter's (checked in `encode_request`); none
        // when no tool use is asked for.
        let search = |t: &Tool| {
            !same
                && self.opts.web_search_tool
                && t.is_web_search("OpenRouter", true).unwrap_or(false)
        };
        let no_tools = matches!(r.tool_choice, Some(ToolChoice::None));
        let searched = !no_tools && r.tools().iter().any(search);
        let functions = r.tools().iter().any(|t| !search(t));
        let has_tools = searched || functions;
        if let Some(tools) = &r.tools {
            if same || has_tools {
                m.entry(
                    "tools",
                    &ToolsOut {
                        tools,
                        same,
                        search: &search,
                        searched,
                    },
                )?;
            }
        }
        // A choice naming the search tool has no function to name: left to the model.
        let names_search = |tc: &ToolChoice| {
            matches!(tc, ToolChoice::Tool(n) if r.tools().iter().any(|t| search(t)
                && matches!(t, Tool::Unknown { name: Some(tn), .. } if tn == n)))
        };
        if let Some(tc) = r.tool_choice.as_ref().filter(|tc| !names_search(tc)) {
            if same || has_tools {
                m.entry("tool_choice", &ToolChoiceOut(tc))?;
            }
        }
        if let Some(p) = r.parallel_tool_calls {
            if same || has_tools {
                m.entry("parallel_tool_calls", &p)?;
            }
        }
        if let Some(e) = effort {
            m.entry("reasoning_effort", e)?;
        }
        if self.opts.thinking_type && !same {
            let ty = match &r.thinking {
                Some(ThinkingConfig::Disabled) => Some("disabled"),
                _ if self.opts.thinking_off_for_unreasoned_tool_turn && unreasoned_tool_turn(r) => {
                    Some("disabled")
                }
                Some(ThinkingConfig::Enabled { .. }) => Some("enabled"),
                _ => None,
            };
            if let Some(ty) = ty {
                m.entry("thinking", &serde_json::json!({ "type": ty }))?;
            }
        } else if same
            && self.opts.thinking_off_for_unreasoned_tool_turn
            && !r.extra.contains("thinking")
            && unreasoned_tool_turn(r)
        {
            // An OpenAI client that did not send a tool turn's reasoning back (the SDKs do
            // not keep `reasoning_content`): thinking off, where it would be refused.
            m.entry("thinking", &serde_json::json!({ "type": "disabled" }))?;
        }
        if self.opts.reasoning_object && !same && !r.extra.contains("reasoning") {
            // (Not on for a request continuing a tool-call turn without reasoning: Claude
            // behind OpenRouter would refuse thinking for it.)
            let unreasoned = || unreasoned_tool_turn(r);
            let reasoning = match &r.thinking {
                Some(ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive(_))
                    if unreasoned() =>
                {
                    None
                }
                Some(ThinkingConfig::Enabled { budget_tokens }) => {
                    Some(serde_json::json!({ "max_tokens": budget_tokens }))
                }
                Some(ThinkingConfig::Disabled) => Some(serde_json::json!({ "enabled": false })),
                // Adaptive thinking: the effort asked for, else the model's own default.
                Some(ThinkingConfig::Adaptive(_)) => asked
                    .as_deref()
                    .and_then(|e| match e {
                        "low" | "medium" | "high" | "xhigh" => Some(e),
                        "max" => Some("xhigh"),
                        _ => None,
                    })
                    .map(|e| serde_json::json!({ "effort": e })),
                _ => None,
            };
            if let Some(reasoning) = reasoning {
                m.entry("reasoning", &reasoning)?;
            }
        }
        if let Some(u) = r.metadata.as_ref().and_then(|md| md.user_id.as_ref()) {
            // OpenAI (and Azure) answer 400 to a `user` over 64 characters; Claude Code's
            // metadata.user_id is a JSON blob of about 150. A longer one goes as its
            // SHA-256 (64 hex digits): still one stable id per user.
            if same || u.len() <= MAX_USER_LEN {
                m.entry("user", u)?;
            } else {
                m.entry("user", &user_digest(u))?;
            }
        }
        if !same {
            if let Some(weir_model::OutputFormat::JsonSchema(schema)) =
                r.output_format().map_err(serde::ser::Error::custom)?
            {
                m.entry(
                    "response_format",
                    &ResponseFormatOut {
                        ty: "json_schema",
                        json_schema: JsonSchemaOut {
                            name: "output",
                            schema,
                        },
                    },
                )?;
            }
        }
        if same {
            m.extra(&r.extra, &["stream_options"])?;
        }
        m.end()
    }
}

/// OpenAI's `response_format` for a JSON Schema (not `strict`: a schema written for
/// Anthropic need not meet strict mode's rules).
#[derive(Serialize)]
struct ResponseFormatOut<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    json_schema: JsonSchemaOut<'a>,
}

#[derive(Serialize)]
struct JsonSchemaOut<'a> {
    name: &'static str,
    schema: &'a RawValue,
}

/// `reasoning_effort` for an Anthropic `output_config.effort` (OpenAI's top is `high`;
/// Claude Code offers `xhigh` and `max` above it).
fn effort_named(e: &str) -> Option<&'static str> {
    match e {
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" | "xhigh" | "max" => Some("high"),
        _ => None,
    }
}

/// Whether the request continues a tool loop (tool results after the last assistant
/// turn) of which a tool-call turn since the user last spoke carries no reasoning text.
fn unreasoned_tool_turn(r: &ChatRequest) -> bool {
    let Some(last) = r.messages.iter().rposition(|m| m.role == Role::Assistant) else {
        return false;
    };
    let result = |b: &ContentBlock| matches!(b, ContentBlock::ToolResult(_));
    let continued = r.messages[last + 1..]
        .iter()
        .any(|m| m.content.blocks.iter().any(result));
    if !continued {
        return false;
    }
    // Where the user last spoke (not only tool results: Anthropic's carry them in user
    // messages).
    let spoke = r.messages[..last]
        .iter()
        .rposition(|m| m.role == Role::User && !m.content.blocks.iter().all(result))
        .map_or(0, |i| i + 1);
    r.messages[spoke..=last]
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .any(|m| {
            let blocks = &m.content.blocks;
            blocks.iter().any(|b| matches!(b, ContentBlock::ToolUse(_)))
                && !blocks.iter().any(
                    |b| matches!(b, ContentBlock::Thinking(t) if !t.thinking.as_str().trim().is_empty()),
                )
        })
}

/// The longest `user` OpenAI takes.
const MAX_USER_LEN: usize = 64;

/// A user id as 64 hex digits (its SHA-256).
fn user_digest(id: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `reasoning_effort` for an Anthropic thinking budget.
/// Whether OpenAI's `model` refuses `temperature` and `top_p` ("Unsupported value:
/// 'temperature' does not support 0.2 with this model"): the o-series and GPT-5 (but its
/// chat model) always, GPT-5.1 on while reasoning (an `effort` other than `none`, theirs
/// by default), and their Codex models. Read past a router's vendor prefix (`openai/`).
fn sampling_refused(model: &str, effort: Option<&str>) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    if m.strip_prefix('o')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    {
        return true;
    }
    let Some(rest) = m.strip_prefix("gpt-5") else {
        return false;
    };
    if rest.starts_with("-chat") {
        false
    } else if rest.starts_with('.') && !rest.contains("codex") {
        effort.is_some_and(|e| e != "none")
    } else {
        true
    }
}

fn effort_for(t: &ThinkingConfig) -> Option<&'static str> {
    match t {
        ThinkingConfig::Enabled { budget_tokens } => {
            Some(ThinkingConfig::budget_level(*budget_tokens))
        }
        ThinkingConfig::Adaptive(_) => Some("medium"),
        ThinkingConfig::Disabled | ThinkingConfig::Unknown(_) => None,
    }
}

struct MessagesOut<'a, 'b>(&'b RequestOut<'a>);

impl Serialize for MessagesOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut after_tool = false;
        for m in &self.0.messages {
            if after_tool && m.role == "user" && self.0.opts.assistant_after_tool {
                let mut bridge = OutMessage::new("assistant");
                bridge.form = ContentForm::String;
                seq.serialize_element(&MessageOut {
                    m: &bridge,
                    same: self.0.same,
                    join_text: false,
                    cache: false,
                    placeholder_signature: false,
                    short_ids: false,
                })?;
            }
            after_tool = m.role == "tool";
            seq.serialize_element(&MessageOut {
                m,
                same: self.0.same,
                join_text: self.0.opts.text_as_string,
                cache: self.0.opts.cache_control,
                placeholder_signature: self.0.opts.placeholder_thought_signature,
                short_ids: self.0.opts.short_tool_ids,
            })?;
        }
        seq.end()
    }
}

struct ToolsOut<'a> {
    tools: &'a [Tool],
    same: bool,
    /// Whether a tool is Claude's web search going as OpenRouter's...
    search: &'a dyn Fn(&Tool) -> bool,
    /// ...and whether it goes (not with `tool_choice: none`).
    searched: bool,
}

impl Serialize for ToolsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.tools.len()))?;
        for t in self.tools {
            if let (true, Tool::Unknown { raw, .. }) = ((self.search)(t), t) {
                if self.searched {
                    seq.serialize_element(&openrouter_web_search(raw))?;
                }
                continue;
            }
            match t {
                Tool::Unknown { raw, .. } => seq.serialize_element(raw)?,
                Tool::Function(f) => seq.serialize_element(&FunctionOut { f, same: self.same })?,
            }
        }
        seq.end()
    }
}

/// OpenRouter's web search server tool for Claude's: `max_uses` kept, `allowed_domains`
/// and `blocked_domains` as its `allowed_domains` and `excluded_domains`; `user_location`
/// is a hint its search has no field for.
fn openrouter_web_search(raw: &RawValue) -> serde_json::Value {
    #[derive(Deserialize)]
    struct Search {
        max_uses: Option<u64>,
        allowed_domains: Option<Vec<serde_json::Value>>,
        blocked_domains: Option<Vec<serde_json::Value>>,
    }
    let mut parameters = serde_json::Map::new();
    if let Ok(s) = serde_json::from_str::<Search>(raw.get()) {
        if let Some(n) = s.max_uses {
            parameters.insert("max_uses".into(), n.into());
        }
        for (key, list) in [
            ("allowed_domains", s.allowed_domains),
            ("excluded_domains", s.blocked_domains),
        ] {
            if let Some(l) = list.filter(|l| !l.is_empty()) {
                parameters.insert(key.into(), serde_json::Value::Array(l));
            }
        }
    }
    serde_json::json!({"type": "openrouter:web_search", "parameters": parameters})
}

struct FunctionOut<'a> {
    f: &'a FunctionTool,
    same: bool,
}

impl Serialize for FunctionOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Inner<'a>(&'a FunctionOut<'a>);
        impl Serialize for Inner<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let f = self.0.f;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("name", &f.name)?;
                if let Some(d) = &f.description {
                    m.serialize_entry("description", d)?;
                }
                if let Some(p) = &f.parameters {
                    m.serialize_entry("parameters", p)?;
                }
                if let Some(st) = f.strict {
                    m.serialize_entry("strict", &st)?;
                }
                if self.0.same {
                    f.extra.serialize_into(&mut m, &[])?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", "function")?;
        m.serialize_entry("function", &Inner(self))?;
        m.end()
    }
}

struct ToolChoiceOut<'a>(&'a ToolChoice);

impl Serialize for ToolChoiceOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Tool(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
            ToolChoice::Unknown { raw, .. } => raw.serialize(s),
        }
    }
}
