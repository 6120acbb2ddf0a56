//! The provider against a local stand-in for the Gemini API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use weir_gemini::{encode_request, EncodeOptions, GeminiConfig, GeminiProvider, DEFAULT_BASE_URL};
use weir_model::{
    CallContext, ChatRequest, ContentBlock, ErrorKind, Message, Provider, Reply, Role, Secret,
    StopReason,
};
use weir_testkit::upstream::{Behaviour, FaultyUpstream};

const KEY: &str = "AIzaSyTESTKEY-0123456789";

fn config(base_url: &str) -> GeminiConfig {
    GeminiConfig {
        id: "gemini".into(),
        base_url: base_url.into(),
        keys: vec![Secret::new(KEY)],
        timeouts: Default::default(),
        encode: EncodeOptions::default(),
    }
}

fn provider(base_url: &str) -> GeminiProvider {
    let upstream = weir_upstream::Upstream::new(Duration::from_secs(5)).unwrap();
    GeminiProvider::new(config(base_url), upstream).unwrap()
}

fn request(model: &str, stream: bool) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::text(Role::User, "What is the capital of France?")],
        max_tokens: Some(100),
        stream: Some(stream),
        ..Default::default()
    }
}

fn answer(status: u16, content_type: &str, body: &str) -> Behaviour {
    Behaviour::Status {
        status,
        headers: vec![],
        content_type: content_type.into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn a_complete_answer() {
    let up = FaultyUpstream::start(answer(
        200,
        "application/json; charset=UTF-8",
        &json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_capital", "args": {"country": "France"}}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 52, "candidatesTokenCount": 5},
            "responseId": "1lpe"
        })
        .to_string(),
    ))
    .await;
    let p = provider(up.url());
    let req = request("gemini-2.0-flash", false);
    let expected_body = encode_request(&req, &EncodeOptions::default()).unwrap();
    let Reply::Complete(r) = p.send(&req, CallContext::new("t")).await.unwrap() else {
        panic!("expected a complete reply")
    };
    let recorded = &up.requests()[0];
    assert_eq!(recorded.method, http::Method::POST);
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(recorded.header("x-goog-api-key"), Some(KEY));
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert!(recorded.header("authorization").is_none());
    assert_eq!(recorded.body, expected_body);
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    // The answer names no model: the request's stands in.
    assert_eq!(r.model, "gemini-2.0-flash");
    let [ContentBlock::ToolUse(t)] = r.content.as_slice() else {
        panic!("{:?}", r.content)
    };
    assert_eq!(
        (t.id.as_str(), t.name.as_str()),
        ("toolu_gemini_1lpe_0", "get_capital")
    );
    assert_eq!(p.keys(), &[Secret::new(KEY)]);
    let caps = p.capabilities("gemini-2.0-flash");
    assert!(caps.tools && caps.images && caps.documents && caps.thinking);
    assert!(!caps.prompt_caching && caps.native_dialect.is_none());
}

#[tokio::test]
async fn a_streamed_answer() {
    let body = String::from_utf8(common::sse(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "The capital"}],"role": "model"}}],"modelVersion": "gemini-2.5-flash","responseId": "s1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " is Paris."}],"role": "model"},"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 13,"candidatesTokenCount": 8},"modelVersion": "gemini-2.5-flash","responseId": "s1"}"#,
    ]))
    .unwrap();
    let up = FaultyUpstream::start(answer(200, "text/event-stream", &body)).await;
    let p = provider(&format!("{}/", up.url()));
    // A router-chosen key wins over the ring.
    let mut cx = CallContext::new("t");
    cx.key = Some(Secret::new("AIzaOTHERKEY"));
    let Reply::Stream(mut s) = p
        .send(&request("models/gemini-2.5-flash", true), cx)
        .await
        .unwrap()
    else {
        panic!("expected a stream")
    };
    let mut events = Vec::new();
    while let Some(f) = s.next().await {
        events.extend(f.unwrap().events);
    }
    common::check_well_formed(&events).unwrap();
    assert_eq!(
        common::summary(&events),
        [
            "start s1 gemini-2.5-flash in=- out=- cache=- reasoning=-",
            "+0 text",
            "0 text The capital",
            "0 text  is Paris.",
            "-0",
            "delta end_turn in=13 out=8 cache=- reasoning=-",
            "stop",
        ]
    );
    let recorded = &up.requests()[0];
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(recorded.header("x-goog-api-key"), Some("AIzaOTHERKEY"));
}

const EXHAUSTED: &str = r#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota. Please migrate to a paid plan.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}
    ]
  }
}"#;

