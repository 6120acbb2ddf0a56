//! Routing and resilience through the real server: fault-injecting upstreams
//! (`weir_testkit::upstream`), an HTTP client in each dialect, and `/status` read between
//! steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use weir_testkit::upstream::{Behaviour, FaultyUpstream, RateLimitFormat};

const KEY: &str = "sk-test-client";
const ADMIN: &str = "sk-admin-resilience";

struct Weir {
    url: String,
    admin: String,
}

/// Starts Weir with `extra` config (providers, models, routing).
async fn weir(extra: &str) -> Weir {
    start(&format!(
        "[server]\nshutdown_grace = \"1s\"\n[timeouts]\nfirst_byte = \"1s\"\nidle = \"1s\"\n\
         [auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n{extra}"
    ))
    .await
}

/// Starts Weir with a whole config; returns its API and admin addresses.
async fn start(text: &str) -> Weir {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let app = match weir_server::build(&cfg, None, text) {
        Ok(a) => Arc::new(a),
        Err(e) => panic!("{e:?}"),
    };
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = Weir {
        url: format!("http://{}", api.local_addr().unwrap()),
        admin: format!("http://{}", admin.local_addr().unwrap()),
    };
    tokio::spawn(weir_server::run(
        app,
        api,
        Some(admin),
        std::future::pending(),
    ));
    w
}

