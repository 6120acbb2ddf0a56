//! Weir's shared state in Redis (`[state] backend = "redis"`): what several gateway
//! instances must count or know together.
//!
//! - **Limits and budgets** of client keys: requests per minute (GCRA), tokens per minute
//!   (a bucket charged with the real usage after the call), requests in flight (leases
//!   that expire if an instance dies holding them) and spend per UTC day. Each admission
//!   is one Lua script, so instances never race; times come from Redis's clock, so
//!   instances' clocks need not agree.
//! - **Routing state**: a key's cooldown after a 429, a key the upstream refused, a
//!   breaker opening or closing. An instance publishes what it learns (a Lua script keeps
//!   the later of two deadlines and publishes on a channel); every instance subscribes
//!   and applies it to its router, and reads the whole table when it (re)connects or
//!   reloads. Routing decisions stay local: no request waits on Redis for them.
//!
//! When Redis does not answer (within `timeout`), the instance says so once in its log,
//! counts the error, and serves on its local state: limits are counted by this instance
//! alone (fail open), or requests of keys with limits are refused with 503 (fail closed).
//! A background check notices Redis answering again, logs it, publishes what the instance
//! learned meanwhile (routing state, the spend it counted and the in-flight slots it gave
//! back while Redis was away) and reads what the others did.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, Notify};
use weir_model::Secret;
use weir_router::{StateChange, StateHandle, StateSink};

use wire::{decode_message, encode_field, encode_message};

/// How to reach Redis and what to do without it.
#[derive(Clone, Debug)]
pub struct Options {
    /// `redis://[user:password@]host:port[/db]` or `redis+unix:///path`.
    pub url: Secret,
    /// Prefix of every key and of the channel: instances with the same prefix share.
    pub prefix: String,
    /// Without Redis, keep serving on local state (`true`), or refuse requests of keys
    /// with limits (`false`).
    pub fail_open: bool,
    /// How long one Redis call may take before Redis counts as unreachable.
    pub timeout: Duration,
}

/// Told about Redis errors and reachability (e.g. metrics).
pub trait Observe: Send + Sync {
    /// A Redis call failed; `op` names it (`admit`, `release`, `charge`, `spend`,
    /// `publish`, `resync`, `subscribe`, `ping`, `connect`, `queue`).
    fn error(&self, op: &'static str);
    /// Redis became reachable (`true`) or unreachable (`false`).
    fn reachable(&self, up: bool);
}

/// One client key's limits, as the store enforces them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight.
    pub max_concurrent: Option<u64>,
    /// USD per UTC day.
    pub daily_budget_usd: Option<f64>,
}

/// What the store says about a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Admitted: it holds a lease (when `max_concurrent` is set) and its estimate is
    /// taken from the token bucket.
    Admitted,
    /// Refused.
    Refused {
        /// `rpm`, `tpm`, `max_concurrent` or `budget`.
        limit: &'static str,
        /// When to come back.
        retry_after: Duration,
        /// The spend today (`budget`) or the requests in flight (`max_concurrent`).
        detail: f64,
    },
}

/// Redis did not answer (or is known to be down); the caller falls back per its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the shared state store (Redis) is unreachable")
    }
}

impl std::error::Error for Unavailable {}

/// Work done off the request path, in order, by one task.
enum Op {
    Release {
        key: String,
        lease: String,
    },
    Charge {
        key: String,
        tpm: u64,
        delta: f64,
    },
    Spend {
        key: String,
        day: u64,
        usd: f64,
    },
    Publish(StateChange),
    /// Leases still held, as (lease, ttl ms), of one client key: written again with a new
    /// expiry (also when an outage or a Redis restart lost them). Queued by the renewer
    /// while it holds the lease table, so a release of one of them is queued after.
    Renew {
        key: String,
        leases: Vec<(String, u64)>,
    },
    /// Redis answers again: write what was held while it was away. Queued behind whatever
    /// the writer held before, so nothing held is left behind.
    Flush,
}

