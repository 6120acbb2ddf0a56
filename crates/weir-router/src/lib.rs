//! Weir's router: which provider and upstream model serve a client's model name, and
//! keeping requests succeeding while upstreams rate-limit, overload, fail and recover.
//!
//! It knows providers only through the [`Provider`] trait: no concrete provider, no HTTP,
//! no config file. A Rust service can embed it directly:
//!
//! ```no_run
//! # async fn demo(anthropic: std::sync::Arc<dyn weir_model::Provider>,
//! #               bedrock: std::sync::Arc<dyn weir_model::Provider>) {
//! use weir_model::{CallContext, ChatRequest};
//! use weir_router::{Route, Router, Strategy, Target};
//!
//! let routes = vec![Route::new(
//!     "claude-sonnet-4-5",
//!     vec![
//!         Target::with_model("anthropic", "claude-sonnet-4-5-20250929"),
//!         Target::with_model("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
//!     ],
//! )
//! .strategy(Strategy::Fallback)];
//! let router = Router::new(vec![anthropic, bedrock], routes).expect("valid routes");
//! let req = ChatRequest { model: "claude-sonnet-4-5".into(), ..Default::default() };
//! let (reply, served) = router.send(req, CallContext::new("req-1")).await.expect("served");
//! # }
//! ```
//!
//! What it does for every request ([`Router::send`]):
//!
//! - **Resolution**: the first route whose exact name matches, else the first matching
//!   glob, in table order.
//! - **Order of targets** by the route's [`Strategy`]; a session (from
//!   [`CallContext::session`]) stays on the target that served it while that target is
//!   healthy, when the route is sticky.
//! - **Capabilities**: a target lacking what the request uses (images, documents, tools,
//!   thinking, prompt caching) is skipped, or, with [`Unsupported::Drop`], gets the request
//!   without those features and [`Served::warnings`] says so.
//! - **Circuit breakers** per target: only 5xx, timeouts and connection failures count;
//!   open after [`Policy::breaker_failures`] in a row; after [`Policy::breaker_open`] one
//!   cheap probe ([`Provider::probe`], never a user's request) decides whether it closes.
//! - **Key pools**: each call uses the least-loaded usable key of the provider; a 429
//!   rests that key only (from the upstream's `retry-after` family, or
//!   [`Policy::default_cooldown`]) and the request moves to the provider's next key before
//!   the next target; a key answered with 401/403 leaves the pool (for
//!   [`Policy::refused_key_retry`]); headers saying a limit
//!   is at zero rest the key until it resets, without spending a request.
//! - **Stream failover**: a stream's opening events are held until its first content
//!   event, so an upstream that fails before content is replaced invisibly.
//! - **Retries**: when every target failed in a way that may pass, the walk repeats
//!   ([`Policy::retries`]) after a jittered backoff that respects `retry-after`, within the
//!   request's deadline. A request the upstream rejected as invalid (400) is returned at
//!   once; a target whose failure would repeat (an answer the gateway cannot read,
//!   `ProviderError::repeats`) is not asked again.
//! - **Exhaustion**: 429 with the smallest retry-after when every target was rate
//!   limited; otherwise 503 (all unavailable) or 502, with a sanitized summary.
//!
//! [`Router::status`] is a snapshot of all of this for dashboards; an [`Observer`] gets
//! each failover, retry, cooldown and breaker transition as it happens (for metrics).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod caps;
mod glob;
mod hold;
mod state;
mod status;
mod sync;

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_model::{
    ApiError, CallContext, Capabilities, ChatRequest, EmbedRequest, EmbedResponse, ErrorKind,
    KeyReport, OutputCeiling, Provider, ProviderError, Reply, ResponsesReply, ResponsesRequest,
    ThinkingConfig, ThreadUse,
};

pub use glob::glob_match;
pub use status::{KeyStatus, ModelLimit, ProviderStatus, RouteStatus, RouterStatus, TargetStatus};
pub use sync::{key_id, unix_ms, StateChange, StateSink};

use caps::Needs;
use state::{lock, Admit, KeyPool, Rest, TargetState, Transition};

/// One place a model can be served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The provider's id.
    pub provider: String,
    /// The upstream model; `None` forwards the client's model name unchanged.
    pub model: Option<String>,
    /// Share of traffic under [`Strategy::Weighted`] (0: only when the others fail).
    pub weight: u32,
    /// What this target supports, overriding what the provider declares.
    pub capabilities: Option<Capabilities>,
    /// The output limit this target gets when the request sets none.
    pub default_max_tokens: Option<u32>,
    /// The largest output limit this target accepts: a request's larger one is lowered
    /// to it, as is the provider's own default for a request that sets none
    /// ([`Provider::default_output`]); a thinking budget that would no longer fit below it
    /// becomes half of it (at least 1024, Anthropic's least; where none fits, thinking is
    /// dropped with a warning).
    pub max_output_tokens: Option<u32>,
}

impl Target {
    /// A target forwarding the client's model name.
    pub fn new(provider: impl Into<String>) -> Self {
        Target {
            provider: provider.into(),
            model: None,
            weight: 1,
            capabilities: None,
            default_max_tokens: None,
            max_output_tokens: None,
        }
    }

    /// A target with its own upstream model name.
    pub fn with_model(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Target {
            model: Some(model.into()),
            ..Target::new(provider)
        }
    }

    /// Sets the weight (for [`Strategy::Weighted`]).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Overrides the provider's declared capabilities for this target.
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        self.capabilities = Some(caps);
        self
    }
}

/// How a route orders its targets for a request (the rest follow as fallbacks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// In table order.
    #[default]
    Fallback,
    /// Each request starts at the next target in turn.
    RoundRobin,
    /// Targets first in proportion to their weights (smooth weighted round robin).
    Weighted,
    /// The faster of two targets picked at random (power of two choices over a peak-EWMA
    /// of latency, time to first token for streams, times requests in flight).
    LeastLatency,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "fallback" => Strategy::Fallback,
            "round_robin" => Strategy::RoundRobin,
            "weighted" => Strategy::Weighted,
            "least_latency" => Strategy::LeastLatency,
            _ => {
                return Err(format!(
                    "unknown strategy `{s}` (fallback | round_robin | weighted | least_latency)"
                ))
            }
        })
    }
}

impl Strategy {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted => "weighted",
            Strategy::LeastLatency => "least_latency",
        }
    }
}

/// What to do with a target that lacks a feature the request uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unsupported {
    /// Skip the target.
    #[default]
    Skip,
    /// Send the request without the feature (images and documents become a short text
    /// note, thinking and `cache_control` are removed) and warn the client. Tools cannot
    /// be dropped: such a target is skipped.
    Drop,
}

/// A model name (exact or glob) and where it goes.
#[derive(Clone, Debug)]
pub struct Route {
    /// Exact name or glob (`*`, `?`).
    pub name: String,
    /// Targets, in table order.
    pub targets: Vec<Target>,
    /// How targets are ordered per request.
    pub strategy: Strategy,
    /// Keep a session on the target that served it while it is healthy.
    pub sticky: bool,
    /// What to do when a target lacks a feature the request uses.
    pub unsupported: Unsupported,
}

impl Route {
    /// A sticky fallback route.
    pub fn new(name: impl Into<String>, targets: Vec<Target>) -> Self {
        Route {
            name: name.into(),
            targets,
            strategy: Strategy::Fallback,
            sticky: true,
            unsupported: Unsupported::Skip,
        }
    }

    /// Sets the strategy.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// Sets stickiness.
    pub fn sticky(mut self, sticky: bool) -> Self {
        self.sticky = sticky;
        self
    }

    /// Sets what happens to targets lacking a feature.
    pub fn unsupported(mut self, u: Unsupported) -> Self {
        self.unsupported = u;
        self
    }

    fn is_glob(&self) -> bool {
        glob::is_pattern(&self.name)
    }
}

/// Router-wide resilience settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive health failures (5xx, timeout, connection) that open a breaker; 0
    /// disables breakers.
    pub breaker_failures: u32,
    /// How long a breaker stays open before its probe; doubles each time a probe fails.
    pub breaker_open: Duration,
    /// The longest a breaker stays open between probes.
    pub breaker_max_open: Duration,
    /// How long a probe may take.
    pub probe_timeout: Duration,
    /// Extra walks over the targets when all failed in a way that may pass.
    pub retries: u32,
    /// Backoff before the first extra walk; doubles for each next one, with jitter.
    pub retry_backoff: Duration,
    /// The longest the router waits before a retry (longer `retry-after`s are returned to
    /// the client instead).
    pub max_retry_wait: Duration,
    /// How long a key rests after a 429 that said nothing about when to come back.
    pub default_cooldown: Duration,
    /// How long a key the upstream refused (401/403) stays out of the pool before it is
    /// tried once more.
    pub refused_key_retry: Duration,
    /// How long a session is remembered after its last request.
    pub session_ttl: Duration,
    /// The most sessions remembered.
    pub max_sessions: usize,
    /// The longest a stream's opening events are held for its first content, so that a
    /// stream failing before content goes to the next target unseen (zero: every event
    /// is sent at once, and a stream is the client's from its first byte).
    pub stream_hold: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            breaker_failures: 5,
            breaker_open: Duration::from_secs(30),
            breaker_max_open: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(30),
            retries: 2,
            retry_backoff: Duration::from_millis(250),
            max_retry_wait: Duration::from_secs(10),
            default_cooldown: Duration::from_secs(10),
            refused_key_retry: Duration::from_secs(600),
            session_ttl: Duration::from_secs(3600),
            max_sessions: 100_000,
            stream_hold: hold::MAX_HOLD,
        }
    }
}

/// Which target served a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The provider's id.
    pub provider: String,
    /// The upstream model name.
    pub model: String,
    /// Features dropped for this target ([`Unsupported::Drop`]), to tell the client.
    pub warnings: Vec<String>,
    /// Upstream attempts before this one (other keys, targets, retries).
    pub failed_attempts: usize,
    /// The upstream's own id for the request (its `request-id` or `x-request-id`), if it
    /// gave one.
    pub upstream_request_id: Option<String>,
    /// When the attempt that served began (earlier attempts, failed over, not included).
    pub started: Instant,
    /// How long that attempt took to answer: a whole answer, or a stream handed over
    /// (at its first content, or once its opening was held [`Policy::stream_hold`]
    /// without).
    pub latency: Duration,
    /// Where it was served (route, target, key), for [`Router::response_memory`].
    pub(crate) slot: Slot,
}

/// Where a request was served: route, target and key indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    route: usize,
    target: usize,
    key: Option<usize>,
}

/// One attempt at a target, or a target skipped without a request.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The provider's id.
    pub provider: String,
    /// The upstream model name.
    pub model: String,
    /// What went wrong.
    pub error: ProviderError,
    /// No request was sent (breaker open, every key resting or refused, a missing
    /// capability).
    pub skipped: bool,
}

/// Why a request could not be routed or served.
#[derive(Debug)]
pub enum RouteError {
    /// No route matches the model; the names that do exist, for the error message.
    UnknownModel {
        /// The requested model.
        model: String,
        /// Route names (exact names and globs), in table order.
        available: Vec<String>,
    },
    /// The request failed: `last` is what to answer the client (an upstream's own error
    /// when one target answered, else a summary), `attempts` what each try got.
    Failed {
        /// The error returned to the client.
        last: ProviderError,
        /// Each attempt, in order.
        attempts: Vec<Attempt>,
    },
}

/// What a client would be told: the unknown model and what exists, or the error answered.
impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::UnknownModel { model, available } => write!(
                f,
                "no route for model `{model}` (available: {})",
                available.join(", ")
            ),
            RouteError::Failed { last, attempts } => {
                write!(f, "{last}")?;
                if attempts.len() > 1 {
                    write!(f, " (after {} attempts)", attempts.len())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RouteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RouteError::UnknownModel { .. } => None,
            RouteError::Failed { last, .. } => Some(last),
        }
    }
}

/// Something the router did, for metrics.
#[derive(Debug)]
pub enum RouterEvent<'a> {
    /// A request moved on from a target that failed (or was skipped).
    Failover {
        /// The client's model.
        model: &'a str,
        /// The provider left behind.
        provider: &'a str,
    },
    /// A request walks the targets again.
    Retry {
        /// The client's model.
        model: &'a str,
    },
    /// A key rests.
    Cooldown {
        /// The key's provider.
        provider: &'a str,
        /// The key's label (`key-1`, never the key).
        key: &'a str,
        /// For how long.
        duration: Duration,
    },
    /// A key was refused by the upstream and left the pool.
    KeyRefused {
        /// The key's provider.
        provider: &'a str,
        /// The key's label.
        key: &'a str,
        /// 401 or 403.
        status: u16,
    },
    /// An upstream refused a request's output limit and named the most it takes: the
    /// request goes to the same target again with the limit lowered.
    OutputLowered {
        /// The target's provider.
        provider: &'a str,
        /// The target's model.
        model: &'a str,
        /// The limit the request is sent with now.
        tokens: u32,
    },
    /// A request went to a target past its open breaker: the route's last resort, no
    /// other target of its pass having been asked (see [`Router::send`]).
    PastOpenBreaker {
        /// The target's provider.
        provider: &'a str,
        /// The target's model.
        model: &'a str,
    },
    /// A breaker changed state.
    Breaker {
        /// The target's provider.
        provider: &'a str,
        /// The target's model.
        model: &'a str,
        /// `closed`, `open` or `half_open`.
        from: &'static str,
        /// `closed`, `open` or `half_open`.
        to: &'static str,
    },
}

/// Receives [`RouterEvent`]s (e.g. to count them in metrics). Called inline: keep it cheap.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, e: &RouterEvent<'_>);
}

/// What guards and probes share with the router.
pub(crate) struct Shared {
    observer: Option<Arc<dyn Observer>>,
    /// Where changes other instances should learn go.
    sink: Option<Arc<dyn StateSink>>,
}

impl Shared {
    fn emit(&self, e: &RouterEvent<'_>) {
        if let Some(o) = &self.observer {
            o.event(e);
        }
    }

    fn publish(&self, change: StateChange) {
        if let Some(s) = &self.sink {
            s.publish(change);
        }
    }

    /// Logs and counts a breaker transition, and publishes it for other instances.
    pub(crate) fn breaker_changed(&self, t: &TargetState, tr: Transition) {
        self.breaker_transition(t, tr, "");
        match tr {
            Some((_, "open")) => {
                if let Some((until, opened)) = t.open_until() {
                    self.publish(StateChange::BreakerOpen {
                        provider: t.provider.clone(),
                        model: t.model.clone(),
                        until_ms: sync::to_unix_ms(until, Instant::now(), unix_ms()),
                        opened,
                    });
                }
            }
            Some((_, "closed")) => self.publish(StateChange::BreakerClosed {
                provider: t.provider.clone(),
                model: t.model.clone(),
            }),
            _ => {}
        }
    }

