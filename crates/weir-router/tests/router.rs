//! The router against scripted providers: resolution, strategies, key pools, breakers,
//! stream failover, retries, stickiness, capabilities and the status snapshot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cloned_ref_to_slice_refs
)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use weir_model::{
    ApiError, CallContext, Capabilities, ChatRequest, ChatResponse, Content, ContentBlock, Delta,
    ErrorKind, Frame, ImageBlock, MediaSource, Message, Provider, ProviderError, Reply, Role,
    Secret, StreamEvent, ThinkingConfig, Usage,
};
use weir_router::{
    Observer, Policy, Route, RouteError, Router, RouterEvent, Strategy, Target, Unsupported,
};

/// What a fake provider does with one call.
#[derive(Clone, Debug)]
enum Act {
    /// Answers (streamed when asked).
    Ok,
    /// Fails with a status.
    Fail(u16),
    /// 429 with a retry-after, for the key whatever the model (as OpenAI's
    /// `insufficient_quota`).
    Limited(Duration),
    /// 429 with a retry-after for requests of this (upstream) model, its quota spent (as
    /// upstreams' 429s are); other models answer.
    QuotaFor(&'static str, Duration),
    /// Answers, but reports the key's limits exhausted for the duration.
    OkExhausted(Duration),
    /// A stream whose first event is an `overloaded_error`.
    StreamErrorFirst,
    /// A stream that opens, then fails before content.
    StreamDiesBeforeContent,
    /// A stream with content, then a failure.
    StreamDiesAfterContent,
    /// Waits, then answers.
    Slow(Duration),
    /// A stream that opens at once and sends its content after the duration.
    LateContent(Duration),
    /// Answers with what the model botched (a malformed tool call): retried elsewhere,
    /// not held against the target's health.
    Unusable,
    /// Answers in a way the gateway cannot read, whatever the request (a compressed
    /// body): the same every time.
    Unreadable,
    /// Refuses a `max_tokens` above this with a 400 in Anthropic's words; answers others.
    Ceiling(u32),
    /// Refuses a `max_tokens` above this with a 400 in vLLM's words on the room a 1000
    /// token input leaves in a context window 1000 larger; answers others.
    Room(u32),
    /// Refuses every request, naming this as the model's ceiling.
    Stuck(u32),
    /// Refuses every request, naming a ceiling 1000 below what it got.
    Below,
}

struct Fake {
    id: &'static str,
    keys: Vec<Secret>,
    default: Mutex<Act>,
    script: Mutex<VecDeque<Act>>,
    per_key: Mutex<HashMap<String, Act>>,
    calls: AtomicUsize,
    probes: AtomicUsize,
    probe_ok: Mutex<bool>,
    keys_used: Mutex<Vec<Option<String>>>,
    requests: Mutex<Vec<ChatRequest>>,
    caps: Capabilities,
    listings: AtomicUsize,
}

impl Fake {
    fn new(id: &'static str, act: Act) -> Arc<Fake> {
        Fake::build(id, act, &[], Capabilities::ALL)
    }

    fn build(id: &'static str, act: Act, keys: &[&str], caps: Capabilities) -> Arc<Fake> {
        Arc::new(Fake {
            id,
            keys: keys.iter().map(|k| Secret::new((*k).to_owned())).collect(),
            default: Mutex::new(act),
            script: Mutex::new(VecDeque::new()),
            per_key: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            probe_ok: Mutex::new(true),
            keys_used: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            caps,
            listings: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set(&self, act: Act) {
        *self.default.lock().unwrap() = act;
    }

    fn key_act(&self, key: &str, act: Act) {
        self.per_key.lock().unwrap().insert(key.to_owned(), act);
    }

    fn keys_used(&self) -> Vec<String> {
        self.keys_used
            .lock()
            .unwrap()
            .iter()
            .map(|k| k.clone().unwrap_or_else(|| "-".into()))
            .collect()
    }
}

fn error(status: u16, retry_after: Option<Duration>) -> ProviderError {
    let mut api = ApiError::new(
        ErrorKind::from_status(status),
        format!("upstream says {status}"),
    );
    api.status = status;
    api.error_type = Some(
        match status {
            529 => "overloaded_error",
            429 => "rate_limit_error",
            400 => "invalid_request_error",
            401 => "authentication_error",
            _ => "api_error",
        }
        .into(),
    );
    ProviderError::from_api(api, retry_after)
}

fn frame(e: StreamEvent) -> Result<Frame, ProviderError> {
    Ok(Frame::from_events(vec![e]))
}

fn start() -> Result<Frame, ProviderError> {
    frame(StreamEvent::MessageStart {
        id: "msg_1".into(),
        model: "m".into(),
        usage: Usage::default(),
    })
}

fn text_delta(t: &str) -> Result<Frame, ProviderError> {
    frame(StreamEvent::BlockDelta {
        index: 0,
        delta: Delta::Text(t.into()),
    })
}

fn stream(items: Vec<Result<Frame, ProviderError>>) -> Reply {
    Reply::Stream(Box::pin(futures_util::stream::iter(items)))
}

#[async_trait::async_trait]
impl Provider for Fake {
    fn id(&self) -> &str {
        self.id
    }
    fn capabilities(&self, _: &str) -> Capabilities {
        self.caps
    }
    fn keys(&self) -> &[Secret] {
        &self.keys
    }
    async fn list_models(&self, _cx: CallContext) -> Result<Option<Vec<String>>, ProviderError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(Some(vec![
            "gpt-a".into(),
            "other".into(),
            "gpt-b".into(),
            "gpt-exact".into(),
        ]))
    }
    async fn probe(&self, _model: &str, _cx: CallContext) -> Result<(), ProviderError> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        if *self.probe_ok.lock().unwrap() {
            Ok(())
        } else {
            Err(error(500, None))
        }
    }
    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = cx.key.as_ref().map(|k| k.expose().to_owned());
        self.keys_used.lock().unwrap().push(key.clone());
        self.requests.lock().unwrap().push(req.clone());
        let act = key
            .and_then(|k| self.per_key.lock().unwrap().get(&k).cloned())
            .or_else(|| self.script.lock().unwrap().pop_front())
            .unwrap_or_else(|| self.default.lock().unwrap().clone());
        let ok = |req: &ChatRequest| {
            if req.is_stream() {
                stream(vec![
                    start(),
                    text_delta(self.id),
                    frame(StreamEvent::MessageStop),
                ])
            } else {
                Reply::Complete(Box::new(ChatResponse {
                    model: req.model.clone(),
                    id: self.id.into(),
                    ..Default::default()
                }))
            }
        };
        let refuse = |message: String| {
            let mut api = ApiError::new(ErrorKind::InvalidRequest, message);
            api.status = 400;
            Err(ProviderError::from_api(api, None))
        };
        match act {
            Act::Ok => Ok(ok(req)),
            Act::Below => {
                let n = req.max_tokens.unwrap_or(0);
                refuse(format!(
                    "max_tokens: {n} > {}, which is the maximum allowed number of output tokens",
                    n.saturating_sub(1000)
                ))
            }
            Act::Stuck(most) => refuse(format!(
                "max_tokens: {} > {most}, which is the maximum allowed number of output tokens",
                req.max_tokens.unwrap_or(0)
            )),
            Act::Ceiling(most) => match req.max_tokens {
                Some(n) if n > most => refuse(format!(
                    "max_tokens: {n} > {most}, which is the maximum allowed number of output tokens for {}",
                    req.model
                )),
                _ => Ok(ok(req)),
            },
            Act::Room(room) => match req.max_tokens {
                Some(n) if n > room => refuse(format!(
                    "'max_tokens' or 'max_completion_tokens' is too large: {n}. This model's maximum context length is {} tokens and your request has 1000 input tokens ({n} > {} - 1000).",
                    room + 1000,
                    room + 1000
                )),
                _ => Ok(ok(req)),
            },
            Act::Fail(s) => Err(error(s, None)),
            Act::Unusable => {
                let mut e = ProviderError::new(
                    ErrorKind::Decode,
                    "the model's tool call could not be used",
                );
                e.counts_against_health = false;
                Err(e)
            }
            Act::Unreadable => {
                let mut e = ProviderError::new(ErrorKind::Upstream, "compressed answer");
                e.retryable_elsewhere = true;
                e.repeats = true;
                Err(e)
            }
            Act::Limited(d) => {
                let mut e = error(429, Some(d));
                e.per_model_quota = false;
                Err(e)
            }
            Act::QuotaFor(m, d) if req.model == m => {
                let e = error(429, Some(d));
                assert!(e.per_model_quota, "an upstream's 429 is per model");
                Err(e)
            }
            Act::QuotaFor(..) => Ok(ok(req)),
            Act::OkExhausted(d) => {
                cx.report.exhausted_for(d);
                Ok(ok(req))
            }
            Act::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(ok(req))
            }
            Act::StreamErrorFirst => {
                let mut api = ApiError::new(ErrorKind::Overloaded, "Overloaded");
                api.status = 529;
                Ok(stream(vec![frame(StreamEvent::Error(api))]))
            }
            Act::StreamDiesBeforeContent => Ok(stream(vec![
                start(),
                Err(ProviderError::new(ErrorKind::Connect, "connection reset")),
            ])),
            Act::LateContent(d) => {
                let later = futures_util::stream::once(async move {
                    tokio::time::sleep(d).await;
                    text_delta("late")
                })
                .chain(futures_util::stream::iter(vec![frame(
                    StreamEvent::MessageStop,
                )]));
                Ok(Reply::Stream(Box::pin(
                    futures_util::stream::iter(vec![start()]).chain(later),
                )))
            }
            Act::StreamDiesAfterContent => Ok(stream(vec![
                start(),
                text_delta("partial"),
                Err(ProviderError::new(ErrorKind::Connect, "connection reset")),
            ])),
        }
    }
}

fn req(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::text(Role::User, "hi")],
        ..Default::default()
    }
}

fn stream_req(model: &str) -> ChatRequest {
    ChatRequest {
        stream: Some(true),
        ..req(model)
    }
}

/// A policy without waits, so tests are quick; retries off unless a test wants them.
fn quick() -> Policy {
    Policy {
        retries: 0,
        retry_backoff: Duration::from_millis(1),
        breaker_open: Duration::from_millis(100),
        ..Policy::default()
    }
}

fn router(providers: &[Arc<Fake>], routes: Vec<Route>, policy: Policy) -> Router {
    Router::with_policy(
        providers
            .iter()
            .map(|p| p.clone() as Arc<dyn Provider>)
            .collect(),
        routes,
        policy,
    )
    .unwrap()
}

