//! Converse request encoding and response decoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use weir_anthropic::EncodeOptions;
use weir_bedrock::{decode_converse_response, encode_converse, stop_reason};
use weir_model::raw::to_raw;
use weir_model::{
    ChatRequest, Content, ContentBlock, Dialect, ErrorKind, FunctionTool, ImageBlock, MediaSource,
    Message, Role, StopReason, TextBlock, ThinkingBlock, Tool, ToolChoice, ToolInput,
    ToolResultBlock, ToolUseBlock,
};

fn anthropic(body: Value) -> ChatRequest {
    weir_anthropic::decode_request(body.to_string().as_bytes()).unwrap()
}

fn encode(req: &ChatRequest, model: &str) -> Value {
    let bytes = encode_converse(req, model, &EncodeOptions::default()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn text(role: Role, t: &str) -> Message {
    Message::text(role, t)
}

fn tool_call(id: &str, args: &str) -> ContentBlock {
    ContentBlock::ToolUse(ToolUseBlock {
        id: id.to_owned(),
        name: "get_weather".to_owned(),
        input: ToolInput::Arguments(args.to_owned()),
        cache_control: None,
        extra: Default::default(),
    })
}

fn tool_message(id: &str, result: &str, is_error: Option<bool>) -> Message {
    Message {
        role: Role::Tool,
        content: Content::blocks(vec![ContentBlock::ToolResult(ToolResultBlock {
            tool_use_id: id.to_owned(),
            content: Content::text(result),
            is_error,
            cache_control: None,
            extra: Default::default(),
        })]),
        extra: Default::default(),
    }
}

fn weather_tool() -> Tool {
    Tool::Function(FunctionTool {
        name: "get_weather".to_owned(),
        description: Some("Weather for a city".into()),
        parameters: Some(to_raw(
            &json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        )),
        strict: None,
        cache_control: None,
        extra: Default::default(),
    })
}

#[test]
fn text_system_and_cache_points() {
    let req = anthropic(json!({
        "model": "m", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["END"],
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Question?"}]},
            {"role": "assistant", "content": "Answer."},
            {"role": "user", "content": "More?"}
        ],
        "metadata": {"user_id": "u1"}
    }));
    let expected = json!({
        "messages": [
            {"role": "user", "content": [{"text": "Long context"}, {"cachePoint": {"type": "default"}}, {"text": "Question?"}]},
            {"role": "assistant", "content": [{"text": "Answer."}]},
            {"role": "user", "content": [{"text": "More?"}]}
        ],
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}, {"text": "Be kind."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}
    });
    assert_eq!(encode(&req, "us.amazon.nova-pro-v1:0"), expected);
    // Anthropic's one-hour cache_control is Converse's one-hour cache point.
    let long = anthropic(json!({
        "model": "m", "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}]
    }));
    let v = encode(&long, "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(
        v["system"],
        json!([{"text": "Be brief."}, {"cachePoint": {"type": "default", "ttl": "1h"}}])
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"text": "Q"}, {"cachePoint": {"type": "default"}}])
    );
    // Bedrock keeps an hour's cache for Claude 4.5 on only: others get their default.
    for model in [
        "us.amazon.nova-pro-v1:0",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ] {
        let v = encode(&long, model);
        assert_eq!(
            v["system"],
            json!([{"text": "Be brief."}, {"cachePoint": {"type": "default"}}]),
            "{model}"
        );
    }
    // Models without prompt caching get no cache points.
    let v = encode(&req, "mistral.mistral-large-2407-v1:0");
    assert_eq!(
        v["system"],
        json!([{"text": "Be brief."}, {"text": "Be kind."}])
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"text": "Long context"}, {"text": "Question?"}])
    );
    // Claude refuses temperature with top_p: the temperature is kept.
    let v = encode(&req, "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]})
    );
    // Claude 4.7 on refuses both (a 400, "`temperature` is deprecated for this model").
    for model in [
        "us.anthropic.claude-opus-4-7",
        "global.anthropic.claude-sonnet-5-v1:0",
    ] {
        let v = encode(&req, model);
        assert_eq!(
            v["inferenceConfig"],
            json!({"maxTokens": 100, "stopSequences": ["END"]}),
            "{model}"
        );
    }
}

