//! Canonical requests as Gemini bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use weir_gemini::{encode_request, EncodeOptions, SchemaMode, SKIP_SIGNATURE_VALIDATOR};
use weir_model::raw::to_raw;
use weir_model::{
    ChatRequest, Content, ContentBlock, Dialect, DocumentBlock, FunctionTool, ImageBlock,
    MediaSource, Message, RedactedThinkingBlock, Role, StopSequences, TextBlock, ThinkingBlock,
    ThinkingConfig, Tool, ToolChoice, ToolInput, ToolResultBlock, ToolUseBlock, UnknownBlock,
    WireError,
};

fn text(t: &str) -> ContentBlock {
    ContentBlock::Text(TextBlock::new(t))
}

fn msg(role: Role, blocks: Vec<ContentBlock>) -> Message {
    Message {
        role,
        content: Content::blocks(blocks),
        extra: Default::default(),
    }
}

fn call(id: &str, name: &str, input: ToolInput) -> ContentBlock {
    ContentBlock::ToolUse(ToolUseBlock {
        id: id.into(),
        name: name.into(),
        input,
        cache_control: None,
        extra: Default::default(),
    })
}

fn json_input(v: Value) -> ToolInput {
    ToolInput::Json(to_raw(&v))
}

fn result(id: &str, content: Content, is_error: Option<bool>) -> ContentBlock {
    ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: id.into(),
        content,
        is_error,
        cache_control: None,
        extra: Default::default(),
    })
}

fn thinking(t: &str, sig: Option<&str>) -> ContentBlock {
    ContentBlock::Thinking(ThinkingBlock {
        thinking: t.into(),
        signature: sig.map(str::to_owned),
        extra: Default::default(),
    })
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "gemini-2.5-flash".into(),
        messages,
        ..Default::default()
    }
}

fn function(name: &str, schema: Value) -> Tool {
    Tool::Function(FunctionTool {
        name: name.into(),
        description: Some(format!("The {name} tool.").into()),
        parameters: Some(to_raw(&schema)),
        strict: None,
        cache_control: None,
        extra: Default::default(),
    })
}

fn encode_with(req: &ChatRequest, opts: &EncodeOptions) -> Value {
    // (Keys sorted: the snapshots do not depend on the order the encoder writes them in.)
    weir_testkit::sorted(serde_json::from_slice(&encode_request(req, opts).unwrap()).unwrap())
}

fn encode(req: &ChatRequest) -> Value {
    encode_with(req, &EncodeOptions::default())
}

fn encode_err(req: &ChatRequest) -> WireError {
    encode_request(req, &EncodeOptions::default()).unwrap_err()
}

#[test]
fn plain_text_with_sampling_settings() {
    let mut req = request(vec![Message::text(Role::User, "Hello")]);
    req.max_tokens = Some(256);
    req.temperature = Some(0.5);
    req.top_p = Some(0.9);
    req.top_k = Some(40);
    req.stream = Some(true);
    insta::assert_json_snapshot!(encode(&req), @r#"
    {
      "contents": [
        {
          "parts": [
            {
              "text": "Hello"
            }
          ],
          "role": "user"
        }
      ],
      "generationConfig": {
        "maxOutputTokens": 256,
        "temperature": 0.5,
        "topK": 40,
        "topP": 0.9
      }
    }
    "#);
}

#[test]
fn an_openai_clients_integer_seed_goes_to_generation_config() {
    let mut req = request(vec![Message::text(Role::User, "Hello")]);
    req.origin = Some(weir_model::Dialect::OpenAi);
    req.extra
        .insert("seed", weir_model::raw::to_raw(&serde_json::json!(42)));
    assert_eq!(encode(&req)["generationConfig"]["seed"], 42);
    for unusable in [serde_json::json!("x"), serde_json::json!(4_294_967_296_u64)] {
        req.extra.insert("seed", weir_model::raw::to_raw(&unusable));
        assert!(encode(&req).get("generationConfig").is_none(), "{unusable}");
    }
}

#[test]
fn system_text_is_hoisted_and_same_role_turns_merge() {
    let mut req = request(vec![
        Message::text(Role::System, "From an OpenAI system message."),
        Message::text(Role::User, "First."),
        Message::text(Role::Developer, "From a developer message."),
        Message::text(Role::User, "Second."),
        Message::text(Role::Assistant, "Answer."),
        msg(Role::Assistant, vec![text(""), text("More.")]),
    ]);
    req.system = Some(Content::blocks(vec![text("Be brief."), text("Be kind.")]));
    insta::assert_json_snapshot!(encode(&req), @r#"
    {
      "contents": [
        {
          "parts": [
            {
              "text": "First."
            },
            {
              "text": "Second."
            }
          ],
          "role": "user"
        },
        {
          "parts": [
            {
              "text": "Answer."
            },
            {
              "text": "More."
            }
          ],
          "role": "model"
        }
      ],
      "systemInstruction": {
        "parts": [
          {
            "text": "Be brief."
          },
          {
            "text": "Be kind."
          },
          {
            "text": "From an OpenAI system message."
          },
          {
            "text": "From a developer message."
          }
        ]
      }
    }
    "#);
    // Non-text system content has no place in systemInstruction.
    req.system = Some(Content::blocks(vec![ContentBlock::Image(ImageBlock {
        source: MediaSource::Url("https://example.com/a.png".into()),
        detail: None,
        cache_control: None,
        extra: Default::default(),
    })]));
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported(
            "system: `image` content cannot be part of Gemini's systemInstruction".into()
        )
    );
}

fn weather_tools() -> Vec<Tool> {
    vec![
        function(
            "get_weather",
            json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "additionalProperties": false,
                "properties": {"city": {"type": "string", "format": "uri"}},
                "required": ["city"]
            }),
        ),
        function(
            "get_time",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        ),
    ]
}