async fn served_by(r: &Router, req: ChatRequest, cx: CallContext) -> String {
    match r.send(req, cx).await {
        Ok((_, s)) => s.provider,
        Err(RouteError::Failed { last, .. }) => panic!("failed: {last:?}"),
        Err(e) => panic!("{e:?}"),
    }
}

fn cx() -> CallContext {
    CallContext::new("t")
}

async fn failure(r: &Router, req: ChatRequest) -> (ProviderError, Vec<weir_router::Attempt>) {
    match r.send(req, cx()).await {
        Err(RouteError::Failed { last, attempts }) => (last, attempts),
        Err(e) => panic!("{e:?}"),
        Ok((_, s)) => panic!("served by {}", s.provider),
    }
}

async fn collect_text(reply: Reply) -> (String, Option<ProviderError>) {
    let Reply::Stream(mut s) = reply else {
        panic!("expected a stream")
    };
    let mut text = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(f) => {
                for e in f.events {
                    if let StreamEvent::BlockDelta {
                        delta: Delta::Text(t),
                        ..
                    } = e
                    {
                        text.push_str(&t.as_str());
                    }
                }
            }
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

#[tokio::test]
async fn fallback_moves_on_after_5xx_and_429_and_keeps_the_target_model() {
    let (a, b, c) = (
        Fake::new("a", Act::Fail(503)),
        Fake::new("b", Act::Fail(429)),
        Fake::new("c", Act::Ok),
    );
    let r = router(
        &[a.clone(), b.clone(), c.clone()],
        vec![Route::new(
            "m",
            vec![
                Target::new("a"),
                Target::new("b"),
                Target::with_model("c", "upstream-m"),
            ],
        )],
        quick(),
    );
    let (reply, served) = r.send(req("m"), cx()).await.unwrap();
    assert_eq!(
        (served.provider.as_str(), served.model.as_str()),
        ("c", "upstream-m")
    );
    assert_eq!(served.failed_attempts, 2);
    let Reply::Complete(resp) = reply else {
        panic!()
    };
    assert_eq!(resp.model, "upstream-m");
    assert_eq!([a.calls(), b.calls(), c.calls()], [1, 1, 1]);
}

#[tokio::test]
async fn a_400_is_the_clients_problem_and_is_not_retried_elsewhere() {
    let (a, b) = (Fake::new("a", Act::Fail(400)), Fake::new("b", Act::Ok));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy::default(),
    );
    let (last, attempts) = failure(&r, req("m")).await;
    assert_eq!(last.status, Some(400));
    assert_eq!(
        last.api_error.unwrap().error_type.as_deref(),
        Some("invalid_request_error")
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(b.calls(), 0);
}

#[tokio::test]
async fn one_target_failing_keeps_its_own_error_and_several_get_a_sanitized_summary() {
    let a = Fake::new("a", Act::Fail(529));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let (last, _) = failure(&r, req("m")).await;
    assert_eq!(last.status, Some(529));
    assert_eq!(
        last.api_error.unwrap().error_type.as_deref(),
        Some("overloaded_error")
    );

    let (a, b) = (
        Fake::new("a", Act::Fail(500)),
        Fake::new("b", Act::Fail(529)),
    );
    let r = router(
        &[a, b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        quick(),
    );
    let (last, attempts) = failure(&r, req("m")).await;
    assert_eq!(last.kind, ErrorKind::Upstream);
    assert_eq!(last.status, Some(502));
    assert!(last.api_error.is_none());
    assert_eq!(
        last.message,
        "all targets failed: a (m): 500 api_error; b (m): 529 overloaded_error"
    );
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.provider.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    // Everything overloaded: 503.
    let (a, b) = (
        Fake::new("a", Act::Fail(529)),
        Fake::new("b", Act::Fail(503)),
    );
    let r = router(
        &[a, b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        quick(),
    );
    let (last, _) = failure(&r, req("m")).await;
    assert_eq!((last.kind, last.status), (ErrorKind::Overloaded, Some(503)));
}

#[tokio::test]
async fn exact_names_win_over_globs_and_unknown_models_list_what_exists() {
    let (a, b) = (Fake::new("a", Act::Ok), Fake::new("b", Act::Ok));
    let r = router(
        &[a, b],
        vec![
            Route::new("claude-*", vec![Target::new("a")]),
            Route::new("claude-x", vec![Target::new("b")]),
        ],
        quick(),
    );
    assert_eq!(served_by(&r, req("claude-x"), cx()).await, "b");
    assert_eq!(served_by(&r, req("claude-y"), cx()).await, "a");
    let Err(RouteError::UnknownModel { model, available }) = r.send(req("gpt-4o"), cx()).await
    else {
        panic!()
    };
    assert_eq!(model, "gpt-4o");
    assert_eq!(available, ["claude-*", "claude-x"]);
}

#[test]
fn routes_must_name_known_providers_and_weights_must_allow_a_pick() {
    let a = Fake::new("a", Act::Ok);
    let err = Router::new(
        vec![a.clone() as Arc<dyn Provider>],
        vec![Route::new("m", vec![Target::new("nope")])],
    )
    .unwrap_err();
    assert_eq!(err, "model `m` targets unknown provider `nope`");
    // Two providers of one id: one would silently serve for both.
    let err = Router::new(
        vec![
            a.clone() as Arc<dyn Provider>,
            Fake::new("a", Act::Ok) as Arc<dyn Provider>,
        ],
        vec![Route::new("m", vec![Target::new("a")])],
    )
    .unwrap_err();
    assert_eq!(err, "two providers have the id `a`");
    let err = Router::new(
        vec![a as Arc<dyn Provider>],
        vec![Route::new("m", vec![Target::new("a").weight(0)]).strategy(Strategy::Weighted)],
    )
    .unwrap_err();
    assert!(err.contains("every target has weight 0"), "{err}");
}

fn three(strategy: Strategy, weights: [u32; 3]) -> (Router, [Arc<Fake>; 3]) {
    let f = [
        Fake::new("a", Act::Ok),
        Fake::new("b", Act::Ok),
        Fake::new("c", Act::Ok),
    ];
    let r = router(
        &f,
        vec![Route::new(
            "m",
            vec![
                Target::new("a").weight(weights[0]),
                Target::new("b").weight(weights[1]),
                Target::new("c").weight(weights[2]),
            ],
        )
        .strategy(strategy)],
        quick(),
    );
    (r, f)
}

#[tokio::test]
async fn round_robin_spreads_evenly_and_weighted_follows_the_weights() {
    let (r, f) = three(Strategy::RoundRobin, [1, 1, 1]);
    for _ in 0..30 {
        served_by(&r, req("m"), cx()).await;
    }
    assert_eq!(f.each_ref().map(|p| p.calls()), [10, 10, 10]);

    let (r, f) = three(Strategy::Weighted, [3, 1, 0]);
    for _ in 0..40 {
        served_by(&r, req("m"), cx()).await;
    }
    assert_eq!(f.each_ref().map(|p| p.calls()), [30, 10, 0]);

    // Weight 0 serves only when the others fail; failing targets are followed in order.
    f[0].set(Act::Fail(500));
    f[1].set(Act::Fail(500));
    assert_eq!(served_by(&r, req("m"), cx()).await, "c");
}

#[tokio::test]
async fn round_robin_fails_over_to_the_next_in_turn() {
    let (r, f) = three(Strategy::RoundRobin, [1, 1, 1]);
    f[1].set(Act::Fail(503));
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(served_by(&r, req("m"), cx()).await);
    }
    assert_eq!(served, ["a", "c", "c"]);
}

#[tokio::test]
async fn least_latency_prefers_the_faster_target() {
    let slow = Fake::new("slow", Act::Slow(Duration::from_millis(40)));
    let fast = Fake::new("fast", Act::Ok);
    let r = router(
        &[slow.clone(), fast.clone()],
        vec![
            Route::new("m", vec![Target::new("slow"), Target::new("fast")])
                .strategy(Strategy::LeastLatency),
        ],
        quick(),
    );
    for _ in 0..20 {
        served_by(&r, req("m"), cx()).await;
    }
    // Both are tried while unmeasured; after that the faster one wins every comparison.
    assert!(slow.calls() <= 2, "slow served {}", slow.calls());
    assert!(fast.calls() >= 18, "fast served {}", fast.calls());
    let st = r.status();
    let lat = |p: &str| {
        st.targets
            .iter()
            .find(|t| t.provider == p)
            .unwrap()
            .latency_ms
            .unwrap()
    };
    assert!(lat("slow") >= 40.0 && lat("fast") < 40.0, "{st:?}");
}

/// A stream is timed to its first content, which may come after the router handed it
/// over (its opening is held a second at most); one whose client leaves before any
/// content counts the time it waited, or a target slow to answer whose clients give up
/// would never be measured and would keep winning as unmeasured.
#[tokio::test]
async fn least_latency_counts_streams_given_up_before_their_first_content() {
    let slow = Fake::new("slow", Act::LateContent(Duration::from_secs(30)));
    let fast = Fake::new("fast", Act::Ok);
    let r = router(
        &[slow.clone(), fast.clone()],
        vec![
            Route::new("m", vec![Target::new("slow"), Target::new("fast")])
                .strategy(Strategy::LeastLatency),
        ],
        quick(),
    );
    for _ in 0..5 {
        let (reply, _) = r.send(stream_req("m"), cx()).await.unwrap();
        // The client reads for a moment (the fast stream whole, the slow one's opening),
        // then leaves.
        let Reply::Stream(mut s) = reply else {
            panic!("a stream")
        };
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            while s.next().await.is_some() {}
        })
        .await;
    }
    assert!(slow.calls() <= 2, "slow served {}", slow.calls());
    // A client that leaves before any answer at all (whole, or a stream still held)
    // counts its wait too.
    let slower = Fake::new("slower", Act::Slow(Duration::from_secs(30)));
    let r2 = router(
        &[slower.clone(), fast.clone()],
        vec![
            Route::new("m", vec![Target::new("slower"), Target::new("fast")])
                .strategy(Strategy::LeastLatency),
        ],
        quick(),
    );
    for streamed in [false, true, false, true, false] {
        let req = if streamed { stream_req("m") } else { req("m") };
        let _ = tokio::time::timeout(Duration::from_millis(100), r2.send(req, cx())).await;
    }
    assert!(slower.calls() <= 2, "slower served {}", slower.calls());
    let st = r.status();
    let target = |p: &str| st.targets.iter().find(|t| t.provider == p).unwrap().clone();
    // The slow one gave no answer to show; the fast one's first content came at once.
    assert_eq!(target("slow").latency_ms, None, "{st:?}");
    assert!(target("fast").latency_ms.unwrap() < 500.0, "{st:?}");
}

