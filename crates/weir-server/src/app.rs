//! Turning a config (or the zero-config environment) into a running gateway's parts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weir_model::Secret;
use weir_router::{glob_match, Router};

use crate::auth::{ClientKey, Keys};
use crate::config::{Config, ConfigError, Source};

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    /// Model table and providers.
    pub router: Router,
    /// Client keys.
    pub keys: Keys,
    /// Bearer key of the admin endpoints.
    pub admin_key: Option<Secret>,
    /// Larger bodies get 413.
    pub max_request_bytes: usize,
    /// Request bodies held at once (`server.max_buffered_bytes`): past it, 503.
    pub max_buffered_bytes: usize,
    /// Client connections at once (`server.max_connections`); `None`: the process's
    /// default ([`crate::set_default_max_connections`]).
    pub max_connections: Option<usize>,
    /// Client connections at once from one address (`server.max_connections_per_ip`);
    /// `None`: no such cap.
    pub max_connections_per_ip: Option<usize>,
    /// Origins allowed to call the API from a browser (`server.cors_origins`); `None`:
    /// no CORS.
    pub cors: Option<crate::http::Cors>,
    /// The bytes of request bodies held now, shared by the process's runtimes and kept
    /// across reloads.
    pub buffered: Arc<crate::http::Buffered>,
    /// Client connections open now, shared by the process's runtimes and kept across
    /// reloads (for `max_connections`).
    pub connections: Arc<crate::Connections>,
    /// The API address.
    pub listen: String,
    /// How long in-flight requests may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long a client has to send a request's headers, or an idle keep-alive connection
    /// to start its next request ([`crate::HEADER_READ_TIMEOUT`]; read when serving starts).
    pub header_read_timeout: Duration,
    /// How long a request body may go without a byte ([`crate::BODY_IDLE_TIMEOUT`]).
    pub body_idle_timeout: Duration,
    /// How long a request body may take in all ([`crate::BODY_TOTAL_TIMEOUT`]).
    pub body_total_timeout: Duration,
    /// How long a client may take no bytes of an answer before its connection is closed
    /// (`[timeouts] idle`, as for an upstream's silence; read when a connection starts).
    pub client_stall_timeout: Duration,
    /// Model names `GET /v1/models` lists (exact names; globs cannot be enumerated).
    pub listed_models: Vec<String>,
    /// The admin address, if the admin API is served.
    pub admin_listen: Option<String>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Provider ids and kinds, for `/status`.
    pub provider_kinds: Vec<(String, String)>,
    /// Where each provider sends its calls (kind, preset, base URL, region, project, API
    /// version), by id: a reload keeps what was learnt about a provider whose upstream
    /// stays the same (see [`rebuild`]).
    pub upstreams: std::collections::BTreeMap<String, String>,
    /// When the gateway started.
    pub started: std::time::Instant,
    /// A request's whole time budget (`[timeouts] total`), retries included.
    pub total_timeout: Duration,
    /// Prices of upstream models, for cost attribution and budgets.
    pub prices: Arc<crate::pricing::Prices>,
    /// `[ledger] url`, opened by whoever runs the app (the binary), which then sets
    /// `ledger`.
    pub ledger_url: Option<String>,
    /// Where request rows go.
    pub ledger: Option<weir_ledger::Writer>,
    /// `[state] backend = "redis"`: how to reach it, connected by whoever runs the app
    /// ([`connect_state`]), which then sets `state`.
    pub state_options: Option<weir_redis::Options>,
    /// Limits, budgets and routing state shared with other instances.
    pub state: Option<weir_redis::RedisState>,
    /// What ends this app's streams when the shutdown grace period is over: the cut of the
    /// [`Live`](crate::Live) cell that put it in force (set then).
    pub(crate) cut: std::sync::OnceLock<Arc<crate::live::Cut>>,
}