/// An Anthropic-shaped tool loop: three parallel calls in one assistant message, their
/// results first in the next user message.
fn parallel_loop() -> ChatRequest {
    let mut req = request(vec![
        Message::text(Role::User, "Weather and time in Paris and London?"),
        msg(
            Role::Assistant,
            vec![
                text("Let me check."),
                call(
                    "toolu_1",
                    "get_weather",
                    json_input(json!({"city": "Paris"})),
                ),
                call(
                    "toolu_2",
                    "get_weather",
                    ToolInput::Arguments(r#"{"city": "London"}"#.into()),
                ),
                call("toolu_3", "get_time", ToolInput::Arguments(String::new())),
            ],
        ),
        msg(
            Role::User,
            vec![
                result("toolu_1", Content::text("18C, sunny"), None),
                result("toolu_2", Content::text("station offline"), Some(true)),
                result(
                    "toolu_3",
                    Content::blocks(vec![text("12:00"), text("CET")]),
                    Some(false),
                ),
                text("Summarize, please."),
            ],
        ),
    ]);
    req.tools = Some(weather_tools());
    req.tool_choice = Some(ToolChoice::Auto);
    req
}

#[test]
fn a_parallel_tool_loop_resolves_names_from_ids() {
    insta::assert_json_snapshot!(encode(&parallel_loop()), @r#"
    {
      "contents": [
        {
          "parts": [
            {
              "text": "Weather and time in Paris and London?"
            }
          ],
          "role": "user"
        },
        {
          "parts": [
            {
              "text": "Let me check."
            },
            {
              "functionCall": {
                "args": {
                  "city": "Paris"
                },
                "id": "toolu_1",
                "name": "get_weather"
              },
              "thoughtSignature": "skip_thought_signature_validator"
            },
            {
              "functionCall": {
                "args": {
                  "city": "London"
                },
                "id": "toolu_2",
                "name": "get_weather"
              },
              "thoughtSignature": "skip_thought_signature_validator"
            },
            {
              "functionCall": {
                "args": {},
                "id": "toolu_3",
                "name": "get_time"
              },
              "thoughtSignature": "skip_thought_signature_validator"
            }
          ],
          "role": "model"
        },
        {
          "parts": [
            {
              "functionResponse": {
                "id": "toolu_1",
                "name": "get_weather",
                "response": {
                  "output": "18C, sunny"
                }
              }
            },
            {
              "functionResponse": {
                "id": "toolu_2",
                "name": "get_weather",
                "response": {
                  "error": "station offline"
                }
              }
            },
            {
              "functionResponse": {
                "id": "toolu_3",
                "name": "get_time",
                "response": {
                  "output": "12:00\nCET"
                }
              }
            },
            {
              "text": "Summarize, please."
            }
          ],
          "role": "user"
        }
      ],
      "toolConfig": {
        "functionCallingConfig": {
          "mode": "AUTO"
        }
      },
      "tools": [
        {
          "functionDeclarations": [
            {
              "description": "The get_weather tool.",
              "name": "get_weather",
              "parameters": {
                "properties": {
                  "city": {
                    "type": "string"
                  }
                },
                "required": [
                  "city"
                ],
                "type": "object"
              }
            },
            {
              "description": "The get_time tool.",
              "name": "get_time",
              "parameters": {
                "properties": {
                  "city": {
                    "type": "string"
                  }
                },
                "type": "object"
              }
            }
          ]
        }
      ]
    }
    "#);
}

#[test]
fn openai_tool_messages_merge_into_one_user_turn() {
    // The same loop as OpenAI carries it: one `tool` message per result, then user text.
    let anthropic = parallel_loop();
    let mut openai = anthropic.clone();
    let ContentBlock::ToolResult(_) = &anthropic.messages[2].content.blocks[0] else {
        panic!()
    };
    let blocks = &anthropic.messages[2].content.blocks;
    openai.messages.truncate(2);
    for b in &blocks[..3] {
        openai.messages.push(msg(Role::Tool, vec![b.clone()]));
    }
    openai
        .messages
        .push(Message::text(Role::User, "Summarize, please."));
    openai.origin = Some(Dialect::OpenAi);
    assert_eq!(encode(&openai), encode(&anthropic));
}

#[test]
fn tool_choice_variants() {
    let config = |choice: ToolChoice| {
        let mut req = parallel_loop();
        req.tool_choice = Some(choice);
        encode(&req)["toolConfig"].clone()
    };
    assert_eq!(
        config(ToolChoice::Auto),
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        config(ToolChoice::Required),
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        config(ToolChoice::None),
        json!({"functionCallingConfig": {"mode": "NONE"}})
    );
    assert_eq!(
        config(ToolChoice::Tool("get_time".into())),
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}})
    );
    let mut req = parallel_loop();
    req.tool_choice = Some(ToolChoice::Tool("nope".into()));
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported("tool_choice names `nope`, which is not among the tools".into())
    );
    req.tool_choice = Some(ToolChoice::Unknown {
        dialect: Dialect::OpenAi,
        raw: to_raw(&json!({"type": "allowed_tools"})),
    });
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported("this openai tool_choice cannot be sent to Gemini".into())
    );
    // Without tools there is nothing to configure.
    let mut plain = request(vec![Message::text(Role::User, "hi")]);
    plain.tool_choice = Some(ToolChoice::Required);
    plain.tools = Some(vec![]);
    assert_eq!(
        encode(&plain),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
    // No choice: no toolConfig (Gemini's default is AUTO).
    let mut req = parallel_loop();
    req.tool_choice = None;
    assert!(encode(&req).get("toolConfig").is_none());
}

