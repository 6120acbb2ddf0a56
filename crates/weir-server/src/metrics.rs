//! Prometheus metrics: requests, latency, upstream latency, time to first token, tokens and
//! active streams, labelled by client key name, model, provider and status.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Client key name (`-` when unauthenticated).
    pub key: String,
    /// Requested model.
    pub model: String,
    /// Provider that served it (`-` when none did).
    pub provider: String,
    /// HTTP status.
    pub status: String,
}

/// Labels of latency figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Requested model.
    pub model: String,
    /// Provider.
    pub provider: String,
}

/// Labels of a request's latencies and of streams being written.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeriesLabels {
    /// Client key name.
    pub key: String,
    /// Requested model.
    pub model: String,
    /// Provider.
    pub provider: String,
}

/// Labels of token counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Client key name.
    pub key: String,
    /// Requested model.
    pub model: String,
    /// Provider.
    pub provider: String,
    /// `input` or `output`.
    pub direction: String,
}

/// Labels of routing events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider.
    pub provider: String,
}

/// Labels of a breaker transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// Provider.
    pub provider: String,
    /// Upstream model.
    pub model: String,
    /// New state: closed, open, half_open.
    pub to: String,
}

/// Labels of a key event (the key's position, never the key).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    /// Provider.
    pub provider: String,
    /// `key-1`, `key-2`, ...
    pub key: String,
}

/// At most this many distinct model names become label values; requests for any other
/// are counted under `other`. Model names come from clients (a glob route forwards any
/// name), and every label value costs series in each family for as long as the process
/// runs.
pub const MAX_MODEL_LABELS: usize = 500;

/// `weir_stream_errors_total`'s reasons.
const STREAM_ERROR_REASONS: &[&str] = &[
    "upstream",
    "timeout",
    "translation",
    "client_disconnected",
    "shutdown",
];

/// `weir_limit_rejections_total`'s limits.
const LIMITS: &[&str] = &[
    "rpm",
    "tpm",
    "max_concurrent",
    "budget",
    "state_unavailable",
];

fn latency_histogram() -> Histogram {
    // 1 ms to about 17 minutes: past the default `total` timeout (10 minutes), so a long
    // stream or a slow first token still lands in a bucket of its own, not only `+Inf`.
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

/// The model names in use as label values: the config's own (`named`: exact routes,
/// targets' upstream models), and at most [`MAX_MODEL_LABELS`] others (`others` of them),
/// which clients choose through glob routes.
#[derive(Default)]
struct ModelLabels {
    in_use: std::collections::HashSet<Box<str>>,
    named: std::collections::HashSet<Box<str>>,
    others: usize,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// Handles of each (key, model, provider) already seen, so a request's figures cost
    /// no label allocation or family lookup.
    series: std::sync::RwLock<std::collections::HashMap<String, Arc<Series>>>,
    /// The model names used as label values so far.
    model_labels: std::sync::RwLock<ModelLabels>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<SeriesLabels, Histogram, fn() -> Histogram>,
    upstream_latency: Family<SeriesLabels, Histogram, fn() -> Histogram>,
    ttft: Family<SeriesLabels, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    active_streams: Family<SeriesLabels, Gauge<i64, AtomicI64>>,
    failovers: Family<ProviderLabels, Counter>,
    retries: Family<RouteModel, Counter>,
    breaker_transitions: Family<BreakerLabels, Counter>,
    past_open_breaker: Family<RouteLabels, Counter>,
    output_refusals: Family<RouteLabels, Counter>,
    cooldowns: Family<KeyLabels, Counter>,
    keys_refused: Family<KeyLabels, Counter>,
    limit_rejections: Family<LimitLabels, Counter>,
    stream_errors: Family<StreamErrorLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    breaker_state: Family<RouteLabels, Gauge<i64, AtomicI64>>,
    ledger_dropped: Gauge<i64, AtomicI64>,
    ledger_written: Gauge<i64, AtomicI64>,
    redis_errors: Family<RedisOp, Counter>,
    redis_up: Gauge<i64, AtomicI64>,
}

/// Labels of a failed Redis call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisOp {
    /// What the call was for (`admit`, `publish`, `queue`, ...).
    pub op: String,
}

