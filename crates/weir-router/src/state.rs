//! What the router remembers between requests: per target, a circuit breaker and recent
//! latency and errors; per provider, the state of each key of its pool.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_model::Secret;

use crate::Policy;

/// A lock that survives a panic elsewhere: router state stays usable (its invariants are
/// simple counters), so a poisoned lock is taken over rather than propagated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A success's effect on the breaker: closed with no failures counted, or, while open,
/// nothing. A request admitted before the breaker opened that ends well after it opened
/// is not the probe's answer: an upstream failing most requests would otherwise close its
/// breaker with each slow success that was already under way.
fn close_after_success(g: &mut TargetInner) -> Transition {
    let from = g.breaker.name();
    if from == "open" {
        return None;
    }
    g.breaker = Breaker::Closed { failures: 0 };
    (from != "closed").then_some((from, "closed"))
}

/// A circuit breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breaker {
    /// Serving; `failures` consecutive health failures so far.
    Closed { failures: u32 },
    /// Not serving until `until`; `opened` is how many times in a row it opened (the open
    /// period doubles each time a probe fails).
    Open { until: Instant, opened: u32 },
    /// A probe is in flight; requests skip the target until it answers.
    HalfOpen { opened: u32 },
}

impl Breaker {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half_open",
        }
    }
}

/// Whether a target may take a request now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// Open (or probing); try again after the duration.
    No(Duration),
    /// The open period is over: the caller starts a probe (and skips the target).
    Probe,
}

#[derive(Debug)]
pub(crate) struct TargetInner {
    pub breaker: Breaker,
    /// Peak-EWMA of latency (time to first token for streams), milliseconds; `None`
    /// until the first observation.
    pub latency_ms: Option<f64>,
    pub latency_at: Option<Instant>,
    /// Recent latency of the answers the target gave (time to first content for streams),
    /// milliseconds, exponentially weighted: what `/status` shows. `latency_ms` also
    /// counts each failure as a slow answer, which ranks but is not a latency.
    pub recent_ms: Option<f64>,
    /// Exponentially weighted share of failed requests (each request weighs 1/20).
    pub error_rate: f64,
    pub requests: u64,
    pub failures: u64,
    /// A provider without a key pool (Bedrock, Vertex: its credentials are the account's)
    /// answered 429: the target rests until then, as a pool key would.
    pub resting_until: Option<Instant>,
    /// The target's upstream has no token counter (it answered 404 or 405 there): counts
    /// are not asked of it until then.
    pub no_counter_until: Option<Instant>,
    /// The most output the model takes, as its upstream said when it refused more, and
    /// until when that is believed (see [`TargetState::learn_ceiling`]).
    pub ceiling: Option<(u32, Instant)>,
}

/// One target's health: shared by every route that names the same provider and model.
#[derive(Debug)]
pub(crate) struct TargetState {
    pub provider: String,
    pub model: String,
    pub in_flight: AtomicU32,
    pub inner: Mutex<TargetInner>,
}

/// The name a model's quota goes by: Gemini takes `models/gemini-2.5-flash` and
/// `gemini-2.5-flash` alike.
/// How many models' limits one key remembers at most.
const MAX_MODEL_LIMITS: usize = 256;

