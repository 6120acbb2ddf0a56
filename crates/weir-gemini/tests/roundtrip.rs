//! Tool loops through real client dialects: a client request, Gemini's answer with
//! function calls, the answer as the client sees it, and the client's next request back to
//! Gemini. The ids Gemini never sent must let the function responses find their names, and
//! the signatures must come back where Gemini put them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};
use weir_gemini::{decode_response, encode_request, EncodeOptions, StreamDecoder};
use weir_model::Dialect;
use weir_upstream::{BodyDecoder, SseBody};

fn gemini_body(req: &weir_model::ChatRequest) -> Value {
    serde_json::from_slice(&encode_request(req, &EncodeOptions::default()).unwrap()).unwrap()
}

fn anthropic_request(messages: Value) -> Value {
    json!({
        "model": "gemini-3-pro-preview",
        "max_tokens": 4096,
        "stream": false,
        "thinking": {"type": "adaptive"},
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "tools": [
            {"name": "get_weather", "description": "Weather in a city.",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"], "additionalProperties": false}},
            {"name": "get_time", "description": "Time in a city.",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
        ],
        "messages": messages
    })
}

/// Gemini's answer: a thought, two parallel calls (the first signed, as Gemini 3 does).
const ANSWER: &str = r#"{
  "candidates": [{"content": {"role": "model", "parts": [
      {"text": "Need both cities.", "thought": true},
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Q0FMTF9TSUc="},
      {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}}
  ]}, "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 10, "thoughtsTokenCount": 20},
  "modelVersion": "gemini-3-pro-preview",
  "responseId": "QUVVadTSNJ6_qtsPvN7J8Q0"
}"#;

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the request that follows the answer: names found by id, the signature back on
/// the first call, the second call unsigned (as Gemini sent it).
fn check_next_turn(body: &Value, ids: &[String]) {
    let model = &body["contents"][1];
    assert_eq!(model["role"], "model");
    let calls: Vec<&Value> = model["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("functionCall").is_some())
        .collect();
    assert_eq!(calls.len(), 2, "{model}");
    assert_eq!(calls[0]["functionCall"]["id"], ids[0].as_str());
    assert_eq!(calls[0]["thoughtSignature"], "Q0FMTF9TSUc=");
    assert!(calls[1].get("thoughtSignature").is_none(), "{}", calls[1]);
    let user = &body["contents"][2];
    assert_eq!(
        user["parts"],
        json!([
            {"functionResponse": {"id": ids[0], "name": "get_weather", "response": {"output": "18C"}}},
            {"functionResponse": {"id": ids[1], "name": "get_time", "response": {"output": "09:30"}}}
        ])
    );
}

#[test]
fn anthropic_client_tool_loop() {
    let first =
        anthropic_request(json!([{"role": "user", "content": "Weather and time in Paris?"}]));
    let req = weir_anthropic::decode_request(first.to_string().as_bytes()).unwrap();
    assert_eq!(req.origin, Some(Dialect::Anthropic));
    let body = gemini_body(&req);
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        body["generationConfig"],
        // Adaptive thinking is Gemini 3's own dynamic thinking: no level, no budget.
        json!({"maxOutputTokens": 4096, "thinkingConfig": {"includeThoughts": true}})
    );
    assert!(body["tools"][0]["functionDeclarations"][0]["parameters"]
        .get("additionalProperties")
        .is_none());

    // Gemini answers; the client sees an Anthropic message.
    let resp = decode_response(ANSWER.as_bytes()).unwrap();
    let shown: Value =
        serde_json::from_slice(&weir_anthropic::encode_response(&resp).unwrap()).unwrap();
    assert_eq!(shown["stop_reason"], "tool_use");
    let content = shown["content"].as_array().unwrap().clone();
    let ids: Vec<String> = content
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "toolu_gemini_QUVVadTSNJ6_qtsPvN7J8Q0_0",
            "toolu_gemini_QUVVadTSNJ6_qtsPvN7J8Q0_1"
        ]
    );
    assert!(ids.iter().all(|id| is_valid_id(id)));

    // The client runs the tools and sends the whole conversation back.
    let next = anthropic_request(json!([
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": ids[0], "content": "18C"},
            {"type": "tool_result", "tool_use_id": ids[1], "content": [{"type": "text", "text": "09:30"}]}
        ]}
    ]));
    let req = weir_anthropic::decode_request(next.to_string().as_bytes()).unwrap();
    let body = gemini_body(&req);
    check_next_turn(&body, &ids);
    // The thought summary went back as thought text, unsigned (Gemini did not sign it).
    assert_eq!(
        body["contents"][1]["parts"][0],
        json!({"text": "Need both cities.", "thought": true})
    );
}