#[tokio::test]
async fn least_latency_stops_preferring_a_target_whose_answers_are_unusable() {
    let bad = Fake::new("bad", Act::Unusable);
    let good = Fake::new("good", Act::Slow(Duration::from_millis(5)));
    let r = router(
        &[bad.clone(), good.clone()],
        vec![
            Route::new("m", vec![Target::new("bad"), Target::new("good")])
                .strategy(Strategy::LeastLatency),
        ],
        Policy {
            breaker_failures: 1,
            ..quick()
        },
    );
    for _ in 0..10 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "good");
    }
    // Tried once or twice while unmeasured, then passed over; its breaker stays closed.
    assert!(bad.calls() <= 2, "bad was called {} times", bad.calls());
    let st = r.status();
    let t = st.targets.iter().find(|t| t.provider == "bad").unwrap();
    assert_eq!(t.breaker, "closed");
    assert!(t.error_rate > 0.0, "{st:?}");
}

#[tokio::test]
async fn least_latency_probes_a_target_whose_breaker_waited_its_time() {
    let a = Fake::new("a", Act::Ok);
    a.script.lock().unwrap().push_back(Act::Fail(500));
    let b = Fake::new("b", Act::Slow(Duration::from_millis(20)));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])
            .strategy(Strategy::LeastLatency)],
        Policy {
            breaker_failures: 1,
            breaker_open: Duration::from_millis(50),
            ..quick()
        },
    );
    // Until a has been tried (and failed, opening its breaker), b covers for it.
    while a.calls() == 0 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    }
    // Past its breaker's wait, the next request has a probed (in the background, as
    // every strategy probes), and the probe closes the breaker; its latency figure then
    // fades back into the comparisons.
    tokio::time::sleep(Duration::from_millis(60)).await;
    served_by(&r, req("m"), cx()).await;
    let closed = || {
        r.status()
            .targets
            .iter()
            .any(|t| t.provider == "a" && t.breaker == "closed")
    };
    for _ in 0..100 {
        if closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed(), "{:?}", r.status());
}

#[tokio::test]
async fn a_rate_limited_key_rests_and_the_next_key_serves() {
    let a = Fake::build("a", Act::Ok, &["sk-one", "sk-two"], Capabilities::ALL);
    a.key_act("sk-one", Act::Limited(Duration::from_secs(60)));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    for _ in 0..4 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    }
    // sk-one was tried once (whenever its turn came first) and rests for its retry-after.
    let used = a.keys_used();
    assert_eq!(
        used.iter().filter(|k| *k == "sk-one").count(),
        1,
        "{used:?}"
    );
    assert_eq!(
        used.iter().filter(|k| *k == "sk-two").count(),
        4,
        "{used:?}"
    );
    let st = r.status();
    let keys = &st.providers[0].keys;
    assert_eq!(keys[0].state, "cooling_down");
    assert_eq!(keys[0].cooldown_reason, Some("rate_limited"));
    assert!(keys[0].cooldown_ms.unwrap() > 55_000);
    assert_eq!(keys[0].rate_limited, 1);
    assert_eq!(keys[1].state, "ok");
    // No secret in the snapshot.
    let json = serde_json::to_string(&st).unwrap();
    assert!(
        !json.contains("sk-one") && !json.contains("sk-two"),
        "{json}"
    );
}

#[tokio::test]
async fn a_session_keeps_to_one_key_of_the_pool_while_it_is_usable() {
    let keys = ["sk-1", "sk-2", "sk-3", "sk-4"];
    let a = Fake::build("a", Act::Ok, &keys, Capabilities::ALL);
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let with = |s: &str| {
        let mut c = cx();
        c.session = Some(s.into());
        c
    };
    let mut chosen = std::collections::HashSet::new();
    for s in 0..12 {
        let session = format!("session-{s}");
        for _ in 0..4 {
            served_by(&r, req("m"), with(&session)).await;
        }
        let used = a.keys_used();
        let last: Vec<_> = used[used.len() - 4..].to_vec();
        assert!(last.iter().all(|k| *k == last[0]), "{session}: {last:?}");
        chosen.insert(last[0].clone());
    }
    // Sessions spread over the pool; requests without one still rotate.
    assert!(chosen.len() >= 3, "{chosen:?}");
    let before = a.keys_used().len();
    for _ in 0..4 {
        served_by(&r, req("m"), cx()).await;
    }
    let rotated: std::collections::HashSet<_> = a.keys_used()[before..].iter().cloned().collect();
    assert_eq!(rotated.len(), 4, "{rotated:?}");
    // The session's key rests: another serves meanwhile.
    let own = {
        served_by(&r, req("m"), with("session-0")).await;
        a.keys_used().last().unwrap().clone()
    };
    a.key_act(&own, Act::Limited(Duration::from_secs(60)));
    served_by(&r, req("m"), with("session-0")).await;
    let used = a.keys_used();
    assert_eq!(used[used.len() - 2], own);
    assert_ne!(used[used.len() - 1], own);
}

#[tokio::test]
async fn keys_out_of_credit_rest_and_say_so_when_none_is_left() {
    let a = Fake::build(
        "a",
        Act::Fail(402),
        &["sk-one", "sk-two"],
        Capabilities::ALL,
    );
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            retries: 0,
            ..quick()
        },
    );
    // Both keys are tried and rest.
    assert!(r.send(req("m"), cx()).await.is_err());
    assert_eq!(a.calls(), 2);
    let st = r.status();
    for k in &st.providers[0].keys {
        assert_eq!(k.cooldown_reason, Some("no_credit"), "{st:?}");
    }
    // The next request is told why, as a 402 (not "rate limited"), without a call.
    let Err(RouteError::Failed { last, .. }) = r.send(req("m"), cx()).await else {
        panic!("expected a failure");
    };
    assert_eq!(a.calls(), 2);
    assert!(last.message.contains("out of credit"), "{}", last.message);
    let api = last.api_error.as_deref().unwrap();
    assert_eq!(api.status, 402);
    assert!(api.credit_spent());
    // Told by another instance (shared state), a key rests as out of credit too.
    let c = Fake::build("c", Act::Ok, &["sk-c"], Capabilities::ALL);
    let other = router(
        &[c.clone()],
        vec![Route::new("m", vec![Target::new("c")])],
        quick(),
    );
    other.apply(&weir_router::StateChange::KeyRest {
        provider: "c".into(),
        key: weir_router::key_id("sk-c"),
        model: None,
        until_ms: weir_router::unix_ms() + 60_000,
        rate_limited: false,
        no_credit: true,
    });
    assert_eq!(
        other.status().providers[0].keys[0].cooldown_reason,
        Some("no_credit")
    );
    // Two providers out of credit: the same, for both.
    let b = Fake::build("b", Act::Fail(402), &["sk-three"], Capabilities::ALL);
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            retries: 0,
            ..quick()
        },
    );
    for _ in 0..2 {
        let Err(RouteError::Failed { last, .. }) = r.send(req("m"), cx()).await else {
            panic!("expected a failure");
        };
        assert!(
            last.message.starts_with("every target is out of credit"),
            "{}",
            last.message
        );
        assert_eq!(last.api_error.as_deref().unwrap().status, 402);
    }
}

#[tokio::test]
async fn a_refused_key_leaves_the_pool_and_is_shown_as_such() {
    let a = Fake::build("a", Act::Ok, &["sk-bad", "sk-good"], Capabilities::ALL);
    a.key_act("sk-bad", Act::Fail(401));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    for _ in 0..4 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    }
    assert_eq!(a.keys_used().iter().filter(|k| *k == "sk-bad").count(), 1);
    let st = r.status();
    assert_eq!(st.providers[0].keys[0].state, "refused");
    assert_eq!(st.providers[0].keys[0].refused_status, Some(401));
    // When it is tried again.
    let back = st.providers[0].keys[0].refused_ms.unwrap();
    assert!(back > 0 && u128::from(back) <= quick().refused_key_retry.as_millis());

    // With every key refused, the target is skipped without a request, and the client
    // gets the same answer as the request that saw the refusal.
    a.key_act("sk-good", Act::Fail(401));
    let (first, _) = failure(&r, req("m")).await;
    let calls = a.calls();
    let (last, attempts) = failure(&r, req("m")).await;
    assert_eq!(a.calls(), calls);
    assert!(attempts[0].skipped);
    assert_eq!(
        (last.status, last.kind),
        (Some(401), ErrorKind::Authentication)
    );
    assert_eq!(last.message, first.message);
    // Said as what it is: the gateway's key, not the client's.
    assert_eq!(
        last.message,
        "the upstream refused the gateway's key for provider `a`: upstream says 401"
    );
}

/// A 403 is about what was asked (often one model the account lacks), not the key: the
/// next key and then the next target are tried, but no key leaves the pool, so other
/// requests are not turned away for it.
#[tokio::test]
async fn a_403_tries_the_next_key_and_target_but_takes_no_key_out() {
    let a = Fake::build("a", Act::Ok, &["sk-one", "sk-two"], Capabilities::ALL);
    let b = Fake::new("b", Act::Ok);
    a.key_act("sk-one", Act::Fail(403));
    a.key_act("sk-two", Act::Fail(403));
    let r = router(
        &[a.clone(), b.clone()],
        vec![
            Route::new("m", vec![Target::new("a"), Target::new("b")]),
            Route::new("only-a", vec![Target::new("a")]),
        ],
        quick(),
    );
    assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    assert_eq!(a.calls(), 2, "both keys are tried");
    let st = r.status();
    assert!(
        st.providers[0].keys.iter().all(|k| k.state == "ok"),
        "{:?}",
        st.providers[0].keys
    );
    // Alone, the target answers the client with the upstream's 403 every time, asking
    // the upstream again (nothing is remembered against the keys).
    let (last, _) = failure(&r, req("only-a")).await;
    assert_eq!(
        (last.status, last.kind),
        (Some(403), ErrorKind::PermissionDenied)
    );
    assert_eq!(a.calls(), 4);
    // The keys serve what they may.
    a.key_act("sk-one", Act::Ok);
    assert_eq!(served_by(&r, req("only-a"), cx()).await, "a");
}

#[tokio::test]
async fn a_refused_key_gets_another_chance_after_a_while() {
    let a = Fake::build("a", Act::Ok, &["sk-flaky"], Capabilities::ALL);
    a.script.lock().unwrap().push_back(Act::Fail(401));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            refused_key_retry: Duration::from_millis(50),
            ..quick()
        },
    );
    assert!(r.send(req("m"), cx()).await.is_err());
    assert!(r.send(req("m"), cx()).await.is_err());
    assert_eq!(a.calls(), 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    assert_eq!(r.status().providers[0].keys[0].state, "ok");
}

