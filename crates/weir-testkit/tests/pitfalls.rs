//! One named test per translation pitfall (wire reference, section 7), asserting exact
//! JSON in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use weir_model::{ApiError, ErrorKind, Frame, WireError};
use weir_testkit::{collect, json_diff, sse_events};

fn a_to_o(req: Value) -> Value {
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out = weir_openai::encode_request(&canon, &Default::default()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn o_to_a(req: Value) -> Value {
    try_o_to_a(req).unwrap()
}

fn try_o_to_a(req: Value) -> Result<Value, WireError> {
    let canon = weir_openai::decode_request(req.to_string().as_bytes())?;
    let out = weir_anthropic::encode_request(&canon, &Default::default())?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn a_resp_to_o(resp: Value) -> Value {
    let canon = weir_anthropic::decode_response(resp.to_string().as_bytes()).unwrap();
    serde_json::from_slice(&weir_openai::encode_response(&canon).unwrap()).unwrap()
}

fn o_resp_to_a(resp: Value) -> Value {
    let canon = weir_openai::decode_response(resp.to_string().as_bytes()).unwrap();
    serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap()
}

#[track_caller]
/// An OpenAI SSE stream as an Anthropic client receives it.
fn o_stream_to_a(body: &str) -> Vec<u8> {
    let mut dec = weir_openai::StreamDecoder::new();
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    out
}

fn assert_json(actual: &Value, expected: &Value) {
    if let Some(d) = json_diff(actual, expected) {
        panic!("{d}\nactual:   {actual}\nexpected: {expected}");
    }
}

fn weather_tool_o() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
}

fn weather_tool_a() -> Value {
    json!({"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}})
}

// --- 1, 2: tool call ids and parallel calls --------------------------------------------

#[test]
fn parallel_tool_calls_keep_ids_openai_to_anthropic_with_results_first_in_one_user_message() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "three cities"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_B", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
                {"id": "call_C", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lima\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_A", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_B", "content": "22C"},
            {"role": "tool", "tool_call_id": "call_C", "content": "15C"},
            {"role": "user", "content": "and now?"}
        ],
        "tools": [weather_tool_o()]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": [{"type": "text", "text": "three cities"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_B", "name": "get_weather", "input": {"city": "Tokyo"}},
                {"type": "tool_use", "id": "call_C", "name": "get_weather", "input": {"city": "Lima"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_A", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_B", "content": "22C"},
                {"type": "tool_result", "tool_use_id": "call_C", "content": "15C"},
                {"type": "text", "text": "and now?"}
            ]}
        ]),
    );
}

#[test]
fn parallel_tool_calls_keep_ids_anthropic_to_openai_as_separate_tool_messages() {
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "three cities"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {"city": "Tokyo"}},
                {"type": "tool_use", "id": "toolu_C", "name": "get_weather", "input": {"city": "Lima"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_B", "content": [{"type": "text", "text": "22C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_C", "content": "15C"},
                {"type": "text", "text": "summarize"}
            ]}
        ],
        "tools": [weather_tool_a()]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": "three cities"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_B", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
                {"id": "toolu_C", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lima\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_A", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_B", "content": "22C"},
            {"role": "tool", "tool_call_id": "toolu_C", "content": "15C"},
            {"role": "user", "content": "summarize"}
        ]),
    );
}

#[test]
fn invalid_tool_ids_are_sanitized_identically_for_call_and_result() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "ok"}
        ],
        "tools": [weather_tool_o()]
    }));
    let call_id = out["messages"][1]["content"][0]["id"].as_str().unwrap();
    let result_id = out["messages"][2]["content"][0]["tool_use_id"]
        .as_str()
        .unwrap();
    assert_eq!(call_id, result_id);
    assert_eq!(
        call_id,
        weir_anthropic::sanitize_tool_id("functions.get_weather:0")
    );
    assert!(call_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
}

/// An Anthropic client's conversation can hold tool ids an OpenAI-compatible upstream made
/// (Kimi's `functions.Bash:0`); sent on to Anthropic, which would refuse them, they are
/// rewritten as translation rewrites them, call and result alike. Everything else stays
/// as the client wrote it, valid ids included.
#[test]
fn an_anthropic_client_s_invalid_tool_ids_are_sanitized_for_anthropic() {
    let req = json!({
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "functions.Bash:0", "name": "Bash", "input": {"c": 1}},
                {"type": "tool_use", "id": "toolu_ok", "name": "Bash", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "functions.Bash:0", "content": [{"type": "text", "text": "a"}]},
                {"type": "tool_result", "tool_use_id": "toolu_ok", "content": "b", "is_error": false}
            ]}
        ]
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    let fixed = weir_anthropic::sanitize_tool_id("functions.Bash:0");
    let mut expected = req.clone();
    expected["messages"][1]["content"][0]["id"] = json!(fixed);
    expected["messages"][2]["content"][0]["tool_use_id"] = json!(fixed);
    assert_json(&out, &expected);
}

#[test]
fn parallel_tool_calls_in_responses_keep_ids_both_ways() {
    let o = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "tool_use", "id": "toolu_A", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "toolu_B", "name": "f", "input": {}},
            {"type": "tool_use", "id": "toolu_C", "name": "g", "input": {"b": [true]}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    }));
    assert_json(
        &o["choices"][0]["message"]["tool_calls"],
        &json!([
            {"id": "toolu_A", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "toolu_B", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "toolu_C", "type": "function", "function": {"name": "g", "arguments": "{\"b\":[true]}"}}
        ]),
    );
    assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(o["choices"][0]["message"]["content"], Value::Null);

    let a = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_A", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
            {"id": "call_B", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"id": "call_C", "type": "function", "function": {"name": "g", "arguments": "{}"}}
        ]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }));
    assert_json(
        &a["content"],
        &json!([
            {"type": "tool_use", "id": "call_A", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_B", "name": "f", "input": {}},
            {"type": "tool_use", "id": "call_C", "name": "g", "input": {}}
        ]),
    );
    assert_eq!(a["stop_reason"], "tool_use");
}

// --- 3: system hoisting and merging ------------------------------------------------------

#[test]
fn system_and_developer_messages_are_hoisted_into_system() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]}
        ]
    }));
    assert_json(
        &out["system"],
        &json!([
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Answer in French."}
        ]),
    );
    assert_json(
        &out["messages"],
        &json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
    );
}

#[test]
fn anthropic_system_becomes_the_first_openai_message() {
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "system": [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "B"}],
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "system", "content": "A\n\nB"},
            {"role": "user", "content": "hi"}
        ]),
    );
}

#[test]
fn consecutive_same_role_messages_are_merged() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "b"}
        ]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]),
    );
}

#[test]
fn an_openai_assistant_refusal_in_history_reaches_anthropic_as_its_text() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "do the bad thing"},
            {"role": "assistant", "content": null, "refusal": "I can't help with that."},
            {"role": "user", "content": "ok, something else"},
            {"role": "assistant", "content": "Sure.", "refusal": null},
            {"role": "user", "content": "and this?"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "Nor that."}]},
            {"role": "user", "content": "fine"}
        ]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": [{"type": "text", "text": "do the bad thing"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "I can't help with that."}]},
            {"role": "user", "content": [{"type": "text", "text": "ok, something else"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Sure."}]},
            {"role": "user", "content": [{"type": "text", "text": "and this?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Nor that."}]},
            {"role": "user", "content": [{"type": "text", "text": "fine"}]}
        ]),
    );
}

#[test]
fn anthropic_clients_messages_are_never_merged_or_reordered() {
    let req = json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}
        ]
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_json(&out, &req);
}

// --- 4: images ---------------------------------------------------------------------------

#[test]
fn images_data_url_and_https_url_to_anthropic_sources() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "what?"}
        ]}]
    }));
    assert_json(
        &out["messages"][0]["content"],
        &json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "what?"}
        ]),
    );
    // A PDF sent as an image (a PDF data URL, or one whose bytes say PDF) is a document
    // to Anthropic, which takes PDFs only so.
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBERi0xLjQK"}},
            {"type": "image_url", "image_url": {"url": "data:;base64,JVBERi0xLjQK"}}
        ]}]
    }));
    let pdf = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}});
    assert_json(&out["messages"][0]["content"], &json!([pdf, pdf]));
    // A data URL that cannot be read is the gateway's clear 400, not a `url` source
    // Anthropic would refuse; also inside a tool result.
    for url in [
        "data:base64,iVBORw0KGgo=",
        "data:;base64,AAAA",
        " data:image/png;base64,iVBORw0KGgo=",
        "DATA:image/png,notbase64",
    ] {
        let image = json!({"type": "image_url", "image_url": {"url": url}});
        for messages in [
            json!([{"role": "user", "content": [image]}]),
            json!([
                {"role": "user", "content": "look"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": [image]}
            ]),
        ] {
            let last = messages.as_array().unwrap().len() - 1;
            let e = try_o_to_a(json!({"model": "m", "messages": messages})).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("messages[{last}]: a data URL could not be read: it must be `data:<media type>;base64,<data>` (the media type may be left out for PNG, JPEG, GIF, WebP and PDF data)"),
                "{url}"
            );
        }
    }
}

#[test]
fn images_base64_and_url_sources_to_openai_image_urls() {
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
        ]}]
    }));
    assert_json(
        &out["messages"][0]["content"],
        &json!([
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
        ]),
    );
}

// --- 5: tool results with images and errors ---------------------------------------------

#[test]
fn tool_result_images_move_to_a_user_message_and_errors_are_marked() {
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "shoot"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "fetch", "input": {"u": "x"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "captured"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]},
                {"type": "tool_result", "tool_use_id": "t2", "content": "404 not found", "is_error": true}
            ]}
        ]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": "shoot"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}},
                {"id": "t2", "type": "function", "function": {"name": "fetch", "arguments": "{\"u\":\"x\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": "captured"},
            {"role": "tool", "tool_call_id": "t2", "content": "Error: 404 not found"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
        ]),
    );
}

#[test]
fn openai_tool_message_parts_become_tool_result_content() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]
    }));
    assert_json(
        &out["messages"][1],
        &json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "c", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]}),
    );
}

// --- 6: arguments -------------------------------------------------------------------------

#[test]
fn argument_strings_become_objects_and_empty_arguments_become_empty_objects() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": " {\"x\": [1, 2]} "}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}
        ]}]
    }));
    assert_json(
        &out["messages"][0]["content"][0]["input"],
        &json!({"x": [1, 2]}),
    );
    assert_json(&out["messages"][0]["content"][1]["input"], &json!({}));
}

#[test]
fn arguments_that_are_not_an_object_become_an_empty_object_for_anthropic() {
    // A model's broken or cut-short arguments: in a conversation's history they must not
    // block it for good, and in an upstream's answer they must not cost the whole answer.
    for bad in ["{\"x\": ", "[1,2]", "not json", "\"str\""] {
        let out = o_to_a(json!({
            "model": "m",
            "messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": bad}}
            ]}]
        }));
        assert_json(
            &out["messages"][0]["content"][0],
            &json!({"type": "tool_use", "id": "call_9", "name": "f", "input": {}}),
        );
        let out = o_resp_to_a(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "message": {
                "role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": bad}}
                ]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        }));
        assert_json(
            &out["content"][0],
            &json!({"type": "tool_use", "id": "call_9", "name": "f", "input": {}}),
        );
        assert_eq!(out["stop_reason"], "max_tokens");
    }
}

#[test]
fn invalid_json_arguments_pass_unchanged_between_openai_client_and_upstream() {
    let req = json!({"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"truncated\": "}}
    ]}]});
    let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_json(&out, &req);
}

#[test]
fn malformed_request_json_errors_say_where() {
    let err = weir_anthropic::decode_request(b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid request body: messages[0]: content[0]: missing field `text` at line 1 column 73"
    );
    let err = weir_openai::decode_request(b"{\"model\": \"m\", \"messages\": [}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid request body: messages[0]: expected value at line 1 column 29"
    );
    let err = weir_openai::decode_request(
        b"{\"model\": \"m\", \"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown variant `robot`"), "{err}");
}

// --- 7: thinking ----------------------------------------------------------------------------

#[test]
fn thinking_is_exposed_as_reasoning_content_to_openai_clients() {
    let o = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
            {"type": "text", "text": "42"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    }));
    assert_json(
        &o["choices"][0]["message"],
        &json!({
            "role": "assistant", "content": "42", "reasoning_content": "Let me think.", "refusal": null
        }),
    );
    // Thinking that is only a signature (Gemini's can be): no empty reasoning_content.
    let o = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "", "signature": "sig=="},
            {"type": "text", "text": "42"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    }));
    assert!(
        o["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{o}"
    );
}

#[test]
fn thinking_blocks_and_signatures_pass_anthropic_to_anthropic_unchanged() {
    let req = json!({"model": "m", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "step \u{1F600} \"quoted\"\n", "signature": "EqQBCkgIBxABGAIqQKzY3Zbb+/="},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}
    ]});
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_json(&out, &req);
}

#[test]
fn unsigned_reasoning_is_not_sent_to_anthropic_and_thinking_stays_off_for_unsigned_tool_turns() {
    let out = o_to_a(json!({
        "model": "m", "reasoning_effort": "high",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "hmm", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}
        ]
    }));
    assert_json(
        &out["messages"][1],
        &json!({"role": "assistant", "content": [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "c", "name": "f", "input": {}}
        ]}),
    );
    assert!(out.get("thinking").is_none(), "{out}");
}

#[test]
fn thinking_comes_back_once_a_tool_loop_has_finished() {
    // The unsigned tool turn is history: the request continues a plain answer, and
    // Anthropic needs thinking only before the calls of the turn being continued.
    let finished = json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"},
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "next question"}
    ]);
    let out = o_to_a(json!({"model": "m", "reasoning_effort": "high", "messages": finished}));
    assert_eq!(out["thinking"]["type"], "enabled", "{out}");
    let out = o_to_a(json!({"model": "m", "messages": finished,
        "thinking": {"type": "enabled", "budget_tokens": 2048}}));
    assert_eq!(out["thinking"]["budget_tokens"], 2048, "{out}");
    // A second round of calls, being continued: off again.
    let mut again = finished.as_array().unwrap().clone();
    again.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "d", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}));
    again.push(json!({"role": "tool", "tool_call_id": "d", "content": "r2"}));
    for extra in [
        json!({"reasoning_effort": "high"}),
        json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ] {
        let mut r = json!({"model": "m", "messages": again});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let out = o_to_a(r);
        assert!(out.get("thinking").is_none(), "{out}");
    }
}