    /// Logs and counts a breaker transition.
    fn breaker_transition(&self, t: &TargetState, tr: Transition, origin: &str) {
        if let Some((from, to)) = tr {
            tracing::warn!(provider = %t.provider, model = %t.model, from, to, "circuit breaker{origin}");
            self.emit(&RouterEvent::Breaker {
                provider: &t.provider,
                model: &t.model,
                from,
                to,
            });
        }
    }

    /// Rests key `i` of `provider`'s pool (for upstream `model` only, when named: an
    /// upstream's limits are per model), counts it, and publishes it.
    #[allow(clippy::too_many_arguments)]
    fn rest(
        &self,
        provider: &str,
        pool: &KeyPool,
        i: usize,
        model: Option<&str>,
        d: Duration,
        why: Rest,
        now: Instant,
    ) {
        match model {
            Some(m) => pool.limit_model(i, m, d, why, now),
            None => pool.rest(i, d, why, now),
        }
        self.emit(&RouterEvent::Cooldown {
            provider,
            key: &KeyPool::label(i),
            duration: d,
        });
        if let Some(k) = pool.keys.get(i) {
            self.publish(StateChange::KeyRest {
                provider: provider.to_owned(),
                key: k.id.clone(),
                model: model.map(str::to_owned),
                until_ms: unix_ms()
                    .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                rate_limited: why == Rest::RateLimited,
                no_credit: why == Rest::NoCredit,
            });
        }
    }
}

struct RouteState {
    route: Route,
    targets: Vec<Arc<TargetState>>,
    turns: Arc<Turns>,
}

/// Where a route's rotation stands.
struct Turns {
    /// Round robin's next start.
    next: AtomicUsize,
    /// Smooth weighted round robin's current weights.
    wrr: Mutex<Vec<i64>>,
}

type Sessions = Mutex<HashMap<(usize, u64), (usize, Instant)>>;

/// Where each Responses API response was made (and when), by response id.
type ResponsePins = Mutex<HashMap<String, (Slot, Instant)>>;

/// How long a response stays pinned to where it was made after its last use.
const RESPONSE_PIN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Longest response id remembered (OpenAI's are about 50 characters): an upstream's
/// absurd ids cannot fill memory.
const MAX_PINNED_ID: usize = 256;

/// Keeps a bounded map within `max` entries: past it, drops the entries older than `ttl`
/// (by `at`, their last use) and then, if still full, the least recently used half, so
/// recent entries survive a burst of new ones.
fn make_room<K: Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    ttl: Duration,
    now: Instant,
    at: impl Fn(&V) -> Instant,
) {
    if map.len() <= max {
        return;
    }
    map.retain(|_, v| now.saturating_duration_since(at(v)) < ttl);
    if map.len() > max {
        let mut times: Vec<Instant> = map.values().map(&at).collect();
        let mid = times.len() / 2;
        let cut = *times.select_nth_unstable(mid).1;
        map.retain(|_, v| at(v) > cut);
    }
}

/// Remembers where a Responses API response was made (target and, in its key pool, key),
/// so a request continuing it (`previous_response_id`) goes there first: the account that
/// made a response is the only one that holds it. From [`Router::response_memory`];
/// cheap to clone and keep until a stream's id arrives. Pins last a day after their last
/// use, in this process; with a [`StateSink`], other instances learn each pin as it is
/// made (a [`StateChange::ResponseMade`]).
#[derive(Clone)]
pub struct ResponseMemory {
    /// Off for a response the upstream does not keep (`store: false`).
    on: bool,
    pins: Arc<ResponsePins>,
    max: usize,
    slot: Slot,
    /// With a [`StateSink`]: where the pin is published, and the slot by name.
    share: Option<Arc<SharedPin>>,
}

/// A pin's place by name, for other instances (whose indices may differ).
struct SharedPin {
    shared: Arc<Shared>,
    route: String,
    provider: String,
    model: String,
    key: Option<String>,
}

impl std::fmt::Debug for ResponseMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseMemory")
            .field("slot", &self.slot)
            .field("shared", &self.share.is_some())
            .finish()
    }
}

impl ResponseMemory {
    /// This memory, remembering nothing when `stored` is false: a response the upstream
    /// does not keep (`store: false`) cannot be continued, so pinning (and telling other
    /// instances) would only fill the table.
    pub fn if_stored(mut self, stored: bool) -> Self {
        self.on = stored;
        self
    }

    /// Remembers that the response `id` was made here (and tells other instances, when
    /// the router has a [`StateSink`]).
    pub fn remember(&self, id: &str) {
        if !self.on || id.is_empty() || id.len() > MAX_PINNED_ID {
            return;
        }
        insert_pin(&self.pins, self.max, id, self.slot);
        if let Some(s) = &self.share {
            s.shared.publish(StateChange::ResponseMade {
                id: id.to_owned(),
                route: s.route.clone(),
                provider: s.provider.clone(),
                model: s.model.clone(),
                key: s.key.clone(),
            });
        }
    }
}

/// Pins the response `id` to `slot`, now.
fn insert_pin(pins: &ResponsePins, max: usize, id: &str, slot: Slot) {
    let now = Instant::now();
    let mut pins = lock(pins);
    pins.insert(id.to_owned(), (slot, now));
    make_room(&mut pins, max, RESPONSE_PIN_TTL, now, |(_, at)| *at);
}

/// A route's name and its targets' providers and models (empty for a target forwarding
/// the client's), to find a slot named by another instance.
type RouteNames = Vec<(String, Vec<(String, String)>)>;

/// The health (breaker, latency, errors) of each model that targets forwarding the
/// client's model name on glob routes were asked for, by provider and model: one model
/// failing must not open the breaker of every model behind `claude-*`. Bounded: past
/// [`MAX_FORWARDED`] models, the least recently asked-for idle one is forgotten (one
/// without requests in flight or failures), else one not asked for in [`FORWARDED_STALE`],
/// and when none may go a new name shares its route target's one state.
#[derive(Debug, Default)]
struct Forwarded(Mutex<ForwardedMap>);

/// [`Forwarded`]'s states (with when each was last asked for) by provider, then model,
/// and how many there are.
#[derive(Debug, Default)]
struct ForwardedMap {
    by_provider: HashMap<String, HashMap<String, (Arc<TargetState>, Instant)>>,
    len: usize,
}

impl ForwardedMap {
    /// Forgets the least recently asked-for idle state, else the least recently asked-for
    /// one not asked for in [`FORWARDED_STALE`] with nothing in flight (a model that failed
    /// once, or whose breaker opened, and was not asked for again would otherwise hold its
    /// place for good); `false` if none may go.
    fn evict_one(&mut self, now: Instant) -> bool {
        let states = || {
            self.by_provider
                .iter()
                .flat_map(|(p, m)| m.iter().map(move |(model, (t, at))| (p, model, t, *at)))
        };
        let oldest = states()
            .filter(|(_, _, t, _)| t.idle())
            .min_by_key(|(_, _, _, at)| *at)
            .or_else(|| {
                states()
                    .filter(|(_, _, t, at)| {
                        t.unused() && now.saturating_duration_since(*at) >= FORWARDED_STALE
                    })
                    .min_by_key(|(_, _, _, at)| *at)
            })
            .map(|(p, m, _, _)| (p.clone(), m.clone()));
        let Some((p, m)) = oldest else {
            return false;
        };
        if let Some(models) = self.by_provider.get_mut(&p) {
            models.remove(&m);
            if models.is_empty() {
                self.by_provider.remove(&p);
            }
        }
        self.len -= 1;
        true
    }
}

/// How many models [`Forwarded`] keeps a state of (client-chosen names: a bound on what
/// clients can make the router hold).
const MAX_FORWARDED: usize = 1024;

/// How long a forwarded model's state that is not idle (failures counted, a breaker not
/// closed) is kept when no one asks for it and the table is full.
const FORWARDED_STALE: Duration = Duration::from_secs(300);

impl Forwarded {
    /// `provider`'s `model`'s state, made if there is room.
    fn get_or_make(&self, provider: &str, model: &str) -> Option<Arc<TargetState>> {
        let now = Instant::now();
        let mut map = lock(&self.0);
        if let Some((t, at)) = map
            .by_provider
            .get_mut(provider)
            .and_then(|m| m.get_mut(model))
        {
            *at = now;
            return Some(t.clone());
        }
        if map.len >= MAX_FORWARDED && !map.evict_one(now) {
            return None;
        }
        map.len += 1;
        let t = Arc::new(TargetState::new(provider, model));
        map.by_provider
            .entry(provider.to_owned())
            .or_default()
            .insert(model.to_owned(), (t.clone(), now));
        Some(t)
    }

    /// `provider`'s `model`'s state, if one was made.
    fn get(&self, provider: &str, model: &str) -> Option<Arc<TargetState>> {
        lock(&self.0)
            .by_provider
            .get(provider)
            .and_then(|m| m.get(model))
            .map(|(t, _)| t.clone())
    }

    /// The states made so far, ordered by provider and model.
    fn all(&self) -> Vec<Arc<TargetState>> {
        let map = lock(&self.0);
        let mut v: Vec<Arc<TargetState>> = map
            .by_provider
            .values()
            .flat_map(|m| m.values().map(|(t, _)| t.clone()))
            .collect();
        v.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        v
    }
}

/// A router's key pools and targets, to apply other instances' [`StateChange`]s to and
/// to take a snapshot of. Cheap to clone.
#[derive(Clone)]
pub struct StateHandle {
    pools: BTreeMap<String, Arc<KeyPool>>,
    targets: Vec<Arc<TargetState>>,
    forwarded: Arc<Forwarded>,
    shared: Arc<Shared>,
    response_pins: Arc<ResponsePins>,
    max_pins: usize,
    routes: Arc<RouteNames>,
}

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateHandle")
    }
}

impl StateHandle {
    /// Applies a change another instance published. Keys and targets this router does
    /// not have are ignored; a cooldown or open period only ever grows here. Breaker
    /// transitions are logged and counted like local ones, but not published again.
    pub fn apply(&self, change: &StateChange) {
        let (now, now_ms) = (Instant::now(), unix_ms());
        match change {
            StateChange::KeyRest {
                provider,
                key,
                model,
                until_ms,
                rate_limited,
                no_credit,
            } => {
                let Some(pool) = self.pools.get(provider) else {
                    return;
                };
                if let (Some(i), Some(until)) =
                    (pool.find(key), sync::from_unix_ms(*until_ms, now, now_ms))
                {
                    if let Some(model) = model {
                        pool.limit_model_until(i, model, until);
                        return;
                    }
                    let why = if *no_credit {
                        Rest::NoCredit
                    } else if *rate_limited {
                        Rest::RateLimited
                    } else {
                        Rest::Exhausted
                    };
                    pool.rest_until(i, until, why);
                }
            }
            StateChange::KeyRefused {
                provider,
                key,
                status,
                until_ms,
            } => {
                let Some(pool) = self.pools.get(provider) else {
                    return;
                };
                if let (Some(i), Some(until)) =
                    (pool.find(key), sync::from_unix_ms(*until_ms, now, now_ms))
                {
                    pool.refuse_shared(i, *status, until);
                }
            }
            StateChange::BreakerOpen {
                provider,
                model,
                until_ms,
                opened,
            } => {
                let Some(until) = sync::from_unix_ms(*until_ms, now, now_ms) else {
                    return;
                };
                for t in self.target_states(provider, model, true) {
                    let tr = t.open_shared(until, *opened);
                    self.shared
                        .breaker_transition(&t, tr, " (another instance opened it)");
                }
            }
            StateChange::BreakerClosed { provider, model } => {
                for t in self.target_states(provider, model, false) {
                    let tr = t.close_shared();
                    self.shared
                        .breaker_transition(&t, tr, " (another instance closed it)");
                }
            }
            StateChange::OutputCeiling {
                provider,
                model,
                tokens,
                until_ms,
            } => {
                let Some(until) = sync::from_unix_ms(*until_ms, now, now_ms) else {
                    return;
                };
                if *tokens == 0 {
                    return;
                }
                for t in self.target_states(provider, model, true) {
                    t.learn_ceiling(*tokens, until);
                }
            }
            StateChange::ResponseMade {
                id,
                route,
                provider,
                model,
                key,
            } => {
                if id.is_empty() || id.len() > MAX_PINNED_ID {
                    return;
                }
                if let Some(slot) = self.find_slot(route, provider, model, key.as_deref()) {
                    insert_pin(&self.response_pins, self.max_pins, id, slot);
                }
            }
        }
    }

    /// The slot another instance named: the route of that name, its target with that
    /// provider and model, and that key of the provider's pool; `None` when this router
    /// has no such place (another config).
    fn find_slot(
        &self,
        route: &str,
        provider: &str,
        model: &str,
        key: Option<&str>,
    ) -> Option<Slot> {
        let (ri, (_, targets)) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, (name, _))| name == route)?;
        let ti = targets
            .iter()
            .position(|(p, m)| p == provider && m == model)?;
        let key = match key {
            None => None,
            Some(k) => Some(self.pools.get(provider)?.find(k)?),
        };
        Some(Slot {
            route: ri,
            target: ti,
            key,
        })
    }

    /// The states of `provider`'s `model`: a route target's, or one a glob route's target
    /// forwarding the client's model name has for it (made if `make` and such a target
    /// would take the name).
    fn target_states(&self, provider: &str, model: &str, make: bool) -> Vec<Arc<TargetState>> {
        let mut v: Vec<Arc<TargetState>> = self
            .targets
            .iter()
            .filter(|t| t.provider == provider && t.model == model)
            .cloned()
            .collect();
        // (A pattern is no model a client asked for: a route target's own state, as an
        // instance over the limit publishes it.)
        let forwarded = if make
            && !glob::is_pattern(model)
            && self.routes.iter().any(|(name, targets)| {
                glob::is_pattern(name)
                    && glob_match(name, model)
                    && targets.iter().any(|(p, m)| p == provider && m.is_empty())
            }) {
            self.forwarded.get_or_make(provider, model)
        } else {
            self.forwarded.get(provider, model)
        };
        v.extend(forwarded);
        v
    }

    /// What this router knows now that other instances should too: resting and refused
    /// keys, open breakers (e.g. to publish again after a shared store comes back).
    pub fn snapshot(&self) -> Vec<StateChange> {
        let (now, now_ms) = (Instant::now(), unix_ms());
        let mut out = Vec::new();
        for (provider, pool) in &self.pools {
            for k in &pool.keys {
                let g = lock(&k.inner);
                if let Some((until, why)) = g.cooldown_until.filter(|(u, _)| *u > now) {
                    out.push(StateChange::KeyRest {
                        provider: provider.clone(),
                        key: k.id.clone(),
                        model: None,
                        until_ms: sync::to_unix_ms(until, now, now_ms),
                        rate_limited: why == Rest::RateLimited,
                        no_credit: why == Rest::NoCredit,
                    });
                }
                for (model, until) in g.model_limits.iter().filter(|(_, u)| *u > now) {
                    out.push(StateChange::KeyRest {
                        provider: provider.clone(),
                        key: k.id.clone(),
                        model: Some(model.to_string()),
                        until_ms: sync::to_unix_ms(*until, now, now_ms),
                        rate_limited: true,
                        no_credit: false,
                    });
                }
                if let Some((status, until)) = g.refused.filter(|(_, u)| *u > now) {
                    out.push(StateChange::KeyRefused {
                        provider: provider.clone(),
                        key: k.id.clone(),
                        status,
                        until_ms: sync::to_unix_ms(until, now, now_ms),
                    });
                }
            }
        }
        for t in self.targets.iter().chain(&self.forwarded.all()) {
            if let Some((until, opened)) = t.open_until().filter(|(u, _)| *u > now) {
                out.push(StateChange::BreakerOpen {
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                    until_ms: sync::to_unix_ms(until, now, now_ms),
                    opened,
                });
            }
            if let Some((tokens, until)) = t.ceiling_until().filter(|(_, u)| *u > now) {
                out.push(StateChange::OutputCeiling {
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                    tokens,
                    until_ms: sync::to_unix_ms(until, now, now_ms),
                });
            }
        }
        out
    }
}