#[tokio::test]
async fn headers_saying_a_model_limit_is_spent_rest_the_key_for_it_without_spending_a_request() {
    let a = Fake::build("a", Act::Ok, &["sk-one", "sk-two"], Capabilities::ALL);
    a.key_act("sk-one", Act::OkExhausted(Duration::from_secs(30)));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    for _ in 0..5 {
        served_by(&r, req("m"), cx()).await;
    }
    let used = a.keys_used();
    // sk-one answered once (successfully) and was not used again.
    assert_eq!(
        used.iter().filter(|k| *k == "sk-one").count(),
        1,
        "{used:?}"
    );
    // The headers spoke of the limits of the model asked for: the key rests for it only.
    let k = &r.status().providers[0].keys[0];
    assert_eq!((k.state, k.cooldown_reason), ("ok", None));
    assert_eq!(k.model_limits.len(), 1, "{:?}", k.model_limits);
    assert_eq!(k.model_limits[0].model, "m");
    assert!(k.model_limits[0].ms > 25_000);
    // Not counted as a 429.
    assert_eq!(k.rate_limited, 0);
}

#[tokio::test]
async fn everything_rate_limited_gives_429_with_the_smallest_retry_after() {
    let a = Fake::new("a", Act::Limited(Duration::from_secs(30)));
    let b = Fake::new("b", Act::Limited(Duration::from_secs(5)));
    let r = router(
        &[a, b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            retries: 2,
            max_retry_wait: Duration::from_secs(1),
            ..quick()
        },
    );
    let (last, attempts) = failure(&r, req("m")).await;
    assert_eq!(last.kind, ErrorKind::RateLimited);
    assert_eq!(last.status, Some(429));
    assert_eq!(last.retry_after, Some(Duration::from_secs(5)));
    // A 5 s wait exceeds max_retry_wait: no retry, the client is told when to come back.
    assert_eq!(attempts.len(), 2);
}

/// A provider without a key pool (Bedrock, Vertex: the account's credentials) that
/// answers 429 rests as a key would: the next requests go straight to the next target.
#[tokio::test]
async fn a_keyless_target_that_answered_429_rests() {
    let a = Fake::new("a", Act::Limited(Duration::from_secs(30)));
    let b = Fake::new("b", Act::Ok);
    let r = router(
        &[a.clone(), b.clone()],
        vec![
            Route::new("m", vec![Target::with_model("a", "x"), Target::new("b")]),
            Route::new("only-a", vec![Target::with_model("a", "x")]),
        ],
        quick(),
    );
    assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    assert_eq!(a.calls(), 1);
    for _ in 0..3 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    }
    assert_eq!(a.calls(), 1, "a resting target was called");
    // Alone, it is a 429 that says how long is left, without a call.
    let (last, attempts) = failure(&r, req("only-a")).await;
    assert_eq!(a.calls(), 1);
    assert!(attempts[0].skipped);
    assert_eq!(last.kind, ErrorKind::RateLimited);
    assert!(last
        .retry_after
        .is_some_and(|d| d > Duration::from_secs(25) && d <= Duration::from_secs(30)));
}

/// Upstreams' quotas are per model (Anthropic's, OpenAI's, Gemini's): a 429 for one model
/// rests that model on that key, and the key goes on serving the others (it rested the
/// key, and every model with it); a glob route's models are told apart; in a pool, the
/// next key serves the model.
#[tokio::test]
async fn a_per_model_quota_rests_the_model_on_the_key_not_the_key() {
    let a = Fake::build(
        "a",
        Act::QuotaFor("gemini-pro", Duration::from_secs(45)),
        &["sk-g"],
        Capabilities::ALL,
    );
    let r = router(
        &[a.clone()],
        vec![
            Route::new("pro", vec![Target::with_model("a", "gemini-pro")]),
            Route::new("full", vec![Target::with_model("a", "models/gemini-pro")]),
            Route::new("gemini-*", vec![Target::new("a")]),
        ],
        quick(),
    );
    let (last, _) = failure(&r, req("pro")).await;
    assert_eq!(
        (last.status, last.kind),
        (Some(429), ErrorKind::RateLimited)
    );
    assert_eq!(last.retry_after, Some(Duration::from_secs(45)));
    // Other models are served with the same key, also through a glob route.
    assert_eq!(served_by(&r, req("gemini-flash"), cx()).await, "a");
    // The limited one is passed over without a call, by any route, and says for how long.
    let calls = a.calls();
    for route in ["pro", "gemini-pro", "full"] {
        let (again, attempts) = failure(&r, req(route)).await;
        assert_eq!(a.calls(), calls);
        assert!(attempts[0].skipped);
        assert_eq!(again.kind, ErrorKind::RateLimited);
        assert!(
            again.message.contains("gemini-pro` (its quota"),
            "{again:?}"
        );
        assert!(again
            .retry_after
            .is_some_and(|d| d > Duration::from_secs(40)));
    }
    let st = r.status();
    let key = &st.providers[0].keys[0];
    assert_eq!(key.state, "ok");
    assert_eq!(key.model_limits.len(), 1);
    assert_eq!(key.model_limits[0].model, "gemini-pro");
    assert!(key.model_limits[0].ms > 40_000);

    // A pool: the next key serves the model.
    let b = Fake::build("b", Act::Ok, &["sk-1", "sk-2"], Capabilities::ALL);
    b.key_act("sk-1", Act::QuotaFor("gemini-pro", Duration::from_secs(45)));
    let r = router(
        &[b.clone()],
        vec![Route::new(
            "pro",
            vec![Target::with_model("b", "gemini-pro")],
        )],
        quick(),
    );
    for _ in 0..4 {
        assert_eq!(served_by(&r, req("pro"), cx()).await, "b");
    }
    let used = b.keys_used();
    assert_eq!(used.iter().filter(|k| *k == "sk-1").count(), 1, "{used:?}");
}

#[tokio::test]
async fn a_429_without_a_wait_tells_the_client_the_rest_its_key_was_given() {
    let a = Fake::build("a", Act::Fail(429), &["sk-one"], Capabilities::ALL);
    let r = router(
        &[a],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            default_cooldown: Duration::from_secs(10),
            ..quick()
        },
    );
    let (last, _) = failure(&r, req("m")).await;
    assert_eq!(last.status, Some(429));
    assert_eq!(last.retry_after, Some(Duration::from_secs(10)));
    // Asked again at once: the key is still resting, for about as long.
    let (again, _) = failure(&r, req("m")).await;
    assert!(
        again
            .retry_after
            .is_some_and(|d| d > Duration::from_secs(8)),
        "{again:?}"
    );
}

#[tokio::test]
async fn retries_walk_again_after_a_backoff_and_succeed() {
    let a = Fake::new("a", Act::Ok);
    a.script
        .lock()
        .unwrap()
        .extend([Act::Fail(503), Act::Fail(502)]);
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            retries: 2,
            ..quick()
        },
    );
    let (_, served) = r.send(req("m"), cx()).await.unwrap();
    assert_eq!(served.failed_attempts, 2);
    assert_eq!(a.calls(), 3);
}

#[tokio::test]
async fn an_answer_that_fails_the_same_way_each_time_moves_on_but_is_not_retried() {
    let a = Fake::new("a", Act::Unreadable);
    let b = Fake::new("b", Act::Unreadable);
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            retries: 2,
            ..quick()
        },
    );
    let Err(RouteError::Failed { attempts, .. }) = r.send(req("m"), cx()).await else {
        panic!("an unreadable answer was served");
    };
    // Each target asked once: another pass would pay for two more generations.
    assert_eq!((a.calls(), b.calls(), attempts.len()), (1, 1, 2));
    b.set(Act::Ok);
    let (_, served) = r.send(req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "b");
    // Beside a target that fails as it may not again (a 503), retried: only that one.
    let a = Fake::new("a", Act::Unreadable);
    let b = Fake::new("b", Act::Fail(503));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            retries: 2,
            ..quick()
        },
    );
    let Err(RouteError::Failed { last, .. }) = r.send(req("m"), cx()).await else {
        panic!("served");
    };
    assert_eq!((a.calls(), b.calls()), (1, 3));
    // The summary says why the answer could not be used, not just "failed".
    assert!(
        last.message.contains("a (m): compressed answer"),
        "{}",
        last.message
    );
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let a = Fake::new("a", Act::Fail(503));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            breaker_failures: 0,
            ..quick()
        },
    );
    // Without a deadline: the first walk and two retries.
    let (last, attempts) = failure(&r, req("m")).await;
    assert_eq!(last.status, Some(503));
    assert_eq!((a.calls(), attempts.len()), (3, 3));
    // With 40 ms left: the first walk only, as the backoff (50-150 ms, then more) does
    // not fit.
    let mut c = cx();
    c.deadline = Some(std::time::Instant::now() + Duration::from_millis(40));
    let Err(RouteError::Failed { .. }) = r.send(req("m"), c).await else {
        panic!()
    };
    assert_eq!(a.calls(), 4);
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Observer for Events {
    fn event(&self, e: &RouterEvent<'_>) {
        let s = match e {
            RouterEvent::Breaker { provider, to, .. } => format!("breaker {provider} {to}"),
            RouterEvent::Failover { provider, .. } => format!("failover {provider}"),
            RouterEvent::Retry { .. } => "retry".into(),
            RouterEvent::Cooldown { provider, key, .. } => format!("cooldown {provider} {key}"),
            RouterEvent::KeyRefused { provider, key, .. } => format!("refused {provider} {key}"),
            RouterEvent::OutputLowered {
                provider, tokens, ..
            } => format!("lowered {provider} {tokens}"),
            RouterEvent::PastOpenBreaker { provider, .. } => format!("past open {provider}"),
        };
        self.0.lock().unwrap().push(s);
    }
}

#[tokio::test]
async fn a_breaker_opens_after_consecutive_5xx_probes_and_closes() {
    let (a, b) = (Fake::new("a", Act::Fail(500)), Fake::new("b", Act::Ok));
    let events = Arc::new(Events::default());
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 3,
            ..quick()
        },
    )
    .with_observer(events.clone());
    for _ in 0..3 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    }
    assert_eq!(a.calls(), 3);
    assert_eq!(r.status().targets[0].breaker, "open");
    // Open: skipped without a request.
    for _ in 0..3 {
        assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    }
    assert_eq!(a.calls(), 3);
    // After the open period, the next request starts a probe (not with its own request)
    // and goes on to b; the probe succeeding closes the breaker.
    a.set(Act::Ok);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(served_by(&r, req("m"), cx()).await, "b");
    for _ in 0..50 {
        if r.status().targets[0].breaker == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.probes.load(Ordering::SeqCst), 1);
    assert_eq!(a.calls(), 3, "a user request was used as a probe");
    assert_eq!(r.status().targets[0].breaker, "closed");
    assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    let ev = events.0.lock().unwrap().clone();
    let breaker: Vec<&String> = ev.iter().filter(|e| e.starts_with("breaker")).collect();
    assert_eq!(
        breaker,
        ["breaker a open", "breaker a half_open", "breaker a closed"]
    );
    assert!(ev.iter().any(|e| e == "failover a"));
}

