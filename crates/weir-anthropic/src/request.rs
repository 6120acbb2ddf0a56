//! Anthropic Messages requests: decoding a client's body, encoding an upstream body.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::raw::{to_raw, Key};
use weir_model::{
    ChatRequest, Content, ContentForm, Dialect, Extra, FunctionTool, Message, Metadata, RawJson,
    Role, StopSequences, ThinkingConfig, Tool, ToolChoice, WireError,
};

use crate::blocks::{cache_control, AContent};
use weir_model::wire::{object_text, opt_value};

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

pub(crate) fn thinking_from_raw(raw: RawJson) -> ThinkingConfig {
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
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        ty: String,
    }
    if let Ok(b) = serde_json::from_str::<Bare>(raw.get()) {
        match b.ty.as_str() {
            "adaptive" => return ThinkingConfig::Adaptive(None),
            "disabled" => return ThinkingConfig::Disabled,
            _ => {}
        }
    }
    // Adaptive with options (Claude Code's `display`): adaptive for other dialects, and
    // written back as it came.
    if serde_json::from_str::<Typed>(raw.get()).is_ok_and(|t| t.ty == "adaptive") {
        return ThinkingConfig::Adaptive(Some(raw));
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
                                // Claude Code sends system turns inside `messages`.
                                "system" => Role::System,
                                other => {
                                    return Err(de::Error::unknown_variant(
                                        other,
                                        &["user", "assistant", "system"],
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
