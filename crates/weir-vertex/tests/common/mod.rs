//! Shared by the integration tests: a Vertex provider in front of a local stand-in, and
//! requests and answers in the shapes Vertex uses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use weir_model::{CallContext, ChatRequest, ContentBlock, Provider, ProviderError, Reply};
use weir_testkit::upstream::{Behaviour, FaultyUpstream, Recorded};
use weir_upstream::Upstream;
use weir_vertex::{TokenSource, VertexConfig, VertexProvider};

pub const MODEL: &str = "claude-sonnet-4-5@20250929";

pub fn provider(up: &FaultyUpstream, region: &str, tokens: Arc<dyn TokenSource>) -> VertexProvider {
    let mut cfg = VertexConfig::new("vertex", "my-project", region);
    cfg.base_url = Some(up.url().to_owned());
    cfg.timeouts.first_byte = Duration::from_secs(10);
    VertexProvider::new(cfg, Upstream::new(Duration::from_secs(5)).unwrap(), tokens).unwrap()
}

/// A request as an Anthropic client sent it (so the encoding is the lossless one).
pub fn claude_request(stream: bool) -> ChatRequest {
    let body = if stream {
        format!(
            r#"{{"model":"{MODEL}","max_tokens":64,"stream":true,"messages":[{{"role":"user","content":"Hi"}}],"future_field":{{"kept":true}}}}"#
        )
    } else {
        format!(
            r#"{{"model":"{MODEL}","max_tokens":64,"messages":[{{"role":"user","content":"Hi"}}],"future_field":{{"kept":true}}}}"#
        )
    };
    weir_anthropic::decode_request(body.as_bytes()).unwrap()
}

pub fn message_json() -> Value {
    json!({
        "id": "msg_vrtx_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 9, "output_tokens": 3}
    })
}

pub fn status(code: u16, body: &Value) -> Behaviour {
    Behaviour::json(code, body)
}

pub fn google_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

pub fn unauthenticated() -> Behaviour {
    status(
        401,
        &google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        ),
    )
}

pub async fn complete(
    p: &VertexProvider,
    req: ChatRequest,
) -> Result<ChatResponseText, ProviderError> {
    match p.send(&req, CallContext::new("req-1")).await? {
        Reply::Complete(r) => Ok(ChatResponseText(
            r.content
                .iter()
                .map(|b| match b {
                    ContentBlock::Text(t) => t.text.to_string(),
                    other => panic!("unexpected block {other:?}"),
                })
                .collect(),
            r.usage.input_tokens,
            r.usage.output_tokens,
        )),
        Reply::Stream(_) => panic!("asked for a complete response"),
    }
}

#[derive(Debug, PartialEq)]
pub struct ChatResponseText(pub String, pub Option<u64>, pub Option<u64>);

pub fn bearer(r: &Recorded) -> Option<&str> {
    r.header("authorization")
}