/// A breaker steers requests to a route's other targets but does not refuse them where
/// there is none: with every target's breaker open, each request still goes to the first
/// of them, once (not on the retries), and an answer closes the breaker at once.
#[tokio::test]
async fn an_open_breaker_with_nowhere_else_to_go_is_asked_once_per_request() {
    let a = Fake::new("a", Act::Fail(529));
    let events = Arc::new(Events::default());
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            breaker_failures: 2,
            breaker_open: Duration::from_secs(60),
            retries: 2,
            ..quick()
        },
    )
    .with_observer(events.clone());
    // Two failed attempts open it (the first request's second attempt); that request's
    // third pass finds it open and, nowhere else to go, asks it anyway.
    let (e, attempts) = failure(&r, req("m")).await;
    assert_eq!(a.calls(), 3);
    assert_eq!(r.status().targets[0].breaker, "open");
    assert_eq!(e.status, Some(529), "the upstream's own error: {e:?}");
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    // Still down: one call per request, its error the upstream's.
    let (e, _) = failure(&r, req("m")).await;
    assert_eq!(a.calls(), 4);
    assert_eq!(e.status, Some(529));
    assert_eq!(r.status().targets[0].breaker, "open");
    // Back: the next request is served, and the breaker closes without waiting its 60 s.
    a.set(Act::Ok);
    assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    assert_eq!(r.status().targets[0].breaker, "closed");
    assert_eq!(a.calls(), 5);
    assert_eq!(a.probes.load(Ordering::SeqCst), 0);
    let ev = events.0.lock().unwrap().clone();
    let breaker: Vec<&String> = ev.iter().filter(|e| e.starts_with("breaker")).collect();
    assert_eq!(breaker, ["breaker a open", "breaker a closed"]);
    // Each request asked past the open breaker is counted (the metrics' last resorts).
    let past = ev.iter().filter(|e| *e == "past open a").count();
    assert_eq!(past, 3, "{ev:?}");

    // With another target to go to, an open breaker is passed over as before.
    let (a, b) = (
        Fake::new("a", Act::Fail(500)),
        Fake::new("b", Act::Fail(500)),
    );
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 1,
            breaker_open: Duration::from_secs(60),
            ..quick()
        },
    );
    failure(&r, req("m")).await;
    assert_eq!((a.calls(), b.calls()), (1, 1));
    // Both open now: the first of them is asked, once.
    b.set(Act::Ok);
    failure(&r, req("m")).await;
    assert_eq!((a.calls(), b.calls()), (2, 1));
    // a is asked past its breaker again (still failing); b, open, is not asked.
    a.set(Act::Ok);
    assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    assert_eq!((a.calls(), b.calls()), (3, 1));

    // The other target passed over for what it lacks (or a resting key) leaves the open
    // one the only place to go: it is asked.
    let a = Fake::new("a", Act::Fail(500));
    let no_images = Capabilities {
        images: false,
        ..Capabilities::ALL
    };
    let b = Fake::build("b", Act::Ok, &[], no_images);
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 1,
            breaker_open: Duration::from_secs(60),
            retries: 2,
            ..quick()
        },
    );
    failure(&r, image_req("m")).await;
    assert_eq!(r.status().targets[0].breaker, "open");
    let calls = a.calls();
    a.set(Act::Ok);
    assert_eq!(served_by(&r, image_req("m"), cx()).await, "a");
    assert_eq!((a.calls(), b.calls()), (calls + 1, 0));
    assert_eq!(r.status().targets[0].breaker, "closed");
}

/// A stream asked past an open breaker closes it only once it ends well, not when it is
/// handed over; one failing on the way leaves it open. And a failed retry pass is not
/// waited for once the last resort failed.
#[tokio::test]
async fn a_stream_past_an_open_breaker_closes_it_only_when_it_ends_well() {
    let a = Fake::new("a", Act::Fail(500));
    let events = Arc::new(Events::default());
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            breaker_failures: 1,
            breaker_open: Duration::from_secs(60),
            retries: 2,
            ..quick()
        },
    )
    .with_observer(events.clone());
    let retries = || {
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("retry"))
            .count()
    };
    // The first fails and opens the breaker; its retry asks it past the breaker and fails
    // too; no retry pass follows the last resort.
    failure(&r, req("m")).await;
    assert_eq!((a.calls(), retries()), (2, 1));
    failure(&r, req("m")).await;
    assert_eq!((a.calls(), retries()), (3, 1));
    assert_eq!(r.status().targets[0].breaker, "open");
    a.set(Act::StreamDiesAfterContent);
    let (reply, _) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(r.status().targets[0].breaker, "open", "closed at hand-over");
    let (_, e) = collect_text(reply).await;
    assert!(e.is_some());
    assert_eq!(r.status().targets[0].breaker, "open");
    a.set(Act::Ok);
    let (reply, _) = r.send(stream_req("m"), cx()).await.unwrap();
    let (text, e) = collect_text(reply).await;
    assert_eq!((text.as_str(), e.is_none()), ("a", true));
    assert_eq!(r.status().targets[0].breaker, "closed");
}

#[tokio::test]
async fn a_failed_probe_reopens_the_breaker() {
    let (a, b) = (Fake::new("a", Act::Fail(502)), Fake::new("b", Act::Ok));
    *a.probe_ok.lock().unwrap() = false;
    let r = router(
        &[a.clone(), b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 1,
            ..quick()
        },
    );
    served_by(&r, req("m"), cx()).await;
    assert_eq!(r.status().targets[0].breaker, "open");
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Its time is up: the next request probes it, so it is shown half open, not "open,
    // reopens in 0 ms".
    let t = &r.status().targets[0];
    assert_eq!((t.breaker, t.open_ms), ("half_open", None));
    served_by(&r, req("m"), cx()).await;
    for _ in 0..50 {
        if a.probes.load(Ordering::SeqCst) == 1 && r.status().targets[0].breaker == "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = &r.status().targets[0];
    assert_eq!(t.breaker, "open");
    // Twice the open period after a failed probe.
    assert!(t.open_ms.unwrap() > 100, "{t:?}");
}

#[tokio::test]
async fn client_errors_never_open_a_breaker() {
    let a = Fake::new("a", Act::Fail(400));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        Policy {
            breaker_failures: 2,
            ..quick()
        },
    );
    for _ in 0..10 {
        let _ = r.send(req("m"), cx()).await;
    }
    let t = &r.status().targets[0];
    assert_eq!((t.breaker, t.failures, t.requests), ("closed", 0, 10));
    assert_eq!(a.calls(), 10);
}

#[tokio::test]
async fn a_stream_failing_before_content_moves_to_the_next_target_invisibly() {
    for first in [Act::StreamErrorFirst, Act::StreamDiesBeforeContent] {
        let (a, b) = (Fake::new("a", first.clone()), Fake::new("b", Act::Ok));
        let r = router(
            &[a.clone(), b],
            vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
            quick(),
        );
        let (reply, served) = r.send(stream_req("m"), cx()).await.unwrap();
        assert_eq!(served.provider, "b", "{first:?}");
        let (text, err) = collect_text(reply).await;
        assert_eq!((text.as_str(), err.is_none()), ("b", true), "{first:?}");
        assert_eq!(r.status().targets[0].failures, 1, "{first:?}");
    }
}

/// With `stream_hold` zero, a stream is served at its first event (its opening is not held
/// for content), though an error as its very first event still moves on.
#[tokio::test(start_paused = true)]
async fn with_no_hold_a_stream_is_served_at_its_first_event() {
    let no_hold = || Policy {
        stream_hold: Duration::ZERO,
        ..quick()
    };
    let (a, b) = (
        Fake::new("a", Act::LateContent(Duration::from_secs(30))),
        Fake::new("b", Act::Ok),
    );
    let r = router(
        &[a, b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        no_hold(),
    );
    let began = tokio::time::Instant::now();
    let (_, served) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "a");
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "{:?}",
        began.elapsed()
    );
    // Held by default: served once the hold ran out.
    let r = router(
        &[
            Fake::new("a", Act::LateContent(Duration::from_secs(30))),
            b.clone(),
        ],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        quick(),
    );
    let began = tokio::time::Instant::now();
    r.send(stream_req("m"), cx()).await.unwrap();
    assert!(began.elapsed() >= Duration::from_secs(1));
    // A first event that is an error: the next target, all the same.
    let r = router(
        &[Fake::new("a", Act::StreamErrorFirst), b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        no_hold(),
    );
    let (_, served) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "b");
}

#[tokio::test]
async fn a_stream_failing_after_content_ends_with_the_error() {
    let (a, b) = (
        Fake::new("a", Act::StreamDiesAfterContent),
        Fake::new("b", Act::Ok),
    );
    let r = router(
        &[a, b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        quick(),
    );
    let (reply, served) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "a");
    assert_eq!(r.status().targets[0].in_flight, 1);
    let (text, err) = collect_text(reply).await;
    assert_eq!(text, "partial");
    assert_eq!(err.unwrap().kind, ErrorKind::Connect);
    assert_eq!(b.calls(), 0);
    let t = &r.status().targets[0];
    // The stream is over (dropped): nothing in flight; its failure counted.
    assert_eq!((t.in_flight, t.failures), (0, 1));
}

/// Streams that fail after their first content count toward the breaker as any failure
/// does: a stream is a success only once it ends well, so each new stream's start does not
/// wipe the run of failures (the breaker of a target whose streams all broke mid-way
/// never opened).
#[tokio::test]
async fn streams_failing_after_content_open_the_breaker() {
    let (a, b) = (
        Fake::new("a", Act::StreamDiesAfterContent),
        Fake::new("b", Act::Ok),
    );
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 3,
            ..quick()
        },
    );
    for _ in 0..3 {
        let (reply, served) = r.send(stream_req("m"), cx()).await.unwrap();
        assert_eq!(served.provider, "a");
        assert!(collect_text(reply).await.1.is_some());
    }
    let t = &r.status().targets[0];
    assert_eq!((t.breaker, t.requests, t.failures), ("open", 3, 3));
    // Open: the next stream goes to b without asking a.
    let (reply, served) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "b");
    assert!(collect_text(reply).await.1.is_none());
    assert_eq!(a.calls(), 3);
    // A stream that ends well is a success: its target's run of failures starts over.
    let c = Fake::new("c", Act::StreamDiesAfterContent);
    let r = router(
        &[c.clone()],
        vec![Route::new("m", vec![Target::new("c")])],
        Policy {
            breaker_failures: 3,
            ..quick()
        },
    );
    for act in [
        Act::StreamDiesAfterContent,
        Act::StreamDiesAfterContent,
        Act::Ok,
        Act::StreamDiesAfterContent,
        Act::StreamDiesAfterContent,
    ] {
        c.set(act);
        let (reply, _) = r.send(stream_req("m"), cx()).await.unwrap();
        collect_text(reply).await;
    }
    let t = &r.status().targets[0];
    assert_eq!((t.breaker, t.requests, t.failures), ("closed", 5, 4));
}