/// What the writer could not write while Redis was away, written when it answers again.
#[derive(Default)]
struct Held {
    /// Spend by (client key, UTC day): a budget counts what was spent meanwhile.
    spend: std::collections::HashMap<(String, u64), HeldSpend>,
    /// In-flight leases given back, as (client key, lease): else their slots stay taken
    /// until the leases expire ([`LEASE_TTL`] after their last renewal). Releasing a
    /// lease that expired meanwhile, or that a timed-out admission never took, removes
    /// nothing.
    releases: Vec<(String, String)>,
}

/// One key's spend of one day that is not known to be written.
#[derive(Default)]
struct HeldSpend {
    /// Writes sent that got no answer, as (write number, usd), oldest first: they may have
    /// landed (a stalled Redis runs them when it resumes), so they are replayed under the
    /// same number, which Redis applies once. A new one is made only once every earlier
    /// one was written, so in practice there is at most one.
    sent: Vec<(u64, f64)>,
    /// Spend not sent yet (Redis was known to be away): written under a new number.
    unsent: f64,
}

/// What became of a spend write.
enum SpendWrite {
    Written,
    /// Not sent: Redis is known to be away.
    NotSent,
    /// Sent without an answer (or refused): it may have landed.
    InDoubt,
}

struct Scripts {
    admit: redis::Script,
    charge: redis::Script,
    spend: redis::Script,
    routing_set: redis::Script,
    routing_del: redis::Script,
    renew: redis::Script,
}

/// An in-flight lease this instance holds (by lease id in [`Inner::leases`]).
struct LiveLease {
    /// The client key it counts against.
    key: String,
    ttl_ms: u64,
    /// When it is renewed next (a third of its ttl after the last time).
    due: tokio::time::Instant,
}

/// The leases this instance holds, and when the renewer wakes next.
struct Leases {
    live: std::collections::HashMap<String, LiveLease>,
    /// `None` while the renewer waits with nothing to renew.
    wake_at: Option<tokio::time::Instant>,
}

struct Inner {
    client: redis::Client,
    opts: Options,
    /// The URL without credentials, for logs.
    shown: String,
    /// This instance, so it skips its own messages.
    origin: String,
    conn: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    ops: mpsc::Sender<Op>,
    observe: Option<Arc<dyn Observe>>,
    follow: RwLock<Option<StateHandle>>,
    resync: Notify,
    scripts: Scripts,
    /// What could not be written while Redis was away (spend, releases).
    held: std::sync::Mutex<Held>,
    /// The last spend write number taken (per instance, increasing).
    spend_writes: AtomicU64,
    /// Leases held, renewed while held: one outlives its request only by its ttl when the
    /// instance dies without giving it back.
    leases: std::sync::Mutex<Leases>,
    /// Wakes the renewer when a lease falls due before it planned to wake.
    renew: Notify,
    /// The writer is writing an operation it took from the queue.
    writing: AtomicBool,
}

/// The shared state store. Cheap to clone; every runtime of a process uses the same one.
#[derive(Clone)]
pub struct RedisState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("url", &self.inner.shown)
            .field("prefix", &self.inner.opts.prefix)
            .field("up", &self.is_up())
            .finish()
    }
}

/// Queued operations waiting for Redis; beyond this they are dropped (and counted). Also
/// the most releases held while Redis is away.
const QUEUE: usize = 10_000;
/// How long a refusal for `max_concurrent` waits at most for this instance's queued
/// writes (releases among them) before it is asked again.
const RELEASE_GRACE: Duration = Duration::from_millis(50);

/// And then for another instance's release to land (written within a millisecond or two
/// of its request's end when Redis is well).
const RELEASE_LANDING: Duration = Duration::from_millis(5);