/// The same answer streamed, through Anthropic's stream encoder, accumulated the way an
/// Anthropic SDK builds the message.
#[test]
fn anthropic_streaming_client_tool_loop() {
    let chunks = [
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "Need both", "thought": true}]}}], "responseId": "S1", "modelVersion": "gemini-3-pro-preview"}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": " cities.", "thought": true}]}}], "responseId": "S1", "modelVersion": "gemini-3-pro-preview"}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Q0FMTF9TSUc="}, {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}}]}}], "responseId": "S1"}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 10}, "responseId": "S1"}"#,
    ];
    let mut dec = SseBody::new(StreamDecoder::new());
    let mut frames = Vec::new();
    dec.feed(&common::sse(&chunks), &mut frames).unwrap();
    dec.finish(&mut frames).unwrap();
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut sse = Vec::new();
    for f in &frames {
        enc.encode(f, &mut sse).unwrap();
    }
    // Accumulate the Anthropic stream into a message, as a client does.
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial_json: Vec<String> = Vec::new();
    let mut stop_reason = Value::Null;
    for line in String::from_utf8(sse).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let ev: Value = serde_json::from_str(data).unwrap();
        match ev["type"].as_str().unwrap() {
            "content_block_start" => {
                blocks.push(ev["content_block"].clone());
                partial_json.push(String::new());
            }
            "content_block_delta" => {
                let i = ev["index"].as_u64().unwrap() as usize;
                let d = &ev["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_owned();
                        blocks[i]["text"] = json!(t + d["text"].as_str().unwrap());
                    }
                    "thinking_delta" => {
                        let t = blocks[i]["thinking"].as_str().unwrap().to_owned();
                        blocks[i]["thinking"] = json!(t + d["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => blocks[i]["signature"] = d["signature"].clone(),
                    "input_json_delta" => {
                        partial_json[i].push_str(d["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = ev["index"].as_u64().unwrap() as usize;
                if blocks[i]["type"] == "tool_use" {
                    blocks[i]["input"] = serde_json::from_str(&partial_json[i]).unwrap();
                }
            }
            "message_delta" => stop_reason = ev["delta"]["stop_reason"].clone(),
            _ => {}
        }
    }
    assert_eq!(stop_reason, "tool_use");
    let ids: Vec<String> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["toolu_gemini_S1_0", "toolu_gemini_S1_1"]);
    let next = anthropic_request(json!([
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": blocks},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": ids[0], "content": "18C"},
            {"type": "tool_result", "tool_use_id": ids[1], "content": "09:30"}
        ]}
    ]));
    let req = weir_anthropic::decode_request(next.to_string().as_bytes()).unwrap();
    check_next_turn(&gemini_body(&req), &ids);
}

/// OpenAI clients keep no thinking, but they send every call's id back: a call Gemini
/// signed gets an id carrying its signature (`<id>__wsig<length>_<signature>`), and the
/// signature goes back on the call, the ids without it.
#[test]
fn openai_client_tool_loop() {
    let resp = decode_response(ANSWER.as_bytes()).unwrap();
    let shown: Value =
        serde_json::from_slice(&weir_openai::encode_response(&resp).unwrap()).unwrap();
    let message = shown["choices"][0]["message"].clone();
    assert_eq!(shown["choices"][0]["finish_reason"], "tool_calls");
    let calls = message["tool_calls"].as_array().unwrap().clone();
    openai_next_turn(calls);
}

/// The same through a stream: the call's first chunk carries the signed id.
#[test]
fn openai_streaming_client_tool_loop() {
    let chunks = [
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "Need both cities.", "thought": true}]}}], "responseId": "QUVVadTSNJ6_qtsPvN7J8Q0", "modelVersion": "gemini-3-pro-preview"}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Q0FMTF9TSUc="}, {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}}]}}], "responseId": "QUVVadTSNJ6_qtsPvN7J8Q0"}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 10}, "responseId": "QUVVadTSNJ6_qtsPvN7J8Q0"}"#,
    ];
    let mut dec = SseBody::new(StreamDecoder::new());
    let mut frames = Vec::new();
    dec.feed(&common::sse(&chunks), &mut frames).unwrap();
    dec.finish(&mut frames).unwrap();
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions::default());
    let mut sse = Vec::new();
    for f in &frames {
        enc.encode(f, &mut sse).unwrap();
    }
    // Accumulate the calls, as a client does.
    let mut calls: Vec<Value> = Vec::new();
    for line in String::from_utf8(sse).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ").filter(|d| *d != "[DONE]") else {
            continue;
        };
        let chunk: Value = serde_json::from_str(data).unwrap();
        for c in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = c["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push(c.clone());
                calls[i].as_object_mut().unwrap().remove("index");
            } else {
                let args = calls[i]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_owned()
                    + c["function"]["arguments"].as_str().unwrap();
                calls[i]["function"]["arguments"] = json!(args);
            }
        }
    }
    openai_next_turn(calls);
}

/// Checks an OpenAI client's calls and the Gemini request that sends them back.
fn openai_next_turn(calls: Vec<Value>) {
    let ids: Vec<String> = calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let own: Vec<String> = ids
        .iter()
        .map(|id| weir_model::content::own_call_id(id).to_owned())
        .collect();
    assert_eq!(ids[0], format!("{}__wsig12_Q0FMTF9TSUc=", own[0]));
    assert_eq!(ids[1], own[1], "the second call was not signed");
    assert!(own.iter().all(|id| is_valid_id(id)), "{own:?}");
    let next = json!({
        "model": "gemini-3-pro-preview",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": ids[0], "content": "18C"},
            {"role": "tool", "tool_call_id": ids[1], "content": "09:30"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
        ]
    });
    let req = weir_openai::decode_request(next.to_string().as_bytes()).unwrap();
    let mut body = gemini_body(&req);
    // (The system prompt's turn shifts nothing: it goes as systemInstruction.)
    check_next_turn(&body, &own);
    // An OpenAI client whose ids carry no signature (another gateway's, or signatures
    // lost) still gets the placeholder on its calls.
    let mut plain = next.clone();
    for c in plain["messages"][2]["tool_calls"].as_array_mut().unwrap() {
        let id = c["id"]
            .as_str()
            .unwrap()
            .split("__wsig")
            .next()
            .unwrap()
            .to_owned();
        c["id"] = json!(id);
    }
    plain["messages"][3]["tool_call_id"] = json!(own[0]);
    let req = weir_openai::decode_request(plain.to_string().as_bytes()).unwrap();
    body = gemini_body(&req);
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"functionCall": {"id": own[0], "name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "skip_thought_signature_validator"},
            {"functionCall": {"id": own[1], "name": "get_time", "args": {"city": "Paris"}},
             "thoughtSignature": "skip_thought_signature_validator"}
        ])
    );
}
