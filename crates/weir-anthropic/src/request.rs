//! Anthropic Messages requests: decoding a client's body, encoding an upstream body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::raw::{to_raw, Key};
use weir_model::{
    ChatRequest, Content, ContentBlock, ContentForm, Dialect, Extra, FunctionTool, Message,
    Metadata, RawJson, Role, StopSequences, TextBlock, ThinkingConfig, Tool, ToolChoice, WireError,
};

use crate::blocks::{cache_control, AContent, BlockOut, ContentOut, Out};
use crate::ids::sanitize_tool_id;
use weir_model::wire::{object_text, opt_value, TrackedMap};

/// Options for encoding a request to an Anthropic upstream.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// `max_tokens` when the request has none (Anthropic requires it).
    pub default_max_tokens: u32,
    /// Map OpenAI `reasoning_effort` to extended thinking (the target model supports it).
    pub thinking_from_reasoning_effort: bool,
    /// Leave `model` out of the body (Bedrock and Vertex put it in the URL).
    pub omit_model: bool,
    /// Leave `stream` out of the body (Bedrock chooses by endpoint).
    pub omit_stream: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            default_max_tokens: 4096,
            thinking_from_reasoning_effort: true,
            omit_model: false,
            omit_stream: false,
        }
    }
}

/// Decodes a client's Messages request body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, WireError> {
    let r: ARequest = serde_json::from_str(weir_model::wire::utf8("request body", body)?)
        .map_err(|e| WireError::from_json("request body", &e))?;
    let mut req = r.0;
    req.size_hint = body.len();
    Ok(req)
}

struct ARequest(ChatRequest);

