//! Per-client-key limits: requests per minute (GCRA), tokens per minute (a token bucket
//! checked on an estimate before the call and charged with the real usage after it),
//! requests in flight, and spend per UTC day. In memory (this process), or counted by
//! every instance together in Redis ([`Limiter::admit_shared`]), falling back to memory
//! while Redis is away when the store fails open. Limits key on the authenticated client
//! key, never on an address or anything the client says.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key's configured limits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitConfig {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight.
    pub max_concurrent: Option<u64>,
    /// USD per UTC day, from the prices of the upstream models.
    pub daily_budget_usd: Option<f64>,
}

/// Spend of one UTC day.
#[derive(Debug, Default, Clone, Copy)]
struct Spend {
    day: u64,
    usd: f64,
}

impl LimitConfig {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.max_concurrent.is_some()
            || self.daily_budget_usd.is_some()
    }
}

/// Seconds since the Unix epoch (UTC); 0 if the clock is before it.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// `rpm`, `tpm`, `max_concurrent`, `budget`, or `state_unavailable` (metrics label).
    pub limit: &'static str,
    /// For the client.
    pub message: String,
    /// When to come back.
    pub retry_after: Duration,
    /// The limits could not be checked (the shared store is away and fails closed): 503,
    /// not 429.
    pub unavailable: bool,
}

/// Dollars to the cent, or to the micro-dollar below a cent (a budget of $0.000001 is not
/// "$0.00").
fn usd(x: f64) -> String {
    if x == 0.0 || x.abs() >= 0.01 {
        format!("${x:.2}")
    } else {
        // (Below a millionth it would print as `$0.`.)
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "0" || s == "-0" {
            format!("${x:.2e}")
        } else {
            format!("${s}")
        }
    }
}

impl Refusal {
    fn limited(limit: &'static str, message: String, retry_after: Duration) -> Refusal {
        Refusal {
            limit,
            message,
            retry_after,
            unavailable: false,
        }
    }

    fn budget(budget: f64, spent: f64, now_secs: u64) -> Refusal {
        let left = 86_400 - now_secs % 86_400;
        Refusal::limited(
            "budget",
            format!(
                "this key's daily budget of {} is spent ({} today); it resets at 00:00 UTC, in {}h{:02}m",
                usd(budget),
                usd(spent),
                left / 3600,
                (left % 3600) / 60
            ),
            Duration::from_secs(left),
        )
    }

    fn concurrent(max: u64, now: u64) -> Refusal {
        Refusal::limited(
            "max_concurrent",
            format!(
                "this key may have {max} requests in flight and has {now}; retry when one finishes"
            ),
            Duration::from_secs(1),
        )
    }

    fn tpm(tpm: u64, wait: Duration) -> Refusal {
        Refusal::limited(
            "tpm",
            format!("this key's {tpm} tokens per minute are used up"),
            wait,
        )
    }

    fn rpm(rpm: u64, wait: Duration) -> Refusal {
        Refusal::limited(
            "rpm",
            format!("this key may send {rpm} requests per minute"),
            wait,
        )
    }
}

#[derive(Debug)]
struct Buckets {
    /// GCRA's theoretical arrival time of the next request.
    tat: Option<Instant>,
    /// Tokens left this minute (may go negative: a request's real usage is charged after).
    tokens: f64,
    tokens_at: Instant,
    /// The (tpm, rpm) the two figures above are counted for: a reload that changes them
    /// rescales the figures once (every runtime's rebuild of the app adopts the same
    /// counters).
    sized_for: (Option<u64>, Option<u64>),
}