#[test]
fn reasoning_effort_maps_to_a_thinking_budget_below_max_tokens() {
    let req = |extra: Value| {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        o_to_a(r)
    };
    // No limit from the client: the default one grows to hold the budget.
    let out = req(json!({"reasoning_effort": "high"}));
    assert_json(
        &out["thinking"],
        &json!({"type": "enabled", "budget_tokens": 16384}),
    );
    assert!(out["max_tokens"].as_u64().unwrap() > 16384, "{out}");
    // The client's limit counts reasoning (OpenAI): it is kept, the budget fits below it.
    let out = req(json!({"reasoning_effort": "high", "max_completion_tokens": 20000}));
    assert_eq!(out["max_tokens"], 20000);
    assert_eq!(out["thinking"]["budget_tokens"], 16384);
    let out = req(json!({"reasoning_effort": "high", "max_completion_tokens": 2000}));
    assert_eq!(out["max_tokens"], 2000);
    assert_eq!(out["thinking"]["budget_tokens"], 1024);
    // No room for the smallest budget: no thinking, and the limit stays.
    let out = req(json!({"reasoning_effort": "low", "max_completion_tokens": 500}));
    assert!(out.get("thinking").is_none(), "{out}");
    assert_eq!(out["max_tokens"], 500);
    let out = req(json!({"reasoning_effort": "minimal"}));
    assert!(out.get("thinking").is_none());
    // Settings Anthropic refuses alongside thinking win over the effort.
    for conflict in [
        json!({"temperature": 0.5}),
        json!({"top_p": 0.5}),
        json!({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
    ] {
        let mut extra = conflict.clone();
        extra["reasoning_effort"] = json!("low");
        let out = req(extra);
        assert!(out.get("thinking").is_none(), "{conflict}: {out}");
    }
    // temperature 1 is what thinking wants anyway.
    let out = req(json!({"reasoning_effort": "low", "temperature": 1}));
    assert_eq!(out["thinking"]["budget_tokens"], 1024);
}

#[test]
fn openrouter_gets_an_anthropic_clients_thinking_as_its_reasoning_object() {
    let sent = |body: &str| -> Value {
        let req = weir_anthropic::decode_request(body.as_bytes()).unwrap();
        let opts = weir_openai::Preset::OpenRouter.encode_options();
        serde_json::from_slice(&weir_openai::encode_request(&req, &opts).unwrap()).unwrap()
    };
    let q = r#""messages":[{"role":"user","content":"q"}]"#;
    for (thinking, want) in [
        (
            r#""thinking":{"type":"enabled","budget_tokens":3000}"#,
            json!({"max_tokens": 3000}),
        ),
        (
            r#""thinking":{"type":"disabled"}"#,
            json!({"enabled": false}),
        ),
        (
            r#""thinking":{"type":"adaptive"},"output_config":{"effort":"max"}"#,
            json!({"effort": "xhigh"}),
        ),
        (r#""thinking":{"type":"adaptive"}"#, Value::Null),
    ] {
        let out = sent(&format!(
            r#"{{"model":"m","max_tokens":9000,{thinking},{q}}}"#
        ));
        assert_eq!(out["reasoning"], want, "{thinking}: {out}");
    }
    // A tool turn without reasoning being continued: none asked for.
    let out = sent(
        r#"{"model":"m","max_tokens":9000,"thinking":{"type":"enabled","budget_tokens":3000},
        "messages":[{"role":"user","content":"q"},
        {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}]}"#,
    );
    assert!(out.get("reasoning").is_none(), "{out}");
}

#[test]
fn azures_content_filter_findings_go_to_openai_clients_only() {
    let e = weir_openai::decode_error(
        400,
        br#"{"error":{"message":"filtered","code":"content_filter","innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#,
    );
    let (_, body) = weir_openai::encode_error(&e);
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        o["error"]["innererror"]["content_filter_result"]["hate"]["severity"], "high",
        "{o}"
    );
    let (_, body) = weir_anthropic::encode_error(&e, None);
    let a: Value = serde_json::from_slice(&body).unwrap();
    assert!(a["error"].get("innererror").is_none(), "{a}");
    assert!(a["error"].get("details").is_none(), "{a}");
}

#[test]
fn xais_billed_cost_and_refused_penalties() {
    // xAI bills in ten-billionths of a dollar (`cost_in_usd_ticks`).
    let r = weir_openai::decode_response(
        json!({"id": "x", "object": "chat.completion", "created": 1, "model": "grok-4.3",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost_in_usd_ticks": 158000000}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.usage.billed_usd, Some(0.0158));
    // Its reasoning models refuse the penalties: ones that ask nothing are left out.
    let mut req = weir_openai::decode_request(
        br#"{"model":"grok-4.3","presence_penalty":0,"frequency_penalty":0.5,"messages":[{"role":"user","content":"q"}]}"#,
    )
    .unwrap();
    weir_openai::Preset::Xai.adapt(&mut req);
    let out: Value = serde_json::from_slice(
        &weir_openai::encode_request(&req, &weir_openai::Preset::Xai.encode_options()).unwrap(),
    )
    .unwrap();
    assert!(out.get("presence_penalty").is_none(), "{out}");
    assert_eq!(out["frequency_penalty"], 0.5, "{out}");
}

#[test]
fn compatible_services_finish_reasons_reach_anthropic_clients_by_meaning() {
    let answer = |finish: &str, calls: bool| {
        let mut message = json!({"role": "assistant", "content": "a"});
        if calls {
            message["tool_calls"] = json!([{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]);
        }
        o_resp_to_a(
            json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}),
        )
    };
    for (finish, want) in [
        // Z.AI's filtered answer.
        ("sensitive", "refusal"),
        // Z.AI's and Mistral's full context window.
        (
            "model_context_window_exceeded",
            "model_context_window_exceeded",
        ),
        ("model_length", "model_context_window_exceeded"),
        ("something_new", "end_turn"),
    ] {
        assert_eq!(answer(finish, false)["stop_reason"], want, "{finish}");
    }
    // Tool calls with a service's own reason (Together's `eos`) are a tool-use stop.
    assert_eq!(answer("eos", true)["stop_reason"], "tool_use");
}

#[test]
fn input_estimates_charge_images_by_count_in_either_dialect() {
    let data = "A".repeat(400_000);
    let a = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}]}]}]})
    .to_string();
    let o = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    .to_string();
    for (body, req) in [
        (&a, weir_anthropic::decode_request(a.as_bytes()).unwrap()),
        (&o, weir_openai::decode_request(o.as_bytes()).unwrap()),
    ] {
        let n = req.estimate_input_tokens(body.len());
        // Two images, and the rest of the JSON at four bytes a token.
        assert!(
            (2 * weir_model::IMAGE_TOKENS..2 * weir_model::IMAGE_TOKENS + 100).contains(&n),
            "{n}"
        );
    }
    // Without images, four bytes a token, as before.
    let plain = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4000)}]})
        .to_string();
    let req = weir_openai::decode_request(plain.as_bytes()).unwrap();
    assert_eq!(
        req.estimate_input_tokens(plain.len()),
        (plain.len() as u64).div_ceil(4)
    );
}

#[test]
fn openai_safety_identifier_names_the_end_user_as_user_did() {
    // OpenAI deprecated `user` for `safety_identifier`: Anthropic gets it as
    // metadata.user_id, as it got `user`.
    let body = json!({"model": "m", "safety_identifier": "user-123",
        "messages": [{"role": "user", "content": "q"}]});
    let out = o_to_a(body.clone());
    assert_json(&out["metadata"], &json!({"user_id": "user-123"}));
    let canon = weir_openai::decode_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(canon.end_user(), Some("user-123"));
    // Back to OpenAI, as it came: no `user` added.
    let back: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(back["safety_identifier"], "user-123", "{back}");
    assert!(back.get("user").is_none(), "{back}");
    // `user` still wins when both are given.
    let out = o_to_a(
        json!({"model": "m", "user": "u-old", "safety_identifier": "u-new",
        "messages": [{"role": "user", "content": "q"}]}),
    );
    assert_eq!(out["metadata"]["user_id"], "u-old");
}

#[test]
fn reasoning_effort_is_adaptive_thinking_and_an_effort_for_claude_4_6_on() {
    let req = |model: &str, extra: Value| {
        let mut r = json!({"model": model, "messages": [{"role": "user", "content": "q"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        o_to_a(r)
    };
    // Claude 4.7 on refuses a budget ("thinking.type.enabled is not supported for this
    // model"); 4.6 takes both, adaptive preferred.
    for (model, effort, want) in [
        ("claude-opus-5", "high", "high"),
        ("claude-fable-5-1", "minimal", "low"),
        ("us.anthropic.claude-opus-4-7-v1:0", "xhigh", "xhigh"),
        ("claude-sonnet-4-6", "xhigh", "max"),
        ("claude-sonnet-4-6", "medium", "medium"),
    ] {
        let out = req(model, json!({"reasoning_effort": effort}));
        assert_json(&out["thinking"], &json!({"type": "adaptive"}));
        assert_json(&out["output_config"], &json!({"effort": want}));
    }
    // Beside structured outputs, one output_config.
    let out = req(
        "claude-opus-5",
        json!({"reasoning_effort": "low", "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
    );
    assert_json(
        &out["output_config"],
        // (Every object closed, as Claude's structured outputs require.)
        &json!({"effort": "low", "format": {"type": "json_schema",
                 "schema": {"type": "object", "additionalProperties": false}}}),
    );
    // `none`, and settings Anthropic refuses beside thinking, still mean no thinking.
    // (A temperature only where the model takes one: Claude 4.7 on is sent none.)
    for (model, extra) in [
        ("claude-opus-5", json!({"reasoning_effort": "none"})),
        (
            "claude-sonnet-4-6",
            json!({"reasoning_effort": "high", "temperature": 0.5}),
        ),
        (
            "claude-opus-5",
            json!({"reasoning_effort": "high", "max_completion_tokens": 500}),
        ),
    ] {
        let out = req(model, extra.clone());
        assert!(out.get("thinking").is_none(), "{extra}: {out}");
        assert!(out.get("output_config").is_none(), "{extra}: {out}");
    }
    // An OpenAI client's own Anthropic budget is adaptive thinking where budgets are refused,
    // and stays a budget where they are not.
    let own = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
    assert_json(
        &req("claude-sonnet-5", own.clone())["thinking"],
        &json!({"type": "adaptive"}),
    );
    assert_json(
        &req("claude-sonnet-4-6", own.clone())["thinking"],
        &json!({"type": "enabled", "budget_tokens": 2048}),
    );
    // Earlier models keep the budget form.
    let out = req("claude-haiku-4-5", json!({"reasoning_effort": "high"}));
    assert_eq!(out["thinking"]["type"], "enabled", "{out}");
    assert!(out.get("output_config").is_none(), "{out}");
    // And an Anthropic client's own thinking is passed as it came, whatever the model.
    let canon = weir_anthropic::decode_request(
        json!({"model": "claude-opus-5", "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "q"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let a: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(a["thinking"]["budget_tokens"], 2048, "{a}");
}

#[test]
fn thinking_streams_to_openai_clients_as_reasoning_content_deltas() {
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut enc = weir_openai::StreamEncoder::new(Default::default());
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    let chunks: Vec<Value> = sse_events(&out)
        .iter()
        .map(|e| serde_json::from_str(e.data()).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_json(
        &json!(deltas),
        &json!([{"role": "assistant", "content": ""}, {"reasoning_content": "hmm"}]),
    );
}

// --- 10: max_tokens ---------------------------------------------------------------------------

#[test]
fn max_tokens_defaults_when_missing_and_maps_from_either_openai_field() {
    let out = o_to_a(json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}));
    assert_eq!(out["max_tokens"], 4096);
    // A Claude model's own output limit (an OpenAI client that sets none asks for as much
    // as the model can), a whole answer held to about ten minutes of generation.
    let q = json!([{"role": "user", "content": "q"}]);
    for (model, stream, limit) in [
        ("claude-sonnet-4-5-20250929", true, 64_000),
        ("claude-sonnet-4-5-20250929", false, 21_333),
        ("claude-opus-4-1", true, 32_000),
        ("claude-3-5-haiku-latest", false, 8_192),
        ("claude-3-haiku-20240307", true, 4_096),
        ("claude-opus-4-7", true, 128_000),
        ("claude-fable-5-1", true, 128_000),
        ("glm-4.6", true, 4_096),
    ] {
        let out = o_to_a(json!({"model": model, "stream": stream, "messages": q}));
        assert_eq!(out["max_tokens"], limit, "{model} stream={stream}");
    }
    // A thinking budget mapped from reasoning_effort stays below that limit, with room
    // for the answer (xhigh's 32768 exceeded Opus 4.1's 32000 output limit).
    for (model, stream, limit, budget) in [
        ("claude-opus-4-1", true, 32_000, 27_904),
        ("claude-sonnet-4-5", false, 21_333, 17_237),
        ("claude-sonnet-4-5", true, 64_000, 32_768),
    ] {
        let out = o_to_a(json!({"model": model, "stream": stream, "messages": q,
            "reasoning_effort": "xhigh"}));
        assert_eq!(out["max_tokens"], limit, "{model} stream={stream}");
        assert_eq!(
            out["thinking"]["budget_tokens"], budget,
            "{model} stream={stream}"
        );
    }
    let out = o_to_a(
        json!({"model": "m", "max_tokens": 77, "messages": [{"role": "user", "content": "q"}]}),
    );
    assert_eq!(out["max_tokens"], 77);
    let out = o_to_a(
        json!({"model": "m", "max_completion_tokens": 88, "messages": [{"role": "user", "content": "q"}]}),
    );
    assert_eq!(out["max_tokens"], 88);
    let out = a_to_o(
        json!({"model": "m", "max_tokens": 99, "messages": [{"role": "user", "content": "q"}]}),
    );
    assert_eq!(out["max_completion_tokens"], 99);
    assert!(out.get("max_tokens").is_none());
}

// --- 11: tool_choice, parallel flag, stop sequences --------------------------------------------

#[test]
fn tool_choice_and_parallel_flags_map_both_ways() {
    let cases = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("required"), json!({"type": "any"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!({"type": "tool", "name": "get_weather"}),
        ),
    ];
    for (o, a) in &cases {
        let out = o_to_a(
            json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "tools": [weather_tool_o()], "tool_choice": o}),
        );
        assert_json(&out["tool_choice"], a);
        let back = a_to_o(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "q"}], "tools": [weather_tool_a()], "tool_choice": a}),
        );
        assert_json(&back["tool_choice"], o);
    }
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "tools": [weather_tool_o()], "parallel_tool_calls": false}),
    );
    assert_json(
        &out["tool_choice"],
        &json!({"type": "auto", "disable_parallel_tool_use": true}),
    );
    let out = a_to_o(
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "q"}], "tools": [weather_tool_a()],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}}),
    );
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["parallel_tool_calls"], false);
}

#[test]
fn stop_sequences_map_both_ways() {
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": "END"}),
    );
    assert_json(&out["stop_sequences"], &json!(["END"]));
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": ["a", "b"]}),
    );
    assert_json(&out["stop_sequences"], &json!(["a", "b"]));
    // Anthropic refuses whitespace alone: left out.
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": ["\n", "END", " "]}),
    );
    assert_json(&out["stop_sequences"], &json!(["END"]));
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": "\n\n"}),
    );
    assert!(out.get("stop_sequences").is_none(), "{out}");
    let out = a_to_o(
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "q"}], "stop_sequences": ["x"]}),
    );
    assert_json(&out["stop"], &json!(["x"]));
}

#[test]
fn temperature_is_clamped_to_anthropics_range() {
    let out = o_to_a(
        json!({"model": "m", "temperature": 1.7, "messages": [{"role": "user", "content": "q"}]}),
    );
    assert_eq!(out["temperature"], 1.0);
}

// --- stop reasons ------------------------------------------------------------------------------

#[test]
fn stop_reason_table() {
    let a_to_o_table = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ];
    for (a, o) in a_to_o_table {
        let out = a_resp_to_o(
            json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "x"}], "stop_reason": a, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
        );
        assert_eq!(out["choices"][0]["finish_reason"], o, "{a}");
    }
    let o_to_a_table = [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
    ];
    for (o, a) in o_to_a_table {
        let out = o_resp_to_a(
            json!({"id": "c", "object": "chat.completion", "created": 1, "model": "g",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": o}]}),
        );
        assert_eq!(out["stop_reason"], a, "{o}");
    }
}

// --- 9: usage ------------------------------------------------------------------------------------

#[test]
fn usage_cache_semantics_map_both_ways() {
    // Anthropic input excludes cache reads and writes; OpenAI prompt_tokens includes them.
    let o = a_resp_to_o(
        json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "text", "text": "x"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 30, "output_tokens": 7}}),
    );
    assert_json(
        &o["usage"],
        &json!({"prompt_tokens": 240, "completion_tokens": 7, "total_tokens": 247,
        "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 30}}),
    );
    // OpenRouter (and the OpenAI SDK since 2026) count cache writes apart.
    let a = o_resp_to_a(
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "g",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 240, "completion_tokens": 7, "total_tokens": 247,
            "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 30}}}),
    );
    assert_json(
        &a["usage"],
        &json!({"input_tokens": 10, "output_tokens": 7,
        "cache_read_input_tokens": 200, "cache_creation_input_tokens": 30}),
    );
    let a = o_resp_to_a(
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "g",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250,
            "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 20}}}),
    );
    assert_json(
        &a["usage"],
        &json!({"input_tokens": 176, "output_tokens": 50,
        "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0,
        "output_tokens_details": {"thinking_tokens": 20}}),
    );
    // Streamed, the final delta says it too.
    let body = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":50,\"total_tokens\":60,\"completion_tokens_details\":{\"reasoning_tokens\":20}}}\n\n",
        "data: [DONE]\n\n",
    );
    let out = o_stream_to_a(body);
    let delta = sse_events(&out)
        .into_iter()
        .find(|e| e.event() == Some("message_delta"))
        .expect("a message_delta");
    let v: Value = serde_json::from_str(delta.data()).unwrap();
    assert_eq!(
        v["usage"]["output_tokens_details"]["thinking_tokens"], 20,
        "{v}"
    );
    // DeepSeek names the cached part its own way.
    let a = o_resp_to_a(
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 5, "total_tokens": 1005,
            "prompt_cache_hit_tokens": 768, "prompt_cache_miss_tokens": 232}}),
    );
    assert_eq!(a["usage"]["input_tokens"], 232);
    assert_eq!(a["usage"]["cache_read_input_tokens"], 768);
}