impl<'de> Deserialize<'de> for ARequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = ARequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Messages request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ARequest, A::Error> {
        let mut r = ChatRequest {
            origin: Some(Dialect::Anthropic),
            ..Default::default()
        };
        let mut have_model = false;
        let mut have_messages = false;
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
                "system" => {
                    let c = map.next_value::<AContent>()?.0;
                    if c.form == ContentForm::Null {
                        r.extra.insert_null("system");
                    } else {
                        r.system = Some(c);
                    }
                }
                "max_tokens" => r.max_tokens = opt_value(&mut map, &k, &mut r.extra)?,
                "stream" => r.stream = opt_value(&mut map, &k, &mut r.extra)?,
                "temperature" => r.temperature = opt_value(&mut map, &k, &mut r.extra)?,
                "top_p" => r.top_p = opt_value(&mut map, &k, &mut r.extra)?,
                "top_k" => r.top_k = opt_value(&mut map, &k, &mut r.extra)?,
                "stop_sequences" => {
                    r.stop =
                        opt_value::<_, Vec<String>>(&mut map, &k, &mut r.extra)?.map(|sequences| {
                            StopSequences {
                                sequences,
                                single_string: false,
                            }
                        })
                }
                "tools" => {
                    r.tools = opt_value::<_, Tools>(&mut map, &k, &mut r.extra)?.map(|t| t.0)
                }
                "tool_choice" => {
                    if let Some(tc) = opt_value::<_, AToolChoice>(&mut map, &k, &mut r.extra)? {
                        r.tool_choice = Some(tc.choice);
                        r.parallel_tool_calls = tc.disable_parallel.map(|d| !d);
                    }
                }
                "thinking" => {
                    if let Some(raw) = opt_value::<_, RawJson>(&mut map, &k, &mut r.extra)? {
                        r.thinking = Some(thinking_from_raw(raw));
                    }
                }
                "metadata" => {
                    if let Some(m) = opt_value::<_, AMetadata>(&mut map, &k, &mut r.extra)? {
                        r.metadata = Some(m.0);
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
        Ok(ARequest(r))
    }
}

fn thinking_from_raw(raw: RawJson) -> ThinkingConfig {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Enabled {
        #[serde(rename = "type")]
        _ty: String,
        budget_tokens: u32,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Bare {
        #[serde(rename = "type")]
        ty: String,
    }
    if let Ok(b) = serde_json::from_str::<Bare>(raw.get()) {
        match b.ty.as_str() {
            "adaptive" => return ThinkingConfig::Adaptive,
            "disabled" => return ThinkingConfig::Disabled,
            _ => {}
        }
    }
    match serde_json::from_str::<Enabled>(raw.get()) {
        Ok(e) if e._ty == "enabled" => ThinkingConfig::Enabled {
            budget_tokens: e.budget_tokens,
        },
        _ => ThinkingConfig::Unknown(raw),
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
        struct V;
        impl<'de> Visitor<'de> for V {
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
                let mut extra = Extra::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "role" => {
                            let r: Key<'de> = map.next_value()?;
                            role = Some(match r.as_str() {
                                "user" => Role::User,
                                "assistant" => Role::Assistant,
                                other => {
                                    return Err(de::Error::unknown_variant(
                                        other,
                                        &["user", "assistant"],
                                    ));
                                }
                            });
                        }
                        "content" => content = map.next_value::<AContent>()?.0,
                        _ => extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                Ok(Message {
                    role: role.ok_or_else(|| de::Error::missing_field("role"))?,
                    content,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
            .map_err(|e| de::Error::custom(format_args!("messages[{}]: {e}", self.0)))
    }
}

struct Tools(Vec<Tool>);

impl<'de> Deserialize<'de> for Tools {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tools;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of tools")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Tools, S::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(t) = seq.next_element_seed(ToolSeed(v.len()))? {
                    v.push(t);
                }
                Ok(Tools(v))
            }
        }
        d.deserialize_seq(V)
    }
}

struct ToolSeed(usize);

impl<'de> DeserializeSeed<'de> for ToolSeed {
    type Value = Tool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tool, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tool object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tool, A::Error> {
                // Custom tools (no `type`, or `type: "custom"`) are decoded; any other type
                // is a server tool, rebuilt verbatim from what was read.
                let mut ty: Option<String> = None;
                let mut name = None;
                let mut description = None;
                let mut parameters = None;
                let mut strict = None;
                let mut cache = None;
                let mut extra = Extra::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "type" => {
                            let t: String = map.next_value()?;
                            if t == "custom" {
                                extra.insert("type", to_raw(&t));
                            }
                            ty = Some(t);
                        }
                        "name" => name = Some(map.next_value::<String>()?),
                        "description" => description = opt_value(&mut map, &k, &mut extra)?,
                        "input_schema" => parameters = Some(map.next_value::<RawJson>()?),
                        "strict" => strict = opt_value(&mut map, &k, &mut extra)?,
                        "cache_control" => cache_control(&mut map, &mut cache, &mut extra)?,
                        _ => extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                match ty.as_deref() {
                    None | Some("custom") => Ok(Tool::Function(FunctionTool {
                        name: name.ok_or_else(|| de::Error::missing_field("name"))?,
                        description,
                        parameters,
                        strict,
                        cache_control: cache,
                        extra,
                    })),
                    Some(t) => {
                        let mut fields: Vec<(String, RawJson)> = vec![("type".into(), to_raw(t))];
                        if let Some(n) = &name {
                            fields.push(("name".into(), to_raw(n)));
                        }
                        if let Some(d) = &description {
                            fields.push(("description".into(), to_raw(d)));
                        }
                        if let Some(p) = parameters {
                            fields.push(("input_schema".into(), p));
                        }
                        if let Some(s) = strict {
                            fields.push(("strict".into(), to_raw(&s)));
                        }
                        if let Some(c) = cache {
                            fields.push(("cache_control".into(), c));
                        }
                        for (k, v) in extra.iter() {
                            fields.push((k.to_owned(), v.to_owned()));
                        }
                        let text = object_text(fields.iter().map(|(k, v)| (k.as_str(), &**v)));
                        Ok(Tool::Unknown {
                            dialect: Dialect::Anthropic,
                            name,
                            raw: RawValue::from_string(text).map_err(de::Error::custom)?,
                        })
                    }
                }
            }
        }
        d.deserialize_map(V)
            .map_err(|e| de::Error::custom(format_args!("tools[{}]: {e}", self.0)))
    }
}

struct AToolChoice {
    choice: ToolChoice,
    disable_parallel: Option<bool>,
}

impl<'de> Deserialize<'de> for AToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Known {
            #[serde(rename = "type")]
            ty: String,
            name: Option<String>,
            disable_parallel_tool_use: Option<bool>,
        }
        let unknown = |raw| AToolChoice {
            choice: ToolChoice::Unknown {
                dialect: Dialect::Anthropic,
                raw,
            },
            disable_parallel: None,
        };
        let Ok(k) = serde_json::from_str::<Known>(raw.get()) else {
            return Ok(unknown(raw));
        };
        let choice = match (k.ty.as_str(), k.name) {
            ("auto", None) => ToolChoice::Auto,
            ("any", None) => ToolChoice::Required,
            ("none", None) => ToolChoice::None,
            ("tool", Some(name)) => ToolChoice::Tool(name),
            _ => return Ok(unknown(raw)),
        };
        // An explicit `null` would not survive the round trip; keep such forms verbatim.
        let has_null =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
                .map(|m| m.values().any(serde_json::Value::is_null))
                .unwrap_or(true);
        if has_null {
            return Ok(unknown(raw));
        }
        Ok(AToolChoice {
            choice,
            disable_parallel: k.disable_parallel_tool_use,
        })
    }
}