/// Builds the gateway from a parsed config. Every problem found is reported, each at its
/// position in the file.
pub fn build(cfg: &Config, file: Option<&Path>, text: &str) -> Result<App, Vec<ConfigError>> {
    let src = Source { file, text };
    let mut errors = Vec::new();
    let routing = weir_config::build_routing(cfg, &src);
    let keys = match Keys::from_config(&cfg.auth.keys, &src) {
        Ok(k) => k,
        Err(mut e) => {
            errors.append(&mut e);
            Keys::default()
        }
    };
    let state_options = match &cfg.state {
        Some(s) => state_options(s, &src, &mut errors),
        None => None,
    };
    if let Some(l) = &cfg.ledger {
        let url = l.url.get_ref();
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            errors.push(src.error_at(
                Some(l.url.span().start),
                "ledger.url must be sqlite://<path> or postgres://... (e.g. \"sqlite://weir-ledger.db\")",
            ));
        }
    }
    if cfg.server.max_buffered_bytes < cfg.server.max_request_bytes {
        errors.push(src.error_at(
            src.key_at(&["server", "max_buffered_bytes"]),
            format!(
                "server.max_buffered_bytes ({}) is below server.max_request_bytes ({}): a \
                 request that large could never be read",
                cfg.server.max_buffered_bytes, cfg.server.max_request_bytes
            ),
        ));
    }
    for (i, o) in cfg.server.cors_origins.iter().enumerate() {
        if let Err(why) = crate::http::Cors::check_origin(o) {
            errors.push(
                src.error_at(
                    src.key_at(&["server", "cors_origins", &i.to_string()])
                        .or_else(|| src.key_at(&["server", "cors_origins"])),
                    format!("server.cors_origins: `{}` {why}", weir_model::log_safe(o)),
                ),
            );
        }
    }
    if cfg.server.max_request_bytes == 0 {
        errors.push(src.error_at(
            src.key_at(&["server", "max_request_bytes"]),
            "server.max_request_bytes must be at least 1: every request has a body",
        ));
    }
    if cfg.server.max_connections_per_ip == Some(0) {
        errors.push(src.error_at(
            src.key_at(&["server", "max_connections_per_ip"]),
            "server.max_connections_per_ip must be at least 1 (leave it out for no cap per address)",
        ));
    }
    if cfg.server.max_connections == Some(0) {
        errors.push(src.error_at(
            src.key_at(&["server", "max_connections"]),
            "server.max_connections must be at least 1 (leave it out for half the open-files limit)",
        ));
    }
    let listen_at = src.key_at(&["server", "listen"]);
    let admin_listen_at = src.key_at(&["server", "admin_listen"]);
    for (field, addr, at) in [
        ("listen", Some(cfg.server.listen.as_str()), listen_at),
        (
            "admin_listen",
            cfg.server.admin_listen.as_deref(),
            admin_listen_at,
        ),
    ] {
        if let Some(addr) = addr.filter(|a| !is_address(a)) {
            errors.push(src.error_at(
                at,
                format!(
                    "server.{field} = \"{addr}\" is not an address and port (e.g. \"127.0.0.1:4000\", \"[::1]:4000\" or \"localhost:4000\")"
                ),
            ));
        }
    }
    if let Some(p) = &cfg.pricing {
        for (model, c) in p.get_ref() {
            let prices = [
                ("input", Some(c.input)),
                ("output", Some(c.output)),
                ("cache_read", c.cache_read),
                ("cache_write", c.cache_write),
                ("cache_write_1h", c.cache_write_1h),
                ("web_search", c.web_search),
            ];
            let long = c.long_context.as_ref();
            let long_prices = [
                ("input", long.map(|l| l.input)),
                ("output", long.map(|l| l.output)),
                ("cache_read", long.and_then(|l| l.cache_read)),
                ("cache_write", long.and_then(|l| l.cache_write)),
                ("cache_write_1h", long.and_then(|l| l.cache_write_1h)),
            ];
            for (field, v) in long_prices {
                if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    errors.push(src.error_at(
                        src.key_at(&["pricing", model, "long_context", field]),
                        format!(
                            "pricing.\"{model}\".long_context.{field} must be a price in USD per million tokens, 0 or more"
                        ),
                    ));
                }
            }
            for (field, v) in prices {
                if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    let unit = if field == "web_search" {
                        "USD per 1,000 searches"
                    } else {
                        "USD per million tokens"
                    };
                    errors.push(src.error_at(
                        src.key_at(&["pricing", model, field]),
                        format!("pricing.\"{model}\".{field} must be a price in {unit}, 0 or more"),
                    ));
                }
            }
        }
    }
    if keys.is_empty() && is_address(&cfg.server.listen) && !is_loopback(&cfg.server.listen) {
        errors.push(src.error_at(
            listen_at,
            format!(
                "server.listen = \"{}\" is not a loopback address and no [[auth.keys]] are configured: \
                 add client keys before exposing the gateway",
                cfg.server.listen
            ),
        ));
    }

    if cfg.auth.admin_key.is_some()
        && same_listener(
            cfg.server
                .admin_listen
                .as_deref()
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
            &cfg.server.listen,
        )
    {
        errors.push(src.error_at(
            admin_listen_at.or(listen_at),
            format!(
                "server.admin_listen must differ from server.listen (`{}`): the admin API is never \
                 served on the API port{}",
                cfg.server.listen,
                if cfg.server.admin_listen.is_none() {
                    format!(" (admin_listen defaults to {DEFAULT_ADMIN_LISTEN})")
                } else {
                    String::new()
                }
            ),
        ));
    }
    // A provider pointed at the gateway itself: every request would come back to it
    // until it ran out of connections.
    for (id, p) in &cfg.providers {
        if let Some(url) = p
            .base_url
            .as_ref()
            .filter(|u| points_at(u.get_ref(), &cfg.server.listen))
        {
            errors.push(src.error_at(
                src.key_at(&["providers", id, "base_url"]),
                format!(
                    "providers.{id}.base_url = \"{}\" is this gateway's own address \
                     (server.listen = \"{}\"): its requests would come back to it",
                    url.get_ref(),
                    cfg.server.listen
                ),
            ));
        }
    }
    if cfg
        .auth
        .admin_key
        .as_ref()
        .is_some_and(|k| k.expose().trim().is_empty())
    {
        // (Often `admin_key = "${WEIR_ADMIN_KEY}"` with the variable set but empty.) An
        // empty key would match an empty credential: the admin API would be open.
        errors.push(src.error_at(
            src.key_at(&["auth", "admin_key"]),
            "auth.admin_key is empty: the admin API would accept any request; set a key, or \
             remove auth.admin_key to turn the admin API off",
        ));
    } else if cfg
        .auth
        .admin_key
        .as_ref()
        .is_some_and(|k| keys.holds(k.expose()))
    {
        errors.push(src.error_at(
            src.key_at(&["auth", "admin_key"]),
            "auth.admin_key is also a client key: every holder of that key would be an admin",
        ));
    }
    if cfg.server.admin_listen.is_some() && cfg.auth.admin_key.is_none() {
        errors.push(src.error_at(
            admin_listen_at,
            "server.admin_listen is set but auth.admin_key is not: the admin API needs a key",
        ));
    }
    let metrics = Arc::new(crate::metrics::Metrics::new(state_options.is_some()));
    if let Ok(r) = &routing {
        metrics.name_models(configured_models(&r.router));
    }
    let routing = match routing {
        Ok(r) => Some(r),
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    };
    match routing {
        Some(routing) if errors.is_empty() => Ok(warn_unpriced_budgets(
            App {
                cut: std::sync::OnceLock::new(),
                listed_models: routing.listed_models,
                router: routing.router.with_observer(metrics.clone()),
                provider_kinds: routing.provider_kinds,
                upstreams: cfg
                    .providers
                    .iter()
                    .map(|(id, p)| (id.clone(), p.upstream_identity()))
                    .collect(),
                keys,
                admin_key: cfg.auth.admin_key.clone(),
                max_request_bytes: cfg.server.max_request_bytes,
                max_buffered_bytes: cfg.server.max_buffered_bytes,
                max_connections: cfg.server.max_connections,
                max_connections_per_ip: cfg.server.max_connections_per_ip,
                cors: crate::http::Cors::new(&cfg.server.cors_origins),
                buffered: Arc::default(),
                connections: Arc::default(),
                listen: cfg.server.listen.clone(),
                shutdown_grace: cfg.server.shutdown_grace.0,
                header_read_timeout: crate::HEADER_READ_TIMEOUT,
                body_idle_timeout: crate::BODY_IDLE_TIMEOUT,
                body_total_timeout: crate::BODY_TOTAL_TIMEOUT,
                client_stall_timeout: cfg.timeouts.idle.0,
                admin_listen: cfg.auth.admin_key.as_ref().map(|_| {
                    cfg.server
                        .admin_listen
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into())
                }),
                metrics,
                // (A provider given a longer `total` of its own keeps it.)
                total_timeout: cfg
                    .providers
                    .values()
                    .filter_map(|p| p.timeouts.as_ref().and_then(|t| t.total))
                    .map(|d| d.0)
                    .fold(cfg.timeouts.total.0, Duration::max),
                ledger_url: cfg.ledger.as_ref().map(|l| l.url.get_ref().clone()),
                ledger: None,
                state_options,
                state: None,
                prices: Arc::new(crate::pricing::Prices::new(
                    cfg.pricing
                        .as_ref()
                        .map(|p| {
                            p.get_ref()
                                .iter()
                                .map(|(m, c)| {
                                    (
                                        m.clone(),
                                        crate::pricing::Price {
                                            input: c.input,
                                            output: c.output,
                                            cache_read: c.cache_read,
                                            cache_write: c.cache_write,
                                            cache_write_1h: c.cache_write_1h,
                                            web_search: c.web_search,
                                            long: c.long_context.as_ref().map(|l| {
                                                crate::pricing::LongPrice {
                                                    above: l.above,
                                                    input: l.input,
                                                    output: l.output,
                                                    cache_read: l.cache_read,
                                                    cache_write: l.cache_write,
                                                    cache_write_1h: l.cache_write_1h,
                                                }
                                            }),
                                        },
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                )),
                started: std::time::Instant::now(),
            },
            cfg,
        )),
        _ => {
            // In file order, whichever check found them; errors without a place last.
            errors.sort_by_key(|e| (e.position.is_none(), e.position));
            Err(errors)
        }
    }
}

/// The model names a config gives itself: exact route names and targets' upstream models
/// (a glob's name is not a model's).
fn configured_models(router: &weir_router::Router) -> Vec<String> {
    let mut names = Vec::new();
    for r in router.routes() {
        if !r.name.contains(['*', '?']) {
            names.push(r.name.clone());
        }
        names.extend(r.targets.iter().filter_map(|t| t.model.clone()));
    }
    names
}

/// `[state]` checked: `None` for the embedded (memory) backend.
fn state_options(
    s: &weir_config::StateConfig,
    src: &Source<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<weir_redis::Options> {
    let fail_open = match s.fail_mode.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("open") => true,
        Some("closed") => false,
        Some(other) => {
            errors.push(src.error_at(
                s.fail_mode.as_ref().map(|f| f.span().start),
                format!("state.fail_mode must be \"open\" or \"closed\", not \"{other}\""),
            ));
            true
        }
    };
    match s.backend.get_ref().as_str() {
        "memory" => {
            if let Some(u) = &s.url {
                errors.push(src.error_at(
                    Some(u.span().start),
                    "state.url is only used with backend = \"redis\"",
                ));
            }
            // The others too, where they say something (a default cannot be told from
            // one given).
            for (set, key) in [
                (s.fail_mode.is_some(), "fail_mode"),
                (s.prefix != weir_config::DEFAULT_STATE_PREFIX, "prefix"),
                (s.timeout.0 != weir_config::DEFAULT_STATE_TIMEOUT, "timeout"),
            ] {
                if set {
                    errors.push(src.error_at(
                        Some(s.backend.span().start),
                        format!("state.{key} is only used with backend = \"redis\""),
                    ));
                }
            }
            None
        }
        "redis" => {
            let Some(url) = &s.url else {
                errors.push(src.error_at(
                    Some(s.backend.span().start),
                    "backend = \"redis\" needs state.url (e.g. \"redis://127.0.0.1:6379\")",
                ));
                return None;
            };
            let u = url.get_ref();
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://"))
            {
                errors.push(src.error_at(
                    Some(url.span().start),
                    // (Not quoted: without `scheme://`, a password in it cannot be told
                    // apart to redact.)
                    "state.url must start with redis://host:port, rediss://host:port (TLS) or \
                     redis+unix:///path",
                ));
                return None;
            }
            // As `weir serve` would find when it connects.
            if let Err(e) = weir_redis::check_url(u) {
                errors.push(src.error_at(Some(url.span().start), e));
                return None;
            }
            if s.prefix.is_empty() || s.prefix.contains(char::is_whitespace) {
                errors.push(src.error_at(
                    None,
                    "state.prefix must be a non-empty word (e.g. \"weir\")",
                ));
            }
            Some(weir_redis::Options {
                url: Secret::new(u.clone()),
                prefix: s.prefix.clone(),
                fail_open,
                timeout: s.timeout.0,
            })
        }
        other => {
            errors.push(src.error_at(
                Some(s.backend.span().start),
                format!("state.backend must be \"memory\" or \"redis\", not \"{other}\""),
            ));
            None
        }
    }
}

/// Connects the shared state store the config names (`[state] backend = "redis"`), on the
/// current runtime (its background work runs there), and wires the router and the
/// limiters to it. An unreachable Redis is not an error (it is logged, and retried); a
/// malformed URL is.
pub async fn connect_state(app: &mut App) -> Result<(), String> {
    let Some(opts) = app.state_options.clone() else {
        return Ok(());
    };
    let observe: Arc<dyn weir_redis::Observe> = app.metrics.clone();
    let state = weir_redis::RedisState::connect(opts, Some(observe)).await?;
    attach_state(app, state);
    app.follow_state();
    Ok(())
}

/// Counts what each client key with a daily budget spent today, as the ledger tells it,
/// so a restart does not give a day's budget back; with `only`, just those keys (a
/// reload's [`Keys::fresh_budgets`](crate::auth::Keys::fresh_budgets): the others keep
/// their counters). A ledger that cannot be read is logged, and budgets count from zero.
pub async fn restore_spend(
    keys: &crate::auth::Keys,
    ledger: &weir_ledger::Ledger,
    only: Option<&[String]>,
) {
    if !keys.any_budget() || only.is_some_and(<[String]>::is_empty) {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let midnight = now_ms - now_ms.rem_euclid(86_400_000);
    match ledger.spent_since(midnight).await {
        Ok(spent) => {
            let n = keys.restore_spend(&spent, only);
            if n > 0 {
                tracing::info!("daily budgets: today's spend of {n} key(s) read from the ledger");
            }
        }
        Err(e) => tracing::warn!(
            "daily budgets count from zero: today's spend could not be read from the ledger: {e}"
        ),
    }
}

/// Wires an app (new, or rebuilt on reload) to a connected store: its router publishes
/// what it learns and its limiters count there. The store applies other instances'
/// changes to the router it follows ([`App::follow_state`]).
fn attach_state(app: &mut App, state: weir_redis::RedisState) {
    app.router.set_state_sink(state.sink());
    app.state = Some(state);
}

fn same_state(a: Option<&weir_redis::Options>, b: Option<&weir_redis::Options>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.url.expose() == b.url.expose()
                && a.prefix == b.prefix
                && a.fail_open == b.fail_open
                && a.timeout == b.timeout
        }
        _ => false,
    }
}

/// An IP address and port, or a host name and port (resolved when the listener starts).
fn is_address(listen: &str) -> bool {
    listen.parse::<std::net::SocketAddr>().is_ok()
        || listen.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && port.parse::<u16>().is_ok()
        })
}