/// Labels of spend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    /// Client key name.
    pub key: String,
    /// Requested model.
    pub model: String,
    /// Provider.
    pub provider: String,
}

/// Labels of a request refused by a client key's limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Client key name.
    pub key: String,
    /// `rpm`, `tpm` or `max_concurrent`.
    pub limit: String,
}

/// Labels of a stream that ended badly after its 200.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamErrorLabels {
    /// Client key name.
    pub key: String,
    /// Requested model.
    pub model: String,
    /// Provider.
    pub provider: String,
    /// `upstream` (it failed or was cut short), `timeout`, `translation`,
    /// `client_disconnected` or `shutdown` (still running when the shutdown grace period
    /// was over).
    pub reason: String,
}

/// Labels carrying only the requested model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteModel {
    /// Requested model.
    pub model: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    /// Metrics for a gateway with shared state in memory (no Redis series).
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// The registry; with `redis`, the shared store's series (`weir_redis_up`,
    /// `weir_redis_errors_total`) too, which a gateway without Redis does not export (a
    /// `weir_redis_up 0` there would look like an outage).
    pub fn new(redis: bool) -> Self {
        let mut registry = Registry::with_prefix("weir");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<SeriesLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let upstream_latency =
            Family::<SeriesLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let ttft = Family::<SeriesLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        let active_streams = Family::<SeriesLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "requests",
            "Requests answered, by client key, model, provider and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Total request latency, by client key, model and provider",
            latency.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time until the upstream's answer (its first content for streams)",
            upstream_latency.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time until a stream's first content, by client key, model and provider",
            ttft.clone(),
        );
        registry.register("tokens", "Tokens reported by upstreams", tokens.clone());
        registry.register(
            "active_streams",
            "Streams being written, by client key, model and provider",
            active_streams.clone(),
        );
        let failovers = Family::<ProviderLabels, Counter>::default();
        let retries = Family::<RouteModel, Counter>::default();
        let breaker_transitions = Family::<BreakerLabels, Counter>::default();
        let past_open_breaker = Family::<RouteLabels, Counter>::default();
        let output_refusals = Family::<RouteLabels, Counter>::default();
        let cooldowns = Family::<KeyLabels, Counter>::default();
        let keys_refused = Family::<KeyLabels, Counter>::default();
        let limit_rejections = Family::<LimitLabels, Counter>::default();
        let cost = Family::<CostLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        let breaker_state = Family::<RouteLabels, Gauge<i64, AtomicI64>>::default();
        let ledger_dropped = Gauge::<i64, AtomicI64>::default();
        let ledger_written = Gauge::<i64, AtomicI64>::default();
        let redis_errors = Family::<RedisOp, Counter>::default();
        let redis_up = Gauge::<i64, AtomicI64>::default();
        if redis {
            registry.register(
                "redis_errors",
                "Failed calls to the shared state store (Redis) by operation; `queue` counts work dropped while it was away",
                redis_errors.clone(),
            );
            registry.register(
                "redis_up",
                "Whether the shared state store (Redis) answers: 1 yes, 0 no",
                redis_up.clone(),
            );
        }
        registry.register(
            "ledger_dropped_rows",
            "Ledger rows dropped (queue full or a failed insert) since start",
            ledger_dropped.clone(),
        );
        registry.register(
            "ledger_written_rows",
            "Ledger rows written since start",
            ledger_written.clone(),
        );
        registry.register(
            "breaker_state",
            "Circuit breaker state by target (upstream model): 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        registry.register(
            "cost_usd",
            "Spend in USD from [pricing] (or the bundled prices), by key, model and provider",
            cost.clone(),
        );
        registry.register(
            "limit_rejections",
            "Requests refused by a client key's limit (429), by key and limit",
            limit_rejections.clone(),
        );
        let stream_errors = Family::<StreamErrorLabels, Counter>::default();
        registry.register(
            "stream_errors",
            "Streams that ended badly after their 200 (counted as 200 in weir_requests_total), by reason",
            stream_errors.clone(),
        );
        registry.register(
            "failovers",
            "Requests that moved on from a target (by the provider left behind)",
            failovers.clone(),
        );
        registry.register(
            "retries",
            "Extra walks over a model's targets after all failed",
            retries.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Circuit breaker state changes, by target and new state",
            breaker_transitions.clone(),
        );
        registry.register(
            "breaker_last_resorts",
            "Requests sent to a target past its open breaker, the route having no other target to ask",
            past_open_breaker.clone(),
        );
        registry.register(
            "output_limit_refusals",
            "Requests whose output limit the upstream refused naming the most it takes, asked again with that",
            output_refusals.clone(),
        );
        registry.register(
            "key_cooldowns",
            "Keys put to rest (429, or rate-limit headers at zero)",
            cooldowns.clone(),
        );
        registry.register(
            "keys_refused",
            "Keys the upstream refused (401, or Bedrock's credential errors), taken out of the pool",
            keys_refused.clone(),
        );
        Metrics {
            series: std::sync::RwLock::new(std::collections::HashMap::new()),
            model_labels: std::sync::RwLock::default(),
            failovers,
            retries,
            breaker_transitions,
            past_open_breaker,
            output_refusals,
            cooldowns,
            keys_refused,
            limit_rejections,
            stream_errors,
            cost,
            breaker_state,
            ledger_dropped,
            ledger_written,
            redis_errors,
            redis_up,
            registry,
            requests,
            latency,
            upstream_latency,
            ttft,
            tokens,
            active_streams,
        }
    }
}