/// The model table, the providers behind it, and what the router learned about them.
pub struct Router {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    pools: BTreeMap<String, Arc<KeyPool>>,
    routes: Vec<RouteState>,
    /// Distinct targets, in first-seen order (for status).
    targets: Vec<Arc<TargetState>>,
    /// The models glob routes' forwarding targets were asked for (see [`Forwarded`]).
    forwarded: Arc<Forwarded>,
    policy: Arc<Policy>,
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    /// Responses API responses by id: a request that continues one (`previous_response_id`)
    /// goes to the target and key that made it, whose account holds it.
    response_pins: Arc<ResponsePins>,
    /// Providers' own model listings, by provider id, with when they were fetched (an
    /// empty list when fetching failed).
    listings: Arc<Mutex<Listings>>,
    /// One fetch of a provider's listing at a time: requests that find it stale meanwhile
    /// wait for that fetch instead of making their own.
    listing_fetches: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Providers' model listings by provider id: when fetched, and the names.
type Listings = HashMap<String, (Instant, Arc<Vec<String>>)>;

/// How long a target whose upstream has no token counter is not asked for counts.
const NO_COUNTER_FOR: Duration = Duration::from_secs(3600);

/// How long a provider's model listing is kept.
const LISTING_TTL: Duration = Duration::from_secs(600);
/// How long a failed listing is kept (as empty) before it is asked again.
const LISTING_RETRY: Duration = Duration::from_secs(60);
/// How long a provider may take to list its models.
const LISTING_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.route).collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .finish()
    }
}

/// The upstream's id for a request, unless it holds one of the provider's keys (in any
/// ASCII case): an upstream that echoes its key in a header must not have it passed on to
/// the client and the logs as an id.
fn id_without_keys(id: Option<String>, pool: Option<&Arc<KeyPool>>) -> Option<String> {
    let Some(pool) = pool else {
        return id;
    };
    id.filter(|id| {
        !pool.keys.iter().any(|k| {
            let key = k.secret.expose().as_bytes();
            !key.is_empty()
                && id
                    .as_bytes()
                    .windows(key.len())
                    .any(|w| w.eq_ignore_ascii_case(key))
        })
    })
}

/// A call's place in its target's and key's in-flight counts, given back when dropped
/// (unless handed over to a served stream's guard).
struct InFlight<'a> {
    target: &'a TargetState,
    key: Option<&'a state::KeyState>,
    held: bool,
}

impl<'a> InFlight<'a> {
    fn enter(target: &'a TargetState, key: Option<&'a state::KeyState>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = key {
            k.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            target,
            key,
            held: true,
        }
    }

    /// The counts now belong to a [`hold::Guard`].
    fn hand_over(&mut self) {
        self.held = false;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.held {
            self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Some(k) = self.key {
                k.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// How one target attempt ended.
enum Outcome<T> {
    Served(T, Served),
    /// Try the next target.
    Next,
    /// This target cannot take the request (capabilities, an API its provider lacks): the
    /// next one is tried, and it is no failover.
    Pass,
    /// The request itself is at fault: stop.
    Fatal,
    /// The upstream refused the request's output limit and named the most it takes: the
    /// same target is asked again with the limit lowered to it (at most twice).
    Lower(OutputCeiling),
    /// The target's breaker is open (or half-open, probing): passed over, unless no other
    /// target of the route is asked (see [`Router::walk`]).
    Open,
}

/// How long a model's output ceiling, learned from its upstream's refusal, is believed.
const CEILING_TTL: Duration = Duration::from_secs(3600);

/// The least room left in a context window worth asking again for: below it, the
/// upstream's refusal goes to the client, whose own remedy (Claude Code compacts the
/// conversation on "prompt is too long") beats an answer cut off after a few words.
const MIN_ROOM: u32 = 4096;

/// What a walk over a route's targets sends to each: a chat request or an embeddings
/// request. Everything else about the walk (order, retries, breakers, key pools, failover)
/// is the same for both.
trait Job: Clone + Sync {
    /// What a target answers.
    type Out: Send;
    /// The model the client asked for.
    fn model(&self) -> &str;
    /// Renames the model.
    fn set_model(&mut self, model: &str);
    /// The job as it is, or a copy for a target that renames the model.
    fn for_model(&self, model: &str) -> Cow<'_, Self> {
        if self.model() == model {
            return Cow::Borrowed(self);
        }
        let mut r = self.clone();
        r.set_model(model);
        Cow::Owned(r)
    }
    /// The job as one target gets it: renamed to the target's model and, for a target
    /// that lacks features the request uses, with them dropped (the warnings say which)
    /// when the route allows it. `Err`: the target cannot take it and is skipped.
    fn for_target(
        &self,
        route: &Route,
        target: &Target,
        provider: &dyn Provider,
        model: &str,
    ) -> Result<(Cow<'_, Self>, Vec<String>), ProviderError>;
    /// The id of an earlier response this one continues (the Responses API's
    /// `previous_response_id`, a message thread's `previous_message_id`), which only the
    /// account that made it holds.
    fn follows(&self) -> Option<Cow<'_, str>> {
        None
    }
    /// Sends it to the target's provider; a stream's opening is held at most `hold` for
    /// its first event with content.
    fn call<'a>(
        &'a self,
        provider: &'a dyn Provider,
        cx: CallContext,
        hold: Duration,
    ) -> impl std::future::Future<Output = Result<Self::Out, ProviderError>> + Send + 'a;
    /// The output limit the request sets, if it sets one Weir reads.
    fn output_limit(&self) -> Option<u32> {
        None
    }
    /// Whether an encoder may send a larger limit than [`Job::output_limit`] (to make room
    /// for a thinking budget beside it).
    fn may_raise_limit(&self) -> bool {
        false
    }
    /// A served answer. A stream takes the guard `guard` makes, which holds the target's
    /// and key's in-flight counts until the stream ends; `false` says none was taken (the
    /// answer is whole and the counts go back now).
    fn served(out: Self::Out, guard: impl FnOnce() -> hold::Guard) -> (Self::Out, bool);
}

/// The output limit `target` is to get instead of the request's `asked`, if another: its
/// `default_max_tokens` when none was asked, its `max_output_tokens` when more was, or
/// when none was asked and the provider would send more of its own (`provider_default`,
/// [`Provider::default_output`]: Claude's 21333 for a whole answer). A provider default
/// within the cap is left to the provider, which sizes a derived thinking budget by it.
fn target_max_tokens(
    asked: Option<u32>,
    target: &Target,
    provider_default: impl FnOnce() -> Option<u32>,
) -> Option<u32> {
    let n = match asked.or(target.default_max_tokens) {
        Some(n) => n,
        None => {
            let cap = target.max_output_tokens?;
            return provider_default().filter(|d| *d > cap).map(|_| cap);
        }
    };
    let n = target.max_output_tokens.map_or(n, |cap| n.min(cap));
    (Some(n) != asked).then_some(n)
}

/// The least thinking budget Anthropic takes.
const MIN_THINKING_BUDGET: u32 = 1024;

/// Sets a chat request's output limit to `n`. A thinking budget that would not fit below
/// it (Anthropic refuses a budget at or above `max_tokens`) becomes half of it, at least
/// [`MIN_THINKING_BUDGET`]; where no budget fits, thinking is dropped, and the warning says
/// so.
fn fit_output(r: &mut ChatRequest, n: u32, target: &Target, model: &str) -> Option<String> {
    r.max_tokens = Some(n);
    let fitted = (n > MIN_THINKING_BUDGET).then(|| (n / 2).max(MIN_THINKING_BUDGET));
    match &mut r.thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) if *budget_tokens >= n => match fitted {
            Some(b) => *budget_tokens = b,
            None => r.thinking = None,
        },
        // A form the model does not name (an Anthropic client's `display`...), kept as it
        // came: its budget fitted in place.
        Some(ThinkingConfig::Unknown(raw)) => {
            let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(raw.get()) else {
                return None;
            };
            if o.get("budget_tokens")
                .and_then(serde_json::Value::as_u64)
                .is_none_or(|b| b < u64::from(n))
            {
                return None;
            }
            match fitted {
                Some(b) => {
                    o.insert("budget_tokens".into(), b.into());
                    *raw = weir_model::raw::to_raw(&o);
                }
                None => r.thinking = None,
            }
        }
        _ => return None,
    }
    r.thinking.is_none().then(|| {
        format!(
            "{}/{model}: thinking dropped: an output limit of {n} leaves no room for a \
             thinking budget",
            target.provider
        )
    })
}

impl Job for ChatRequest {
    type Out = Reply;

    fn model(&self) -> &str {
        &self.model
    }

    fn output_limit(&self) -> Option<u32> {
        self.max_tokens
    }

    fn may_raise_limit(&self) -> bool {
        self.thinking.is_some()
            || self.extra.get("thinking").is_some()
            || self.extra.get("reasoning_effort").is_some()
    }

    fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    fn for_target(
        &self,
        route: &Route,
        target: &Target,
        provider: &dyn Provider,
        model: &str,
    ) -> Result<(Cow<'_, Self>, Vec<String>), ProviderError> {
        let caps = target
            .capabilities
            .unwrap_or_else(|| provider.capabilities(model));
        let missing = Needs::of(self).missing(&caps);
        if !missing.is_empty() {
            let hints_only = missing.iter().all(|f| caps::is_hint(f, self));
            if hints_only
                || (route.unsupported == Unsupported::Drop
                    && missing.iter().all(|f| caps::droppable(f)))
            {
                let mut r = self.clone();
                model.clone_into(&mut r.model);
                let warning = format!(
                    "{}/{}: {}",
                    target.provider,
                    model,
                    caps::drop_features(&mut r, &missing)
                );
                let mut warnings = vec![warning];
                if let Some(n) = target_max_tokens(r.max_tokens, target, || {
                    provider.default_output(model, r.is_stream())
                }) {
                    warnings.extend(fit_output(&mut r, n, target, model));
                }
                r.output_cap = target.max_output_tokens;
                return Ok((Cow::Owned(r), warnings));
            }
            if missing.contains(&"threads") {
                return Err(keeps_no_threads(self.thread().as_ref()));
            }
            let needed = missing
                .into_iter()
                .filter(|f| !caps::is_hint(f, self))
                .collect();
            return Err(lacks(target, model, needed));
        }
        // The client's request goes as it is unless this target renames the model or
        // limits its output: then a copy, once for all its keys.
        let limit = target_max_tokens(self.max_tokens, target, || {
            provider.default_output(model, self.is_stream())
        });
        if limit.is_none() && target.max_output_tokens.is_none() {
            return Ok((self.for_model(model), Vec::new()));
        }
        let mut r = self.clone();
        model.clone_into(&mut r.model);
        // (The encoders keep to the cap where they raise the limit for a thinking budget.)
        r.output_cap = target.max_output_tokens;
        let warning = limit.and_then(|n| fit_output(&mut r, n, target, model));
        Ok((Cow::Owned(r), warning.into_iter().collect()))
    }

    fn follows(&self) -> Option<Cow<'_, str>> {
        match self.thread()? {
            ThreadUse::Continue(id) => Some(Cow::Owned(id)),
            ThreadUse::Create => None,
        }
    }

    async fn call<'a>(
        &'a self,
        provider: &'a dyn Provider,
        cx: CallContext,
        hold: Duration,
    ) -> Result<Reply, ProviderError> {
        let progress = cx.progress.clone();
        match provider.send(self, cx).await {
            Ok(Reply::Stream(s)) => hold::hold(s, &progress, hold).await.map(Reply::Stream),
            other => other,
        }
    }

    fn served(out: Reply, guard: impl FnOnce() -> hold::Guard) -> (Reply, bool) {
        match out {
            Reply::Complete(c) => (Reply::Complete(c), false),
            Reply::Stream(s) => (
                Reply::Stream(Box::pin(hold::Guarded {
                    inner: s,
                    guard: Some(guard()),
                    failed: false,
                })),
                true,
            ),
        }
    }
}

/// Why a target lacking features the request uses is passed over.
fn lacks(target: &Target, model: &str, features: Vec<&str>) -> ProviderError {
    let mut e = ProviderError::new(
        ErrorKind::InvalidRequest,
        format!(
            "{} ({model}) does not support {}",
            target.provider,
            features.join(", ")
        ),
    );
    e.retryable_elsewhere = true;
    e.counts_against_health = false;
    e
}

/// How [`keeps_no_threads`]'s details begin (`thread_not_found`, `thread_unsupported_request`).
const THREAD_REFUSAL: &str = r#"{"error_code":"thread_"#;