/// Whether two listen addresses would take the same port: equal, or one on every
/// address (`0.0.0.0`, `[::]`) and the other on one of them, on the same port.
fn same_listener(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    // (`localhost`, in any case, is where it listens first; an IPv4-mapped address is
    // that IPv4 address.)
    let parse = |s: &str| {
        let a = match s.get(..10) {
            Some(host) if host.eq_ignore_ascii_case("localhost:") => {
                format!("127.0.0.1:{}", &s[10..]).parse::<std::net::SocketAddr>()
            }
            _ => s.parse(),
        }?;
        Ok::<_, std::net::AddrParseError>(std::net::SocketAddr::new(
            a.ip().to_canonical(),
            a.port(),
        ))
    };
    // Whether listening on `wide` takes `one`'s address: an unspecified address takes
    // every address of its family, and `[::]` IPv4's too (the listeners leave
    // IPV6_V6ONLY unset), so `0.0.0.0` and `[::]` take each other's.
    let takes = |wide: std::net::SocketAddr, one: std::net::SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || one.is_ipv4() || one.ip().is_unspecified())
    };
    match (parse(a), parse(b)) {
        (Ok(a), Ok(b)) => {
            a.port() == b.port() && a.port() != 0 && (a == b || takes(a, b) || takes(b, a))
        }
        _ => false,
    }
}

