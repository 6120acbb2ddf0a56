//! A snapshot of the router's state, for `/status` and dashboards. It names keys by their
//! position (`key-1`), never by value.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use crate::state::{lock, Breaker, KeyPool, Rest};
use crate::Router;

/// Everything the router knows, at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct RouterStatus {
    /// Providers and their key pools.
    pub providers: Vec<ProviderStatus>,
    /// Targets (a provider and an upstream model) and their health.
    pub targets: Vec<TargetStatus>,
    /// Routes in table order.
    pub routes: Vec<RouteStatus>,
}

/// A provider's key pool.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderStatus {
    /// Provider id.
    pub id: String,
    /// Its keys, in configured order.
    pub keys: Vec<KeyStatus>,
}

/// One key of a pool.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    /// `key-1`, `key-2`, ... in configured order.
    pub key: String,
    /// `ok`, `cooling_down` or `refused`.
    pub state: &'static str,
    /// Why it cools down: `rate_limited` (a 429) or `limit_exhausted` (headers said 0).
    pub cooldown_reason: Option<&'static str>,
    /// Milliseconds until it is used again.
    pub cooldown_ms: Option<u64>,
    /// The status the upstream refused it with (it is tried again after
    /// [`crate::Policy::refused_key_retry`]).
    pub refused_status: Option<u16>,
    /// Milliseconds until a refused key is tried again.
    pub refused_ms: Option<u64>,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// Requests sent with it.
    pub requests: u64,
    /// 429s it got.
    pub rate_limited: u64,
    /// Models whose quota on this key is spent (an upstream's 429 is per model), with the
    /// milliseconds until it is back; the key serves other models meanwhile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_limits: Vec<ModelLimit>,
}

/// A model whose quota on a key is spent.
#[derive(Clone, Debug, Serialize)]
pub struct ModelLimit {
    /// The upstream model.
    pub model: String,
    /// Milliseconds until it is asked of the key again.
    pub ms: u64,
}

/// A target's health.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    /// Provider id.
    pub provider: String,
    /// Upstream model (a route's name when the target forwards the client's model).
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Milliseconds until an open breaker probes.
    pub open_ms: Option<u64>,
    /// Health failures in a row (while closed).
    pub consecutive_failures: u32,
    /// Recent latency of its answers (time to first content for streams), milliseconds,
    /// exponentially weighted (each answer weighs a quarter); failures are not latencies
    /// and leave it as it was.
    pub latency_ms: Option<f64>,
    /// Recent share of failed requests (exponentially weighted, about the last 20).
    pub error_rate: f64,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests answered (successes and failures).
    pub requests: u64,
    /// Requests that failed in a way that counts against health.
    pub failures: u64,
    /// The most output the model takes, as its upstream said when it refused a larger
    /// limit (believed for an hour): requests for more go lowered to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_ceiling: Option<u32>,
}

/// A route.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStatus {
    /// Exact name or glob.
    pub name: String,
    /// Strategy name.
    pub strategy: &'static str,
    /// Whether sessions stick to a target.
    pub sticky: bool,
    /// `provider/model` of each target (`provider` alone when it forwards the model).
    pub targets: Vec<String>,
}

pub(crate) fn snapshot(r: &Router) -> RouterStatus {
    let now = Instant::now();
    let mut ids: Vec<&String> = r.providers.keys().collect();
    ids.sort();
    let providers = ids
        .into_iter()
        .map(|id| ProviderStatus {
            id: id.clone(),
            keys: r
                .pools
                .get(id)
                .map(|p| {
                    p.keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            let g = lock(&k.inner);
                            let cooling = g.cooldown_until.filter(|(u, _)| *u > now);
                            let refused = g.refused.filter(|(_, u)| *u > now);
                            KeyStatus {
                                key: KeyPool::label(i),
                                state: if refused.is_some() {
                                    "refused"
                                } else if cooling.is_some() {
                                    "cooling_down"
                                } else {
                                    "ok"
                                },
                                cooldown_reason: cooling.map(|(_, why)| match why {
                                    Rest::RateLimited => "rate_limited",
                                    Rest::Exhausted => "limit_exhausted",
                                    Rest::NoCredit => "no_credit",
                                }),
                                cooldown_ms: cooling.map(|(u, _)| (u - now).as_millis() as u64),
                                refused_status: refused.map(|(s, _)| s),
                                refused_ms: refused.map(|(_, u)| (u - now).as_millis() as u64),
                                in_flight: k.in_flight.load(Ordering::Relaxed),
                                requests: g.requests,
                                rate_limited: g.rate_limited,
                                model_limits: g
                                    .model_limits
                                    .iter()
                                    .filter(|(_, u)| *u > now)
                                    .map(|(m, u)| ModelLimit {
                                        model: m.to_string(),
                                        ms: (*u - now).as_millis() as u64,
                                    })
                                    .collect(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let forwarded = r.forwarded.all();
    let targets = r
        .targets
        .iter()
        .chain(&forwarded)
        .map(|t| {
            let g = lock(&t.inner);
            TargetStatus {
                provider: t.provider.clone(),
                model: t.model.clone(),
                // An open breaker whose time is up lets the next request through as its
                // probe: it is half open already, not "open, reopens in 0 ms".
                breaker: match g.breaker {
                    Breaker::Open { until, .. } if until <= now => "half_open",
                    ref b => b.name(),
                },
                open_ms: match g.breaker {
                    Breaker::Open { until, .. } if until > now => {
                        Some(until.saturating_duration_since(now).as_millis() as u64)
                    }
                    _ => None,
                },
                consecutive_failures: match g.breaker {
                    Breaker::Closed { failures } => failures,
                    _ => 0,
                },
                latency_ms: g.recent_ms.map(|l| (l * 10.0).round() / 10.0),
                error_rate: (g.error_rate * 1000.0).round() / 1000.0,
                in_flight: t.in_flight.load(Ordering::Relaxed),
                requests: g.requests,
                failures: g.failures,
                output_ceiling: g.ceiling.filter(|&(_, until)| until > now).map(|(n, _)| n),
            }
        })
        .collect();
    let routes = r
        .routes
        .iter()
        .map(|rs| RouteStatus {
            name: rs.route.name.clone(),
            strategy: rs.route.strategy.name(),
            sticky: rs.route.sticky,
            targets: rs
                .route
                .targets
                .iter()
                .map(|t| match &t.model {
                    Some(m) => format!("{}/{m}", t.provider),
                    None => t.provider.clone(),
                })
                .collect(),
        })
        .collect();
    RouterStatus {
        providers,
        targets,
        routes,
    }
}