#[test]
fn stop_sequences() {
    let mut req = request(vec![Message::text(Role::User, "Count")]);
    req.stop = Some(StopSequences {
        sequences: vec!["END".into(), "\n\n".into()],
        single_string: false,
    });
    assert_eq!(
        encode(&req)["generationConfig"],
        json!({"stopSequences": ["END", "\n\n"]})
    );
}

#[test]
fn thinking_config_variants() {
    let config = |thinking: Option<ThinkingConfig>, effort: Option<&str>| {
        let mut req = request(vec![Message::text(Role::User, "Think")]);
        req.max_tokens = Some(32_000);
        req.thinking = thinking;
        req.reasoning_effort = effort.map(str::to_owned);
        encode(&req)["generationConfig"]["thinkingConfig"].clone()
    };
    assert_eq!(
        config(
            Some(ThinkingConfig::Enabled {
                budget_tokens: 2048
            }),
            None
        ),
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    assert_eq!(
        config(
            Some(ThinkingConfig::Enabled {
                budget_tokens: 30_000
            }),
            None
        ),
        json!({"thinkingBudget": 24576, "includeThoughts": true})
    );
    assert_eq!(
        config(Some(ThinkingConfig::Adaptive(None)), None),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
    // Disabled (Claude Code's side calls): the least the model takes, unshown.
    assert_eq!(
        config(Some(ThinkingConfig::Disabled), Some("high")),
        json!({"thinkingBudget": 0})
    );
    let least = thinking_config_of;
    for (model, want) in [
        ("gemini-2.5-flash-lite", json!({"thinkingBudget": 0})),
        // 2.5 Pro cannot stop thinking: 0 is a 400, 128 its least.
        ("gemini-2.5-pro", json!({"thinkingBudget": 128})),
        ("gemini-3.1-pro", json!({"thinkingLevel": "low"})),
        // Models before 2.5 do not think: nothing to turn off.
        ("gemini-2.0-flash", Value::Null),
    ] {
        assert_eq!(
            least(model, Some(ThinkingConfig::Disabled), None),
            want,
            "{model}"
        );
    }
    assert_eq!(
        least("gemini-2.5-pro", None, Some("none")),
        json!({"thinkingBudget": 128})
    );
    assert_eq!(least("gemini-2.0-flash", None, Some("none")), Value::Null);
    assert_eq!(
        config(
            Some(ThinkingConfig::Unknown(to_raw(
                &json!({"type": "enabled", "budget_tokens": 3000, "display": "omitted"})
            ))),
            None
        ),
        json!({"thinkingBudget": 3000, "includeThoughts": true})
    );
    assert_eq!(
        config(None, Some("medium")),
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert_eq!(config(None, Some("none")), json!({"thinkingBudget": 0}));
    assert_eq!(config(None, None), Value::Null);
}

/// The `thinkingConfig` sent to `model` for a request with `thinking` and `effort`.
fn thinking_config_of(
    model: &str,
    thinking: Option<ThinkingConfig>,
    effort: Option<&str>,
) -> Value {
    let mut req = request(vec![Message::text(Role::User, "Think")]);
    req.model = model.into();
    req.thinking = thinking;
    req.reasoning_effort = effort.map(str::to_owned);
    encode(&req)["generationConfig"]["thinkingConfig"].clone()
}

#[test]
fn gemini_3_on_gets_thinking_levels_not_budgets() {
    // Gemini 4 refuses any thinkingBudget; Gemini 3 keeps it only for compatibility.
    let config = thinking_config_of;
    for model in [
        "gemini-4-neon",
        "gemini-3.1-pro",
        "models/gemini-3-flash-preview",
        "gemini-flash-latest",
    ] {
        // Claude Code's adaptive thinking: the model's own dynamic thinking.
        assert_eq!(
            config(model, Some(ThinkingConfig::Adaptive(None)), None),
            json!({"includeThoughts": true}),
            "{model}"
        );
        assert_eq!(
            config(
                model,
                Some(ThinkingConfig::Enabled {
                    budget_tokens: 4096
                }),
                None
            ),
            json!({"thinkingLevel": "medium", "includeThoughts": true}),
            "{model}"
        );
        for (effort, level, include) in [
            ("none", "low", false),
            ("minimal", "low", true),
            ("high", "high", true),
            ("xhigh", "high", true),
        ] {
            let mut want = json!({"thinkingLevel": level});
            if include {
                want["includeThoughts"] = json!(true);
            }
            assert_eq!(config(model, None, Some(effort)), want, "{model} {effort}");
        }
    }
    // Claude Code's adaptive thinking with an effort: that level.
    for (effort, level) in [("low", "low"), ("medium", "medium"), ("max", "high")] {
        let mut req = request(vec![Message::text(Role::User, "Think")]);
        req.model = "gemini-3.1-pro".into();
        req.origin = Some(weir_model::Dialect::Anthropic);
        req.thinking = Some(ThinkingConfig::Adaptive(None));
        req.extra
            .insert("output_config", to_raw(&json!({"effort": effort})));
        assert_eq!(
            encode(&req)["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": level, "includeThoughts": true}),
            "{effort}"
        );
    }
    // Gemini 3 Pro takes low and high only.
    assert_eq!(
        config("gemini-3-pro-preview", None, Some("medium")),
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert_eq!(
        config("gemini-3.1-pro", None, Some("medium")),
        json!({"thinkingLevel": "medium", "includeThoughts": true})
    );
    // Gemini 2.5 and names without a version keep budgets.
    for model in ["gemini-2.5-pro", "tunedModels/my-model"] {
        assert_eq!(
            config(model, Some(ThinkingConfig::Adaptive(None)), None),
            json!({"thinkingBudget": -1, "includeThoughts": true}),
            "{model}"
        );
    }
}

#[test]
fn images_and_documents() {
    let image = |source| {
        ContentBlock::Image(ImageBlock {
            source,
            detail: Some("high".into()),
            cache_control: None,
            extra: Default::default(),
        })
    };
    let document = |source| {
        ContentBlock::Document(DocumentBlock {
            source,
            title: Some("Report".into()),
            cache_control: None,
            extra: Default::default(),
        })
    };
    let req = request(vec![msg(
        Role::User,
        vec![
            text("Compare these."),
            image(MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into(),
            }),
            image(MediaSource::Url(
                "https://example.com/cat.WEBP?size=large#top".into(),
            )),
            image(MediaSource::Url("https://example.com/render/42".into())),
            image(MediaSource::Url("data:image/gif;base64,R0lGOD==".into())),
            document(MediaSource::Base64 {
                media_type: "application/pdf".into(),
                data: "JVBERi0=".into(),
            }),
            document(MediaSource::Url("gs://bucket/notes.txt".into())),
            document(MediaSource::Url("https://example.com/paper".into())),
            document(MediaSource::Text {
                media_type: "text/plain".into(),
                data: "Plain document text.".into(),
            }),
        ],
    )]);
    insta::assert_json_snapshot!(encode(&req)["contents"], @r#"
    [
      {
        "parts": [
          {
            "text": "Compare these."
          },
          {
            "inlineData": {
              "data": "iVBORw0KGgo=",
              "mimeType": "image/png"
            }
          },
          {
            "fileData": {
              "fileUri": "https://example.com/cat.WEBP?size=large#top",
              "mimeType": "image/webp"
            }
          },
          {
            "fileData": {
              "fileUri": "https://example.com/render/42",
              "mimeType": "image/jpeg"
            }
          },
          {
            "inlineData": {
              "data": "R0lGOD==",
              "mimeType": "image/gif"
            }
          },
          {
            "inlineData": {
              "data": "JVBERi0=",
              "mimeType": "application/pdf"
            }
          },
          {
            "fileData": {
              "fileUri": "gs://bucket/notes.txt",
              "mimeType": "text/plain"
            }
          },
          {
            "fileData": {
              "fileUri": "https://example.com/paper",
              "mimeType": "application/pdf"
            }
          },
          {
            "text": "Plain document text."
          }
        ],
        "role": "user"
      }
    ]
    "#);
}

#[test]
fn tool_result_images_follow_the_function_responses() {
    let png = ContentBlock::Image(ImageBlock {
        source: MediaSource::Base64 {
            media_type: "image/png".into(),
            data: "AAAA".into(),
        },
        detail: None,
        cache_control: None,
        extra: Default::default(),
    });
    let req = request(vec![
        Message::text(Role::User, "Screenshot both."),
        msg(
            Role::Assistant,
            vec![
                call("a", "shot", json_input(json!({}))),
                call("b", "shot", json_input(json!({}))),
            ],
        ),
        msg(
            Role::User,
            vec![
                result("a", Content::blocks(vec![text("first"), png.clone()]), None),
                result("b", Content::blocks(vec![png]), None),
                text("What changed?"),
            ],
        ),
    ]);
    let body = encode(&req);
    let kinds: Vec<String> = body["contents"][2]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "functionResponse",
            "functionResponse",
            "inlineData",
            "inlineData",
            "text"
        ]
    );
    assert_eq!(
        body["contents"][2]["parts"][1]["functionResponse"]["response"],
        json!({"output": ""})
    );
}

#[test]
fn function_responses_go_in_the_order_of_their_calls() {
    let png = ContentBlock::Image(ImageBlock {
        source: MediaSource::Base64 {
            media_type: "image/png".into(),
            data: "AAAA".into(),
        },
        detail: None,
        cache_control: None,
        extra: Default::default(),
    });
    let calls = msg(
        Role::Assistant,
        vec![
            call("c0", "get_weather", json_input(json!({"city": "Paris"}))),
            call("c1", "get_weather", json_input(json!({"city": "Rome"}))),
            call("c2", "get_time", json_input(json!({}))),
        ],
    );
    let tool = |id: &str, blocks: Vec<ContentBlock>| {
        msg(Role::Tool, vec![result(id, Content::blocks(blocks), None)])
    };
    // An OpenAI client's tool messages, and an Anthropic client's one user message, both
    // answering in another order than the calls were made.
    let openai = request(vec![
        Message::text(Role::User, "Weather in Paris and Rome, and the time?"),
        calls.clone(),
        tool("c2", vec![text("09:30")]),
        tool("c1", vec![text("Rome: 21C"), png.clone()]),
        tool("c0", vec![text("Paris: 18C")]),
        Message::text(Role::User, "Thanks."),
    ]);
    let anthropic = request(vec![
        Message::text(Role::User, "Weather in Paris and Rome, and the time?"),
        calls,
        msg(
            Role::User,
            vec![
                result("c1", Content::blocks(vec![text("Rome: 21C"), png]), None),
                result("c2", Content::text("09:30"), None),
                result("c0", Content::text("Paris: 18C"), None),
                text("Thanks."),
            ],
        ),
    ]);
    for req in [openai, anthropic] {
        let body = encode(&req);
        let parts = body["contents"][2]["parts"].as_array().unwrap();
        let summary: Vec<String> = parts
            .iter()
            .map(|p| match (&p["functionResponse"], &p["text"]) {
                (Value::Object(r), _) => format!("{} {}", r["name"], r["response"]["output"]),
                (_, Value::String(t)) => t.clone(),
                _ => p.as_object().unwrap().keys().next().unwrap().clone(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                r#""get_weather" "Paris: 18C""#,
                r#""get_weather" "Rome: 21C""#,
                r#""get_time" "09:30""#,
                "inlineData",
                "Thanks."
            ]
        );
    }
}

#[test]
fn calls_of_consecutive_assistant_messages_are_placed_as_one_turn() {
    // Two assistant messages make one model turn: its calls are a, b, c, and results in
    // that order stay so.
    let req = request(vec![
        Message::text(Role::User, "go"),
        msg(
            Role::Assistant,
            vec![
                call("a", "f", json_input(json!({}))),
                call("b", "f", json_input(json!({}))),
            ],
        ),
        msg(Role::Assistant, vec![call("c", "f", json_input(json!({})))]),
        msg(
            Role::User,
            vec![
                result("a", Content::text("A"), None),
                result("b", Content::text("B"), None),
                result("c", Content::text("C"), None),
            ],
        ),
    ]);
    let body = encode(&req);
    let outputs: Vec<&Value> = body["contents"][2]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["functionResponse"]["response"]["output"])
        .collect();
    assert_eq!(outputs, [&json!("A"), &json!("B"), &json!("C")]);
}

#[test]
fn tool_arguments_that_are_not_an_object_are_sent_as_an_empty_one() {
    let with_args = |args: &str| {
        request(vec![
            Message::text(Role::User, "Go"),
            msg(
                Role::Assistant,
                vec![call("call_1", "run", ToolInput::Arguments(args.into()))],
            ),
        ])
    };
    let args =
        |a: &str| encode(&with_args(a))["contents"][1]["parts"][0]["functionCall"]["args"].clone();
    // Cut short, not an object, empty: the conversation goes on with `{}`.
    for a in [r#"{"cmd": "ls"#, "[1, 2]", " "] {
        assert_eq!(args(a), json!({}), "{a}");
    }
    assert_eq!(args(r#" {"cmd": "ls"} "#), json!({"cmd": "ls"}));
}

#[test]
fn a_result_for_an_unknown_call_is_an_error() {
    let req = request(vec![
        Message::text(Role::User, "Go"),
        msg(
            Role::Assistant,
            vec![call("call_1", "run", json_input(json!({})))],
        ),
        msg(
            Role::User,
            vec![result("call_2", Content::text("done"), None)],
        ),
    ]);
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported(
            "messages[2]: tool result for `call_2` answers no earlier tool call; Gemini needs the called function's name, which only the call has".into()
        )
    );
}

#[test]
fn other_dialects_blocks_tools_and_function_messages_are_refused() {
    let unknown = |ty: &str| {
        ContentBlock::Unknown(UnknownBlock {
            dialect: Dialect::Anthropic,
            type_name: Some(ty.into()),
            raw: to_raw(&json!({"type": ty})),
        })
    };
    let mut req = request(vec![msg(Role::Assistant, vec![unknown("mcp_tool_use")])]);
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported(
            "messages[0]: content block `mcp_tool_use` from the anthropic dialect cannot be sent to Gemini".into()
        )
    );
    req.messages = vec![Message::text(Role::User, "run")];
    req.tools = Some(vec![Tool::Unknown {
        dialect: Dialect::Anthropic,
        name: Some("code_execution".into()),
        raw: to_raw(&json!({"type": "code_execution_20250825", "name": "code_execution"})),
    }]);
    assert_eq!(
        encode_err(&req),
        WireError::Unsupported(
            "tool `code_execution` is a anthropic-specific tool and cannot be sent to Gemini"
                .into()
        )
    );
    req.tools = None;
    req.messages.push(Message::text(Role::Function, "42"));
    assert!(
        matches!(encode_err(&req), WireError::Unsupported(m) if m.starts_with("messages[1]: an OpenAI `function` message"))
    );
}

#[test]
fn web_search_is_grounding_with_google_search() {
    let search = |extra: Value| Tool::Unknown {
        dialect: Dialect::Anthropic,
        name: Some("web_search".into()),
        raw: to_raw(&{
            let mut t = json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5});
            t.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            t
        }),
    };
    let unknown = |ty: &str| {
        ContentBlock::Unknown(UnknownBlock {
            dialect: Dialect::Anthropic,
            type_name: Some(ty.into()),
            raw: to_raw(&json!({"type": ty})),
        })
    };
    // Claude Code's web search: the tool alone, and an earlier search in the history,
    // which Gemini does not need (its text carries the answer).
    let mut req = request(vec![
        Message::text(Role::User, "Who won?"),
        msg(
            Role::Assistant,
            vec![
                unknown("server_tool_use"),
                unknown("web_search_tool_result"),
                text("Spain."),
            ],
        ),
        Message::text(Role::User, "And the score?"),
    ]);
    req.origin = Some(Dialect::Anthropic);
    req.tools = Some(vec![search(
        json!({"user_location": {"type": "approximate"}}),
    )]);
    let v = encode(&req);
    assert_eq!(v["tools"], json!([{"googleSearch": {}}]));
    assert!(v.get("toolConfig").is_none());
    assert_eq!(
        v["contents"][1],
        json!({"role": "model", "parts": [{"text": "Spain."}]})
    );
    // Beside functions Gemini takes it only with server-side tool calls, whose parts
    // other dialects cannot carry back: refused.
    req.tools = Some(vec![
        search(json!({})),
        function("lookup", json!({"type": "object", "properties": {}})),
    ]);
    assert!(matches!(encode_err(&req), WireError::Unsupported(m) if m.contains("function tools")),);
    // No tool use: no search.
    req.tools = Some(vec![search(json!({}))]);
    req.tool_choice = Some(weir_model::ToolChoice::None);
    assert!(encode(&req).get("tools").is_none());
    req.tool_choice = None;
    // Domain lists would change what may be found: refused.
    for field in ["allowed_domains", "blocked_domains"] {
        req.tools = Some(vec![search(json!({field: ["example.com"]}))]);
        assert!(
            matches!(encode_err(&req), WireError::Unsupported(m) if m.contains(field)),
            "{field}"
        );
        req.tools = Some(vec![search(json!({field: []}))]);
        assert_eq!(encode(&req)["tools"], json!([{"googleSearch": {}}]));
    }
    // An OpenAI client's web_search_options.
    let mut req = request(vec![Message::text(Role::User, "Who won?")]);
    req.origin = Some(Dialect::OpenAi);
    req.extra.insert(
        "web_search_options",
        to_raw(&json!({"search_context_size": "low"})),
    );
    assert_eq!(encode(&req)["tools"], json!([{"googleSearch": {}}]));
    req.extra.insert("web_search_options", to_raw(&json!(null)));
    assert!(encode(&req).get("tools").is_none());
    req.extra
        .insert("web_search_options", to_raw(&json!("yes")));
    assert_eq!(
        encode_err(&req),
        WireError::Malformed("web_search_options: must be an object".into())
    );
}