fn quota_name(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// A breaker transition, for logs and metrics: `(from, to)`.
pub(crate) type Transition = Option<(&'static str, &'static str)>;

const LATENCY_TAU: Duration = Duration::from_secs(10);
const ERROR_WEIGHT: f64 = 1.0 / 20.0;

impl TargetState {
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        TargetState {
            provider: provider.to_owned(),
            model: model.to_owned(),
            in_flight: AtomicU32::new(0),
            inner: Mutex::new(TargetInner {
                breaker: Breaker::Closed { failures: 0 },
                latency_ms: None,
                latency_at: None,
                resting_until: None,
                no_counter_until: None,
                ceiling: None,
                recent_ms: None,
                error_rate: 0.0,
                requests: 0,
                failures: 0,
            }),
        }
    }

    pub(crate) fn admit(&self, now: Instant) -> (Admit, Transition) {
        let mut g = lock(&self.inner);
        match g.breaker {
            Breaker::Closed { .. } => (Admit::Yes, None),
            Breaker::Open { until, opened } if now >= until => {
                g.breaker = Breaker::HalfOpen { opened };
                (Admit::Probe, Some(("open", "half_open")))
            }
            Breaker::Open { until, .. } => (Admit::No(until - now), None),
            // A probe is answering; it has at most the probe timeout.
            Breaker::HalfOpen { .. } => (Admit::No(Duration::from_secs(1)), None),
        }
    }

    /// Whether a sticky session may stay here: the breaker is closed.
    pub(crate) fn healthy(&self) -> bool {
        matches!(lock(&self.inner).breaker, Breaker::Closed { .. })
    }

    /// Whether forgetting it loses nothing but history: no request in flight, and a
    /// closed breaker that counts no failure.
    pub(crate) fn idle(&self) -> bool {
        self.unused() && matches!(lock(&self.inner).breaker, Breaker::Closed { failures: 0 })
    }

    /// Whether no request (or probe) is in flight on it.
    pub(crate) fn unused(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Whether the breaker is open and its wait is over: the next request may probe it.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        matches!(lock(&self.inner).breaker, Breaker::Open { until, .. } if until <= now)
    }

    /// A request (or probe) succeeded after `latency`.
    pub(crate) fn success(&self, latency: Option<Duration>, now: Instant) -> Transition {
        let mut g = lock(&self.inner);
        g.requests += 1;
        g.error_rate *= 1.0 - ERROR_WEIGHT;
        if let Some(l) = latency {
            answered(&mut g, l.as_secs_f64() * 1000.0, now);
        }
        close_after_success(&mut g)
    }

    /// A stream was handed to its client: counted as a request, but not yet as a success,
    /// which it is only once it ends well ([`TargetState::stream_completed`]); one that
    /// fails on the way counts as a failure ([`TargetState::stream_failed`]). Otherwise a
    /// target whose streams all fail after their first content would reset its run of
    /// failures with each new stream and never open its breaker. Its latency is taken at
    /// its first content ([`TargetState::first_content`]).
    pub(crate) fn stream_started(&self) {
        lock(&self.inner).requests += 1;
    }

    /// A stream ended, or its client left, `waited` after its request was sent and
    /// before any content: its first content would have come later, which least-latency
    /// counts (it is no answer for `/status`).
    pub(crate) fn waited(&self, waited: Duration, now: Instant) {
        observe_latency(&mut lock(&self.inner), waited.as_secs_f64() * 1000.0, now);
    }

    /// A stream's first content came `latency` after its request was sent: for
    /// least-latency and `/status`.
    pub(crate) fn first_content(&self, latency: Duration, now: Instant) {
        answered(&mut lock(&self.inner), latency.as_secs_f64() * 1000.0, now);
    }

    /// A stream [`TargetState::stream_started`] ended well: a success.
    pub(crate) fn stream_completed(&self) -> Transition {
        let mut g = lock(&self.inner);
        g.error_rate *= 1.0 - ERROR_WEIGHT;
        close_after_success(&mut g)
    }

    /// A stream [`TargetState::stream_started`] failed on the way (already counted as a
    /// request): a failure, toward the breaker.
    pub(crate) fn stream_failed(&self, policy: &Policy, now: Instant) -> Transition {
        lock(&self.inner).requests -= 1;
        self.failure(policy, now)
    }

    /// A request failed in a way that says the target is unhealthy (5xx, timeout,
    /// connection). Opens the breaker after `policy.breaker_failures` in a row.
    pub(crate) fn failure(&self, policy: &Policy, now: Instant) -> Transition {
        let mut g = lock(&self.inner);
        g.requests += 1;
        g.failures += 1;
        g.error_rate = g.error_rate * (1.0 - ERROR_WEIGHT) + ERROR_WEIGHT;
        // A failing target should lose least-latency comparisons until it recovers.
        observe_latency(&mut g, 5_000.0, now);
        match g.breaker {
            Breaker::Closed { failures } => {
                let failures = failures + 1;
                if policy.breaker_failures > 0 && failures >= policy.breaker_failures {
                    g.breaker = Breaker::Open {
                        until: now + policy.breaker_open,
                        opened: 1,
                    };
                    Some(("closed", "open"))
                } else {
                    g.breaker = Breaker::Closed { failures };
                    None
                }
            }
            // A request admitted before the breaker opened failed too: nothing new.
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => None,
        }
    }

    /// A request asked past the open breaker was answered: the breaker closes (the
    /// upstream serves again), whatever its probe is doing.
    pub(crate) fn close(&self) -> Transition {
        let mut g = lock(&self.inner);
        let from = g.breaker.name();
        g.breaker = Breaker::Closed { failures: 0 };
        (from != "closed").then_some((from, "closed"))
    }

    /// A request failed for a reason that says nothing about health (4xx, 429).
    pub(crate) fn neutral(&self) {
        lock(&self.inner).requests += 1;
    }

    /// Rests the target (keyless provider, 429) until `until`.
    pub(crate) fn rest_until(&self, until: Instant) {
        let mut g = lock(&self.inner);
        g.requests += 1;
        g.resting_until = Some(g.resting_until.map_or(until, |u| u.max(until)));
    }

    /// Remembers that the target's upstream has no token counter, until `until`.
    pub(crate) fn no_counter_until(&self, until: Instant) {
        lock(&self.inner).no_counter_until = Some(until);
    }

    /// Remembers the most output the model takes (its upstream refused more), until
    /// `until`: a model name may later move to another model (a `-latest` alias).
    pub(crate) fn learn_ceiling(&self, n: u32, until: Instant) {
        lock(&self.inner).ceiling = Some((n, until));
    }

    /// The learned ceiling and until when it holds (see [`TargetState::learn_ceiling`]).
    pub(crate) fn ceiling_until(&self) -> Option<(u32, Instant)> {
        lock(&self.inner).ceiling
    }

    /// The most output the model takes, if its upstream said so recently.
    pub(crate) fn ceiling(&self, now: Instant) -> Option<u32> {
        lock(&self.inner)
            .ceiling
            .filter(|&(_, until)| until > now)
            .map(|(n, _)| n)
    }

    /// Whether the target's upstream was found to have no token counter, at `now`.
    pub(crate) fn has_no_counter(&self, now: Instant) -> bool {
        lock(&self.inner).no_counter_until.is_some_and(|u| u > now)
    }

    /// How long the target still rests at `now`, if it does.
    pub(crate) fn resting(&self, now: Instant) -> Option<Duration> {
        lock(&self.inner)
            .resting_until
            .filter(|&u| u > now)
            .map(|u| u - now)
    }

    /// A request the target answered but whose answer was no use (the model's malformed
    /// tool call): counted in the error rate and as a slow answer for least-latency, so
    /// such a target stops being preferred, but not toward its breaker (it is healthy).
    pub(crate) fn unusable(&self, now: Instant) {
        let mut g = lock(&self.inner);
        g.requests += 1;
        g.failures += 1;
        g.error_rate = g.error_rate * (1.0 - ERROR_WEIGHT) + ERROR_WEIGHT;
        observe_latency(&mut g, 5_000.0, now);
    }

    /// The half-open probe failed: open again, for twice as long (capped).
    pub(crate) fn probe_failed(&self, policy: &Policy, now: Instant) -> Transition {
        let mut g = lock(&self.inner);
        let opened = match g.breaker {
            Breaker::HalfOpen { opened } | Breaker::Open { opened, .. } => opened,
            // Closed while the probe was out (a request asked past the breaker was
            // answered, here or on another instance): that answer is the later word.
            Breaker::Closed { .. } => return None,
        };
        let factor = 1u32 << opened.min(16);
        let open_for = policy
            .breaker_open
            .saturating_mul(factor)
            .min(policy.breaker_max_open.max(policy.breaker_open));
        g.breaker = Breaker::Open {
            until: now + open_for,
            opened: opened.saturating_add(1),
        };
        Some(("half_open", "open"))
    }

    /// Another instance opened this target's breaker until `until`: open here too (or
    /// keep the later of the two). A probe in flight here is left to answer.
    pub(crate) fn open_shared(&self, until: Instant, opened: u32) -> Transition {
        let mut g = lock(&self.inner);
        match g.breaker {
            Breaker::Closed { .. } => {
                g.breaker = Breaker::Open { until, opened };
                Some(("closed", "open"))
            }
            Breaker::Open {
                until: mine,
                opened: o,
            } => {
                g.breaker = Breaker::Open {
                    until: mine.max(until),
                    opened: o.max(opened),
                };
                None
            }
            Breaker::HalfOpen { .. } => None,
        }
    }

    /// Another instance saw this target serve again: close here too.
    pub(crate) fn close_shared(&self) -> Transition {
        let mut g = lock(&self.inner);
        let from = g.breaker.name();
        g.breaker = Breaker::Closed { failures: 0 };
        (from != "closed").then_some((from, "closed"))
    }

    /// The breaker's open period, if it is open.
    pub(crate) fn open_until(&self) -> Option<(Instant, u32)> {
        match lock(&self.inner).breaker {
            Breaker::Open { until, opened } => Some((until, opened)),
            _ => None,
        }
    }

    /// Least-latency score: lower is better; unobserved targets score 0 so they get tried.
    /// The latency fades towards 0 while the target goes unobserved (time constant
    /// `LATENCY_TAU`), so one that lost every comparison (after a failure, or a slow spell)
    /// is tried again and can win its place back, rather than being passed over for good.
    pub(crate) fn score(&self, now: Instant) -> f64 {
        let g = lock(&self.inner);
        let latency = match (g.latency_ms, g.latency_at) {
            (Some(l), Some(at)) => {
                let idle = now.saturating_duration_since(at).as_secs_f64();
                l * (-idle / LATENCY_TAU.as_secs_f64()).exp()
            }
            _ => 0.0,
        };
        latency * f64::from(self.in_flight.load(Ordering::Relaxed) + 1)
    }
}

