//! Ollama's native API: encoding, answers, NDJSON streams (split anywhere, errors inside),
//! and the provider against a local stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use serde_json::{json, Value};
use weir_model::{
    CallContext, ChatRequest, Content, ContentBlock, Delta, ErrorKind, Frame, ImageBlock,
    MediaSource, Message, Provider, Reply, Role, StopReason, StreamEvent, TextBlock,
    ThinkingConfig, ToolInput, ToolResultBlock, ToolUseBlock,
};
use weir_ollama::{decode_response, encode_request, NdjsonDecoder, OllamaConfig, OllamaProvider};
use weir_testkit::upstream::{Behaviour, FaultyUpstream};
use weir_upstream::BodyDecoder;

fn text(t: &str) -> ContentBlock {
    ContentBlock::Text(TextBlock {
        text: t.into(),
        ..Default::default()
    })
}

fn msg(role: Role, blocks: Vec<ContentBlock>) -> Message {
    Message {
        role,
        content: Content::blocks(blocks),
        extra: Default::default(),
    }
}

fn call_with(id: &str, name: &str, args: &str) -> ContentBlock {
    ContentBlock::ToolUse(ToolUseBlock {
        id: id.into(),
        name: name.into(),
        input: ToolInput::Arguments(args.into()),
        cache_control: None,
        extra: Default::default(),
    })
}

fn result(id: &str, out: &str) -> ContentBlock {
    ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: id.into(),
        content: Content::text(out),
        is_error: None,
        cache_control: None,
        extra: Default::default(),
    })
}

fn tool_loop() -> ChatRequest {
    let call = |id: &str, name: &str| call_with(id, name, r#"{"city":"Paris"}"#);
    ChatRequest {
        model: "qwen3:0.6b".into(),
        system: Some(Content::text("Be brief.")),
        messages: vec![
            msg(
                Role::User,
                vec![
                    text("What is this and what's the weather?"),
                    ContentBlock::Image(ImageBlock {
                        source: MediaSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                        detail: None,
                        cache_control: None,
                        extra: Default::default(),
                    }),
                ],
            ),
            msg(
                Role::Assistant,
                vec![call("call_a", "get_weather"), call("call_b", "get_time")],
            ),
            msg(
                Role::User,
                vec![result("call_a", "sunny"), result("call_b", "noon")],
            ),
        ],
        max_tokens: Some(100),
        temperature: Some(0.2),
        thinking: Some(ThinkingConfig::Enabled {
            budget_tokens: 1024,
        }),
        ..Default::default()
    }
}

#[test]
fn requests_carry_images_tool_calls_and_results_by_name() {
    let body: Value = serde_json::from_slice(&encode_request(&tool_loop()).unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "qwen3:0.6b",
            "stream": false,
            "think": true,
            "options": {"temperature": 0.2, "num_predict": 100},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is this and what's the weather?", "images": ["iVBORw0KGgo="]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "get_time", "arguments": {"city": "Paris"}}}
                ]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                {"role": "tool", "content": "noon", "tool_name": "get_time"}
            ]
        })
    );
}

/// Ollama pairs results with calls by name and order only: results go in the order of
/// their calls, and a result's image (a screenshot a tool took) goes in the user message
/// after the tool messages.
#[test]
fn results_follow_their_calls_order_and_keep_their_images() {
    let mut req = tool_loop();
    let last = req.messages.last_mut().unwrap();
    last.content.blocks.reverse();
    if let ContentBlock::ToolResult(r) = &mut last.content.blocks[0] {
        r.content.blocks.push(ContentBlock::Image(ImageBlock {
            source: MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "c2hvdA==".into(),
            },
            detail: None,
            cache_control: None,
            extra: Default::default(),
        }));
    }
    let body: Value = serde_json::from_slice(&encode_request(&req).unwrap()).unwrap();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages[3..],
        [
            json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"}),
            json!({"role": "tool", "content": "noon", "tool_name": "get_time"}),
            json!({"role": "user", "content": "", "images": ["c2hvdA=="]}),
        ]
    );
}