#[test]
fn thinking_blocks_put_gemini_signatures_back_where_they_came_from() {
    let req = request(vec![
        Message::text(Role::User, "Go"),
        msg(
            Role::Assistant,
            vec![
                // A Gemini thought with its own signature.
                thinking("Planning.", Some("gemini-thought:SIG_THOUGHT")),
                // Anthropic reasoning: Gemini cannot read Anthropic's signature.
                thinking(
                    "Claude thought.",
                    Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxhKdF"),
                ),
                ContentBlock::RedactedThinking(RedactedThinkingBlock {
                    data: "opaque".into(),
                    extra: Default::default(),
                }),
                // The signature of the call after it.
                thinking("", Some("gemini-next-part:SIG_CALL")),
                call("c1", "run", json_input(json!({"n": 1}))),
                call("c2", "run", json_input(json!({"n": 2}))),
                text("Done."),
                // A trailing signature with no part after it.
                thinking("", Some("gemini-next-part:SIG_END")),
            ],
        ),
    ]);
    insta::assert_json_snapshot!(encode(&req)["contents"][1], @r#"
    {
      "parts": [
        {
          "text": "Planning.",
          "thought": true,
          "thoughtSignature": "SIG_THOUGHT"
        },
        {
          "text": "Claude thought.",
          "thought": true
        },
        {
          "functionCall": {
            "args": {
              "n": 1
            },
            "id": "c1",
            "name": "run"
          },
          "thoughtSignature": "SIG_CALL"
        },
        {
          "functionCall": {
            "args": {
              "n": 2
            },
            "id": "c2",
            "name": "run"
          }
        },
        {
          "text": "Done."
        },
        {
          "text": "",
          "thoughtSignature": "SIG_END"
        }
      ],
      "role": "model"
    }
    "#);
}

#[test]
fn options_change_schemas_ids_and_placeholders() {
    let opts = EncodeOptions {
        schema: SchemaMode::JsonSchema,
        missing_signature: None,
        call_ids: false,
    };
    let body = encode_with(&parallel_loop(), &opts);
    let decl = &body["tools"][0]["functionDeclarations"][0];
    assert!(decl.get("parameters").is_none());
    assert_eq!(decl["parametersJsonSchema"]["additionalProperties"], false);
    let call = &body["contents"][1]["parts"][1];
    assert_eq!(
        call,
        &json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"output": "18C, sunny"}})
    );
    assert_eq!(
        EncodeOptions::default().missing_signature.as_deref(),
        Some(SKIP_SIGNATURE_VALIDATOR)
    );
}