/// Why a target that keeps no message threads is passed over, in the words Anthropic's
/// SDKs act on (`error.details.error_code`): a new thread is `thread_unsupported_request`
/// (they send the conversation again without `thread`, if told to), a continued one
/// `thread_not_found` (they send the whole conversation again, as a new thread).
fn keeps_no_threads(thread: Option<&ThreadUse>) -> ProviderError {
    let (kind, message, code) = match thread {
        Some(ThreadUse::Continue(_)) => (
            ErrorKind::NotFound,
            "keeps no message threads, so it has no thread to continue: send the whole \
             conversation again",
            "not_found",
        ),
        _ => (
            ErrorKind::InvalidRequest,
            "keeps no message threads: send the conversation without `thread`",
            "unsupported_request",
        ),
    };
    let mut api = ApiError::new(kind, message);
    api.details = Some(format!(r#"{THREAD_REFUSAL}{code}"}}"#));
    // Skipped like any target lacking a feature; the refusal is the client's only if no
    // target can take the request.
    let mut e = ProviderError::new(ErrorKind::InvalidRequest, message);
    e.status = Some(api.status);
    e.api_error = Some(Box::new(api));
    e.retryable_elsewhere = true;
    e.counts_against_health = false;
    e
}

/// Why a target whose provider lacks an API is passed over.
fn not_served(target: &Target, api: &str) -> ProviderError {
    let mut e = ProviderError::new(
        ErrorKind::InvalidRequest,
        format!("provider `{}` does not serve {api}", target.provider),
    );
    e.status = Some(400);
    e.retryable_elsewhere = true;
    e.counts_against_health = false;
    e
}

impl Job for ResponsesRequest {
    type Out = ResponsesReply;

    fn model(&self) -> &str {
        &self.model
    }

    fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    fn for_target(
        &self,
        _route: &Route,
        target: &Target,
        provider: &dyn Provider,
        model: &str,
    ) -> Result<(Cow<'_, Self>, Vec<String>), ProviderError> {
        if !provider.serves_responses() {
            return Err(not_served(target, "the Responses API"));
        }
        // A target lacking a feature the request uses is passed over, as for chat; the
        // request goes as it came, so nothing is dropped (whatever `unsupported` says).
        let caps = target
            .capabilities
            .unwrap_or_else(|| provider.capabilities(model));
        if !(caps.images && caps.documents && caps.tools && caps.thinking) {
            let missing = Needs::of_responses(self).missing(&caps);
            if !missing.is_empty() {
                return Err(lacks(target, model, missing));
            }
        }
        if target.default_max_tokens.is_none() && target.max_output_tokens.is_none() {
            return Ok((self.for_model(model), Vec::new()));
        }
        // (A limit that is no whole number goes as it came, for the upstream to refuse.)
        let Ok(asked) = responses_limit(self) else {
            return Ok((self.for_model(model), Vec::new()));
        };
        let mut r = self.clone();
        model.clone_into(&mut r.model);
        // (A translated request keeps within the cap where its encoder raises a limit.)
        r.output_cap = target.max_output_tokens;
        if let Some(n) = target_max_tokens(asked, target, || {
            provider.default_output(model, self.stream)
        }) {
            weir_model::responses::set_max_output_tokens(&mut r, n);
        }
        Ok((Cow::Owned(r), Vec::new()))
    }

    fn follows(&self) -> Option<Cow<'_, str>> {
        self.previous_response_id()
    }

    fn output_limit(&self) -> Option<u32> {
        responses_limit(self).ok().flatten()
    }

    fn may_raise_limit(&self) -> bool {
        self.fields.iter().any(|(k, _)| k == "reasoning")
    }

    async fn call<'a>(
        &'a self,
        provider: &'a dyn Provider,
        cx: CallContext,
        hold: Duration,
    ) -> Result<ResponsesReply, ProviderError> {
        match provider.responses(self, cx).await? {
            // Served only once an event past the opening ones came (or `hold` after the
            // first): a stream that fails before then is the target's failure, and the
            // next one can still serve.
            ResponsesReply::Stream(s) => {
                hold::hold_bytes(s, hold).await.map(ResponsesReply::Stream)
            }
            whole => Ok(whole),
        }
    }

    fn served(out: ResponsesReply, guard: impl FnOnce() -> hold::Guard) -> (ResponsesReply, bool) {
        match out {
            ResponsesReply::Stream(s) => (
                ResponsesReply::Stream(Box::pin(hold::GuardedBytes {
                    inner: s,
                    guard: Some(guard()),
                    failed: false,
                })),
                true,
            ),
            whole => (whole, false),
        }
    }
}

/// A Responses request's `max_output_tokens`: a whole number however written (`1e5`,
/// `100000.0`), saturating at `u32`'s top; `Err` for anything else.
fn responses_limit(r: &ResponsesRequest) -> Result<Option<u32>, ()> {
    match r
        .fields
        .iter()
        .find(|(k, _)| k == "max_output_tokens")
        .map(|(_, v)| v.get())
    {
        None | Some("null") => Ok(None),
        Some(v) => match v.parse::<f64>() {
            // (Saturating: a count past u32's range is as good as its top.)
            Ok(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => {
                Ok(Some(n.min(f64::from(u32::MAX)) as u32))
            }
            _ => Err(()),
        },
    }
}

impl Job for EmbedRequest {
    type Out = EmbedResponse;

    fn model(&self) -> &str {
        &self.model
    }

    fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    fn for_target(
        &self,
        _route: &Route,
        target: &Target,
        provider: &dyn Provider,
        model: &str,
    ) -> Result<(Cow<'_, Self>, Vec<String>), ProviderError> {
        if !provider.serves_embeddings() {
            return Err(not_served(target, "embeddings"));
        }
        Ok((self.for_model(model), Vec::new()))
    }

    async fn call<'a>(
        &'a self,
        provider: &'a dyn Provider,
        cx: CallContext,
        _hold: Duration,
    ) -> Result<EmbedResponse, ProviderError> {
        match provider.embed(self, cx).await {
            // An OpenAI-compatible service without embeddings (Groq's, Cerebras') answers
            // 404 or 405 there: the next target is tried, as for a provider without them.
            Err(mut e) if matches!(e.status, Some(404 | 405)) => {
                e.retryable_elsewhere = true;
                Err(e)
            }
            other => other,
        }
    }

    fn served(out: EmbedResponse, _guard: impl FnOnce() -> hold::Guard) -> (EmbedResponse, bool) {
        (out, false)
    }
}

impl Router {
    /// A router with the default [`Policy`]. Every target must name a provider in
    /// `providers`.
    pub fn new(providers: Vec<Arc<dyn Provider>>, routes: Vec<Route>) -> Result<Self, String> {
        Router::with_policy(providers, routes, Policy::default())
    }

    /// A router with its own policy.
    pub fn with_policy(
        providers: Vec<Arc<dyn Provider>>,
        routes: Vec<Route>,
        policy: Policy,
    ) -> Result<Self, String> {
        let mut by_id: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for p in providers {
            if let Some(p) = by_id.insert(p.id().to_owned(), p) {
                return Err(format!("two providers have the id `{}`", p.id()));
            }
        }
        let providers = by_id;
        let pools = providers
            .iter()
            .map(|(id, p)| (id.clone(), Arc::new(KeyPool::new(p.keys()))))
            .collect();
        let mut targets: Vec<Arc<TargetState>> = Vec::new();
        let mut states = Vec::with_capacity(routes.len());
        for r in routes {
            if r.targets.is_empty() {
                return Err(format!("model `{}` has no targets", r.name));
            }
            let mut ts = Vec::with_capacity(r.targets.len());
            for t in &r.targets {
                if !providers.contains_key(&t.provider) {
                    return Err(format!(
                        "model `{}` targets unknown provider `{}`",
                        r.name, t.provider
                    ));
                }
                let label = t.model.clone().unwrap_or_else(|| r.name.clone());
                let st = match targets
                    .iter()
                    .find(|s| s.provider == t.provider && s.model == label)
                {
                    Some(s) => s.clone(),
                    None => {
                        let s = Arc::new(TargetState::new(&t.provider, &label));
                        targets.push(s.clone());
                        s
                    }
                };
                ts.push(st);
            }
            if r.strategy == Strategy::Weighted && r.targets.iter().all(|t| t.weight == 0) {
                return Err(format!(
                    "model `{}` is weighted but every target has weight 0",
                    r.name
                ));
            }
            states.push(RouteState {
                turns: Arc::new(Turns {
                    next: AtomicUsize::new(0),
                    wrr: Mutex::new(vec![0; r.targets.len()]),
                }),
                route: r,
                targets: ts,
            });
        }
        Ok(Router {
            providers,
            pools,
            routes: states,
            targets,
            forwarded: Arc::default(),
            policy: Arc::new(policy),
            shared: Arc::new(Shared {
                observer: None,
                sink: None,
            }),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            response_pins: Arc::default(),
            listings: Arc::default(),
            listing_fetches: Arc::default(),
        })
    }

    /// Makes this router share everything it learns (key cooldowns, breakers, latency,
    /// rotation, sessions, the observer) with `other`, a router built from the same
    /// routes and providers' keys: e.g. one per runtime thread, each with its own HTTP
    /// clients, acting as one.
    pub fn share_state_with(mut self, other: &Router) -> Result<Self, String> {
        let same_routes =
            self.routes.len() == other.routes.len()
                && self.routes.iter().zip(&other.routes).all(|(a, b)| {
                    a.route.name == b.route.name && a.route.targets == b.route.targets
                });
        let same_keys = self.pools.len() == other.pools.len()
            && self.pools.iter().all(|(id, p)| {
                other
                    .pools
                    .get(id)
                    .is_some_and(|o| o.keys.len() == p.keys.len())
            });
        if !same_routes || !same_keys {
            return Err("routers built from different configs cannot share state".into());
        }
        self.pools.clone_from(&other.pools);
        self.targets.clone_from(&other.targets);
        self.forwarded = other.forwarded.clone();
        for (mine, theirs) in self.routes.iter_mut().zip(&other.routes) {
            mine.targets.clone_from(&theirs.targets);
            mine.turns = theirs.turns.clone();
        }
        self.shared = other.shared.clone();
        self.sessions = other.sessions.clone();
        self.response_pins = other.response_pins.clone();
        self.listings = other.listings.clone();
        self.listing_fetches = other.listing_fetches.clone();
        Ok(self)
    }