/// An OpenAI client's results come in separate tool messages: they too go in the order
/// of their calls.
#[test]
fn separate_tool_messages_follow_their_calls_order() {
    let mut req = tool_loop();
    let last = req.messages.pop().unwrap();
    for b in last.content.blocks.into_iter().rev() {
        req.messages.push(msg(Role::Tool, vec![b]));
    }
    req.messages.push(msg(Role::User, vec![text("and?")]));
    let body: Value = serde_json::from_slice(&encode_request(&req).unwrap()).unwrap();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages[3..],
        [
            json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"}),
            json!({"role": "tool", "content": "noon", "tool_name": "get_time"}),
            json!({"role": "user", "content": "and?"}),
        ]
    );
}

/// A client that numbers each turn's calls from 0 again: a result answers the latest
/// call of its id before it.
#[test]
fn a_call_id_used_again_names_its_own_turns_tool() {
    let mut req = tool_loop();
    let call = |id: &str, name: &str| call_with(id, name, "{}");
    req.messages = vec![
        msg(Role::User, vec![text("weather, then time")]),
        msg(Role::Assistant, vec![call("call_0", "get_weather")]),
        msg(Role::User, vec![result("call_0", "sunny")]),
        msg(Role::Assistant, vec![call("call_0", "get_time")]),
        msg(Role::User, vec![result("call_0", "12:00")]),
    ];
    let body: Value = serde_json::from_slice(&encode_request(&req).unwrap()).unwrap();
    let tools: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(
        tools,
        [
            &json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"}),
            &json!({"role": "tool", "content": "12:00", "tool_name": "get_time"}),
        ]
    );
}

/// Adaptive thinking leaves it to the model: no `think` (Ollama's models without
/// thinking answer 400 to `think: true`, and Claude Code asks for adaptive thinking on
/// every request); disabled says so.
#[test]
fn adaptive_thinking_sends_no_think_and_disabled_sends_false() {
    let mut r = tool_loop();
    r.thinking = Some(ThinkingConfig::Adaptive(None));
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert!(body.get("think").is_none(), "{body}");
    r.thinking = Some(ThinkingConfig::Disabled);
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(body["think"], false);
}

/// An OpenAI client's `reasoning_effort` turns thinking on or off; gpt-oss takes the
/// level itself.
#[test]
fn reasoning_effort_becomes_think() {
    let think = |model: &str, effort: Option<&str>| {
        let mut r = tool_loop();
        r.model = model.into();
        r.thinking = None;
        r.reasoning_effort = effort.map(str::to_owned);
        let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
        body.get("think").cloned()
    };
    assert_eq!(think("qwen3", Some("high")), Some(json!(true)));
    assert_eq!(think("qwen3", Some("none")), Some(json!(false)));
    assert_eq!(think("gpt-oss:20b", Some("low")), Some(json!("low")));
    // (`true` is gpt-oss's medium.)
    assert_eq!(think("gpt-oss:20b", Some("minimal")), Some(json!("low")));
    assert_eq!(think("gpt-oss:20b", Some("xhigh")), Some(json!("high")));
    assert_eq!(think("qwen3", None), None);
    // An Anthropic client's thinking budget is gpt-oss's level by its size.
    for (budget, level) in [(1024, "low"), (4096, "medium"), (20000, "high")] {
        let mut r = tool_loop();
        r.model = "gpt-oss:120b".into();
        r.thinking = Some(ThinkingConfig::Enabled {
            budget_tokens: budget,
        });
        let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
        assert_eq!(body["think"], level, "{budget}");
    }
}