/// An answer came after `ms`: for least-latency and for `recent_ms` (each answer weighs a
/// quarter).
fn answered(g: &mut TargetInner, ms: f64, now: Instant) {
    observe_latency(g, ms, now);
    g.recent_ms = Some(g.recent_ms.map_or(ms, |r| r * 0.75 + ms * 0.25));
}

/// Peak-EWMA: a slower observation is taken at once, a faster one blends in with a weight
/// that grows with the time since the last observation.
fn observe_latency(g: &mut TargetInner, ms: f64, now: Instant) {
    g.latency_ms = Some(match (g.latency_ms, g.latency_at) {
        (Some(old), Some(at)) if ms < old => {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            let w = (-elapsed / LATENCY_TAU.as_secs_f64()).exp();
            old * w + ms * (1.0 - w)
        }
        _ => ms,
    });
    g.latency_at = Some(now);
}

/// Why a key is resting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// The upstream answered 429.
    RateLimited,
    /// The upstream's headers said a limit is at zero.
    Exhausted,
    /// The key's account has no credit left (a 402, OpenAI's `insufficient_quota`).
    NoCredit,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct KeyInner {
    pub cooldown_until: Option<(Instant, Rest)>,
    /// The upstream refused the key (401/403): out of the pool until the instant, then
    /// given one more chance (a revoked key is refused again at once; a glitch heals).
    pub refused: Option<(u16, Instant)>,
    /// What the upstream answered when it refused the key (its error, scrubbed), so later
    /// requests skipping the key report the same error.
    pub refusal: Option<weir_model::ApiError>,
    pub requests: u64,
    pub rate_limited: u64,
    /// Models whose quota on this key is spent, until when (a per-model 429, as
    /// Gemini's): the key serves other models meanwhile.
    pub model_limits: Vec<(Box<str>, Instant)>,
}