/// One key's limiter. Shared by every clone of the key (and every runtime thread).
#[derive(Debug)]
pub struct Limiter {
    cfg: LimitConfig,
    /// The counters: shared with the limiter a reload replaced (see
    /// [`Limiter::carrying_over`]), so requests admitted before it still give back their
    /// slot and charge their spend where the new limits see them.
    state: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    buckets: Mutex<Buckets>,
    in_flight: AtomicU32,
    spend: Mutex<Spend>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The state is plain numbers, valid after any panic: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request admitted by a limiter: holds its in-flight slot until dropped, and charges
/// its real token usage.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<Limiter>,
    estimate: u64,
    holds_slot: bool,
    charged: std::sync::atomic::AtomicBool,
    /// The key's limits are shared (`admit_shared`): what to give back, charge and spend
    /// there.
    shared: Option<Shared>,
}

/// An admission's part in the shared store.
#[derive(Debug)]
struct Shared {
    state: weir_redis::RedisState,
    key: String,
    /// Admitted by the store (its token bucket holds the estimate), not by this instance
    /// alone while the store was away (fail open).
    counted: bool,
    /// The in-flight lease, when `max_concurrent` is set and the store admitted it (one
    /// admitted while the store was away took none, so gives none back).
    lease: Option<String>,
}

impl Admission {
    /// Charges what the upstream reported (input + output); the estimate taken before the
    /// call is given back. Only the first charge counts.
    pub fn charge(&self, used: u64) {
        if self.charged.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(s) = self.shared.as_ref().filter(|s| s.counted) {
            if let Some(tpm) = self.limiter.cfg.tpm {
                s.state
                    .charge(&s.key, tpm, self.estimate as f64 - used as f64);
            }
            return;
        }
        if self.limiter.cfg.tpm.is_some() {
            let mut b = lock(&self.limiter.state.buckets);
            b.tokens += self.estimate as f64 - used as f64;
        }
    }
}

impl Admission {
    /// Whether the key has a daily budget.
    pub fn has_budget(&self) -> bool {
        self.limiter.has_budget()
    }