#[test]
fn structured_output_requests_become_format() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let mut r = tool_loop();
    r.origin = Some(weir_model::Dialect::OpenAi);
    r.extra.insert(
        "response_format",
        weir_model::raw::to_raw(
            &json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}),
        ),
    );
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(body["format"], schema);
    r.extra.insert(
        "response_format",
        weir_model::raw::to_raw(&json!({"type": "json_object"})),
    );
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(body["format"], "json");
    r.origin = Some(weir_model::Dialect::Anthropic);
    r.extra = Default::default();
    r.extra.insert(
        "output_config",
        weir_model::raw::to_raw(&json!({"format": {"type": "json_schema", "schema": schema}})),
    );
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(body["format"], schema);
    r.extra = Default::default();
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert!(body.get("format").is_none());
}

#[test]
fn tool_choice_none_sends_no_tools_and_a_named_tool_only_that_one() {
    let tool = |name: &str| {
        weir_model::Tool::Function(weir_model::FunctionTool {
            name: name.into(),
            description: None,
            parameters: Some(weir_model::raw::to_raw(&json!({"type": "object"}))),
            strict: None,
            cache_control: None,
            extra: Default::default(),
        })
    };
    let names = |r: &ChatRequest| -> Vec<String> {
        let body: Value = serde_json::from_slice(&encode_request(r).unwrap()).unwrap();
        body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut r = tool_loop();
    r.tools = Some(vec![tool("weather"), tool("time")]);
    assert_eq!(names(&r), ["weather", "time"]);
    r.tool_choice = Some(weir_model::ToolChoice::Auto);
    assert_eq!(names(&r), ["weather", "time"]);
    r.tool_choice = Some(weir_model::ToolChoice::None);
    assert!(names(&r).is_empty());
    r.tool_choice = Some(weir_model::ToolChoice::Tool("time".into()));
    assert_eq!(names(&r), ["time"]);
    // A named tool the request does not offer: refused, not answered as `none`.
    r.tool_choice = Some(weir_model::ToolChoice::Tool("clock".into()));
    let e = encode_request(&r).unwrap_err().to_string();
    assert!(e.contains("`clock`"), "{e}");
    // `required` cannot be asked of Ollama: the tools go as they are.
    r.tool_choice = Some(weir_model::ToolChoice::Required);
    assert_eq!(names(&r), ["weather", "time"]);
}

#[test]
fn an_openai_clients_seed_and_penalties_are_options() {
    let mut r = tool_loop();
    r.origin = Some(weir_model::Dialect::OpenAi);
    for (k, v) in [
        ("seed", json!(42)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-0.25)),
    ] {
        r.extra.insert(k, weir_model::raw::to_raw(&v));
    }
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(body["options"]["seed"], 42);
    assert_eq!(body["options"]["presence_penalty"], 0.5);
    assert_eq!(body["options"]["frequency_penalty"], -0.25);
    assert!(body.get("seed").is_none(), "{body}");
}

#[test]
fn what_ollama_cannot_take_is_refused_clearly() {
    let mut r = tool_loop();
    r.messages[0].content.blocks[1] = ContentBlock::Image(ImageBlock {
        source: MediaSource::Url("https://example.com/a.png".into()),
        detail: None,
        cache_control: None,
        extra: Default::default(),
    });
    let e = encode_request(&r).unwrap_err().to_string();
    assert!(e.contains("image URLs"), "{e}");
    let mut r = tool_loop();
    r.messages.remove(1);
    let e = encode_request(&r).unwrap_err().to_string();
    assert!(e.contains("no matching tool call"), "{e}");
}