#[test]
fn an_empty_stop_sequence_is_left_out() {
    let req = anthropic(json!({
        "model": "m", "max_tokens": 100, "stop_sequences": ["", "END"],
        "messages": [{"role": "user", "content": "Hi"}]
    }));
    let v = encode(&req, "mistral.mistral-large-2407-v1:0");
    assert_eq!(v["inferenceConfig"]["stopSequences"], json!(["END"]));
    let req = anthropic(json!({
        "model": "m", "max_tokens": 100, "stop_sequences": [""],
        "messages": [{"role": "user", "content": "Hi"}]
    }));
    let v = encode(&req, "mistral.mistral-large-2407-v1:0");
    assert!(v["inferenceConfig"].get("stopSequences").is_none(), "{v}");
}

#[test]
fn openai_system_messages_are_hoisted_and_temperature_clamped() {
    let req = ChatRequest {
        origin: Some(Dialect::OpenAi),
        model: "m".into(),
        messages: vec![
            text(Role::System, "You are terse."),
            text(Role::User, "Hi"),
            text(Role::Developer, "Answer in French."),
            text(Role::User, "Again"),
        ],
        temperature: Some(1.7),
        ..Default::default()
    };
    assert_eq!(
        encode(&req, "us.amazon.nova-micro-v1:0"),
        json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}, {"text": "Again"}]}],
            "system": [{"text": "You are terse."}, {"text": "Answer in French."}],
            "inferenceConfig": {"temperature": 1.0}
        })
    );
}

#[test]
fn three_parallel_tool_calls_and_their_results() {
    let req = ChatRequest {
        origin: Some(Dialect::OpenAi),
        model: "m".into(),
        messages: vec![
            text(Role::User, "Weather in Paris, Tokyo and Lima?"),
            Message {
                role: Role::Assistant,
                content: Content::blocks(vec![
                    tool_call("call_paris", r#"{"city":"Paris"}"#),
                    tool_call("call_tokyo", r#"{"city": "Tokyo"}"#),
                    tool_call("functions.get_weather:2", ""),
                ]),
                extra: Default::default(),
            },
            tool_message("call_paris", "18C", None),
            tool_message("call_tokyo", "{\"temp\": 25}", Some(false)),
            tool_message("functions.get_weather:2", "city is required", Some(true)),
            text(Role::User, "Thanks. Which is warmest?"),
        ],
        tools: Some(vec![weather_tool()]),
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(true),
        ..Default::default()
    };
    let v = encode(&req, "us.amazon.nova-pro-v1:0");
    let lima = weir_anthropic::sanitize_tool_id("functions.get_weather:2").into_owned();
    assert!(lima.starts_with("functions_get_weather_2_"), "{lima}");
    assert_eq!(
        v,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Paris, Tokyo and Lima?"}]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "call_paris", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "call_tokyo", "name": "get_weather", "input": {"city": "Tokyo"}}},
                    {"toolUse": {"toolUseId": lima, "name": "get_weather", "input": {}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_paris", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "call_tokyo", "content": [{"text": "{\"temp\": 25}"}]}},
                    {"toolResult": {"toolUseId": lima, "content": [{"text": "city is required"}], "status": "error"}},
                    {"text": "Thanks. Which is warmest?"}
                ]}
            ],
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
                "toolChoice": {"any": {}}
            }
        })
    );
}

