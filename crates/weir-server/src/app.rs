//! Turning a config (or the zero-config environment) into a running gateway's parts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weir_model::{Provider, Secret};
use weir_router::{glob_match, Route, Router, Strategy, Target, Unsupported};
use weir_upstream::Upstream;

use crate::auth::{ClientKey, Keys};
use crate::config::{Config, ConfigError, ProviderConfig, Source};

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
    /// The API address.
    pub listen: String,
    /// How long in-flight requests may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Model names `GET /v1/models` lists (exact names; globs cannot be enumerated).
    pub listed_models: Vec<String>,
    /// The admin address, if the admin API is served.
    pub admin_listen: Option<String>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Provider ids and kinds, for `/status`.
    pub provider_kinds: Vec<(String, String)>,
    /// When the gateway started.
    pub started: std::time::Instant,
    /// A request's whole time budget (`[timeouts] total`), retries included.
    pub total_timeout: Duration,
}

/// Provider kinds this build implements.
const BUILT_KINDS: &[&str] = &["anthropic", "openai", "mock"];
/// Provider kinds the contract names that are not built yet.
const PLANNED_KINDS: &[&str] = &["bedrock", "vertex", "gemini", "azure", "ollama"];

fn not_built(what: &str) -> String {
    format!("{what} is not implemented in this build of Weir yet; remove it (the gateway will not silently ignore it)")
}