#[test]
fn answers_decode_with_thinking_tool_calls_stop_reason_and_usage() {
    let body = json!({
        "model": "qwen3:0.6b", "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "", "thinking": "The user wants weather.",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                                   {"function": {"name": "get_time", "arguments": {"city": "Paris"}}}]},
        "done": true, "done_reason": "stop", "prompt_eval_count": 31, "eval_count": 12
    });
    let r = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens),
        (Some(31), Some(12))
    );
    assert!(
        matches!(&r.content[0], ContentBlock::Thinking(t) if t.thinking.as_str() == "The user wants weather.")
    );
    let ids: Vec<&str> = r
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(t) => Some(t.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(ids
        .iter()
        .all(|id| id.starts_with("call_")
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')));
    let r = decode_response(
        br#"{"model":"m","message":{"role":"assistant","content":"cut"},"done":true,"done_reason":"length"}"#,
    )
    .unwrap();
    assert_eq!(r.stop_reason, Some(StopReason::MaxTokens));
}

const STREAM: &str = concat!(
    "{\"model\":\"qwen3:0.6b\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hmm\"},\"done\":false}\n",
    "{\"model\":\"qwen3:0.6b\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\", ok.\"},\"done\":false}\n",
    "{\"model\":\"qwen3:0.6b\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"done\":false}\n",
    "{\"model\":\"qwen3:0.6b\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\" world\"},\"done\":false}\n",
    "{\"model\":\"qwen3:0.6b\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":9,\"eval_count\":4}\n",
);

fn decode_all(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, weir_model::ProviderError> {
    let mut d = NdjsonDecoder::new();
    let mut frames: Vec<Frame> = Vec::new();
    for c in chunks {
        d.feed(c, &mut frames)?;
    }
    d.finish(&mut frames)?;
    Ok(frames.into_iter().flat_map(|f| f.events).collect())
}

fn summary(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::MessageStart { model, .. } => format!("start {model}"),
            StreamEvent::BlockStart { index, block } => format!(
                "open {index} {}",
                match block {
                    ContentBlock::Text(_) => "text".to_owned(),
                    ContentBlock::Thinking(_) => "thinking".to_owned(),
                    ContentBlock::ToolUse(t) => format!("tool {}", t.name),
                    _ => "other".to_owned(),
                }
            ),
            StreamEvent::BlockDelta { index, delta } => match delta {
                Delta::Text(t) | Delta::Thinking(t) | Delta::InputJson(t) => {
                    format!("delta {index} {}", t.as_str())
                }
                _ => "delta ?".into(),
            },
            StreamEvent::BlockStop { index } => format!("close {index}"),
            StreamEvent::MessageDelta {
                stop_reason, usage, ..
            } => format!(
                "stop {:?} {:?}/{:?}",
                stop_reason, usage.input_tokens, usage.output_tokens
            ),
            StreamEvent::MessageStop => "end".into(),
            StreamEvent::Error(e) => format!("error {}", e.message),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn ndjson_streams_decode_the_same_however_they_are_split() {
    let whole = summary(&decode_all(&[STREAM.as_bytes()]).unwrap());
    assert_eq!(
        whole,
        [
            "start qwen3:0.6b",
            "open 0 thinking",
            "delta 0 Hmm",
            "delta 0 , ok.",
            "close 0",
            "open 1 text",
            "delta 1 Hello",
            "delta 1  world",
            "close 1",
            "stop Some(EndTurn) Some(9)/Some(4)",
            "end"
        ]
    );
    let b = STREAM.as_bytes();
    for i in 0..=b.len() {
        let split = summary(&decode_all(&[&b[..i], &b[i..]]).unwrap());
        assert_eq!(split, whole, "split at {i}");
    }
}

#[test]
fn tool_calls_errors_and_cut_streams() {
    let tools = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},\"done\":false}\n\
                 {\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n";
    let s = summary(&decode_all(&[tools.as_bytes()]).unwrap());
    assert_eq!(
        s,
        [
            "start m",
            "open 0 tool get_weather",
            "delta 0 {\"city\":\"Paris\"}",
            "close 0",
            "stop Some(ToolUse) None/None",
            "end"
        ]
    );
    let err = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"model runner has unexpectedly stopped\"}\n";
    let s = summary(&decode_all(&[err.as_bytes()]).unwrap());
    assert_eq!(
        s.last().unwrap(),
        "error model runner has unexpectedly stopped"
    );
    let cut = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n";
    let e = decode_all(&[cut.as_bytes()]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
    assert!(decode_all(&[b"{not json}\n"]).is_err());
    // An empty (or blank) body is no answer: an error, not an empty success.
    for body in [&b""[..], b"\n\n"] {
        let e = decode_all(&[body]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Decode);
        assert!(e.message.contains("before any response line"), "{e}");
    }
}

fn provider(url: &str) -> OllamaProvider {
    OllamaProvider::new(
        OllamaConfig {
            id: "ollama".into(),
            base_url: url.into(),
            keys: vec![],
            timeouts: Default::default(),
            encode: (),
        },
        weir_upstream::Upstream::new(std::time::Duration::from_secs(5)).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_provider_posts_to_api_chat_and_reads_streams_and_errors() {
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "application/x-ndjson".into(),
        body: STREAM.into(),
    })
    .await;
    let p = provider(up.url());
    let mut req = tool_loop();
    req.stream = Some(true);
    let Reply::Stream(mut s) = p.send(&req, CallContext::new("t")).await.unwrap() else {
        panic!()
    };
    let mut events = Vec::new();
    while let Some(f) = s.next().await {
        events.extend(f.unwrap().events);
    }
    assert_eq!(summary(&events).last().unwrap(), "end");
    let r = &up.requests()[0];
    assert_eq!(r.path, "/api/chat");
    assert_eq!(r.json().unwrap()["stream"], true);

    up.set(Behaviour::json(
        404,
        &json!({"error": "model \"qwen9\" not found, try pulling it first"}),
    ));
    let e = p
        .send(&tool_loop(), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::NotFound, Some(404)));
    assert!(e.message.contains("try pulling it first"), "{}", e.message);
}

#[test]
fn what_ollama_cannot_take_is_refused_not_dropped() {
    let refused = |r: &ChatRequest| encode_request(r).unwrap_err().to_string();
    let req = |messages: Vec<Message>| ChatRequest {
        model: "llama3.2".into(),
        messages,
        ..Default::default()
    };
    // Nothing left to send (Ollama would load the model and answer nothing).
    assert!(refused(&req(vec![msg(Role::User, vec![text("")])])).contains("no message"));
    assert!(refused(&req(vec![])).contains("no message"));
    // A last user turn that is empty would leave the request ending on the assistant's.
    let r = req(vec![
        msg(Role::User, vec![text("2+2?")]),
        msg(Role::Assistant, vec![text("4")]),
        msg(Role::User, vec![]),
    ]);
    assert!(refused(&r).contains("messages[2] is empty"));
    // Blocks with no Ollama form, in the system prompt and in tool results.
    let mut r = req(vec![msg(Role::User, vec![text("hi")])]);
    r.system = Some(Content::blocks(vec![
        text("Be brief."),
        ContentBlock::Thinking(Default::default()),
    ]));
    assert!(
        refused(&r).contains("system content of type `thinking`"),
        "{}",
        refused(&r)
    );
    let mut r = tool_loop();
    for m in &mut r.messages {
        for b in &mut m.content.blocks {
            if let ContentBlock::ToolResult(t) = b {
                t.content = Content::blocks(vec![ContentBlock::Thinking(Default::default())]);
            }
        }
    }
    assert!(
        refused(&r).contains("tool result content of type `thinking`"),
        "{}",
        refused(&r)
    );
    // An OpenAI assistant's refusal is what it said: kept as its text.
    let mut said = msg(Role::Assistant, vec![]);
    said.extra
        .insert("refusal", weir_model::raw::to_raw(&"I can't help with X."));
    let mut r = req(vec![
        msg(Role::User, vec![text("X?")]),
        said,
        msg(Role::User, vec![text("Why?")]),
    ]);
    r.origin = Some(weir_model::Dialect::OpenAi);
    let body: Value = serde_json::from_slice(&encode_request(&r).unwrap()).unwrap();
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": "I can't help with X."})
    );
}