/// The base URL variables that point at zero-config's own address. One set for Claude
/// Code or an SDK to reach this gateway (`ANTHROPIC_BASE_URL=http://127.0.0.1:4000`) is
/// not an upstream: each request would come back to the gateway until it ran out of
/// connections.
fn self_pointing(env: &dyn Fn(&str) -> Option<String>) -> Vec<&'static str> {
    let listen = env("WEIR_LISTEN")
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    ["ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"]
        .into_iter()
        .filter(|var| env(var).is_some_and(|url| points_at(&url, listen.trim())))
        .collect()
}

/// Where zero-config listens unless `WEIR_LISTEN` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

/// Whether `url` names the address `listen` (`host:port`): the same port, and the same
/// host or, for a listener on loopback or every address, any name of this machine's
/// loopback.
fn points_at(url: &str, listen: &str) -> bool {
    let Ok(uri) = url.trim().parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let Some((lhost, lport)) = listen.rsplit_once(':') else {
        return false;
    };
    if lport.parse::<u16>().ok() != Some(port) {
        return false;
    }
    let unbracket = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    let (host, lhost) = (unbracket(host), unbracket(lhost));
    let local = |h: &str| {
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    host == lhost || (local(&host) && local(&lhost))
}

fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}

/// Logs the client keys with `models = []`: without `models` a key may use every model,
/// and an empty list, easily read the same way, allows none.
fn warn_empty_model_lists(cfg: &Config) {
    for k in &cfg.auth.keys {
        let k = k.get_ref();
        if k.models.as_ref().is_some_and(Vec::is_empty) {
            tracing::warn!(
                key = %k.name,
                "client key `{}` has models = [] and may use no model (leave models out for every model)",
                k.name
            );
        }
    }
}

/// Logs the targets whose upstream model has no price when a client key has a daily
/// budget: their cost is not counted against it. (Targets that forward the client's model
/// name are warned about when first served.)
fn warn_unpriced_budgets(app: App, cfg: &Config) -> App {
    warn_empty_model_lists(cfg);
    if cfg
        .auth
        .keys
        .iter()
        .any(|k| k.get_ref().daily_budget_usd.is_some())
    {
        // The built-in mock costs nothing; OpenRouter says what each request cost.
        let priced = |t: &&weir_config::TargetConfig| {
            cfg.providers.get(t.provider.get_ref()).is_none_or(|p| {
                let openrouter = p
                    .preset
                    .as_ref()
                    .is_some_and(|s| s.get_ref() == "openrouter")
                    || p.base_url().is_some_and(|u| u.contains("openrouter.ai"));
                p.kind.get_ref() != "mock" && !openrouter
            })
        };
        for m in &cfg.models {
            for model in m
                .targets
                .iter()
                .filter(priced)
                .filter_map(|t| t.model.as_deref())
            {
                if app.prices.price(model).is_none() && crate::pricing::first_unpriced(model) {
                    tracing::warn!(
                        "model `{model}` (a target of `{}`) has no price: what it costs is not counted against daily_budget_usd (add [pricing.\"{model}\"])",
                        m.name
                    );
                }
            }
        }
    }
    app
}

/// Where the admin API listens when `auth.admin_key` is set without `server.admin_listen`.
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:4001";

/// A config without `[[auth.keys]]` (which only a loopback listen allows) still needs a
/// client key: as in zero-config, `WEIR_API_KEY` when set, else a generated one, returned
/// so the caller can print it once. `key` is the one an earlier load chose (reloads keep
/// it). Apps with keys are left as they are.
pub fn ensure_client_key(
    app: &mut App,
    key: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if !app.keys.is_empty() {
        return None;
    }
    let (k, generated) = default_client_key(key, env);
    app.keys = crate::auth::Keys::single_default(&k);
    generated
}

const UNSENDABLE_ENV_KEY: &str =
    "WEIR_API_KEY has characters other than printable ASCII, which clients cannot send in a header";

/// An error when the config has no client keys and `WEIR_API_KEY`, the key then, has
/// characters no client can send in a header (it could never match).
pub fn check_env_key(app: &App, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match env("WEIR_API_KEY") {
        Some(k) if app.keys.is_empty() && !crate::auth::sendable(k.trim()) => {
            Err(UNSENDABLE_ENV_KEY.into())
        }
        _ => Ok(()),
    }
}