    /// Sends every [`RouterEvent`] to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.shared = Arc::new(Shared {
            observer: Some(observer),
            sink: self.shared.sink.clone(),
        });
        self
    }

    /// Publishes every [`StateChange`] (key cooldowns and refusals, breaker transitions)
    /// to `sink`, for other instances to [`apply`](Router::apply).
    pub fn with_state_sink(mut self, sink: Arc<dyn StateSink>) -> Self {
        self.set_state_sink(sink);
        self
    }

    /// [`with_state_sink`](Router::with_state_sink) in place.
    pub fn set_state_sink(&mut self, sink: Arc<dyn StateSink>) {
        self.shared = Arc::new(Shared {
            observer: self.shared.observer.clone(),
            sink: Some(sink),
        });
    }

    /// Applies a change another instance published (see [`StateHandle::apply`]).
    pub fn apply(&self, change: &StateChange) {
        self.state_handle().apply(change);
    }

    /// What this router knows that other instances should too (see
    /// [`StateHandle::snapshot`]).
    pub fn state_snapshot(&self) -> Vec<StateChange> {
        self.state_handle().snapshot()
    }

    /// A handle on this router's shared state (key pools, targets), for whatever applies
    /// other instances' changes: it stays valid while the router is replaced (a reload
    /// hands the follower the new router's handle).
    pub fn state_handle(&self) -> StateHandle {
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let targets = r
                    .route
                    .targets
                    .iter()
                    .map(|t| (t.provider.clone(), t.model.clone().unwrap_or_default()))
                    .collect();
                (r.route.name.clone(), targets)
            })
            .collect();
        StateHandle {
            pools: self.pools.clone(),
            targets: self.targets.clone(),
            forwarded: self.forwarded.clone(),
            shared: self.shared.clone(),
            response_pins: self.response_pins.clone(),
            max_pins: self.policy.max_sessions,
            routes: Arc::new(routes),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The routes, in table order.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|r| &r.route)
    }

    /// The route for a model: the first exact name, else the first matching glob.
    pub fn resolve(&self, model: &str) -> Option<&Route> {
        self.route_index(model).map(|i| &self.routes[i].route)
    }

    /// What [`Router::send`] would answer for a model no route serves
    /// ([`RouteError::UnknownModel`]), without sending anything: for a check that must
    /// come first (a client's limits are not spent on a request that cannot be routed).
    pub fn known(&self, model: &str) -> Result<(), RouteError> {
        match self.route_index(model) {
            Some(_) => Ok(()),
            None => Err(self.unknown(model)),
        }
    }

    fn route_index(&self, model: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| !r.route.is_glob() && r.route.name == model)
            .or_else(|| {
                self.routes
                    .iter()
                    .position(|r| r.route.is_glob() && glob_match(&r.route.name, model))
            })
    }

    /// The model names glob routes serve, as their providers list them (their own `GET
    /// /v1/models`): for each glob route, the names its targets' providers list that match
    /// the glob and that no earlier route takes, from targets that forward the client's
    /// model name (a target with its own `model` serves every name as that one model).
    /// Listings are kept 10 minutes; a provider that cannot list (5 s at most) is asked
    /// again after a minute, and lists nothing meanwhile.
    pub async fn provider_models(&self) -> Vec<String> {
        let globs = || {
            self.routes
                .iter()
                .enumerate()
                .filter(|(_, rs)| rs.route.is_glob())
        };
        // Every provider asked at once: a slow one delays the answer by its own time only.
        let mut ids: Vec<&str> = Vec::new();
        for (_, rs) in globs() {
            for t in rs.route.targets.iter().filter(|t| t.model.is_none()) {
                if !ids.contains(&t.provider.as_str()) {
                    ids.push(&t.provider);
                }
            }
        }
        let lists = futures_util::future::join_all(ids.iter().map(|id| self.listing(id))).await;
        let mut out: Vec<String> = Vec::new();
        for (ri, rs) in globs() {
            for target in rs.route.targets.iter().filter(|t| t.model.is_none()) {
                let Some(at) = ids.iter().position(|id| *id == target.provider) else {
                    continue;
                };
                for id in lists[at].iter() {
                    if glob_match(&rs.route.name, id)
                        && self.route_index(id) == Some(ri)
                        && !out.contains(id)
                    {
                        out.push(id.clone());
                    }
                }
            }
        }
        out
    }

    /// One provider's listing, fetched when not kept.
    async fn listing(&self, provider_id: &str) -> Arc<Vec<String>> {
        let kept = || {
            let now = Instant::now();
            lock(&self.listings)
                .get(provider_id)
                .filter(|(at, list)| {
                    let ttl = if list.is_empty() {
                        LISTING_RETRY
                    } else {
                        LISTING_TTL
                    };
                    now.saturating_duration_since(*at) < ttl
                })
                .map(|(_, list)| list.clone())
        };
        if let Some(list) = kept() {
            return list;
        }
        let fetch = lock(&self.listing_fetches)
            .entry(provider_id.to_owned())
            .or_default()
            .clone();
        let _fetching = fetch.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(list) = kept() {
            return list;
        }
        let now = Instant::now();
        let Some(provider) = self.providers.get(provider_id) else {
            return Arc::default();
        };
        let mut cx = CallContext::new(format!("list_{:016x}", rand::random::<u64>()));
        if let Some(p) = self.pools.get(provider_id) {
            if let Some(&i) = p.candidates(now, None).usable.first() {
                cx.key = Some(p.keys[i].secret.clone());
            }
        }
        let list = match tokio::time::timeout(LISTING_TIMEOUT, provider.list_models(cx)).await {
            Ok(Ok(Some(ids))) => ids,
            Ok(Ok(None)) => Vec::new(),
            Ok(Err(e)) => {
                tracing::warn!(provider = provider_id, kind = ?e.kind, status = e.status, "the provider's model listing failed: {}", weir_model::log_safe(&e.message));
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(
                    provider = provider_id,
                    "the provider's model listing timed out"
                );
                Vec::new()
            }
        };
        let list = Arc::new(list);
        lock(&self.listings).insert(provider_id.to_owned(), (Instant::now(), list.clone()));
        list
    }

    fn unknown(&self, model: &str) -> RouteError {
        RouteError::UnknownModel {
            model: model.to_owned(),
            available: self.routes.iter().map(|r| r.route.name.clone()).collect(),
        }
    }

    /// Counts a request's input tokens with the first target that has a counter, and says
    /// which target counted. `Ok(None)` when none has one; an unknown model is an error like
    /// for [`Router::send`].
    pub async fn count_tokens(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<(u64, Served)>, RouteError> {
        let ri = self
            .route_index(&req.model)
            .ok_or_else(|| self.unknown(&req.model))?;
        let rs = &self.routes[ri];
        let mut failed_attempts = 0;
        for (ti, target) in rs.route.targets.iter().enumerate() {
            let Some(provider) = self.providers.get(&target.provider) else {
                continue;
            };
            let state = self.target_state(rs, ti, &req.model);
            if !state.healthy() || state.has_no_counter(Instant::now()) {
                continue;
            }
            let mut r = req.clone();
            if let Some(m) = &target.model {
                r.model.clone_from(m);
            }
            let model = r.model.clone();
            let mut kcx = cx.clone();
            let mut key = None;
            if let Some(pool) = self.pools.get(&target.provider) {
                if let Some(&i) = pool.candidates(Instant::now(), Some(&model)).usable.first() {
                    kcx.key = Some(pool.keys[i].secret.clone());
                    key = Some(i);
                }
            }
            let started = Instant::now();
            match provider.count_tokens(r, kcx).await {
                Ok(Some(n)) => {
                    let served = Served {
                        provider: target.provider.clone(),
                        model,
                        warnings: Vec::new(),
                        failed_attempts,
                        upstream_request_id: None,
                        started,
                        latency: started.elapsed(),
                        slot: Slot {
                            route: ri,
                            target: ti,
                            key,
                        },
                    };
                    return Ok(Some((n, served)));
                }
                Ok(None) => {}
                // No counter there (a compatible service answers 404 or 405 at the
                // counting endpoint): as a provider that has none, the next target is
                // asked, else the count is estimated; the target is not asked again for
                // a while. (Not Anthropic's 404 for a model it does not know: that is
                // the client's to hear.)
                Err(e)
                    if matches!(e.status, Some(404 | 405))
                        && !e.api_error.as_ref().is_some_and(|a| a.is_unknown_model()) =>
                {
                    tracing::debug!(provider = %target.provider, status = e.status, "no token counter; trying the next target");
                    state.no_counter_until(Instant::now() + NO_COUNTER_FOR);
                }
                Err(e) if e.retryable_elsewhere => {
                    failed_attempts += 1;
                    tracing::info!(provider = %target.provider, kind = ?e.kind, "token count failed; trying the next target");
                }
                Err(e) => {
                    return Err(RouteError::Failed {
                        last: e.clone(),
                        attempts: vec![Attempt {
                            provider: target.provider.clone(),
                            model,
                            error: e,
                            skipped: false,
                        }],
                    })
                }
            }
        }
        Ok(None)
    }

    /// Sends a request, walking its route's targets (see the crate docs for the rules).
    /// A streamed reply is returned once its first content event arrived.
    pub async fn send(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<(Reply, Served), RouteError> {
        self.walk(&req, &cx).await
    }

    /// Sends an embeddings request, walking its route's targets as [`Router::send`] does.
    /// Targets whose provider has no embeddings are passed over (the error says so when
    /// none has).
    pub async fn embed(
        &self,
        req: EmbedRequest,
        cx: CallContext,
    ) -> Result<(EmbedResponse, Served), RouteError> {
        self.walk(&req, &cx).await
    }

    /// Sends a Responses API request, walking its route's targets as [`Router::send`] does.
    /// Targets whose provider has no Responses API are passed over. A stream is served as
    /// soon as the upstream answered with one (there is no canonical content to wait for).
    pub async fn responses(
        &self,
        req: ResponsesRequest,
        cx: CallContext,
    ) -> Result<(ResponsesReply, Served), RouteError> {
        self.walk(&req, &cx).await
    }

    async fn walk<J: Job>(
        &self,
        req: &J,
        cx: &CallContext,
    ) -> Result<(J::Out, Served), RouteError> {
        let ri = self
            .route_index(req.model())
            .ok_or_else(|| self.unknown(req.model()))?;
        let rs = &self.routes[ri];
        let session = rs
            .route
            .sticky
            .then_some(cx.session.as_deref())
            .flatten()
            .map(|s| {
                let mut h = DefaultHasher::new();
                s.hash(&mut h);
                h.finish()
            });
        // A continued response goes first to where it was made (also on a retry).
        let pin = req
            .follows()
            .and_then(|id| self.response_pin(&id))
            .and_then(|p| self.pin_in_route(p, ri));
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut pass_start = 0;
        // Targets whose failure would repeat (an answer the gateway cannot read): not
        // asked again when another target's failure brings a retry.
        let mut repeating: Vec<usize> = Vec::new();
        // Whether the request went to a target past its open breaker (once at most).
        let mut forced = false;
        for pass in 0..=self.policy.retries {
            if pass > 0 {
                let Some(wait) = self.retry_wait(pass, &attempts[pass_start..], cx.deadline) else {
                    break;
                };
                self.shared.emit(&RouterEvent::Retry { model: req.model() });
                tracing::info!(request_id = %cx.request_id, model = %weir_model::log_safe(req.model()), wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
            pass_start = attempts.len();
            // (A pinned request takes no turn of the rotation: with new and continued
            // conversations alternating, every new one would land on the same target.)
            let mut order = self.order(ri, session, req.model(), pin.is_none());
            if let Some(p) = pin {
                order.retain(|&i| i != p.target);
                order.insert(0, p.target);
            }
            order.retain(|ti| !repeating.contains(ti));
            let n = order.len();
            // The first target passed over for its open breaker, and whether another
            // target of this pass was asked.
            let mut open: Option<usize> = None;
            let mut other = false;
            let mut pos = 0;
            while pos < order.len() {
                let ti = order[pos];
                // (Past the pass's own targets: the last resort added below.)
                let force = pos >= n;
                pos += 1;
                if cx.deadline.is_some_and(|d| Instant::now() >= d) {
                    let target = &rs.route.targets[ti];
                    attempts.push(Attempt {
                        provider: target.provider.clone(),
                        model: target.model.as_deref().unwrap_or(req.model()).to_owned(),
                        error: ProviderError::new(
                            ErrorKind::Timeout,
                            "the request's total time ran out",
                        ),
                        skipped: true,
                    });
                    return Err(self.exhausted(attempts));
                }
                let prefer_key = pin.filter(|p| p.target == ti).and_then(|p| p.key);
                match self
                    .try_target(ri, ti, prefer_key, session, req, cx, &mut attempts, force)
                    .await
                {
                    Outcome::Served(reply, mut served) => {
                        served.failed_attempts = attempts.len();
                        if let Some(h) = session {
                            self.remember(ri, h, ti);
                        }
                        return Ok((reply, served));
                    }
                    Outcome::Fatal => {
                        let last = attempts.last().map(|a| a.error.clone()).unwrap_or_else(|| {
                            ProviderError::new(ErrorKind::Internal, "no attempt")
                        });
                        return Err(RouteError::Failed { last, attempts });
                    }
                    Outcome::Pass => {}
                    Outcome::Open => {
                        open.get_or_insert(ti);
                        if pos < n {
                            self.shared.emit(&RouterEvent::Failover {
                                model: req.model(),
                                provider: &rs.route.targets[ti].provider,
                            });
                        }
                    }
                    // (`try_target` asks again itself after a `Lower`.)
                    Outcome::Next | Outcome::Lower(_) => {
                        // (Asked, or passed over without a call: a key resting, say.)
                        other |= attempts.last().is_some_and(|a| !a.skipped);
                        if force {
                            // The last resort failed too: every target is open, and a
                            // retry would find them so.
                            return Err(self.exhausted(attempts));
                        }
                        if attempts.last().is_some_and(|a| a.error.repeats) {
                            repeating.push(ti);
                        }
                        if pos < n {
                            self.shared.emit(&RouterEvent::Failover {
                                model: req.model(),
                                provider: &rs.route.targets[ti].provider,
                            });
                        }
                    }
                }
                // A breaker steers requests to a route's other targets; it does not refuse
                // them where no other target would take them. When no target of the pass
                // was asked (each was passed over: for its breaker, its capabilities, a
                // resting key), the first passed over for its breaker is asked anyway,
                // once per request: a single-target route is not shut for `breaker_open`
                // by a burst of failures its upstream may already have recovered from.
                if pos == n && !other && !forced {
                    if let Some(ti) = open {
                        forced = true;
                        order.push(ti);
                    }
                }
            }
        }
        Err(self.exhausted(attempts))
    }

    /// The health state of route `rs`'s target `ti` for a request for `model`: the
    /// target's own, or, for a target forwarding the client's model name on a glob route,
    /// that model's (see [`Forwarded`]).
    fn target_state<'a>(
        &self,
        rs: &'a RouteState,
        ti: usize,
        model: &str,
    ) -> Cow<'a, Arc<TargetState>> {
        let t = &rs.route.targets[ti];
        if t.model.is_none() && rs.route.is_glob() && !glob::is_pattern(model) {
            if let Some(s) = self.forwarded.get_or_make(&t.provider, model) {
                return Cow::Owned(s);
            }
        }
        Cow::Borrowed(&rs.targets[ti])
    }

    /// The order to try a route's targets in for one request (for `model`).
    fn order(&self, ri: usize, session: Option<u64>, model: &str, turn: bool) -> Vec<usize> {
        let rs = &self.routes[ri];
        let n = rs.route.targets.len();
        let mut order: Vec<usize> = match rs.route.strategy {
            Strategy::Fallback => (0..n).collect(),
            Strategy::RoundRobin => {
                let start = if turn {
                    rs.turns.next.fetch_add(1, Ordering::Relaxed)
                } else {
                    rs.turns.next.load(Ordering::Relaxed)
                } % n;
                (0..n).map(|i| (start + i) % n).collect()
            }
            Strategy::Weighted if !turn => {
                let mut all: Vec<usize> = (0..n).collect();
                all.sort_by_key(|&i| std::cmp::Reverse(rs.route.targets[i].weight));
                all
            }
            Strategy::Weighted => {
                let first = {
                    let mut cur = lock(&rs.turns.wrr);
                    let total: i64 = rs.route.targets.iter().map(|t| i64::from(t.weight)).sum();
                    let mut best = 0;
                    for (i, t) in rs.route.targets.iter().enumerate() {
                        cur[i] += i64::from(t.weight);
                        if cur[i] > cur[best] {
                            best = i;
                        }
                    }
                    cur[best] -= total;
                    best
                };
                let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
                rest.sort_by_key(|&i| std::cmp::Reverse(rs.route.targets[i].weight));
                std::iter::once(first).chain(rest).collect()
            }
            Strategy::LeastLatency => {
                let now = Instant::now();
                let states: Vec<_> = (0..n).map(|i| self.target_state(rs, i, model)).collect();
                let scores: Vec<f64> = states.iter().map(|t| t.score(now)).collect();
                let healthy: Vec<usize> = (0..n).filter(|&i| states[i].healthy()).collect();
                let pool = if healthy.is_empty() {
                    (0..n).collect()
                } else {
                    healthy
                };
                // A target whose breaker waited its time is probed first (as the walk
                // probes it in the other strategies): passed over for being unhealthy, it
                // would never be tried again.
                let due = (0..n).find(|&i| states[i].probe_due(now));
                let first = if let Some(d) = due {
                    d
                } else if pool.len() == 1 {
                    pool[0]
                } else {
                    let a = rand::random_range(0..pool.len());
                    let mut b = rand::random_range(0..pool.len() - 1);
                    if b >= a {
                        b += 1;
                    }
                    let (a, b) = (pool[a], pool[b]);
                    if scores[b] < scores[a] {
                        b
                    } else {
                        a
                    }
                };
                let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
                rest.sort_by(|&x, &y| scores[x].total_cmp(&scores[y]));
                std::iter::once(first).chain(rest).collect()
            }
        };
        if let Some(h) = session {
            let now = Instant::now();
            let pinned = lock(&self.sessions).get(&(ri, h)).and_then(|&(ti, at)| {
                (now.saturating_duration_since(at) < self.policy.session_ttl).then_some(ti)
            });
            if let Some(ti) = pinned {
                if ti < n && self.target_state(rs, ti, model).healthy() {
                    order.retain(|&i| i != ti);
                    order.insert(0, ti);
                }
            }
        }
        order
    }

    /// Takes over `old`'s remembered responses (a router built from a reloaded config),
    /// for the routes, targets and keys both configs have: a continued conversation keeps
    /// its account across a reload.
    pub fn adopt_responses(&mut self, old: &Router) {
        let old_pins = lock(&old.response_pins);
        let mut pins = HashMap::with_capacity(old_pins.len());
        for (id, (slot, at)) in old_pins.iter() {
            if let Some(slot) = self.translate(old, *slot) {
                pins.insert(id.clone(), (slot, *at));
            }
        }
        *lock(&self.response_pins) = pins;
    }

    /// Takes over what `old` (the router a reloaded config replaces) knows of the upstreams
    /// both configs call: a target of the same provider and model keeps its breaker,
    /// latency, counts and requests in flight, and a key of the same provider keeps its
    /// rests, its refusal and its quotas spent per model. Otherwise a reload, even of an
    /// unchanged file, would send requests straight back to rate-limited or revoked keys
    /// and failing targets. A provider for which `same_upstream` says no (moved to another
    /// kind or base URL) starts afresh.
    pub fn adopt_state(&mut self, old: &Router, same_upstream: impl Fn(&str) -> bool) {
        for t in &mut self.targets {
            if !same_upstream(&t.provider) {
                continue;
            }
            let Some(kept) = old
                .targets
                .iter()
                .find(|o| o.provider == t.provider && o.model == t.model)
            else {
                continue;
            };
            for r in &mut self.routes {
                for rt in &mut r.targets {
                    if Arc::ptr_eq(rt, t) {
                        *rt = kept.clone();
                    }
                }
            }
            *t = kept.clone();
        }
        {
            let kept = lock(&old.forwarded.0);
            let mut map = lock(&self.forwarded.0);
            for (provider, models) in &kept.by_provider {
                if same_upstream(provider) && self.providers.contains_key(provider) {
                    map.len += models.len();
                    map.by_provider.insert(provider.clone(), models.clone());
                }
            }
        }
        for (id, pool) in &mut self.pools {
            if !same_upstream(id) {
                continue;
            }
            let Some(kept) = old.pools.get(id) else {
                continue;
            };
            let same_keys = kept.keys.len() == pool.keys.len()
                && kept.keys.iter().zip(&pool.keys).all(|(a, b)| a.id == b.id);
            if same_keys {
                // The very pool: its keys' requests in flight count on.
                *pool = kept.clone();
            } else {
                // Keys added or removed: those kept keep what is known of them (their
                // requests in flight are counted where they started).
                for k in &pool.keys {
                    if let Some(o) = kept.keys.iter().find(|o| o.id == k.id) {
                        *lock(&k.inner) = lock(&o.inner).clone();
                    }
                }
            }
        }
    }

    /// Takes over `old`'s sessions (a router built from a reloaded config) whose route and
    /// target both configs have: a conversation stays where its prompt cache is across a
    /// reload.
    pub fn adopt_sessions(&mut self, old: &Router) {
        let old_sessions = lock(&old.sessions);
        let mut sessions = HashMap::with_capacity(old_sessions.len());
        for (&(route, hash), &(target, at)) in old_sessions.iter() {
            let slot = Slot {
                route,
                target,
                key: None,
            };
            if let Some(s) = self.translate(old, slot) {
                sessions.insert((s.route, hash), (s.target, at));
            }
        }
        *lock(&self.sessions) = sessions;
    }

    /// Where `old`'s `slot` is in this router: the route of the same name, its target
    /// with the same provider and model, and in that provider's pool the same key.
    fn translate(&self, old: &Router, slot: Slot) -> Option<Slot> {
        let old_route = &old.routes.get(slot.route)?.route;
        let old_target = old_route.targets.get(slot.target)?;
        let route = self
            .routes
            .iter()
            .position(|r| r.route.name == old_route.name)?;
        let target = self.routes[route]
            .route
            .targets
            .iter()
            .position(|t| t.provider == old_target.provider && t.model == old_target.model)?;
        let key = match slot.key {
            None => None,
            Some(k) => {
                let id = &old.pools.get(&old_target.provider)?.keys.get(k)?.id;
                let pool = self.pools.get(&old_target.provider)?;
                Some(pool.keys.iter().position(|nk| &nk.id == id)?)
            }
        };
        Some(Slot { route, target, key })
    }

    /// What remembers the Responses API responses `served` made (see [`ResponseMemory`]).
    pub fn response_memory(&self, served: &Served) -> ResponseMemory {
        let slot = served.slot;
        let share = self.shared.sink.as_ref().and_then(|_| {
            let route = self.routes.get(slot.route)?;
            let target = route.route.targets.get(slot.target)?;
            let key = match slot.key {
                None => None,
                Some(k) => Some(self.pools.get(&target.provider)?.keys.get(k)?.id.clone()),
            };
            Some(Arc::new(SharedPin {
                shared: self.shared.clone(),
                route: route.route.name.clone(),
                provider: target.provider.clone(),
                model: target.model.clone().unwrap_or_default(),
                key,
            }))
        });
        ResponseMemory {
            on: true,
            pins: self.response_pins.clone(),
            max: self.policy.max_sessions,
            slot,
            share,
        }
    }

    /// Where route `ri` sends a request continuing a response made at `p`: the same
    /// target, or, when the client changed model (another route), this route's target on
    /// the provider that made it, with the same model first. The stored response lives
    /// with the provider's account (the pinned key), whatever the model.
    fn pin_in_route(&self, p: Slot, ri: usize) -> Option<Slot> {
        let targets = &self.routes.get(ri)?.route.targets;
        if p.route == ri {
            return (p.target < targets.len()).then_some(p);
        }
        let made = self.routes.get(p.route)?.route.targets.get(p.target)?;
        let target = targets
            .iter()
            .position(|t| t.provider == made.provider && t.model == made.model)
            .or_else(|| targets.iter().position(|t| t.provider == made.provider))?;
        Some(Slot {
            route: ri,
            target,
            key: p.key,
        })
    }

    /// Where the response `id` was made, if remembered and recent; its use keeps it.
    fn response_pin(&self, id: &str) -> Option<Slot> {
        let now = Instant::now();
        let mut pins = lock(&self.response_pins);
        let (slot, at) = pins.get_mut(id)?;
        if now.saturating_duration_since(*at) >= RESPONSE_PIN_TTL {
            pins.remove(id);
            return None;
        }
        *at = now;
        Some(*slot)
    }

    fn remember(&self, ri: usize, session: u64, ti: usize) {
        let now = Instant::now();
        let mut s = lock(&self.sessions);
        s.insert((ri, session), (ti, now));
        make_room(
            &mut s,
            self.policy.max_sessions,
            self.policy.session_ttl,
            now,
            |(_, at)| *at,
        );
    }

    /// How long to wait before walking the targets again, or `None` when a retry cannot
    /// help or would not fit.
    fn retry_wait(
        &self,
        pass: u32,
        failed: &[Attempt],
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        let transient = |a: &Attempt| {
            !a.error.repeats
                && matches!(
                    a.error.kind,
                    ErrorKind::RateLimited
                        | ErrorKind::Overloaded
                        | ErrorKind::Upstream
                        | ErrorKind::Timeout
                        | ErrorKind::Connect
                        | ErrorKind::Decode
                )
        };
        // Targets passed over (they cannot take the request) neither ask for a retry nor
        // shorten the wait for the others.
        let failed: Vec<&Attempt> = failed.iter().filter(|a| !passed_over(a)).collect();
        if failed.is_empty() || !failed.iter().any(|a| transient(a)) {
            return None;
        }
        let base = self
            .policy
            .retry_backoff
            .saturating_mul(1 << (pass - 1).min(10));
        let jitter: f64 = rand::random_range(0.5..1.5);
        let mut wait = base.mul_f64(jitter);
        // Nothing is usable before the soonest resting target comes back.
        if failed.iter().all(|a| a.error.retry_after.is_some()) {
            if let Some(soonest) = failed.iter().filter_map(|a| a.error.retry_after).min() {
                wait = wait.max(soonest);
            }
        }
        if wait > self.policy.max_retry_wait {
            return None;
        }
        if deadline.is_some_and(|d| Instant::now() + wait >= d) {
            return None;
        }
        Some(wait)
    }

    /// Sends the request to route `ri`'s target `ti` (`force`: past its open breaker);
    /// where the upstream refuses its output limit and names the most it takes, once more
    /// with the limit lowered.
    #[allow(clippy::too_many_arguments)]
    async fn try_target<J: Job>(
        &self,
        ri: usize,
        ti: usize,
        prefer_key: Option<usize>,
        session: Option<u64>,
        req: &J,
        cx: &CallContext,
        attempts: &mut Vec<Attempt>,
        force: bool,
    ) -> Outcome<J::Out> {
        // (A second refusal may name a lower limit still: the context's room after the
        // model's ceiling. A third try's refusal is the answer.)
        let mut lower = None;
        for last in [false, false, true] {
            match self
                .try_target_once(
                    ri, ti, prefer_key, session, req, cx, attempts, lower, force, last,
                )
                .await
            {
                Outcome::Lower(c) => lower = Some(c),
                other => return other,
            }
        }
        // (Not reached: the last try answers no `Lower`.)
        Outcome::Next
    }

    /// One try of [`Router::try_target`]: capabilities, breaker, then the target's keys
    /// in turn (`prefer_key` first, else the session's own key, when usable). `lower` is
    /// the lowest output ceiling the upstream named on an earlier try; on the `last` try a
    /// refusal naming one is the answer.
    #[allow(clippy::too_many_arguments)]
    async fn try_target_once<J: Job>(
        &self,
        ri: usize,
        ti: usize,
        prefer_key: Option<usize>,
        session: Option<u64>,
        req: &J,
        cx: &CallContext,
        attempts: &mut Vec<Attempt>,
        lower: Option<OutputCeiling>,
        force: bool,
        last: bool,
    ) -> Outcome<J::Out> {
        let rs = &self.routes[ri];
        let target = &rs.route.targets[ti];
        let model = target.model.as_deref().unwrap_or(req.model());
        let st = &*self.target_state(rs, ti, model);
        let skip = |attempts: &mut Vec<Attempt>, e: ProviderError| {
            attempts.push(Attempt {
                provider: target.provider.clone(),
                model: model.to_owned(),
                error: e,
                skipped: true,
            });
            Outcome::Next
        };
        let Some(provider) = self.providers.get(&target.provider) else {
            return skip(
                attempts,
                ProviderError::new(ErrorKind::Internal, "unknown provider"),
            );
        };

        // The most output the model takes, where its upstream said so (now, or in the last
        // hour), lowers the target's own cap for this request.
        let now = Instant::now();
        let cap = match (lower.map(OutputCeiling::tokens), st.ceiling(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .filter(|&c| target.max_output_tokens.is_none_or(|own| c < own));
        let lowered;
        let for_target = match cap {
            Some(c) => {
                lowered = Target {
                    max_output_tokens: Some(c),
                    ..target.clone()
                };
                &lowered
            }
            None => target,
        };
        let (body, mut warnings) =
            match req.for_target(&rs.route, for_target, provider.as_ref(), model) {
                Ok(b) => b,
                Err(e) => {
                    skip(attempts, e);
                    return Outcome::Pass;
                }
            };
        // (Also where the request's own limit was below the cap but an encoder raises it
        // for a thinking budget, which the cap then shrinks.)
        if let Some(c) = cap.filter(|&c| {
            (body.output_limit() == Some(c) && req.output_limit() != Some(c))
                || (lower.is_some() && body.may_raise_limit())
        }) {
            let why = if lower == Some(OutputCeiling::Room(c)) {
                "the room its input leaves in the model's context window"
            } else {
                "the most the model takes (its upstream refused more)"
            };
            let what = if req.output_limit().is_some_and(|asked| asked <= c) {
                "output limit and thinking budget kept within"
            } else {
                "output limit lowered to"
            };
            warnings.push(format!(
                "{}/{}: {what} {c}, {why}",
                target.provider,
                weir_model::log_safe(model)
            ));
        }

        let (admit, tr) = st.admit(now);
        self.shared.breaker_changed(st, tr);
        match admit {
            Admit::Yes => {}
            // The route's last resort (see `walk`).
            Admit::No(_) if force => self.past_open_breaker(cx, &target.provider, model),
            Admit::No(left) => {
                let mut e = ProviderError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "{} ({model}) is unavailable (circuit open)",
                        target.provider
                    ),
                );
                e.retry_after = Some(left);
                skip(attempts, e);
                return Outcome::Open;
            }
            Admit::Probe if force => {
                self.spawn_probe(provider.clone(), &target.provider, st.clone(), model);
                self.past_open_breaker(cx, &target.provider, model);
            }
            Admit::Probe => {
                self.spawn_probe(provider.clone(), &target.provider, st.clone(), model);
                let mut e = ProviderError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "{} ({model}) is unavailable (circuit half-open, probing)",
                        target.provider
                    ),
                );
                e.retry_after = Some(Duration::from_secs(1));
                skip(attempts, e);
                return Outcome::Open;
            }
        }

        let pool = self
            .pools
            .get(&target.provider)
            .filter(|p| !p.keys.is_empty());
        let keys: Vec<Option<usize>> = match pool {
            None => {
                if let Some(left) = st.resting(now) {
                    let mut e = ProviderError::new(
                        ErrorKind::RateLimited,
                        format!(
                            "{} ({}) is rate limited",
                            target.provider,
                            weir_model::log_safe(model)
                        ),
                    );
                    e.retry_after = Some(left);
                    return skip(attempts, e);
                }
                vec![None]
            }
            Some(p) => {
                let c = p.candidates(now, Some(model));
                if c.usable.is_empty() {
                    let e = if c.all_refused {
                        // The same answer the upstream gave when it refused the key, so
                        // every request reports the refusal alike.
                        let mut e = match c.refusal {
                            Some(api) => ProviderError::from_api(api, None),
                            None => {
                                let mut e = ProviderError::new(
                                    ErrorKind::Authentication,
                                    format!(
                                        "every key of provider `{}` was refused by the upstream",
                                        target.provider
                                    ),
                                );
                                e.status = Some(502);
                                e
                            }
                        };
                        e.retryable_elsewhere = true;
                        e.counts_against_health = false;
                        e
                    } else if c.no_credit {
                        // Said as the upstream said it: a 402 (OpenAI clients get 429
                        // `insufficient_quota`), not a rate limit that passes in seconds.
                        let mut api = weir_model::ApiError::new(
                            ErrorKind::RateLimited,
                            format!(
                                "every key of provider `{}` is out of credit (its account has none left); the keys are tried again later",
                                target.provider
                            ),
                        );
                        api.status = 402;
                        ProviderError::from_api(api, c.soonest)
                    } else {
                        let mut e = ProviderError::new(
                            ErrorKind::RateLimited,
                            if c.model_limited {
                                format!(
                                    "every key of provider `{}` is rate limited for `{}` (its quota for this model is spent)",
                                    target.provider,
                                    weir_model::log_safe(model)
                                )
                            } else {
                                format!(
                                    "every key of provider `{}` is rate limited",
                                    target.provider
                                )
                            },
                        );
                        e.retry_after = c.soonest;
                        e
                    };
                    return skip(attempts, e);
                }
                let mut usable = c.usable;
                // A session keeps to one key of the pool as it keeps to one target: a
                // prompt cache, and reasoning encrypted for one organisation (Responses
                // `store: false`), belong to the key's account. The key is the session's
                // by rendezvous hashing, so it is the same on every instance and moves only
                // while it rests.
                let prefer_key = prefer_key.or_else(|| {
                    let h = session.filter(|_| usable.len() > 1)?;
                    usable
                        .iter()
                        .copied()
                        .max_by_key(|&i| session_key_rank(h, i))
                });
                if let Some(at) = prefer_key.and_then(|k| usable.iter().position(|&i| i == k)) {
                    let k = usable.remove(at);
                    usable.insert(0, k);
                }
                usable.into_iter().map(Some).collect()
            }
        };

        for key in keys {
            let mut kcx = cx.clone();
            let report = KeyReport::new();
            kcx.report = report.clone();
            let key_state = key.and_then(|i| pool.and_then(|p| p.keys.get(i)));
            if let Some(ks) = key_state {
                kcx.key = Some(ks.secret.clone());
                lock(&ks.inner).requests += 1;
            }
            // Counts the call in flight until it is over: also when the request is dropped
            // while waiting (the client went away), which ends this future here.
            let mut in_flight = InFlight::enter(st, key_state);
            // Told to the caller only if the call is dropped unfinished (its client left):
            // nothing is written on the way of every request.
            let started = Instant::now();
            let mut abandoned = hold::Attempting {
                progress: &cx.progress,
                provider: &target.provider,
                model,
                target: st,
                started,
                armed: true,
            };
            let result = body
                .call(provider.as_ref(), kcx, self.policy.stream_hold)
                .await;
            abandoned.armed = false;
            let done = Instant::now();
            if let (Some(i), Some(p), Some(d)) = (key, pool, report.take()) {
                // Rate-limit headers speak of the limits of the model asked for (Anthropic's
                // and OpenAI's are per model).
                self.shared.rest(
                    &target.provider,
                    p,
                    i,
                    Some(model),
                    d,
                    Rest::Exhausted,
                    done,
                );
            }
            match result {
                Ok(reply) => {
                    let (reply, guarded) = J::served(reply, || hold::Guard {
                        target: st.clone(),
                        pool: key.and_then(|i| pool.map(|p| (p.clone(), i))),
                        shared: self.shared.clone(),
                        policy: self.policy.clone(),
                        first_content_from: Some(started),
                        close_on_success: force,
                    });
                    if force && !guarded {
                        // Asked past its open breaker, and it answered: serving again. (A
                        // stream does once it ends well: see `hold::Guard`.)
                        let tr = st.close();
                        self.shared.breaker_changed(st, tr);
                    }
                    if guarded {
                        // The stream's guard gives the counts back when it ends, and
                        // counts its success then (or its failure on the way); its
                        // latency is its first content's, which may come after the hold.
                        in_flight.hand_over();
                        st.stream_started();
                    } else {
                        let tr = st.success(Some(done - started), done);
                        self.shared.breaker_changed(st, tr);
                    }
                    // (What the provider said of how it served the request too.)
                    let (upstream_id, reported) = report.take_served();
                    warnings.extend(reported);
                    return Outcome::Served(
                        reply,
                        Served {
                            provider: target.provider.clone(),
                            model: model.to_owned(),
                            warnings,
                            failed_attempts: 0,
                            upstream_request_id: id_without_keys(upstream_id, pool),
                            started,
                            latency: done - started,
                            slot: Slot {
                                route: ri,
                                target: ti,
                                key,
                            },
                        },
                    );
                }
                Err(mut e) => {
                    drop(in_flight);
                    // An error the upstream answered after its headers (an error event
                    // before content, an error body with a 200) is of the request its
                    // headers named.
                    if e.upstream_request_id.is_none() {
                        e.upstream_request_id = report.request_id();
                    }
                    e.upstream_request_id = id_without_keys(e.upstream_request_id.take(), pool);
                    // A refused output limit, where the upstream named the most it takes:
                    // asked again with that, and again only for a lower one (at most
                    // twice: see `try_target`). A limit no lower than the request's own is
                    // believed only where an encoder may have raised it to fit a thinking
                    // budget (with the new cap it keeps within it); otherwise asking again
                    // would send the same request.
                    if let Some(c) = refused_limit(&e).filter(|c| {
                        !last
                            && lower.is_none_or(|l| c.tokens() < l.tokens())
                            && (body.output_limit().is_none_or(|sent| c.tokens() < sent)
                                || body.may_raise_limit())
                            && (matches!(c, OutputCeiling::Model(_)) || c.tokens() >= MIN_ROOM)
                    }) {
                        if let OutputCeiling::Model(n) = c {
                            st.learn_ceiling(n, done + CEILING_TTL);
                            // (Other instances need not each pay a refused call.)
                            self.shared.publish(StateChange::OutputCeiling {
                                provider: st.provider.clone(),
                                model: st.model.clone(),
                                tokens: n,
                                until_ms: sync::to_unix_ms(
                                    done + CEILING_TTL,
                                    Instant::now(),
                                    unix_ms(),
                                ),
                            });
                        }
                        st.neutral();
                        tracing::info!(
                            request_id = %cx.request_id, provider = %target.provider,
                            model = %weir_model::log_safe(model), limit = c.tokens(),
                            "the upstream refused the output limit; asking again with the most it takes"
                        );
                        self.shared.emit(&RouterEvent::OutputLowered {
                            provider: &target.provider,
                            model,
                            tokens: c.tokens(),
                        });
                        return Outcome::Lower(c);
                    }
                    // What failed in the gateway itself (its cloud credentials, the
                    // connection, a timeout) is said; an upstream's answer (an error body,
                    // an undecodable answer, an event stream's error) may quote the request
                    // or the answer, and is not.
                    let why = if gateway_side(&e) {
                        weir_model::log_safe(&e.message)
                    } else {
                        std::borrow::Cow::Borrowed("-")
                    };
                    tracing::info!(
                        request_id = %cx.request_id, provider = %target.provider,
                        model = %weir_model::log_safe(model),
                        key = key.map(KeyPool::label).as_deref().unwrap_or("-"),
                        kind = ?e.kind, status = e.status, error = %why,
                        "upstream attempt failed"
                    );
                    // A request this target cannot express was not sent: passed over, as
                    // a target lacking a capability is.
                    let attempt = Attempt {
                        provider: target.provider.clone(),
                        model: model.to_owned(),
                        error: e.clone(),
                        skipped: e.is_unexpressible(),
                    };
                    attempts.push(attempt);
                    if key.is_none() && e.kind == ErrorKind::RateLimited {
                        // No key to rest (the provider's credentials are the account's):
                        // the target rests, so the next requests go straight to the
                        // others instead of each paying a throttled round trip.
                        let d = e.retry_after.unwrap_or(self.policy.default_cooldown);
                        st.rest_until(done + d);
                        if let Some(a) = attempts.last_mut() {
                            a.error.retry_after.get_or_insert(d);
                        }
                        return if e.retryable_elsewhere {
                            Outcome::Next
                        } else {
                            Outcome::Fatal
                        };
                    }
                    if let (Some(i), Some(p)) = (key, pool) {
                        let label = KeyPool::label(i);
                        if e.kind == ErrorKind::RateLimited && e.per_model_quota {
                            // The key's quota for this model is spent: the next key is
                            // tried, and this one serves other models meanwhile.
                            let d = e.retry_after.unwrap_or(self.policy.default_cooldown);
                            self.shared.rest(
                                &target.provider,
                                p,
                                i,
                                Some(model),
                                d,
                                Rest::RateLimited,
                                done,
                            );
                            if let Some(a) = attempts.last_mut() {
                                a.error.retry_after.get_or_insert(d);
                            }
                            st.neutral();
                            continue;
                        }
                        if e.kind == ErrorKind::RateLimited {
                            let d = e.retry_after.unwrap_or(self.policy.default_cooldown);
                            let why = if e.api_error.as_ref().is_some_and(|a| a.credit_spent()) {
                                Rest::NoCredit
                            } else {
                                Rest::RateLimited
                            };
                            self.shared.rest(&target.provider, p, i, None, d, why, done);
                            // A 429 that named no wait: the client is told the rest the key
                            // was given, not a retry that would find it still resting.
                            if let Some(a) = attempts.last_mut() {
                                a.error.retry_after.get_or_insert(d);
                            }
                            st.neutral();
                            continue;
                        }
                        // A 403 (OpenAI's "project does not have access to model", Anthropic's
                        // permission_error, Bedrock's AccessDenied) is about what was asked,
                        // often one model: the next key is tried, but the key stays in the
                        // pool, or one client asking for a model the account lacks would
                        // take the provider away from every other model.
                        if e.kind == ErrorKind::PermissionDenied {
                            st.neutral();
                            continue;
                        }
                        if e.kind == ErrorKind::Authentication {
                            let status = e.status.unwrap_or(401);
                            // The client's key was fine: say whose was refused, also when
                            // the refusal is given again while the key rests.
                            let mut api = e.api_error.as_deref().cloned();
                            if let Some(a) = attempts.last_mut() {
                                gateway_key_refused(&mut a.error, &target.provider);
                                api = a.error.api_error.as_deref().cloned();
                            }
                            p.refuse(i, status, done + self.policy.refused_key_retry, api);
                            st.neutral();
                            if let Some(k) = p.keys.get(i) {
                                self.shared.publish(StateChange::KeyRefused {
                                    provider: target.provider.clone(),
                                    key: k.id.clone(),
                                    status,
                                    until_ms: unix_ms().saturating_add(
                                        u64::try_from(self.policy.refused_key_retry.as_millis())
                                            .unwrap_or(u64::MAX),
                                    ),
                                });
                            }
                            tracing::warn!(provider = %target.provider, key = %label, status, "the upstream refused a key; it leaves the pool");
                            self.shared.emit(&RouterEvent::KeyRefused {
                                provider: &target.provider,
                                key: &label,
                                status,
                            });
                            continue;
                        }
                    }
                    if e.counts_against_health {
                        let tr = st.failure(&self.policy, done);
                        self.shared.breaker_changed(st, tr);
                    } else if e.retryable_elsewhere
                        && matches!(e.kind, ErrorKind::Decode | ErrorKind::Upstream)
                    {
                        // An answer the model botched: worse than none for least-latency.
                        st.unusable(done);
                    } else {
                        st.neutral();
                    }
                    return if e.retryable_elsewhere {
                        Outcome::Next
                    } else {
                        Outcome::Fatal
                    };
                }
            }
        }
        Outcome::Next
    }

    /// Logs and counts a request sent to a target past its open breaker (see `walk`).
    fn past_open_breaker(&self, cx: &CallContext, provider: &str, model: &str) {
        tracing::info!(
            request_id = %cx.request_id, provider = %provider,
            model = %weir_model::log_safe(model),
            "no other target to ask: asking this one past its open breaker"
        );
        self.shared
            .emit(&RouterEvent::PastOpenBreaker { provider, model });
    }

    fn spawn_probe(
        &self,
        provider: Arc<dyn Provider>,
        provider_id: &str,
        st: Arc<TargetState>,
        model: &str,
    ) {
        let policy = self.policy.clone();
        let shared = self.shared.clone();
        let pool = self.pools.get(provider_id).cloned();
        let model = model.to_owned();
        let probe = async move {
            let mut cx = CallContext::new(format!("probe_{:016x}", rand::random::<u64>()));
            if let Some(p) = &pool {
                if let Some(&i) = p.candidates(Instant::now(), Some(&model)).usable.first() {
                    cx.key = Some(p.keys[i].secret.clone());
                }
            }
            let answer =
                tokio::time::timeout(policy.probe_timeout, provider.probe(&model, cx)).await;
            // Any answer but a health failure proves the upstream is back (a 429 or
            // 400 comes from a serving upstream).
            let ok = match &answer {
                Ok(Ok(())) => true,
                Ok(Err(e)) => !e.counts_against_health,
                Err(_) => false,
            };
            tracing::info!(provider = %st.provider, model = %st.model, ok, "breaker probe answered");
            let now = Instant::now();
            let tr = if ok {
                st.success(None, now)
            } else {
                st.probe_failed(&policy, now)
            };
            shared.breaker_changed(&st, tr);
        };
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(probe);
        }
    }

    /// The error for a request every target failed.
    fn exhausted(&self, attempts: Vec<Attempt>) -> RouteError {
        let last = final_error(&attempts);
        RouteError::Failed { last, attempts }
    }

    /// A snapshot of every provider's keys, every target's health and every route.
    pub fn status(&self) -> RouterStatus {
        status::snapshot(self)
    }
}