#[tokio::test]
async fn a_session_sticks_to_its_target_while_it_is_healthy() {
    let (r, f) = three(Strategy::RoundRobin, [1, 1, 1]);
    let mut c = cx();
    c.session = Some("session-1".into());
    let first = served_by(&r, req("m"), c.clone()).await;
    for _ in 0..5 {
        assert_eq!(served_by(&r, req("m"), c.clone()).await, first);
    }
    // Other traffic still rotates.
    let others: std::collections::HashSet<String> =
        futures_util::future::join_all((0..3).map(|_| served_by(&r, req("m"), cx())))
            .await
            .into_iter()
            .collect();
    assert_eq!(others.len(), 3);
    // The pinned target fails: the session moves, and stays where it went.
    let pinned = f.iter().find(|p| p.id == first).unwrap();
    pinned.set(Act::Fail(503));
    let moved = served_by(&r, req("m"), c.clone()).await;
    assert_ne!(moved, first);
    pinned.set(Act::Ok);
    for _ in 0..3 {
        assert_eq!(served_by(&r, req("m"), c.clone()).await, moved);
    }
    // A route that is not sticky ignores sessions.
    let g = [Fake::new("a", Act::Ok), Fake::new("b", Act::Ok)];
    let r = router(
        &g,
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])
            .strategy(Strategy::RoundRobin)
            .sticky(false)],
        quick(),
    );
    for _ in 0..4 {
        served_by(&r, req("m"), c.clone()).await;
    }
    assert_eq!(g.each_ref().map(|p| p.calls()), [2, 2]);
}

fn image_req(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message {
            role: Role::User,
            content: Content::blocks(vec![ContentBlock::Image(ImageBlock {
                source: MediaSource::Url("https://example.com/cat.png".into()),
                detail: None,
                cache_control: None,
                extra: Default::default(),
            })]),
            extra: Default::default(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_target_lacking_a_feature_is_skipped_or_gets_the_request_without_it() {
    let text_only = Capabilities {
        images: false,
        ..Capabilities::ALL
    };
    let a = Fake::build("a", Act::Ok, &[], text_only);
    let b = Fake::new("b", Act::Ok);
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        quick(),
    );
    assert_eq!(served_by(&r, image_req("m"), cx()).await, "b");
    assert_eq!(served_by(&r, req("m"), cx()).await, "a");
    assert_eq!(a.calls(), 1);

    // Only the text-only target: skip means a clear 400, drop means a warning.
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let (last, _) = failure(&r, image_req("m")).await;
    assert_eq!(last.kind, ErrorKind::InvalidRequest);
    assert!(
        last.message.contains("a (m) does not support images"),
        "{}",
        last.message
    );
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")]).unsupported(Unsupported::Drop)],
        quick(),
    );
    let (_, served) = r.send(image_req("m"), cx()).await.unwrap();
    assert_eq!(served.warnings, ["a/m: dropped unsupported: images"]);
    let sent = a.requests.lock().unwrap().last().cloned().unwrap();
    assert!(matches!(
        &sent.messages[0].content.blocks[0],
        ContentBlock::Text(t) if t.text.as_str().contains("image omitted")
    ));
    // A target's own override wins over what the provider declares.
    let r = router(
        &[b.clone()],
        vec![Route::new(
            "m",
            vec![Target::new("b").capabilities(text_only)],
        )],
        quick(),
    );
    assert!(r.send(image_req("m"), cx()).await.is_err());
}

/// A target's output limits: its default where the request set none, its cap where the
/// request asked for more (a thinking budget that no longer fits is halved with it); a
/// target without limits gets the request as it came.
#[tokio::test]
async fn a_targets_output_limits_apply_to_it_alone() {
    let a = Fake::new("a", Act::Ok);
    let b = Fake::new("b", Act::Ok);
    let mut limited = Target::with_model("a", "llama");
    limited.default_max_tokens = Some(2048);
    limited.max_output_tokens = Some(8192);
    let r = router(
        &[a.clone(), b.clone()],
        vec![
            Route::new("m", vec![limited]),
            Route::new("n", vec![Target::new("b")]),
        ],
        quick(),
    );
    let sent = |f: &Fake| f.requests.lock().unwrap().last().cloned().unwrap();
    let budget_of = |r: &ChatRequest| match r.thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) => Some(budget_tokens),
        _ => None,
    };
    for (asked, thinking, expect, budget) in [
        (None, None, Some(2048), None),
        (Some(100), None, Some(100), None),
        (Some(64000), Some(32000), Some(8192), Some(4096)),
        (Some(64000), Some(4000), Some(8192), Some(4000)),
    ] {
        let mut q = req("m");
        q.max_tokens = asked;
        q.thinking = thinking.map(|budget_tokens| ThinkingConfig::Enabled { budget_tokens });
        assert_eq!(served_by(&r, q.clone(), cx()).await, "a");
        let to_a = sent(&a);
        assert_eq!((to_a.model.as_str(), to_a.max_tokens), ("llama", expect));
        assert_eq!(budget_of(&to_a), budget);
        q.model = "n".into();
        assert_eq!(served_by(&r, q, cx()).await, "b");
        let to_b = sent(&b);
        assert_eq!((to_b.max_tokens, budget_of(&to_b)), (asked, thinking));
    }
}