#[test]
fn tool_choice_forms_and_tool_history_without_tools() {
    let mut req = anthropic(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather"}
    }));
    let v = encode(&req, "us.amazon.nova-pro-v1:0");
    assert_eq!(
        v["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "get_weather"}})
    );
    req.tool_choice = Some(ToolChoice::Auto);
    assert_eq!(
        encode(&req, "m")["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    // No "none" in Converse: without tool history the tools are left out...
    req.tool_choice = Some(ToolChoice::None);
    assert_eq!(encode(&req, "m").get("toolConfig"), None);
    // ...with it they stay, without a choice.
    req.messages.push(Message {
        role: Role::Assistant,
        content: Content::blocks(vec![tool_call("call_1", "{}")]),
        extra: Default::default(),
    });
    req.messages.push(tool_message("call_1", "", None));
    let v = encode(&req, "m");
    assert_eq!(
        v["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]})
    );
    // An empty result is an empty JSON object (Converse refuses empty content).
    assert_eq!(
        v["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": "call_1", "content": [{"json": {}}]}})
    );
    // Tool history without any tools declared: the tools it used are declared.
    req.tools = None;
    req.tool_choice = None;
    assert_eq!(
        encode(&req, "m")["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
}

#[test]
fn images_and_documents() {
    let req = anthropic(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "document", "title": "Q3 report.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
            {"type": "text", "text": "Summarize."}
        ]}]
    }));
    assert_eq!(
        encode(&req, "us.amazon.nova-pro-v1:0")["messages"][0]["content"],
        json!([
            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
            {"document": {"format": "pdf", "name": "Q3 report pdf", "source": {"bytes": "JVBERi0="}}},
            {"document": {"format": "txt", "name": "Document 2", "source": {"bytes": "cGxhaW4gbm90ZXM="}}},
            {"text": "Summarize."}
        ])
    );
    let image = |url: &str| ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role: Role::User,
            content: Content::blocks(vec![ContentBlock::Image(ImageBlock {
                source: MediaSource::Url(url.to_owned()),
                detail: None,
                cache_control: None,
                extra: Default::default(),
            })]),
            extra: Default::default(),
        }],
        ..Default::default()
    };
    let v = encode(&image("s3://bucket/cat.jpg"), "m");
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}})
    );
    let v = encode(&image("data:image/webp;base64,UklGRg=="), "m");
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}})
    );
    let e = encode_converse(
        &image("https://example.com/cat.png"),
        "m",
        &EncodeOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "messages[0]: Bedrock needs the image's bytes (or an s3:// URL); it cannot fetch images by URL"
    );
}

#[test]
fn reasoning_history_and_settings() {
    let history = vec![
        text(Role::User, "Q"),
        Message {
            role: Role::Assistant,
            content: Content::blocks(vec![
                ContentBlock::Thinking(ThinkingBlock {
                    thinking: "step 1".into(),
                    signature: Some("sig==".to_owned()),
                    extra: Default::default(),
                }),
                ContentBlock::RedactedThinking(weir_model::RedactedThinkingBlock {
                    data: "RXU4RUNr".to_owned(),
                    extra: Default::default(),
                }),
                // Unsigned reasoning (from an OpenAI-compatible upstream) is dropped.
                ContentBlock::Thinking(ThinkingBlock {
                    thinking: "unsigned".into(),
                    signature: None,
                    extra: Default::default(),
                }),
                ContentBlock::Text(TextBlock::new("A")),
            ]),
            extra: Default::default(),
        },
        text(Role::User, "And?"),
    ];
    let req = ChatRequest {
        origin: Some(Dialect::OpenAi),
        model: "m".into(),
        messages: history,
        reasoning_effort: Some("high".to_owned()),
        max_tokens: Some(1000),
        ..Default::default()
    };
    let v = encode(&req, "openai.gpt-oss-120b-1:0");
    assert_eq!(
        v["messages"][1]["content"],
        json!([
            {"reasoningContent": {"reasoningText": {"text": "step 1", "signature": "sig=="}}},
            {"reasoningContent": {"redactedContent": "RXU4RUNr"}},
            {"text": "A"}
        ])
    );
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"reasoning_effort": "high"})
    );
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 1000}));
    // Without a limit of the client's (Codex sets none): the model's own default, whatever
    // the provider's default_max_tokens (set for its Claude models, too large for others).
    let unlimited = ChatRequest {
        max_tokens: None,
        reasoning_effort: None,
        ..req.clone()
    };
    let opts = EncodeOptions {
        default_max_tokens: Some(8192),
        ..Default::default()
    };
    let v: Value = serde_json::from_slice(
        &encode_converse(&unlimited, "amazon.nova-pro-v1:0", &opts).unwrap(),
    )
    .unwrap();
    assert!(v.get("inferenceConfig").is_none(), "{v}");
    assert!(encode(&unlimited, "amazon.nova-pro-v1:0")
        .get("inferenceConfig")
        .is_none());
    // A Claude reached through Converse takes a thinking budget, below maxTokens.
    let v = encode(&req, "custom.claude-3-7-import");
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 16384}})
    );
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 16384 + 4096}));
    // Claude 4.7 on refuses budgets: adaptive thinking and the effort.
    let v = encode(
        &req,
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/claude-opus-4-7-x",
    );
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}})
    );
    // An Anthropic client's own adaptive thinking and effort.
    let own = anthropic(json!({"model": "m", "max_tokens": 4000,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "max"},
        "messages": [{"role": "user", "content": "q"}]}));
    assert_eq!(
        encode(&own, "us.anthropic.claude-opus-5-v1:0")["additionalModelRequestFields"],
        json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}})
    );
    // `minimal` is the least adaptive thinking; an Anthropic budget, the effort of its size.
    let mut minimal = req.clone();
    minimal.reasoning_effort = Some("minimal".to_owned());
    assert_eq!(
        encode(&minimal, "us.anthropic.claude-opus-4-7-v1:0")["additionalModelRequestFields"],
        json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}})
    );
    let budget = anthropic(json!({"model": "m", "max_tokens": 9000,
        "thinking": {"type": "enabled", "budget_tokens": 6000},
        "messages": [{"role": "user", "content": "q"}]}));
    assert_eq!(
        encode(&budget, "us.anthropic.claude-opus-4-7-v1:0")["additionalModelRequestFields"],
        json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}})
    );
    // An Anthropic client's own thinking, continuing a tool turn another upstream served
    // (its reasoning is that upstream's state, not sent): none, as Claude would refuse it.
    let foreign = anthropic(json!({"model": "m", "max_tokens": 4000,
        "thinking": {"type": "adaptive"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "", "signature": "gemini-thought:abc"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]}]}));
    let v = encode(&foreign, "us.anthropic.claude-opus-4-7-v1:0");
    assert_eq!(v.get("additionalModelRequestFields"), None, "{v}");
    // A tool turn being continued without signed reasoning: no thinking, adaptive or not.
    let mut tools = req.clone();
    tools.messages = vec![
        text(Role::User, "Q"),
        Message {
            role: Role::Assistant,
            content: Content::blocks(vec![tool_call("call_1", "{}")]),
            extra: Default::default(),
        },
        tool_message("call_1", "r", None),
    ];
    tools.tools = Some(vec![weather_tool()]);
    for model in [
        "us.anthropic.claude-opus-4-7-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ] {
        let v = encode(&tools, model);
        assert_eq!(v.get("additionalModelRequestFields"), None, "{model}: {v}");
    }
    // Models that take no reasoning settings get none.
    assert_eq!(
        encode(&req, "us.amazon.nova-pro-v1:0").get("additionalModelRequestFields"),
        None
    );
    let off = EncodeOptions {
        thinking_from_reasoning_effort: false,
        ..Default::default()
    };
    let v: Value =
        serde_json::from_slice(&encode_converse(&req, "openai.gpt-oss-120b-1:0", &off).unwrap())
            .unwrap();
    assert_eq!(v.get("additionalModelRequestFields"), None);
}