struct AMetadata(Metadata);

impl<'de> Deserialize<'de> for AMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AMetadata, A::Error> {
                let mut m = Metadata::default();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "user_id" => m.user_id = opt_value(&mut map, &k, &mut m.extra)?,
                        _ => m.extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                Ok(AMetadata(m))
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Encodes a canonical request as an Anthropic Messages body.
///
/// A request that came from an Anthropic client is written back as it came (model name
/// aside). A request from another dialect is reshaped for Anthropic's rules: system and
/// developer messages hoisted into `system`; `tool` messages turned into `tool_result`
/// blocks placed first in one user message; consecutive same-role messages merged; tool
/// call ids made valid; `max_tokens` filled in.
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, WireError> {
    let plan = Plan::build(req, opts)?;
    let mut out = Vec::with_capacity(req.size_hint + req.size_hint / 8 + 256);
    serde_json::to_writer(&mut out, &plan).map_err(|e| WireError::Unsupported(e.to_string()))?;
    Ok(out)
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
                    _ => "user",
                };
                messages.push(OutMessage {
                    role,
                    source: Some(m),
                    blocks: m.content.blocks.iter().map(OutBlock::plain).collect(),
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
            // Anthropic wants every tool_result of a turn at the start of the next user
            // message, before any text.
            for m in messages.iter_mut().filter(|m| m.role == "user") {
                m.blocks
                    .sort_by_key(|b| !matches!(b.block, ContentBlock::ToolResult(_)));
            }
            if let Some(extra_n) = req.extra.get("n") {
                if extra_n.get() != "1" {
                    return Err(WireError::Unsupported(
                        "n > 1 is not supported by Anthropic".into(),
                    ));
                }
            }
        }
        let thinking = thinking_for(req, opts, same, &messages);
        let mut max_tokens = req.max_tokens.unwrap_or(opts.default_max_tokens);
        if let Some(ThinkingConfig::Enabled { budget_tokens }) = thinking.as_deref() {
            if !same && *budget_tokens >= max_tokens {
                max_tokens = budget_tokens.saturating_add(opts.default_max_tokens);
            }
        }
        // OpenAI's temperature goes to 2; Anthropic's stops at 1.
        let temperature = req.temperature.map(|t| if same { t } else { t.min(1.0) });
        Ok(Plan {
            req,
            opts,
            out: Out { same },
            system,
            messages,
            thinking,
            max_tokens,
            temperature,
        })
    }
}

fn collect_system<'a>(c: &'a Content, into: &mut Vec<&'a TextBlock>) -> Result<(), WireError> {
    for b in &c.blocks {
        match b {
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
            ContentBlock::Text(t) if t.text.is_empty() => return Ok(None),
            ContentBlock::Thinking(t) if t.signature.is_none() => return Ok(None),
            ContentBlock::ToolUse(t) => OutBlock {
                block,
                id: Some(sanitize_tool_id(&t.id)),
                input: Some(
                    t.input
                        .to_object()
                        .map_err(|e| format!("tool call `{}` ({}): {e}", t.name, t.id))?,
                ),
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
/// `reasoning_effort`, and off when the history holds tool calls without the signed
/// thinking Anthropic would demand before them.
fn thinking_for<'a>(
    req: &'a ChatRequest,
    opts: &EncodeOptions,
    same: bool,
    messages: &[OutMessage<'_>],
) -> Option<Cow<'a, ThinkingConfig>> {
    if same {
        return req.thinking.as_ref().map(Cow::Borrowed);
    }
    if let Some(t) = &req.thinking {
        if !matches!(t, ThinkingConfig::Unknown(_)) {
            return Some(Cow::Borrowed(t));
        }
    }
    if !opts.thinking_from_reasoning_effort {
        return None;
    }
    let budget = match req.reasoning_effort.as_deref()? {
        "minimal" | "none" => return None,
        "low" => 1024,
        "medium" => 4096,
        "high" => 16384,
        "xhigh" => 32768,
        _ => return None,
    };
    let unsigned_tool_turn = messages.iter().any(|m| {
        m.role == "assistant"
            && m.blocks
                .iter()
                .any(|b| matches!(b.block, ContentBlock::ToolUse(_)))
            && !matches!(
                m.blocks.first().map(|b| b.block),
                Some(ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_))
            )
    });
    if unsigned_tool_turn {
        return None;
    }
    Some(Cow::Owned(ThinkingConfig::Enabled {
        budget_tokens: budget,
    }))
}

struct ThinkingOut<'a>(&'a ThinkingConfig);