/// `cache_control` and adaptive thinking are hints: a target without them gets the request
/// without them (and a warning) even when the route skips targets lacking a feature; an
/// explicit thinking budget still follows the route's `unsupported`.
#[tokio::test]
async fn hints_are_dropped_for_a_target_without_them_whatever_unsupported_says() {
    let plain = Capabilities {
        thinking: false,
        prompt_caching: false,
        ..Capabilities::ALL
    };
    let a = Fake::build("a", Act::Ok, &[], plain);
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let mut hinted = req("m");
    hinted.thinking = Some(weir_model::ThinkingConfig::Adaptive(None));
    hinted.messages = vec![Message {
        role: Role::User,
        content: Content::blocks(vec![ContentBlock::Text(weir_model::TextBlock {
            text: "hi".into(),
            cache_control: Some(weir_model::raw::to_raw(
                &serde_json::json!({"type": "ephemeral"}),
            )),
            extra: Default::default(),
        })]),
        extra: Default::default(),
    }];
    let (_, served) = r.send(hinted.clone(), cx()).await.unwrap();
    assert_eq!(
        served.warnings,
        ["a/m: dropped unsupported: thinking, prompt_caching"]
    );
    let sent = a.requests.lock().unwrap().last().cloned().unwrap();
    assert!(sent.thinking.is_none());
    assert!(matches!(
        &sent.messages[0].content.blocks[0],
        ContentBlock::Text(t) if t.cache_control.is_none()
    ));
    // A thinking budget asked for is not a hint: skipped (a clear 400 here), naming only it.
    let mut budget = hinted;
    budget.thinking = Some(weir_model::ThinkingConfig::Enabled {
        budget_tokens: 1024,
    });
    let (last, _) = failure(&r, budget).await;
    assert_eq!(last.kind, ErrorKind::InvalidRequest);
    assert!(
        last.message.ends_with("a (m) does not support thinking"),
        "{}",
        last.message
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_with_one_key_rate_limited_lose_none() {
    let a = Fake::build(
        "a",
        Act::Slow(Duration::from_millis(5)),
        &["sk-1", "sk-2", "sk-3"],
        Capabilities::ALL,
    );
    a.key_act("sk-2", Act::Limited(Duration::from_secs(60)));
    let r = Arc::new(router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    ));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move {
                let req = if i % 2 == 0 {
                    req("m")
                } else {
                    stream_req("m")
                };
                match r.send(req, cx()).await {
                    Ok((Reply::Stream(s), _)) => collect_text(Reply::Stream(s)).await.1.is_none(),
                    Ok(_) => true,
                    Err(_) => false,
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 200);
    let st = r.status();
    assert_eq!(st.providers[0].keys[1].state, "cooling_down");
    assert_eq!(st.targets[0].in_flight, 0);
    assert!(st.providers[0].keys.iter().all(|k| k.in_flight == 0));
}

#[tokio::test]
async fn routers_built_from_one_config_can_share_what_they_learn() {
    let routes = || vec![Route::new("m", vec![Target::new("a")])];
    let a1 = Fake::build("a", Act::Ok, &["sk-1", "sk-2"], Capabilities::ALL);
    let a2 = Fake::build("a", Act::Ok, &["sk-1", "sk-2"], Capabilities::ALL);
    a1.key_act("sk-1", Act::Limited(Duration::from_secs(60)));
    a2.key_act("sk-1", Act::Limited(Duration::from_secs(60)));
    let first = router(&[a1.clone()], routes(), quick());
    let second = router(&[a2.clone()], routes(), quick())
        .share_state_with(&first)
        .unwrap();
    // A cooldown learned by one is respected by the other.
    for _ in 0..2 {
        served_by(&first, req("m"), cx()).await;
    }
    for _ in 0..3 {
        served_by(&second, req("m"), cx()).await;
    }
    assert_eq!(a2.keys_used(), ["sk-2", "sk-2", "sk-2"]);
    // One 429 and five answers, all in one place.
    assert_eq!(second.status().targets[0].requests, 6);
    // Different configs cannot share.
    let other = router(
        &[a2],
        vec![Route::new("x", vec![Target::new("a")])],
        quick(),
    );
    assert!(other.share_state_with(&first).is_err());
}

/// A sink that hands what it gets to another router, as a shared store would.
struct Relay(Mutex<Vec<weir_router::StateChange>>);

impl weir_router::StateSink for Relay {
    fn publish(&self, change: weir_router::StateChange) {
        self.0.lock().unwrap().push(change);
    }
}

#[tokio::test]
async fn cooldowns_refusals_and_breakers_reach_another_instance_through_a_sink() {
    // Two instances of one config: what the first learns, the second applies.
    let make = || {
        let a = Fake::build("a", Act::Ok, &["sk-one", "sk-two"], Capabilities::ALL);
        let b = Fake::new("b", Act::Ok);
        (a, b)
    };
    let routes = || vec![Route::new("m", vec![Target::new("a"), Target::new("b")])];
    let policy = || Policy {
        breaker_failures: 1,
        breaker_open: Duration::from_secs(30),
        ..quick()
    };
    let (a1, b1) = make();
    let (a2, b2) = make();
    let relay = Arc::new(Relay(Mutex::new(Vec::new())));
    let first =
        router(&[a1.clone(), b1.clone()], routes(), policy()).with_state_sink(relay.clone());
    let events = Arc::new(Events::default());
    let second =
        router(&[a2.clone(), b2.clone()], routes(), policy()).with_observer(events.clone());

    // A 429 on sk-one at the first instance: the second stops using sk-one too.
    a1.key_act("sk-one", Act::Limited(Duration::from_secs(60)));
    a1.key_act("sk-two", Act::Fail(401));
    for _ in 0..2 {
        served_by(&first, req("m"), cx()).await;
    }
    let changes = relay.0.lock().unwrap().clone();
    let id_one = weir_router::key_id("sk-one");
    assert!(
        changes.iter().any(|c| matches!(c, weir_router::StateChange::KeyRest { key, rate_limited: true, until_ms, .. }
            if *key == id_one && *until_ms > weir_router::unix_ms() + 55_000)),
        "{changes:?}"
    );
    assert!(changes
        .iter()
        .any(|c| matches!(c, weir_router::StateChange::KeyRefused { status: 401, .. })));
    // Nothing secret travels.
    let dump = format!("{changes:?}");
    assert!(
        !dump.contains("sk-one") && !dump.contains("sk-two"),
        "{dump}"
    );
    for c in &changes {
        second.apply(c);
    }
    let st = second.status();
    assert_eq!(st.providers[0].keys[0].state, "cooling_down");
    assert!(st.providers[0].keys[0].cooldown_ms.unwrap() > 55_000);
    assert_eq!(st.providers[0].keys[1].state, "refused");
    // Every key of a is out at the second instance: it goes to b without calling a.
    assert_eq!(served_by(&second, req("m"), cx()).await, "b");
    assert_eq!(a2.calls(), 0);

    // A breaker opening at the first instance opens it at the second (logged and counted
    // there), and its closing closes it.
    relay.0.lock().unwrap().clear();
    let (a3, b3) = make();
    let third =
        router(&[a3.clone(), b3.clone()], routes(), policy()).with_state_sink(relay.clone());
    a3.set(Act::Fail(500));
    assert_eq!(served_by(&third, req("m"), cx()).await, "b");
    let changes = relay.0.lock().unwrap().clone();
    let open = changes
        .iter()
        .find(|c| matches!(c, weir_router::StateChange::BreakerOpen { .. }))
        .cloned()
        .expect("breaker open published");
    second.apply(&open);
    assert_eq!(second.status().targets[0].breaker, "open");
    // Applying it again changes nothing (an instance hears its own changes too).
    second.apply(&open);
    assert_eq!(
        third.state_snapshot().len(),
        1,
        "{:?}",
        third.state_snapshot()
    );
    second.apply(&weir_router::StateChange::BreakerClosed {
        provider: "a".into(),
        model: "m".into(),
    });
    assert_eq!(second.status().targets[0].breaker, "closed");
    let ev = events.0.lock().unwrap().clone();
    let breaker: Vec<&String> = ev.iter().filter(|e| e.starts_with("breaker")).collect();
    assert_eq!(breaker, ["breaker a open", "breaker a closed"]);
    // Changes for keys or targets this instance does not have are ignored.
    second.apply(&weir_router::StateChange::KeyRest {
        provider: "zzz".into(),
        key: "0".into(),
        model: None,
        until_ms: u64::MAX,
        rate_limited: true,
        no_credit: false,
    });
}

#[tokio::test]
async fn a_model_limit_reaches_another_instance_as_a_model_limit() {
    let make = || Fake::build("a", Act::Ok, &["sk-one"], Capabilities::ALL);
    let routes = || vec![Route::new("claude-*", vec![Target::new("a")])];
    let (a1, a2) = (make(), make());
    a1.set(Act::QuotaFor("claude-opus", Duration::from_secs(60)));
    let relay = Arc::new(Relay(Mutex::new(Vec::new())));
    let first = router(&[a1.clone()], routes(), quick()).with_state_sink(relay.clone());
    let second = router(&[a2.clone()], routes(), quick());
    let _ = failure(&first, req("claude-opus")).await;
    let changes = relay.0.lock().unwrap().clone();
    assert!(
        changes.iter().any(|c| matches!(c, weir_router::StateChange::KeyRest { model: Some(m), rate_limited: true, .. } if m == "claude-opus")),
        "{changes:?}"
    );
    for c in &changes {
        second.apply(c);
    }
    // A snapshot of the first carries it too (for an instance that joins later).
    assert!(first.state_snapshot().iter().any(
        |c| matches!(c, weir_router::StateChange::KeyRest { model: Some(m), .. } if m == "claude-opus")
    ));
    let st = second.status();
    let key = &st.providers[0].keys[0];
    assert_eq!(key.state, "ok");
    assert_eq!(key.model_limits[0].model, "claude-opus");
    assert!(key.model_limits[0].ms > 55_000);
    // The second instance passes the model over without a call, and serves the others.
    let (e, _) = failure(&second, req("claude-opus")).await;
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(a2.calls(), 0);
    assert_eq!(served_by(&second, req("claude-haiku"), cx()).await, "a");
}

/// A model's output ceiling one instance learned from a refusal goes to the others (and
/// into a snapshot for those that join later): they send lowered at once, without paying
/// a refused call each. A glob route's forwarded model learns it by the client's name.
#[tokio::test]
async fn a_learned_output_ceiling_reaches_another_instance() {
    let routes = || {
        vec![
            Route::new("opus", vec![Target::with_model("a", "opus")]),
            Route::new("gpt-*", vec![Target::new("a")]),
        ]
    };
    let (a1, a2) = (Fake::new("a", Act::Ceiling(64000)), Fake::new("a", Act::Ok));
    let relay = Arc::new(Relay(Mutex::new(Vec::new())));
    let first = router(&[a1.clone()], routes(), quick()).with_state_sink(relay.clone());
    let second = router(&[a2.clone()], routes(), quick());
    for model in ["opus", "gpt-4o"] {
        let mut q = req(model);
        q.max_tokens = Some(128000);
        first.send(q, cx()).await.unwrap();
    }
    assert_eq!(a1.calls(), 4, "each refused once");
    let changes = relay.0.lock().unwrap().clone();
    let ceilings: Vec<(&str, u32)> = changes
        .iter()
        .filter_map(|c| match c {
            weir_router::StateChange::OutputCeiling {
                model,
                tokens,
                until_ms,
                ..
            } => {
                assert!(*until_ms > weir_router::unix_ms() + 3_500_000);
                Some((model.as_str(), *tokens))
            }
            _ => None,
        })
        .collect();
    assert_eq!(ceilings, [("opus", 64000), ("gpt-4o", 64000)]);
    let snapshot = first.state_snapshot();
    assert_eq!(
        snapshot
            .iter()
            .filter(|c| matches!(c, weir_router::StateChange::OutputCeiling { .. }))
            .count(),
        2,
        "{snapshot:?}"
    );
    for c in &changes {
        second.apply(c);
    }
    for model in ["opus", "gpt-4o"] {
        let mut q = req(model);
        q.max_tokens = Some(128000);
        let (_, served) = second.send(q, cx()).await.unwrap();
        assert_eq!(served.warnings.len(), 1, "{model}: {:?}", served.warnings);
        let sent = a2.requests.lock().unwrap().last().cloned().unwrap();
        assert_eq!(sent.max_tokens, Some(64000), "{model}");
    }
    assert_eq!(a2.calls(), 2, "no refused call at the second instance");
}

#[tokio::test]
async fn a_call_dropped_while_waiting_gives_its_in_flight_counts_back() {
    let a = Fake::build(
        "a",
        Act::Slow(Duration::from_secs(30)),
        &["k1"],
        Capabilities::ALL,
    );
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    for request in [req("m"), stream_req("m")] {
        // The client goes away: its request's future is dropped mid-call.
        let waited = tokio::time::timeout(Duration::from_millis(20), r.send(request, cx())).await;
        assert!(waited.is_err());
    }
    assert_eq!(a.calls(), 2);
    let st = r.status();
    assert_eq!(st.targets[0].in_flight, 0);
    assert_eq!(st.providers[0].keys[0].in_flight, 0);
    // A served stream holds them until it is dropped.
    a.set(Act::Ok);
    let (reply, _) = r.send(stream_req("m"), cx()).await.unwrap();
    assert_eq!(r.status().targets[0].in_flight, 1);
    drop(reply);
    assert_eq!(r.status().targets[0].in_flight, 0);
    assert_eq!(r.status().providers[0].keys[0].in_flight, 0);
}

#[tokio::test]
async fn glob_routes_list_what_their_providers_list_fetched_once_at_a_time() {
    let a = Fake::new("a", Act::Ok);
    let r = router(
        &[a.clone()],
        vec![
            Route::new("gpt-exact", vec![Target::new("a")]),
            Route::new("gpt-*", vec![Target::new("a")]),
            Route::new("pinned-*", vec![Target::with_model("a", "gpt-a")]),
        ],
        quick(),
    );
    let lists = futures_util::future::join_all((0..5).map(|_| r.provider_models())).await;
    for l in &lists {
        assert_eq!(l, &["gpt-a", "gpt-b"]);
    }
    assert_eq!(
        a.listings.load(Ordering::SeqCst),
        1,
        "one fetch for five requests"
    );
    r.provider_models().await;
    assert_eq!(a.listings.load(Ordering::SeqCst), 1, "kept");
}

#[tokio::test]
async fn a_target_passed_over_does_not_cut_short_the_wait_for_a_resting_one() {
    let text_only = Capabilities {
        images: false,
        ..Capabilities::ALL
    };
    let a = Fake::build("a", Act::Ok, &[], text_only);
    let b = Fake::build("b", Act::Ok, &["kb"], Capabilities::ALL);
    b.script
        .lock()
        .unwrap()
        .push_back(Act::Limited(Duration::from_millis(40)));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
        Policy {
            retries: 1,
            ..quick()
        },
    );
    // The retry waits for b's key to come back (not only the short backoff, which would
    // find it still resting and call nothing), then b serves.
    let (_, served) = r.send(image_req("m"), cx()).await.unwrap();
    assert_eq!(served.provider, "b");
    assert_eq!(b.calls(), 2);
    assert_eq!(a.calls(), 0);
}

/// On a glob route, a target forwarding the client's model name keeps each model's health
/// apart: one model failing (a model retired upstream, an answer Weir cannot read) must not
/// open the breaker of every model behind `claude-*`. Another instance learns it per model.
#[tokio::test]
async fn a_glob_route_s_forwarding_target_has_a_breaker_per_model() {
    let make = || (Fake::new("a", Act::Ok), Fake::new("b", Act::Ok));
    let routes = || {
        vec![Route::new(
            "claude-*",
            vec![Target::new("a"), Target::new("b")],
        )]
    };
    let policy = || Policy {
        breaker_failures: 2,
        breaker_open: Duration::from_secs(30),
        ..quick()
    };
    let (a, b) = make();
    let relay = Arc::new(Relay(Mutex::new(Vec::new())));
    let r = router(&[a.clone(), b.clone()], routes(), policy()).with_state_sink(relay.clone());
    a.script
        .lock()
        .unwrap()
        .extend([Act::Fail(500), Act::Fail(500)]);
    for _ in 0..2 {
        assert_eq!(served_by(&r, req("claude-x"), cx()).await, "b");
    }
    assert_eq!(served_by(&r, req("claude-x"), cx()).await, "b");
    assert_eq!(a.calls(), 2, "claude-x's breaker is open");
    assert_eq!(served_by(&r, req("claude-y"), cx()).await, "a");
    let st = r.status();
    let of = |model: &str| {
        st.targets
            .iter()
            .find(|t| t.provider == "a" && t.model == model)
            .map(|t| t.breaker)
    };
    assert_eq!(of("claude-x"), Some("open"), "{:?}", st.targets);
    assert_eq!(of("claude-y"), Some("closed"));

    // Another instance opens claude-x only.
    let (a2, b2) = make();
    let second = router(&[a2.clone(), b2.clone()], routes(), policy());
    for c in relay.0.lock().unwrap().iter() {
        second.apply(c);
    }
    assert_eq!(served_by(&second, req("claude-x"), cx()).await, "b");
    assert_eq!(a2.calls(), 0);
    assert_eq!(served_by(&second, req("claude-z"), cx()).await, "a");
    assert_eq!(second.state_snapshot().len(), 1);
}

/// Per-model states are bounded: past 1,024 models the least recently used idle one is
/// forgotten, never one with failures (its open breaker holds), so a client sending
/// junk names cannot take per-model health from the models in use.
#[tokio::test]
async fn per_model_states_past_the_bound_forget_idle_ones_only() {
    let (a, b) = (Fake::new("a", Act::Ok), Fake::new("b", Act::Ok));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m-*", vec![Target::new("a"), Target::new("b")])],
        Policy {
            breaker_failures: 2,
            breaker_open: Duration::from_secs(30),
            ..quick()
        },
    );
    a.script
        .lock()
        .unwrap()
        .extend([Act::Fail(500), Act::Fail(500)]);
    for _ in 0..2 {
        assert_eq!(served_by(&r, req("m-bad"), cx()).await, "b");
    }
    for i in 0..1500 {
        assert_eq!(served_by(&r, req(&format!("m-{i}")), cx()).await, "a");
    }
    let st = r.status();
    let per_model = st.targets.iter().filter(|t| t.provider == "a").count();
    // (The route target's own state is listed too.)
    assert_eq!(per_model, 1024 + 1, "bounded");
    assert!(st
        .targets
        .iter()
        .any(|t| t.model == "m-bad" && t.breaker == "open"));
    assert!(st.targets.iter().any(|t| t.model == "m-1499"));
    let calls = a.calls();
    assert_eq!(served_by(&r, req("m-bad"), cx()).await, "b");
    assert_eq!(a.calls(), calls, "m-bad's breaker still holds");
}

