//! Weir's routing inside your own Rust service: no HTTP server, no sockets.
//!
//! It builds a router twice, once from a config string (the same TOML as `weir.toml`)
//! and once from code, then sends a request and streams another, getting canonical
//! responses and events back. It uses the built-in mock provider, so it runs offline:
//!
//! ```text
//! cargo run -p weir-example-embedded
//! ```
//!
//! Swap the mock for `kind = "anthropic"` / `"openai"` providers (with `keys`) and the
//! same code calls real upstreams, with failover, key pools, breakers and retries.

use std::sync::Arc;

use futures_util::StreamExt;
use weir_model::{
    CallContext, ChatRequest, ContentBlock, Delta, Message, Provider, Reply, Role, StreamEvent,
};
use weir_router::{Route, Router, Strategy, Target};

/// A router from config text. `${ENV}` references are filled from the environment.
fn from_config() -> Result<Router, String> {
    weir_config::router_from_str(
        r#"
        [providers.primary]
        kind = "mock"

        [providers.backup]
        kind = "mock"

        [routing]
        retries = 1

        [[models]]
        name = "assistant"
        strategy = "fallback"
        targets = [
          { provider = "primary", model = "mock" },
          { provider = "backup",  model = "mock" },
        ]
        "#,
    )
    .map_err(|errors| errors.to_string())
}

/// The same router built from code.
fn from_code() -> Result<Router, String> {
    let primary = weir_mock::MockProvider::new("primary", weir_mock::MockOptions::default());
    let backup = weir_mock::MockProvider::new("backup", weir_mock::MockOptions::default());
    Router::new(
        vec![
            Arc::new(primary) as Arc<dyn Provider>,
            Arc::new(backup) as Arc<dyn Provider>,
        ],
        vec![Route::new(
            "assistant",
            vec![
                Target::with_model("primary", "mock"),
                Target::with_model("backup", "mock"),
            ],
        )
        .strategy(Strategy::Fallback)],
    )
}

fn request(text: &str, stream: bool) -> ChatRequest {
    ChatRequest {
        model: "assistant".into(),
        messages: vec![Message::text(Role::User, text)],
        max_tokens: Some(256),
        stream: Some(stream),
        ..Default::default()
    }
}

/// Sends one request and streams another; returns what came back, as lines.
async fn demo(router: &Router) -> Result<Vec<String>, String> {
    let mut out = Vec::new();

    // A whole response.
    let (reply, served) = router
        .send(
            request("Hello from an embedded router", false),
            CallContext::new("req-1"),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    if let Reply::Complete(resp) = reply {
        for block in &resp.content {
            if let ContentBlock::Text(t) = block {
                out.push(format!(
                    "[{}/{}] {}",
                    served.provider,
                    served.model,
                    t.text.as_str()
                ));
            }
        }
    }

    // A stream of canonical events; dropping it would cancel the upstream call.
    let (reply, served) = router
        .send(
            request("Stream this, please", true),
            CallContext::new("req-2"),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    if let Reply::Stream(mut events) = reply {
        let mut text = String::new();
        while let Some(frame) = events.next().await {
            let frame = frame.map_err(|e| e.to_string())?;
            for ev in frame.events {
                if let StreamEvent::BlockDelta {
                    delta: Delta::Text(t),
                    ..
                } = ev
                {
                    text.push_str(&t.as_str());
                }
            }
        }
        out.push(format!("[{} streamed] {text}", served.provider));
    }

    // What the router knows: breakers, latency, key pools (no secrets).
    let status = router.status();
    for t in &status.targets {
        out.push(format!(
            "target {}/{}: breaker {}, {} requests",
            t.provider, t.model, t.breaker, t.requests
        ));
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    for (how, router) in [("config", from_config()?), ("code", from_code()?)] {
        println!("-- router built from {how}");
        for line in demo(&router).await? {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_routers_answer_and_stream() {
        for router in [from_config(), from_code()] {
            let lines = demo(&router.unwrap()).await.unwrap();
            assert!(
                lines[0].starts_with("[primary/mock] Mock reply to: Hello from an embedded router"),
                "{lines:?}"
            );
            assert!(
                lines[1].starts_with("[primary streamed] Mock reply to: Stream this"),
                "{lines:?}"
            );
            assert_eq!(lines[2], "target primary/mock: breaker closed, 2 requests");
        }
    }
}