// --- errors ----------------------------------------------------------------------------------------

#[test]
fn anthropic_529_becomes_openai_503_and_back() {
    let e = weir_anthropic::decode_error(529, br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#);
    assert_eq!(e.kind, ErrorKind::Overloaded);
    let (status, body) = weir_openai::encode_error(&e);
    assert_eq!(status, 503);
    assert_json(
        &serde_json::from_slice(&body).unwrap(),
        &json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}}),
    );

    let e = weir_openai::decode_error(503, br#"{"error":{"message":"The engine is currently overloaded","type":"server_error","param":null,"code":null}}"#);
    let (status, body) = weir_anthropic::encode_error(&e, Some("req_x"));
    assert_eq!(status, 529);
    assert_json(
        &serde_json::from_slice(&body).unwrap(),
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "The engine is currently overloaded"}, "request_id": "req_x"}),
    );
}

#[test]
fn error_bodies_map_by_kind_both_ways() {
    let table = [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
    ];
    for (status, a_type, o_type) in table {
        let body = json!({"type": "error", "error": {"type": a_type, "message": "m"}}).to_string();
        let e = weir_anthropic::decode_error(status, body.as_bytes());
        let (s, b) = weir_openai::encode_error(&e);
        assert_eq!(s, status, "{a_type}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["type"], o_type, "{a_type}");
        let back = weir_openai::decode_error(s, &b);
        let (s2, b2) = weir_anthropic::encode_error(&back, None);
        assert_eq!(s2, status);
        let v2: Value = serde_json::from_slice(&b2).unwrap();
        assert_eq!(v2["error"]["type"], a_type);
    }
}

#[test]
fn non_json_error_bodies_become_short_sanitized_messages() {
    let e = weir_openai::decode_error(
        502,
        b"<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>",
    );
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(
        e.message,
        "upstream answered 502: <html><body> <h1>502 Bad Gateway</h1> </body></html>"
    );
    let e = weir_anthropic::decode_error(500, b"");
    assert_eq!(e.message, "upstream answered 500 with an empty body");
}

#[test]
fn errors_inside_streams_use_each_dialects_shape() {
    let err = ApiError::new(ErrorKind::Overloaded, "Overloaded");
    let frame = Frame::from_events(vec![weir_model::StreamEvent::Error(err)]);
    let mut out = Vec::new();
    weir_anthropic::StreamEncoder::new()
        .encode(&frame, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    );
    let mut out = Vec::new();
    weir_openai::StreamEncoder::new(Default::default())
        .encode(&frame, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}\n\n"
    );
}

// --- 8: stream re-framing ------------------------------------------------------------------------

#[test]
fn openai_stream_reframes_into_anthropic_events() {
    let body = concat!(
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"g\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n",
        "data: [DONE]\n\n",
    );
    let out = o_stream_to_a(body);
    let got: Vec<(String, Value)> = sse_events(&out)
        .iter()
        .map(|e| {
            (
                e.event().unwrap().to_owned(),
                serde_json::from_str(e.data()).unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_json(
        &got[4].1,
        &json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}}),
    );
    assert_json(
        &got[7].1,
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
        "usage": {"input_tokens": 5, "output_tokens": 3}}),
    );
    // Counts the upstream did not give are left out of message_delta, not written as 0:
    // clients overwrite their running figures with every count a delta carries.
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    let delta = weir_model::StreamEvent::MessageDelta {
        stop_reason: Some(weir_model::StopReason::EndTurn),
        stop_sequence: None,
        usage: weir_model::Usage {
            output_tokens: Some(7),
            ..Default::default()
        },
    };
    enc.encode(&weir_model::Frame::from_events(vec![delta]), &mut out)
        .unwrap();
    let ev = &sse_events(&out)[0];
    let v: Value = serde_json::from_str(ev.data()).unwrap();
    assert_json(&v["usage"], &json!({"output_tokens": 7}));
}

/// Anthropic's `output_tokens_details.thinking_tokens` is the reasoning an OpenAI client is
/// told of (`completion_tokens_details.reasoning_tokens`), whole and streamed; an Anthropic
/// client gets the breakdown as it came.
#[test]
fn thinking_tokens_become_reasoning_tokens_for_openai_clients() {
    let usage = json!({"input_tokens": 10, "output_tokens": 943, "output_tokens_details": {"thinking_tokens": 261}});
    let whole = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "42"}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
    });
    let o = a_resp_to_o(whole.clone());
    assert_eq!(o["usage"]["completion_tokens"], 943, "{o}");
    assert_eq!(
        o["usage"]["completion_tokens_details"]["reasoning_tokens"], 261,
        "{o}"
    );
    assert!(o["usage"].get("output_tokens_details").is_none(), "{o}");
    let canon = weir_anthropic::decode_response(whole.to_string().as_bytes()).unwrap();
    let again: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap();
    assert_json(&again["usage"], &usage);

    let body = format!(
        "event: message_start\ndata: {}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": usage}),
    );
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: true,
        created: None,
    });
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    let last_usage = sse_events(&out)
        .iter()
        .filter(|e| e.data() != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e.data()).unwrap())
        .rfind(|c| !c["usage"].is_null())
        .expect("a usage chunk")["usage"]
        .clone();
    assert_eq!(
        last_usage["completion_tokens_details"]["reasoning_tokens"], 261,
        "{last_usage}"
    );
}

#[test]
fn anthropic_stream_reframes_into_openai_chunks_with_usage_and_done() {
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"now\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: true,
        created: None,
    });
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    let events = sse_events(&out);
    assert_eq!(events.last().unwrap().data(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.data()).unwrap())
        .collect();
    let deltas: Vec<Value> = chunks
        .iter()
        .map(|c| json!([c["choices"][0]["delta"], c["choices"][0]["finish_reason"]]))
        .collect();
    assert_json(
        &json!(deltas),
        &json!([
            [{"role": "assistant", "content": ""}, null],
            [{"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "now", "arguments": ""}}]}, null],
            [{"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, null],
            [{}, "tool_calls"],
            [null, null]
        ]),
    );
    assert_json(
        &chunks[4]["usage"],
        &json!({"prompt_tokens": 105, "completion_tokens": 9, "total_tokens": 114, "prompt_tokens_details": {"cached_tokens": 100}}),
    );
    assert_json(&chunks[4]["choices"], &json!([]));
    for c in &chunks {
        assert_eq!(c["id"], "msg_1");
        assert_eq!(c["object"], "chat.completion.chunk");
    }
}

#[test]
fn truncated_openai_stream_is_an_error_at_the_end() {
    let mut dec = weir_openai::StreamDecoder::new();
    for ev in sse_events(b"data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n") {
        dec.decode(ev).unwrap();
    }
    assert!(dec.finish().is_err());
}

#[test]
fn streamed_and_collected_tool_calls_agree() {
    let body = std::fs::read(
        weir_testkit::fixtures_dir().join("openai/parallel_tools_stream/00.response.body"),
    )
    .unwrap();
    let mut dec = weir_openai::StreamDecoder::new();
    let frames: Vec<Frame> = sse_events(&body)
        .iter()
        .map(|e| dec.decode(e.clone()).unwrap())
        .collect();
    let c = collect(&frames);
    assert_eq!(
        c.tool_calls,
        vec![
            (
                "call_Paris".to_owned(),
                "get_weather".to_owned(),
                "{\"city\": \"Paris\"}".to_owned()
            ),
            (
                "call_Tokyo".to_owned(),
                "get_weather".to_owned(),
                "{\"city\": \"Tokyo\"}".to_owned()
            ),
            (
                "call_Lima".to_owned(),
                "get_weather".to_owned(),
                "{\"city\": \"Lima\"}".to_owned()
            ),
        ]
    );
    assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
}

#[test]
fn system_turns_inside_anthropic_messages_pass_through_and_become_openai_system_messages() {
    // Claude Code (2.1.x) sends `{"role":"system"}` turns inside `messages`.
    let req = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
        {"role": "user", "content": "go"}
    ]});
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let same: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_json(&same, &req);
    let out = a_to_o(req);
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "reminder"},
            {"role": "user", "content": "go"}
        ]),
    );
}

#[test]
fn reasoning_named_reasoning_becomes_thinking_and_stays_as_it_came_for_openai_clients() {
    // Groq, OpenRouter and Ollama's OpenAI layer name the field `reasoning`.
    let resp = json!({
        "id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "qwen/qwen3-32b",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": "42", "reasoning": "Six times seven."}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    });
    let a = o_resp_to_a(resp.clone());
    assert_eq!(a["content"][0]["type"], "thinking");
    assert_eq!(a["content"][0]["thinking"], "Six times seven.");
    assert_eq!(a["content"][1]["text"], "42");
    // The same dialect writes it back exactly.
    let decoded = weir_openai::decode_response(resp.to_string().as_bytes()).unwrap();
    let again: Value =
        serde_json::from_slice(&weir_openai::encode_response(&decoded).unwrap()).unwrap();
    assert_json(&again, &resp);
}

// --- structured outputs ----------------------------------------------------------------

#[test]
fn openai_response_format_json_schema_becomes_anthropic_output_config_format() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "thing", "strict": true, "schema": schema}}
    }));
    assert_json(
        &out["output_config"],
        &json!({"format": {"type": "json_schema", "schema": schema}}),
    );
    assert!(out.get("response_format").is_none(), "{out}");
    // JSON mode without a schema has no Anthropic counterpart (the prompt asks for JSON).
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "answer in JSON"}],
        "response_format": {"type": "json_object"}
    }));
    assert!(out.get("output_config").is_none(), "{out}");
    // A schema format without its schema is the client's error, not silently dropped.
    let err = try_o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("json_schema needs its schema"),
        "{err}"
    );
    let err = try_o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": "json"
    }))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("response_format must be an object"),
        "{err}"
    );
}

#[test]
fn anthropic_output_format_becomes_openai_response_format_json_schema() {
    let schema = json!({"type": "object", "properties": {"b": {"type": "integer"}}});
    let expected =
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}});
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "high"}
    }));
    assert_json(&out["response_format"], &expected);
    // The beta's top-level form.
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "output_format": {"type": "json_schema", "schema": schema}
    }));
    assert_json(&out["response_format"], &expected);
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"effort": "low"}
    }));
    assert!(out.get("response_format").is_none(), "{out}");
}

#[test]
fn an_anthropic_clients_own_output_config_passes_through_unread() {
    // Even a shape Weir does not know: the upstream is the judge of its own API.
    let req = json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"format": "something-newer", "effort": "high"}
    });
    let canon = weir_anthropic::decode_request(&serde_json::to_vec(&req).unwrap()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(out["output_config"], req["output_config"]);
}

#[test]
fn thinking_and_effort_become_reasoning_effort_only_where_configured() {
    let encode = |req: Value, on: bool| -> Value {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        let opts = weir_openai::EncodeOptions {
            reasoning_effort_from_thinking: on,
            ..Default::default()
        };
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap()
    };
    let msgs = json!([{"role": "user", "content": "q"}]);
    let budget = json!({"model": "m", "max_tokens": 20000, "messages": msgs,
        "thinking": {"type": "enabled", "budget_tokens": 10000}});
    // Off by default: non-reasoning models reject the field.
    assert!(encode(budget.clone(), false)
        .get("reasoning_effort")
        .is_none());
    assert_eq!(encode(budget, true)["reasoning_effort"], "high");
    // Claude Code's adaptive thinking, with and without an explicit effort.
    let adaptive = json!({"model": "m", "max_tokens": 64, "messages": msgs,
        "thinking": {"type": "adaptive"}});
    assert_eq!(encode(adaptive.clone(), true)["reasoning_effort"], "medium");
    let mut low = adaptive.clone();
    low["output_config"] = json!({"effort": "low"});
    assert_eq!(encode(low, true)["reasoning_effort"], "low");
    // Effort alone counts too; `max` is OpenAI's `high`; an unknown effort falls back to
    // the thinking setting.
    let effort = |e: &str| {
        json!({"model": "m", "max_tokens": 64, "messages": msgs,
        "output_config": {"effort": e}})
    };
    assert_eq!(encode(effort("max"), true)["reasoning_effort"], "high");
    assert_eq!(encode(effort("xhigh"), true)["reasoning_effort"], "high");
    // Claude Code's `--effort xhigh` thinking: adaptive with a `display` option. Still
    // adaptive thinking for OpenAI (it was not recognised: no reasoning_effort at all), and
    // written back as it came for Anthropic.
    let mut shown = effort("xhigh");
    shown["thinking"] = json!({"type": "adaptive", "display": "updates"});
    assert_eq!(encode(shown.clone(), true)["reasoning_effort"], "high");
    shown["output_config"] = json!({});
    assert_eq!(encode(shown.clone(), true)["reasoning_effort"], "medium");
    let canon = weir_anthropic::decode_request(shown.to_string().as_bytes()).unwrap();
    let back: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(back["thinking"], shown["thinking"]);
    assert!(encode(effort("max"), false)
        .get("reasoning_effort")
        .is_none());
    assert!(encode(effort("extreme"), true)
        .get("reasoning_effort")
        .is_none());
    let mut odd = adaptive;
    odd["output_config"] = json!({"effort": "extreme"});
    assert_eq!(encode(odd, true)["reasoning_effort"], "medium");
    // `output_config` itself is Anthropic's and never reaches an OpenAI upstream.
    assert!(encode(effort("low"), true).get("output_config").is_none());
}

