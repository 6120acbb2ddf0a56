//! Claude on Vertex against a local stand-in: the rawPredict and streamRawPredict
//! envelopes, bearer tokens and the retry after a 401, Google's and Anthropic's error
//! shapes, token counting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use http::HeaderValue;
use serde_json::json;
use weir_model::{
    CallContext, Delta, Dialect, ErrorKind, Frame, Provider, ProviderError, Reply, Secret,
    StreamEvent,
};
use weir_testkit::upstream::{Behaviour, FaultyUpstream};
use weir_upstream::Upstream;
use weir_vertex::{FnTokenSource, StaticToken, VertexConfig, VertexProvider};

/// A mid-stream error echoing the access token reaches no client with it, as an error
/// body does not.
#[tokio::test]
async fn a_stream_error_echoing_the_token_is_scrubbed() {
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"token ya29.SECRET-token refused\"}}\n\n",
    );
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body: body.into(),
    })
    .await;
    let p = provider(
        &up,
        "us-east5",
        Arc::new(StaticToken::new("ya29.SECRET-token")),
    );
    let Reply::Stream(mut s) = p
        .send(&claude_request(true), CallContext::new("req-1"))
        .await
        .unwrap()
    else {
        panic!("expected a stream")
    };
    let mut seen = String::new();
    while let Some(f) = s.next().await {
        match f {
            Ok(f) => seen.push_str(&format!("{f:?}")),
            Err(e) => seen.push_str(&format!("{e:?}")),
        }
    }
    assert!(seen.contains("refused"), "{seen}");
    assert!(!seen.contains("SECRET"), "{seen}");
}

#[tokio::test]
async fn claude_raw_predict_envelope() {
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    let tokens = Arc::new(FnTokenSource::numbered("tok-"));
    let p = provider(&up, "us-east5", tokens.clone());

    let mut cx = CallContext::new("req-1");
    cx.forward_headers.insert(
        "anthropic-beta",
        HeaderValue::from_static("context-1m-2025-08-07"),
    );
    cx.forward_headers
        .insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    let reply = p.send(&claude_request(false), cx).await.unwrap();
    let Reply::Complete(r) = reply else {
        panic!("expected a complete response")
    };
    assert_eq!(r.id, "msg_vrtx_01");
    assert_eq!(r.origin, Some(Dialect::Anthropic));
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens),
        (Some(9), Some(3))
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    let got = &reqs[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    );
    assert_eq!(
        String::from_utf8(got.body.clone()).unwrap(),
        r#"{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"Hi"}],"max_tokens":64,"future_field":{"kept":true}}"#
    );
    assert_eq!(bearer(got), Some("Bearer tok-1"));
    assert_eq!(got.header("anthropic-beta"), Some("context-1m-2025-08-07"));
    assert_eq!(got.header("anthropic-version"), None);
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(tokens.fetches(), 1);
}

