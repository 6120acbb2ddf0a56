//! Gemini models on Vertex against a local stand-in: generateContent and
//! streamGenerateContent with weir-gemini's codec, tool calls without ids, errors, the
//! 401 retry, countTokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use weir_model::{CallContext, ChatRequest, Delta, ErrorKind, Provider, Reply, StreamEvent};
use weir_testkit::upstream::{Behaviour, FaultyUpstream};
use weir_vertex::FnTokenSource;

const GEMINI: &str = "gemini-2.5-pro";

fn gemini_request(stream: bool) -> ChatRequest {
    let mut req = claude_request(stream);
    req.model = GEMINI.into();
    req
}

fn gemini_response() -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": "Hello!"}]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-pro",
        "responseId": "resp-1"
    })
}

#[tokio::test]
async fn gemini_generate_content() {
    let up = FaultyUpstream::start(status(200, &gemini_response())).await;
    let p = provider(
        &up,
        "us-central1",
        Arc::new(FnTokenSource::numbered("tok-")),
    );
    let out = complete(&p, gemini_request(false)).await.unwrap();
    assert_eq!(out, ChatResponseText("Hello!".into(), Some(5), Some(2)));

    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(bearer(got), Some("Bearer tok-1"));
    // Gemini's body, from weir-gemini's encoder: no model, no anthropic_version.
    let expected = weir_gemini::encode_request(
        &gemini_request(false),
        &weir_gemini::EncodeOptions {
            call_ids: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(got.body, expected);
    assert_eq!(
        got.json().unwrap(),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "generationConfig": {"maxOutputTokens": 64}
        })
    );
}

#[tokio::test]
async fn gemini_tool_calls_go_without_ids() {
    let up = FaultyUpstream::start(status(200, &gemini_response())).await;
    let p = provider(
        &up,
        "us-central1",
        Arc::new(FnTokenSource::numbered("tok-")),
    );
    let body = r#"{"model":"gemini-2.5-pro","max_tokens":64,"messages":[
        {"role":"user","content":"Weather in Paris?"},
        {"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"sunny"}]}],
        "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}"#;
    let req = weir_anthropic::decode_request(body.as_bytes()).unwrap();
    complete(&p, req).await.unwrap();
    let sent = up.requests()[0].json().unwrap();
    let call = &sent["contents"][1]["parts"][0]["functionCall"];
    let result = &sent["contents"][2]["parts"][0]["functionResponse"];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(result["name"], "get_weather");
    assert!(
        call.get("id").is_none() && result.get("id").is_none(),
        "{sent}"
    );
}

#[tokio::test]
async fn gemini_stream_generate_content() {
    let chunk = |v: Value| format!("data: {v}\r\n\r\n");
    let body = [
        chunk(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
                     "modelVersion": "gemini-2.5-pro", "responseId": "resp-2"})),
        chunk(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo!"}]},
                                      "finishReason": "STOP"}],
                     "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
                     "modelVersion": "gemini-2.5-pro", "responseId": "resp-2"})),
    ]
    .concat();
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body,
    })
    .await;
    let p = provider(
        &up,
        "us-central1",
        Arc::new(FnTokenSource::numbered("tok-")),
    );
    let Reply::Stream(mut s) = p
        .send(&gemini_request(true), CallContext::new("req-1"))
        .await
        .unwrap()
    else {
        panic!("expected a stream")
    };
    let mut events = Vec::new();
    while let Some(f) = s.next().await {
        events.extend(f.unwrap().events);
    }
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::BlockDelta {
                delta: Delta::Text(t),
                ..
            } => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello!");
    assert!(matches!(events.last(), Some(StreamEvent::MessageStop)));
    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    assert!(got.json().unwrap().get("stream").is_none());
}

#[tokio::test]
async fn gemini_errors_and_401_retry() {
    let up = FaultyUpstream::start(status(200, &gemini_response())).await;
    up.queue(vec![unauthenticated()]);
    let tokens = Arc::new(FnTokenSource::numbered("tok-"));
    let p = provider(&up, "us-central1", tokens.clone());
    complete(&p, gemini_request(false)).await.unwrap();
    assert_eq!(tokens.fetches(), 2);
    assert_eq!(bearer(&up.requests()[1]), Some("Bearer tok-2"));

    up.set(status(
        429,
        &json!([{"error": {"code": 429, "message": "Resource exhausted. Please try again later.",
                           "status": "RESOURCE_EXHAUSTED"}}]),
    ));
    let e = complete(&p, gemini_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.message, "Resource exhausted. Please try again later.");
}

