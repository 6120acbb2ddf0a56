//! Turning a config (or the zero-config environment) into a running gateway's parts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weir_model::{Provider, Secret};
use weir_router::{glob_match, Route, Router, Target};
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
        if let Some(s) = &m.strategy {
            if s.get_ref() != "fallback" {
                let msg = if ["round_robin", "weighted", "least_latency"]
                    .contains(&s.get_ref().as_str())
                {
                    not_built(&format!("strategy `{}`", s.get_ref()))
                } else {
                    format!(
                        "unknown strategy `{}` (fallback | round_robin | weighted | least_latency)",
                        s.get_ref()
                    )
                };
                errors.push(src.error_at(Some(s.span().start), msg));
            }
        }
        if m.targets.is_empty() {
            errors.push(src.error_at(None, format!("model `{}` has no targets", m.name)));
        }
        let mut targets = Vec::new();
        for t in &m.targets {
            if !cfg.providers.contains_key(t.provider.get_ref()) {
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
                errors.push(src.error_at(
                    Some(w.span().start),
                    not_built("`weight` (the weighted strategy)"),
                ));
            }
            targets.push(Target {
                provider: t.provider.get_ref().clone(),
                model: t.model.clone(),
            });
        }
        routes.push(Route::new(m.name.clone(), targets));
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
    let router = match Router::new(providers, routes.clone()) {
        Ok(r) => Some(r),
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
            metrics: Arc::new(crate::metrics::Metrics::default()),
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