/// An upstream that refuses an output limit above its model's ceiling, and names it, is
/// asked again with the limit lowered (a thinking budget fitted below it), and the answer
/// says so; the ceiling is remembered for the model, so the next requests go lowered at
/// once; another model of the same provider is not lowered.
#[tokio::test]
async fn a_refused_output_limit_is_lowered_to_the_ceiling_the_upstream_names() {
    let a = Fake::new("a", Act::Ceiling(64000));
    let events = Arc::new(Events::default());
    let r = router(
        &[a.clone()],
        vec![
            Route::new("claude", vec![Target::with_model("a", "opus")]),
            Route::new("other", vec![Target::with_model("a", "haiku")]),
        ],
        quick(),
    )
    .with_observer(events.clone());
    let sent = |f: &Fake| f.requests.lock().unwrap().last().cloned().unwrap();
    let mut q = stream_req("claude");
    q.max_tokens = Some(128000);
    q.thinking = Some(ThinkingConfig::Enabled {
        budget_tokens: 127999,
    });
    let (reply, served) = r.send(q.clone(), cx()).await.unwrap();
    let (text, error) = collect_text(reply).await;
    assert_eq!(text, "a");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(a.calls(), 2, "asked again once");
    assert_eq!(sent(&a).max_tokens, Some(64000));
    assert!(matches!(
        sent(&a).thinking,
        Some(ThinkingConfig::Enabled {
            budget_tokens: 32000
        })
    ));
    assert_eq!(
        served.warnings,
        vec!["a/opus: output limit lowered to 64000, the most the model takes (its upstream refused more)"]
    );
    assert_eq!(served.failed_attempts, 0, "a lowered limit is no failure");
    assert_eq!(*events.0.lock().unwrap(), ["lowered a 64000"]);

    // Remembered (and shown): the next request goes lowered at once.
    let st = r.status();
    let opus = st.targets.iter().find(|t| t.model == "opus").unwrap();
    assert_eq!(opus.output_ceiling, Some(64000));
    let (_, served) = r.send(q.clone(), cx()).await.unwrap();
    assert_eq!(a.calls(), 3);
    assert_eq!(sent(&a).max_tokens, Some(64000));
    assert_eq!(served.warnings.len(), 1);
    // (Lowered from what it learned: no refusal to count.)
    assert_eq!(events.0.lock().unwrap().len(), 1);
    // A request within the ceiling goes as it came, without a warning.
    let mut within = req("claude");
    within.max_tokens = Some(1000);
    let (_, served) = r.send(within, cx()).await.unwrap();
    assert_eq!((a.calls(), sent(&a).max_tokens), (4, Some(1000)));
    assert!(served.warnings.is_empty());
    // Another model of the provider has learned nothing.
    a.set(Act::Ok);
    q.model = "other".into();
    r.send(q, cx()).await.unwrap();
    assert_eq!(sent(&a).max_tokens, Some(128000));
}

/// The room a request's input leaves in the context window is for that request only, and
/// too little of it is the client's to deal with; a second refusal naming a lower limit
/// (the room, after the model's ceiling) is asked again, one naming no lower limit is the
/// answer.
#[tokio::test]
async fn the_room_left_is_for_one_request_and_a_second_refusal_is_final() {
    let a = Fake::new("a", Act::Room(6000));
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let sent = |f: &Fake| f.requests.lock().unwrap().last().cloned().unwrap();
    let mut q = req("m");
    q.max_tokens = Some(16000);
    let (_, served) = r.send(q.clone(), cx()).await.unwrap();
    assert_eq!((a.calls(), sent(&a).max_tokens), (2, Some(6000)));
    assert_eq!(
        served.warnings,
        vec!["a/m: output limit lowered to 6000, the room its input leaves in the model's context window"]
    );
    // Not remembered: the next request goes as it came (and is lowered again).
    r.send(q.clone(), cx()).await.unwrap();
    assert_eq!(a.calls(), 4);
    assert_eq!(a.requests.lock().unwrap()[2].max_tokens, Some(16000));

    // Room for a few words only: the refusal is the client's (Claude Code compacts).
    a.set(Act::Room(1000));
    let (e, _) = failure(&r, q.clone()).await;
    assert_eq!((a.calls(), e.status), (5, Some(400)));

    // Over the model's ceiling and the room both: lowered twice.
    a.set(Act::Room(6000));
    a.script.lock().unwrap().push_back(Act::Ceiling(10000));
    r.send(q.clone(), cx()).await.unwrap();
    assert_eq!(a.calls(), 8);
    let limits: Vec<Option<u32>> = a.requests.lock().unwrap()[5..]
        .iter()
        .map(|r| r.max_tokens)
        .collect();
    assert_eq!(limits, [Some(16000), Some(10000), Some(6000)]);

    // Refused again naming no lower limit: that refusal is the answer, no third call.
    a.set(Act::Stuck(6000));
    let (e, attempts) = failure(&r, q.clone()).await;
    assert_eq!(a.calls(), 10);
    assert_eq!(e.status, Some(400));
    assert!(e.message.contains("6000 > 6000"), "{}", e.message);
    assert_eq!(attempts.len(), 1);

    // An upstream naming a lower ceiling every time is asked three times in all.
    a.set(Act::Below);
    let (e, _) = failure(&r, q.clone()).await;
    assert_eq!((a.calls(), e.status), (13, Some(400)));
}

/// A limit the encoder raised itself (to fit a thinking budget) and the upstream refused
/// is asked again under the ceiling, though the request's own limit was below it.
#[tokio::test]
async fn a_ceiling_above_the_requests_own_limit_still_caps_what_the_encoder_sends() {
    let a = Fake::new("a", Act::Stuck(32000));
    a.script.lock().unwrap().push_back(Act::Stuck(32000));
    a.set(Act::Ok);
    let r = router(
        &[a.clone()],
        vec![Route::new("m", vec![Target::new("a")])],
        quick(),
    );
    let mut q = req("m");
    q.max_tokens = Some(1000);
    q.thinking = Some(ThinkingConfig::Enabled {
        budget_tokens: 40000,
    });
    let (_, served) = r.send(q.clone(), cx()).await.unwrap();
    assert_eq!(a.calls(), 2);
    let second = a.requests.lock().unwrap()[1].clone();
    assert_eq!(
        (second.max_tokens, second.output_cap),
        (Some(1000), Some(32000))
    );
    assert_eq!(
        served.warnings,
        ["a/m: output limit and thinking budget kept within 32000, the most the model takes (its upstream refused more)"]
    );
    // Without thinking nothing could have raised it: a refusal naming no less than the
    // request's own limit is the answer, and nothing is learned.
    let b = Fake::new("b", Act::Stuck(32000));
    let r = router(
        &[b.clone()],
        vec![Route::new("m", vec![Target::new("b")])],
        quick(),
    );
    q.thinking = None;
    failure(&r, q).await;
    assert_eq!(b.calls(), 1);
    assert_eq!(r.status().targets[0].output_ceiling, None);
}