#[test]
fn responses_decode_with_usage_and_stop_reasons() {
    let body = br#"{"metrics":{"latencyMs":391},"output":{"message":{"content":[
        {"reasoningContent":{"reasoningText":{"text":"Think \"hard\".","signature":"c2ln"}}},
        {"reasoningContent":{"redactedContent":"cmVk"}},
        {"text":"Calling."},
        {"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Paris"}}},
        {"toolUse":{"toolUseId":"tooluse_2","name":"get_weather","input":{"city":"Lima"}}},
        {"toolUse":{"toolUseId":"tooluse_3","name":"get_time","input":{}}}
    ],"role":"assistant"}},"stopReason":"tool_use",
    "usage":{"inputTokens":74,"outputTokens":26,"cacheReadInputTokens":1024,"cacheWriteInputTokens":12,"serverToolUsage":{},"totalTokens":1136}}"#;
    let r = decode_converse_response(body, "req-9", "us.amazon.nova-pro-v1:0").unwrap();
    assert_eq!(
        (r.id.as_str(), r.model.as_str(), r.origin),
        ("req-9", "us.amazon.nova-pro-v1:0", None)
    );
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    let u = &r.usage;
    assert_eq!(
        (
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens
        ),
        (Some(74), Some(26), Some(1024), Some(12))
    );
    assert_eq!(u.total_input(), 74 + 1024 + 12);
    assert_eq!(u.cache_write_1h_tokens, None);
    // Cache writes by TTL: the one-hour ones are priced apart.
    let ttl_body = br#"{"output":{"message":{"content":[{"text":"x"}],"role":"assistant"}},"stopReason":"end_turn",
    "usage":{"inputTokens":5,"outputTokens":1,"cacheReadInputTokens":0,"cacheWriteInputTokens":3500,
    "cacheDetails":[{"ttl":"1h","inputTokens":3000},{"ttl":"5m","inputTokens":500}],"totalTokens":3506}}"#;
    let by_ttl = decode_converse_response(ttl_body, "req-10", "m").unwrap();
    assert_eq!(
        (
            by_ttl.usage.cache_write_tokens,
            by_ttl.usage.cache_write_1h_tokens
        ),
        (Some(3500), Some(3000))
    );
    let kinds: Vec<String> = r
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Thinking(t) => {
                format!("thinking:{}:{:?}", t.thinking.as_str(), t.signature)
            }
            ContentBlock::RedactedThinking(t) => format!("redacted:{}", t.data),
            ContentBlock::Text(t) => format!("text:{}", t.text.as_str()),
            ContentBlock::ToolUse(t) => match &t.input {
                ToolInput::Json(j) => format!("tool:{}:{}:{}", t.id, t.name, j.get()),
                ToolInput::Arguments(a) => format!("args:{a}"),
            },
            other => other.type_name().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "thinking:Think \"hard\".:Some(\"c2ln\")",
            "redacted:cmVk",
            "text:Calling.",
            "tool:tooluse_1:get_weather:{\"city\":\"Paris\"}",
            "tool:tooluse_2:get_weather:{\"city\":\"Lima\"}",
            "tool:tooluse_3:get_time:{}",
        ]
    );
    // An Anthropic client can be given it.
    let out: Value = serde_json::from_slice(&weir_anthropic::encode_response(&r).unwrap()).unwrap();
    assert_eq!(out["usage"]["cache_read_input_tokens"], 1024);
    assert_eq!(out["stop_reason"], "tool_use");

    for (name, want) in [
        ("end_turn", StopReason::EndTurn),
        ("tool_use", StopReason::ToolUse),
        ("max_tokens", StopReason::MaxTokens),
        ("stop_sequence", StopReason::StopSequence),
        ("guardrail_intervened", StopReason::Refusal),
        ("content_filtered", StopReason::Refusal),
        (
            "model_context_window_exceeded",
            StopReason::ContextWindowExceeded,
        ),
        ("brand_new", StopReason::Other("brand_new".to_owned())),
    ] {
        assert_eq!(stop_reason(name).unwrap(), want, "{name}");
    }
    for bad in ["malformed_model_output", "malformed_tool_use"] {
        let e = stop_reason(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        // The model failed, not Bedrock: tried again, but no breaker opens on it.
        assert!(e.retryable_elsewhere && !e.counts_against_health);
    }
    let e = decode_converse_response(b"{\"output\":", "", "m").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
}