/// An empty `content` beside tool calls (or of a filtered answer) is no text block:
/// Anthropic refuses empty text blocks when the client sends the turn back.
#[test]
fn an_empty_openai_content_is_no_empty_text_block() {
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]
    }));
    assert_json(
        &out["content"],
        &json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]),
    );
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "content_filter",
            "message": {"role": "assistant", "content": ""}}]
    }));
    assert_json(&out["content"], &json!([]));
    // Whitespace alone (models write "\n\n" before tool calls) is no text block either,
    // whole or streamed.
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "\n\n", "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]
    }));
    assert_eq!(out["content"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["content"][0]["type"], "tool_use");
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":"\n"}"#, "null"),
        chunk(r#"{"content":"\n"}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let texts = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                weir_model::StreamEvent::BlockStart {
                    block: weir_model::ContentBlock::Text(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(texts, 0, "{events:?}");
    // Whitespace then text: the text keeps it.
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":"\n"}"#, "null"),
        chunk(r#"{"content":"Hi"}"#, "null"),
        chunk("{}", "\"stop\""),
    ]);
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            weir_model::StreamEvent::BlockDelta {
                delta: weir_model::Delta::Text(t),
                ..
            } => Some(t.as_str().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "\nHi");
}

#[test]
fn openai_refusals_reach_anthropic_clients_as_text_with_a_refusal_stop() {
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    }));
    assert_json(
        &out["content"],
        &json!([{"type": "text", "text": "I can't help with that."}]),
    );
    assert_eq!(out["stop_reason"], "refusal");
    // A plain answer is untouched.
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Sure.", "refusal": null}}]
    }));
    assert_eq!(out["stop_reason"], "end_turn");

    // Streamed: the refusal's pieces are text, and the stop is a refusal.
    let head = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":"#;
    let body = format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{\"refusal\":\"I can't\"}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{\"refusal\":\" help.\"}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: [DONE]\n\n"
    );
    let out = o_stream_to_a(&body);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""text":"I can't""#), "{text}");
    assert!(text.contains(r#""stop_reason":"refusal""#), "{text}");
}

/// The canonical events of an OpenAI stream made of these chunk bodies.
fn openai_stream_events(chunks: &[String]) -> Vec<weir_model::StreamEvent> {
    let mut dec = weir_openai::StreamDecoder::new();
    let mut events = Vec::new();
    for c in chunks {
        events.extend(dec.decode(weir_sse::Event::new(c.as_str())).unwrap().events);
    }
    events.extend(dec.decode(weir_sse::Event::new("[DONE]")).unwrap().events);
    events
}

/// A chunk carrying one fragment of the tool call at `index`: its id and name with the
/// first (`first`), then arguments.
fn frag(index: u32, first: Option<(&str, &str)>, args: &str) -> String {
    let args = serde_json::to_string(args).unwrap();
    let call = match first {
        Some((id, name)) => format!(
            r#"{{"index":{index},"id":"{id}","type":"function","function":{{"name":"{name}","arguments":{args}}}}}"#
        ),
        None => format!(r#"{{"index":{index},"function":{{"arguments":{args}}}}}"#),
    };
    chunk(&format!(r#"{{"tool_calls":[{call}]}}"#), "null")
}

/// A Chat Completions stream chunk of one choice with this `delta` and `finish_reason`.
fn chunk(delta: &str, finish: &str) -> String {
    format!(
        r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
    )
}

/// Each tool call's (id, name, joined arguments), in block order, and whether every delta
/// went to the open block.
fn tool_calls_of(events: &[weir_model::StreamEvent]) -> (Vec<(String, String, String)>, bool) {
    use weir_model::{ContentBlock, Delta, StreamEvent};
    let mut calls: Vec<(u32, String, String, String)> = Vec::new();
    let mut open = None;
    let mut contiguous = true;
    for e in events {
        match e {
            StreamEvent::BlockStart {
                index,
                block: ContentBlock::ToolUse(t),
            } => {
                calls.push((*index, t.id.clone(), t.name.clone(), String::new()));
                open = Some(*index);
            }
            StreamEvent::BlockStart { index, .. } => open = Some(*index),
            StreamEvent::BlockDelta {
                index,
                delta: Delta::InputJson(j),
            } => {
                contiguous &= open == Some(*index);
                if let Some(c) = calls.iter_mut().find(|c| c.0 == *index) {
                    c.3.push_str(&j.as_str());
                }
            }
            StreamEvent::BlockStop { .. } => open = None,
            _ => {}
        }
    }
    (
        calls.into_iter().map(|c| (c.1, c.2, c.3)).collect(),
        contiguous,
    )
}

#[test]
fn tool_calls_without_index_or_with_a_late_name_are_all_kept() {
    // Ollama: several complete calls in one chunk, without `index`.
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},{"id":"call_b","type":"function","function":{"name":"g","arguments":"{\"y\":2}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous);
    assert_eq!(
        calls,
        [
            ("call_a".into(), "f".into(), r#"{"x":1}"#.into()),
            ("call_b".into(), "g".into(), r#"{"y":2}"#.into())
        ]
    );
    // The id first, the name in a later fragment: the block opens once the name is known,
    // with the arguments that came before it.
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_c","type":"function","function":{"arguments":"{\"q\""}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"name":"search","arguments":":\"w\"}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous);
    assert_eq!(
        calls,
        [("call_c".into(), "search".into(), r#"{"q":"w"}"#.into())]
    );
    // A name that never comes: the call is still delivered (nameless), not lost.
    let events = openai_stream_events(&[
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_d","function":{"arguments":"{}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, _) = tool_calls_of(&events);
    assert_eq!(calls, [("call_d".into(), String::new(), "{}".into())]);
}

/// Servers that number every parallel call 0 (Ollama's OpenAI API, SGLang, LiteLLM's
/// ollama_chat): a new id with a name at an index another call holds is a new call, its
/// fragments without an id follow it; a new id without a name continues the call.
#[test]
fn parallel_tool_calls_that_all_say_index_0_are_all_kept() {
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_B","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_B2","function":{"arguments":"\"CET\"}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous);
    assert_eq!(
        calls,
        [
            (
                "call_A".into(),
                "get_weather".into(),
                r#"{"city":"Paris"}"#.into()
            ),
            ("call_B".into(), "get_time".into(), r#"{"tz":"CET"}"#.into())
        ]
    );
    // Each call's id alone first, its name and arguments after.
    let events = openai_stream_events(&[
        chunk(r#"{"tool_calls":[{"index":0,"id":"call_a"}]}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}"#,
            "null",
        ),
        chunk(r#"{"tool_calls":[{"index":0,"id":"call_b"}]}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"index":0,"function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous);
    assert_eq!(
        calls,
        [
            (
                "call_a".into(),
                "get_weather".into(),
                r#"{"city":"Paris"}"#.into()
            ),
            ("call_b".into(), "get_time".into(), r#"{"tz":"CET"}"#.into())
        ]
    );
    // Empty ids: the calls are told apart by name once the first is whole, and get ids
    // of their own.
    let events = openai_stream_events(&[
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"","function":{"name":"f","arguments":"{}"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"","function":{"name":"g","arguments":"{}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, _) = tool_calls_of(&events);
    let names: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, ["f", "g"]);
    assert!(calls.iter().all(|c| !c.0.is_empty()), "{calls:?}");
    assert_ne!(calls[0].0, calls[1].0);
}

/// Servers that send each call in its own chunks with neither `index` nor `id`: a
/// fragment naming a tool after the last call's arguments are whole starts a new call; a
/// name repeated on a fragment of a call still coming does not.
#[test]
fn tool_calls_with_neither_index_nor_id_are_told_apart_by_name() {
    let names_and_args = |events: &[weir_model::StreamEvent]| {
        let (calls, contiguous) = tool_calls_of(events);
        assert!(contiguous);
        calls
            .into_iter()
            .map(|(_, name, args)| (name, args))
            .collect::<Vec<(String, String)>>()
    };
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        chunk(
            r#"{"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{\"x\":"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"function":{"arguments":"1}"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"type":"function","function":{"name":"g","arguments":"{}"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{\"x\":2}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    assert_eq!(
        names_and_args(&events),
        [
            ("f".into(), r#"{"x":1}"#.into()),
            ("g".into(), "{}".into()),
            ("f".into(), r#"{"x":2}"#.into())
        ]
    );
    // The name on every fragment of one call.
    let events = openai_stream_events(&[
        chunk(
            r#"{"tool_calls":[{"function":{"name":"f","arguments":"{\"x\""}}]}"#,
            "null",
        ),
        chunk(
            r#"{"tool_calls":[{"function":{"name":"f","arguments":":1}"}}]}"#,
            "null",
        ),
        chunk("{}", "\"tool_calls\""),
    ]);
    assert_eq!(names_and_args(&events), [("f".into(), r#"{"x":1}"#.into())]);
}

#[test]
fn tool_ids_too_long_for_openai_are_shortened_identically_for_call_and_result() {
    let long = format!("toolu_{}", "a".repeat(58));
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": long, "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long, "content": "r"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_short", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_short", "content": "r"}]}
        ]
    }));
    let call = out["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(call.chars().count(), 40, "{call}");
    assert!(call.starts_with("toolu_aaaa"), "{call}");
    assert_eq!(out["messages"][2]["tool_call_id"], call);
    // Ids OpenAI accepts pass unchanged.
    assert_eq!(out["messages"][3]["tool_calls"][0]["id"], "toolu_short");
    assert_eq!(out["messages"][4]["tool_call_id"], "toolu_short");
}

#[test]
fn interleaved_parallel_tool_calls_reach_anthropic_clients_one_block_at_a_time() {
    use weir_model::StreamEvent;
    // Three calls whose fragments come round-robin (as some OpenAI-compatible servers send
    // parallel calls).
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        frag(0, Some(("call_a", "f")), r#"{"x""#),
        frag(1, Some(("call_b", "g")), r#"{"y":"#),
        frag(2, Some(("call_c", "h")), ""),
        frag(0, None, r#":"}{"}"#),
        frag(1, None, "[1,"),
        frag(2, None, r#"{"z":true}"#),
        frag(1, None, "2]}"),
        chunk("{}", "\"tool_calls\""),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous, "every delta goes to the open block: {events:?}");
    assert_eq!(
        calls,
        [
            ("call_a".into(), "f".into(), r#"{"x":"}{"}"#.into()),
            ("call_b".into(), "g".into(), r#"{"y":[1,2]}"#.into()),
            ("call_c".into(), "h".into(), r#"{"z":true}"#.into()),
        ]
    );
    let stops = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::BlockStop { .. }))
        .count();
    assert_eq!(stops, 3, "{events:?}");
    // OpenAI's own order (each call whole before the next starts) still streams each call
    // as it comes: the second opens before the choice ends.
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        frag(0, Some(("call_a", "f")), r#"{"x":"#),
        frag(0, None, "1}"),
        frag(1, Some(("call_b", "g")), r#"{"y""#),
    ]);
    let (calls, contiguous) = tool_calls_of(&events);
    assert!(contiguous);
    assert_eq!(calls.len(), 2, "{events:?}");
    assert_eq!(calls[1].2, r#"{"y""#);
}

#[test]
fn text_or_reasoning_amid_a_tool_call_waits_until_its_arguments_are_whole() {
    use weir_model::{Delta, StreamEvent};
    for amid in [r#"{"content":"hmm"}"#, r#"{"reasoning_content":"hm"}"#] {
        let events = openai_stream_events(&[
            chunk(r#"{"role":"assistant","content":null}"#, "null"),
            frag(0, Some(("call_a", "f")), r#"{"a":"#),
            frag(1, Some(("call_b", "g")), r#"{"b":"#),
            chunk(amid, "null"),
            frag(0, None, "1}"),
            chunk(r#"{"content":" more"}"#, "null"),
            frag(1, None, "2}"),
            chunk("{}", "\"tool_calls\""),
        ]);
        let (calls, contiguous) = tool_calls_of(&events);
        assert!(contiguous, "{amid}: {events:?}");
        assert_eq!(
            calls,
            [
                ("call_a".into(), "f".into(), r#"{"a":1}"#.into()),
                ("call_b".into(), "g".into(), r#"{"b":2}"#.into()),
            ],
            "{amid}"
        );
        // Every start has its stop, and every delta goes to an open block.
        let mut open = None;
        let mut text = String::new();
        for e in &events {
            match e {
                StreamEvent::BlockStart { index, .. } => {
                    assert!(open.is_none(), "{events:?}");
                    open = Some(*index);
                }
                StreamEvent::BlockDelta { index, delta } => {
                    assert_eq!(open, Some(*index), "{events:?}");
                    match delta {
                        Delta::Text(t) | Delta::Thinking(t) => text.push_str(&t.as_str()),
                        _ => {}
                    }
                }
                StreamEvent::BlockStop { index } => {
                    assert_eq!(open.take(), Some(*index), "{events:?}");
                }
                _ => {}
            }
        }
        assert!(open.is_none());
        assert!(text.ends_with(" more"), "nothing is lost: {text}");
    }
}

#[test]
fn openai_tool_calls_without_id_type_or_string_arguments_still_reach_anthropic() {
    let calls = json!([
        {"function": {"name": "a", "arguments": "{\"x\":1}"}},
        {"id": null, "type": "function", "function": {"name": "b", "arguments": null}},
        {"id": "call_c", "function": {"name": "c"}},
        {"id": "call_d", "type": "function", "function": {"name": "d", "arguments": {"y": 2}}},
    ]);
    let out = o_resp_to_a(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": calls.clone()}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    }));
    let blocks = out["content"].as_array().unwrap();
    let inputs: Vec<(&str, Value)> = blocks
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["input"].clone()))
        .collect();
    assert_eq!(
        inputs,
        [
            ("a", json!({"x": 1})),
            ("b", json!({})),
            ("c", json!({})),
            ("d", json!({"y": 2})),
        ]
    );
    let ids: Vec<&str> = blocks.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert!(ids[0].starts_with("call_") && ids[1].starts_with("call_") && ids[0] != ids[1]);
    assert_eq!(&ids[2..], ["call_c", "call_d"]);
    // The same calls in history, sent to Anthropic.
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_c", "content": "done"}
        ]
    }));
    let sent = out["messages"][1]["content"].as_array().unwrap();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[3]["input"], json!({"y": 2}));
    assert!(sent.iter().all(|b| b["type"] == "tool_use"));
    // OpenAI gets them back as they came.
    let req = json!({"model": "m", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [
            {"function": {"name": "a", "arguments": "{}"}}
        ]}
    ]});
    let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
    let back: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(back["messages"], req["messages"]);
}

#[test]
fn streamed_tool_arguments_stop_where_they_stop_being_a_json_object() {
    let frag = |first: bool, args: &str| {
        let args = serde_json::to_string(args).unwrap();
        let call = if first {
            format!(
                r#"{{"index":0,"id":"call_a","type":"function","function":{{"name":"f","arguments":{args}}}}}"#
            )
        } else {
            format!(r#"{{"index":0,"function":{{"arguments":{args}}}}}"#)
        };
        chunk(&format!(r#"{{"tool_calls":[{call}]}}"#), "null")
    };
    for (pieces, expected) in [
        (&[r#"{"city": "#, "Paris}"][..], r#"{"city": "#),
        (
            &[r#"{"city": "Pa"#, r#"ris"}}"#][..],
            r#"{"city": "Paris"}"#,
        ),
        (&["[1,", "2]"][..], ""),
        (&["nu", "ll"][..], ""),
        (
            &[r#"{"a":"\u00e9 \"q\"", "b": [1, {}]}"#][..],
            r#"{"a":"\u00e9 \"q\"", "b": [1, {}]}"#,
        ),
    ] {
        let mut chunks = vec![chunk(r#"{"role":"assistant","content":null}"#, "null")];
        for (i, p) in pieces.iter().enumerate() {
            chunks.push(frag(i == 0, p));
        }
        chunks.push(chunk("{}", "\"tool_calls\""));
        let (calls, contiguous) = tool_calls_of(&openai_stream_events(&chunks));
        assert!(contiguous);
        assert_eq!(calls.len(), 1, "{pieces:?}");
        let (id, name, args) = &calls[0];
        assert_eq!((id.as_str(), name.as_str()), ("call_a", "f"));
        // The arguments the client gets: the valid beginning of an object.
        assert_eq!(*args, expected, "{pieces:?}");
    }
    // Whitespace before the object is left out: the Anthropic SDKs parse the input so far
    // at each delta and fail on one that is only whitespace.
    let chunks = vec![
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        frag(true, " "),
        frag(false, "\n {\"a\""),
        frag(false, ": \"x y\" }"),
        chunk("{}", "\"tool_calls\""),
    ];
    let events = openai_stream_events(&chunks);
    let deltas: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            weir_model::StreamEvent::BlockDelta {
                delta: weir_model::Delta::InputJson(j),
                ..
            } => Some(j.as_str().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, [r#"{"a""#, r#": "x y" }"#]);
}

/// The `stop_reason` of the `message_delta` an Anthropic client gets for this OpenAI stream.
fn anthropic_stop_of(chunks: &[String]) -> Value {
    let mut body = String::new();
    for c in chunks {
        body.push_str(&format!("data: {c}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    let out = o_stream_to_a(&body);
    let delta = sse_events(&out)
        .into_iter()
        .find(|e| e.event() == Some("message_delta"))
        .expect("a message_delta");
    serde_json::from_str::<Value>(delta.data()).unwrap()["delta"]["stop_reason"].clone()
}

#[test]
fn tool_calls_without_an_id_get_a_new_one_in_every_answer() {
    // The next turn's call would otherwise repeat the last turn's id (`call_0` in both), and
    // a conversation holding two calls of one id is refused when sent to Anthropic.
    let whole = |id: Value| {
        let out = o_resp_to_a(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]
        }));
        out["content"][0]["id"].as_str().unwrap().to_owned()
    };
    for id in [json!(""), json!(null)] {
        let (a, b) = (whole(id.clone()), whole(id));
        assert!(a.starts_with("call_") && a.len() > 10, "{a}");
        assert_ne!(a, b);
    }
    let streamed = || {
        let events = openai_stream_events(&[
            chunk(
                r#"{"tool_calls":[{"index":0,"type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
                "null",
            ),
            chunk("{}", "\"tool_calls\""),
        ]);
        tool_calls_of(&events).0.remove(0).0
    };
    let (a, b) = (streamed(), streamed());
    assert!(a.starts_with("call_") && a.len() > 10, "{a}");
    assert_ne!(a, b);
}

#[test]
fn mistral_thinking_parts_become_thinking_whole_and_streamed() {
    // Mistral's reasoning models (magistral, mistral-small) give `content` as an array of
    // `thinking` and `text` parts, streamed (vercel/ai's magistral-medium recording) and
    // whole: an OpenAI client gets them as they came; an Anthropic client thinking then
    // text. (The stream failed to decode, for both clients.)
    let events = openai_stream_events(&[
        chunk(
            r#"{"role":"assistant","content":[{"type":"thinking","thinking":[{"type":"text","text":"The user is asking"}]}]}"#,
            "null",
        ),
        chunk(
            r#"{"content":[{"type":"thinking","thinking":[{"type":"text","text":" for 2+2."}]}]}"#,
            "null",
        ),
        chunk(
            r#"{"content":[{"type":"text","text":"2 + 2 = 4"}]}"#,
            "null",
        ),
        chunk(r#"{"content":""}"#, "\"stop\""),
    ]);
    use weir_model::{ContentBlock, Delta, StreamEvent};
    let mut blocks: Vec<(&str, String)> = Vec::new();
    for e in &events {
        match e {
            StreamEvent::BlockStart { block, .. } => blocks.push((
                match block {
                    ContentBlock::Thinking(_) => "thinking",
                    ContentBlock::Text(_) => "text",
                    _ => "other",
                },
                String::new(),
            )),
            StreamEvent::BlockDelta {
                delta: Delta::Text(t) | Delta::Thinking(t),
                ..
            } => blocks.last_mut().unwrap().1.push_str(&t.as_str()),
            _ => {}
        }
    }
    assert_eq!(
        blocks,
        [
            ("thinking", "The user is asking for 2+2.".to_owned()),
            ("text", "2 + 2 = 4".to_owned())
        ]
    );
    let whole = o_resp_to_a(json!({
        "id": "6f23", "object": "chat.completion", "created": 1, "model": "mistral-small-latest",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "tool_calls": null, "content": [
                {"type": "thinking", "thinking": [{"type": "text", "text": "17 times 23"}], "closed": true},
                {"type": "text", "text": "391"}]}}],
        "usage": {"prompt_tokens": 28, "completion_tokens": 94, "total_tokens": 122}
    }));
    assert_eq!(whole["content"][0]["type"], "thinking", "{whole}");
    assert_eq!(whole["content"][0]["thinking"], "17 times 23");
    assert_eq!(whole["content"][1]["text"], "391");
    assert_eq!(whole["content"].as_array().unwrap().len(), 2);
}

#[test]
fn openrouter_reasoning_details_come_back_with_the_turn() {
    // OpenRouter gives reasoning signatures (Claude) and encrypted reasoning (Gemini's
    // thought signatures) as `reasoning_details`, and needs them back in a tool loop. An
    // Anthropic client carries them as the thinking block's signature.
    let details = json!([{"type": "reasoning.text", "text": "Let me look.", "signature": "ORSIG",
        "format": "anthropic-claude-v1", "index": 0}]);
    let out = o_resp_to_a(json!({
        "id": "gen-1", "object": "chat.completion", "created": 1, "model": "anthropic/claude-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "", "reasoning": "Let me look.",
            "reasoning_details": details,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]}}]
    }));
    assert_eq!(out["content"][0]["type"], "thinking", "{out}");
    assert_eq!(out["content"][0]["thinking"], "Let me look.");
    let signature = out["content"][0]["signature"].as_str().unwrap().to_owned();
    // The turn sent back, to OpenRouter (and to a server that does not take them).
    let history = |content: Value| {
        json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}]}]})
    };
    let encode = |req: Value, preset: Option<weir_openai::Preset>| -> Value {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        let opts = preset.map(|p| p.encode_options()).unwrap_or_default();
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap()
    };
    let turn = history(out["content"].clone());
    let sent = encode(turn.clone(), Some(weir_openai::Preset::OpenRouter));
    assert_eq!(sent["messages"][1]["reasoning_details"], details, "{sent}");
    assert!(encode(turn.clone(), None)["messages"][1]
        .get("reasoning_details")
        .is_none());
    // Z.AI wants its interleaved reasoning back with the tool results, as DeepSeek does.
    let zai = encode(turn, Some(weir_openai::Preset::Zai));
    assert_eq!(
        zai["messages"][1]["reasoning_content"], "Let me look.",
        "{zai}"
    );

    // Streamed: the pieces joined, the signature last, on the thinking block.
    let events = openai_stream_events(&[
        chunk(
            r#"{"role":"assistant","reasoning":"Let me","reasoning_details":[{"type":"reasoning.text","text":"Let me","format":"anthropic-claude-v1","index":0}]}"#,
            "null",
        ),
        chunk(
            r#"{"reasoning":" look.","reasoning_details":[{"type":"reasoning.text","text":" look.","signature":null,"index":0}]}"#,
            "null",
        ),
        chunk(
            r#"{"reasoning_details":[{"type":"reasoning.text","signature":"ORSIG","index":0}]}"#,
            "null",
        ),
        chunk(r#"{"content":"Done."}"#, "\"stop\""),
    ]);
    let signatures: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            weir_model::StreamEvent::BlockDelta {
                delta: weir_model::Delta::Signature(s),
                ..
            } => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(signatures.len(), 1, "{events:?}");
    let carried: Value = serde_json::from_str(
        signatures[0]
            .strip_prefix(weir_openai::REASONING_DETAILS_SIGNATURE)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(carried, details);
    assert!(signature.starts_with(weir_openai::REASONING_DETAILS_SIGNATURE));

    // Encrypted reasoning alone (Gemini through OpenRouter), beside a tool call: a thinking
    // block of its own, after the call.
    let events = openai_stream_events(&[
        chunk(
            r#"{"role":"assistant","tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
            "null",
        ),
        chunk(
            r#"{"reasoning_details":[{"type":"reasoning.encrypted","data":"ENC","format":"google-gemini-v1","index":0}]}"#,
            "\"tool_calls\"",
        ),
    ]);
    let starts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            weir_model::StreamEvent::BlockStart { block, .. } => Some(block.type_name()),
            _ => None,
        })
        .collect();
    assert_eq!(starts, ["tool_use", "thinking"]);
    assert!(events.iter().any(|e| matches!(e,
        weir_model::StreamEvent::BlockDelta { delta: weir_model::Delta::Signature(s), .. }
            if s.contains("\"data\":\"ENC\""))));
    let block_types = |events: &[weir_model::StreamEvent]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                weir_model::StreamEvent::BlockStart { block, .. } => {
                    Some(block.type_name().to_owned())
                }
                _ => None,
            })
            .collect()
    };
    // Before any content: the thinking block comes first, as in a whole answer.
    let events = openai_stream_events(&[
        chunk(
            r#"{"role":"assistant","reasoning_details":[{"type":"reasoning.encrypted","data":"ENC","index":0}]}"#,
            "null",
        ),
        chunk(r#"{"content":"Hi."}"#, "\"stop\""),
    ]);
    assert_eq!(block_types(&events), ["thinking", "text"]);
    // After the text of a turn without tool calls: not needed back, and no thinking block
    // after the text (Claude Code reads the last block as the answer).
    let events = openai_stream_events(&[
        chunk(r#"{"role":"assistant","content":"Hi."}"#, "null"),
        chunk(
            r#"{"reasoning_details":[{"type":"reasoning.encrypted","data":"ENC","index":0}]}"#,
            "\"stop\"",
        ),
    ]);
    assert_eq!(block_types(&events), ["text"]);
    // A signature that came in a block of its own joins its text on the way back.
    let split = |items: Value| {
        json!({"type": "thinking", "thinking": "",
            "signature": format!("{}{items}", weir_openai::REASONING_DETAILS_SIGNATURE)})
    };
    let turn = history(json!([
        split(json!([{"type": "reasoning.text", "text": "Let me look.", "index": 0}])),
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
        split(json!([{"type": "reasoning.text", "signature": "ORSIG", "index": 0}]))
    ]));
    let sent = encode(turn, Some(weir_openai::Preset::OpenRouter));
    assert_eq!(
        sent["messages"][1]["reasoning_details"],
        json!([{"type": "reasoning.text", "text": "Let me look.", "signature": "ORSIG", "index": 0}])
    );
}

#[test]
fn another_upstreams_state_carried_in_thinking_is_not_sent_to_anthropic() {
    // A Claude Code conversation that OpenRouter (or Gemini) served a turn of, then sent
    // to Anthropic (a failover chain): the carried state is no Anthropic signature, and
    // Anthropic refuses the whole request for it. Left out; thinking goes off for the
    // request, as Anthropic demands thinking before the calls of a tool turn.
    let carried = format!(
        "{}[{{\"type\":\"reasoning.encrypted\",\"data\":\"ENC\"}}]",
        weir_openai::REASONING_DETAILS_SIGNATURE
    );
    let req = json!({"model": "m", "max_tokens": 2000, "thinking": {"type": "adaptive"},
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "", "signature": carried},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}]}]});
    let encode = |req: &Value| -> Value {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        serde_json::from_slice(
            &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
        )
        .unwrap()
    };
    let out = encode(&req);
    assert_eq!(
        out["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]),
        "{out}"
    );
    assert!(out.get("thinking").is_none(), "{out}");
    // Tool results followed by more user text still continue that turn.
    let mut more = req.clone();
    more["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": "and then?"}));
    assert!(encode(&more).get("thinking").is_none());
    // Only the tool turn the request continues needs its thinking: an earlier turn
    // another upstream served leaves thinking on.
    let mut later = req.clone();
    later["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": "Done."}),
        json!({"role": "user", "content": "next"}),
    ]);
    let out = encode(&later);
    assert_eq!(out["thinking"], json!({"type": "adaptive"}), "{out}");
    assert_eq!(
        out["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}])
    );
    // Anthropic's own signatures pass as they came, and thinking stays on.
    let mut own = req.clone();
    own["messages"][1]["content"][0]["signature"] = json!("EqQBCkYIBRgCKkA");
    let out = encode(&own);
    assert_eq!(out["messages"][1], own["messages"][1]);
    assert_eq!(out["thinking"], json!({"type": "adaptive"}));
}

#[test]
fn system_turns_can_go_as_user_text_for_strict_chat_templates() {
    // Claude Code puts a system message after its first user turn; vLLM's Gemma and
    // Mistral templates take one leading system message and alternating turns.
    let req = json!({"model": "m", "max_tokens": 100, "system": "You are Claude Code.",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "<env>linux</env>"},
            {"role": "assistant", "content": "Hello."},
            {"role": "system", "content": "<reminder/>"},
            {"role": "user", "content": "go"}]});
    let encode = |on: bool| -> Value {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        let opts = weir_openai::EncodeOptions {
            system_as_user: on,
            ..Default::default()
        };
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap()
    };
    let roles = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect()
    };
    // By default as they came (OpenAI takes system messages anywhere).
    assert_eq!(
        roles(&encode(false)),
        ["system", "user", "system", "assistant", "system", "user"]
    );
    let out = encode(true);
    assert_eq!(
        roles(&out),
        ["system", "user", "assistant", "user"],
        "{out}"
    );
    assert_eq!(
        out["messages"][1]["content"],
        json!([{"type": "text", "text": "hi"}, {"type": "text", "text": "<env>linux</env>"}])
    );
    assert_eq!(
        out["messages"][3]["content"],
        json!([{"type": "text", "text": "<reminder/>"}, {"type": "text", "text": "go"}])
    );
}

#[test]
fn tool_calls_ending_in_a_plain_stop_are_a_tool_use_stop() {
    // Ollama, vLLM and Gemini's OpenAI endpoint finish tool calls with `stop`.
    let whole = o_resp_to_a(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }));
    assert_eq!(whole["stop_reason"], "tool_use");
    let call = chunk(
        r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
        "null",
    );
    let stop = chunk("{}", r#""stop""#);
    assert_eq!(anthropic_stop_of(&[call.clone(), stop.clone()]), "tool_use");
    // Text alone still ends the turn.
    let text = chunk(r#"{"content":"hi"}"#, "null");
    assert_eq!(anthropic_stop_of(&[text.clone(), stop]), "end_turn");
    // `[DONE]` with no finish reason at all: the turn ended as it was.
    assert_eq!(anthropic_stop_of(&[text]), "end_turn");
    assert_eq!(anthropic_stop_of(&[call]), "tool_use");
}

#[test]
fn deprecated_openai_function_calling_is_refused_not_dropped() {
    for extra in [
        json!({"functions": [{"name": "f", "parameters": {"type": "object"}}]}),
        json!({"function_call": "auto"}),
    ] {
        let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let err = try_o_to_a(req.clone()).unwrap_err();
        assert!(
            matches!(&err, WireError::Unsupported(m) if m.contains("use `tools`")),
            "{err}"
        );
        // OpenAI to OpenAI: passed on as it came.
        let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(
            &weir_openai::encode_request(&canon, &Default::default()).unwrap(),
        )
        .unwrap();
        for (k, v) in extra.as_object().unwrap() {
            assert_eq!(&out[k], v);
        }
    }
}

/// Tool results nest content blocks, each parsed again from its raw slice: deep nesting
/// is refused with a 400-kind error, never a stack overflow that takes the process down.
#[test]
fn deeply_nested_tool_results_are_refused_not_a_stack_overflow() {
    let nest = |levels: usize, reorder: bool| {
        let open = if reorder {
            r#"[{"tool_use_id":"t","type":"tool_result","content":"#
        } else {
            r#"[{"type":"tool_result","tool_use_id":"t","content":"#
        };
        let mut body =
            String::from(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"#);
        for _ in 0..levels {
            body.push_str(open);
        }
        body.push_str(r#""x""#);
        for _ in 0..levels {
            body.push_str("}]");
        }
        body.push_str("}]}");
        body
    };
    for reorder in [false, true] {
        // Real nesting (a tool result holding blocks) decodes.
        assert!(weir_anthropic::decode_request(nest(3, reorder).as_bytes()).is_ok());
        let err = weir_anthropic::decode_request(nest(30_000, reorder).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested more than"), "{err}");
        // And the thread is fine afterwards.
        assert!(weir_anthropic::decode_request(nest(3, reorder).as_bytes()).is_ok());
    }
}

#[test]
fn what_another_dialect_cannot_honour_is_refused_not_dropped_and_defaults_pass() {
    let with = |base: &Value, extra: &Value| {
        let mut req = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        req
    };
    let o = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (extra, says) in [
        (json!({"n": 2}), "`n` other than 1"),
        (json!({"n": 0}), "`n` other than 1"),
        (json!({"logprobs": true}), "`logprobs`"),
        (json!({"top_logprobs": 3}), "`top_logprobs`"),
        (json!({"modalities": ["text", "audio"]}), "audio output"),
        (
            json!({"audio": {"voice": "alloy", "format": "wav"}}),
            "audio output",
        ),
    ] {
        let err = try_o_to_a(with(&o, &extra)).unwrap_err();
        assert!(
            matches!(&err, WireError::Unsupported(m) if m.contains(says) && m.contains("Anthropic")),
            "{extra}: {err}"
        );
        // OpenAI to OpenAI: passed on as it came.
        let canon = weir_openai::decode_request(with(&o, &extra).to_string().as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(
            &weir_openai::encode_request(&canon, &Default::default()).unwrap(),
        )
        .unwrap();
        for (k, v) in extra.as_object().unwrap() {
            assert_eq!(&out[k], v);
        }
    }
    // What asks for nothing more than the default goes through.
    for extra in [
        json!({"n": 1}),
        json!({"n": null}),
        json!({"logprobs": false, "top_logprobs": 0}),
        json!({"modalities": ["text"]}),
        json!({"audio": null, "web_search_options": null}),
    ] {
        assert!(try_o_to_a(with(&o, &extra)).is_ok(), "{extra}");
    }

    // An Anthropic client's MCP servers and container, to an OpenAI-compatible upstream.
    let a =
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let a_to_o = |req: Value| {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes())?;
        weir_openai::encode_request(&canon, &Default::default())
    };
    for (extra, says) in [
        (
            json!({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}]}),
            "`mcp_servers`",
        ),
        (json!({"container": "container_011"}), "`container`"),
    ] {
        let err = a_to_o(with(&a, &extra)).unwrap_err();
        assert!(
            matches!(&err, WireError::Unsupported(m) if m.contains(says) && m.contains("OpenAI-compatible")),
            "{extra}: {err}"
        );
    }
    assert!(a_to_o(with(&a, &json!({"mcp_servers": []}))).is_ok());
}

#[test]
fn a_translated_request_left_empty_or_ending_on_the_assistant_is_refused_for_openai() {
    let to_o = |req: Value| {
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        weir_openai::encode_request(&canon, &Default::default())
    };
    for last in [
        json!({"role": "user"}),
        json!({"role": "user", "content": []}),
    ] {
        let err = to_o(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            last
        ]}))
        .unwrap_err();
        assert!(err.to_string().contains("messages[2] is empty"), "{err}");
    }
    let err = to_o(
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": []}]}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no message with content"), "{err}");
    // A prefill the client meant (its last message the assistant's) goes.
    assert!(to_o(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}
    ]}))
    .is_ok());
}