#[derive(Debug)]
pub(crate) struct KeyState {
    pub secret: Secret,
    /// The key's identity in a shared store ([`crate::key_id`]).
    pub id: String,
    pub in_flight: AtomicU32,
    pub inner: Mutex<KeyInner>,
}

/// A provider's keys as the router uses them.
#[derive(Debug)]
pub(crate) struct KeyPool {
    pub keys: Vec<KeyState>,
    next: AtomicUsize,
}

/// Which keys a call may use now.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Usable keys, least loaded first (ties in turn).
    pub usable: Vec<usize>,
    /// The soonest a resting key is usable again, if every usable one is resting.
    pub soonest: Option<Duration>,
    /// Every key was refused by the upstream.
    pub all_refused: bool,
    /// The upstream's answer to the last refused key.
    pub refusal: Option<weir_model::ApiError>,
    /// A key was passed over because its quota for the model is spent.
    pub model_limited: bool,
    /// Every key not refused rests for want of credit (and one does).
    pub no_credit: bool,
}

impl KeyPool {
    pub(crate) fn new(keys: &[Secret]) -> Self {
        KeyPool {
            keys: keys
                .iter()
                .map(|s| KeyState {
                    id: crate::sync::key_id(s.expose()),
                    secret: s.clone(),
                    in_flight: AtomicU32::new(0),
                    inner: Mutex::new(KeyInner::default()),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The keys to try, for a request of `model` when one is given (keys whose quota for
    /// it is spent are passed over).
    pub(crate) fn candidates(&self, now: Instant, model: Option<&str>) -> Candidates {
        let n = self.keys.len();
        let mut c = Candidates::default();
        if n == 0 {
            return c;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut refused = 0;
        let mut no_credit = 0;
        let mut latest_refusal: Option<Instant> = None;
        let mut usable: Vec<(u32, usize, usize)> = Vec::with_capacity(n);
        for turn in 0..n {
            let i = (start + turn) % n;
            let k = &self.keys[i];
            let mut g = lock(&k.inner);
            if let Some((_, until)) = g.refused {
                if until > now {
                    refused += 1;
                    // The most recent refusal speaks for the pool.
                    if g.refusal.is_some() && latest_refusal.is_none_or(|l| until > l) {
                        latest_refusal = Some(until);
                        c.refusal.clone_from(&g.refusal);
                    }
                    continue;
                }
                g.refused = None;
                g.refusal = None;
            }
            if let Some((until, why)) = g.cooldown_until {
                if until > now {
                    no_credit += usize::from(why == Rest::NoCredit);
                    let left = until - now;
                    c.soonest = Some(c.soonest.map_or(left, |s: Duration| s.min(left)));
                    continue;
                }
                g.cooldown_until = None;
            }
            if !g.model_limits.is_empty() {
                g.model_limits.retain(|(_, until)| *until > now);
                let limited = model.and_then(|m| {
                    let m = quota_name(m);
                    g.model_limits
                        .iter()
                        .find(|(l, _)| &**l == m)
                        .map(|(_, until)| *until - now)
                });
                if let Some(left) = limited {
                    c.model_limited = true;
                    c.soonest = Some(c.soonest.map_or(left, |s: Duration| s.min(left)));
                    continue;
                }
            }
            usable.push((k.in_flight.load(Ordering::Relaxed), turn, i));
        }
        usable.sort_unstable();
        c.usable = usable.into_iter().map(|(_, _, i)| i).collect();
        c.all_refused = refused == n;
        c.no_credit = no_credit > 0 && no_credit + refused == n;
        if !c.usable.is_empty() {
            c.soonest = None;
        }
        c
    }

    /// Key `i`'s quota for `model` is spent until `until` (a per-model 429, or headers
    /// saying the model's limit is at zero): the key serves other models meanwhile.
    pub(crate) fn limit_model(&self, i: usize, model: &str, d: Duration, why: Rest, now: Instant) {
        if let Some(k) = self.keys.get(i) {
            if why == Rest::RateLimited {
                lock(&k.inner).rate_limited += 1;
            }
        }
        self.limit_model_until(i, model, now + d);
    }

    /// Key `i`'s quota for `model` is spent until `until`, unless known to be spent
    /// longer.
    pub(crate) fn limit_model_until(&self, i: usize, model: &str, until: Instant) {
        let model = quota_name(model);
        if let Some(k) = self.keys.get(i) {
            let mut g = lock(&k.inner);
            match g.model_limits.iter_mut().find(|(m, _)| &**m == model) {
                Some((_, u)) => *u = (*u).max(until),
                None => {
                    if g.model_limits.len() >= MAX_MODEL_LIMITS {
                        // Forwarded names are the client's: bounded, the one that ends
                        // first makes room (it costs at most one refused request).
                        if let Some(first) =
                            (0..g.model_limits.len()).min_by_key(|&j| g.model_limits[j].1)
                        {
                            g.model_limits.swap_remove(first);
                        }
                    }
                    g.model_limits.push((model.into(), until));
                }
            }
        }
    }

    pub(crate) fn rest(&self, i: usize, d: Duration, why: Rest, now: Instant) {
        if let Some(k) = self.keys.get(i) {
            if why == Rest::RateLimited {
                lock(&k.inner).rate_limited += 1;
            }
        }
        self.rest_until(i, now + d, why);
    }

    /// Rests key `i` until `until`, unless it already rests longer.
    pub(crate) fn rest_until(&self, i: usize, until: Instant, why: Rest) {
        if let Some(k) = self.keys.get(i) {
            let mut g = lock(&k.inner);
            if g.cooldown_until.is_none_or(|(u, _)| u < until) {
                g.cooldown_until = Some((until, why));
            }
        }
    }

    pub(crate) fn refuse(
        &self,
        i: usize,
        status: u16,
        until: Instant,
        answer: Option<weir_model::ApiError>,
    ) {
        if let Some(k) = self.keys.get(i) {
            let mut g = lock(&k.inner);
            g.refused = Some((status, until));
            g.refusal = answer;
        }
    }

    /// The key with this [`crate::key_id`].
    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.id == id)
    }

    /// Another instance saw the upstream refuse key `i` until `until`: keep the later of
    /// that and what this instance knows. Its answer stays with the instance that got it.
    pub(crate) fn refuse_shared(&self, i: usize, status: u16, until: Instant) {
        if let Some(k) = self.keys.get(i) {
            let mut g = lock(&k.inner);
            if g.refused.is_none_or(|(_, u)| u < until) {
                g.refused = Some((status, until));
            }
        }
    }

    pub(crate) fn label(i: usize) -> String {
        format!("key-{}", i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_that_lost_on_latency_is_tried_again_once_its_figure_fades() {
        let now = Instant::now();
        let policy = crate::Policy::default();
        let failed = TargetState::new("fast", "m");
        failed.failure(&policy, now);
        let steady = TargetState::new("slow", "m");
        steady.success(Some(Duration::from_millis(300)), now);
        // Right after its failure the failed target loses every comparison...
        assert!(failed.score(now) > steady.score(now));
        // ...but while it goes unasked its figure fades, as the one observed all along
        // does not (observed again just now).
        let later = now + 4 * LATENCY_TAU;
        steady.success(Some(Duration::from_millis(300)), later);
        assert!(failed.score(later) < steady.score(later));
        // Asked again and fast, it stays ahead.
        failed.success(Some(Duration::from_millis(40)), later);
        assert!(failed.score(later + Duration::from_secs(1)) < steady.score(later));
    }
}