impl Weir {
    async fn status(&self) -> Value {
        let r = client()
            .get(format!("{}/status", self.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs a request in a dialect (`a`: Anthropic, `o`: OpenAI) and returns status,
    /// headers and body.
    async fn call(
        &self,
        dialect: char,
        model: &str,
        stream: bool,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let (path, body) = if dialect == 'a' {
            (
                "/v1/messages",
                json!({"model": model, "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}),
            )
        } else {
            (
                "/v1/chat/completions",
                json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}),
            )
        };
        let mut r = client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
            .json(&body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        (status, h, resp.text().await.unwrap())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// The assistant text of an answer in either dialect, streamed or not.
fn text_of(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(t) = v["content"][0]["text"].as_str() {
            return t.to_owned();
        }
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let mut d = weir_sse::Decoder::new();
    let mut evs = Vec::new();
    d.feed(body.as_bytes(), &mut evs).unwrap();
    let mut out = String::new();
    for e in evs {
        let Ok(v) = serde_json::from_str::<Value>(e.data()) else {
            continue;
        };
        if let Some(t) = v["delta"]["text"].as_str() {
            out.push_str(t);
        }
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            out.push_str(t);
        }
    }
    out
}

fn has_error_event(body: &str) -> bool {
    body.contains("event: error") || body.contains("\"error\":")
}

/// Two Anthropic-kind providers `a` and `b` behind model `m` with `strategy`.
fn two(a: &FaultyUpstream, b: &FaultyUpstream, model_extra: &str, routing: &str) -> String {
    format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-upstream-a\"]\n\
         [providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-upstream-b\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n{model_extra}\n\
         [routing]\nretry_backoff = \"10ms\"\n{routing}\n",
        a.url(),
        b.url()
    )
}

fn target<'a>(status: &'a Value, provider: &str) -> &'a Value {
    status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["provider"] == provider)
        .unwrap()
}

#[tokio::test]
async fn broken_upstreams_fail_over_to_the_next_target_in_both_dialects() {
    for fault in [
        Behaviour::ResetConnection,
        Behaviour::Html500,
        Behaviour::MalformedSse,
        Behaviour::Overloaded529,
        Behaviour::Hang,
    ] {
        let a = FaultyUpstream::start(fault.clone()).await;
        let b = FaultyUpstream::start(Behaviour::ok("from b")).await;
        let w = weir(&two(&a, &b, "", "retries = 0")).await;
        for (dialect, stream) in [('a', false), ('a', true), ('o', false), ('o', true)] {
            let (status, h, body) = w.call(dialect, "m", stream, &[]).await;
            assert_eq!(status, 200, "{fault:?} {dialect} {stream}: {body}");
            assert_eq!(h["x-weir-provider"], "b", "{fault:?}");
            assert_eq!(
                text_of(&body),
                "from b",
                "{fault:?} {dialect} {stream}: {body}"
            );
            assert!(!has_error_event(&body), "{fault:?}: {body}");
        }
        let st = w.status().await;
        let ta = target(&st, "a");
        assert_eq!(ta["requests"], 4, "{fault:?} {st}");
        assert_eq!(ta["failures"], 4, "{fault:?} {st}");
        // Four failures in a row are fewer than the default five: still closed.
        assert_eq!(ta["breaker"], "closed", "{fault:?}");
        assert_eq!(target(&st, "b")["requests"], 4);
    }
}

#[tokio::test]
async fn a_stream_that_fails_before_content_is_replaced_without_the_client_noticing() {
    for fault in [Behaviour::OverloadedFirstEvent, Behaviour::ErrorAfterStart] {
        let a = FaultyUpstream::start(fault.clone()).await;
        let b = FaultyUpstream::start(Behaviour::ok("the real answer")).await;
        let w = weir(&two(&a, &b, "", "retries = 0")).await;
        for dialect in ['a', 'o'] {
            let (status, h, body) = w.call(dialect, "m", true, &[]).await;
            assert_eq!(status, 200);
            assert_eq!(h["x-weir-provider"], "b", "{fault:?} {dialect}: {body}");
            assert_eq!(text_of(&body), "the real answer", "{fault:?}: {body}");
            assert!(!has_error_event(&body), "{fault:?}: {body}");
            // Exactly one start of message reached the client.
            let starts = if dialect == 'a' {
                body.matches("event: message_start").count()
            } else {
                body.matches("\"role\":\"assistant\"").count()
            };
            assert_eq!(starts, 1, "{fault:?}: {body}");
        }
        assert_eq!(a.hits(), 2);
        let st = w.status().await;
        assert_eq!(target(&st, "a")["failures"], 2, "{fault:?} {st}");
    }
}

#[tokio::test]
async fn after_content_a_failure_ends_the_stream_with_an_error_event() {
    let a = FaultyUpstream::start(Behaviour::DropMidStream).await;
    let b = FaultyUpstream::start(Behaviour::ok("unused")).await;
    let w = weir(&two(&a, &b, "", "retries = 0")).await;
    let (status, _, body) = w.call('a', "m", true, &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("Partial"), "{body}");
    assert!(body.contains("event: error"), "{body}");
    assert_eq!(b.hits(), 0);
    let st = w.status().await;
    assert_eq!(target(&st, "a")["failures"], 1, "{st}");
    assert_eq!(target(&st, "a")["in_flight"], 0, "{st}");
}

#[tokio::test]
async fn a_slow_drip_is_served_to_the_end() {
    let a = FaultyUpstream::start(Behaviour::SlowDrip {
        interval: Duration::from_millis(30),
    })
    .await;
    let b = FaultyUpstream::start(Behaviour::ok("unused")).await;
    let w = weir(&two(&a, &b, "", "")).await;
    let (status, h, body) = w.call('o', "m", true, &[]).await;
    assert_eq!(
        (status, &h["x-weir-provider"]),
        (200, &"a".parse().unwrap())
    );
    assert_eq!(text_of(&body), weir_testkit::upstream::SLOW_DRIP_TEXT);
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
}

#[tokio::test]
async fn each_rate_limit_header_format_cools_only_that_key_for_that_model_for_its_time() {
    // (format, provider kind, the cooldown it should give, in seconds, with slack)
    let cases: Vec<(RateLimitFormat, &str, u64, u64)> = vec![
        (RateLimitFormat::RetryAfterSeconds(30), "anthropic", 29, 30),
        (RateLimitFormat::RetryAfterMs(20_000), "openai", 19, 20),
        (RateLimitFormat::RetryAfterDate(40), "anthropic", 38, 41),
        (RateLimitFormat::Anthropic(50), "anthropic", 48, 51),
        (RateLimitFormat::OpenAi("1m0s".into()), "openai", 59, 60),
        (RateLimitFormat::Groq("2m59.56s".into()), "openai", 178, 180),
        (RateLimitFormat::Cerebras(33011.38), "openai", 3599, 3600),
        // Nothing said: [routing] default_cooldown (10 s).
        (RateLimitFormat::None, "anthropic", 9, 10),
    ];
    for (format, kind, lo, hi) in cases {
        let up = FaultyUpstream::start(Behaviour::per_key(
            [("sk-k1", Behaviour::rate_limited(format.clone()))],
            Behaviour::ok("served"),
        ))
        .await;
        let base = if kind == "openai" {
            format!("{}/v1", up.url())
        } else {
            up.url().to_owned()
        };
        let w = weir(&format!(
            "[providers.p]\nkind = \"{kind}\"\nbase_url = \"{base}\"\nkeys = [\"sk-k1\", \"sk-k2\"]\n\
             [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\" }}]\n"
        ))
        .await;
        for _ in 0..4 {
            let (status, _, body) = w.call('o', "m", false, &[]).await;
            assert_eq!(status, 200, "{format:?}: {body}");
            assert_eq!(text_of(&body), "served");
        }
        let keys: Vec<String> = up
            .requests()
            .iter()
            .map(|r| r.key().unwrap().to_owned())
            .collect();
        assert_eq!(
            keys.iter().filter(|k| *k == "sk-k1").count(),
            1,
            "{format:?}: {keys:?}"
        );
        let st = w.status().await;
        let k1 = &st["providers"][0]["keys"][0];
        // Upstreams' limits are per model: the key rests for the model asked for.
        assert_eq!(k1["state"], "ok", "{format:?} {st}");
        assert_eq!(k1["model_limits"][0]["model"], "m", "{format:?} {st}");
        let ms = k1["model_limits"][0]["ms"].as_u64().unwrap();
        assert!(
            (lo * 1000..=hi * 1000).contains(&ms),
            "{format:?}: cooldown {ms} ms, expected {lo}-{hi} s"
        );
        assert_eq!(st["providers"][0]["keys"][1]["state"], "ok");
        let text = st.to_string();
        assert!(!text.contains("sk-k1") && !text.contains("sk-k2"), "{text}");
        let m = w.metrics().await;
        assert!(
            m.contains(r#"weir_key_cooldowns_total{provider="p",key="key-1"} 1"#),
            "{m}"
        );
    }
}

/// Anthropic's limits are per model class (OpenAI's, Gemini's and Groq's per model): Opus
/// rate limited on a key leaves that key serving Haiku (Claude Code's side requests), on
/// a glob route forwarding the client's names; Opus is passed over until its reset.
#[tokio::test]
async fn a_429_for_one_model_leaves_the_key_serving_the_others() {
    let up = FaultyUpstream::start(Behaviour::per_model(
        [(
            "claude-opus-x",
            Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(30)),
        )],
        Behaviour::ok("served"),
    ))
    .await;
    let w = weir(&format!(
        "[providers.p]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-only\"]\n\
         [[models]]\nname = \"claude-*\"\ntargets = [{{ provider = \"p\" }}]\n",
        up.url()
    ))
    .await;
    let (status, h, body) = w.call('a', "claude-opus-x", false, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h["retry-after"], "30");
    assert!(
        h.get("x-should-retry").is_none(),
        "a short wait is the SDK's to take"
    );
    for _ in 0..3 {
        let (status, _, body) = w.call('a', "claude-haiku-x", false, &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    // Opus again: told to wait, without a request upstream.
    let hits = up.hits();
    let (status, h, body) = w.call('a', "claude-opus-x", true, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("claude-opus-x"), "{body}");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((28..=30).contains(&wait), "{wait}");
    assert_eq!(up.hits(), hits);
    let st = w.status().await;
    let k = &st["providers"][0]["keys"][0];
    assert_eq!(k["state"], "ok", "{st}");
    assert_eq!(k["model_limits"][0]["model"], "claude-opus-x", "{st}");
}

/// A wait of an hour is the caller's to plan: the JS SDKs would sleep through it silently
/// before each of their retries.
#[tokio::test]
async fn a_long_retry_after_tells_the_sdks_not_to_retry() {
    let up = FaultyUpstream::start(Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(
        3600,
    )))
    .await;
    let w = weir(&format!(
        "[providers.p]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-only\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\" }}]\n",
        up.url()
    ))
    .await;
    for dialect in ['a', 'o'] {
        let (status, h, body) = w.call(dialect, "m", false, &[]).await;
        assert_eq!(status, 429, "{body}");
        let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait > 3500, "{wait}");
        assert_eq!(h["x-should-retry"], "false");
    }
}

#[tokio::test]
async fn every_target_rate_limited_gives_429_with_the_smallest_retry_after() {
    let a = FaultyUpstream::start(Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(
        40,
    )))
    .await;
    let b = FaultyUpstream::start(Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(
        20,
    )))
    .await;
    let w = weir(&two(&a, &b, "", "")).await;
    for dialect in ['a', 'o'] {
        let (status, h, body) = w.call(dialect, "m", false, &[]).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(h["retry-after"], "20");
        let v: Value = serde_json::from_str(&body).unwrap();
        let msg = if dialect == 'a' {
            assert_eq!(v["error"]["type"], "rate_limit_error");
            v["error"]["message"].as_str().unwrap().to_owned()
        } else {
            v["error"]["message"].as_str().unwrap().to_owned()
        };
        assert!(msg.contains("every target is rate limited"), "{msg}");
        assert!(
            !body.contains("sk-upstream") && !body.contains("127.0.0.1"),
            "{body}"
        );
    }
    // The first request cooled both keys: the second spent no upstream request.
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn a_400_is_the_clients_and_is_returned_without_trying_elsewhere() {
    let a = FaultyUpstream::start(Behaviour::json(
        400,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
    ))
    .await;
    let b = FaultyUpstream::start(Behaviour::ok("unused")).await;
    let w = weir(&two(&a, &b, "", "")).await;
    let (status, _, body) = w.call('a', "m", false, &[]).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "max_tokens: too large");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}