/// A target passed over, without a call, because it cannot take the request (capabilities,
/// an API its provider lacks).
/// The output limit an upstream's 400 names as the most it takes, if it is such a refusal.
fn refused_limit(e: &ProviderError) -> Option<OutputCeiling> {
    if e.kind != ErrorKind::InvalidRequest {
        return None;
    }
    let api = e.api_error.as_deref();
    weir_model::output_ceiling(api.map_or(e.message.as_str(), |a| a.message.as_str()))
        .or_else(|| weir_model::output_ceiling(api?.param.as_deref()?))
}

fn passed_over(a: &Attempt) -> bool {
    a.skipped && a.error.kind == ErrorKind::InvalidRequest
}

/// What to answer when every attempt failed.
fn final_error(attempts: &[Attempt]) -> ProviderError {
    let Some(last) = attempts.last() else {
        return ProviderError::new(ErrorKind::Internal, "no target was tried");
    };
    // Targets passed over because they cannot take the request say nothing about the
    // others' failures: the answer is theirs alone (unless every target was passed over).
    if attempts.iter().any(passed_over) && !attempts.iter().all(passed_over) {
        let rest: Vec<Attempt> = attempts
            .iter()
            .filter(|a| !passed_over(a))
            .cloned()
            .collect();
        return final_error(&rest);
    }
    let real: Vec<&Attempt> = attempts.iter().filter(|a| !a.skipped).collect();
    let targets: std::collections::HashSet<(&str, &str)> = attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.model.as_str()))
        .collect();
    let all = |k: &[ErrorKind]| attempts.iter().all(|a| k.contains(&a.error.kind));
    let min_retry = attempts.iter().filter_map(|a| a.error.retry_after).min();
    let summary = || {
        let mut parts: Vec<String> = Vec::new();
        for a in attempts {
            let what = match (&a.error.api_error, a.error.status) {
                _ if a.skipped => a.error.message.clone(),
                (Some(api), _) => format!(
                    "{} {}",
                    api.status,
                    api.error_type.as_deref().unwrap_or("error")
                ),
                (None, Some(s)) => s.to_string(),
                // The gateway's own cloud credentials failed (no upstream answered):
                // said, without their details (paths, variables), which its log has.
                (None, None)
                    if gateway_side(&a.error) && a.error.kind == ErrorKind::Authentication =>
                {
                    CREDENTIALS_FAILED.to_owned()
                }
                // An answer the gateway cannot read (its message is the gateway's own, and
                // says why: e.g. compressed though asked not to be).
                (None, None) if a.error.repeats && a.error.kind != ErrorKind::Timeout => {
                    a.error.message.clone()
                }
                (None, None) => kind_words(a.error.kind).to_owned(),
            };
            let p = format!("{} ({}): {what}", a.provider, a.model);
            if !parts.contains(&p) {
                parts.push(p);
            }
        }
        parts.join("; ")
    };
    // One upstream answered: its own error, status and type intact.
    if real.len() == 1 && attempts.len() == 1 {
        return last.error.clone();
    }
    if all(&[ErrorKind::RateLimited]) {
        if targets.len() == 1 {
            // The upstream's last answer, else the pool's (every key out of credit).
            if let Some(a) = real
                .last()
                .copied()
                .or_else(|| attempts.iter().rev().find(|a| a.error.api_error.is_some()))
            {
                let mut e = a.error.clone();
                e.retry_after = min_retry;
                return e;
            }
        }
        // No credit left anywhere: said so (a 402; OpenAI clients get 429
        // `insufficient_quota`), not as a rate limit that passes in seconds.
        if attempts.iter().all(|a| {
            a.error
                .api_error
                .as_deref()
                .is_some_and(weir_model::ApiError::credit_spent)
        }) {
            let mut api = weir_model::ApiError::new(
                ErrorKind::RateLimited,
                format!("every target is out of credit [{}]", summary()),
            );
            api.status = 402;
            return ProviderError::from_api(api, min_retry);
        }
        let mut e = ProviderError::new(
            ErrorKind::RateLimited,
            format!("every target is rate limited [{}]", summary()),
        );
        e.status = Some(429);
        e.retry_after = min_retry;
        return e;
    }
    if attempts
        .iter()
        .all(|a| a.skipped && a.error.kind == ErrorKind::InvalidRequest)
    {
        let mut e = ProviderError::new(
            ErrorKind::InvalidRequest,
            format!("no target can serve this request: {}", summary()),
        );
        e.retryable_elsewhere = false;
        // A thread no target keeps: the refusal the client's SDK acts on, with the summary.
        if let Some(api) = attempts
            .iter()
            .filter_map(|a| a.error.api_error.as_deref())
            .find(|api| {
                api.details
                    .as_deref()
                    .is_some_and(|d| d.starts_with(THREAD_REFUSAL))
            })
        {
            let mut api = api.clone();
            api.message.clone_from(&e.message);
            e.status = Some(api.status);
            e.api_error = Some(Box::new(api));
        }
        return e;
    }
    if targets.len() == 1 {
        // The last upstream answer (a refused key's is kept and repeated).
        if let Some(a) = attempts
            .iter()
            .rev()
            .find(|a| !a.skipped || a.error.api_error.is_some())
        {
            return a.error.clone();
        }
    }
    if all(&[ErrorKind::Timeout]) {
        // Every target timed out: a timeout (504), saying once why a whole answer's did.
        let whole = real.iter().any(|a| {
            a.error
                .message
                .ends_with(weir_model::error::WHOLE_ANSWER_TIMEOUT_HINT)
        });
        let hint = if whole {
            weir_model::error::WHOLE_ANSWER_TIMEOUT_HINT
        } else {
            ""
        };
        let mut e = ProviderError::new(
            ErrorKind::Timeout,
            format!("all targets timed out: {}{hint}", summary()),
        );
        e.status = Some(ErrorKind::Timeout.http_status());
        return e;
    }
    let unavailable = all(&[ErrorKind::Overloaded, ErrorKind::RateLimited]);
    let kind = if unavailable {
        ErrorKind::Overloaded
    } else {
        ErrorKind::Upstream
    };
    let mut e = ProviderError::new(kind, format!("all targets failed: {}", summary()));
    e.status = Some(kind.http_status());
    e.retry_after = min_retry;
    e
}