#[test]
fn a_top_level_field_of_the_wrong_type_is_named_in_the_error() {
    for (body, says) in [
        (
            json!({"model": "m", "max_tokens": "100", "messages": []}),
            "`max_tokens`: invalid type",
        ),
        (json!({"model": "m", "stop": 5, "messages": []}), "`stop`: "),
        (
            json!({"model": "m", "temperature": [1], "messages": []}),
            "`temperature`: ",
        ),
        (
            json!({"model": "m", "tool_choice": 2, "messages": []}),
            "`tool_choice`: expected a string or an object",
        ),
    ] {
        let err = weir_openai::decode_request(body.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
    let err = weir_openai::decode_request(br#"{"model":"m","stop":5,"messages":[]}"#).unwrap_err();
    assert!(
        err.to_string().contains("a string or an array of strings"),
        "{err}"
    );
    for (body, says) in [
        (
            json!({"model": "m", "max_tokens": "100", "messages": []}),
            "`max_tokens`: invalid type",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "top_k": -1, "messages": []}),
            "`top_k`: invalid value",
        ),
    ] {
        let err = weir_anthropic::decode_request(body.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
    // A nested error keeps its own path, not the field's name twice.
    let err = weir_openai::decode_request(
        br#"{"model":"m","tools":[{"type":"function","function":{}}],"messages":[]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(": tools[0]: missing field `name`"),
        "{err}"
    );
}

#[test]
fn function_calls_to_google_s_openai_endpoint_carry_a_thought_signature() {
    assert!(weir_openai::is_google_openai(
        "https://generativelanguage.googleapis.com/v1beta/openai/"
    ));
    assert!(weir_openai::is_google_openai(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi"
    ));
    assert!(!weir_openai::is_google_openai("https://api.openai.com/v1"));
    let history = json!({"model": "gemini-3-pro-preview", "max_tokens": 100, "messages": [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.rs"}]}
    ]});
    let google = weir_openai::EncodeOptions {
        placeholder_thought_signature: true,
        ..Default::default()
    };
    let canon = weir_anthropic::decode_request(history.to_string().as_bytes()).unwrap();
    let o: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &google).unwrap()).unwrap();
    assert_eq!(
        o["messages"][1]["tool_calls"][0]["extra_content"],
        json!({"google": {"thought_signature": "skip_thought_signature_validator"}})
    );
    let plain: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert!(plain["messages"][1]["tool_calls"][0]
        .get("extra_content")
        .is_none());
    // An OpenAI client that kept Gemini's own signature sends it as it is.
    let own = json!({"google": {"thought_signature": "CiQBjz1rX0"}});
    let o_history = json!({"model": "gemini-3-pro-preview", "messages": [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}, "extra_content": own},
            {"id": "c2", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.rs"},
        {"role": "tool", "tool_call_id": "c2", "content": "b.rs"}
    ]});
    let canon = weir_openai::decode_request(o_history.to_string().as_bytes()).unwrap();
    let o: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &google).unwrap()).unwrap();
    let calls = &o["messages"][1]["tool_calls"];
    assert_eq!(calls[0]["extra_content"], own);
    assert_eq!(
        calls[1]["extra_content"]["google"]["thought_signature"],
        "skip_thought_signature_validator"
    );
}