#[tokio::test]
async fn all_targets_failing_retries_then_gives_a_sanitized_summary() {
    let a = FaultyUpstream::start(Behaviour::Html500).await;
    let b = FaultyUpstream::start(Behaviour::ResetConnection).await;
    let w = weir(&two(&a, &b, "", "retries = 1")).await;
    let (status, _, body) = w.call('o', "m", false, &[]).await;
    assert_eq!(status, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("all targets failed: a (m): 500"), "{msg}");
    assert!(msg.contains("b (m): connection failed"), "{msg}");
    assert!(
        !body.contains("nginx") && !body.contains("127.0.0.1") && !body.contains("sk-upstream"),
        "{body}"
    );
    // One retry: each target twice.
    assert_eq!((a.hits(), b.hits()), (2, 2));
    let m = w.metrics().await;
    assert!(m.contains(r#"weir_retries_total{model="m"} 1"#), "{m}");
    assert!(m.contains(r#"weir_failovers_total{provider="a"} 2"#), "{m}");
}

#[tokio::test]
async fn a_breaker_opens_skips_the_target_probes_and_closes() {
    let a = FaultyUpstream::start(Behaviour::Overloaded529).await;
    let b = FaultyUpstream::start(Behaviour::ok("from b")).await;
    let w = weir(&two(
        &a,
        &b,
        "",
        "retries = 0\nbreaker_failures = 2\nbreaker_open = \"300ms\"",
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(w.call('a', "m", false, &[]).await.0, 200);
    }
    let st = w.status().await;
    assert_eq!(target(&st, "a")["breaker"], "open", "{st}");
    assert!(target(&st, "a")["open_ms"].as_u64().unwrap() <= 300);
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_breaker_state{model="m",provider="a"} 2"#),
        "{m}"
    );
    // Open: no request reaches a.
    for _ in 0..3 {
        let (_, h, _) = w.call('a', "m", false, &[]).await;
        assert_eq!(h["x-weir-provider"], "b");
    }
    assert_eq!(a.hits(), 2);
    // a recovers; after the open period one probe (not a user request) closes the
    // breaker.
    a.set(Behaviour::ok("from a"));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Its time up, the breaker lets the next request through as its probe: half open, in
    // the metrics as in /status, before any request comes.
    assert_eq!(target(&w.status().await, "a")["breaker"], "half_open");
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_breaker_state{model="m",provider="a"} 1"#),
        "{m}"
    );
    let (_, h, _) = w.call('a', "m", false, &[]).await;
    assert_eq!(h["x-weir-provider"], "b");
    let mut closed = false;
    for _ in 0..100 {
        if target(&w.status().await, "a")["breaker"] == "closed" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed);
    // The probe: the token counter, which this upstream lacks (404), then a one-token
    // message.
    let paths: Vec<String> = a.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths[2..],
        ["/v1/messages/count_tokens", "/v1/messages"],
        "{paths:?}"
    );
    assert_eq!(
        a.requests()[3].json().unwrap()["max_tokens"],
        1,
        "{paths:?}"
    );
    let (_, h, body) = w.call('a', "m", false, &[]).await;
    assert_eq!(
        (
            h["x-weir-provider"].to_str().unwrap(),
            text_of(&body).as_str()
        ),
        ("a", "from a")
    );
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_breaker_state{model="m",provider="a"} 0"#),
        "{m}"
    );
    for to in ["open", "half_open", "closed"] {
        assert!(
            m.contains(&format!(
                r#"weir_breaker_transitions_total{{provider="a",model="m",to="{to}"}} 1"#
            )),
            "{m}"
        );
    }
}

/// An Anthropic-compatible service without `count_tokens` (404) is probed with a
/// one-token message: its breaker stays open while messages still fail, and closes when
/// they are served again.
#[tokio::test]
async fn a_service_without_count_tokens_is_probed_with_a_message() {
    let not_found = Behaviour::json(
        404,
        &json!({"type": "error", "error": {"type": "not_found_error", "message": "no such path"}}),
    );
    let a = FaultyUpstream::start(Behaviour::per_path(
        [("/count_tokens", not_found.clone())],
        Behaviour::Overloaded529,
    ))
    .await;
    let b = FaultyUpstream::start(Behaviour::ok("from b")).await;
    let w = weir(&two(
        &a,
        &b,
        "",
        "retries = 0\nbreaker_failures = 1\nbreaker_open = \"200ms\"\nbreaker_max_open = \"200ms\"",
    ))
    .await;
    assert_eq!(w.call('a', "m", false, &[]).await.0, 200);
    assert_eq!(target(&w.status().await, "a")["breaker"], "open");
    // The probe: count_tokens (404), then a message (still 529): open again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(w.call('a', "m", false, &[]).await.0, 200);
    let mut paths = Vec::new();
    for _ in 0..100 {
        paths = a.requests().iter().map(|r| r.path.clone()).collect();
        if paths.len() >= 3 && target(&w.status().await, "a")["breaker"] == "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        paths,
        ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages"],
        "{paths:?}"
    );
    assert_eq!(target(&w.status().await, "a")["breaker"], "open");
    // Messages served again: the next probe closes it.
    a.set(Behaviour::per_path(
        [("/count_tokens", not_found)],
        Behaviour::ok("from a"),
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    w.call('a', "m", false, &[]).await;
    let mut closed = false;
    for _ in 0..100 {
        if target(&w.status().await, "a")["breaker"] == "closed" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "{}", w.status().await);
}

#[tokio::test]
async fn weighted_and_round_robin_distribute_and_sessions_stick() {
    let a = FaultyUpstream::start(Behaviour::ok("a")).await;
    let b = FaultyUpstream::start(Behaviour::ok("b")).await;
    let w = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         [providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         [[models]]\nname = \"weighted\"\nstrategy = \"weighted\"\ntargets = [{{ provider = \"a\", weight = 3 }}, {{ provider = \"b\", weight = 1 }}]\n\
         [[models]]\nname = \"rr\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n\
         [[models]]\nname = \"loose\"\nstrategy = \"round_robin\"\nsticky = false\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n",
        a.url(),
        b.url()
    ))
    .await;
    for _ in 0..40 {
        assert_eq!(w.call('a', "weighted", false, &[]).await.0, 200);
    }
    assert_eq!((a.hits(), b.hits()), (30, 10));

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(text_of(&w.call('a', "rr", false, &[]).await.2));
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
    for header in ["x-weir-session", "x-claude-code-session-id"] {
        let first = text_of(&w.call('a', "rr", false, &[(header, "s-1")]).await.2);
        for _ in 0..4 {
            let again = text_of(&w.call('o', "rr", true, &[(header, "s-1")]).await.2);
            assert_eq!(again, first, "{header}");
        }
    }
    // metadata.user_id is a session too.
    let body = json!({"model": "rr", "max_tokens": 5, "metadata": {"user_id": "user-7"}, "messages": [{"role": "user", "content": "hi"}]});
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..4 {
        let r = client()
            .post(format!("{}/v1/messages", w.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        firsts.insert(text_of(&r.text().await.unwrap()));
    }
    assert_eq!(firsts.len(), 1);
    // sticky = false: sessions are ignored.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(text_of(
            &w.call('a', "loose", false, &[("x-weir-session", "s-1")])
                .await
                .2,
        ));
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_while_one_key_answers_429_lose_none() {
    let up = FaultyUpstream::start(Behaviour::per_key(
        [(
            "sk-k2",
            Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(60)),
        )],
        Behaviour::ok("fine"),
    ))
    .await;
    let w = Arc::new(
        weir(&format!(
            "[providers.p]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-k1\", \"sk-k2\", \"sk-k3\"]\n\
             [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\" }}]\n",
            up.url()
        ))
        .await,
    );
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                let dialect = if i % 2 == 0 { 'a' } else { 'o' };
                let (status, _, body) = w.call(dialect, "m", i % 4 < 2, &[]).await;
                status == 200 && text_of(&body) == "fine" && !has_error_event(&body)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 200);
    let st = w.status().await;
    let keys = st["providers"][0]["keys"].as_array().unwrap();
    assert_eq!(keys[1]["model_limits"][0]["model"], "m", "{st}");
    assert!(keys.iter().all(|k| k["in_flight"] == 0), "{st}");
    assert_eq!(target(&st, "p")["in_flight"], 0);
}

#[tokio::test]
async fn a_missing_capability_is_dropped_with_a_warning_when_the_model_says_so() {
    let up = FaultyUpstream::start(Behaviour::ok("described")).await;
    let w = weir(&format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"{}/v1\"\ncapabilities = {{ images = false }}\n\
         [[models]]\nname = \"strict\"\ntargets = [{{ provider = \"p\" }}]\n\
         [[models]]\nname = \"lenient\"\nunsupported = \"drop\"\ntargets = [{{ provider = \"p\" }}]\n",
        up.url()
    ))
    .await;
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        ]}]})
    };
    let r = client()
        .post(format!("{}/v1/messages", w.url))
        .bearer_auth(KEY)
        .json(&body("strict"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("does not support images"), "{msg}");
    assert_eq!(up.hits(), 0);
    let r = client()
        .post(format!("{}/v1/messages", w.url))
        .bearer_auth(KEY)
        .json(&body("lenient"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-weir-warning"],
        "p/lenient: dropped unsupported: images"
    );
    let sent = up.requests()[0].json().unwrap();
    assert!(!sent.to_string().contains("example.com"), "{sent}");
}

#[test]
fn routing_config_errors_point_at_the_line() {
    let text = "[providers.p]\nkind = \"mock\"\n[[models]]\nname = \"m\"\nunsupported = \"ignore\"\ntargets = [{ provider = \"p\", weight = 2 }]\n";
    let cfg = weir_server::config::parse(None, text).unwrap();
    let errs: Vec<String> = weir_server::build(&cfg, None, text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("5:15: unknown `unsupported = \"ignore\"`"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("`weight` only applies to `strategy = \"weighted\"`"),
        "{errs:?}"
    );
}

/// Weir with one mock-backed model and a client key with `limits` (TOML lines).
async fn limited(limits: &str, extra: &str) -> Weir {
    start(&format!(
        "[server]\nshutdown_grace = \"1s\"\n[auth]\nadmin_key = \"{ADMIN}\"\n\
         [[auth.keys]]\nname = \"limited\"\nkey = \"{KEY}\"\n{limits}\n\
         [providers.mock]\nkind = \"mock\"\nstream_delay = \"0ms\"\n{extra}"
    ))
    .await
}

#[tokio::test]
async fn rpm_refuses_with_429_and_retry_after_in_the_clients_dialect() {
    let w = limited("rpm = 2", "").await;
    for _ in 0..2 {
        assert_eq!(w.call('a', "mock", false, &[]).await.0, 200);
    }
    let (status, h, body) = w.call('a', "mock", false, &[]).await;
    assert_eq!(status, 429, "{body}");
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&secs), "{secs}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2 requests per minute"));
    let (status, _, body) = w.call('o', "mock", false, &[]).await;
    assert_eq!(status, 429);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].is_string());
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_limit_rejections_total{key="limited",limit="rpm"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn max_concurrent_counts_streams_until_they_end() {
    let up = FaultyUpstream::start(Behaviour::Stall).await;
    let w = Arc::new(
        limited(
            "max_concurrent = 1",
            &format!(
                "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
                 [[models]]\nname = \"slow\"\ntargets = [{{ provider = \"a\" }}]\n",
                up.url()
            ),
        )
        .await,
    );
    // A stream that stays open holds the key's one slot.
    let resp = client()
        .post(format!("{}/v1/messages", w.url))
        .bearer_auth(KEY)
        .json(&json!({"model": "slow", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, body) = w.call('o', "mock", false, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("1 requests in flight"), "{body}");
    // The client goes away: the slot is free again.
    drop(resp);
    let mut ok = false;
    for _ in 0..50 {
        if w.call('o', "mock", false, &[]).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was not released");
}

#[tokio::test]
async fn tpm_charges_what_the_upstream_reported() {
    // The mock reports a few tokens per answer; 30 per minute are spent after a few calls.
    let w = limited("tpm = 30", "").await;
    let mut refused = None;
    for i in 0..20 {
        let (status, h, _) = w.call('a', "mock", false, &[]).await;
        if status == 429 {
            // A rate comes back within a minute: that refusal may be retried.
            assert!(h.get("x-should-retry").is_none());
            refused = Some((i, h["retry-after"].to_str().unwrap().to_owned()));
            break;
        }
    }
    let (i, retry) = refused.expect("tpm never refused");
    assert!(i >= 1, "refused before any usage was charged");
    assert!(retry.parse::<u64>().unwrap() >= 1);
    let m = w.metrics().await;
    assert!(m.contains(r#"limit="tpm"} 1"#), "{m}");
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_until_midnight_and_cost_is_counted() {
    // The mock reports 1 input and 4 output tokens: $5 a request at these prices.
    let w = limited(
        "daily_budget_usd = 8.0",
        "[pricing.mock]\ninput = 1000000.0\noutput = 1000000.0\n",
    )
    .await;
    assert_eq!(w.call('a', "mock", false, &[]).await.0, 200);
    // Streams are charged from their reported usage too.
    assert_eq!(w.call('o', "mock", true, &[]).await.0, 200);
    let (status, h, body) = w.call('a', "mock", false, &[]).await;
    assert_eq!(status, 429, "{body}");
    let msg = serde_json::from_str::<Value>(&body).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("daily budget of $8.00 is spent ($10.00 today)"),
        "{msg}"
    );
    assert!(msg.contains("resets at 00:00 UTC"), "{msg}");
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&secs));
    // The SDKs would sleep until midnight and retry: they are told not to.
    assert_eq!(h["x-should-retry"], "false");
    let (status, h, body) = w.call('o', "mock", false, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h["x-should-retry"], "false");
    let v = serde_json::from_str::<Value>(&body).unwrap();
    // OpenAI's own shape for a spent quota: type and code.
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_cost_usd_total{key="limited",model="mock",provider="mock"} 10.0"#),
        "{m}"
    );
    assert!(m.contains(r#"limit="budget"} 2"#), "{m}");
}

#[tokio::test]
async fn ten_reloads_under_two_hundred_requests_in_flight_lose_none() {
    let up = FaultyUpstream::start(Behaviour::delayed(
        Duration::from_millis(150),
        Behaviour::ok("steady"),
    ))
    .await;
    let base = up.url().to_owned();
    let config = move |keys: &str| {
        format!(
            "[server]\nshutdown_grace = \"1s\"\n[auth]\nadmin_key = \"{ADMIN}\"\n\
             [[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
             [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [{keys}]\n\
             [[models]]\nname = \"m\"\ntargets = [{{ provider = \"a\" }}]\n",
            base
        )
    };
    let first = config("\"sk-k1\"");
    let cfg = weir_server::config::parse(None, &first).unwrap();
    let live = weir_server::Live::new(Arc::new(weir_server::build(&cfg, None, &first).unwrap()));
    // Each reload flips the key pool between one and two keys; an invalid config is refused.
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (l, t) = (live.clone(), turn.clone());
    let next = move || {
        let n = t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 5 {
            // A config that does not build: refused, the running one stays.
            let bad = "[providers.x]\nkind = \"nope\"\n";
            let cfg = weir_server::config::parse(None, bad).map_err(|e| vec![e.to_string()])?;
            return weir_server::rebuild(&cfg, None, bad, &l.get())
                .map(|_| ())
                .map_err(|e| e.iter().map(ToString::to_string).collect());
        }
        let text = config(if n % 2 == 0 {
            "\"sk-k1\", \"sk-k2\""
        } else {
            "\"sk-k2\""
        });
        let cfg = weir_server::config::parse(None, &text).map_err(|e| vec![e.to_string()])?;
        let app = weir_server::rebuild(&cfg, None, &text, &l.get())
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        l.set(Arc::new(app));
        Ok(())
    };
    live.set_reload(Arc::new(next));
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = Arc::new(Weir {
        url: format!("http://{}", api.local_addr().unwrap()),
        admin: format!("http://{}", admin.local_addr().unwrap()),
    });
    tokio::spawn(weir_server::run_live(
        live,
        api,
        Some(admin),
        std::future::pending(),
    ));

    let requests: Vec<_> = (0..200)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i % 50)).await;
                let dialect = if i % 2 == 0 { 'a' } else { 'o' };
                let (status, _, body) = w.call(dialect, "m", i % 3 == 0, &[]).await;
                (status, text_of(&body))
            })
        })
        .collect();
    let mut reloads = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let r = client()
            .post(format!("{}/reload", w.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        reloads.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    let mut ok = 0;
    for r in requests {
        let (status, text) = r.await.unwrap();
        assert_eq!((status, text.as_str()), (200, "steady"));
        ok += 1;
    }
    assert_eq!(ok, 200);
    let codes: Vec<u16> = reloads.iter().map(|r| r.0).collect();
    assert_eq!(
        codes,
        [200, 200, 200, 200, 200, 400, 200, 200, 200, 200],
        "{reloads:?}"
    );
    assert!(
        reloads[5].1.contains("the running config stays"),
        "{}",
        reloads[5].1
    );
    // The pool after the last reload (n = 10: two keys) serves with both.
    let keys: std::collections::HashSet<String> = up
        .requests()
        .iter()
        .map(|r| r.key().unwrap().to_owned())
        .collect();
    assert!(keys.contains("sk-k1") && keys.contains("sk-k2"), "{keys:?}");
}

/// A fixed JSON body on every path.
fn fixed(body: &str) -> Behaviour {
    Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "application/json".into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn a_same_dialect_answer_reaches_the_client_byte_for_byte_and_its_usage_is_counted() {
    // Odd spacing, key order and fields no decoder knows: only verbatim forwarding keeps
    // them exactly.
    let openai_body = r#"{ "id":"chatcmpl-x","object":"chat.completion","created":1,"model":"up-model",
  "choices":[{"index":0,"message":{"role":"assistant","content":"hi","vendor_field":{"a":[1,2]}},"finish_reason":"stop"}],
  "usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10},"system_fingerprint":"fp_1","x_extra":1.50 }"#;
    let anthropic_body = r#"{"type":"message","usage":{"output_tokens":4,"input_tokens":11},"id":"msg_x","role":"assistant","model":"up-model",
 "content":[{"type":"text","text":"hi","citations":null}],"stop_reason":"end_turn","stop_sequence":null,"container":{"id":"c1"}}"#;
    let o = FaultyUpstream::start(fixed(openai_body)).await;
    let a = FaultyUpstream::start(fixed(anthropic_body)).await;
    let w = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-o\"]\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-a\"]\n\
         [[models]]\nname = \"mo\"\ntargets = [{{ provider = \"o\" }}]\n\
         [[models]]\nname = \"ma\"\ntargets = [{{ provider = \"a\" }}]\n",
        o.url(),
        a.url()
    ))
    .await;
    let (status, _, body) = w.call('o', "mo", false, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, openai_body);
    let (status, _, body) = w.call('a', "ma", false, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, anthropic_body);
    // Across dialects the answer is translated as before.
    let (status, _, body) = w.call('a', "mo", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["content"][0]["text"], "hi");
    assert_eq!(v["usage"]["input_tokens"], 7);
    let (status, _, body) = w.call('o', "ma", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    // The verbatim answers were still accounted.
    let m = w.metrics().await;
    for (model, provider, direction, n) in [
        ("mo", "o", "input", 7),
        ("mo", "o", "output", 3),
        ("ma", "a", "input", 11),
        ("ma", "a", "output", 4),
    ] {
        let line = format!(
            "weir_tokens_total{{key=\"tester\",model=\"{model}\",provider=\"{provider}\",direction=\"{direction}\"}} {}",
            // Each model was asked twice, once per client dialect.
            n * 2
        );
        assert!(m.contains(&line), "missing {line} in\n{m}");
    }
}

#[tokio::test]
async fn a_same_dialect_answer_that_is_not_a_response_fails_over() {
    // A 200 whose body is not a chat completion: the next target answers.
    let broken = FaultyUpstream::start(fixed(r#"{"object":"list","data":[]}"#)).await;
    let good = FaultyUpstream::start(Behaviour::ok("from good")).await;
    let w = weir(&format!(
        "[providers.broken]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n\
         [providers.good]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-g\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"broken\" }}, {{ provider = \"good\" }}]\n\
         [routing]\nretries = 0\n",
        broken.url(),
        good.url()
    ))
    .await;
    let (status, h, body) = w.call('o', "m", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-weir-provider"], "good");
    assert_eq!(text_of(&body), "from good");
}

#[tokio::test]
async fn one_hour_cache_writes_and_web_searches_are_priced_whole_and_streamed() {
    // A million cache writes, a quarter of them kept one hour: at $1 input and $1.25 the
    // five-minute write, the hour at twice the input (Anthropic's rate) unless priced.
    let usage = json!({
        "input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 1_000_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 750_000, "ephemeral_1h_input_tokens": 250_000},
        "server_tool_use": {"web_search_requests": 1}
    });
    let whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": usage});
    let opening = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": usage}});
    let stream = format!(
        "event: message_start\ndata: {opening}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"ok\"}}}}\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":0,\"server_tool_use\":{{\"web_search_requests\":1}}}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let up = FaultyUpstream::start(Behaviour::json(200, &whole)).await;
    let w = start(&format!(
        "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"k\"\nkey = \"{KEY}\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\" }}]\n\
         [pricing.\"claude-x\"]\ninput = 1.0\noutput = 0.0\ncache_write = 1.25\nweb_search = 1000.0\n",
        up.url()
    ))
    .await;
    let (status, _, body) = w.call('a', "claude-x", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    // The client gets the breakdown as it came.
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["usage"]["cache_creation"]["ephemeral_1h_input_tokens"],
        250_000
    );
    up.set(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body: stream,
    });
    let (status, _, body) = w.call('a', "claude-x", true, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ephemeral_1h_input_tokens"), "{body}");
    // 0.75 x 1.25 + 0.25 x 2.0 = 1.4375 a request, and $1 for its web search.
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_cost_usd_total{key="k",model="claude-x",provider="a"} 4.875"#),
        "{m}"
    );
}

/// A reload keeps what was learnt about the upstreams both configs call: a key resting
/// after a 429 stays resting and an open breaker stays open, even when the file did not
/// change; a provider moved to another base URL starts afresh.
#[tokio::test]
async fn a_reload_keeps_key_rests_and_breakers_of_unchanged_upstreams() {
    let limited = FaultyUpstream::start(Behaviour::Status {
        status: 429,
        headers: vec![("retry-after".into(), "30".into())],
        content_type: "application/json".into(),
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            .into(),
    })
    .await;
    let failing = FaultyUpstream::start(Behaviour::json(
        500,
        &json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
    ))
    .await;
    let good = FaultyUpstream::start(Behaviour::ok("fine")).await;
    // (The breaking target has another beside it: an open breaker is passed over only
    // where the request has somewhere else to go.)
    let spare = FaultyUpstream::start(Behaviour::ok("spare")).await;
    let config = |a_url: &str| {
        format!(
            "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
             [providers.a]\nkind = \"anthropic\"\nbase_url = \"{a_url}\"\nkeys = [\"sk-k1\"]\n\
             [providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-k2\"]\n\
             [providers.c]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-k3\"]\n\
             [[models]]\nname = \"rests\"\ntargets = [{{ provider = \"a\" }}]\n\
             [[models]]\nname = \"breaks\"\ntargets = [{{ provider = \"b\" }}, {{ provider = \"c\" }}]\n\
             [routing]\nretries = 0\nbreaker_failures = 1\nbreaker_open = \"1m\"\n",
            failing.url(),
            spare.url()
        )
    };
    let text = config(limited.url());
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let live = weir_server::Live::new(Arc::new(weir_server::build(&cfg, None, &text).unwrap()));
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = Weir {
        url: format!("http://{}", api.local_addr().unwrap()),
        admin: format!("http://{}", admin.local_addr().unwrap()),
    };
    tokio::spawn(weir_server::run_live(
        live.clone(),
        api,
        Some(admin),
        std::future::pending(),
    ));
    let reload = |text: &str| {
        let cfg = weir_server::config::parse(None, text).unwrap();
        let app = weir_server::rebuild(&cfg, None, text, &live.get()).unwrap();
        live.set(Arc::new(app));
    };
    assert_eq!(w.call('a', "rests", false, &[]).await.0, 429);
    assert_eq!(limited.hits(), 1);
    assert_eq!(w.call('a', "breaks", false, &[]).await.0, 200);
    assert_eq!((failing.hits(), spare.hits()), (1, 1));
    // The same file again: the key still rests (the client is told without a call), the
    // breaker is still open.
    reload(&text);
    let (status, h, _) = w.call('a', "rests", false, &[]).await;
    assert_eq!(status, 429);
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((25..=30).contains(&wait), "{wait}");
    assert_eq!(limited.hits(), 1, "a resting key was called after a reload");
    assert_eq!(w.call('a', "breaks", false, &[]).await.0, 200);
    assert_eq!(
        (failing.hits(), spare.hits()),
        (1, 2),
        "an open breaker's target was called after a reload"
    );
    let status = w.status().await;
    let b = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["provider"] == "b")
        .unwrap();
    assert_eq!(b["breaker"], "open", "{status}");
    // Provider a moved elsewhere: its key's rest was the old upstream's.
    reload(&config(good.url()));
    let (status, _, body) = w.call('a', "rests", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(good.hits(), 1);
}

#[tokio::test]
async fn a_configured_long_context_tier_prices_a_long_prompt_whole() {
    // Prompts over 1,000 tokens cost $2 input and $20 output a million: one request of 600
    // input and 500 cache reads (1,100 in all) and one of 1,000 exactly.
    let answer = |input: u64, read: u64| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1_000,
            "cache_read_input_tokens": read, "cache_creation_input_tokens": 0}})
    };
    let up = FaultyUpstream::start(Behaviour::json(200, &answer(600, 500))).await;
    let w = start(&format!(
        "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"k\"\nkey = \"{KEY}\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\" }}]\n\
         [pricing.\"claude-x\"]\ninput = 1000.0\noutput = 10000.0\ncache_read = 100.0\n\
         long_context = {{ above = 1000, input = 2000.0, output = 20000.0 }}\n",
        up.url()
    ))
    .await;
    let (status, _, body) = w.call('a', "claude-x", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    up.set(Behaviour::json(200, &answer(500, 500)));
    let (status, _, body) = w.call('a', "claude-x", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    // Long: 600 x 2000 + 500 x 200 (reads rise as input does) + 1000 x 20000, a million:
    // 21.3. Short: 500 x 1000 + 500 x 100 + 1000 x 10000: 10.55.
    let m = w.metrics().await;
    assert!(
        m.contains(r#"weir_cost_usd_total{key="k",model="claude-x",provider="a"} 31.85"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_unknown_model_is_a_404_that_spends_no_limit_and_makes_no_series() {
    let w = limited("rpm = 2", "").await;
    for i in 0..5 {
        for dialect in ['a', 'o'] {
            let (status, _, body) = w.call(dialect, &format!("junk-{i}"), false, &[]).await;
            assert_eq!(status, 404, "{body}");
            assert!(body.contains("is not available"), "{body}");
        }
    }
    // The key's two requests a minute are all still there.
    for _ in 0..2 {
        assert_eq!(w.call('a', "mock", false, &[]).await.0, 200);
    }
    assert_eq!(w.call('a', "mock", false, &[]).await.0, 429);
    let m = w.metrics().await;
    assert!(!m.contains("junk-"), "{m}");
    assert!(
        m.contains(r#"weir_requests_total{key="limited",model="-",provider="-",status="404"} 10"#),
        "{m}"
    );
}

/// The upstream latency Weir reports is the serving attempt's own: not the failed
/// attempts' before it, and for a stream, the time to its first content, which may come
/// after the router hands it over (an opening is held a second at most). `/status` shows
/// the latency of answers, never the penalty a failure weighs in least-latency ranking.
#[tokio::test]
async fn upstream_latency_is_the_serving_attempts_own_to_its_first_content() {
    let a = FaultyUpstream::start(Behaviour::delayed(
        Duration::from_millis(600),
        Behaviour::Html500,
    ))
    .await;
    let b = FaultyUpstream::start(Behaviour::ok("from b")).await;
    let w = weir(&two(&a, &b, "", "retries = 0")).await;
    let (status, h, body) = w.call('a', "m", false, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-weir-provider"], "b");
    let sum = |m: &str, provider: &str| -> f64 {
        let prefix = format!(
            "weir_upstream_duration_seconds_sum{{key=\"tester\",model=\"m\",provider=\"{provider}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix}in {m}"))
            .parse()
            .unwrap()
    };
    let m = w.metrics().await;
    assert!(sum(&m, "b") < 0.5, "b answered at once: {m}");
    let st = w.status().await;
    // a failed (after 600 ms): no latency of an answer to show.
    assert!(target(&st, "a")["latency_ms"].is_null(), "{st}");
    assert!(
        target(&st, "b")["latency_ms"].as_f64().unwrap() < 500.0,
        "{st}"
    );

    // A stream whose first text comes 1.5 s after the request (an event every 500 ms),
    // handed over after the 1 s hold.
    b.set(Behaviour::SlowDrip {
        interval: Duration::from_millis(500),
    });
    let (status, _, body) = w.call('a', "m", true, &[]).await;
    assert_eq!(status, 200, "{body}");
    let m = w.metrics().await;
    assert!(sum(&m, "b") >= 1.4, "{m}");
    let st = w.status().await;
    // A quarter of 1.5 s and more, after an answer at once.
    let shown = target(&st, "b")["latency_ms"].as_f64().unwrap();
    assert!(shown >= 370.0, "{st}");
}

/// Some Anthropic-compatible servers repeat only part of the input in `message_delta`
/// (the uncached part): the input counted is all that the stream reported, merged.
#[tokio::test]
async fn a_stream_counts_its_merged_input_when_a_later_event_repeats_part_of_it() {
    let opening = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 100, "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 2000, "output_tokens": 1}}});
    let stream = format!(
        "event: message_start\ndata: {opening}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"ok\"}}}}\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"input_tokens\":100,\"output_tokens\":300}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body: stream,
    })
    .await;
    let w = start(&format!(
        "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"k\"\nkey = \"{KEY}\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url()
    ))
    .await;
    let (status, _, body) = w.call('a', "claude-x", true, &[]).await;
    assert_eq!(status, 200, "{body}");
    let m = w.metrics().await;
    assert!(
        m.contains(
            r#"weir_tokens_total{key="k",model="claude-x",provider="a",direction="input"} 7100"#
        ),
        "{m}"
    );
    assert!(
        m.contains(
            r#"weir_tokens_total{key="k",model="claude-x",provider="a",direction="output"} 300"#
        ),
        "{m}"
    );
}

/// An upstream's error passed on carries the upstream's own request id, as a served
/// answer does: the header and the log line (what its support asks for).
#[tokio::test]
async fn an_upstream_error_passed_on_names_the_upstreams_request_id() {
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 400,
        headers: vec![("request-id".into(), "req_011CUpstream".into())],
        content_type: "application/json".into(),
        body:
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
                .to_string(),
    })
    .await;
    let w = start(&format!(
        "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"k\"\nkey = \"{KEY}\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url()
    ))
    .await;
    for dialect in ['a', 'o'] {
        let (status, h, body) = w.call(dialect, "claude-x", false, &[]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            h["x-weir-upstream-request-id"], "req_011CUpstream",
            "{body}"
        );
    }
    // Errors told after the upstream's headers: an error event before any content, and
    // an error body with a 200.
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let event_first = Behaviour::Status {
        status: 200,
        headers: vec![("request-id".into(), "req_011CEvent".into())],
        content_type: "text/event-stream".into(),
        body: format!(
            "event: message_start\ndata: {}\n\nevent: error\ndata: {overloaded}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}})
        ),
    };
    let body_200 = Behaviour::Status {
        status: 200,
        headers: vec![("request-id".into(), "req_011CBody".into())],
        content_type: "application/json".into(),
        body: overloaded.to_string(),
    };
    for (b, stream, id) in [
        (event_first, true, "req_011CEvent"),
        (body_200, false, "req_011CBody"),
    ] {
        up.set(b);
        let (status, h, body) = w.call('a', "claude-x", stream, &[]).await;
        assert_eq!(status, 529, "{body}");
        assert_eq!(h["x-weir-upstream-request-id"], id, "{body}");
    }
    // An id that holds the upstream key (in any case) is not an id to pass on, served or
    // failed.
    let w = start(&format!(
        "[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nname = \"k\"\nkey = \"{KEY}\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url()
    ))
    .await;
    for status in [200, 400] {
        up.set(Behaviour::Status {
            status,
            headers: vec![("request-id".into(), "rid-SK-UP".into())],
            content_type: "application/json".into(),
            body: if status == 200 {
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}})
                .to_string()
            } else {
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
                    .to_string()
            },
        });
        let (got, h, body) = w.call('a', "claude-x", false, &[]).await;
        assert_eq!(got, status, "{body}");
        assert!(h.get("x-weir-upstream-request-id").is_none(), "{h:?}");
    }
}