/// The metric handles of one (key, model, provider).
struct Series {
    labels: SeriesLabels,
    latency: Histogram,
    active: std::sync::OnceLock<Gauge<i64, AtomicI64>>,
    ttft: std::sync::OnceLock<Histogram>,
    upstream: std::sync::OnceLock<Histogram>,
    input: std::sync::OnceLock<Counter>,
    output: std::sync::OnceLock<Counter>,
    /// Request counters by status.
    by_status: std::sync::Mutex<Vec<(u16, Counter)>>,
}

impl Series {
    fn requests(&self, m: &Metrics, o: &Observation<'_>) -> Counter {
        let mut by = self
            .by_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = by.iter().find(|(s, _)| *s == o.status) {
            return c.clone();
        }
        let c = m
            .requests
            .get_or_create(&RequestLabels {
                key: o.key.to_owned(),
                model: self.labels.model.clone(),
                provider: o.provider.to_owned(),
                status: o.status.to_string(),
            })
            .clone();
        by.push((o.status, c.clone()));
        c
    }
}

/// The metric handles of one (client key, model, provider), as [`Metrics::upstream`] found
/// them: a request's own observation reuses them instead of looking them up again.
#[derive(Clone)]
pub struct SeriesHandle(Arc<Series>);

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesHandle")
    }
}

/// One finished request, as the log line and the metrics see it.
pub struct Observation<'a> {
    /// Its series' handles, when the request was served (same key, model and provider).
    pub series: Option<&'a SeriesHandle>,
    /// Client key name.
    pub key: &'a str,
    /// Requested model.
    pub model: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// HTTP status.
    pub status: u16,
    /// Total latency.
    pub latency: Duration,
    /// Time to a stream's first content.
    pub ttft: Option<Duration>,
    /// Input tokens (all, cache included).
    pub input: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
}