#[test]
fn sampling_settings_are_left_out_for_openai_reasoning_models_in_translation() {
    let to_o = |model: &str, thinking: bool, opts: &weir_openai::EncodeOptions| -> Value {
        let mut req = json!({"model": model, "max_tokens": 2000, "temperature": 0.2, "top_p": 0.9,
            "messages": [{"role": "user", "content": "hi"}]});
        if thinking {
            req["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
        }
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&weir_openai::encode_request(&canon, opts).unwrap()).unwrap()
    };
    let plain = weir_openai::EncodeOptions::default();
    let reasoning = weir_openai::EncodeOptions {
        reasoning_effort_from_thinking: true,
        ..Default::default()
    };
    for model in [
        "gpt-5",
        "gpt-5-mini",
        "o3",
        "openai/o4-mini",
        "gpt-5.1-codex",
    ] {
        let o = to_o(model, false, &plain);
        assert!(
            o.get("temperature").is_none() && o.get("top_p").is_none(),
            "{model}: {o}"
        );
    }
    // GPT-5.1 on takes them unless it reasons.
    let o = to_o("gpt-5.1", false, &reasoning);
    assert_eq!(
        (o["temperature"].clone(), o["top_p"].clone()),
        (json!(0.2), json!(0.9))
    );
    let o = to_o("gpt-5.1", true, &reasoning);
    assert_eq!(o["reasoning_effort"], "low");
    assert!(o.get("temperature").is_none(), "{o}");
    // OpenRouter's `reasoning` object is reasoning too.
    let o = to_o(
        "openai/gpt-5.1",
        true,
        &weir_openai::Preset::OpenRouter.encode_options(),
    );
    assert!(o.get("reasoning").is_some(), "{o}");
    assert!(
        o.get("temperature").is_none() && o.get("top_p").is_none(),
        "{o}"
    );
    for model in [
        "gpt-4o",
        "gpt-5-chat-latest",
        "llama-3.3-70b",
        "openrouter/auto",
    ] {
        assert_eq!(
            to_o(model, false, &plain)["temperature"],
            json!(0.2),
            "{model}"
        );
    }
    // An OpenAI client's go as it sent them.
    let canon = weir_openai::decode_request(
        json!({"model": "o3", "temperature": 0.2, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let o: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &plain).unwrap()).unwrap();
    assert_eq!(o["temperature"], json!(0.2));
}

#[test]
fn caching_markers_reach_openrouter_on_the_parts_they_mark() {
    let cc = json!({"type": "ephemeral"});
    let req = json!({
        "model": "anthropic/claude-sonnet-4.5", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": "Project rules.", "cache_control": cc}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": cc}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.rs", "cache_control": cc}]}
        ]
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let encode = |opts: &weir_openai::EncodeOptions| -> Value {
        serde_json::from_slice(&weir_openai::encode_request(&canon, opts).unwrap()).unwrap()
    };
    let o = encode(&weir_openai::Preset::OpenRouter.encode_options());
    let m = &o["messages"];
    assert_json(
        &m[0],
        &json!({"role": "system", "content": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project rules.", "cache_control": cc}
        ]}),
    );
    assert_json(
        &m[1]["content"],
        &json!([{"type": "text", "text": "list files", "cache_control": cc}]),
    );
    assert_eq!(m[3]["role"], "tool");
    assert_json(
        &m[3]["content"],
        &json!([{"type": "text", "text": "a.rs", "cache_control": cc}]),
    );
    // Other OpenAI-compatible services get plain strings, no markers.
    let plain = encode(&Default::default());
    assert!(!plain.to_string().contains("cache_control"), "{plain}");
    assert_eq!(
        plain["messages"][0]["content"],
        "You are Claude Code.\n\nProject rules."
    );
    assert_eq!(plain["messages"][3]["content"], "a.rs");
}

#[test]
fn an_openai_function_tool_with_more_fields_is_a_function_for_other_dialects() {
    // A relay's `cache_control` on the tool object (Portkey's and others' OpenAI-format
    // caching), and a field no one knows.
    let tool = |extra: Value| {
        let mut t = weather_tool_o();
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    };
    let req = |t: Value| json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [t]});
    let cached = tool(json!({"cache_control": {"type": "ephemeral"}}));
    let out = o_to_a(req(cached.clone()));
    assert_eq!(out["tools"][0]["name"], "get_weather");
    assert_eq!(
        out["tools"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(
        out["tools"][0]["input_schema"],
        weather_tool_a()["input_schema"]
    );
    let odd = o_to_a(req(tool(json!({"x_extra": 1}))));
    assert_eq!(odd["tools"][0]["name"], "get_weather");
    assert!(odd["tools"][0].get("x_extra").is_none());
    // The same dialect gets the tool as it came.
    let canon = weir_openai::decode_request(req(cached.clone()).to_string().as_bytes()).unwrap();
    let o: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(o["tools"][0], cached);
    // A tool that is no function is still refused, by its name.
    let err = try_o_to_a(req(json!({"type": "custom", "custom": {"name": "grep"}}))).unwrap_err();
    assert!(err.to_string().contains("`grep`"), "{err}");
}

#[test]
fn web_search_options_become_anthropic_s_web_search_and_its_citations_url_annotations() {
    let req = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "news?"}],
        "tools": [weather_tool_o()],
        "web_search_options": {
            "search_context_size": "high",
            "user_location": {"type": "approximate", "approximate": {"city": "Lyon", "country": "FR", "timezone": null}}
        }
    });
    let out = o_to_a(req.clone());
    assert_json(
        &out["tools"][1],
        &json!({"type": "web_search_20250305", "name": "web_search", "user_location": {"type": "approximate", "city": "Lyon", "country": "FR"}}),
    );
    assert_eq!(out["tools"][0]["name"], "get_weather");
    // Alone, and with nothing in it.
    let mut bare = json!({"model": "m", "messages": [{"role": "user", "content": "news?"}], "web_search_options": {}});
    assert_json(
        &o_to_a(bare.clone())["tools"],
        &json!([{"type": "web_search_20250305", "name": "web_search"}]),
    );
    // An upstream without Anthropic's web search (Bedrock) still refuses it.
    let canon = weir_openai::decode_request(bare.to_string().as_bytes()).unwrap();
    let opts = weir_anthropic::EncodeOptions {
        web_search: false,
        ..Default::default()
    };
    let err = weir_anthropic::encode_request(&canon, &opts).unwrap_err();
    assert!(err.to_string().contains("`web_search_options`"), "{err}");
    // Malformed options, and a function that takes the tool's name.
    for (opts, says) in [
        (json!("on"), "must be an object"),
        (
            json!({"search_context_size": "huge"}),
            "search_context_size",
        ),
        (json!({"user_location": {"type": "exact"}}), "approximate"),
        (
            json!({"user_location": {"type": "approximate", "approximate": {"city": 7}}}),
            "city",
        ),
    ] {
        bare["web_search_options"] = opts.clone();
        let err = try_o_to_a(bare.clone()).unwrap_err();
        assert!(
            matches!(&err, WireError::Malformed(m) if m.contains(says)),
            "{opts}: {err}"
        );
    }
    bare["web_search_options"] = json!({});
    bare["tools"] =
        json!([{"type": "function", "function": {"name": "web_search", "parameters": {}}}]);
    let err = try_o_to_a(bare).unwrap_err();
    assert!(err.to_string().contains("rename the function"), "{err}");

    // The answer: the search blocks are not text, the cited blocks' pages become
    // `url_citation` annotations over their text, in characters of the joined content.
    let cite = |url: &str| json!({"type": "web_search_result_location", "url": url, "title": "T", "cited_text": "x", "encrypted_index": "E"});
    let resp = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result", "url": "https://a.example", "title": "T", "encrypted_content": "E"}]},
            {"type": "text", "text": "Héllo. "},
            {"type": "text", "text": "Rain 😀 today", "citations": [cite("https://a.example"), cite("https://b.example")]},
            {"type": "text", "text": "."}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}
    });
    let o = a_resp_to_o(resp);
    let msg = &o["choices"][0]["message"];
    assert_eq!(msg["content"], "Héllo. Rain 😀 today.");
    assert_eq!(o["choices"][0]["finish_reason"], "stop");
    assert!(msg.get("tool_calls").is_none(), "{msg}");
    let span = |url: &str| json!({"type": "url_citation", "url_citation": {"start_index": 7, "end_index": 19, "url": url, "title": "T"}});
    assert_json(
        &msg["annotations"],
        &json!([span("https://a.example"), span("https://b.example")]),
    );
    let text: Vec<char> = msg["content"].as_str().unwrap().chars().collect();
    assert_eq!(text[7..19].iter().collect::<String>(), "Rain 😀 today");
    // Without citations, no annotations.
    let plain = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1}
    }));
    assert!(plain["choices"][0]["message"].get("annotations").is_none());

    // Streamed: the annotations come in a chunk of their own when the cited block stops.
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"query\":\"news\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Héllo. "}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": "", "citations": []}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "citations_delta", "citation": cite("https://a.example")}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "Rain 😀"}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": " today"}}),
        json!({"type": "content_block_stop", "index": 3}),
        json!({"type": "content_block_start", "index": 4, "content_block": {"type": "text", "text": "", "citations": []}}),
        json!({"type": "content_block_delta", "index": 4, "delta": {"type": "citations_delta", "citation": cite("https://b.example")}}),
        json!({"type": "content_block_delta", "index": 4, "delta": {"type": "text_delta", "text": "."}}),
        json!({"type": "content_block_stop", "index": 4}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}}),
        json!({"type": "message_stop"}),
    ];
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>()
        // (Escaped on the wire, as some upstreams write it: counted as one character.)
        .replace('é', "\\u00e9");
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: false,
        created: None,
    });
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    let (mut content, mut notes, mut finish, mut chunks) = (String::new(), Vec::new(), None, 0);
    for ev in sse_events(&out) {
        if ev.data() == "[DONE]" {
            continue;
        }
        let c: Value = serde_json::from_str(ev.data()).unwrap();
        let choice = &c["choices"][0];
        assert!(choice["delta"].get("tool_calls").is_none(), "{c}");
        content.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        if let Some(a) = choice["delta"]["annotations"].as_array() {
            notes.extend(a.iter().cloned());
            chunks += 1;
            assert!(finish.is_none(), "annotations before the finish");
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(content, "Héllo. Rain 😀 today.");
    // All in one chunk, as OpenAI sends them (its SDK's stream helper cannot merge two).
    assert_eq!(chunks, 1);
    let last = json!({"type": "url_citation", "url_citation": {"start_index": 19, "end_index": 20, "url": "https://b.example", "title": "T"}});
    assert_json(
        &Value::Array(notes),
        &json!([span("https://a.example"), last]),
    );
    assert_eq!(finish.as_deref(), Some("stop"));
}

#[test]
fn requests_that_would_reach_anthropic_empty_or_ending_on_the_assistant_are_refused() {
    for (messages, says) in [
        (
            json!([{"role": "user", "content": ""}]),
            "no message with content",
        ),
        (
            json!([{"role": "system", "content": "only a system prompt"}]),
            "no message with content",
        ),
        (
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": ""}]),
            "messages[2] is empty",
        ),
    ] {
        let err = try_o_to_a(json!({"model": "m", "messages": messages})).unwrap_err();
        assert!(
            matches!(&err, WireError::Unsupported(m) if m.contains(says)),
            "{messages}: {err}"
        );
    }
    // An OpenAI client's own prefill (ending on an assistant message) is still one.
    let out = o_to_a(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure:"}
    ]}));
    assert_eq!(out["messages"][1]["role"], "assistant");
}