impl Serialize for ThinkingOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ThinkingConfig::Unknown(raw) => raw.serialize(s),
            t => {
                let mut m = s.serialize_map(None)?;
                match t {
                    ThinkingConfig::Enabled { budget_tokens } => {
                        m.serialize_entry("type", "enabled")?;
                        m.serialize_entry("budget_tokens", budget_tokens)?;
                    }
                    ThinkingConfig::Adaptive => m.serialize_entry("type", "adaptive")?,
                    _ => m.serialize_entry("type", "disabled")?,
                }
                m.end()
            }
        }
    }
}

struct ToolOut<'a> {
    tool: &'a Tool,
    out: Out,
}

impl Serialize for ToolOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self.tool {
            Tool::Unknown { dialect, raw, .. } if *dialect == Dialect::Anthropic => {
                raw.serialize(s)
            }
            Tool::Unknown { name, .. } => Err(S::Error::custom(format_args!(
                "tool `{}` is not a function tool and cannot be sent to Anthropic",
                name.as_deref().unwrap_or("?")
            ))),
            Tool::Function(f) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("name", &f.name)?;
                if let Some(d) = &f.description {
                    m.serialize_entry("description", d)?;
                }
                match &f.parameters {
                    Some(p) => m.serialize_entry("input_schema", p)?,
                    // Anthropic requires a schema; OpenAI allows none.
                    None if !self.out.same => m.serialize_entry(
                        "input_schema",
                        &serde_json::json!({"type": "object", "properties": {}}),
                    )?,
                    None => {}
                }
                if let Some(st) = f.strict {
                    m.serialize_entry("strict", &st)?;
                }
                if let Some(c) = &f.cache_control {
                    m.serialize_entry("cache_control", c)?;
                }
                if self.out.same {
                    f.extra.serialize_into(&mut m, &[])?;
                }
                m.end()
            }
        }
    }
}

struct ToolChoiceOut<'a> {
    choice: Option<&'a ToolChoice>,
    parallel: Option<bool>,
}

impl Serialize for ToolChoiceOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if let Some(ToolChoice::Unknown { dialect, raw }) = self.choice {
            if *dialect == Dialect::Anthropic {
                return raw.serialize(s);
            }
            return Err(S::Error::custom(
                "this tool_choice form cannot be sent to Anthropic",
            ));
        }
        let mut m = s.serialize_map(None)?;
        match self.choice {
            Some(ToolChoice::Required) => m.serialize_entry("type", "any")?,
            Some(ToolChoice::None) => m.serialize_entry("type", "none")?,
            Some(ToolChoice::Tool(name)) => {
                m.serialize_entry("type", "tool")?;
                m.serialize_entry("name", name)?;
            }
            _ => m.serialize_entry("type", "auto")?,
        }
        if let Some(p) = self.parallel {
            m.serialize_entry("disable_parallel_tool_use", &!p)?;
        }
        m.end()
    }
}

struct MessageOut<'a, 'b> {
    m: &'b OutMessage<'a>,
    out: Out,
}

impl Serialize for MessageOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", self.m.role)?;
        match self.m.source {
            Some(src) => {
                if src.content.form != ContentForm::Absent || !src.content.blocks.is_empty() {
                    map.serialize_entry(
                        "content",
                        &ContentOut {
                            content: &src.content,
                            out: self.out,
                        },
                    )?;
                }
                src.extra.serialize_into(&mut map, &[])?;
            }
            None => map.serialize_entry(
                "content",
                &BlocksOut {
                    blocks: &self.m.blocks,
                    out: self.out,
                },
            )?,
        }
        map.end()
    }
}

struct BlocksOut<'a, 'b> {
    blocks: &'b [OutBlock<'a>],
    out: Out,
}

impl Serialize for BlocksOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.blocks.len()))?;
        for b in self.blocks {
            seq.serialize_element(&BlockOut {
                block: b.block,
                out: self.out,
                id: b.id.as_deref(),
                input: b.input.as_deref(),
            })?;
        }
        seq.end()
    }
}