    /// Adds what the request cost to the key's spend of the day.
    pub fn spend(&self, usd: f64) {
        if usd > 0.0 {
            let now = unix_now();
            // Kept locally too, so a store that goes away leaves this instance's count.
            self.limiter.add_spend(usd, now);
            // Also when admitted while the store was away: it holds the spend until it
            // answers again, so the shared budget counts it.
            if let Some(s) = &self.shared {
                s.state.spend(&s.key, now / 86_400, usd);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.holds_slot {
            self.limiter.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(Shared {
            state,
            key,
            lease: Some(lease),
            ..
        }) = &self.shared
        {
            state.release(key, lease);
        }
    }
}

impl Limiter {
    /// A limiter for `cfg`.
    pub fn new(cfg: LimitConfig) -> Arc<Limiter> {
        Arc::new(Limiter {
            state: Arc::new(Counters {
                buckets: Mutex::new(Buckets {
                    tat: None,
                    tokens: cfg.tpm.unwrap_or(0) as f64,
                    tokens_at: Instant::now(),
                    sized_for: (cfg.tpm, cfg.rpm),
                }),
                in_flight: AtomicU32::new(0),
                spend: Mutex::new(Spend::default()),
            }),
            cfg,
        })
    }

    /// A limiter for `cfg` that goes on from `old`'s counters (a reload that changed the
    /// key's limits): today's spend, requests in flight, the request rate and the tokens
    /// used this minute count against the new limits, so changing a limit never gives
    /// back room already used.
    pub fn carrying_over(cfg: LimitConfig, old: &Limiter) -> Arc<Limiter> {
        {
            let mut b = lock(&old.state.buckets);
            let (tpm_was, rpm_was) = b.sized_for;
            if tpm_was != cfg.tpm {
                match (tpm_was, cfg.tpm) {
                    // Tokens used this minute stay used; the bucket is the new size. But
                    // they are not remembered longer than the old size would have taken
                    // to refill them (at most a minute), or lowering a limit would shut
                    // the key out for minutes.
                    (Some(before), Some(after)) => {
                        let now = Instant::now();
                        let per_sec = before as f64 / 60.0;
                        let elapsed = now.saturating_duration_since(b.tokens_at).as_secs_f64();
                        let tokens = (b.tokens + elapsed * per_sec).min(before as f64);
                        let used = before as f64 - tokens;
                        let floor = -used * after as f64 / before.max(1) as f64;
                        b.tokens = (tokens - before as f64 + after as f64)
                            .max(floor)
                            .min(after as f64);
                        b.tokens_at = now;
                    }
                    // Nothing was counted before: a full bucket.
                    (None, Some(after)) => {
                        b.tokens = after as f64;
                        b.tokens_at = Instant::now();
                    }
                    (_, None) => {}
                }
            }
            if rpm_was != cfg.rpm {
                match (rpm_was, cfg.rpm, b.tat) {
                    // GCRA's debt (`tat` ahead of now) is the requests used this minute
                    // times the old interval: the same requests at the new interval, but
                    // not remembered longer than at the old one (at most a minute: the
                    // wait past the new burst is at most the old debt).
                    (Some(before), Some(after), Some(tat)) => {
                        let now = Instant::now();
                        if let Some(ahead) = tat.checked_duration_since(now) {
                            let t = Duration::from_secs_f64(60.0 / after.max(1) as f64);
                            let tau = t.saturating_mul(
                                u32::try_from(after.max(1) - 1).unwrap_or(u32::MAX),
                            );
                            let scaled = ahead.mul_f64(before as f64 / after.max(1) as f64);
                            b.tat = Some(now + scaled.min(ahead + tau));
                        }
                    }
                    // Nothing was counted before: a fresh rate.
                    (None, Some(_), _) => b.tat = None,
                    _ => {}
                }
            }
            b.sized_for = (cfg.tpm, cfg.rpm);
        }
        Arc::new(Limiter {
            cfg,
            state: old.state.clone(),
        })
    }

    /// USD spent today (UTC).
    pub fn spent_today(&self) -> f64 {
        let s = lock(&self.state.spend);
        if s.day == unix_now() / 86_400 {
            s.usd
        } else {
            0.0
        }
    }

    /// Whether the key has a daily budget.
    pub fn has_budget(&self) -> bool {
        self.cfg.daily_budget_usd.is_some()
    }

    /// Counts at least `usd` as spent today: what the ledger says was spent today, after a
    /// restart or when a reload gives the key a budget (the ledger holds what this
    /// process counted itself, so it is raised to that, not added to).
    pub fn restore_spend(&self, usd: f64) {
        let mut s = lock(&self.state.spend);
        let day = unix_now() / 86_400;
        if s.day != day {
            *s = Spend { day, usd: 0.0 };
        }
        s.usd = s.usd.max(usd);
    }

    fn add_spend(&self, usd: f64, now_secs: u64) {
        let mut s = lock(&self.state.spend);
        let day = now_secs / 86_400;
        if s.day != day {
            *s = Spend { day, usd: 0.0 };
        }
        s.usd += usd;
    }

    /// Refuses when today's budget is spent (a request may end above it; the next one
    /// waits for midnight UTC).
    fn check_budget(&self, now_secs: u64) -> Result<(), Refusal> {
        let Some(budget) = self.cfg.daily_budget_usd else {
            return Ok(());
        };
        let s = *lock(&self.state.spend);
        let day = now_secs / 86_400;
        if s.day == day && s.usd >= budget {
            return Err(Refusal::budget(budget, s.usd, now_secs));
        }
        Ok(())
    }

    /// The limits it enforces.
    pub fn config(&self) -> LimitConfig {
        self.cfg
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// Admits a request whose input is estimated at `estimate` tokens, or says why not.
    pub fn admit(self: &Arc<Self>, estimate: u64, now: Instant) -> Result<Admission, Refusal> {
        let cfg = self.cfg;
        self.check_budget(unix_now())?;
        // Requests in flight are counted whatever the limits, so a reload that adds
        // `max_concurrent` counts those already running.
        let prev = self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(max) = cfg.max_concurrent {
            if u64::from(prev) >= max {
                self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::concurrent(max, u64::from(prev)));
            }
        }
        let release = || {
            self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        };
        let mut b = lock(&self.state.buckets);
        // Tokens per minute: refill, then refuse while the bucket is empty.
        if let Some(tpm) = cfg.tpm {
            let per_sec = tpm as f64 / 60.0;
            let elapsed = now.saturating_duration_since(b.tokens_at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_sec).min(tpm as f64);
            b.tokens_at = now;
            if b.tokens <= 0.0 {
                let wait = Duration::from_secs_f64((1.0 - b.tokens) / per_sec);
                drop(b);
                release();
                return Err(Refusal::tpm(tpm, wait));
            }
        }
        // Requests per minute: GCRA with a burst of the whole minute's allowance.
        if let Some(rpm) = cfg.rpm {
            let t = Duration::from_secs_f64(60.0 / rpm.max(1) as f64);
            let tau = t.saturating_mul(u32::try_from(rpm.max(1) - 1).unwrap_or(u32::MAX));
            let tat = b.tat.unwrap_or(now).max(now);
            let allowed_at = tat.checked_sub(tau).unwrap_or(now);
            if allowed_at > now {
                let wait = allowed_at - now;
                drop(b);
                release();
                return Err(Refusal::rpm(rpm, wait));
            }
            b.tat = Some(tat + t);
        }
        if cfg.tpm.is_some() {
            b.tokens -= estimate as f64;
        }
        Ok(Admission {
            limiter: self.clone(),
            estimate,
            holds_slot: true,
            charged: std::sync::atomic::AtomicBool::new(false),
            shared: None,
        })
    }

    /// Admits a request against the limits counted by every instance sharing `state`
    /// (`key` is the client key's name). While the store is away: this instance's own
    /// count when it fails open, else a 503 refusal.
    pub async fn admit_shared(
        self: &Arc<Self>,
        state: &weir_redis::RedisState,
        key: &str,
        estimate: u64,
        lease_ttl: Duration,
    ) -> Result<Admission, Refusal> {
        let cfg = self.cfg;
        let limits = weir_redis::Limits {
            rpm: cfg.rpm,
            tpm: cfg.tpm,
            max_concurrent: cfg.max_concurrent,
            daily_budget_usd: cfg.daily_budget_usd,
        };
        let lease = cfg
            .max_concurrent
            .map(|_| format!("{:016x}", rand::random::<u64>()));
        let now = unix_now();
        // What this instance spent today is a floor of what all did: it refuses on its own
        // (the store may have lost its count, or not have this instance's yet).
        self.check_budget(now)?;
        let verdict = state
            .admit(
                key,
                &limits,
                estimate,
                lease.as_deref().unwrap_or(""),
                lease_ttl,
                now / 86_400,
            )
            .await;
        match verdict {
            Ok(weir_redis::Verdict::Admitted) => Ok(Admission {
                limiter: self.clone(),
                estimate,
                holds_slot: false,
                charged: std::sync::atomic::AtomicBool::new(false),
                shared: Some(Shared {
                    state: state.clone(),
                    key: key.to_owned(),
                    counted: true,
                    lease,
                }),
            }),
            Ok(weir_redis::Verdict::Refused {
                limit,
                retry_after,
                detail,
            }) => Err(match limit {
                "budget" => Refusal::budget(cfg.daily_budget_usd.unwrap_or(0.0), detail, now),
                "max_concurrent" => Refusal::concurrent(
                    cfg.max_concurrent.unwrap_or(0),
                    detail.max(0.0) as u64,
                ),
                "tpm" => Refusal::tpm(cfg.tpm.unwrap_or(0), retry_after),
                _ => Refusal::rpm(cfg.rpm.unwrap_or(0), retry_after),
            }),
            Err(weir_redis::Unavailable) if state.fail_open() => {
                // Counted here alone; its spend still goes to the store (held there until
                // Redis answers). It holds no shared lease (the store gives back the one a
                // timed-out admission may have taken).
                let mut admission = self.admit(estimate, Instant::now())?;
                admission.shared = Some(Shared {
                    state: state.clone(),
                    key: key.to_owned(),
                    counted: false,
                    lease: None,
                });
                Ok(admission)
            }
            Err(weir_redis::Unavailable) => Err(Refusal {
                limit: "state_unavailable",
                message: "this key's limits are shared by the gateway's instances and their store does not answer; retry shortly".into(),
                retry_after: Duration::from_secs(1),
                unavailable: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn rpm_allows_the_minute_at_once_then_one_per_interval() {
        let l = Limiter::new(LimitConfig {
            rpm: Some(3),
            ..Default::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            l.admit(0, t0).unwrap();
        }
        let r = l.admit(0, t0).unwrap_err();
        assert_eq!(r.limit, "rpm");
        assert!(
            r.retry_after > Duration::from_secs(19) && r.retry_after <= Duration::from_secs(20)
        );
        assert!(l.admit(0, at(t0, 19_000)).is_err());
        assert!(l.admit(0, at(t0, 20_001)).is_ok());
        assert!(l.admit(0, at(t0, 20_002)).is_err());
    }

    #[test]
    fn max_concurrent_holds_a_slot_until_the_admission_is_dropped() {
        let l = Limiter::new(LimitConfig {
            max_concurrent: Some(2),
            ..Default::default()
        });
        let now = Instant::now();
        let a = l.admit(0, now).unwrap();
        let b = l.admit(0, now).unwrap();
        assert_eq!(l.admit(0, now).unwrap_err().limit, "max_concurrent");
        drop(a);
        let c = l.admit(0, now).unwrap();
        assert_eq!(l.in_flight(), 2);
        drop((b, c));
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn a_reload_adding_max_concurrent_counts_the_requests_already_in_flight() {
        let old = Limiter::new(LimitConfig {
            tpm: Some(1_000_000),
            ..Default::default()
        });
        let now = Instant::now();
        let running = [old.admit(1, now).unwrap(), old.admit(1, now).unwrap()];
        let new = Limiter::carrying_over(
            LimitConfig {
                tpm: Some(1_000_000),
                max_concurrent: Some(2),
                ..Default::default()
            },
            &old,
        );
        let refused = new.admit(1, now).unwrap_err();
        assert_eq!(refused.limit, "max_concurrent");
        drop(running);
        assert!(new.admit(1, now).is_ok());
    }

    #[test]
    fn new_limits_go_on_from_the_old_counters() {
        let old = Limiter::new(LimitConfig {
            rpm: Some(3),
            tpm: Some(1000),
            max_concurrent: Some(5),
            daily_budget_usd: Some(0.001),
        });
        let now = Instant::now();
        let held = old.admit(600, now).unwrap();
        old.admit(0, now).unwrap();
        old.admit(0, now).unwrap();
        held.spend(0.001);
        // Every limit changed, the budget lowered: nothing used is given back.
        let new = Limiter::carrying_over(
            LimitConfig {
                rpm: Some(4),
                tpm: Some(500),
                max_concurrent: Some(1),
                daily_budget_usd: Some(0.0005),
            },
            &old,
        );
        assert_eq!(new.admit(0, now).unwrap_err().limit, "budget");
        let raised = Limiter::carrying_over(
            LimitConfig {
                rpm: Some(4),
                tpm: Some(500),
                max_concurrent: Some(1),
                daily_budget_usd: Some(1.0),
            },
            &new,
        );
        // The request admitted before the reload still holds its slot...
        assert_eq!(raised.in_flight(), 1);
        assert_eq!(raised.admit(0, now).unwrap_err().limit, "max_concurrent");
        // ...and gives it back to the new limiter when it ends.
        drop(held);
        assert_eq!(raised.in_flight(), 0);
        // Every runtime's rebuild adopts the same counters: the figures are rescaled once.
        let again = Limiter::carrying_over(raised.config(), &new);
        drop(again);
        // 600 tokens were used this minute, over the new 500.
        assert_eq!(raised.admit(0, now).unwrap_err().limit, "tpm");
        let tokens = lock(&raised.state.buckets).tokens;
        assert!((-110.0..-90.0).contains(&tokens), "{tokens}");
        assert!(lock(&raised.state.buckets).tokens < 0.0);
        // 3 requests this minute: at 4 a minute one more may go at once; then the next
        // is 15 s away, and by then the tokens have refilled past zero.
        let tpm_only = Limiter::carrying_over(
            LimitConfig {
                rpm: Some(4),
                ..Default::default()
            },
            &raised,
        );
        // (3 of 4 used: one more, then no more.)
        assert!(tpm_only.admit(0, at(now, 1)).is_ok());
        assert_eq!(tpm_only.admit(0, at(now, 2)).unwrap_err().limit, "rpm");
        assert!(raised.admit(0, at(now, 15_001)).is_ok());
    }

    /// A lowered rate counts what was used at the new rate, but not for longer than the
    /// old rate would have (a minute at most): 30 requests at 60 a minute, lowered to 6,
    /// shut the key out for four minutes.
    #[test]
    fn a_lowered_rate_remembers_what_was_used_no_longer_than_the_old_one() {
        let old = Limiter::new(LimitConfig {
            rpm: Some(60),
            ..Default::default()
        });
        let now = Instant::now();
        for _ in 0..30 {
            old.admit(0, now).unwrap();
        }
        let new = Limiter::carrying_over(
            LimitConfig {
                rpm: Some(6),
                ..Default::default()
            },
            &old,
        );
        let refused = new.admit(0, at(now, 1_000)).unwrap_err();
        assert_eq!(refused.limit, "rpm");
        assert!(
            refused.retry_after <= Duration::from_secs(30),
            "{:?}",
            refused.retry_after
        );
        assert!(new.admit(0, at(now, 31_000)).is_ok());

        let old = Limiter::new(LimitConfig {
            tpm: Some(1000),
            ..Default::default()
        });
        old.admit(498, now).unwrap();
        let new = Limiter::carrying_over(
            LimitConfig {
                tpm: Some(200),
                ..Default::default()
            },
            &old,
        );
        let refused = new.admit(0, at(now, 1_000)).unwrap_err();
        assert_eq!(refused.limit, "tpm");
        assert!(
            refused.retry_after <= Duration::from_secs(31),
            "{:?}",
            refused.retry_after
        );
        assert!(new.admit(0, at(now, 32_000)).is_ok());
    }

    #[tokio::test]
    async fn a_shared_budget_refuses_once_this_instance_alone_spent_it() {
        let Some(url) = std::env::var("WEIR_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("skipped: WEIR_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
            return;
        };
        // A store that lost its count (restarted empty, or missed this instance's spend).
        let state = weir_redis::RedisState::connect(
            weir_redis::Options {
                url: weir_model::Secret::new(url),
                prefix: format!("weir-test-floor-{:08x}", rand::random::<u32>()),
                fail_open: true,
                timeout: Duration::from_millis(500),
            },
            None,
        )
        .await
        .unwrap();
        let l = Limiter::new(LimitConfig {
            daily_budget_usd: Some(1.0),
            ..Default::default()
        });
        let first = l
            .admit_shared(&state, "floor", 0, Duration::from_secs(60))
            .await
            .unwrap();
        // Spent here; the store is not told (as if it had lost it).
        l.add_spend(1.5, unix_now());
        drop(first);
        let r = l
            .admit_shared(&state, "floor", 0, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(r.limit, "budget");
    }

    use weir_testkit::redis::Throwaway;

    #[tokio::test]
    async fn spend_of_a_request_admitted_while_redis_is_away_is_written_when_it_answers() {
        let Some(redis) = Throwaway::start().await else {
            return;
        };
        let connect = || {
            weir_redis::RedisState::connect(
                weir_redis::Options {
                    url: weir_model::Secret::new(redis.url.clone()),
                    prefix: format!("weir-test-outage-{:08x}", rand::random::<u32>()),
                    fail_open: true,
                    timeout: Duration::from_millis(250),
                },
                None,
            )
        };
        let state = connect().await.unwrap();
        let l = Limiter::new(LimitConfig {
            daily_budget_usd: Some(1.0),
            max_concurrent: Some(1),
            ..Default::default()
        });
        redis.stall();
        // Redis does not answer: admitted on this instance's count alone (fail open).
        let a = l
            .admit_shared(&state, "outage", 0, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!state.is_up());
        a.spend(0.25);
        a.charge(100);
        drop(a);
        // A request admitted while Redis is known down (no call at all) spends too.
        let b = l
            .admit_shared(&state, "outage", 0, Duration::from_secs(60))
            .await
            .unwrap();
        b.spend(0.5);
        drop(b);
        redis.resume();
        // Once Redis answers, the shared budget counts what was spent meanwhile.
        let day = unix_now() / 86_400;
        let mut spent = 0.0;
        for _ in 0..100 {
            if state.is_up() {
                spent = state.spent("outage", day).await.unwrap_or(0.0);
                if spent > 0.0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            (spent - 0.75).abs() < 1e-9,
            "spent while Redis was away: {spent}"
        );
        // The key's only slot is free: a fail-open admission gave back no shared lease,
        // and the one its timed-out call may have taken was given back.
        assert!(l
            .admit_shared(&state, "outage", 0, Duration::from_secs(60))
            .await
            .is_ok());
    }

    #[test]
    fn dollars_below_a_cent_are_not_rounded_to_zero() {
        assert_eq!(super::usd(1.2), "$1.20");
        assert_eq!(super::usd(0.0), "$0.00");
        assert_eq!(super::usd(0.01), "$0.01");
        assert_eq!(super::usd(0.000001), "$0.000001");
        assert_eq!(super::usd(0.0025), "$0.0025");
        assert_eq!(super::usd(0.0000001), "$1.00e-7");
    }

    #[test]
    fn a_spent_budget_refuses_until_midnight_utc_and_a_new_day_starts_afresh() {
        let l = Limiter::new(LimitConfig {
            daily_budget_usd: Some(1.0),
            ..Default::default()
        });
        let noon = 20_000 * 86_400 + 12 * 3600;
        l.add_spend(0.6, noon);
        assert!(l.check_budget(noon).is_ok());
        l.add_spend(0.6, noon);
        let r = l.check_budget(noon).unwrap_err();
        assert_eq!(r.limit, "budget");
        assert_eq!(r.retry_after, Duration::from_secs(12 * 3600));
        assert!(
            r.message
                .contains("daily budget of $1.00 is spent ($1.20 today)"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("resets at 00:00 UTC, in 12h00m"),
            "{}",
            r.message
        );
        assert!(l.check_budget(noon + 12 * 3600).is_ok());
    }

    #[test]
    fn tpm_checks_the_estimate_and_charges_real_usage() {
        let l = Limiter::new(LimitConfig {
            tpm: Some(600),
            ..Default::default()
        });
        let t0 = Instant::now();
        let a = l.admit(100, t0).unwrap();
        // The request really used 700 tokens: the bucket is in debt.
        a.charge(700);
        let r = l.admit(10, t0).unwrap_err();
        assert_eq!(r.limit, "tpm");
        // 100 tokens of debt refill at 10 per second.
        assert!(r.retry_after > Duration::from_secs(10) && r.retry_after < Duration::from_secs(11));
        assert!(l.admit(10, at(t0, 11_000)).is_ok());
        // A refused request does not hold a slot: only `a`, still running, does.
        assert_eq!(l.in_flight(), 1);
        drop(a);
        assert_eq!(l.in_flight(), 0);
    }
}