#[test]
fn text_is_copied_token_for_token() {
    // Escapes survive as written (the encoder copies string tokens).
    let t: weir_model::JsonStr = serde_json::from_str(r#""caf\u00e9 \"quoted\"\n""#).unwrap();
    let req = request(vec![msg(
        Role::User,
        vec![ContentBlock::Text(TextBlock {
            text: t,
            ..Default::default()
        })],
    )]);
    let body = String::from_utf8(encode_request(&req, &EncodeOptions::default()).unwrap()).unwrap();
    assert_eq!(
        body,
        r#"{"contents":[{"role":"user","parts":[{"text":"caf\u00e9 \"quoted\"\n"}]}]}"#
    );
}

#[test]
fn structured_output_requests_become_response_mime_type_and_schema() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    // An OpenAI client's json_schema: a cleaned responseSchema (or the JSON Schema as is).
    let mut req = request(vec![msg(Role::User, vec![text("hi")])]);
    req.origin = Some(Dialect::OpenAi);
    req.extra.insert(
        "response_format",
        to_raw(&json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": schema}})),
    );
    let gc = &encode(&req)["generationConfig"];
    assert_eq!(gc["responseMimeType"], "application/json");
    assert_eq!(gc["responseSchema"]["properties"]["a"]["type"], "string");
    assert!(
        gc["responseSchema"].get("additionalProperties").is_none(),
        "{gc}"
    );
    let gc = &encode_with(
        &req,
        &EncodeOptions {
            schema: SchemaMode::JsonSchema,
            ..Default::default()
        },
    )["generationConfig"];
    assert_eq!(gc["responseJsonSchema"], schema);
    assert!(gc.get("responseSchema").is_none(), "{gc}");
    // JSON mode: JSON without a schema.
    req.extra
        .insert("response_format", to_raw(&json!({"type": "json_object"})));
    let gc = &encode(&req)["generationConfig"];
    assert_eq!(gc["responseMimeType"], "application/json");
    assert!(gc.get("responseSchema").is_none(), "{gc}");
    // Text: nothing.
    req.extra
        .insert("response_format", to_raw(&json!({"type": "text"})));
    assert!(encode(&req).get("generationConfig").is_none());
    // An Anthropic client's output_config.format.
    let mut req = request(vec![msg(Role::User, vec![text("hi")])]);
    req.origin = Some(Dialect::Anthropic);
    req.extra.insert(
        "output_config",
        to_raw(&json!({"format": {"type": "json_schema", "schema": schema}, "effort": "low"})),
    );
    let gc = &encode(&req)["generationConfig"];
    assert_eq!(gc["responseMimeType"], "application/json");
    assert_eq!(gc["responseSchema"]["required"], json!(["a"]));
    // A json_schema without its schema is the client's error.
    req.extra.insert(
        "output_config",
        to_raw(&json!({"format": {"type": "json_schema"}})),
    );
    assert!(encode_err(&req).to_string().contains("needs its schema"));
}

#[test]
fn an_openai_assistant_refusal_in_history_is_the_model_turn_s_text() {
    let mut refused = msg(Role::Assistant, vec![]);
    refused
        .extra
        .insert("refusal", to_raw(&"I can't help with that."));
    let mut answered = Message::text(Role::Assistant, "Sure.");
    answered.extra.insert("refusal", to_raw(&()));
    let mut req = request(vec![
        Message::text(Role::User, "Do the bad thing."),
        refused,
        Message::text(Role::User, "Something else, then."),
        answered,
    ]);
    req.origin = Some(Dialect::OpenAi);
    let body = encode(&req);
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Do the bad thing."}]},
            {"role": "model", "parts": [{"text": "I can't help with that."}]},
            {"role": "user", "parts": [{"text": "Something else, then."}]},
            {"role": "model", "parts": [{"text": "Sure."}]}
        ])
    );
}