#[test]
fn answers_without_an_id_get_one_in_the_client_s_form() {
    // Bedrock Converse gives none, nor Gemini without a responseId.
    let canon = weir_model::ChatResponse {
        content: vec![weir_model::ContentBlock::Text(weir_model::TextBlock::new(
            "hi",
        ))],
        stop_reason: Some(weir_model::StopReason::EndTurn),
        ..Default::default()
    };
    let a: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap();
    let o: Value = serde_json::from_slice(&weir_openai::encode_response(&canon).unwrap()).unwrap();
    let (a, o) = (a["id"].as_str().unwrap(), o["id"].as_str().unwrap());
    assert!(a.starts_with("msg_") && a.len() > 20, "{a}");
    assert!(o.starts_with("chatcmpl-") && o.len() > 25, "{o}");
    let again: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap();
    assert_ne!(again["id"], a);
    // Streams too.
    let frame = Frame::from_events(vec![weir_model::StreamEvent::MessageStart {
        id: String::new(),
        model: "m".into(),
        usage: Default::default(),
    }]);
    let mut out = Vec::new();
    weir_anthropic::StreamEncoder::new()
        .encode(&frame, &mut out)
        .unwrap();
    assert!(String::from_utf8(out).unwrap().contains(r#""id":"msg_"#));
    let mut out = Vec::new();
    weir_openai::StreamEncoder::new(Default::default())
        .encode(&frame, &mut out)
        .unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains(r#""id":"chatcmpl-"#));
}

#[test]
fn stop_reasons_of_another_dialect_reach_clients_as_their_own() {
    // A reason only one dialect has never reaches the other verbatim.
    let canon = weir_model::ChatResponse {
        stop_reason: Some(weir_model::StopReason::Other("guardrail_thing".into())),
        ..Default::default()
    };
    let o: Value = serde_json::from_slice(&weir_openai::encode_response(&canon).unwrap()).unwrap();
    assert_eq!(o["choices"][0]["finish_reason"], "stop");
    let a: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap();
    assert_eq!(a["stop_reason"], "end_turn");
}

#[test]
fn content_carried_by_a_block_start_reaches_openai_clients() {
    // Anthropic starts blocks empty; a compatible service may not.
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Pre\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"fix\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_S\",\"name\":\"f\",\"input\":{\"x\":5}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_T\",\"name\":\"g\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"y\\\":1}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut enc = weir_openai::StreamEncoder::new(Default::default());
    let mut out = Vec::new();
    for ev in sse_events(body.as_bytes()) {
        enc.encode(&dec.decode(ev).unwrap(), &mut out).unwrap();
    }
    let mut text = String::new();
    let mut args: Vec<String> = Vec::new();
    for e in sse_events(&out) {
        if e.data() == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(e.data()).unwrap();
        let delta = &v["choices"][0]["delta"];
        if let Some(t) = delta["content"].as_str() {
            text.push_str(t);
        }
        for c in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap() as usize;
            if args.len() <= i {
                args.resize(i + 1, String::new());
            }
            args[i].push_str(c["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(text, "Prefix");
    assert_eq!(args, [r#"{"x":5}"#, r#"{"y":1}"#]);
}

#[test]
fn tool_calls_or_a_missing_reason_never_reach_a_client_as_a_plain_or_null_stop() {
    // An Anthropic-compatible service ending tool calls with end_turn.
    let o = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 1}
    }));
    assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
    let o = a_resp_to_o(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": null,
        "usage": {"input_tokens": 1, "output_tokens": 1}
    }));
    assert_eq!(o["choices"][0]["finish_reason"], "stop");
    // An OpenAI-compatible service with no finish reason.
    let a = o_resp_to_a(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": null}]
    }));
    assert_eq!(a["stop_reason"], "tool_use");
    let a = o_resp_to_a(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": null}]
    }));
    assert_eq!(a["stop_reason"], "end_turn");
}

#[test]
fn tool_choice_none_carries_no_parallel_flag_to_anthropic() {
    // Anthropic's `none` takes only `type`; it answers 400 to `disable_parallel_tool_use`.
    let out = o_to_a(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [weather_tool_o()], "tool_choice": "none", "parallel_tool_calls": false
    }));
    assert_json(&out["tool_choice"], &json!({"type": "none"}));
    let out = o_to_a(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [weather_tool_o()], "tool_choice": "auto", "parallel_tool_calls": false
    }));
    assert_json(
        &out["tool_choice"],
        &json!({"type": "auto", "disable_parallel_tool_use": true}),
    );
}

#[test]
fn temperature_and_top_p_together_keep_only_the_temperature_for_anthropic() {
    // Current Claude models refuse the pair; OpenAI clients often send both.
    let out = o_to_a(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "top_p": 0.8
    }));
    assert_eq!(out["temperature"], json!(0.2));
    assert!(out.get("top_p").is_none(), "{out}");
    let out = o_to_a(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0.8
    }));
    assert_eq!(out["top_p"], json!(0.8));
    // An Anthropic client's own choice goes as it came.
    let req = json!({
        "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "top_p": 0.8
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(out["top_p"], json!(0.8));
}

#[test]
fn sampling_parameters_are_left_out_for_claude_models_that_refuse_them() {
    // Claude 4.7 on (Opus 4.7 and 4.8, Claude 5, Fable) answers 400 "`temperature` is
    // deprecated for this model" to temperature, top_p or top_k; OpenAI clients often
    // send a temperature.
    for model in [
        "claude-opus-4-7",
        "claude-sonnet-5",
        "claude-opus-5-20261001",
        "claude-fable-5-1",
    ] {
        let out = o_to_a(json!({
            "model": model, "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2, "top_p": 0.8
        }));
        for k in ["temperature", "top_p"] {
            assert!(out.get(k).is_none(), "{model}: {out}");
        }
        // Thinking asked for by effort is no longer given up for the temperature.
        let out = o_to_a(json!({
            "model": model, "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0, "reasoning_effort": "high"
        }));
        assert_eq!(out["thinking"], json!({"type": "adaptive"}), "{model}");
        assert_eq!(out["output_config"]["effort"], json!("high"), "{model}");
        assert!(out.get("temperature").is_none(), "{model}: {out}");
    }
    // Earlier models keep them (and the effort gives way to the temperature).
    for model in [
        "claude-sonnet-4-5",
        "claude-opus-4-6",
        "claude-3-5-haiku-latest",
    ] {
        let out = o_to_a(json!({
            "model": model, "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2, "reasoning_effort": "high"
        }));
        assert_eq!(out["temperature"], json!(0.2), "{model}");
        assert!(out.get("thinking").is_none(), "{model}: {out}");
    }
    // An Anthropic client's own choice goes as it came, for Anthropic's own error.
    let req = json!({
        "model": "claude-opus-4-7", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "top_k": 5
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(out["temperature"], json!(0.2));
    assert_eq!(out["top_k"], json!(5));
}

#[test]
fn text_content_goes_to_deepseek_as_one_string() {
    // DeepSeek answers 400 to content arrays; Claude Code sends several text blocks per
    // turn, with cache_control.
    let req = json!({
        "model": "m", "max_tokens": 10,
        "system": [{"type": "text", "text": "S1", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
            ]}
        ]
    });
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let opts = weir_openai::Preset::DeepSeek.encode_options();
    let out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
    assert_json(
        &out["messages"][0],
        &json!({"role": "system", "content": "S1"}),
    );
    assert_json(
        &out["messages"][1],
        &json!({"role": "user", "content": "a\nb"}),
    );
    assert_json(
        &out["messages"][2],
        &json!({"role": "assistant", "content": "c"}),
    );
    // A text document goes as text: joined too.
    let doc = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "DOC"}},
        {"type": "text", "text": "summarize"}
    ]}]});
    let canon = weir_anthropic::decode_request(doc.to_string().as_bytes()).unwrap();
    let doc_out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
    assert_eq!(doc_out["messages"][0]["content"], "DOC\nsummarize");
    // Content that is not all text keeps its parts (DeepSeek takes no images anyway).
    assert!(out["messages"][3]["content"].is_array(), "{out}");
    // Elsewhere, a user's several parts stay parts; one text part with cache_control (not
    // sent when translating) is a string, and so is a system prompt of several blocks
    // (Groq takes a system message's content only as a string): one text, as hoisted.
    let mut req = req;
    req["system"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "text", "text": "S2"}));
    let out = a_to_o(req);
    assert_json(
        &out["messages"][0],
        &json!({"role": "system", "content": "S1\n\nS2"}),
    );
    assert_json(
        &out["messages"][1]["content"],
        &json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
    );
}

#[test]
fn mistral_gets_no_user_field_and_an_assistant_between_a_tool_result_and_a_user_turn() {
    // Mistral refuses unknown fields (422 extra_forbidden: Claude Code's metadata.user_id
    // became `user`) and a user message right after a tool message (400: here a tool
    // result with an image, which goes in a user message after the tool message).
    let req = json!({
        "model": "m", "max_tokens": 10, "metadata": {"user_id": "u1"},
        "tools": [weather_tool_a()],
        "messages": [
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "sunny"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                ]}
            ]}
        ]
    });
    let mut canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let removed = weir_openai::Preset::Mistral.adapt(&mut canon);
    assert!(removed.contains(&"user"), "{removed:?}");
    let opts = weir_openai::Preset::Mistral.encode_options();
    let out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
    assert!(out.get("user").is_none(), "{out}");
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    assert_json(
        &out["messages"][3],
        &json!({"role": "assistant", "content": ""}),
    );
    // Elsewhere no bridge is added, and `user` stays.
    let out = a_to_o(req);
    assert_eq!(out["messages"].as_array().unwrap().len(), 4, "{out}");
    assert_eq!(out["user"], "u1");
    // An OpenAI client's seed is Mistral's random_seed.
    let mut canon = weir_openai::decode_request(
        br#"{"model":"m","seed":7,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    weir_openai::Preset::Mistral.adapt(&mut canon);
    let out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
    assert_eq!((out.get("seed"), &out["random_seed"]), (None, &json!(7)));
}

#[test]
fn output_limits_over_the_upstream_s_maximum_are_lowered() {
    // Claude Code asks for 32000-64000 output tokens: DeepSeek's V4 models (which
    // deepseek-chat and deepseek-reasoner now name) take up to 384K, so it goes as it is.
    let req = |model: &str, max: u32| {
        weir_anthropic::decode_request(
            json!({"model": model, "max_tokens": max, "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    let deepseek = |model: &str, max: u32| {
        let mut canon = req(model, max);
        weir_openai::Preset::DeepSeek.adapt(&mut canon);
        let opts = weir_openai::Preset::DeepSeek.encode_options();
        let out: Value =
            serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
        out["max_tokens"].clone()
    };
    assert_eq!(deepseek("deepseek-chat", 32000), json!(32000));
    assert_eq!(deepseek("deepseek-chat", 4000), json!(4000));
    assert_eq!(deepseek("deepseek-v4-pro", 100_000), json!(100_000));
    // A provider's max_output_tokens, for any OpenAI-dialect upstream.
    let opts = weir_openai::EncodeOptions {
        max_output_tokens: Some(16384),
        ..Default::default()
    };
    for (asked, sent) in [(64000, 16384), (1000, 1000)] {
        let out: Value =
            serde_json::from_slice(&weir_openai::encode_request(&req("m", asked), &opts).unwrap())
                .unwrap();
        assert_eq!(out["max_completion_tokens"], json!(sent));
    }
}

#[test]
fn a_long_user_id_reaches_openai_as_its_digest() {
    // OpenAI and Azure answer 400 to a `user` over 64 characters; Claude Code's
    // metadata.user_id is a JSON blob of about 150.
    let long = format!(
        r#"{{"device_id":"{}","account_uuid":"","session_id":"5f0c0a4e-0000-4000-8000-000000000000"}}"#,
        "a".repeat(64)
    );
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10, "metadata": {"user_id": long},
        "messages": [{"role": "user", "content": "hi"}]
    }));
    let user = out["user"].as_str().unwrap();
    assert_eq!(user.len(), 64);
    assert!(user.bytes().all(|b| b.is_ascii_hexdigit()), "{user}");
    let again = a_to_o(json!({
        "model": "m", "max_tokens": 10, "metadata": {"user_id": long},
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_eq!(again["user"], out["user"], "one stable id per user");
    // A short one goes as it is.
    let out = a_to_o(json!({
        "model": "m", "max_tokens": 10, "metadata": {"user_id": "u1"},
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_eq!(out["user"], "u1");
}

/// A tool of another kind than a function (OpenAI's `custom`) is refused by name.
#[test]
fn a_custom_tool_is_refused_by_its_name() {
    let err = try_o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}],
        "tools": [{"type": "custom", "custom": {"name": "grammar_tool", "description": "d"}}]}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tool `grammar_tool`"), "{err}");
}

// --- what Anthropic refuses in an OpenAI client's request (a feature audit) ------------

#[test]
fn whitespace_only_text_is_left_out_for_anthropic_so_a_tool_loop_continues() {
    // Claude often writes "\n\n" before its tool calls; the OpenAI client sends it back.
    let out = o_to_a(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "\n\n", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "sunny"}]},
            {"role": "assistant", "content": [{"type": "text", "text": " \t"}, {"type": "text", "text": "It is sunny."}]},
            {"role": "user", "content": "and now?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": ""}]},
        ]
    }));
    assert_json(
        &out["messages"],
        &json!([
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]},
            {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2"}]},
        ]),
    );
}

#[test]
fn blank_system_text_is_left_out_for_anthropic() {
    for system in [
        json!(" "),
        json!("\n\n"),
        json!([{"type": "text", "text": " "}]),
        json!(""),
    ] {
        let out = o_to_a(json!({
            "model": "m",
            "messages": [{"role": "system", "content": system}, {"role": "developer", "content": " "}, {"role": "user", "content": "hi"}]
        }));
        assert!(out.get("system").is_none(), "{system}: {out}");
    }
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "system", "content": "A"}, {"role": "system", "content": " "}, {"role": "user", "content": "hi"}]
    }));
    assert_eq!(out["system"], "A");
}

#[test]
fn a_function_schema_without_a_type_gets_type_object_for_anthropic() {
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "ping", "parameters": {}}},
            {"type": "function", "function": {"name": "q\"uote", "parameters": {"properties": {"a\nb": {"type": "string"}}, "required": ["a\nb"]}}},
            {"type": "function", "function": {"name": "typed", "parameters": {"properties": {}, "type": "object"}}},
            {"type": "function", "function": {"name": "none"}},
        ]
    }));
    assert_json(
        &out["tools"],
        &json!([
            {"name": "ping", "input_schema": {"type": "object"}},
            {"name": "q\"uote", "input_schema": {"type": "object", "properties": {"a\nb": {"type": "string"}}, "required": ["a\nb"]}},
            {"name": "typed", "input_schema": {"properties": {}, "type": "object"}},
            {"name": "none", "input_schema": {"type": "object", "properties": {}}},
        ]),
    );
}

#[test]
fn an_openai_client_s_thinking_object_reaches_anthropic() {
    // As Anthropic's own OpenAI-compatible endpoint takes it (the SDK's extra_body).
    let out = o_to_a(json!({
        "model": "m",
        "max_tokens": 1000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [{"role": "user", "content": "think"}]
    }));
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
    // The output limit is raised above the budget, as for reasoning_effort.
    assert!(out["max_tokens"].as_u64().unwrap() > 2000, "{out}");
    let out = o_to_a(json!({
        "model": "m",
        "thinking": {"type": "adaptive"},
        "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "think"}]
    }));
    assert_eq!(out["thinking"], json!({"type": "adaptive"}));
    // Enabled with a display option: enabled with its budget.
    let out = o_to_a(json!({
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 3000, "display": "summarized"},
        "messages": [{"role": "user", "content": "think"}]
    }));
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 3000})
    );
    // DeepSeek's form (no budget) is nothing Anthropic takes: not sent.
    let out = o_to_a(json!({
        "model": "m",
        "thinking": {"type": "enabled"},
        "messages": [{"role": "user", "content": "think"}]
    }));
    assert!(out.get("thinking").is_none(), "{out}");
    // A tool turn in the history without Anthropic's signed thinking before its calls:
    // off, or Anthropic would refuse the request.
    let out = o_to_a(json!({
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ]
    }));
    assert!(out.get("thinking").is_none(), "{out}");
}