/// An error when the admin key is also a client key (every holder of it would be an
/// admin). [`build`] finds this for configured keys; this also covers the default key
/// [`ensure_client_key`] adds (`WEIR_API_KEY`).
pub fn check_admin_key(app: &App) -> Result<(), String> {
    match &app.admin_key {
        Some(a) if app.keys.holds(a.expose()) => Err(
            "auth.admin_key is also a client key (WEIR_API_KEY): every holder of that key would be an admin"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// The client key when none is configured: `key` (one chosen earlier), else
/// `WEIR_API_KEY`, else a generated one, which is returned a second time to be printed.
fn default_client_key(
    key: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (String, Option<String>) {
    match key
        .map(str::to_owned)
        // (Header values arrive trimmed: a padded key could never match.)
        .or_else(|| {
            env("WEIR_API_KEY")
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
        }) {
        Some(k) => (k, None),
        None => {
            let k = crate::auth::generate_key();
            (k.clone(), Some(k))
        }
    }
}

/// The zero-config gateway: every provider whose standard credentials are in the
/// environment, plus the built-in `mock`; listening on 127.0.0.1:4000; one client key
/// (`WEIR_API_KEY`, or a generated one, returned so the caller can print it once).
pub fn zero_config(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(App, Option<String>), Vec<ConfigError>> {
    // Zero-config's key is one nobody chose for a network: it stays on loopback, as a
    // config file without [[auth.keys]] must.
    let unplaced = |message: String| ConfigError {
        file: None,
        position: None,
        message,
    };
    for var in ["WEIR_LISTEN", "WEIR_ADMIN_LISTEN"] {
        if let Some(addr) = env(var).filter(|a| !a.trim().is_empty()) {
            let addr = addr.trim();
            let localhost = addr
                .strip_prefix("localhost:")
                .is_some_and(|p| p.parse::<u16>().is_ok());
            if !localhost && addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(vec![unplaced(format!(
                    "{var}={addr} is not an address to listen on: give an IP address and a \
                     port, e.g. 127.0.0.1:4000"
                ))]);
            }
            if !is_loopback(addr) {
                return Err(vec![unplaced(format!(
                    "{var}={addr} is not a loopback address: zero-config listens on loopback \
                     only; to listen on a network, use a config file with [[auth.keys]]"
                ))]);
            }
        }
    }
    let (key, generated) = default_client_key(None, env);
    if !crate::auth::sendable(&key) {
        return Err(vec![ConfigError {
            file: None,
            position: None,
            message: UNSENDABLE_ENV_KEY.into(),
        }]);
    }
    let env_with_key = |name: &str| {
        if name == "WEIR_API_KEY" {
            Some(key.clone())
        } else {
            env(name)
        }
    };
    let looped = self_pointing(env);
    for var in &looped {
        tracing::warn!(
            "zero-config: {var} points at this gateway; its provider uses the service's own URL"
        );
    }
    let env = &|name: &str| {
        if looped.contains(&name) {
            None
        } else {
            env(name)
        }
    };
    let with_cloud = zero_config_text(env, true);
    let build_text = |text: &str| -> Result<App, Vec<ConfigError>> {
        let text = crate::config::interpolate(None, text, &env_with_key)?;
        let cfg = crate::config::parse_all(None, &text)?;
        build(&cfg, None, &text)
    };
    let app = match build_text(&with_cloud) {
        Ok(app) => app,
        // Bedrock cannot be built (a region that is not one, say): serve the rest. (Its
        // credentials missing is not that: its requests fail until some are found.)
        Err(errors) if with_cloud.contains("[providers.bedrock]") => {
            for e in &errors {
                tracing::warn!("zero-config: Bedrock left out: {e}");
            }
            build_text(&zero_config_text(env, false)).map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| unplaced(zero_config_error(&e.message)))
                    .collect::<Vec<_>>()
            })?
        }
        // The file is the gateway's own, never seen by the user: its lines and columns
        // would mislead.
        Err(errors) => {
            return Err(errors
                .into_iter()
                .map(|e| unplaced(zero_config_error(&e.message)))
                .collect())
        }
    };
    Ok((app, generated))
}

/// An error in the zero-config file, said in the environment's terms (the file is the
/// gateway's own: its lines and keys would mislead).
fn zero_config_error(message: &str) -> String {
    let message = message
        .replace("server.admin_listen", "WEIR_ADMIN_LISTEN")
        .replace("server.listen", "WEIR_LISTEN");
    format!("zero-config: {message}")
}

/// The zero-config file: a provider for every service whose credentials are in the
/// environment, each serving the model names that are its own (by glob, in an order where
/// the more specific name wins), then `mock`, one client key and the admin key.
fn zero_config_text(env: &dyn Fn(&str) -> Option<String>, bedrock: bool) -> String {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    let mut text = String::from("# zero-config\n");
    // Where it listens, when the defaults (127.0.0.1:4000, admin 127.0.0.1:4001) are taken.
    if set("WEIR_LISTEN") || set("WEIR_ADMIN_LISTEN") {
        text.push_str("[server]\n");
        if set("WEIR_LISTEN") {
            text.push_str("listen = \"${WEIR_LISTEN}\"\n");
        }
        if set("WEIR_ADMIN_LISTEN") && set("WEIR_ADMIN_KEY") {
            text.push_str("admin_listen = \"${WEIR_ADMIN_LISTEN}\"\n");
        }
    }
    let mut model_routes: Vec<(&str, &str)> = Vec::new();
    // Vertex AI: Claude's ids there carry a version after `@` (claude-sonnet-4-5@20250929),
    // so they are told from Anthropic's own before `claude-*`; Gemini there only when the
    // Gemini API itself has no key.
    if set("GOOGLE_CLOUD_PROJECT") {
        let region_var = [
            "GOOGLE_CLOUD_REGION",
            "CLOUD_ML_REGION",
            "GOOGLE_CLOUD_LOCATION",
        ]
        .into_iter()
        .find(|v| set(v));
        let region =
            region_var.map_or_else(|| "\"global\"".to_owned(), |v| format!("\"${{{v}}}\""));
        text.push_str(&format!(
            "[providers.vertex]\nkind = \"vertex\"\nproject = \"${{GOOGLE_CLOUD_PROJECT}}\"\nregion = {region}\n"
        ));
        model_routes.push(("claude-*@*", "vertex"));
        // Google's embedding models (gemini-embedding-* goes with gemini-*), before
        // OpenAI's `text-embedding-*` (whose names are text-embedding-3-*, -ada-002); only
        // in a region: the global endpoint serves Gemini's chat models, not these.
        if region_var
            .and_then(env)
            .is_some_and(|r| !r.trim().eq_ignore_ascii_case("global"))
        {
            model_routes.push(("text-embedding-0*", "vertex"));
            model_routes.push(("text-multilingual-embedding-*", "vertex"));
        }
    }
    if set("ANTHROPIC_API_KEY") {
        text.push_str(
            "[providers.anthropic]\nkind = \"anthropic\"\nkeys = [\"${ANTHROPIC_API_KEY}\"]\n",
        );
        if set("ANTHROPIC_BASE_URL") {
            text.push_str("base_url = \"${ANTHROPIC_BASE_URL}\"\n");
        }
        model_routes.push(("claude-*", "anthropic"));
    } else if set("GOOGLE_CLOUD_PROJECT") {
        // Claude's ids on Vertex are Anthropic's own from the 4.6 models on (no `@date`):
        // without an Anthropic key, Vertex serves them.
        model_routes.push(("claude-*", "vertex"));
    }
    if set("OPENAI_API_KEY") {
        text.push_str("[providers.openai]\nkind = \"openai\"\nkeys = [\"${OPENAI_API_KEY}\"]\n");
        if set("OPENAI_BASE_URL") {
            text.push_str("base_url = \"${OPENAI_BASE_URL}\"\n");
        }
        for g in [
            "gpt-*",
            "o1*",
            "o3*",
            "o4*",
            "chatgpt-*",
            "codex-*",
            "text-embedding-*",
        ] {
            model_routes.push((g, "openai"));
        }
    }
    if set("GEMINI_API_KEY") {
        text.push_str("[providers.gemini]\nkind = \"gemini\"\nkeys = [\"${GEMINI_API_KEY}\"]\n");
        model_routes.push(("gemini-*", "gemini"));
    } else if set("GOOGLE_CLOUD_PROJECT") {
        model_routes.push(("gemini-*", "vertex"));
    }
    // OpenAI-compatible services whose model names are their own.
    for (var, preset, globs) in [
        ("XAI_API_KEY", "xai", &["grok-*"][..]),
        ("DEEPSEEK_API_KEY", "deepseek", &["deepseek-*"][..]),
        // OpenRouter names every model vendor/model.
        ("OPENROUTER_API_KEY", "openrouter", &["*/*"][..]),
    ] {
        if set(var) {
            text.push_str(&format!(
                "[providers.{preset}]\nkind = \"openai\"\npreset = \"{preset}\"\nkeys = [\"${{{var}}}\"]\n"
            ));
            for g in globs {
                model_routes.push((g, preset));
            }
        }
    }
    // Groq and Cerebras serve the same open models, each under names of its own shape
    // (Groq: llama-3.3-70b-versatile, openai/gpt-oss-120b; Cerebras: llama-3.3-70b,
    // gpt-oss-120b). Their routes go first: `gpt-oss-*` is not OpenAI's `gpt-*`, and
    // `deepseek-r1-distill-*` not DeepSeek's. Groq's vendor/model names are OpenRouter's
    // too: with an OpenRouter key they stay OpenRouter's.
    let mut open_models: Vec<(&str, &str)> = Vec::new();
    if set("GROQ_API_KEY") {
        text.push_str(
            "[providers.groq]\nkind = \"openai\"\npreset = \"groq\"\nkeys = [\"${GROQ_API_KEY}\"]\n",
        );
        for g in [
            "groq/*",
            "llama-*-versatile",
            "llama-*-instant",
            "deepseek-r1-distill-*",
            "mistral-saba-*",
            "allam-*",
        ] {
            open_models.push((g, "groq"));
        }
        if !set("OPENROUTER_API_KEY") {
            for g in ["meta-llama/*", "openai/gpt-oss-*", "qwen/*", "moonshotai/*"] {
                open_models.push((g, "groq"));
            }
        }
    }
    if set("CEREBRAS_API_KEY") {
        text.push_str(
            "[providers.cerebras]\nkind = \"openai\"\npreset = \"cerebras\"\nkeys = [\"${CEREBRAS_API_KEY}\"]\n",
        );
        for g in [
            "llama3.1-*",
            "llama-3.3-70b",
            "llama-4-*",
            "gpt-oss-*",
            "qwen-3-*",
            "zai-glm-*",
        ] {
            open_models.push((g, "cerebras"));
        }
    }
    model_routes.splice(0..0, open_models);
    // Bedrock: model ids are vendor.model (anthropic.claude-..., meta.llama...), or carry
    // an inference profile's geography first (us.anthropic.claude-...).
    let aws_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find(|v| set(v));
    let aws_credentials = (set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"))
        || set("AWS_BEARER_TOKEN_BEDROCK")
        || set("AWS_PROFILE");
    if bedrock && aws_credentials && aws_region.is_none() {
        tracing::warn!(
            "AWS credentials are set but no region is (AWS_REGION or AWS_DEFAULT_REGION): \
             Bedrock is left out"
        );
    }
    if bedrock && aws_credentials {
        if let Some(region) = aws_region {
            text.push_str(&format!(
                "[providers.bedrock]\nkind = \"bedrock\"\nregion = \"${{{region}}}\"\n"
            ));
            for g in [
                "us.*",
                "eu.*",
                "apac.*",
                "jp.*",
                "au.*",
                "global.*",
                "us-gov.*",
                "ca.*",
                "anthropic.*",
                "amazon.*",
                "meta.*",
                "mistral.*",
                "cohere.*",
                "ai21.*",
                "deepseek.*",
                "qwen.*",
                "openai.*",
                "writer.*",
            ] {
                model_routes.push((g, "bedrock"));
            }
        }
    } else if bedrock && aws_region.is_some() {
        tracing::warn!(
            "AWS_REGION is set but no AWS credentials are (AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, AWS_BEARER_TOKEN_BEDROCK, or AWS_PROFILE): Bedrock is left out"
        );
    }
    text.push_str("[providers.mock]\nkind = \"mock\"\n");
    for (glob, provider) in &model_routes {
        text.push_str(&format!(
            "[[models]]\nname = \"{glob}\"\ntargets = [{{ provider = \"{provider}\" }}]\n"
        ));
    }
    text.push_str("[[auth.keys]]\nname = \"default\"\nkey = \"${WEIR_API_KEY}\"\n");
    if set("WEIR_ADMIN_KEY") {
        text.push_str("[auth]\nadmin_key = \"${WEIR_ADMIN_KEY}\"\n");
    }
    text
}

/// Builds a new app for a reloaded config, keeping what must outlive a reload: the
/// metrics (and the router reporting to them), the limiters of unchanged client keys, the
/// ledger, the shared state store, sessions and where Responses API responses were made.
/// Other routing state (cooldowns, breakers) starts afresh with the new routes, except what
/// the shared store holds, which [`App::follow_state`] reads back.
pub fn rebuild(
    cfg: &Config,
    file: Option<&Path>,
    text: &str,
    old: &App,
) -> Result<App, Vec<ConfigError>> {
    let mut app = build(cfg, file, text)?;
    if app.ledger_url != old.ledger_url {
        return Err(vec![Source { file, text }.error_at(
            cfg.ledger.as_ref().map(|l| l.url.span().start),
            "ledger.url cannot change on reload; restart to move the ledger",
        )]);
    }
    if !same_state(app.state_options.as_ref(), old.state_options.as_ref()) {
        return Err(vec![Source { file, text }.error_at(
            cfg.state.as_ref().map(|s| s.backend.span().start),
            "[state] cannot change on reload; restart to move the shared state",
        )]);
    }
    app.ledger.clone_from(&old.ledger);
    app.buffered = old.buffered.clone();
    app.connections = old.connections.clone();
    app.metrics = old.metrics.clone();
    // Targets no longer configured leave the breaker gauge; those kept are set again
    // from the router at the next scrape.
    app.metrics.reset_breakers();
    // Keys the new config no longer has leave the request series.
    app.metrics.forget_keys(&|name| app.keys.has(name));
    app.metrics.name_models(configured_models(&app.router));
    app.router = app.router.with_observer(old.metrics.clone());
    // What was learnt about the upstreams both configs call (rests, refused keys,
    // breakers, latency, requests in flight) stays.
    app.router.adopt_state(&old.router, |provider| {
        app.upstreams
            .get(provider)
            .is_some_and(|u| old.upstreams.get(provider) == Some(u))
    });
    // Continued Responses API conversations keep their account.
    app.router.adopt_responses(&old.router);
    app.router.adopt_sessions(&old.router);
    if let Some(state) = &old.state {
        attach_state(&mut app, state.clone());
    }
    app.keys.adopt_limits(&old.keys);
    app.started = old.started;
    Ok(app)
}

impl App {
    /// What one stream watches to end at the shutdown cut (never fires for an app that
    /// no [`Live`](crate::Live) put in force).
    pub(crate) fn cut_watch(&self) -> crate::live::CutWatch {
        match self.cut.get() {
            Some(c) => c.watch(),
            None => Arc::<crate::live::Cut>::default().watch(),
        }
    }

    /// Makes the shared state store apply other instances' changes to this app's router
    /// (after a reload swapped it in, or after other runtimes joined its state).
    pub fn follow_state(&self) {
        if let Some(s) = &self.state {
            s.follow(self.router.state_handle());
        }
    }

    /// Whether a client key may use a model (its allow-list).
    pub fn allows(&self, key: &ClientKey, model: &str) -> bool {
        match &key.models {
            None => true,
            Some(globs) => globs.iter().any(|g| glob_match(g, model)),
        }
    }
}

#[cfg(test)]
mod zero_config_tests {
    use super::{zero_config, zero_config_text};

    #[test]
    fn every_service_with_a_key_serves_its_own_names_groq_and_cerebras_included() {
        let vars = [
            ("OPENAI_API_KEY", "sk-o"),
            ("DEEPSEEK_API_KEY", "sk-d"),
            ("GROQ_API_KEY", "gsk-g"),
            ("CEREBRAS_API_KEY", "csk-c"),
            ("WEIR_API_KEY", "sk-client"),
        ];
        let provider_of = |vars: &[(&'static str, &'static str)], model: &str| {
            let vars = vars.to_vec();
            let env = move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            };
            let (app, _) = zero_config(&env).unwrap();
            app.router
                .resolve(model)
                .map(|r| r.targets[0].provider.clone())
        };
        for (model, provider) in [
            ("llama-3.3-70b-versatile", "groq"),
            ("llama-3.1-8b-instant", "groq"),
            ("openai/gpt-oss-120b", "groq"),
            ("meta-llama/llama-4-scout-17b-16e-instruct", "groq"),
            ("deepseek-r1-distill-llama-70b", "groq"),
            ("llama-3.3-70b", "cerebras"),
            ("llama3.1-8b", "cerebras"),
            ("gpt-oss-120b", "cerebras"),
            ("qwen-3-32b", "cerebras"),
            ("zai-glm-4.6", "cerebras"),
            ("gpt-4o", "openai"),
            ("deepseek-chat", "deepseek"),
            ("mock", "mock"),
        ] {
            assert_eq!(
                provider_of(&vars, model).as_deref(),
                Some(provider),
                "{model}"
            );
        }
        // With OpenRouter, vendor/model names are OpenRouter's.
        let mut with_router = vars.to_vec();
        with_router.push(("OPENROUTER_API_KEY", "sk-or"));
        assert_eq!(
            provider_of(&with_router, "openai/gpt-oss-120b").as_deref(),
            Some("openrouter")
        );
        assert_eq!(
            provider_of(&with_router, "llama-3.3-70b-versatile").as_deref(),
            Some("groq")
        );
        // Without their keys, their names are nobody's.
        assert_eq!(provider_of(&vars[..2], "llama-3.3-70b"), None);
    }

    #[test]
    fn vertex_serves_claudes_own_ids_without_an_anthropic_key() {
        let env = |anthropic: bool| {
            move |name: &str| {
                match name {
                    "GOOGLE_CLOUD_PROJECT" => Some("p"),
                    "ANTHROPIC_API_KEY" if anthropic => Some("sk-ant"),
                    _ => None,
                }
                .map(str::to_owned)
            }
        };
        let route = |provider: &str| {
            format!("[[models]]\nname = \"claude-*\"\ntargets = [{{ provider = \"{provider}\" }}]")
        };
        let text = super::zero_config_text(&env(false), true);
        assert!(text.contains(&route("vertex")), "{text}");
        let text = super::zero_config_text(&env(true), true);
        assert!(text.contains(&route("anthropic")), "{text}");
        assert!(!text.contains(&route("vertex")), "{text}");
    }

    #[test]
    fn a_base_url_pointing_at_the_gateway_itself_is_not_an_upstream() {
        for (url, listen, loops) in [
            ("http://127.0.0.1:4000", "127.0.0.1:4000", true),
            ("http://localhost:4000/", "127.0.0.1:4000", true),
            ("http://[::1]:4000/v1", "127.0.0.1:4000", true),
            ("http://LOCALHOST:4000", "0.0.0.0:4000", true),
            ("http://127.0.0.1:4000/v1", "[::1]:4000", true),
            ("http://127.0.0.1:4001", "127.0.0.1:4000", false),
            ("https://api.anthropic.com", "127.0.0.1:4000", false),
            ("http://10.0.0.5:4000", "127.0.0.1:4000", false),
            ("http://127.0.0.1", "127.0.0.1:80", true),
            ("not a url", "127.0.0.1:4000", false),
        ] {
            assert_eq!(super::points_at(url, listen), loops, "{url} {listen}");
        }
        // Zero-config leaves such a base URL out: the provider uses the service's own.
        let env = |listen: Option<&'static str>| {
            move |name: &str| {
                match name {
                    "ANTHROPIC_API_KEY" => Some("sk-ant-x"),
                    "ANTHROPIC_BASE_URL" => Some("http://localhost:4000"),
                    "OPENAI_API_KEY" => Some("sk-o"),
                    "OPENAI_BASE_URL" => Some("http://127.0.0.1:4100/v1"),
                    "WEIR_LISTEN" => listen,
                    _ => None,
                }
                .map(str::to_owned)
            }
        };
        assert_eq!(super::self_pointing(&env(None)), ["ANTHROPIC_BASE_URL"]);
        assert_eq!(
            super::self_pointing(&env(Some("127.0.0.1:4100"))),
            ["OPENAI_BASE_URL"]
        );
        let (app, _) = super::zero_config(&env(None)).unwrap();
        assert!(
            !app.upstreams["anthropic"].contains("localhost"),
            "{:?}",
            app.upstreams
        );
        assert!(
            app.upstreams["openai"].contains(":4100"),
            "{:?}",
            app.upstreams
        );
        // A config file's provider pointed there is an error.
        let text = "[server]\nlisten = \"127.0.0.1:4321\"\n[providers.a]\nkind = \"anthropic\"\n\
                    base_url = \"http://localhost:4321\"\nkeys = [\"k\"]\n";
        let cfg = crate::config::parse_all(None, text).unwrap();
        let errors = super::build(&cfg, None, text).err().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("this gateway's own address")
                    && e.position == Some((5, 1))),
            "{errors:?}"
        );
    }

    #[test]
    fn weir_listen_and_weir_admin_listen_move_zero_config() {
        let env = |name: &str| match name {
            "WEIR_LISTEN" => Some("127.0.0.1:4010".to_owned()),
            "WEIR_ADMIN_LISTEN" => Some("127.0.0.1:4011".to_owned()),
            "WEIR_ADMIN_KEY" => Some("sk-admin".to_owned()),
            _ => None,
        };
        let (app, _) = zero_config(&env).unwrap();
        assert_eq!(app.listen, "127.0.0.1:4010");
        assert_eq!(app.admin_listen.as_deref(), Some("127.0.0.1:4011"));
        let (app, _) = zero_config(&|_: &str| None).unwrap();
        assert_eq!(app.listen, "127.0.0.1:4000");
        assert_eq!(app.admin_listen, None);
        // Never a network address: zero-config's key was chosen by nobody.
        for (var, addr) in [
            ("WEIR_LISTEN", "0.0.0.0:4010"),
            ("WEIR_ADMIN_LISTEN", "192.168.1.5:4011"),
        ] {
            let env = |name: &str| (name == var).then(|| addr.to_owned());
            let errors = zero_config(&env).err().unwrap();
            assert!(
                errors[0].to_string().contains("not a loopback address"),
                "{}",
                errors[0]
            );
        }
        // What is no address is told so; the gateway's own file is never quoted.
        for addr in ["127.0.0.1", "127.0.0.1:99999", "notanaddr", "localhost:abc"] {
            let env = |name: &str| (name == "WEIR_LISTEN").then(|| addr.to_owned());
            let errors = zero_config(&env).err().unwrap();
            assert_eq!(
                errors[0].to_string(),
                format!("WEIR_LISTEN={addr} is not an address to listen on: give an IP address and a port, e.g. 127.0.0.1:4000")
            );
        }
        let env = |name: &str| match name {
            "WEIR_LISTEN" | "WEIR_ADMIN_LISTEN" => Some("127.0.0.1:4010".to_owned()),
            "WEIR_ADMIN_KEY" => Some("sk-admin".to_owned()),
            _ => None,
        };
        let errors = zero_config(&env).err().unwrap();
        assert_eq!(
            errors[0].to_string(),
            "zero-config: WEIR_ADMIN_LISTEN must differ from WEIR_LISTEN (`127.0.0.1:4010`): the admin API is never served on the API port",
        );
    }

    #[test]
    fn bedrock_is_in_zero_config_only_with_a_region_and_credentials() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let full = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]);
        let text = zero_config_text(&full, true);
        assert!(
            text.contains("[providers.bedrock]\nkind = \"bedrock\"\nregion = \"${AWS_REGION}\"")
        );
        assert!(text.contains("name = \"us.*\"\ntargets = [{ provider = \"bedrock\" }]"));
        assert!(text.contains("name = \"anthropic.*\""));
        assert!(!zero_config_text(&full, false).contains("bedrock"));
        let bearer = env(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_BEARER_TOKEN_BEDROCK", "t"),
        ]);
        assert!(zero_config_text(&bearer, true).contains("region = \"${AWS_DEFAULT_REGION}\""));
        let no_credentials = env(&[("AWS_REGION", "us-west-2")]);
        assert!(!zero_config_text(&no_credentials, true).contains("bedrock"));
        let no_region = env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        assert!(!zero_config_text(&no_region, true).contains("bedrock"));
    }
}