#[test]
fn requests_left_empty_or_ending_on_the_model_are_refused() {
    for messages in [
        vec![Message::text(Role::System, "only a system prompt")],
        vec![Message::text(Role::User, "")],
        vec![
            Message::text(Role::User, "hi"),
            Message::text(Role::Assistant, "hello"),
            Message::text(Role::User, ""),
        ],
    ] {
        let err = encode_err(&request(messages)).to_string();
        assert!(
            err.contains("no message with content") || err.contains("is empty"),
            "{err}"
        );
    }
}

#[test]
fn a_function_without_parameters_goes_without_an_empty_schema() {
    // Gemini answers 400 to `"properties": {}` ("should be non-empty for OBJECT type");
    // Claude Code declares such a tool on every request.
    let mut req = request(vec![Message::text(Role::User, "hi")]);
    req.tools = Some(vec![
        function(
            "placeholder",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        function(
            "nested",
            json!({"type": "object", "properties": {
                "opts": {"type": "object", "properties": {}},
                "q": {"type": "string"}
            }}),
        ),
    ]);
    let out = encode(&req);
    let decls = &out["tools"][0]["functionDeclarations"];
    assert_eq!(decls[0].get("parameters"), None, "{decls}");
    assert_eq!(
        decls[1]["parameters"],
        json!({"type": "object", "properties": {
            "opts": {"type": "object"},
            "q": {"type": "string"}
        }, "propertyOrdering": ["opts", "q"]})
    );
}

#[test]
fn an_openai_function_tool_with_more_fields_is_declared() {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}, "cache_control": {"type": "ephemeral"}}
    ]});
    let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
    let g: Value =
        serde_json::from_slice(&encode_request(&canon, &EncodeOptions::default()).unwrap())
            .unwrap();
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0]["name"], "get_weather",
        "{g}"
    );
}

#[test]
fn an_answer_schema_keeps_its_property_order() {
    // A reasoning field declared before the answer's: Gemini would write them in
    // alphabetical order (the answer first) unless told the schema's own.
    let mut req = request(vec![Message::text(Role::User, "Think, then answer.")]);
    req.origin = Some(Dialect::OpenAi);
    req.extra.insert(
        "response_format",
        to_raw(
            &json!({"type": "json_schema", "json_schema": {"name": "cot", "schema": {
                "type": "object",
                "properties": {"reasoning": {"type": "string"}, "answer": {"type": "string"}},
                "required": ["reasoning", "answer"]
            }}}),
        ),
    );
    let v = encode(&req);
    let schema = &v["generationConfig"]["responseSchema"];
    assert_eq!(
        schema["propertyOrdering"],
        json!(["reasoning", "answer"]),
        "{v}"
    );
}