/// An upstream's refusal of a pool key, said as what it is: the gateway's key for
/// `provider`, not the client's (whose key the gateway accepted).
fn gateway_key_refused(e: &mut ProviderError, provider: &str) {
    let say =
        |m: &str| format!("the upstream refused the gateway's key for provider `{provider}`: {m}");
    e.message = say(&e.message);
    if let Some(api) = e.api_error.as_deref_mut() {
        api.message = say(&api.message);
    }
}

/// How a client is told that the gateway's own credentials for an upstream (AWS, Google)
/// are missing, expired or refused before any upstream answered.
pub const CREDENTIALS_FAILED: &str =
    "the gateway's credentials for this upstream are not usable (its log says why)";

/// Whether an error is the gateway's own (its credentials, the connection, a timeout), not
/// an upstream's answer: its message quotes nothing the upstream or the client sent.
fn gateway_side(e: &ProviderError) -> bool {
    e.repeats
        || e.status.is_none()
            && e.api_error.is_none()
            && matches!(
                e.kind,
                ErrorKind::Authentication
                    | ErrorKind::Connect
                    | ErrorKind::Timeout
                    | ErrorKind::Internal
            )
}

fn kind_words(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Timeout => "timed out",
        ErrorKind::Connect => "connection failed",
        ErrorKind::Decode => "undecodable answer",
        ErrorKind::Overloaded => "overloaded",
        ErrorKind::RateLimited => "rate limited",
        ErrorKind::Cancelled => "cancelled",
        _ => "failed",
    }
}