/// How long an in-flight lease outlives an instance that died holding it (or that lost
/// Redis): a live instance renews its leases every third of this.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often an unreachable Redis is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often a reachable Redis is checked when nothing else talks to it.
const CHECK_EVERY: Duration = Duration::from_secs(2);

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Plain values (a connection handle, a router handle): valid after any panic.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `redis://user:pass@host:6379/0` as `redis://***@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Whether `url` is a Redis URL the store can use (parsed only; nothing is connected). The
/// error names the URL with its password redacted.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(drop).map_err(|e| {
        format!(
            "state.url {} is not a Redis URL: {}",
            redact_url(url),
            e.detail().unwrap_or("malformed")
        )
    })
}

impl RedisState {
    /// Starts the store's background work on the current Tokio runtime (which must outlive
    /// every use) and tries Redis once. An unreachable Redis is not an error: it is logged
    /// and retried every second. Only a malformed URL is.
    pub async fn connect(
        opts: Options,
        observe: Option<Arc<dyn Observe>>,
    ) -> Result<RedisState, String> {
        let shown = redact_url(opts.url.expose());
        let client = redis::Client::open(opts.url.expose()).map_err(|e| {
            format!(
                "state.url {shown} is not a Redis URL: {}",
                e.detail().unwrap_or("malformed")
            )
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let state = RedisState {
            inner: Arc::new(Inner {
                held: std::sync::Mutex::default(),
                spend_writes: AtomicU64::new(0),
                leases: std::sync::Mutex::new(Leases {
                    live: std::collections::HashMap::new(),
                    wake_at: None,
                }),
                renew: Notify::new(),
                writing: AtomicBool::new(false),
                client,
                shown,
                origin: format!("{:016x}", rand::random::<u64>()),
                conn: RwLock::new(None),
                up: AtomicBool::new(false),
                ops: tx,
                observe,
                follow: RwLock::new(None),
                resync: Notify::new(),
                scripts: Scripts {
                    admit: redis::Script::new(wire::ADMIT),
                    charge: redis::Script::new(wire::CHARGE),
                    spend: redis::Script::new(wire::SPEND),
                    routing_set: redis::Script::new(wire::ROUTING_SET),
                    routing_del: redis::Script::new(wire::ROUTING_DEL),
                    renew: redis::Script::new(wire::RENEW),
                },
                opts,
            }),
        };
        if let Err(why) = state.reconnect().await {
            tracing::error!(
                url = %state.inner.shown,
                "shared state: Redis does not answer ({why}); {} until it does",
                state.fallback()
            );
            if let Some(o) = &state.inner.observe {
                o.reachable(false);
            }
        } else {
            tracing::info!(url = %state.inner.shown, prefix = %state.inner.opts.prefix, "shared state in Redis");
            if let Some(o) = &state.inner.observe {
                o.reachable(true);
            }
        }
        tokio::spawn(state.clone().writer(rx));
        tokio::spawn(state.clone().monitor());
        tokio::spawn(state.clone().subscriber());
        tokio::spawn(state.clone().renewer());
        Ok(state)
    }

    /// Whether Redis answered the last call.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Whether requests are served on local state when Redis does not answer.
    pub fn fail_open(&self) -> bool {
        self.inner.opts.fail_open
    }

    /// What the gateway does without Redis, for logs.
    fn fallback(&self) -> &'static str {
        if self.inner.opts.fail_open {
            "limits and budgets are counted by this instance alone, and routing state stays local (fail_mode = \"open\")"
        } else {
            "requests of keys with limits or budgets are refused with 503 (fail_mode = \"closed\")"
        }
    }

    /// Where the router publishes what it learns.
    pub fn sink(&self) -> Arc<dyn StateSink> {
        Arc::new(Sink(self.clone()))
    }

    /// Applies other instances' routing changes to `router` from now on (replacing the
    /// router followed so far, e.g. after a reload), starting with the whole shared table.
    pub fn follow(&self, router: StateHandle) {
        *lock_write(&self.inner.follow) = Some(router);
        self.inner.resync.notify_one();
    }

    fn key(&self, client_key: &str, what: &str) -> String {
        // The hash tag keeps one client key's entries in one cluster slot.
        format!("{}:key:{{{client_key}}}:{what}", self.inner.opts.prefix)
    }

    fn routing_key(&self) -> String {
        format!("{}:routing", self.inner.opts.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:routing:changes", self.inner.opts.prefix)
    }

    /// Admits a request of `client_key` (estimated at `estimate` tokens) against its
    /// limits, counted by every instance together. `lease` names its in-flight slot
    /// (released with [`release`](Self::release)); this instance renews it every third of
    /// `lease_ttl` until then, so it expires `lease_ttl` after the instance dies or loses
    /// Redis. `day` is the UTC day (days since the epoch) the spend counts in.
    ///
    /// A refusal for `max_concurrent` is asked again once, after a moment: a request that
    /// just ended gives its slot back through the write queue (this instance's, or
    /// another's), and its client's next request, sent as soon as the answer was read,
    /// could otherwise find the slot still taken.
    pub async fn admit(
        &self,
        client_key: &str,
        limits: &Limits,
        estimate: u64,
        lease: &str,
        lease_ttl: Duration,
        day: u64,
    ) -> Result<Verdict, Unavailable> {
        let once = || self.admit_once(client_key, limits, estimate, lease, lease_ttl, day);
        let first = once().await?;
        if !matches!(
            first,
            Verdict::Refused {
                limit: "max_concurrent",
                ..
            }
        ) {
            return Ok(first);
        }
        // This instance's own releases are written first; another instance's get the
        // same moment to land.
        self.drain(RELEASE_GRACE).await;
        tokio::time::sleep(RELEASE_LANDING).await;
        once().await
    }

    async fn admit_once(
        &self,
        client_key: &str,
        limits: &Limits,
        estimate: u64,
        lease: &str,
        lease_ttl: Duration,
        day: u64,
    ) -> Result<Verdict, Unavailable> {
        let mut inv = self.inner.scripts.admit.prepare_invoke();
        inv.key(self.key(client_key, "rate"))
            .key(self.key(client_key, "leases"))
            .key(self.key(client_key, &format!("spend:{day}")))
            .arg(limits.rpm.unwrap_or(0))
            .arg(limits.tpm.unwrap_or(0))
            .arg(limits.max_concurrent.unwrap_or(0))
            .arg(limits.daily_budget_usd.map_or(-1.0, |b| b.max(0.0)))
            .arg(estimate)
            .arg(lease)
            .arg(
                u64::try_from(lease_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        // Whether the script goes to Redis (while down, no call is made).
        let sent = self.is_up();
        let answer: Result<(String, u64, String), Unavailable> = self.call("admit", &inv).await;
        let (verdict, retry_ms, detail) = match answer {
            Ok(a) => a,
            Err(Unavailable) => {
                // A call that timed out may still run when Redis answers again (a stalled
                // Redis): its lease would hold a slot until it expires. The caller holds no
                // shared lease, so give this one back (a no-op if it never landed).
                if sent && limits.max_concurrent.is_some() {
                    self.release(client_key, lease);
                }
                return Err(Unavailable);
            }
        };
        let limit = match verdict.as_str() {
            "ok" => {
                if limits.max_concurrent.is_some() {
                    self.hold_lease(client_key, lease, lease_ttl);
                }
                return Ok(Verdict::Admitted);
            }
            "rpm" => "rpm",
            "tpm" => "tpm",
            "max_concurrent" => "max_concurrent",
            "budget" => "budget",
            other => {
                tracing::error!("shared state: the admit script answered `{other}`");
                self.count("admit");
                return Err(Unavailable);
            }
        };
        Ok(Verdict::Refused {
            limit,
            retry_after: Duration::from_millis(retry_ms),
            detail: detail.parse().unwrap_or(0.0),
        })
    }

    /// Gives back a request's in-flight slot (queued; never blocks).
    pub fn release(&self, client_key: &str, lease: &str) {
        self.leases().live.remove(lease);
        self.enqueue(Op::Release {
            key: client_key.to_owned(),
            lease: lease.to_owned(),
        });
    }

    /// Adjusts the token bucket by `delta` (the estimate taken at admission minus the real
    /// usage; queued).
    pub fn charge(&self, client_key: &str, tpm: u64, delta: f64) {
        if delta != 0.0 {
            self.enqueue(Op::Charge {
                key: client_key.to_owned(),
                tpm,
                delta,
            });
        }
    }

    /// Adds `usd` to the key's spend of UTC day `day` (queued).
    pub fn spend(&self, client_key: &str, day: u64, usd: f64) {
        // (Redis cannot add an infinite figure: the write would fail for ever.)
        if usd > 0.0 && usd.is_finite() {
            self.enqueue(Op::Spend {
                key: client_key.to_owned(),
                day,
                usd,
            });
        }
    }

    /// The key's spend on UTC day `day`, all instances together.
    pub async fn spent(&self, client_key: &str, day: u64) -> Result<f64, Unavailable> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(client_key, &format!("spend:{day}")));
        let v: Option<String> = self.query("spent", &cmd).await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0.0))
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        // Plain names and times: valid after any panic.
        self.inner
            .leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hold_lease(&self, client_key: &str, lease: &str, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let due = tokio::time::Instant::now() + Duration::from_millis(ttl_ms / 3);
        let mut l = self.leases();
        l.live.insert(
            lease.to_owned(),
            LiveLease {
                key: client_key.to_owned(),
                ttl_ms,
                due,
            },
        );
        // Leases share one ttl in practice: the renewer is woken only when it was idle.
        if l.wake_at.is_none_or(|at| due < at) {
            l.wake_at = Some(due);
            drop(l);
            self.inner.renew.notify_one();
        }
    }

    /// Renews the leases this instance holds, each a third of its ttl after the last time,
    /// while Redis answers (a lease that expired meanwhile is not taken again).
    async fn renewer(self) {
        loop {
            let next = {
                let mut l = self.leases();
                let next = l.live.values().map(|x| x.due).min();
                l.wake_at = next;
                next
            };
            match next {
                None => {
                    self.inner.renew.notified().await;
                    continue;
                }
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.inner.renew.notified() => continue,
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let mut due: std::collections::HashMap<String, Vec<(String, u64)>> =
                std::collections::HashMap::new();
            let up = self.is_up();
            // Queued while the table is held: a release (which leaves the table first)
            // is queued after any renewal of its lease, so it is never written back.
            let mut table = self.leases();
            for (lease, l) in &mut table.live {
                if l.due <= now {
                    l.due = now + Duration::from_millis(l.ttl_ms / 3);
                    if up {
                        due.entry(l.key.clone())
                            .or_default()
                            .push((lease.clone(), l.ttl_ms));
                    }
                }
            }
            for (key, leases) in due {
                self.enqueue(Op::Renew { key, leases });
            }
            drop(table);
        }
    }

    /// Waits (at most `max`) until what is queued for Redis (releases of in-flight slots,
    /// spend, token charges) is written: at shutdown, so the slots of requests that just
    /// ended are not left to expire. Whether the queue emptied.
    pub async fn drain(&self, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let idle = self.inner.ops.capacity() == self.inner.ops.max_capacity()
                && !self.inner.writing.load(Ordering::Acquire);
            if idle || !self.is_up() {
                return idle;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Renews every lease held at once (Redis answers again: what it lost meanwhile, by
    /// expiry or a restart, is written back before others count without it).
    fn renew_all_now(&self) {
        let now = tokio::time::Instant::now();
        let mut l = self.leases();
        for lease in l.live.values_mut() {
            lease.due = now;
        }
        if !l.live.is_empty() {
            l.wake_at = Some(now);
            drop(l);
            self.inner.renew.notify_one();
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Plain figures and names: valid after any panic.
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hold_spend(&self, key: String, day: u64, spend: HeldSpend) {
        if spend.sent.is_empty() && spend.unsent <= 0.0 {
            return;
        }
        let mut held = self.held();
        // Bounded: one entry per client key and day (days older than yesterday are moot).
        held.spend.retain(|(_, d), _| d + 1 >= day);
        // (Only the writer holds spend, and it takes a key's entry before writing it: the
        // entry is new.)
        let entry = held.spend.entry((key, day)).or_default();
        entry.sent.extend(spend.sent);
        entry.sent.sort_by_key(|&(n, _)| n);
        entry.unsent += spend.unsent;
    }

    fn hold_release(&self, key: String, lease: String) {
        let mut held = self.held();
        // Bounded: beyond this many, the leases expire on their own (counted).
        if held.releases.len() >= QUEUE {
            drop(held);
            self.count("queue");
            return;
        }
        held.releases.push((key, lease));
    }

    /// Writes what was held while Redis was away; what fails again is held again.
    async fn flush(&self) {
        let Held { spend, releases } = std::mem::take(&mut *self.held());
        for (key, lease) in releases {
            self.write_release(key, lease).await;
        }
        for ((key, day), spend) in spend {
            self.write_held_spend(key, day, spend).await;
        }
    }

    async fn write_release(&self, key: String, lease: String) {
        if !self.is_up() {
            self.hold_release(key, lease);
            return;
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.key(&key, "leases")).arg(&lease);
        if self.query::<i64>("release", &cmd).await.is_err() {
            // (Removing a lease that is gone already, should the call have landed, is
            // harmless.)
            self.hold_release(key, lease);
        }
    }

    async fn write_spend(&self, key: String, day: u64, usd: f64) {
        // Whatever is held for this key and day goes first (a no-op lookup normally), so
        // writes land in the order of their numbers.
        let held = self.held().spend.remove(&(key.clone(), day));
        let mut spend = held.unwrap_or_default();
        spend.unsent += usd;
        self.write_held_spend(key, day, spend).await;
    }

    /// Writes a key's spend of a day: replays the writes in doubt, oldest first, then the
    /// rest under a new number (one call when nothing is in doubt); holds what is left.
    async fn write_held_spend(&self, key: String, day: u64, mut spend: HeldSpend) {
        while let Some(&(n, usd)) = spend.sent.first() {
            match self.send_spend(&key, day, n, usd).await {
                SpendWrite::Written => {
                    spend.sent.remove(0);
                }
                SpendWrite::NotSent | SpendWrite::InDoubt => {
                    self.hold_spend(key, day, spend);
                    return;
                }
            }
        }
        if spend.unsent > 0.0 {
            let n = self.inner.spend_writes.fetch_add(1, Ordering::Relaxed) + 1;
            match self.send_spend(&key, day, n, spend.unsent).await {
                SpendWrite::Written => spend.unsent = 0.0,
                SpendWrite::NotSent => {}
                SpendWrite::InDoubt => {
                    spend.sent.push((n, spend.unsent));
                    spend.unsent = 0.0;
                }
            }
        }
        self.hold_spend(key, day, spend);
    }

    async fn send_spend(&self, key: &str, day: u64, n: u64, usd: f64) -> SpendWrite {
        if !self.is_up() {
            return SpendWrite::NotSent;
        }
        let mut inv = self.inner.scripts.spend.prepare_invoke();
        inv.key(self.key(key, &format!("spend:{day}")))
            .key(self.key(key, &format!("spend:{day}:writes")))
            .arg(usd)
            .arg(&self.inner.origin)
            .arg(n);
        match self.call::<String>("spend", &inv).await {
            Ok(_) => SpendWrite::Written,
            // A call that timed out may have landed (or still land): replayed under the
            // same number, it counts once.
            Err(Unavailable) => SpendWrite::InDoubt,
        }
    }

    fn enqueue(&self, op: Op) {
        if self.inner.ops.try_send(op).is_err() {
            self.count("queue");
        }
    }

    fn count(&self, op: &'static str) {
        if let Some(o) = &self.inner.observe {
            o.error(op);
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        lock_read(&self.inner.conn).clone()
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Unavailable> {
        let Some(mut c) = self.connection() else {
            return Err(Unavailable);
        };
        let answer = tokio::time::timeout(self.inner.opts.timeout, inv.invoke_async(&mut c)).await;
        self.settle(op, answer)
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        let Some(mut c) = self.connection() else {
            return Err(Unavailable);
        };
        let answer = tokio::time::timeout(self.inner.opts.timeout, cmd.query_async(&mut c)).await;
        self.settle(op, answer)
    }

    fn settle<T>(
        &self,
        op: &'static str,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Unavailable> {
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e))
                if !(e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()) =>
            {
                // Redis answered with an error: a bug or a misconfigured server, not an
                // outage. Counted and logged; the caller falls back for this request.
                self.count(op);
                tracing::error!("shared state: Redis refused `{op}`: {e}");
                Err(Unavailable)
            }
            Ok(Err(e)) => {
                self.down(op, &e.to_string());
                Err(Unavailable)
            }
            Err(_) => {
                self.down(
                    op,
                    &format!("no answer within {:?}", self.inner.opts.timeout),
                );
                Err(Unavailable)
            }
        }
    }

    /// Redis stopped answering.
    fn down(&self, op: &'static str, why: &str) {
        self.count(op);
        if self.inner.up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                url = %self.inner.shown,
                "shared state: Redis is unreachable ({op}: {why}); {} until it answers again",
                self.fallback()
            );
            if let Some(o) = &self.inner.observe {
                o.reachable(false);
            }
        }
    }

    /// Connects (or checks the connection) and marks Redis up when it answers a PING; else
    /// says why not.
    async fn reconnect(&self) -> Result<(), String> {
        let limit = self.inner.opts.timeout.max(Duration::from_secs(1));
        let existing = lock_read(&self.inner.conn).clone();
        let conn = match existing {
            Some(c) => c,
            None => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(limit))
                    .set_response_timeout(Some(self.inner.opts.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                match tokio::time::timeout(
                    limit,
                    self.inner.client.get_connection_manager_with_config(cfg),
                )
                .await
                {
                    Ok(Ok(c)) => {
                        *lock_write(&self.inner.conn) = Some(c.clone());
                        c
                    }
                    Ok(Err(e)) => {
                        self.count("connect");
                        return Err(e.to_string());
                    }
                    Err(_) => {
                        self.count("connect");
                        return Err(format!("no connection within {limit:?}"));
                    }
                }
            }
        };
        let mut c = conn;
        let pong =
            tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut c)).await;
        match pong {
            Ok(Ok(_)) => {
                self.inner.up.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => {
                self.count("ping");
                Err(e.to_string())
            }
            Err(_) => {
                self.count("ping");
                Err(format!("no answer to PING within {limit:?}"))
            }
        }
    }

    /// Watches reachability: retries an unreachable Redis every second; when it answers
    /// again, publishes what this instance learned meanwhile and reads the rest.
    async fn monitor(self) {
        loop {
            let up = self.is_up();
            tokio::time::sleep(if up { CHECK_EVERY } else { RETRY_EVERY }).await;
            if up {
                // A quiet instance still notices an outage.
                let mut cmd = redis::cmd("PING");
                cmd.arg("weir");
                let _: Result<String, _> = self.query("ping", &cmd).await;
                continue;
            }
            if self.reconnect().await.is_ok() {
                tracing::warn!(url = %self.inner.shown, "shared state: Redis answers again; limits, budgets and routing state are shared again");
                if let Some(o) = &self.inner.observe {
                    o.reachable(true);
                }
                let follow = lock_read(&self.inner.follow).clone();
                if let Some(h) = follow {
                    for change in h.snapshot() {
                        self.enqueue(Op::Publish(change));
                    }
                }
                self.enqueue(Op::Flush);
                self.renew_all_now();
                self.inner.resync.notify_one();
            }
        }
    }

    /// Runs queued operations in order.
    async fn writer(self, mut rx: mpsc::Receiver<Op>) {
        while let Some(op) = rx.recv().await {
            self.inner.writing.store(true, Ordering::Release);
            self.write(op).await;
            self.inner.writing.store(false, Ordering::Release);
        }
    }

    async fn write(&self, op: Op) {
        // Spend and releases are held while Redis is away (or when their call fails)
        // and written when it answers again; token charges and routing changes are
        // lost for the outage (counted; the router's snapshot is published again).
        match op {
            Op::Release { key, lease } => self.write_release(key, lease).await,
            Op::Spend { key, day, usd } => self.write_spend(key, day, usd).await,
            Op::Flush => {
                if self.is_up() {
                    self.flush().await;
                }
            }
            Op::Charge { .. } | Op::Publish(_) | Op::Renew { .. } if !self.is_up() => {
                self.count("queue")
            }
            Op::Renew { key, leases } => {
                let mut inv = self.inner.scripts.renew.prepare_invoke();
                inv.key(self.key(&key, "leases"));
                for (lease, ttl_ms) in leases {
                    inv.arg(lease).arg(ttl_ms);
                }
                let _ = self.call::<i64>("renew", &inv).await;
            }
            Op::Charge { key, tpm, delta } => {
                let mut inv = self.inner.scripts.charge.prepare_invoke();
                inv.key(self.key(&key, "rate")).arg(tpm).arg(delta);
                let _ = self.call::<i64>("charge", &inv).await;
            }
            Op::Publish(change) => {
                let _ = self.publish(&change).await;
            }
        }
    }

    async fn publish(&self, change: &StateChange) -> Result<(), Unavailable> {
        let Some(message) = encode_message(&self.inner.origin, change) else {
            return Ok(());
        };
        if let StateChange::ResponseMade { .. } = change {
            // Only published: instances that are up learn it; nothing to read back later.
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(self.channel()).arg(message);
            return self.query::<i64>("publish", &cmd).await.map(drop);
        }
        let field = encode_field(change);
        match wire::until_and_value(change) {
            Some((until_ms, value)) => {
                let mut inv = self.inner.scripts.routing_set.prepare_invoke();
                inv.key(self.routing_key())
                    .arg(field)
                    .arg(until_ms)
                    .arg(value)
                    .arg(self.channel())
                    .arg(message);
                self.call::<i64>("publish", &inv).await.map(drop)
            }
            None => {
                let mut inv = self.inner.scripts.routing_del.prepare_invoke();
                inv.key(self.routing_key())
                    .arg(field)
                    .arg(self.channel())
                    .arg(message);
                self.call::<i64>("publish", &inv).await.map(drop)
            }
        }
    }

    /// Reads the whole routing table into the followed router.
    async fn resync_now(&self) {
        let follow = lock_read(&self.inner.follow).clone();
        let Some(h) = follow else { return };
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.routing_key());
        let Ok(entries) = self.query::<Vec<(String, String)>>("resync", &cmd).await else {
            return;
        };
        let now = weir_router::unix_ms();
        for (field, value) in entries {
            if let Some(change) = wire::decode_entry(&field, &value) {
                if wire::until_of(&change).is_none_or(|u| u > now) {
                    h.apply(&change);
                }
            }
        }
    }

    /// Subscribes to other instances' changes; resubscribes (and reads the table again)
    /// after any disconnection.
    async fn subscriber(self) {
        let channel = self.channel();
        let limit = self.inner.opts.timeout.max(Duration::from_secs(1));
        loop {
            let connected = tokio::time::timeout(limit, self.inner.client.get_async_pubsub()).await;
            if let Ok(Ok(mut ps)) = connected {
                if ps.subscribe(&channel).await.is_ok() {
                    self.resync_now().await;
                    let mut messages = ps.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => {
                                let Some(m) = m else { break };
                                let Ok(text) = std::str::from_utf8(m.get_payload_bytes()) else { continue };
                                if let Some((origin, change)) = decode_message(text) {
                                    if origin != self.inner.origin {
                                        let follow = lock_read(&self.inner.follow).clone();
                                        if let Some(h) = follow {
                                            h.apply(&change);
                                        }
                                    }
                                }
                            }
                            () = self.inner.resync.notified() => self.resync_now().await,
                        }
                    }
                    self.count("subscribe");
                }
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}

/// The router's sink: queues each change for the writer.
struct Sink(RedisState);

impl StateSink for Sink {
    fn publish(&self, change: StateChange) {
        self.0.enqueue(Op::Publish(change));
    }
}