#[tokio::test]
async fn gemini_token_counting() {
    let up = FaultyUpstream::start(status(
        200,
        &json!({"totalTokens": 31, "totalBillableCharacters": 80}),
    ))
    .await;
    let p = provider(
        &up,
        "us-central1",
        Arc::new(FnTokenSource::numbered("tok-")),
    );
    let body = r#"{"model":"gemini-2.5-pro","max_tokens":64,"system":"Be brief.",
        "messages":[{"role":"user","content":"Weather in Paris?"}],
        "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
        "tool_choice":{"type":"any"}}"#;
    let req = weir_anthropic::decode_request(body.as_bytes()).unwrap();
    let full = weir_gemini::encode_request(&req, &weir_gemini::EncodeOptions::default()).unwrap();
    let full: Value = serde_json::from_slice(&full).unwrap();
    assert!(
        full.get("toolConfig").is_some(),
        "the request has a toolConfig to strip"
    );

    let n = p
        .count_tokens(req, CallContext::new("req-1"))
        .await
        .unwrap();
    assert_eq!(n, Some(31));
    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:countTokens"
    );
    let sent = got.json().unwrap();
    let mut keys: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["contents", "generationConfig", "systemInstruction", "tools"]
    );
    assert_eq!(sent["contents"], full["contents"]);
    assert_eq!(sent["tools"], full["tools"]);
}

fn embed_request(body: Value) -> weir_model::EmbedRequest {
    weir_model::EmbedRequest::decode(body.to_string().as_bytes()).unwrap()
}

/// Google's embedding models through `:predict`: `gemini-embedding-001` one text a call,
/// others several; `task_type` and `dimensions` carried; OpenAI's list back with Vertex's
/// token counts; Claude models are passed over.
#[tokio::test]
async fn embeddings_through_predict() {
    let one = json!({"predictions": [{"embeddings": {"values": [0.5, -0.5],
        "statistics": {"token_count": 3.0, "truncated": false}}}]});
    let up = FaultyUpstream::start(status(200, &one)).await;
    let p = provider(
        &up,
        "us-central1",
        Arc::new(FnTokenSource::numbered("tok-")),
    );
    assert!(p.serves_embeddings());
    let req = embed_request(json!({
        "model": "gemini-embedding-001", "input": ["a", "b"], "dimensions": 2,
        "task_type": "RETRIEVAL_QUERY",
    }));
    let r = p.embed(&req, CallContext::new("t")).await.unwrap();
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "one text a call");
    assert_eq!(
        seen[0].path,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-embedding-001:predict"
    );
    assert!(bearer(&seen[0]).is_some_and(|b| b.starts_with("Bearer tok-")));
    // (The calls go at once: in either order.)
    let mut bodies: Vec<Value> = seen
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["instances"][0]["content"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies[1],
        json!({"instances": [{"content": "b", "task_type": "RETRIEVAL_QUERY"}],
               "parameters": {"outputDimensionality": 2}})
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"], json!([0.5, -0.5]));
    assert_eq!(v["usage"]["prompt_tokens"], 6);

    // Other models take several texts a call; a count that does not match is a failure.
    let e = p
        .embed(
            &embed_request(json!({"model": "text-embedding-005", "input": ["a", "b"]})),
            CallContext::new("t"),
        )
        .await
        .unwrap_err();
    assert_eq!(up.requests().len(), 3, "both texts in one call");
    assert_eq!(e.kind, ErrorKind::Decode);
    assert!(
        e.message.contains("answered 2 texts with 1 embeddings"),
        "{}",
        e.message
    );

    // Long texts go in calls of at most 18 KB (a call is refused over 20,000 tokens).
    let long = "7".repeat(10_000);
    let r = p
        .embed(
            &embed_request(json!({"model": "text-embedding-005", "input": [long, long, long]})),
            CallContext::new("t"),
        )
        .await
        .unwrap();
    assert_eq!(up.requests().len(), 6, "one call each");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);

    let e = p
        .embed(
            &embed_request(json!({"model": MODEL, "input": "a"})),
            CallContext::new("t"),
        )
        .await
        .unwrap_err();
    assert!(e.is_unexpressible(), "{e:?}");
    assert_eq!(up.requests().len(), 6);
}