#[test]
fn structured_output_requests_become_output_config_text_format() {
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
    // An OpenAI client's json_schema.
    let mut req = ChatRequest {
        model: "m".into(),
        messages: vec![text(Role::User, "hi")],
        origin: Some(weir_model::Dialect::OpenAi),
        ..Default::default()
    };
    req.extra.insert(
        "response_format",
        to_raw(&json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})),
    );
    let body = encode(&req, "amazon.nova-pro-v1:0");
    let tf = &body["outputConfig"]["textFormat"];
    assert_eq!(tf["type"], "json_schema");
    // Converse takes the schema as a JSON string.
    let sent: Value =
        serde_json::from_str(tf["structure"]["jsonSchema"]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(sent, schema);
    // JSON mode has no Converse counterpart; free text asks for nothing.
    req.extra
        .insert("response_format", to_raw(&json!({"type": "json_object"})));
    assert!(encode(&req, "amazon.nova-pro-v1:0")
        .get("outputConfig")
        .is_none());
    // An Anthropic client's output_config.format, towards a Converse model.
    let req = anthropic(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}}
    }));
    let body = encode(&req, "amazon.nova-pro-v1:0");
    assert!(body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"].is_string());
}

#[test]
fn an_openai_refusal_in_history_is_the_assistant_s_text_and_empty_requests_are_refused() {
    let mut refused = Message {
        role: Role::Assistant,
        content: Content::blocks(vec![]),
        extra: Default::default(),
    };
    refused.extra.insert("refusal", to_raw(&"I can't help"));
    let req = ChatRequest {
        model: "m".into(),
        origin: Some(Dialect::OpenAi),
        messages: vec![text(Role::User, "a"), refused, text(Role::User, "b")],
        ..Default::default()
    };
    let body = encode(&req, "amazon.nova-pro-v1:0");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "a"}]},
            {"role": "assistant", "content": [{"text": "I can't help"}]},
            {"role": "user", "content": [{"text": "b"}]}
        ])
    );
    for messages in [
        vec![text(Role::System, "only a system prompt")],
        vec![text(Role::User, "")],
        vec![
            text(Role::User, "hi"),
            text(Role::Assistant, "hello"),
            text(Role::User, ""),
        ],
    ] {
        let req = ChatRequest {
            model: "m".into(),
            origin: Some(Dialect::OpenAi),
            messages,
            ..Default::default()
        };
        let err = encode_converse(&req, "amazon.nova-pro-v1:0", &EncodeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no message with content") || err.contains("is empty"),
            "{err}"
        );
    }
}

