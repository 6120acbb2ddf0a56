//! Two gateway instances on one real Redis (`WEIR_TEST_REDIS_URL`; the tests that need it
//! skip with a note when it is unset): a key's limit counted across both, a cooldown and a
//! breaker one learns respected by the other, and serving without Redis (fail open or
//! closed), observed through HTTP, `/status` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use weir_testkit::upstream::{Behaviour, FaultyUpstream, RateLimitFormat};

const KEY: &str = "sk-shared-client";
const ADMIN: &str = "sk-admin-shared";

fn redis_url() -> Option<String> {
    match std::env::var("WEIR_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: WEIR_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
            None
        }
    }
}

fn prefix() -> String {
    format!(
        "weir-test-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

struct Weir {
    url: String,
    admin: String,
}

/// One gateway instance: its own app, router, limiters and Redis connection.
async fn instance(text: &str) -> Weir {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let mut app = match weir_server::build(&cfg, None, text) {
        Ok(a) => a,
        Err(e) => panic!("{e:?}"),
    };
    weir_server::connect_state(&mut app).await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = Weir {
        url: format!("http://{}", api.local_addr().unwrap()),
        admin: format!("http://{}", admin.local_addr().unwrap()),
    };
    tokio::spawn(weir_server::run(
        Arc::new(app),
        api,
        Some(admin),
        std::future::pending(),
    ));
    w
}

fn config(state: &str, limits: &str, rest: &str) -> String {
    format!(
        "[server]\nshutdown_grace = \"1s\"\n[auth]\nadmin_key = \"{ADMIN}\"\n\
         [[auth.keys]]\nname = \"team\"\nkey = \"{KEY}\"\n{limits}\n\
         [state]\n{state}\n{rest}"
    )
}

fn redis_state(url: &str, prefix: &str) -> String {
    format!("backend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n")
}

impl Weir {
    async fn get(&self, path: &str) -> String {
        reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn status(&self) -> Value {
        serde_json::from_str(&self.get("/status").await).unwrap()
    }

    async fn call(&self, dialect: char, model: &str) -> (u16, Option<String>, String) {
        let (path, body) = if dialect == 'a' {
            (
                "/v1/messages",
                json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
            )
        } else {
            (
                "/v1/chat/completions",
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            )
        };
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, r.text().await.unwrap())
    }
}

async fn eventually<F, Fut>(mut check: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn one_keys_rpm_is_enforced_jointly_by_two_instances() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let text = config(
        &redis_state(&url, &p),
        "rpm = 4",
        "[providers.mock]\nkind = \"mock\"\n",
    );
    let (one, two) = (instance(&text).await, instance(&text).await);
    let mut ok = 0;
    let mut limited = Vec::new();
    for i in 0..8 {
        let (w, dialect) = if i % 2 == 0 { (&one, 'a') } else { (&two, 'o') };
        let (status, retry, body) = w.call(dialect, "mock").await;
        match status {
            200 => ok += 1,
            429 => limited.push((dialect, retry, body)),
            s => panic!("{s}: {body}"),
        }
    }
    assert_eq!(ok, 4, "rpm = 4 across both instances: {limited:?}");
    assert_eq!(limited.len(), 4);
    for (dialect, retry, body) in &limited {
        let secs: u64 = retry.as_deref().unwrap().parse().unwrap();
        assert!((1..=15).contains(&secs), "{secs}");
        let v: Value = serde_json::from_str(body).unwrap();
        if *dialect == 'a' {
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "rate_limit_error");
        } else {
            assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        }
        assert!(body.contains("4 requests per minute"), "{body}");
    }
    let st = one.status().await;
    assert_eq!(st["state"]["backend"], "redis");
    assert_eq!(st["state"]["reachable"], true);
    let m = two.get("/metrics").await;
    assert!(m.contains("weir_redis_up 1"), "{m}");
    assert!(
        m.contains("weir_limit_rejections_total{key=\"team\",limit=\"rpm\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_cooldown_and_a_breaker_one_instance_learns_are_respected_by_the_other() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let up = FaultyUpstream::start(Behaviour::per_key(
        [(
            "sk-upstream-1",
            Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(60)),
        )],
        Behaviour::ok("served"),
    ))
    .await;
    let broken = FaultyUpstream::start(Behaviour::Html500).await;
    let text = config(
        &redis_state(&url, &p),
        "",
        &format!(
            "[providers.up]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-upstream-1\", \"sk-upstream-2\"]\n\
             [providers.broken]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-broken\"]\n\
             [[models]]\nname = \"m\"\ntargets = [{{ provider = \"up\" }}]\n\
             [[models]]\nname = \"flaky\"\ntargets = [{{ provider = \"broken\" }}, {{ provider = \"up\" }}]\n\
             [routing]\nretries = 0\nbreaker_failures = 1\nbreaker_open = \"60s\"\n",
            up.url(),
            broken.url()
        ),
    );
    let (one, two) = (instance(&text).await, instance(&text).await);
    // Let both subscribe before anything happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let used_key_1 = || {
        up.requests()
            .iter()
            .filter(|r| r.key() == Some("sk-upstream-1"))
            .count()
    };
    // Instance one meets the 429 on key 1 (whichever key it tries first, two requests
    // reach key 1 once) and rests it.
    for _ in 0..2 {
        let (s, _, body) = one.call('a', "m").await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(used_key_1(), 1);
    // The key rests for the model asked for (upstreams' limits are per model).
    let key1 = |st: &Value| {
        st["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "up")
            .unwrap()["keys"][0]["model_limits"][0]["model"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    };
    assert_eq!(key1(&one.status().await), "m");
    eventually(
        || async { key1(&two.status().await) == "m" },
        "instance two to learn the cooldown",
    )
    .await;
    // Instance two never sends to key 1 while it rests.
    for _ in 0..6 {
        let (s, _, body) = two.call('o', "m").await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(used_key_1(), 1, "instance two used the resting key");

    // A breaker opened by instance one is open at instance two: two skips `broken`
    // without sending to it.
    let (s, _, body) = one.call('a', "flaky").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(broken.hits(), 1);
    let breaker = |st: &Value| {
        st["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["provider"] == "broken")
            .unwrap()["breaker"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    eventually(
        || async { breaker(&two.status().await) == "open" },
        "instance two to learn the open breaker",
    )
    .await;
    let (s, _, _) = two.call('a', "flaky").await;
    assert_eq!(s, 200);
    assert_eq!(
        broken.hits(),
        1,
        "instance two sent to a target whose breaker is open"
    );
    let m = two.get("/metrics").await;
    assert!(
        m.contains("weir_breaker_transitions_total{provider=\"broken\""),
        "the shared transition is counted where it is applied: {m}"
    );
}

/// A Responses API response lives with the account that made it: a request continuing it
/// at the other instance goes to the same target and key, though the route rotates targets
/// and the pool rotates keys.
#[tokio::test]
async fn a_response_made_at_one_instance_is_continued_at_the_other_where_it_was_made() {
    let Some(url) = redis_url() else { return };
    let made = |id: &str| {
        Behaviour::json(
            200,
            &json!({"id": id, "object": "response", "status": "completed", "model": "gpt-x",
                    "output": [], "usage": {"input_tokens": 1, "output_tokens": 1}}),
        )
    };
    let a = FaultyUpstream::start(made("resp_shared_a")).await;
    let b = FaultyUpstream::start(made("resp_shared_b")).await;
    let p = prefix();
    let text = config(
        &redis_state(&url, &p),
        "",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-a1\", \"sk-a2\", \"sk-a3\"]\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n\
             [[models]]\nname = \"w\"\nstrategy = \"round_robin\"\n\
             targets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n",
            a.url(),
            b.url()
        ),
    );
    let (one, two) = (instance(&text).await, instance(&text).await);
    // Pins travel by pub/sub only: an instance not yet subscribed when a response is made
    // never learns it (as documented). Both subscribe in the background: wait for them.
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{p}:routing:changes");
    eventually(
        || {
            let (mut conn, channel) = (conn.clone(), channel.clone());
            async move {
                let (_, n): (String, u64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                n >= 2
            }
        },
        "both instances subscribed",
    )
    .await;
    let responses = |w: &Weir, body: Value| {
        let url = format!("{}/v1/responses", w.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // The first instance makes a response at `a` (the route alternates a and b).
    while a.hits() == 0 {
        responses(&one, json!({"model": "w", "input": "hi"})).await;
    }
    let maker = a.requests()[0].key().unwrap().to_owned();
    // Later answers are other responses (the second instance must not pin its own).
    a.set(made("resp_later_a"));
    b.set(made("resp_later_b"));
    // At the second instance, continuing it goes to `a` with that key every time, once
    // the pin has arrived (over pub/sub, within milliseconds). Without it the route
    // alternates targets and the pool keys: four in a row at one key never happens.
    let continued = json!({"model": "w", "input": "more", "previous_response_id": "resp_shared_a"});
    let mut same = false;
    for _ in 0..50 {
        let (a0, b0) = (a.hits(), b.hits());
        for _ in 0..4 {
            responses(&two, continued.clone()).await;
        }
        let keys: Vec<String> = a.requests()[a0..]
            .iter()
            .map(|r| r.key().unwrap().to_owned())
            .collect();
        if b.hits() == b0 && keys.len() == 4 && keys.iter().all(|k| *k == maker) {
            same = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last: Vec<_> = a
        .requests()
        .iter()
        .rev()
        .take(8)
        .map(|r| r.key().map(str::to_owned))
        .collect();
    assert!(
        same,
        "made with {maker}; a's last keys, newest first: {last:?}"
    );
}

#[tokio::test]
async fn without_redis_a_fail_open_gateway_counts_locally_and_a_fail_closed_one_refuses() {
    // Nothing listens on port 1: Redis is away from the start.
    let dead = "backend = \"redis\"\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"100ms\"\n";
    let open = instance(&config(
        dead,
        "rpm = 2",
        "[providers.mock]\nkind = \"mock\"\n",
    ))
    .await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(open.call('a', "mock").await.0);
        }
        v
    };
    assert_eq!(
        statuses,
        [200, 200, 429],
        "this instance's own count applies"
    );
    let st = open.status().await;
    assert_eq!(st["state"]["reachable"], false);
    assert_eq!(st["state"]["fail_mode"], "open");
    let m = open.get("/metrics").await;
    assert!(m.contains("weir_redis_up 0"), "{m}");
    assert!(m.contains("weir_redis_errors_total{op=\"connect\"}"), "{m}");
    assert!(!m.contains("127.0.0.1:1\""), "{m}");

    let closed = instance(&config(
        &format!("{dead}fail_mode = \"closed\"\n"),
        "rpm = 100",
        "[providers.mock]\nkind = \"mock\"\n",
    ))
    .await;
    for dialect in ['a', 'o'] {
        let (status, retry, body) = closed.call(dialect, "mock").await;
        // Overloaded, as each dialect says it (the SDKs retry both).
        assert_eq!(status, if dialect == 'a' { 529 } else { 503 }, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(
            body.contains("do not answer") || body.contains("does not answer"),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["type"].is_string(), "{v}");
    }
}

#[test]
fn state_config_mistakes_are_reported_where_they_are() {
    let cases = [
        ("backend = \"redis\"\n", "needs state.url"),
        (
            "backend = \"redis\"\nurl = \"http://user:hunter2@h\"\n",
            "must start with redis://",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://h\"\nfail_mode = \"maybe\"\n",
            "fail_mode must be",
        ),
        ("backend = \"etcd\"\n", "state.backend must be"),
        (
            "backend = \"memory\"\nurl = \"redis://h\"\n",
            "only used with",
        ),
        (
            "backend = \"memory\"\nfail_mode = \"closed\"\n",
            "state.fail_mode is only used with",
        ),
        (
            "backend = \"memory\"\nprefix = \"team-a\"\n",
            "state.prefix is only used with",
        ),
        (
            "backend = \"memory\"\ntimeout = \"1s\"\n",
            "state.timeout is only used with",
        ),
    ];
    for (state, want) in cases {
        let text = config(state, "", "[providers.mock]\nkind = \"mock\"\n");
        let cfg = weir_server::config::parse(None, &text).unwrap();
        let errors = weir_server::build(&cfg, None, &text).unwrap_err();
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(all.iter().any(|e| e.contains(want)), "{state}: {all:?}");
        assert!(all.iter().all(|e| !e.contains("hunter2")), "{all:?}");
    }
}