#[test]
fn an_openai_file_of_text_goes_as_a_text_document_and_other_types_are_refused() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": format!("data:text/plain;base64,{}", b64("héllo\nworld")), "filename": "f.txt"}},
            {"type": "file", "file": {"file_data": format!("data:text/csv;base64,{}", b64("a,b\n1,2")), "filename": "t.csv"}},
            {"type": "file", "file": {"file_data": format!("data:application/pdf;base64,{}", b64("%PDF-1.4")), "filename": "d.pdf"}},
            {"type": "text", "text": "summarize"}
        ]}]
    }));
    let content = &out["messages"][0]["content"];
    assert_eq!(
        content[0]["source"],
        json!({"type": "text", "media_type": "text/plain", "data": "héllo\nworld"})
    );
    assert_eq!(content[1]["source"]["data"], "a,b\n1,2");
    // Unpadded base64 is read too.
    let out = o_to_a(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk", "filename": "f.txt"}}
        ]}]
    }));
    assert_eq!(out["messages"][0]["content"][0]["source"]["data"], "hi");
    assert_eq!(content[2]["source"]["type"], "base64");
    assert_eq!(content[2]["source"]["media_type"], "application/pdf");
    for (media, data) in [
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b64("PK"),
        ),
        ("text/plain", "%%%not base64".to_owned()),
    ] {
        let e = try_o_to_a(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_data": format!("data:{media};base64,{data}"), "filename": "x"}}
            ]}]
        }))
        .unwrap_err();
        assert!(matches!(e, WireError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains(media), "{e}");
    }
}

/// Z.AI turns GLM's thinking on and off with its own `thinking` field: an Anthropic
/// client's enabled or disabled thinking goes as it; adaptive leaves it to the model.
#[test]
fn zai_gets_an_anthropic_clients_thinking_as_its_thinking_type() {
    let opts = weir_openai::Preset::Zai.encode_options();
    let thinking = |t: Value| {
        let req = json!({"model": "glm-4.6", "max_tokens": 2000, "thinking": t,
            "messages": [{"role": "user", "content": "hi"}]});
        let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
        let out: Value =
            serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
        out.get("thinking").cloned()
    };
    assert_eq!(
        thinking(json!({"type": "enabled", "budget_tokens": 1024})),
        Some(json!({"type": "enabled"}))
    );
    assert_eq!(
        thinking(json!({"type": "disabled"})),
        Some(json!({"type": "disabled"}))
    );
    assert_eq!(thinking(json!({"type": "adaptive"})), None);
    // Other services never get the field.
    let req = json!({"model": "m", "max_tokens": 10, "thinking": {"type": "disabled"},
        "messages": [{"role": "user", "content": "hi"}]});
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert!(out.get("thinking").is_none(), "{out}");
}

/// Data kept as a URL (an Anthropic `url` source holding a data URL) goes to Anthropic as
/// the base64 source it takes: its `url` sources are fetched over http(s).
#[test]
fn a_data_url_kept_as_a_url_source_goes_to_anthropic_as_base64() {
    let req = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    ]}]});
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_json(
        &out["messages"][0]["content"],
        &json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        ]),
    );
}

/// A target's cap (`ChatRequest::output_cap`, set by the router from `max_output_tokens`)
/// holds where an encoder raises the limit to make room beside a thinking budget: an
/// OpenAI client's own `thinking` toward Claude (Converse: weir-bedrock's tests).
#[test]
fn a_targets_output_cap_holds_over_a_raise_for_thinking() {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 8192,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 32000}});
    let mut canon = weir_openai::decode_request(body.to_string().as_bytes()).unwrap();
    let raised = weir_anthropic::encode_request(&canon, &Default::default()).unwrap();
    let raised: Value = serde_json::from_slice(&raised).unwrap();
    assert_eq!(raised["max_tokens"], 36096, "without a cap: {raised}");
    canon.output_cap = Some(8192);
    let out = weir_anthropic::encode_request(&canon, &Default::default()).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["max_tokens"], 8192, "{out}");
    assert_eq!(out["thinking"]["budget_tokens"], 4096, "{out}");
    // No room for a budget: no thinking.
    canon.output_cap = Some(1000);
    let out = weir_anthropic::encode_request(&canon, &Default::default()).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["max_tokens"], 1000, "{out}");
    assert!(out.get("thinking").is_none(), "{out}");
}

#[test]
fn geminis_grounding_with_google_search_reaches_both_dialects_as_web_search() {
    // Grounding as Gemini sends it: byte offsets, `startIndex` 0 left out, a page twice.
    let text = "Héllo. Rain 😀 today. Bye.";
    let grounding = json!({
        "webSearchQueries": ["weather today"],
        "groundingChunks": [
            {"web": {"uri": "https://a.example", "title": "a.example"}},
            {"web": {"uri": "https://b.example", "title": "b.example"}}
        ],
        "groundingSupports": [
            {"segment": {"startIndex": 8, "endIndex": 24, "text": "Rain 😀 today."},
             "groundingChunkIndices": [0, 1]}
        ]
    });
    let whole = json!({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP", "groundingMetadata": grounding}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"
    });
    let canon = weir_gemini::decode_response(whole.to_string().as_bytes()).unwrap();

    // An Anthropic client gets Claude's shape: the search, its results, cited text.
    let a: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&canon).unwrap()).unwrap();
    let content = a["content"].as_array().unwrap();
    let types: Vec<_> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "server_tool_use",
            "web_search_tool_result",
            "text",
            "text",
            "text"
        ]
    );
    assert_eq!(content[0]["input"], json!({"query": "weather today"}));
    assert_eq!(content[1]["tool_use_id"], content[0]["id"]);
    assert_eq!(content[1]["content"][1]["url"], "https://b.example");
    assert_eq!(content[3]["text"], "Rain 😀 today.");
    assert_eq!(content[3]["citations"][0]["url"], "https://a.example");
    assert_eq!(
        content[3]["citations"][1]["type"],
        "web_search_result_location"
    );
    assert!(content[2].get("citations").is_none());
    assert_eq!(a["usage"]["server_tool_use"]["web_search_requests"], 1);

    // An OpenAI client gets the text whole and url_citation annotations over the cited
    // characters.
    let o: Value = serde_json::from_slice(&weir_openai::encode_response(&canon).unwrap()).unwrap();
    let msg = &o["choices"][0]["message"];
    assert_eq!(msg["content"], text);
    let span = |url: &str, title: &str| json!({"type": "url_citation", "url_citation": {"start_index": 7, "end_index": 20, "url": url, "title": title}});
    assert_json(
        &msg["annotations"],
        &json!([
            span("https://a.example", "a.example"),
            span("https://b.example", "b.example")
        ]),
    );
    let chars: Vec<char> = text.chars().collect();
    assert_eq!(chars[7..20].iter().collect::<String>(), "Rain 😀 today.");

    // Streamed: the grounding comes with the last chunk.
    let first = json!({"candidates": [{"content": {"parts": [{"text": "Héllo. Rain 😀"}], "role": "model"}}], "responseId": "r2"});
    let last = json!({
        "candidates": [{"content": {"parts": [{"text": " today. Bye."}], "role": "model"},
                        "finishReason": "STOP", "groundingMetadata": grounding}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}, "responseId": "r2"
    });
    let body = format!("data: {first}\r\n\r\ndata: {last}\r\n\r\n");
    let frames = || {
        let mut dec = weir_gemini::StreamDecoder::new();
        let mut frames: Vec<Frame> = sse_events(body.as_bytes())
            .iter()
            .map(|e| dec.decode(e).unwrap())
            .collect();
        frames.extend(dec.finish().unwrap());
        frames
    };
    // Anthropic client: the citations inside the text block, then the search blocks.
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    for f in frames() {
        enc.encode(&f, &mut out).unwrap();
    }
    let got = weir_testkit::AnthropicEvents::of(&out);
    let events = &got.0;
    let citations = got.citations();
    assert_eq!(
        citations,
        [(0, "https://a.example"), (0, "https://b.example")]
    );
    let starts = got.block_starts();
    assert_eq!(
        starts,
        ["text", "server_tool_use", "web_search_tool_result"]
    );
    let query: String = events
        .iter()
        .filter(|e| e["index"] == 1 && e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(query, r#"{"query":"weather today"}"#);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["server_tool_use"]["web_search_requests"], 1);

    // OpenAI client: one annotations chunk before the finish, over the block's text.
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: false,
        created: None,
    });
    let mut out = Vec::new();
    for f in frames() {
        enc.encode(&f, &mut out).unwrap();
    }
    let (mut content, mut notes) = (String::new(), Vec::new());
    for ev in sse_events(&out) {
        if ev.data() == "[DONE]" {
            continue;
        }
        let c: Value = serde_json::from_str(ev.data()).unwrap();
        let delta = &c["choices"][0]["delta"];
        assert!(delta.get("tool_calls").is_none(), "{c}");
        content.push_str(delta["content"].as_str().unwrap_or_default());
        notes.extend(
            delta["annotations"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    assert_eq!(content, text);
    let urls: Vec<_> = notes
        .iter()
        .map(|n| {
            let u = &n["url_citation"];
            (
                u["start_index"].as_u64().unwrap(),
                u["end_index"].as_u64().unwrap(),
                u["url"].as_str().unwrap(),
            )
        })
        .collect();
    let n = text.chars().count() as u64;
    assert_eq!(
        urls,
        [(0, n, "https://a.example"), (0, n, "https://b.example")]
    );
}

#[test]
fn claude_codes_tool_search_results_reach_other_dialects_as_text() {
    // Claude Code's ToolSearch answers with references to the tools it loaded; the tools
    // are declared to other dialects anyway, so the reference is told as text.
    let req = json!({
        "model": "m", "max_tokens": 100,
        "tools": [
            {"name": "ToolSearch", "description": "find tools", "input_schema": {"type": "object"}},
            {"name": "WebSearch", "description": "search", "input_schema": {"type": "object"}, "defer_loading": true}
        ],
        "messages": [
            {"role": "user", "content": "search the web"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "select:WebSearch"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "tool_reference", "tool_name": "WebSearch"}]}]}
        ]
    });
    let o = a_to_o(req.clone());
    let tool_msg = o["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert_eq!(tool_msg["tool_call_id"], "toolu_1");
    let text = serde_json::to_string(&tool_msg["content"]).unwrap();
    assert!(text.contains("Tool loaded: WebSearch"), "{tool_msg}");
    assert!(!text.contains("tool_reference"), "{tool_msg}");
    assert_eq!(o["tools"].as_array().unwrap().len(), 2);
    // To Gemini, likewise.
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let g: Value =
        serde_json::from_slice(&weir_gemini::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    let response = &g["contents"][2]["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "ToolSearch");
    assert_eq!(response["response"]["output"], "Tool loaded: WebSearch");
    // An Anthropic upstream gets it as it came.
    let a: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        a["messages"][2]["content"][0]["content"][0]["type"],
        "tool_reference"
    );
}

#[test]
fn openrouters_web_search_pages_reach_anthropic_clients_as_a_search_before_the_text() {
    // As OpenRouter streams its web search (recorded in 2026): each page in a chunk of its
    // own before the text, with no span, and the searches in the usage.
    let head = r#"{"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":"#;
    let page = |url: &str| {
        format!(
            r#"data: {head}{{"content":"","role":"assistant","annotations":[{{"type":"url_citation","url_citation":{{"url":"{url}","title":"T","start_index":0,"end_index":0,"content":"page"}}}}]}},"finish_reason":null}}]}}"#
        )
    };
    let body = format!(
        ": OPENROUTER PROCESSING\n\n{}\n\n{}\n\n\
         data: {head}{{\"content\":\"The URL is x.\"}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{\"content\":\"\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13,\"server_tool_use_details\":{{\"web_search_requests\":1}}}}}}\n\n\
         data: [DONE]\n\n",
        page("https://a.example"),
        page("https://b.example")
    );
    let out = o_stream_to_a(&body);
    let got = weir_testkit::AnthropicEvents::of(&out);
    let events = &got.0;
    let starts = got.block_starts();
    assert_eq!(
        starts,
        ["server_tool_use", "web_search_tool_result", "text"]
    );
    let result = events
        .iter()
        .find(|e| e["content_block"]["type"] == "web_search_tool_result")
        .unwrap();
    assert_eq!(
        result["content_block"]["tool_use_id"],
        "srvtoolu_weir_gen1_0"
    );
    assert_eq!(
        result["content_block"]["content"][1]["url"],
        "https://b.example"
    );
    let cited = got.citations();
    assert_eq!(cited, [(2, "https://a.example"), (2, "https://b.example")]);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["server_tool_use"]["web_search_requests"], 1);
}

#[test]
fn an_openai_clients_schema_constraints_reach_claude_as_descriptions() {
    // Pydantic's `Field(ge=1, le=5)` and `max_length`: OpenAI's strict mode takes them,
    // Claude's structured outputs and strict tools answer 400; they go in the description.
    let schema = json!({"type": "object", "properties": {
        "summary": {"type": "string", "maxLength": 200},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5}
    }, "required": ["summary", "stars"], "additionalProperties": false});
    let out = o_to_a(
        json!({"model": "m", "messages": [{"role": "user", "content": "Rate it."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "rate", "strict": true, "parameters": schema}},
                  {"type": "function", "function": {"name": "loose", "parameters": schema}}]}),
    );
    let fitted = json!({"type": "object", "properties": {
        "summary": {"type": "string", "description": "(maxLength: 200)"},
        "stars": {"type": "integer", "description": "(minimum: 1, maximum: 5)"}
    }, "required": ["summary", "stars"], "additionalProperties": false});
    assert_json(&out["output_config"]["format"]["schema"], &fitted);
    assert_json(&out["tools"][0]["input_schema"], &fitted);
    // Property order kept: Claude writes them in it.
    let props: Vec<_> = out["output_config"]["format"]["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(props, ["summary", "stars"]);
    // A tool that is not strict keeps its schema as it is.
    assert_json(&out["tools"][1]["input_schema"], &schema);
}

#[test]
fn an_openai_clients_audio_reaches_gemini_inline() {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe this."},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    ]}]});
    let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
    let g: Value =
        serde_json::from_slice(&weir_gemini::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_json(
        &g["contents"][0]["parts"][1],
        &json!({"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}),
    );
    // A format Gemini has no type for, or a malformed part: a 400 saying so.
    for (audio, says) in [
        (json!({"data": "AA==", "format": "pcm16"}), "pcm16"),
        (json!({"format": "wav"}), "input_audio.data"),
    ] {
        let mut bad = req.clone();
        bad["messages"][0]["content"][1]["input_audio"] = audio;
        let canon = weir_openai::decode_request(bad.to_string().as_bytes()).unwrap();
        let err = weir_gemini::encode_request(&canon, &Default::default()).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn searches_weir_told_for_another_upstream_are_left_out_towards_anthropic() {
    // An Anthropic client sends back a Gemini or OpenRouter search Weir told in Claude's
    // shape: Anthropic would refuse its empty encrypted content and index; its text stays.
    let told = "srvtoolu_weir_gen1_0";
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Who won?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": told, "name": "web_search", "input": {"query": ""}},
            {"type": "web_search_tool_result", "tool_use_id": told, "content": [
                {"type": "web_search_result", "url": "https://a.example", "title": "A", "encrypted_content": "", "page_age": null}]},
            {"type": "text", "text": "Spain won.", "citations": [
                {"type": "web_search_result_location", "url": "https://a.example", "title": "A", "encrypted_index": "", "cited_text": "Spain won."}]},
            // Claude's own search is kept as it came.
            {"type": "server_tool_use", "id": "srvtoolu_01ABC", "name": "web_search", "input": {"query": "score"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01ABC", "content": [
                {"type": "web_search_result", "url": "https://b.example", "title": "B", "encrypted_content": "Eq0K", "page_age": null}]},
            {"type": "text", "text": "2-1.", "citations": [
                {"type": "web_search_result_location", "url": "https://b.example", "title": "B", "encrypted_index": "Eo8", "cited_text": "2-1"}]}
        ]},
        {"role": "user", "content": "Thanks."}
    ]});
    let canon = weir_anthropic::decode_request(req.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(
        &weir_anthropic::encode_request(&canon, &Default::default()).unwrap(),
    )
    .unwrap();
    let content = out["messages"][1]["content"].as_array().unwrap();
    let types: Vec<_> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["text", "server_tool_use", "web_search_tool_result", "text"]
    );
    assert_json(&content[0], &json!({"type": "text", "text": "Spain won."}));
    assert_eq!(content[3]["citations"][0]["encrypted_index"], "Eo8");
}