impl Metrics {
    /// Records a finished request.
    pub fn observe(&self, o: &Observation<'_>) {
        // A model no route serves (404) or the key may not use (403), never sent anywhere:
        // the client's name is not a label value.
        let model = if o.provider == "-" && matches!(o.status, 403 | 404) {
            "-"
        } else {
            o.model
        };
        let series = match o.series {
            Some(h) => h.0.clone(),
            None => self.series(o.key, model, o.provider),
        };
        series.requests(self, o).inc();
        series.latency.observe(o.latency.as_secs_f64());
        if let Some(t) = o.ttft {
            series
                .ttft
                .get_or_init(|| self.ttft.get_or_create(&series.labels).clone())
                .observe(t.as_secs_f64());
        }
        for (direction, n, cell) in [
            ("input", o.input, &series.input),
            ("output", o.output, &series.output),
        ] {
            if let Some(n) = n.filter(|n| *n > 0) {
                cell.get_or_init(|| {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            key: o.key.to_owned(),
                            model: series.labels.model.clone(),
                            provider: o.provider.to_owned(),
                            direction: direction.to_owned(),
                        })
                        .clone()
                })
                .inc_by(n);
            }
        }
    }

    /// The handles of (key, model, provider), made on first use.
    fn series(&self, key: &str, model: &str, provider: &str) -> Arc<Series> {
        let model = self.model_label(model);
        thread_local! {
            static NAME: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        NAME.with_borrow_mut(|name| {
            name.clear();
            for (i, part) in [key, model, provider].iter().enumerate() {
                if i > 0 {
                    name.push('\0');
                }
                name.push_str(part);
            }
            let read = self
                .series
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(s) = read.get(name.as_str()) {
                return s.clone();
            }
            drop(read);
            let labels = SeriesLabels {
                key: key.to_owned(),
                model: model.to_owned(),
                provider: provider.to_owned(),
            };
            let made = Arc::new(Series {
                latency: self.latency.get_or_create(&labels).clone(),
                active: std::sync::OnceLock::new(),
                labels,
                ttft: std::sync::OnceLock::new(),
                upstream: std::sync::OnceLock::new(),
                input: std::sync::OnceLock::new(),
                output: std::sync::OnceLock::new(),
                by_status: std::sync::Mutex::new(Vec::new()),
            });
            self.series
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(name.clone())
                .or_insert(made)
                .clone()
        })
    }

    /// `model` as a label value: itself if the config names it, or while fewer than
    /// [`MAX_MODEL_LABELS`] other names are in use; else `other`.
    fn model_label<'m>(&self, model: &'m str) -> &'m str {
        let labels = self
            .model_labels
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if labels.in_use.contains(model) {
            return model;
        }
        drop(labels);
        let mut labels = self
            .model_labels
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if labels.in_use.contains(model) {
            return model;
        }
        if labels.named.contains(model) {
            labels.in_use.insert(model.into());
            return model;
        }
        if labels.others < MAX_MODEL_LABELS {
            labels.others += 1;
            labels.in_use.insert(model.into());
            return model;
        }
        "other"
    }

    /// A served request's series (client key `key`, requested `model`, `provider`), its
    /// upstream latency told with [`Metrics::upstream_took`] (a stream's, at its first
    /// content).
    pub fn served(&self, key: &str, model: &str, provider: &str) -> SeriesHandle {
        SeriesHandle(self.series(key, model, provider))
    }

    /// The upstream latency of a request of `series`.
    pub fn upstream_took(&self, series: &SeriesHandle, d: Duration) {
        let series = &series.0;
        series
            .upstream
            .get_or_init(|| self.upstream_latency.get_or_create(&series.labels).clone())
            .observe(d.as_secs_f64());
    }

    /// The ledger writer's counts, set when metrics are read.
    pub fn set_ledger(&self, dropped: u64, written: u64) {
        self.ledger_dropped
            .set(i64::try_from(dropped).unwrap_or(i64::MAX));
        self.ledger_written
            .set(i64::try_from(written).unwrap_or(i64::MAX));
    }

    /// What a request cost.
    pub fn cost(&self, key: &str, model: &str, provider: &str, usd: f64) {
        self.cost
            .get_or_create(&CostLabels {
                key: key.to_owned(),
                model: self.model_label(model).to_owned(),
                provider: provider.to_owned(),
            })
            .inc_by(usd);
    }

    /// A request was refused by a client key's limit.
    pub fn limit_rejected(&self, key: &str, limit: &str) {
        self.limit_rejections
            .get_or_create(&LimitLabels {
                key: key.to_owned(),
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// A stream ended badly after its 200.
    pub fn stream_error(&self, key: &str, model: &str, provider: &str, reason: &str) {
        self.stream_errors
            .get_or_create(&StreamErrorLabels {
                key: key.to_owned(),
                model: self.model_label(model).to_owned(),
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The config's own model names (exact route names, targets' upstream models), which
    /// keep labels of their own however many names clients send through glob routes
    /// (a reload gives the new config's).
    pub fn name_models(&self, names: impl IntoIterator<Item = String>) {
        self.model_labels
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .named = names.into_iter().map(String::into_boxed_str).collect();
    }

    /// Forgets the series of client keys a reload removed (`keep` says which names stay;
    /// `-`, no key, always does): key names come and go with reloads, and each costs some
    /// seventy lines of every scrape for as long as the process runs. A series with a
    /// stream still being written stays until a later reload.
    pub fn forget_keys(&self, keep: &dyn Fn(&str) -> bool) {
        let mut gone: Vec<String> = Vec::new();
        self.series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, s| {
                let key = s.labels.key.as_str();
                if key == "-" || keep(key) || s.active.get().is_some_and(|g| g.get() > 0) {
                    return true;
                }
                let l = &s.labels;
                self.latency.remove(l);
                self.upstream_latency.remove(l);
                self.ttft.remove(l);
                self.active_streams.remove(l);
                for (status, _) in s
                    .by_status
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                {
                    self.requests.remove(&RequestLabels {
                        key: l.key.clone(),
                        model: l.model.clone(),
                        provider: l.provider.clone(),
                        status: status.to_string(),
                    });
                }
                for direction in ["input", "output"] {
                    self.tokens.remove(&TokenLabels {
                        key: l.key.clone(),
                        model: l.model.clone(),
                        provider: l.provider.clone(),
                        direction: direction.to_owned(),
                    });
                }
                self.cost.remove(&CostLabels {
                    key: l.key.clone(),
                    model: l.model.clone(),
                    provider: l.provider.clone(),
                });
                for reason in STREAM_ERROR_REASONS {
                    self.stream_errors.remove(&StreamErrorLabels {
                        key: l.key.clone(),
                        model: l.model.clone(),
                        provider: l.provider.clone(),
                        reason: (*reason).to_owned(),
                    });
                }
                if !gone.contains(&l.key) {
                    gone.push(l.key.clone());
                }
                false
            });
        for key in gone {
            for limit in LIMITS {
                self.limit_rejections.remove(&LimitLabels {
                    key: key.clone(),
                    limit: (*limit).to_owned(),
                });
            }
        }
    }

    /// Forgets every target's breaker state: a reload starts its targets closed (and may
    /// drop some), so the old figures would only keep alerts firing.
    pub fn reset_breakers(&self) {
        self.breaker_state.clear();
    }

    /// Sets a breaker's state as it stands now (for a scrape): an open breaker whose time
    /// is up lets the next request through as its probe, so it is half open already,
    /// though no request has come to make the transition.
    pub fn breaker_now(&self, provider: &str, model: &str, state: &str) {
        let value = match state {
            "open" => 2,
            "half_open" => 1,
            _ => return,
        };
        self.breaker_state
            .get_or_create(&RouteLabels {
                model: self.model_label(model).to_owned(),
                provider: provider.to_owned(),
            })
            .set(value);
    }

    /// The gauge of streams being written of a request's series (its own, when it was
    /// served: `series`), for the stream to count itself in while it is written.
    pub fn active_streams(
        &self,
        series: Option<&SeriesHandle>,
        key: &str,
        model: &str,
        provider: &str,
    ) -> Gauge<i64, AtomicI64> {
        let series = match series {
            Some(h) => h.0.clone(),
            None => self.series(key, model, provider),
        };
        series
            .active
            .get_or_init(|| self.active_streams.get_or_create(&series.labels).clone())
            .clone()
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl weir_redis::Observe for Metrics {
    fn error(&self, op: &'static str) {
        self.redis_errors
            .get_or_create(&RedisOp { op: op.to_owned() })
            .inc();
    }

    fn reachable(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }
}

impl weir_router::Observer for Metrics {
    fn event(&self, e: &weir_router::RouterEvent<'_>) {
        use weir_router::RouterEvent as E;
        match e {
            E::Failover { provider, .. } => self
                .failovers
                .get_or_create(&ProviderLabels {
                    provider: (*provider).to_owned(),
                })
                .inc(),
            // Model names here may be a client's (a glob route forwards them): capped as
            // the requests' are.
            E::Retry { model } => self
                .retries
                .get_or_create(&RouteModel {
                    model: self.model_label(model).to_owned(),
                })
                .inc(),
            E::Breaker {
                provider,
                model,
                to,
                ..
            } => {
                let model = self.model_label(model);
                self.breaker_state
                    .get_or_create(&RouteLabels {
                        model: model.to_owned(),
                        provider: (*provider).to_owned(),
                    })
                    .set(match *to {
                        "open" => 2,
                        "half_open" => 1,
                        _ => 0,
                    });
                self.breaker_transitions
                    .get_or_create(&BreakerLabels {
                        provider: (*provider).to_owned(),
                        model: model.to_owned(),
                        to: (*to).to_owned(),
                    })
                    .inc()
            }
            E::PastOpenBreaker { provider, model } => self
                .past_open_breaker
                .get_or_create(&RouteLabels {
                    model: self.model_label(model).to_owned(),
                    provider: (*provider).to_owned(),
                })
                .inc(),
            E::OutputLowered {
                provider, model, ..
            } => self
                .output_refusals
                .get_or_create(&RouteLabels {
                    model: self.model_label(model).to_owned(),
                    provider: (*provider).to_owned(),
                })
                .inc(),
            E::Cooldown { provider, key, .. } => self
                .cooldowns
                .get_or_create(&KeyLabels {
                    provider: (*provider).to_owned(),
                    key: (*key).to_owned(),
                })
                .inc(),
            E::KeyRefused { provider, key, .. } => self
                .keys_refused
                .get_or_create(&KeyLabels {
                    provider: (*provider).to_owned(),
                    key: (*key).to_owned(),
                })
                .inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(m: &Metrics, model: &str, provider: &str, status: u16) {
        m.observe(&Observation {
            series: None,
            key: "k",
            model,
            provider,
            status,
            latency: Duration::from_millis(1),
            ttft: None,
            input: Some(1),
            output: Some(1),
        });
    }

    #[test]
    fn latency_buckets_reach_past_ten_minutes() {
        let m = Metrics::new(false);
        m.observe(&Observation {
            series: None,
            key: "k",
            model: "m",
            provider: "p",
            status: 200,
            latency: Duration::from_secs(9 * 60),
            ttft: Some(Duration::from_secs(100)),
            input: Some(1),
            output: Some(1),
        });
        let text = m.render();
        // Nine minutes: above the 524.288 s bound, within the 1048.576 s one.
        assert!(
            text.contains(r#"weir_request_duration_seconds_bucket{le="524.288",key="k",model="m",provider="p"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_request_duration_seconds_bucket{le="1048.576",key="k",model="m",provider="p"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn removed_keys_leave_the_series_unless_a_stream_is_being_written() {
        let m = Metrics::new(false);
        for key in ["kept", "gone", "streaming"] {
            m.observe(&Observation {
                series: None,
                key,
                model: "m",
                provider: "p",
                status: 200,
                latency: Duration::from_millis(1),
                ttft: Some(Duration::from_millis(1)),
                input: Some(1),
                output: Some(1),
            });
            m.cost(key, "m", "p", 0.5);
            m.stream_error(key, "m", "p", "timeout");
            m.limit_rejected(key, "rpm");
        }
        let g = m.active_streams(None, "streaming", "m", "p");
        g.inc();
        m.forget_keys(&|k| k == "kept");
        let text = m.render();
        assert!(!text.contains(r#"key="gone""#), "{text}");
        assert!(text.contains(r#"weir_requests_total{key="kept""#), "{text}");
        assert!(
            text.contains(r#"weir_requests_total{key="streaming""#),
            "{text}"
        );
        g.dec();
        m.forget_keys(&|k| k == "kept");
        let text = m.render();
        assert!(!text.contains(r#"key="streaming""#), "{text}");
        assert!(text.contains(r#"weir_requests_total{key="kept""#), "{text}");
    }

    #[test]
    fn a_reload_forgets_the_old_breakers() {
        use weir_router::Observer;
        let m = Metrics::new(false);
        m.event(&weir_router::RouterEvent::Breaker {
            provider: "dead",
            model: "m",
            from: "closed",
            to: "open",
        });
        assert!(m
            .render()
            .contains(r#"weir_breaker_state{model="m",provider="dead"} 2"#));
        m.reset_breakers();
        assert!(!m.render().contains("weir_breaker_state{"));
    }

    #[test]
    fn lowered_output_limits_and_last_resorts_are_counted_by_target() {
        use weir_router::Observer;
        let m = Metrics::new(false);
        for _ in 0..2 {
            m.event(&weir_router::RouterEvent::OutputLowered {
                provider: "g",
                model: "gemini-3-pro-preview",
                tokens: 65536,
            });
        }
        m.event(&weir_router::RouterEvent::PastOpenBreaker {
            provider: "anthropic",
            model: "claude-opus-4-6",
        });
        let text = m.render();
        assert!(
            text.contains(
                r#"weir_output_limit_refusals_total{model="gemini-3-pro-preview",provider="g"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_breaker_last_resorts_total{model="claude-opus-4-6",provider="anthropic"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn client_chosen_model_names_cannot_grow_the_metrics_without_bound() {
        let m = Metrics::new(false);
        // Names no route serves, or the key may not use: one `-` series.
        for i in 0..50 {
            request(&m, &format!("nope-{i}"), "-", 404);
            request(&m, &format!("denied-{i}"), "-", 403);
        }
        let text = m.render();
        assert!(
            !text.contains("nope-") && !text.contains("denied-"),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_requests_total{key="k",model="-",provider="-",status="404"} 50"#),
            "{text}"
        );
        // Served names (a glob route forwards any): the first ones by name, then `other`.
        for i in 0..MAX_MODEL_LABELS + 100 {
            request(&m, &format!("m-{i}"), "p", 200);
            m.cost("k", &format!("m-{i}"), "p", 0.5);
        }
        request(&m, "m-0", "p", 200);
        let text = m.render();
        assert!(
            text.contains(
                r#"weir_requests_total{key="k",model="m-0",provider="p",status="200"} 2"#
            ),
            "{text}"
        );
        // `-` took one of the places.
        let named = (0..MAX_MODEL_LABELS + 100)
            .filter(|i| text.contains(&format!("model=\"m-{i}\",provider=\"p\",status")))
            .count();
        assert_eq!(named, MAX_MODEL_LABELS - 1);
        assert!(
            text.contains(
                r#"weir_requests_total{key="k",model="other",provider="p",status="200"} 101"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_cost_usd_total{key="k",model="other",provider="p"} 50.5"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_tokens_total{key="k",model="other",provider="p",direction="input"} 101"#
            ),
            "{text}"
        );
        // Retries and breakers of forwarded names are capped alike.
        use weir_router::Observer;
        for i in 0..100 {
            let model = format!("x-{i}");
            m.event(&weir_router::RouterEvent::Retry { model: &model });
            m.event(&weir_router::RouterEvent::Breaker {
                provider: "p",
                model: &model,
                from: "closed",
                to: "open",
            });
        }
        for i in 0..100 {
            m.breaker_now("p", &format!("y-{i}"), "open");
        }
        // The config's own names keep their labels, however many clients sent.
        m.name_models(["configured".to_owned()]);
        request(&m, "configured", "p", 200);
        let text = m.render();
        assert!(!text.contains("x-") && !text.contains("y-"), "{text}");
        assert!(
            text.contains(
                r#"weir_requests_total{key="k",model="configured",provider="p",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_retries_total{model="other"} 100"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_breaker_transitions_total{provider="p",model="other",to="open"} 100"#
            ),
            "{text}"
        );
    }
}
