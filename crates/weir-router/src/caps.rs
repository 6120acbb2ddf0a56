//! What a request needs from a target, and dropping what a target lacks.

use weir_model::{
    Capabilities, ChatRequest, Content, ContentBlock, JsonStr, TextBlock, ThinkingConfig, Tool,
};

/// Features a request uses that not every target supports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    pub images: bool,
    pub documents: bool,
    pub tools: bool,
    pub thinking: bool,
    pub prompt_caching: bool,
    pub threads: bool,
}

impl Needs {
    pub(crate) fn of(req: &ChatRequest) -> Needs {
        let mut n = Needs {
            tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
            thinking: matches!(
                req.thinking,
                Some(ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive(_))
            ),
            prompt_caching: req
                .tools
                .iter()
                .flatten()
                .any(|t| matches!(t, Tool::Function(f) if f.cache_control.is_some())),
            threads: req.thread().is_some(),
            ..Needs::default()
        };
        if let Some(s) = &req.system {
            n.scan(s);
        }
        for m in &req.messages {
            n.scan(&m.content);
        }
        n
    }

    /// What a Responses API request uses, read from its fields as they came: function
    /// tools or calls, `input_image` and `input_file` parts, `reasoning`. (It is passed
    /// through, never translated, so nothing can be dropped from it.)
    pub(crate) fn of_responses(req: &weir_model::ResponsesRequest) -> Needs {
        use serde_json::Value;
        let mut n = Needs::default();
        for (k, v) in &req.fields {
            match k.as_str() {
                "tools" => {
                    n.tools |= serde_json::from_str::<Vec<serde::de::IgnoredAny>>(v.get())
                        .is_ok_and(|t| !t.is_empty());
                }
                "reasoning" => {
                    // An effort asks for reasoning; `summary` alone (Codex sends it to every
                    // model) or a null effort asks nothing of a model without it.
                    n.thinking |= serde_json::from_str::<Value>(v.get()).is_ok_and(|r| {
                        r.get("effort")
                            .and_then(Value::as_str)
                            .is_some_and(|e| e != "none")
                    });
                }
                "input" => {
                    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(v.get()) else {
                        continue;
                    };
                    for item in &items {
                        let ty = item.get("type").and_then(Value::as_str);
                        n.tools |= matches!(ty, Some("function_call" | "function_call_output"));
                        // A message's content parts, and a function call's output parts.
                        let parts = ["content", "output"]
                            .iter()
                            .filter_map(|k| item.get(k).and_then(Value::as_array));
                        for p in parts.flatten() {
                            match p.get("type").and_then(Value::as_str) {
                                Some("input_image") => n.images = true,
                                Some("input_file") => n.documents = true,
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        n
    }

    fn scan(&mut self, c: &Content) {
        for b in &c.blocks {
            match b {
                ContentBlock::Text(t) => self.prompt_caching |= t.cache_control.is_some(),
                ContentBlock::Image(i) => {
                    self.images = true;
                    self.prompt_caching |= i.cache_control.is_some();
                }
                ContentBlock::Document(d) => {
                    self.documents = true;
                    self.prompt_caching |= d.cache_control.is_some();
                }
                ContentBlock::ToolUse(t) => {
                    self.tools = true;
                    self.prompt_caching |= t.cache_control.is_some();
                }
                ContentBlock::ToolResult(r) => {
                    self.tools = true;
                    self.prompt_caching |= r.cache_control.is_some();
                    self.scan(&r.content);
                }
                // Earlier thinking in the history is harmless to a target without
                // thinking once dropped; only `thinking` config asks for the feature.
                ContentBlock::Thinking(_)
                | ContentBlock::RedactedThinking(_)
                | ContentBlock::Unknown(_) => {}
            }
        }
    }

    /// The features needed that `caps` lacks, by name.
    pub(crate) fn missing(&self, caps: &Capabilities) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.images && !caps.images {
            m.push("images");
        }
        if self.documents && !caps.documents {
            m.push("documents");
        }
        if self.tools && !caps.tools {
            m.push("tools");
        }
        if self.thinking && !caps.thinking {
            m.push("thinking");
        }
        if self.prompt_caching && !caps.prompt_caching {
            m.push("prompt_caching");
        }
        if self.threads && !caps.threads {
            m.push("threads");
        }
        m
    }
}

/// Features a request only hints at, dropped for a target without them whatever the
/// route's `unsupported` says: `cache_control` (a cost saving, never needed for an answer)
/// and adaptive thinking (the model may decide not to think). Claude Code sends both on
/// every request; refusing a target over them would leave it no fallback.
pub(crate) fn is_hint(feature: &str, req: &ChatRequest) -> bool {
    feature == "prompt_caching"
        || (feature == "thinking" && matches!(req.thinking, Some(ThinkingConfig::Adaptive(_))))
}

/// Features that can be dropped from a request (tools cannot: the conversation would no
/// longer make sense; nor can a thread: a continuing request holds only the new messages).
pub(crate) fn droppable(feature: &str) -> bool {
    feature != "tools" && feature != "threads"
}

/// Removes `features` from a request; returns the warning to show the client.
pub(crate) fn drop_features(req: &mut ChatRequest, features: &[&str]) -> String {
    let images = features.contains(&"images");
    let documents = features.contains(&"documents");
    let thinking = features.contains(&"thinking");
    let caching = features.contains(&"prompt_caching");
    if thinking {
        req.thinking = None;
    }
    if caching {
        for t in req.tools.iter_mut().flatten() {
            if let Tool::Function(f) = t {
                f.cache_control = None;
            }
        }
    }
    let fix = |c: &mut Content| strip(c, images, documents, thinking, caching);
    if let Some(s) = &mut req.system {
        fix(s);
    }
    for m in &mut req.messages {
        fix(&mut m.content);
    }
    format!("dropped unsupported: {}", features.join(", "))
}

fn strip(c: &mut Content, images: bool, documents: bool, thinking: bool, caching: bool) {
    let placeholder = |what: &str| {
        ContentBlock::Text(TextBlock {
            text: JsonStr::from(format!(
                "[{what} omitted: the model does not accept {what}s]"
            )),
            cache_control: None,
            extra: Default::default(),
        })
    };
    let mut out = Vec::with_capacity(c.blocks.len());
    let mut replaced = false;
    for mut b in std::mem::take(&mut c.blocks) {
        match &mut b {
            ContentBlock::Image(_) if images => {
                out.push(placeholder("image"));
                replaced = true;
                continue;
            }
            ContentBlock::Document(_) if documents => {
                out.push(placeholder("document"));
                replaced = true;
                continue;
            }
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) if thinking => {
                replaced = true;
                continue;
            }
            ContentBlock::ToolResult(r) => {
                strip(&mut r.content, images, documents, thinking, caching)
            }
            _ => {}
        }
        if caching {
            match &mut b {
                ContentBlock::Text(t) => t.cache_control = None,
                ContentBlock::Image(i) => i.cache_control = None,
                ContentBlock::Document(d) => d.cache_control = None,
                ContentBlock::ToolUse(t) => t.cache_control = None,
                ContentBlock::ToolResult(r) => r.cache_control = None,
                _ => {}
            }
        }
        out.push(b);
    }
    // A message must keep some content.
    if out.is_empty() {
        out.push(ContentBlock::Text(TextBlock {
            text: JsonStr::from("."),
            cache_control: None,
            extra: Default::default(),
        }));
    }
    c.blocks = out;
    if replaced {
        c.form = weir_model::ContentForm::Blocks;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_model::{Message, Role};

    fn with_blocks(blocks: Vec<ContentBlock>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: Content::blocks(blocks),
                extra: Default::default(),
            }],
            ..Default::default()
        }
    }

    /// A Responses request needs reasoning when it asks an effort: Codex sends
    /// `reasoning: {"summary": "auto"}` to every model, which asks nothing of one without it.
    #[test]
    fn responses_need_thinking_only_for_an_effort() {
        let needs = |reasoning: &str| {
            let body = format!(r#"{{"model":"m","input":"hi","reasoning":{reasoning}}}"#);
            Needs::of_responses(&weir_model::ResponsesRequest::decode(body.as_bytes()).unwrap())
                .thinking
        };
        assert!(needs(r#"{"effort":"high"}"#));
        assert!(needs(r#"{"effort":"medium","summary":"auto"}"#));
        assert!(!needs(r#"{"summary":"auto"}"#));
        assert!(!needs(r#"{"effort":null}"#));
        assert!(!needs(r#"{"effort":"none"}"#));
        assert!(!needs("null"));
    }

    #[test]
    fn plain_text_needs_nothing_and_thinking_config_needs_thinking() {
        let mut r = with_blocks(vec![ContentBlock::Text(TextBlock {
            text: "hi".into(),
            cache_control: None,
            extra: Default::default(),
        })]);
        assert_eq!(Needs::of(&r), Needs::default());
        r.thinking = Some(ThinkingConfig::Adaptive(None));
        assert_eq!(
            Needs::of(&r).missing(&Capabilities {
                thinking: false,
                ..Capabilities::ALL
            }),
            vec!["thinking"]
        );
        let w = drop_features(&mut r, &["thinking"]);
        assert!(r.thinking.is_none());
        assert_eq!(w, "dropped unsupported: thinking");
    }

    #[test]
    fn cache_control_anywhere_needs_prompt_caching_and_is_stripped_when_dropped() {
        let raw =
            serde_json::value::RawValue::from_string(r#"{"type":"ephemeral"}"#.into()).unwrap();
        let mut r = with_blocks(vec![ContentBlock::Text(TextBlock {
            text: "hi".into(),
            cache_control: Some(raw),
            extra: Default::default(),
        })]);
        assert!(Needs::of(&r).prompt_caching);
        drop_features(&mut r, &["prompt_caching"]);
        assert!(!Needs::of(&r).prompt_caching);
        assert!(!droppable("tools"));
    }
}
