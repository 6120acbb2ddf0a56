//! The shared state against a real Redis (`WEIR_TEST_REDIS_URL`, e.g.
//! `redis://127.0.0.1:6379`; skipped with a note when unset). Each test uses its own key
//! prefix, so tests and CI runs never see each other's counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_testkit::redis::Throwaway;

use tokio::net::{TcpListener, TcpStream};
use weir_model::{CallContext, ChatRequest, Provider, ProviderError, Reply, Secret};
use weir_redis::{Limits, Observe, Options, RedisState, Verdict};
use weir_router::{Route, Router, StateChange, Target};

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

fn options(url: &str, prefix: &str) -> Options {
    Options {
        url: Secret::new(url.to_owned()),
        prefix: prefix.to_owned(),
        fail_open: true,
        timeout: Duration::from_millis(500),
    }
}

#[derive(Default)]
struct Seen {
    errors: AtomicUsize,
    downs: AtomicUsize,
    ups: AtomicUsize,
}

impl Observe for Seen {
    fn error(&self, _op: &'static str) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }
    fn reachable(&self, up: bool) {
        if up {
            self.ups.fetch_add(1, Ordering::SeqCst);
        } else {
            self.downs.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn instance(url: &str, prefix: &str) -> RedisState {
    RedisState::connect(options(url, prefix), None)
        .await
        .unwrap()
}

const LEASE_TTL: Duration = Duration::from_secs(60);

async fn admit(s: &RedisState, limits: &Limits, lease: &str) -> Verdict {
    s.admit("team-a", limits, 10, lease, LEASE_TTL, 20_000)
        .await
        .unwrap()
}

async fn eventually(mut check: impl FnMut() -> bool, what: &str) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn requests_per_minute_are_counted_jointly_by_two_instances() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (one, two) = (instance(&url, &p).await, instance(&url, &p).await);
    let limits = Limits {
        rpm: Some(5),
        ..Limits::default()
    };
    let mut admitted = 0;
    let mut refusal = None;
    for i in 0..10 {
        let s = if i % 2 == 0 { &one } else { &two };
        match admit(s, &limits, &format!("r{i}")).await {
            Verdict::Admitted => admitted += 1,
            r => refusal = Some(r),
        }
    }
    assert_eq!(admitted, 5, "rpm 5 across both instances");
    let Some(Verdict::Refused {
        limit, retry_after, ..
    }) = refusal
    else {
        panic!("no refusal")
    };
    assert_eq!(limit, "rpm");
    // One request every 12 s once the minute's burst is spent.
    assert!(
        retry_after > Duration::from_secs(10) && retry_after <= Duration::from_secs(12),
        "{retry_after:?}"
    );
    // Another key has its own count.
    let other = one
        .admit("team-b", &limits, 10, "x", LEASE_TTL, 20_000)
        .await
        .unwrap();
    assert_eq!(other, Verdict::Admitted);
}

#[tokio::test]
async fn requests_in_flight_are_leases_shared_by_instances_and_given_back() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (one, two) = (instance(&url, &p).await, instance(&url, &p).await);
    let limits = Limits {
        max_concurrent: Some(2),
        ..Limits::default()
    };
    assert_eq!(admit(&one, &limits, "a").await, Verdict::Admitted);
    assert_eq!(admit(&two, &limits, "b").await, Verdict::Admitted);
    match admit(&two, &limits, "c").await {
        Verdict::Refused { limit, detail, .. } => {
            assert_eq!(limit, "max_concurrent");
            assert_eq!(detail, 2.0);
        }
        v => panic!("{v:?}"),
    }
    // One instance gives its slot back (queued): the other gets it.
    one.release("team-a", "a");
    let mut got = false;
    for _ in 0..100 {
        if admit(&two, &limits, "c").await == Verdict::Admitted {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(got, "the released slot was not given to the other instance");
    // A slot given back and asked for again at once on one instance (a client's next
    // request as soon as it read the answer): admitted, not refused for the release still
    // queued.
    let mut held = "c".to_owned();
    for i in 0..20 {
        two.release("team-a", &held);
        held = format!("c{i}");
        assert_eq!(
            admit(&two, &limits, &held).await,
            Verdict::Admitted,
            "round {i}"
        );
    }
    // A lease is renewed while its instance holds it, long past its ttl, and given back
    // at once when released.
    let one_slot = Limits {
        max_concurrent: Some(1),
        ..Limits::default()
    };
    let ttl = Duration::from_millis(600);
    let held = two.admit("team-c", &one_slot, 0, "held", ttl, 20_000).await;
    assert_eq!(held.unwrap(), Verdict::Admitted);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let next = one.admit("team-c", &one_slot, 0, "next", ttl, 20_000).await;
    assert!(
        matches!(next.unwrap(), Verdict::Refused { .. }),
        "a lease held by a live instance expired"
    );
    // Redis loses it (restarted empty, or it expired during an outage): the holder writes
    // it back at its next renewal.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{p}:key:{{team-c}}:leases"))
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = one.admit("team-c", &one_slot, 0, "next", ttl, 20_000).await;
    assert!(
        matches!(next.unwrap(), Verdict::Refused { .. }),
        "a lease Redis lost was not written back"
    );
    two.release("team-c", "held");
    // Draining (at shutdown) returns once the release is written.
    assert!(two.drain(Duration::from_secs(2)).await);
    let held: i64 = redis::cmd("ZCARD")
        .arg(format!("{p}:key:{{team-c}}:leases"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        held, 0,
        "the released lease is still in Redis after draining"
    );
    let mut got = false;
    for _ in 0..100 {
        let next = one.admit("team-c", &one_slot, 0, "next", ttl, 20_000).await;
        if next.unwrap() == Verdict::Admitted {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(got, "the released lease was not given back");
    // The lease of an instance that died holding it (its runtime gone, as a killed
    // process's) expires after its ttl: nothing renews it.
    let (u, q) = (url.clone(), p.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dying = instance(&u, &q).await;
            let one_slot = Limits {
                max_concurrent: Some(1),
                ..Limits::default()
            };
            let lost = dying
                .admit("team-d", &one_slot, 0, "lost", ttl, 20_000)
                .await;
            assert_eq!(lost.unwrap(), Verdict::Admitted);
        });
    })
    .join()
    .unwrap();
    let after = one
        .admit("team-d", &one_slot, 0, "after", ttl, 20_000)
        .await;
    assert!(matches!(after.unwrap(), Verdict::Refused { .. }));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = one
        .admit("team-d", &one_slot, 0, "after", ttl, 20_000)
        .await;
    assert_eq!(after.unwrap(), Verdict::Admitted);
}

/// A limit lowered on reload counts what was already used, at the new rate, but not for
/// longer than the old rate would have (as the in-memory limiter does): before, a lowered
/// `rpm` or `tpm` forgot what was used.
#[tokio::test]
async fn a_lowered_limit_counts_what_was_already_used() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let one = instance(&url, &p).await;
    let before = Limits {
        rpm: Some(60),
        ..Limits::default()
    };
    for i in 0..30 {
        assert_eq!(
            admit(&one, &before, &format!("r{i}")).await,
            Verdict::Admitted
        );
    }
    let after = Limits {
        rpm: Some(6),
        ..Limits::default()
    };
    let Verdict::Refused {
        limit, retry_after, ..
    } = admit(&one, &after, "next").await
    else {
        panic!("30 requests this minute, lowered to 6: admitted");
    };
    assert_eq!(limit, "rpm");
    // The 30 requests are a debt of 30 s at the old rate: no longer than that.
    assert!(
        retry_after > Duration::from_secs(20) && retry_after <= Duration::from_secs(30),
        "{retry_after:?}"
    );
    let before = Limits {
        tpm: Some(1000),
        ..Limits::default()
    };
    let v = one
        .admit("team-t", &before, 498, "t", LEASE_TTL, 20_000)
        .await
        .unwrap();
    assert_eq!(v, Verdict::Admitted);
    let after = Limits {
        tpm: Some(200),
        ..Limits::default()
    };
    let Verdict::Refused {
        limit, retry_after, ..
    } = one
        .admit("team-t", &after, 10, "u", LEASE_TTL, 20_000)
        .await
        .unwrap()
    else {
        panic!("498 tokens this minute, lowered to 200: admitted");
    };
    assert_eq!(limit, "tpm");
    assert!(
        retry_after > Duration::from_secs(20) && retry_after <= Duration::from_secs(31),
        "{retry_after:?}"
    );
}

#[tokio::test]
async fn tokens_per_minute_take_the_estimate_and_charge_the_real_usage() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (one, two) = (instance(&url, &p).await, instance(&url, &p).await);
    let limits = Limits {
        tpm: Some(600),
        ..Limits::default()
    };
    let v = one
        .admit("team-a", &limits, 100, "a", LEASE_TTL, 20_000)
        .await
        .unwrap();
    assert_eq!(v, Verdict::Admitted);
    // It really used 700: 600 of debt beyond the estimate leaves the bucket at -100.
    one.charge("team-a", 600, 100.0 - 700.0);
    let mut refused = None;
    for _ in 0..100 {
        match two
            .admit("team-a", &limits, 10, "b", LEASE_TTL, 20_000)
            .await
            .unwrap()
        {
            Verdict::Admitted => tokio::time::sleep(Duration::from_millis(10)).await,
            r => {
                refused = Some(r);
                break;
            }
        }
    }
    match refused {
        Some(Verdict::Refused {
            limit, retry_after, ..
        }) => {
            assert_eq!(limit, "tpm");
            // About 100 tokens of debt at 10 per second (110 when a request of 10 got in
            // before the charge landed).
            assert!(
                retry_after > Duration::from_secs(9) && retry_after <= Duration::from_secs(12),
                "{retry_after:?}"
            );
        }
        other => panic!("the charge did not reach the other instance: {other:?}"),
    }
}

#[tokio::test]
async fn a_daily_budget_is_spent_jointly_and_refused_until_midnight() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (one, two) = (instance(&url, &p).await, instance(&url, &p).await);
    let limits = Limits {
        daily_budget_usd: Some(1.0),
        ..Limits::default()
    };
    assert_eq!(admit(&one, &limits, "a").await, Verdict::Admitted);
    one.spend("team-a", 20_000, 0.6);
    two.spend("team-a", 20_000, 0.6);
    let mut refused = None;
    for _ in 0..100 {
        if let Verdict::Refused {
            limit,
            retry_after,
            detail,
        } = admit(&two, &limits, "b").await
        {
            refused = Some((limit, retry_after, detail));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (limit, retry_after, detail) = refused.expect("the budget was never spent");
    assert_eq!(limit, "budget");
    assert!((detail - 1.2).abs() < 1e-9, "{detail}");
    assert!(retry_after <= Duration::from_secs(86_400));
    assert!((one.spent("team-a", 20_000).await.unwrap() - 1.2).abs() < 1e-9);
    // Another day starts afresh.
    assert_eq!(
        two.admit("team-a", &limits, 10, "c", LEASE_TTL, 20_001)
            .await
            .unwrap(),
        Verdict::Admitted
    );
}

/// A provider with keys, for routers to hold pools of; never called here.
struct Keyed {
    keys: Vec<Secret>,
}

#[async_trait::async_trait]
impl Provider for Keyed {
    fn id(&self) -> &str {
        "up"
    }
    fn keys(&self) -> &[Secret] {
        &self.keys
    }
    fn capabilities(&self, _: &str) -> weir_model::Capabilities {
        weir_model::Capabilities::ALL
    }
    async fn send(&self, _: &ChatRequest, _: CallContext) -> Result<Reply, ProviderError> {
        Err(ProviderError::new(
            weir_model::ErrorKind::Internal,
            "not called in these tests",
        ))
    }
}

fn router() -> Router {
    Router::new(
        vec![Arc::new(Keyed {
            keys: vec![Secret::new("sk-shared-1"), Secret::new("sk-shared-2")],
        })],
        vec![Route::new("m", vec![Target::new("up")])],
    )
    .unwrap()
}

fn key_state(r: &Router, i: usize) -> &'static str {
    r.status().providers[0].keys[i].state
}

#[tokio::test]
async fn a_cooldown_or_breaker_one_instance_learns_reaches_the_others() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (one, two) = (instance(&url, &p).await, instance(&url, &p).await);
    let r1 = router().with_state_sink(one.sink());
    one.follow(r1.state_handle());
    let r2 = router().with_state_sink(two.sink());
    two.follow(r2.state_handle());
    // Let both subscribe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let until_ms = weir_router::unix_ms() + 60_000;
    one.sink().publish(StateChange::KeyRest {
        provider: "up".into(),
        key: weir_router::key_id("sk-shared-1"),
        model: None,
        until_ms,
        rate_limited: true,
        no_credit: false,
    });
    eventually(
        || key_state(&r2, 0) == "cooling_down",
        "the cooldown at two",
    )
    .await;
    assert_eq!(key_state(&r2, 1), "ok");
    let left = r2.status().providers[0].keys[0].cooldown_ms.unwrap();
    assert!(left > 58_000 && left <= 60_000, "{left}");
    // The instance that published it does not apply its own message.
    assert_eq!(key_state(&r1, 0), "ok");
    // A key's limit for one model is shared as that: the key stays usable for others.
    one.sink().publish(StateChange::KeyRest {
        provider: "up".into(),
        key: weir_router::key_id("sk-shared-2"),
        model: Some("vendor/big-model".into()),
        until_ms,
        rate_limited: true,
        no_credit: false,
    });
    eventually(
        || !r2.status().providers[0].keys[1].model_limits.is_empty(),
        "the model limit at two",
    )
    .await;
    let k = &r2.status().providers[0].keys[1];
    assert_eq!(k.state, "ok");
    assert_eq!(k.model_limits[0].model, "vendor/big-model");
    assert!(k.model_limits[0].ms > 55_000, "{:?}", k.model_limits);

    two.sink().publish(StateChange::BreakerOpen {
        provider: "up".into(),
        model: "m".into(),
        until_ms,
        opened: 1,
    });
    eventually(
        || r1.status().targets[0].breaker == "open",
        "the breaker at one",
    )
    .await;
    two.sink().publish(StateChange::BreakerClosed {
        provider: "up".into(),
        model: "m".into(),
    });
    eventually(
        || r1.status().targets[0].breaker == "closed",
        "the close at one",
    )
    .await;
    // A model's output ceiling, learned from a refusal at one instance.
    one.sink().publish(StateChange::OutputCeiling {
        provider: "up".into(),
        model: "m".into(),
        tokens: 16384,
        until_ms: weir_router::unix_ms() + 3_600_000,
    });
    eventually(
        || r2.status().targets[0].output_ceiling == Some(16384),
        "the ceiling at two",
    )
    .await;

    // An instance that starts later (or reloads) reads what is in force.
    let three = instance(&url, &p).await;
    let r3 = router();
    three.follow(r3.state_handle());
    eventually(
        || key_state(&r3, 0) == "cooling_down",
        "the cooldown at three",
    )
    .await;
    assert_eq!(r3.status().targets[0].breaker, "closed");
    eventually(
        || r3.status().targets[0].output_ceiling == Some(16384),
        "the ceiling at three",
    )
    .await;
    // And a reloaded router of instance two gets it too.
    let r2b = router().with_state_sink(two.sink());
    two.follow(r2b.state_handle());
    eventually(
        || key_state(&r2b, 0) == "cooling_down",
        "the cooldown after a reload",
    )
    .await;
}

/// A TCP relay in front of Redis that can cut every connection and refuse new ones.
struct Relay {
    addr: String,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Relay { addr, down, conns }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn without_redis_calls_fail_fast_and_it_recovers_when_redis_returns() {
    let Some(url) = redis_url() else { return };
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let relay = Relay::start(target).await;
    let seen = Arc::new(Seen::default());
    let p = prefix();
    let s = RedisState::connect(
        options(&format!("redis://{}", relay.addr), &p),
        Some(seen.clone()),
    )
    .await
    .unwrap();
    let r = router().with_state_sink(s.sink());
    s.follow(r.state_handle());
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    assert!(s.is_up());
    assert_eq!(admit(&s, &limits, "a").await, Verdict::Admitted);

    relay.cut();
    // The first call notices; later ones fail at once without waiting on Redis.
    let started = std::time::Instant::now();
    let mut failed = false;
    for _ in 0..50 {
        if s.admit("team-a", &limits, 1, "b", LEASE_TTL, 20_000)
            .await
            .is_err()
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "calls kept succeeding with Redis cut off");
    assert!(!s.is_up());
    assert_eq!(seen.downs.load(Ordering::SeqCst), 1);
    assert!(seen.errors.load(Ordering::SeqCst) >= 1);
    let quick = std::time::Instant::now();
    assert!(s
        .admit("team-a", &limits, 1, "c", LEASE_TTL, 20_000)
        .await
        .is_err());
    // Not a timing assertion on the machine's speed: down means no Redis call at all.
    assert!(
        quick.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // Spend while cut off is held, and written once Redis is back.
    s.spend("team-a", 20_000, 0.25);
    s.spend("team-a", 20_000, 0.5);
    // Meanwhile this instance learns a cooldown: published once Redis is back.
    let until_ms = weir_router::unix_ms() + 60_000;
    s.sink().publish(StateChange::KeyRest {
        provider: "up".into(),
        key: weir_router::key_id("sk-shared-2"),
        model: None,
        until_ms,
        rate_limited: true,
        no_credit: false,
    });
    r.apply(&StateChange::KeyRest {
        provider: "up".into(),
        key: weir_router::key_id("sk-shared-2"),
        model: None,
        until_ms,
        rate_limited: true,
        no_credit: false,
    });

    relay.restore();
    eventually(|| s.is_up(), "Redis to count as reachable again").await;
    // Reachable at the start, then again after the cut.
    assert_eq!(seen.ups.load(Ordering::SeqCst), 2);
    assert_eq!(admit(&s, &limits, "d").await, Verdict::Admitted);
    // What it learned while cut off is now shared: a new instance sees it.
    let other = instance(&url, &p).await;
    let r2 = router();
    other.follow(r2.state_handle());
    eventually(
        || key_state(&r2, 1) == "cooling_down",
        "the cooldown learned offline",
    )
    .await;
    let mut spent = 0.0;
    for _ in 0..100 {
        spent = other.spent("team-a", 20_000).await.unwrap();
        if spent > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (spent - 0.75).abs() < 1e-9,
        "spent offline, written back: {spent}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_not_an_error_and_a_bad_url_is() {
    let seen = Arc::new(Seen::default());
    // Nothing listens on port 1.
    let s = RedisState::connect(
        options("redis://127.0.0.1:1", &prefix()),
        Some(seen.clone()),
    )
    .await
    .unwrap();
    assert!(!s.is_up());
    assert_eq!(seen.downs.load(Ordering::SeqCst), 1);
    assert!(s
        .admit("k", &Limits::default(), 0, "l", LEASE_TTL, 1)
        .await
        .is_err());
    let e = RedisState::connect(options("http://user:hunter2@example.com", &prefix()), None)
        .await
        .unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("state.url"), "{e}");
    assert_eq!(
        weir_redis::redact_url("redis://user:hunter2@host:6379/0"),
        "redis://***@host:6379/0"
    );
}

/// The errors counted, by `op`.
#[derive(Default)]
struct Ops(Mutex<Vec<&'static str>>);

impl Observe for Ops {
    fn error(&self, op: &'static str) {
        self.0.lock().unwrap().push(op);
    }
    fn reachable(&self, _: bool) {}
}

#[tokio::test]
async fn slots_given_back_while_redis_stalls_are_free_again_when_it_answers() {
    let Some(redis) = Throwaway::start().await else {
        return;
    };
    let p = prefix();
    let stalled = |url: &str| {
        let mut o = options(url, &p);
        o.timeout = Duration::from_millis(250);
        o
    };
    let ops = Arc::new(Ops::default());
    let one = RedisState::connect(stalled(&redis.url), Some(ops.clone()))
        .await
        .unwrap();
    let two = RedisState::connect(stalled(&redis.url), Some(ops.clone()))
        .await
        .unwrap();
    let limits = Limits {
        max_concurrent: Some(4),
        ..Limits::default()
    };
    // Two requests in flight, one on each instance.
    assert_eq!(admit(&one, &limits, "a").await, Verdict::Admitted);
    assert_eq!(admit(&two, &limits, "b").await, Verdict::Admitted);

    redis.stall();
    // Admissions time out (the instances mark Redis down and fall back); their scripts
    // still run when Redis resumes, taking the two free slots for leases nobody holds.
    assert!(one
        .admit("team-a", &limits, 10, "late-1", LEASE_TTL, 20_000)
        .await
        .is_err());
    assert!(two
        .admit("team-a", &limits, 10, "late-2", LEASE_TTL, 20_000)
        .await
        .is_err());
    assert!(!one.is_up() && !two.is_up());
    // Both requests end while Redis is away, and so does one whose lease already expired
    // (or never existed): giving it back must be harmless.
    one.release("team-a", "a");
    two.release("team-a", "b");
    one.release("team-a", "never-taken");
    tokio::time::sleep(Duration::from_millis(100)).await;

    redis.resume();
    eventually(|| one.is_up() && two.is_up(), "Redis to answer again").await;
    // A third instance gets all four slots: every lease was given back once Redis
    // answered, not when it expires (a minute here; the request's total timeout plus a
    // minute in the gateway).
    let three = instance(&redis.url, &p).await;
    let mut got = Vec::new();
    for _ in 0..100 {
        for lease in ["w", "x", "y", "z"] {
            if !got.contains(&lease) && admit(&three, &limits, lease).await == Verdict::Admitted {
                got.push(lease);
            }
        }
        if got.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got,
        ["w", "x", "y", "z"],
        "slots free again after the stall"
    );
    // Nothing given back was dropped (`queue`) or failed on replay (`release`).
    let errors = ops.0.lock().unwrap().clone();
    assert!(
        !errors.iter().any(|op| ["queue", "release"].contains(op)),
        "{errors:?}"
    );
}

#[tokio::test]
async fn spend_whose_call_timed_out_but_landed_is_counted_once() {
    let Some(redis) = Throwaway::start().await else {
        return;
    };
    let p = prefix();
    let stalled = |url: &str| {
        let mut o = options(url, &p);
        o.timeout = Duration::from_millis(250);
        o
    };
    let ops = Arc::new(Ops::default());
    let one = RedisState::connect(stalled(&redis.url), Some(ops.clone()))
        .await
        .unwrap();
    let two = RedisState::connect(stalled(&redis.url), None)
        .await
        .unwrap();
    one.spend("team-a", 20_000, 1.0);
    for _ in 0..100 {
        if two.spent("team-a", 20_000).await.unwrap() == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(two.spent("team-a", 20_000).await.unwrap(), 1.0);

    // A request costing $5 ends while Redis is stalled: the spend script goes out, gets no
    // answer within the timeout (the writer holds it), and runs when Redis resumes.
    redis.stall();
    one.spend("team-a", 20_000, 5.0);
    eventually(|| !one.is_up(), "the spend call to time out").await;
    assert!(
        ops.0.lock().unwrap().contains(&"spend"),
        "the spend call went out and timed out: {:?}",
        ops.0.lock().unwrap()
    );
    // More spend while Redis is known to be away is held without a call.
    one.spend("team-a", 20_000, 0.5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    eventually(|| one.is_up(), "Redis to answer again").await;

    // The held spend is replayed once Redis answers; the call that landed late is not
    // counted again.
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = two.spent("team-a", 20_000).await.unwrap();
        if seen >= 6.5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a second replay the chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = two.spent("team-a", 20_000).await.unwrap();
    assert!(
        (total - 6.5).abs() < 1e-9,
        "spend after the stall: {total} (seen {seen}), want 6.5 ($5 once)"
    );
    // Later spend, from either instance, still counts.
    one.spend("team-a", 20_000, 0.25);
    two.spend("team-a", 20_000, 0.25);
    let mut total = 0.0;
    for _ in 0..100 {
        total = two.spent("team-a", 20_000).await.unwrap();
        if total >= 7.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!((total - 7.0).abs() < 1e-9, "{total}");
}