#[tokio::test]
async fn a_429_is_a_rate_limit_with_the_wait_from_the_body() {
    let up = FaultyUpstream::start(answer(429, "application/json", EXHAUSTED)).await;
    let p = provider(up.url());
    let e = p
        .send(&request("gemini-2.5-pro", false), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(e.retry_after, Some(Duration::from_secs(13)));
    assert!(e.retryable_elsewhere && !e.counts_against_health);
    // Gemini's quotas are per model: the router rests this model, not the key.
    assert!(e.per_model_quota);
    assert_eq!(
        e.api_error.as_ref().unwrap().error_type.as_deref(),
        Some("RESOURCE_EXHAUSTED")
    );
    // The same inside an array, as some Google front ends send it; a retry-after header
    // wins over the body.
    up.set(Behaviour::Status {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        content_type: "application/json".into(),
        body: format!("[{EXHAUSTED}]"),
    });
    let e = p
        .send(&request("gemini-2.5-pro", true), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after),
        (ErrorKind::RateLimited, Some(Duration::from_secs(2)))
    );
}

#[tokio::test]
async fn keys_never_reach_error_messages_or_urls() {
    let echo = json!({"error": {
        "code": 400,
        "message": format!("API key not valid: {KEY}. Please pass a valid API key."),
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    }});
    let up = FaultyUpstream::start(answer(400, "application/json", &echo.to_string())).await;
    let p = provider(up.url());
    let e = p
        .send(&request("gemini-2.5-flash", false), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    let api = e.api_error.as_ref().unwrap();
    for text in [&e.message, &api.message, &format!("{e} {e:?}")] {
        assert!(!text.contains(KEY), "{text}");
    }
    assert!(
        e.message.contains("API key not valid: ***"),
        "{}",
        e.message
    );
    for r in up.requests() {
        assert!(!r.path.contains(KEY), "{}", r.path);
    }
    // A proxy's HTML error page.
    up.set(answer(
        502,
        "text/html",
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    ));
    let e = p
        .send(&request("gemini-2.5-flash", false), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Upstream,
            "upstream answered 502: 502 Bad Gateway"
        )
    );
}