/// Builds the gateway from a parsed config. Every problem found is reported, each at its
/// position in the file.
pub fn build(cfg: &Config, file: Option<&Path>, text: &str) -> Result<App, Vec<ConfigError>> {
    let src = Source { file, text };
    let mut errors = Vec::new();
    let upstream = match Upstream::new(cfg.timeouts.connect.0) {
        Ok(u) => u,
        Err(e) => return Err(vec![src.error_at(None, e)]),
    };

    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    let mut implicit: Vec<Route> = Vec::new();
    for (id, p) in &cfg.providers {
        match provider(id, p, cfg, &upstream) {
            Ok((prov, models)) => {
                for m in models {
                    implicit.push(Route::new(m, vec![Target::new(id.clone())]));
                }
                providers.push(prov);
            }
            Err(msg) => errors.push(src.error_at(Some(p.kind.span().start), msg)),
        }
    }

    let mut routes = Vec::new();
    for m in &cfg.models {
        let strategy = match &m.strategy {
            None => Strategy::Fallback,
            Some(s) => match s.get_ref().parse::<Strategy>() {
                Ok(st) => st,
                Err(msg) => {
                    errors.push(src.error_at(Some(s.span().start), msg));
                    Strategy::Fallback
                }
            },
        };
        let unsupported = match m.unsupported.as_ref().map(|u| (u, u.get_ref().as_str())) {
            None | Some((_, "skip")) => Unsupported::Skip,
            Some((_, "drop")) => Unsupported::Drop,
            Some((u, other)) => {
                errors.push(src.error_at(
                    Some(u.span().start),
                    format!("unknown `unsupported = \"{other}\"` (skip | drop)"),
                ));
                Unsupported::Skip
            }
        };
        if m.targets.is_empty() {
            errors.push(src.error_at(None, format!("model `{}` has no targets", m.name)));
        }
        let mut targets = Vec::new();
        for t in &m.targets {
            let pcfg = cfg.providers.get(t.provider.get_ref());
            if pcfg.is_none() {
                let known: Vec<&str> = cfg.providers.keys().map(String::as_str).collect();
                errors.push(src.error_at(
                    Some(t.provider.span().start),
                    format!(
                        "model `{}` targets provider `{}`, which is not configured (providers: {})",
                        m.name,
                        t.provider.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if let Some(w) = &t.weight {
                if strategy != Strategy::Weighted {
                    errors.push(src.error_at(
                        Some(w.span().start),
                        format!(
                            "`weight` only applies to `strategy = \"weighted\"` (model `{}` uses `{}`)",
                            m.name,
                            strategy.name()
                        ),
                    ));
                }
            }
            let mut target = Target::new(t.provider.get_ref().clone())
                .weight(t.weight.as_ref().map_or(1, |w| *w.get_ref()));
            target.model.clone_from(&t.model);
            let caps_cfg = pcfg.and_then(|p| p.capabilities);
            if let (Some(c), Some(p)) = (
                caps_cfg,
                providers.iter().find(|p| p.id() == t.provider.get_ref()),
            ) {
                target.capabilities =
                    Some(c.apply(p.capabilities(t.model.as_deref().unwrap_or(&m.name))));
            }
            targets.push(target);
        }
        if strategy == Strategy::Weighted
            && !targets.is_empty()
            && targets.iter().all(|t| t.weight == 0)
        {
            errors.push(src.error_at(
                None,
                format!(
                    "model `{}` is weighted but every target has weight 0",
                    m.name
                ),
            ));
        }
        routes.push(
            Route::new(m.name.clone(), targets)
                .strategy(strategy)
                .sticky(m.sticky.unwrap_or(true))
                .unsupported(unsupported),
        );
    }
    // Mock providers serve their own model names unless the table says otherwise.
    for r in implicit {
        if !routes.iter().any(|x| x.name == r.name) {
            routes.push(r);
        }
    }

    let keys = match Keys::from_config(&cfg.auth.keys, &src) {
        Ok(k) => k,
        Err(mut e) => {
            errors.append(&mut e);
            Keys::default()
        }
    };
    if let Some(p) = &cfg.pricing {
        errors.push(src.error_at(
            Some(p.span().start),
            not_built("[pricing] (cost attribution and budgets)"),
        ));
    }
    if let Some(s) = &cfg.state {
        if s.backend.get_ref() != "memory" {
            errors.push(src.error_at(
                Some(s.backend.span().start),
                not_built("a shared state backend other than `memory`"),
            ));
        }
    }
    if let Some(l) = &cfg.ledger {
        errors.push(src.error_at(Some(l.url.span().start), not_built("[ledger]")));
    }
    if keys.is_empty() && !is_loopback(&cfg.server.listen) {
        errors.push(src.error_at(
            None,
            format!(
                "server.listen = \"{}\" is not a loopback address and no [[auth.keys]] are configured: \
                 add client keys before exposing the gateway",
                cfg.server.listen
            ),
        ));
    }

    if cfg.server.admin_listen.is_some() && cfg.auth.admin_key.is_none() {
        errors.push(src.error_at(
            None,
            "server.admin_listen is set but auth.admin_key is not: the admin API needs a key",
        ));
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let router = match Router::with_policy(providers, routes.clone(), cfg.routing.policy()) {
        Ok(r) => Some(r.with_observer(metrics.clone())),
        Err(e) => {
            if errors.is_empty() {
                errors.push(src.error_at(None, e));
            }
            None
        }
    };
    match router {
        Some(router) if errors.is_empty() => Ok(App {
            listed_models: routes
                .iter()
                .filter(|r| !r.name.contains(['*', '?']))
                .map(|r| r.name.clone())
                .collect(),
            router,
            keys,
            admin_key: cfg.auth.admin_key.clone().map(Secret::new),
            max_request_bytes: cfg.server.max_request_bytes,
            listen: cfg.server.listen.clone(),
            shutdown_grace: cfg.server.shutdown_grace.0,
            admin_listen: cfg.auth.admin_key.as_ref().map(|_| {
                cfg.server
                    .admin_listen
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1:4001".into())
            }),
            metrics,
            total_timeout: cfg.timeouts.total.0,
            provider_kinds: cfg
                .providers
                .iter()
                .map(|(id, p)| (id.clone(), p.kind.get_ref().clone()))
                .collect(),
            started: std::time::Instant::now(),
        }),
        _ => Err(errors),
    }
}

fn provider(
    id: &str,
    p: &ProviderConfig,
    cfg: &Config,
    upstream: &Upstream,
) -> Result<(Arc<dyn Provider>, Vec<String>), String> {
    let kind = p.kind.get_ref().as_str();
    if PLANNED_KINDS.contains(&kind) {
        return Err(not_built(&format!("provider kind `{kind}`")));
    }
    if !BUILT_KINDS.contains(&kind) {
        return Err(format!(
            "unknown provider kind `{kind}` (anthropic | openai | bedrock | vertex | gemini | azure | ollama | mock)"
        ));
    }
    if p.preset.is_some() {
        return Err(not_built("`preset` (OpenAI-compatible presets)"));
    }
    let mut keys: Vec<Secret> = p.keys.iter().cloned().map(Secret::new).collect();
    if let Some(k) = &p.key {
        keys.push(Secret::new(k.clone()));
    }
    let timeouts = p.timeouts.as_ref().unwrap_or(&cfg.timeouts).to_timeouts();
    Ok(match kind {
        "anthropic" => {
            let mut encode = weir_anthropic::EncodeOptions::default();
            if let Some(m) = p.default_max_tokens {
                encode.default_max_tokens = m;
            }
            let c = weir_anthropic::AnthropicConfig {
                id: id.to_owned(),
                base_url: p
                    .base_url
                    .clone()
                    .unwrap_or_else(|| weir_anthropic::DEFAULT_BASE_URL.into()),
                keys,
                timeouts,
                encode,
            };
            (
                Arc::new(weir_anthropic::AnthropicProvider::new(c, upstream.clone())),
                Vec::new(),
            )
        }
        "openai" => {
            let c = weir_openai::OpenAiConfig {
                id: id.to_owned(),
                base_url: p
                    .base_url
                    .clone()
                    .unwrap_or_else(|| weir_openai::DEFAULT_BASE_URL.into()),
                keys,
                timeouts,
                encode: weir_openai::EncodeOptions::default(),
            };
            (
                Arc::new(weir_openai::OpenAiProvider::new(c, upstream.clone())),
                Vec::new(),
            )
        }
        _ => {
            let mut opts = weir_mock::MockOptions::default();
            if let Some(d) = p.stream_delay {
                opts.stream_delay = d.0;
            }
            let mock = weir_mock::MockProvider::new(id, opts);
            let models = mock.models().to_vec();
            (Arc::new(mock), models)
        }
    })
}

fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}

/// The zero-config gateway: every provider whose standard credentials are in the
/// environment, plus the built-in `mock`; listening on 127.0.0.1:4000; one client key
/// (`WEIR_API_KEY`, or a generated one, returned so the caller can print it once).
pub fn zero_config(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(App, Option<String>), Vec<ConfigError>> {
    let mut text = String::from("# zero-config\n");
    let mut model_routes: Vec<(&str, &str)> = Vec::new();
    if env("ANTHROPIC_API_KEY").is_some() {
        text.push_str(
            "[providers.anthropic]\nkind = \"anthropic\"\nkeys = [\"${ANTHROPIC_API_KEY}\"]\n",
        );
        if env("ANTHROPIC_BASE_URL").is_some() {
            text.push_str("base_url = \"${ANTHROPIC_BASE_URL}\"\n");
        }
        model_routes.push(("claude-*", "anthropic"));
    }
    if env("OPENAI_API_KEY").is_some() {
        text.push_str("[providers.openai]\nkind = \"openai\"\nkeys = [\"${OPENAI_API_KEY}\"]\n");
        if env("OPENAI_BASE_URL").is_some() {
            text.push_str("base_url = \"${OPENAI_BASE_URL}\"\n");
        }
        for g in ["gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "codex-*"] {
            model_routes.push((g, "openai"));
        }
    }
    for var in [
        "GEMINI_API_KEY",
        "GROQ_API_KEY",
        "XAI_API_KEY",
        "OPENROUTER_API_KEY",
        "CEREBRAS_API_KEY",
        "DEEPSEEK_API_KEY",
        "GOOGLE_CLOUD_PROJECT",
    ] {
        if env(var).is_some() {
            tracing::warn!("{var} is set, but its provider is not built yet; it is not enabled");
        }
    }
    if env("AWS_REGION").is_some() {
        tracing::warn!(
            "AWS_REGION is set, but the Bedrock provider is not built yet; it is not enabled"
        );
    }
    text.push_str("[providers.mock]\nkind = \"mock\"\n");
    for (glob, provider) in &model_routes {
        text.push_str(&format!(
            "[[models]]\nname = \"{glob}\"\ntargets = [{{ provider = \"{provider}\" }}]\n"
        ));
    }
    let (key, generated) = match env("WEIR_API_KEY").filter(|k| !k.is_empty()) {
        Some(k) => (k, None),
        None => {
            let k = crate::auth::generate_key();
            (k.clone(), Some(k))
        }
    };
    text.push_str("[[auth.keys]]\nname = \"default\"\nkey = \"${WEIR_API_KEY}\"\n");
    if env("WEIR_ADMIN_KEY").is_some_and(|k| !k.is_empty()) {
        text.push_str("[auth]\nadmin_key = \"${WEIR_ADMIN_KEY}\"\n");
    }
    let env_with_key = |name: &str| {
        if name == "WEIR_API_KEY" {
            Some(key.clone())
        } else {
            env(name)
        }
    };
    let text = crate::config::interpolate(None, &text, &env_with_key)?;
    let cfg = crate::config::parse(None, &text).map_err(|e| vec![e])?;
    let app = build(&cfg, None, &text)?;
    Ok((app, generated))
}

impl App {
    /// Whether a client key may use a model (its allow-list).
    pub fn allows(&self, key: &ClientKey, model: &str) -> bool {
        match &key.models {
            None => true,
            Some(globs) => globs.iter().any(|g| glob_match(g, model)),
        }
    }
}