#[test]
fn blank_text_is_left_out_as_converse_refuses_it() {
    // Converse: "The text field in the ContentBlock object is blank".
    let req = anthropic(json!({
        "model": "m",
        "max_tokens": 100,
        "system": [{"type": "text", "text": " "}, {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "\n\n"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "\t"}, {"type": "text", "text": "sunny"}
                ]}
            ]}
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]
    }));
    let out = encode(&req, "amazon.nova-pro-v1:0");
    assert_eq!(out["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        out["messages"][1]["content"].as_array().unwrap().len(),
        1,
        "{out}"
    );
    assert!(
        out["messages"][1]["content"][0].get("toolUse").is_some(),
        "{out}"
    );
    assert_eq!(
        out["messages"][2]["content"][0]["toolResult"]["content"],
        json!([{"text": "sunny"}])
    );
}

/// A 200 without `output` (an error object sent with a 200) carries no answer.
#[test]
fn a_converse_body_without_output_is_no_response() {
    let body = br#"{"message":"The system encountered an unexpected error during processing. Try your request again."}"#;
    let e = decode_converse_response(body, "r", "amazon.nova-pro-v1:0").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
    assert!(e.message.contains("no `output`"), "{}", e.message);
}

/// A target's cap (`ChatRequest::output_cap`) holds over Converse's raise of the limit for
/// Claude's thinking budget, the budget fitted below it.
#[test]
fn a_targets_output_cap_holds_over_the_raise_for_a_budget() {
    // Converse, Claude by an id it serves through Converse.
    let mut canon = weir_anthropic::decode_request(
        json!({"model": "m", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}],
               "thinking": {"type": "enabled", "budget_tokens": 10000}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let model = "arn:aws:bedrock:us-east-1:1:application-inference-profile/claude-sonnet-4-5-x";
    let converse = |c: &weir_model::ChatRequest| -> Value {
        serde_json::from_slice(
            &weir_bedrock::encode_converse(c, model, &Default::default()).unwrap(),
        )
        .unwrap()
    };
    let raised = converse(&canon);
    assert_eq!(raised["inferenceConfig"]["maxTokens"], 14096, "{raised}");
    canon.output_cap = Some(8192);
    let out = converse(&canon);
    assert_eq!(out["inferenceConfig"]["maxTokens"], 8192, "{out}");
    assert_eq!(
        out["additionalModelRequestFields"]["thinking"]["budget_tokens"], 4096,
        "{out}"
    );
}

/// Thinking the model keeps in a form it does not name reaches Converse as InvokeModel's
/// encoder carries it: an Anthropic client's with more than its type (`display`), and an
/// OpenAI client's own (Anthropic's object as an extra field).
#[test]
fn thinking_in_other_forms_reaches_converse() {
    let decode = |thinking: Option<Value>| {
        let mut body = json!({"model": "m", "max_tokens": 8192, "messages": [{"role": "user", "content": "hi"}]});
        if let Some(t) = thinking {
            body["thinking"] = t;
        }
        weir_anthropic::decode_request(body.to_string().as_bytes()).unwrap()
    };
    let anthropic = decode(Some(
        json!({"type": "enabled", "budget_tokens": 2048, "display": "summarized"}),
    ));
    let mut openai = decode(None);
    openai.origin = Some(weir_model::Dialect::OpenAi);
    openai.extra.insert(
        "thinking".to_owned(),
        to_raw(&json!({"type": "enabled", "budget_tokens": 2048})),
    );
    let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    for canon in [anthropic, openai] {
        let out: Value = serde_json::from_slice(
            &encode_converse(&canon, model, &EncodeOptions::default()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048}),
            "{out}"
        );
    }
}