#[tokio::test]
async fn model_names_stay_one_path_segment() {
    let up = FaultyUpstream::start(answer(
        200,
        "application/json",
        r#"{"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}"#,
    ))
    .await;
    let p = provider(&format!("{}/proxy/", up.url()));
    p.send(
        &request("tuned/../../x?key=1#f", false),
        CallContext::new("t"),
    )
    .await
    .unwrap();
    assert_eq!(
        up.requests()[0].path,
        "/proxy/v1beta/models/tuned%2F..%2F..%2Fx%3Fkey=1%23f:generateContent"
    );
    let e = p
        .send(&request("", false), CallContext::new("t"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn requests_gemini_cannot_take_fail_before_any_call() {
    let up = FaultyUpstream::start(answer(200, "application/json", "{}")).await;
    let p = provider(up.url());
    let mut req = request("gemini-2.5-flash", false);
    req.messages.push(Message {
        role: Role::User,
        content: weir_model::Content::blocks(vec![ContentBlock::ToolResult(
            weir_model::ToolResultBlock {
                tool_use_id: "nowhere".into(),
                content: weir_model::Content::text("x"),
                is_error: None,
                cache_control: None,
                extra: Default::default(),
            },
        )]),
        extra: Default::default(),
    });
    let e = p.send(&req, CallContext::new("t")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(
        e.message.contains("answers no earlier tool call"),
        "{}",
        e.message
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_count_answered_with_an_error_body_is_no_count() {
    let up = FaultyUpstream::start(answer(
        200,
        "application/json",
        r#"{"error": {"code": 500, "message": "backend hiccup", "status": "INTERNAL"}}"#,
    ))
    .await;
    let p = provider(up.url());
    let e = p
        .count_tokens(request("gemini-2.5-flash", false), CallContext::new("t"))
        .await
        .unwrap_err();
    assert!(e.message.contains("backend hiccup"), "{}", e.message);
}

/// A count answered `{}` (or 0) is no count: the caller estimates, where a 0 would pass
/// for the request's size.
#[tokio::test]
async fn a_count_answered_empty_is_no_count() {
    let up = FaultyUpstream::start(answer(200, "application/json", "{}")).await;
    let p = provider(up.url());
    let n = p
        .count_tokens(request("gemini-2.5-flash", false), CallContext::new("t"))
        .await
        .unwrap();
    assert_eq!(n, None);
}

#[tokio::test]
async fn count_tokens_uses_the_whole_request() {
    let up = FaultyUpstream::start(answer(200, "application/json", r#"{"totalTokens": 42}"#)).await;
    let p = provider(up.url());
    let mut req = request("gemini-2.5-flash", false);
    req.system = Some(weir_model::Content::text("Be brief."));
    let n = p.count_tokens(req, CallContext::new("t")).await.unwrap();
    assert_eq!(n, Some(42));
    let r = &up.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:countTokens");
    assert_eq!(
        r.json().unwrap(),
        json!({"generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 100}
        }})
    );
}

#[test]
fn base_urls_are_checked_at_construction() {
    let upstream = || weir_upstream::Upstream::new(Duration::from_secs(1)).unwrap();
    assert!(GeminiProvider::new(config(DEFAULT_BASE_URL), upstream()).is_ok());
    for bad in [
        "ftp://generativelanguage.googleapis.com",
        "not a url",
        "https://generativelanguage.googleapis.com/?key=abc",
    ] {
        let e = GeminiProvider::new(config(bad), upstream()).unwrap_err();
        assert!(!e.contains("abc"), "{e}");
    }
    let p = GeminiProvider::new(config(DEFAULT_BASE_URL), upstream()).unwrap();
    assert_eq!(
        p.url("gemini-2.5-flash", "streamGenerateContent").unwrap().as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

/// A stand-in for `batchEmbedContents`: one vector per request in the body, `[index,
/// texts' length]`, and a `usageMetadata` unless the path says otherwise.
struct Embedder;

impl wiremock::Respond for Embedder {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let requests = body["requests"].as_array().unwrap();
        let embeddings: Vec<serde_json::Value> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let text = r["content"]["parts"][0]["text"].as_str().unwrap();
                json!({"values": [i as f64, text.len() as f64 / 4.0]})
            })
            .collect();
        let mut answer = json!({ "embeddings": embeddings });
        if !req.url.path().contains("no-usage") {
            answer["usageMetadata"] = json!({"promptTokenCount": requests.len() * 10});
        }
        wiremock::ResponseTemplate::new(200).set_body_json(answer)
    }
}

fn embed_request(body: serde_json::Value) -> weir_model::EmbedRequest {
    weir_model::EmbedRequest::decode(body.to_string().as_bytes()).unwrap()
}

/// OpenAI's embeddings request as `batchEmbedContents` calls of at most 100 texts, and
/// their answers as OpenAI's list, in order, numbers or base64, with Gemini's usage.
#[tokio::test]
async fn embeddings_go_as_batches_and_come_back_as_openais_list() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Embedder)
        .mount(&server)
        .await;
    let p = provider(&server.uri());
    assert!(p.serves_embeddings());
    let texts: Vec<String> = (0..150).map(|i| "x".repeat(i % 7 + 1)).collect();
    let req = embed_request(json!({
        "model": "gemini-embedding-001", "input": texts, "dimensions": 768,
        "task_type": "RETRIEVAL_DOCUMENT", "user": "u",
    }));
    let r = p.embed(&req, CallContext::new("t")).await.unwrap();
    let calls = server.received_requests().await.unwrap();
    assert_eq!(calls.len(), 2, "100 texts, then 50");
    assert_eq!(
        calls[0].url.path(),
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        calls[0]
            .headers
            .get("x-goog-api-key")
            .unwrap()
            .to_str()
            .unwrap(),
        KEY
    );
    // (The calls go at once: the first batch is the one of 100, whichever came first.)
    let mut bodies: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| serde_json::from_slice(&c.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| std::cmp::Reverse(b["requests"].as_array().unwrap().len()));
    let first = &bodies[0];
    assert_eq!(first["requests"].as_array().unwrap().len(), 100);
    assert_eq!(bodies[1]["requests"].as_array().unwrap().len(), 50);
    assert_eq!(
        first["requests"][3],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "xxxx"}]},
               "outputDimensionality": 768, "taskType": "RETRIEVAL_DOCUMENT"})
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 150);
    // The 101st text is the second batch's first.
    assert_eq!(data[100]["index"], 100);
    assert_eq!(data[100]["embedding"], json!([0.0, 0.75]));
    assert_eq!(data[3]["embedding"], json!([3.0, 1.0]));
    assert_eq!(v["model"], "gemini-embedding-001");
    assert_eq!(v["usage"]["prompt_tokens"], 1500);
    assert_eq!(r.usage.input_tokens, Some(1500));

    // base64, and an estimate where Gemini reports no usage (a token per 4 bytes).
    let p = provider(&format!("{}/no-usage", server.uri()));
    let req = embed_request(json!({
        "model": "models/m", "input": "12345678", "encoding_format": "base64",
    }));
    let r = p.embed(&req, CallContext::new("t")).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    // [0.0, 2.0] as little-endian f32s.
    assert_eq!(v["data"][0]["embedding"], "AAAAAAAAAEA=");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
}

/// What Gemini's embeddings cannot take is refused before any call, saying why.
#[tokio::test]
async fn embeddings_gemini_cannot_take_are_refused() {
    let server = wiremock::MockServer::start().await;
    let p = provider(&server.uri());
    for (body, says) in [
        (
            json!({"model": "m", "input": [1, 2, 3]}),
            "token ids is not supported by Gemini",
        ),
        (
            json!({"model": "m", "input": "a", "input_type": "query"}),
            "`input_type` is not supported by Gemini's embeddings",
        ),
        (
            json!({"model": "m", "input": "a", "dimensions": -1}),
            "`dimensions` must be a positive integer",
        ),
        (
            json!({"model": "m", "input": "a", "task_type": 3}),
            "`task_type` must be a string",
        ),
    ] {
        let e = p
            .embed(&embed_request(body.clone()), CallContext::new("t"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{body}");
        assert!(e.message.contains(says), "{body}: {}", e.message);
        // What Gemini cannot take passes the target over; what the client must fix does
        // not (any target would refuse it).
        let passes_over = says.contains("not supported");
        assert_eq!(e.is_unexpressible(), passes_over, "{body}");
        assert_eq!(e.status, (!passes_over).then_some(400), "{body}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