#[tokio::test]
async fn global_region_path() {
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    let p = provider(&up, "global", Arc::new(StaticToken::new("static-token")));
    let out = complete(&p, claude_request(false)).await.unwrap();
    assert_eq!(out, ChatResponseText("Hello!".into(), Some(9), Some(3)));
    let reqs = up.requests();
    assert_eq!(
        reqs[0].path,
        "/v1/projects/my-project/locations/global/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    );
    assert_eq!(bearer(&reqs[0]), Some("Bearer static-token"));
}

fn sse_body() -> String {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_vrtx_02","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo!"}}   "#,
        ),
        (
            "vertex_event",
            r#"{"type":"vertex_event","note":"unknown events pass through"}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    events
        .iter()
        .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
        .collect()
}

#[tokio::test]
async fn claude_stream_raw_predict_is_lossless() {
    let body = sse_body();
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body: body.clone(),
    })
    .await;
    let p = provider(&up, "us-east5", Arc::new(FnTokenSource::numbered("tok-")));
    let Reply::Stream(mut s) = p
        .send(&claude_request(true), CallContext::new("req-1"))
        .await
        .unwrap()
    else {
        panic!("expected a stream")
    };
    let mut frames: Vec<Frame> = Vec::new();
    while let Some(f) = s.next().await {
        frames.push(f.unwrap());
    }

    // Every frame carries its source event: re-encoding the sources gives the body back.
    let mut echoed = String::new();
    for f in &frames {
        let src = f.source.as_ref().expect("frame without its source event");
        assert_eq!(src.dialect, Dialect::Anthropic);
        echoed.push_str(&format!(
            "event: {}\ndata: {}\n\n",
            src.event.event_type(),
            src.event.data()
        ));
    }
    assert_eq!(echoed, body);

    // And the canonical reading is there for other dialects.
    let text: String = frames
        .iter()
        .flat_map(|f| &f.events)
        .filter_map(|e| match e {
            StreamEvent::BlockDelta {
                delta: Delta::Text(t),
                ..
            } => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello!");
    assert!(matches!(
        frames.last().unwrap().events.as_slice(),
        [StreamEvent::MessageStop]
    ));

    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
    );
    assert_eq!(
        String::from_utf8(got.body.clone()).unwrap(),
        r#"{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"Hi"}],"max_tokens":64,"stream":true,"future_field":{"kept":true}}"#
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    up.queue(vec![unauthenticated()]);
    let tokens = Arc::new(FnTokenSource::numbered("tok-"));
    let p = provider(&up, "us-east5", tokens.clone());

    let out = complete(&p, claude_request(false)).await.unwrap();
    assert_eq!(out.0, "Hello!");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(bearer(&reqs[0]), Some("Bearer tok-1"));
    assert_eq!(bearer(&reqs[1]), Some("Bearer tok-2"));
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!((tokens.fetches(), tokens.invalidations()), (2, 1));

    // The new token is kept for later requests.
    complete(&p, claude_request(false)).await.unwrap();
    assert_eq!(bearer(&up.requests()[2]), Some("Bearer tok-2"));
    assert_eq!(tokens.fetches(), 2);
}

#[tokio::test]
async fn a_second_401_is_an_authentication_error() {
    let up = FaultyUpstream::start(unauthenticated()).await;
    let tokens = Arc::new(FnTokenSource::numbered("tok-"));
    let p = provider(&up, "us-east5", tokens.clone());

    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.status, Some(401));
    assert_eq!(
        e.message,
        "Request had invalid authentication credentials. Expected OAuth 2 access token."
    );
    assert_eq!(up.hits(), 2);
    assert_eq!(tokens.fetches(), 2);
    // A stream request gets the same treatment before any byte of the stream.
    let e = p
        .send(&claude_request(true), CallContext::new("req-2"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn a_static_token_is_not_retried() {
    let up = FaultyUpstream::start(unauthenticated()).await;
    let p = provider(&up, "us-east5", Arc::new(StaticToken::new("static-token")));
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn token_source_errors_fail_the_call_without_a_request() {
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    let tokens = Arc::new(FnTokenSource::new(|_| {
        Err(ProviderError::new(
            ErrorKind::Authentication,
            "no credentials",
        ))
    }));
    let p = provider(&up, "us-east5", tokens);
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Authentication, "no credentials")
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn google_errors_plain_and_array_wrapped() {
    let quota = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_tokens_per_minute_per_base_model.",
    );
    let up = FaultyUpstream::start(status(429, &quota)).await;
    let p = provider(&up, "us-east5", Arc::new(FnTokenSource::numbered("tok-")));

    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
    assert!(e.retryable_elsewhere && !e.counts_against_health);
    let api = e.api_error.as_deref().unwrap();
    assert_eq!(api.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(api.dialect, None);

    up.set(Behaviour::Status {
        status: 429,
        headers: vec![("retry-after".into(), "7".into())],
        content_type: "application/json".into(),
        body: format!("[{quota}]"),
    });
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.message.starts_with("Quota exceeded"), "{}", e.message);

    for (code, st, kind) in [
        (503, "UNAVAILABLE", ErrorKind::Overloaded),
        (403, "PERMISSION_DENIED", ErrorKind::PermissionDenied),
        (400, "INVALID_ARGUMENT", ErrorKind::InvalidRequest),
        (400, "FAILED_PRECONDITION", ErrorKind::InvalidRequest),
        (404, "NOT_FOUND", ErrorKind::NotFound),
        (500, "INTERNAL", ErrorKind::Upstream),
        (504, "DEADLINE_EXCEEDED", ErrorKind::Timeout),
    ] {
        up.set(status(code, &json!([google_error(code, st, "m")])));
        let e = complete(&p, claude_request(false)).await.unwrap_err();
        assert_eq!((e.kind, e.status), (kind, Some(code)), "{st}");
    }
}

#[tokio::test]
async fn anthropic_shaped_errors_keep_their_type() {
    let up = FaultyUpstream::start(status(
        529,
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ))
    .await;
    let p = provider(&up, "us-east5", Arc::new(FnTokenSource::numbered("tok-")));
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded);
    let api = e.api_error.as_deref().unwrap();
    assert_eq!(api.dialect, Some(Dialect::Anthropic));
    assert_eq!(api.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!(api.message, "Overloaded");
}

#[tokio::test]
async fn tokens_never_appear_in_errors_or_debug() {
    let secret = "ya29.a0AfB_very_secret_token_value";
    // An upstream that echoes the token it was given, in a status that is not retried.
    let up = FaultyUpstream::start(status(
        403,
        &google_error(
            403,
            "PERMISSION_DENIED",
            &format!("Permission denied for token Bearer {secret} on project my-project"),
        ),
    ))
    .await;
    let tokens = Arc::new(FnTokenSource::new(move |_| Ok(Secret::new(secret))));
    let p = provider(&up, "us-east5", tokens.clone());
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert_eq!(
        bearer(&up.requests()[0]),
        Some(format!("Bearer {secret}").as_str())
    );
    for shown in [
        format!("{e}"),
        format!("{e:?}"),
        format!("{p:?}"),
        format!("{tokens:?}"),
    ] {
        assert!(!shown.contains(secret), "token leaked: {shown}");
    }
    assert!(e.message.contains("Bearer ***"), "{}", e.message);
}

#[tokio::test]
async fn claude_token_counting() {
    let up = FaultyUpstream::start(status(200, &json!({"input_tokens": 12}))).await;
    let p = provider(&up, "us-east5", Arc::new(FnTokenSource::numbered("tok-")));
    let n = p
        .count_tokens(claude_request(true), CallContext::new("req-1"))
        .await
        .unwrap();
    assert_eq!(n, Some(12));
    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    );
    assert_eq!(
        got.json().unwrap(),
        json!({
            "anthropic_version": "vertex-2023-10-16",
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "future_field": {"kept": true}
        })
    );
    // A tool schema nested past serde_json's depth limit is sent as it came.
    let mut schema = json!({"type": "object"});
    for _ in 0..140 {
        schema = json!({"type": "object", "properties": {"x": schema}});
    }
    let mut deep = claude_request(false);
    deep.tools = Some(vec![weir_model::Tool::Function(weir_model::FunctionTool {
        name: "deep".into(),
        description: None,
        parameters: Some(serde_json::value::to_raw_value(&schema).unwrap()),
        strict: None,
        cache_control: None,
        extra: weir_model::Extra::new(),
    })]);
    let n = p
        .count_tokens(deep, CallContext::new("req-2"))
        .await
        .unwrap();
    assert_eq!(n, Some(12));
    assert!(up.requests()[1].body.len() > 140 * 30);
}

#[tokio::test]
async fn capabilities_by_publisher() {
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    let p = provider(&up, "us-east5", Arc::new(StaticToken::new("t")));
    let claude = p.capabilities(MODEL);
    assert_eq!(claude.native_dialect, Some(Dialect::Anthropic));
    assert!(claude.prompt_caching && claude.thinking && claude.documents);
    let gemini = p.capabilities("gemini-2.5-pro");
    assert_eq!(gemini.native_dialect, None);
    assert!(gemini.images && gemini.documents && gemini.tools && gemini.thinking);
    assert!(!gemini.prompt_caching);
}

#[test]
fn construction_checks_the_envelope_and_needs_no_credentials() {
    let up = Upstream::new(Duration::from_secs(5)).unwrap();
    let ok = VertexProvider::with_google_auth(
        VertexConfig::new("v", "my-project", "us-east5"),
        up.clone(),
    );
    assert!(ok.is_ok());
    let bad_region = VertexProvider::with_google_auth(
        VertexConfig::new("v", "my-project", "us-east5/evil"),
        up.clone(),
    );
    assert!(bad_region.unwrap_err().contains("region"));
    let bad_project = VertexProvider::with_google_auth(
        VertexConfig::new("v", "my/project", "us-east5"),
        up.clone(),
    );
    assert!(bad_project.unwrap_err().contains("project"));
    let mut cfg = VertexConfig::new("v", "my-project", "us-east5");
    cfg.base_url = Some("ftp://example.com".into());
    assert!(VertexProvider::with_google_auth(cfg, up).is_err());
}

/// An Anthropic error body with a 200 is Claude's failure (as Anthropic's own API is
/// read), and errors name the upstream's request id, as answers do.
#[tokio::test]
async fn an_error_body_with_a_200_is_a_failure_naming_the_request_id() {
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![("x-request-id".into(), "vtx-req-1".into())],
        content_type: "application/json".into(),
        body:
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string(),
    })
    .await;
    let p = provider(&up, "us-east5", Arc::new(FnTokenSource::numbered("tok-")));
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded, "{e:?}");
    assert_eq!(e.upstream_request_id.as_deref(), Some("vtx-req-1"));
    up.set(Behaviour::Status {
        status: 429,
        headers: vec![("x-request-id".into(), "vtx-req-2".into())],
        content_type: "application/json".into(),
        body: json!([google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")]).to_string(),
    });
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.upstream_request_id.as_deref(), Some("vtx-req-2"));
}