struct SystemOut<'a, 'b>(&'b [&'a TextBlock]);

impl Serialize for SystemOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let [only] = self.0 {
            if only.cache_control.is_none() {
                return only.text.serialize(s);
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for t in self.0 {
            seq.serialize_element(&TextOut(t))?;
        }
        seq.end()
    }
}

struct TextOut<'a>(&'a TextBlock);

impl Serialize for TextOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "text")?;
        m.serialize_entry("text", &self.0.text)?;
        if let Some(c) = &self.0.cache_control {
            m.serialize_entry("cache_control", c)?;
        }
        m.end()
    }
}

impl Serialize for Plan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let same = self.out.same;
        let mut m = TrackedMap::new(s.serialize_map(None)?);
        if !self.opts.omit_model {
            m.entry("model", &r.model)?;
        }
        if same {
            if let Some(sys) = &r.system {
                m.entry(
                    "system",
                    &ContentOut {
                        content: sys,
                        out: self.out,
                    },
                )?;
            }
        } else if !self.system.is_empty() {
            m.entry("system", &SystemOut(&self.system))?;
        }
        m.entry("messages", &MessagesOut(self))?;
        if same {
            if let Some(mt) = r.max_tokens {
                m.entry("max_tokens", &mt)?;
            } else if !r.extra.contains("max_tokens") {
                m.entry("max_tokens", &self.max_tokens)?;
            }
        } else {
            m.entry("max_tokens", &self.max_tokens)?;
        }
        if let (Some(st), false) = (r.stream, self.opts.omit_stream) {
            m.entry("stream", &st)?;
        }
        if let Some(t) = self.temperature {
            m.entry("temperature", &t)?;
        }
        if let Some(t) = r.top_p {
            m.entry("top_p", &t)?;
        }
        if let Some(t) = r.top_k {
            m.entry("top_k", &t)?;
        }
        if let Some(stop) = &r.stop {
            if same || !stop.sequences.is_empty() {
                m.entry("stop_sequences", &stop.sequences)?;
            }
        }
        let has_tools = r.tools.as_ref().is_some_and(|t| !t.is_empty());
        if let Some(tools) = &r.tools {
            if same || has_tools {
                m.entry(
                    "tools",
                    &ToolsOut {
                        tools,
                        out: self.out,
                    },
                )?;
            }
        }
        let parallel = if same {
            r.parallel_tool_calls
        } else {
            r.parallel_tool_calls.filter(|p| !p)
        };
        if same {
            if r.tool_choice.is_some() || parallel.is_some() {
                m.entry(
                    "tool_choice",
                    &ToolChoiceOut {
                        choice: r.tool_choice.as_ref(),
                        parallel,
                    },
                )?;
            }
        } else if has_tools && (r.tool_choice.is_some() || parallel.is_some()) {
            m.entry(
                "tool_choice",
                &ToolChoiceOut {
                    choice: r.tool_choice.as_ref(),
                    parallel,
                },
            )?;
        }
        if let Some(t) = &self.thinking {
            m.entry("thinking", &ThinkingOut(t))?;
        }
        if let Some(md) = &r.metadata {
            if same {
                let mut fields = Extra::new();
                if let Some(u) = &md.user_id {
                    fields.insert("user_id", to_raw(u));
                }
                for (k, v) in md.extra.iter() {
                    fields.insert(k, v.to_owned());
                }
                m.entry("metadata", &fields)?;
            } else if let Some(u) = &md.user_id {
                m.entry("metadata", &serde_json::json!({ "user_id": u }))?;
            }
        }
        if same {
            let mut skip: &[&str] = &[];
            if self.opts.omit_model || self.opts.omit_stream {
                skip = &["model", "stream"];
            }
            m.extra(&r.extra, skip)?;
        }
        m.end()
    }
}

struct MessagesOut<'a, 'b>(&'b Plan<'a>);

impl Serialize for MessagesOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.messages.len()))?;
        for msg in &self.0.messages {
            seq.serialize_element(&MessageOut {
                m: msg,
                out: self.0.out,
            })?;
        }
        seq.end()
    }
}

struct ToolsOut<'a> {
    tools: &'a [Tool],
    out: Out,
}

impl Serialize for ToolsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.tools.len()))?;
        for t in self.tools {
            seq.serialize_element(&ToolOut {
                tool: t,
                out: self.out,
            })?;
        }
        seq.end()
    }
}