/// A pool key's rank for a session (the highest serves it): splitmix64 of the two.
fn session_key_rank(session: u64, key: usize) -> u64 {
    let mut z = session ^ (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A Responses request for a capped target carries the cap (for the bridge's encoder)
    /// and has its limit read however the number is written.
    #[test]
    fn a_responses_request_for_a_capped_target_carries_the_cap() {
        struct Claude;
        #[async_trait::async_trait]
        impl Provider for Claude {
            fn id(&self) -> &str {
                "c"
            }
            fn capabilities(&self, _model: &str) -> Capabilities {
                Capabilities::ALL
            }
            async fn send(&self, _: &ChatRequest, _: CallContext) -> Result<Reply, ProviderError> {
                Err(ProviderError::new(ErrorKind::Internal, "not called"))
            }
            fn serves_responses(&self) -> bool {
                true
            }
            fn default_output(&self, _model: &str, _stream: bool) -> Option<u32> {
                Some(21_333)
            }
        }
        let mut t = Target::new("c");
        t.max_output_tokens = Some(8192);
        let route = Route::new("m", vec![t.clone()]);
        let limit_of = |body: &str| {
            let req = ResponsesRequest::decode(body.as_bytes()).unwrap();
            let (r, _) = req.for_target(&route, &t, &Claude, "claude").unwrap();
            let limit = r
                .fields
                .iter()
                .find(|(k, _)| k == "max_output_tokens")
                .map(|(_, v)| v.get().to_owned());
            (r.output_cap, limit)
        };
        let cap = Some(8192);
        assert_eq!(
            limit_of(r#"{"model":"m","input":"hi"}"#),
            (cap, Some("8192".into()))
        );
        assert_eq!(
            limit_of(r#"{"model":"m","input":"hi","max_output_tokens":1e5}"#),
            (cap, Some("8192".into()))
        );
        assert_eq!(
            limit_of(r#"{"model":"m","input":"hi","max_output_tokens":100}"#),
            (cap, Some("100".into()))
        );
        // Not a whole number: as it came, for the upstream to refuse.
        assert_eq!(
            limit_of(r#"{"model":"m","input":"hi","max_output_tokens":"lots"}"#),
            (None, Some("\"lots\"".into()))
        );
    }

    /// An open breaker is closed by its probe's answer, not by a request that was under
    /// way when it opened and ended well after.
    #[test]
    fn a_success_already_under_way_does_not_close_an_open_breaker() {
        let policy = Policy {
            breaker_failures: 2,
            ..Policy::default()
        };
        let t = TargetState::new("p", "m");
        let now = Instant::now();
        let _ = t.failure(&policy, now);
        assert_eq!(t.failure(&policy, now), Some(("closed", "open")));
        assert_eq!(t.success(None, now), None);
        assert!(t.open_until().is_some(), "still open");
        assert_eq!(t.stream_completed(), None);
        assert!(t.open_until().is_some(), "still open");
        // The open period over, the probe's success closes it.
        let later = now + policy.breaker_open;
        assert_eq!(t.admit(later).0, Admit::Probe);
        assert_eq!(t.success(None, later), Some(("half_open", "closed")));
        assert!(t.healthy());
    }

    /// A probe failing after a request asked past the breaker closed it (here or on
    /// another instance) does not open it again: the answer came later.
    #[test]
    fn a_late_probe_failure_leaves_a_closed_breaker_closed() {
        let policy = Policy {
            breaker_failures: 1,
            ..Policy::default()
        };
        let t = TargetState::new("p", "m");
        let now = Instant::now();
        assert_eq!(t.failure(&policy, now), Some(("closed", "open")));
        let later = now + policy.breaker_open;
        assert_eq!(t.admit(later).0, Admit::Probe);
        assert_eq!(t.close(), Some(("half_open", "closed")));
        assert_eq!(t.probe_failed(&policy, later), None);
        assert!(t.healthy());
    }

    /// A full table of forwarded states forgets an idle one first; one with failures only
    /// once no one asked for it for a while, so failures counted once cannot hold every
    /// place for good.
    #[test]
    fn forwarded_states_with_failures_go_once_stale() {
        let policy = Policy::default();
        let now = Instant::now();
        let mut map = ForwardedMap::default();
        for m in ["failed", "idle"] {
            let t = Arc::new(TargetState::new("p", m));
            if m == "failed" {
                let _ = t.failure(&policy, now);
            }
            map.by_provider
                .entry("p".into())
                .or_default()
                .insert(m.into(), (t, now));
            map.len += 1;
        }
        assert!(map.evict_one(now));
        assert!(
            map.by_provider["p"].contains_key("failed"),
            "the idle one went"
        );
        assert!(!map.evict_one(now + FORWARDED_STALE / 2), "not stale yet");
        assert!(map.evict_one(now + FORWARDED_STALE));
        assert_eq!(map.len, 0);
        assert!(map.by_provider.is_empty());
    }

    /// A target's cap also holds a request without a limit where the provider would send
    /// one of its own above it; budgets keep Anthropic's least, or thinking goes.
    #[test]
    fn output_limits_hold_the_providers_default_and_keep_budgets_valid() {
        let mut t = Target::new("p");
        t.max_output_tokens = Some(8192);
        let claude = || Some(21_333);
        let none = || None;
        assert_eq!(target_max_tokens(None, &t, claude), Some(8192));
        // A provider default within the cap is the provider's to send (it sizes a derived
        // budget by it).
        assert_eq!(target_max_tokens(None, &t, || Some(4096)), None);
        assert_eq!(
            target_max_tokens(None, &t, none),
            None,
            "the upstream decides"
        );
        assert_eq!(target_max_tokens(Some(100), &t, claude), None);
        t.default_max_tokens = Some(2048);
        assert_eq!(target_max_tokens(None, &t, claude), Some(2048));
        let uncapped = Target::new("p");
        assert_eq!(target_max_tokens(None, &uncapped, claude), None);

        let budget_after = |n: u32, budget: u32| {
            let mut r = ChatRequest {
                thinking: Some(ThinkingConfig::Enabled {
                    budget_tokens: budget,
                }),
                ..Default::default()
            };
            let warning = fit_output(&mut r, n, &t, "m");
            assert_eq!(r.max_tokens, Some(n));
            match r.thinking {
                Some(ThinkingConfig::Enabled { budget_tokens }) => {
                    assert!(warning.is_none());
                    Some(budget_tokens)
                }
                _ => {
                    assert!(warning.unwrap().contains("thinking dropped"));
                    None
                }
            }
        };
        assert_eq!(budget_after(8192, 31_999), Some(4096));
        assert_eq!(budget_after(8192, 4000), Some(4000));
        assert_eq!(budget_after(1500, 31_999), Some(1024));
        assert_eq!(budget_after(1500, 4000), Some(1024));
        assert_eq!(budget_after(1024, 4000), None);

        // An Anthropic client's form the model does not name: its budget fitted in place.
        let unknown = |budget: u32| ChatRequest {
            thinking: Some(ThinkingConfig::Unknown(weir_model::raw::to_raw(
                &serde_json::json!({"type": "enabled", "budget_tokens": budget, "display": "summarized"}),
            ))),
            ..Default::default()
        };
        let mut r = unknown(32_000);
        assert!(fit_output(&mut r, 8192, &t, "m").is_none());
        let Some(ThinkingConfig::Unknown(raw)) = &r.thinking else {
            panic!("{:?}", r.thinking)
        };
        let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "enabled", "budget_tokens": 4096, "display": "summarized"})
        );
        let mut r = unknown(2000);
        assert!(fit_output(&mut r, 8192, &t, "m").is_none());
        assert!(
            matches!(&r.thinking, Some(ThinkingConfig::Unknown(raw)) if raw.get().contains("2000"))
        );
        let mut r = unknown(2000);
        assert!(fit_output(&mut r, 1000, &t, "m").is_some());
        assert!(r.thinking.is_none());
    }

    /// Embedders get a route error as a std error: `?` into `Box<dyn Error>`, `{e}`.
    #[test]
    fn route_errors_are_std_errors() {
        let unknown: Box<dyn std::error::Error> = Box::new(RouteError::UnknownModel {
            model: "gpt-x".into(),
            available: vec!["claude-*".into(), "gpt-4o".into()],
        });
        assert_eq!(
            unknown.to_string(),
            "no route for model `gpt-x` (available: claude-*, gpt-4o)"
        );
        assert!(unknown.source().is_none());
        let last = ProviderError::new(ErrorKind::RateLimited, "slow down");
        let attempt = Attempt {
            provider: "a".into(),
            model: "m".into(),
            error: last.clone(),
            skipped: false,
        };
        let failed: Box<dyn std::error::Error> = Box::new(RouteError::Failed {
            last,
            attempts: vec![attempt.clone(), attempt],
        });
        assert_eq!(
            failed.to_string(),
            "RateLimited: slow down (after 2 attempts)"
        );
        assert_eq!(
            failed.source().unwrap().to_string(),
            "RateLimited: slow down"
        );
    }

    /// A full map loses its expired entries, then its least recently used half: recent
    /// entries survive any burst of new ones.
    #[test]
    fn bounded_maps_keep_their_recent_entries() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut m: HashMap<u64, Instant> = HashMap::new();
        // One old entry used recently (key 0), then a burst.
        m.insert(0, at(10_000));
        for i in 1..=1000 {
            m.insert(i, at(i));
            make_room(
                &mut m,
                100,
                Duration::from_secs(1_000_000),
                at(10_000),
                |v| *v,
            );
            assert!(m.len() <= 100);
        }
        assert!(m.contains_key(&0), "recently used");
        assert!(m.contains_key(&1000), "newest");
        assert!(m.len() >= 50);
        // Expired entries go first, and alone when that makes room.
        let mut m: HashMap<u64, Instant> = (0..10).map(|i| (i, at(i))).collect();
        make_room(&mut m, 5, Duration::from_secs(10), at(14), |v| *v);
        assert_eq!(m.len(), 5);
        assert!((5..10).all(|i| m.contains_key(&i)));
    }
}
