//! Weir's config file and what it builds: TOML with `${ENV}` interpolation, unknown keys
//! rejected, every error reported with file:line:column (every key is described in the
//! README's commented `weir.toml`); then the providers and the [`Router`] it describes.
//!
//! This is how a Rust service embeds Weir's routing from a config string, without the
//! HTTP server:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let router = weir_config::router_from_str(r#"
//!     [providers.demo]
//!     kind = "mock"
//!
//!     [[models]]
//!     name = "fast"
//!     targets = [{ provider = "demo", model = "mock" }]
//! "#)?;
//! # let _ = router; Ok(()) }
//! ```
//!
//! Only the routing sections are read here: `[providers]`, `[[models]]`, `[timeouts]`
//! and `[routing]`. Client keys and their limits (`[auth]`), `[pricing]`,
//! `[ledger]`, `[state]` and `[server]` are the HTTP server's (`weir-server`), and a config
//! string holding them builds the same router. A [`Router`] is `Send + Sync`: share one
//! behind an `Arc` across tasks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod file;

use std::sync::Arc;

use weir_model::{Provider, Secret};
use weir_router::{Route, Router, Strategy, Target, Unsupported};
use weir_upstream::Upstream;

pub use file::*;

/// Provider kinds this build implements.
pub const BUILT_KINDS: &[&str] = &[
    "anthropic",
    "openai",
    "azure",
    "ollama",
    "vertex",
    "gemini",
    "bedrock",
    "mock",
];
/// Provider kinds the contract names that are not built yet.
pub const PLANNED_KINDS: &[&str] = &[];

/// The error for a config feature this build does not have.
pub fn not_built(what: &str) -> String {
    format!("{what} is not implemented in this build of Weir yet; remove it (the gateway will not silently ignore it)")
}

/// What a config builds for routing.
#[derive(Debug)]
pub struct Routing {
    /// The router over every configured provider.
    pub router: Router,
    /// The exact model names, to list (what glob routes serve comes from their providers'
    /// own listings: `Router::provider_models`).
    pub listed_models: Vec<String>,
    /// Provider ids and kinds, in id order.
    pub provider_kinds: Vec<(String, String)>,
}

/// A provider's own settings over its OpenAI encoding defaults.
fn openai_encode(
    p: &ProviderConfig,
    mut encode: weir_openai::EncodeOptions,
) -> weir_openai::EncodeOptions {
    if let Some(b) = p.reasoning_effort_from_thinking {
        encode.reasoning_effort_from_thinking = b;
    }
    if let Some(b) = p.reasoning_content_in_history {
        encode.reasoning_content_in_history = b;
    }
    if let Some(b) = p.system_as_user {
        encode.system_as_user = b;
    }
    if let Some(n) = p.max_output_tokens {
        encode.max_output_tokens = Some(n);
    }
    encode
}

/// Builds the providers and the router of a parsed config. Every problem found is
/// reported, each at its position in the file. Sections that are not about routing
/// (`[server]`, `[auth]`, `[pricing]`, ...) are left to the caller.
pub fn build_routing(cfg: &Config, src: &Source<'_>) -> Result<Routing, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let upstream = match Upstream::new(cfg.timeouts.connect.0) {
        Ok(u) => u,
        Err(e) => return Err(vec![src.error_at(None, e)]),
    };

    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    let mut implicit: Vec<Route> = Vec::new();
    for (id, p) in &cfg.providers {
        // A provider with a connect timeout of its own gets a client of its own (the
        // timeout is the connector's).
        let own = match p.timeouts.as_ref().and_then(|t| t.connect) {
            Some(c) if c != cfg.timeouts.connect => match Upstream::new(c.0) {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push(src.error_at(None, e));
                    continue;
                }
            },
            _ => None,
        };
        match provider(id, p, cfg, own.as_ref().unwrap_or(&upstream)) {
            Ok((prov, models)) => {
                for m in models {
                    implicit.push(Route::new(m, vec![Target::new(id.clone())]));
                }
                if p.responses_api == Some(true) && !prov.serves_responses() {
                    // (Only Azure's deployment URLs get here: other kinds without the
                    // API are refused the key by `provider`.)
                    errors.push(src.error_at(
                        Some(p.kind.span().start),
                        "responses_api = true, but Azure's deployment URLs have no Responses API (a base_url ending in /openai/v1 has): leave it unset to serve it by translation",
                    ));
                    continue;
                }
                let upstream = format!("{id} {}", p.upstream_identity());
                providers.push(weir_openai::ResponsesBridge::wrap_with(
                    prov,
                    p.responses_api,
                    &upstream,
                ));
            }
            Err(msg) => {
                // An error about base_url points at it; others at the provider's kind.
                let at = match &p.base_url {
                    Some(b) if msg.starts_with("base_url") => b.span().start,
                    _ => p.kind.span().start,
                };
                errors.push(src.error_at(Some(at), msg));
            }
        }
    }

    let mut routes = Vec::new();
    for (i, m) in cfg.models.iter().enumerate() {
        let index = i.to_string();
        let name_at = || src.key_at(&["models", &index, "name"]);
        if m.name.trim().is_empty() {
            errors.push(
                src.error_at(
                    name_at(),
                    "a [[models]] name is empty: no request names that model (for every name, \
                 write name = \"*\")"
                        .to_owned(),
                ),
            );
        }
        if let Some(first) = cfg.models[..i].iter().position(|o| o.name == m.name) {
            let first = first.to_string();
            errors.push(src.error_at(
                name_at(),
                format!(
                    "model `{}` is already routed by an earlier [[models]] entry{}: this one \
                     would never be reached",
                    m.name,
                    src.key_at(&["models", &first, "name"])
                        .map(|o| {
                            let (l, c) = crate::file::line_col(src.text, o);
                            format!(" ({l}:{c})")
                        })
                        .unwrap_or_default()
                ),
            ));
        }
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
            errors.push(src.error_at(name_at(), format!("model `{}` has no targets", m.name)));
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
            #[cfg(feature = "bedrock")]
            if let (Some(pc), Some(model)) = (pcfg, &t.model) {
                if pc.kind.get_ref() == "bedrock" {
                    if let Some(fix) = weir_bedrock::check_model_id(model) {
                        errors.push(src.error_at(Some(t.provider.span().start), fix));
                    }
                }
            }
            let mut target = Target::new(t.provider.get_ref().clone())
                .weight(t.weight.as_ref().map_or(1, |w| *w.get_ref()));
            target.model.clone_from(&t.model);
            for (limit, key) in [
                (&t.default_max_tokens, "default_max_tokens"),
                (&t.max_output_tokens, "max_output_tokens"),
            ] {
                if let Some(n) = limit.as_ref().filter(|n| *n.get_ref() == 0) {
                    errors.push(src.error_at(
                        Some(n.span().start),
                        format!("{key} must be at least 1 (model `{}`)", m.name),
                    ));
                }
            }
            if let (Some(d), Some(cap)) = (&t.default_max_tokens, &t.max_output_tokens) {
                if d.get_ref() > cap.get_ref() {
                    errors.push(src.error_at(
                        Some(d.span().start),
                        format!(
                            "default_max_tokens ({}) is above max_output_tokens ({}) (model `{}`)",
                            d.get_ref(),
                            cap.get_ref(),
                            m.name
                        ),
                    ));
                }
            }
            target.default_max_tokens = t.default_max_tokens.as_ref().map(|n| *n.get_ref());
            target.max_output_tokens = t.max_output_tokens.as_ref().map(|n| *n.get_ref());
            let provider_caps = pcfg.and_then(|p| p.capabilities);
            if provider_caps.is_some() || t.capabilities.is_some() {
                if let Some(p) = providers.iter().find(|p| p.id() == t.provider.get_ref()) {
                    let mut caps = p.capabilities(t.model.as_deref().unwrap_or(&m.name));
                    for c in [provider_caps, t.capabilities].into_iter().flatten() {
                        caps = c.apply(caps);
                    }
                    target.capabilities = Some(caps);
                }
            }
            targets.push(target);
        }
        if strategy == Strategy::Weighted
            && !targets.is_empty()
            && targets.iter().all(|t| t.weight == 0)
        {
            errors.push(src.error_at(
                name_at(),
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

    let router = match Router::with_policy(providers, routes.clone(), cfg.routing.policy()) {
        Ok(r) => Some(r),
        Err(e) => {
            if errors.is_empty() {
                errors.push(src.error_at(None, e));
            }
            None
        }
    };
    match router {
        Some(router) if errors.is_empty() => Ok(Routing {
            router,
            listed_models: routes
                .iter()
                .filter(|r| !r.name.contains(['*', '?']))
                .map(|r| r.name.clone())
                .collect(),
            provider_kinds: cfg
                .providers
                .iter()
                .map(|(id, p)| (id.clone(), p.kind.get_ref().clone()))
                .collect(),
        }),
        _ => Err(errors),
    }
}

/// A router from config text: `${ENV}` references are filled from the process
/// environment, then the text is parsed and built like a config file.
pub fn router_from_str(text: &str) -> Result<Router, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    let text = interpolate(None, text, &env).map_err(ConfigErrors)?;
    let cfg = parse(None, &text).map_err(|e| ConfigErrors(vec![e]))?;
    build_routing(
        &cfg,
        &Source {
            file: None,
            text: &text,
        },
    )
    .map(|r| r.router)
    .map_err(ConfigErrors)
}

/// Every problem a config has, each at its position: a std error (one problem per line),
/// and the list itself.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl std::ops::Deref for ConfigErrors {
    type Target = [ConfigError];
    fn deref(&self) -> &[ConfigError] {
        &self.0
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
    // Every key the kind would not read, said at once (one fix, not one per `weir check`).
    let mut wrong: Vec<String> = Vec::new();
    if p.preset.is_some() && kind != "openai" {
        wrong.push(format!("preset applies to kind = \"openai\", not `{kind}`"));
    }
    if !p.drop_betas.is_empty() && kind != "bedrock" {
        wrong.push(format!(
            "drop_betas applies to kind = \"bedrock\", not `{kind}`"
        ));
    }
    if !p.anthropic_models.is_empty() && kind != "bedrock" {
        wrong.push(format!(
            "anthropic_models applies to kind = \"bedrock\", not `{kind}`"
        ));
    }
    if p.max_output_tokens == Some(0) {
        return Err("max_output_tokens must be at least 1".into());
    }
    let reasoning_set: Vec<&str> = [
        (
            p.reasoning_effort_from_thinking.is_some(),
            "reasoning_effort_from_thinking",
        ),
        (
            p.reasoning_content_in_history.is_some(),
            "reasoning_content_in_history",
        ),
        (p.system_as_user.is_some(), "system_as_user"),
        (p.max_output_tokens.is_some(), "max_output_tokens"),
    ]
    .into_iter()
    .filter_map(|(set, key)| set.then_some(key))
    .collect();
    let reasoning_options = !reasoning_set.is_empty();
    let foundry_anthropic = kind == "azure"
        && p.base_url()
            .is_some_and(|u| u.trim_end_matches('/').ends_with("/anthropic"));
    if reasoning_options && (!matches!(kind, "openai" | "azure") || foundry_anthropic) {
        wrong.push(format!(
            "{} {} to OpenAI-dialect providers (kind = \"openai\" or \"azure\"), not `{kind}`{}",
            reasoning_set.join(", "),
            if reasoning_set.len() == 1 {
                "applies"
            } else {
                "apply"
            },
            if foundry_anthropic {
                " with Foundry's Anthropic endpoint"
            } else {
                ""
            }
        ));
    }
    if p.responses_api.is_some()
        && (!matches!(kind, "openai" | "azure" | "mock") || foundry_anthropic)
    {
        wrong.push(format!(
            "responses_api applies to kinds openai, azure and mock, not `{kind}`{}: it serves the Responses API by translation",
            if foundry_anthropic {
                " with Foundry's Anthropic endpoint"
            } else {
                ""
            }
        ));
    }
    if p.api_version.is_some() && kind != "azure" {
        wrong.push(format!(
            "api_version applies to kind = \"azure\", not `{kind}`"
        ));
    }
    // Keys a kind would not read are errors, as unknown ones are: a typo or a table
    // pasted from another provider must not pass for a setting.
    let unread = [
        (p.region.is_some(), "region", &["bedrock", "vertex"][..]),
        (p.project.is_some(), "project", &["vertex"][..]),
        (p.stream_delay.is_some(), "stream_delay", &["mock"][..]),
        (
            p.default_max_tokens.is_some(),
            "default_max_tokens",
            &["anthropic", "bedrock", "vertex", "azure"][..],
        ),
    ];
    for (set, key, kinds) in unread {
        // (Azure reads `default_max_tokens` only for Foundry's Anthropic endpoint.)
        let azure_openai = kind == "azure" && !foundry_anthropic && key == "default_max_tokens";
        if set && (!kinds.contains(&kind) || azure_openai) {
            let kinds: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
            wrong.push(format!(
                "{key} applies to kind = {}, not `{kind}`",
                kinds.join(" | ")
            ));
        }
    }
    if kind == "mock" && (p.base_url.is_some() || !p.keys.is_empty() || p.key.is_some()) {
        wrong.push("the built-in mock answers itself: it takes no base_url or keys".into());
    }
    let has_keys = !p.keys.is_empty() || p.key.is_some();
    if kind == "bedrock" && has_keys {
        wrong.push(
            "kind = \"bedrock\" takes no keys: credentials come from the AWS environment \
             variables, the shared credentials files (AWS_PROFILE), or AWS_BEARER_TOKEN_BEDROCK"
                .into(),
        );
    }
    if kind == "vertex" && has_keys {
        wrong.push(
            "kind = \"vertex\" takes no keys: it authenticates with Google credentials \
             (GOOGLE_APPLICATION_CREDENTIALS, or gcloud auth application-default login)"
                .into(),
        );
    }
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let mut keys: Vec<Secret> = p.keys.clone();
    if let Some(k) = &p.key {
        keys.push(k.clone());
    }
    // (Often a `${VAR}` set but empty.) Sent, it is a 401 on every call that picks it.
    if let Some(i) = keys.iter().position(|k| k.expose().trim().is_empty()) {
        return Err(format!("keys[{i}] is empty"));
    }
    // A key goes in a header: a control character (a line break pasted in) would fail
    // every call with a 500.
    if let Some(i) = keys
        .iter()
        .position(|k| k.expose().chars().any(char::is_control))
    {
        return Err(format!(
            "keys[{i}] holds a control character (a line break?): it cannot be sent in a header"
        ));
    }
    if let Some(i) = (1..keys.len()).find(|&i| keys[..i].contains(&keys[i])) {
        return Err(format!(
            "keys[{i}] repeats an earlier key (a pool rotates distinct keys)"
        ));
    }
    let timeouts = p
        .timeouts
        .as_ref()
        .map_or_else(|| cfg.timeouts.clone(), |t| t.over(&cfg.timeouts))
        .to_timeouts();
    Ok(match kind {
        "anthropic" => {
            let mut encode = weir_anthropic::EncodeOptions::default();
            if let Some(m) = p.default_max_tokens {
                encode.default_max_tokens = Some(m);
            }
            let c = weir_anthropic::AnthropicConfig {
                id: id.to_owned(),
                base_url: p
                    .base_url()
                    .map_or_else(|| weir_anthropic::DEFAULT_BASE_URL.into(), str::to_owned),
                keys,
                timeouts,
                encode,
            };
            (
                Arc::new(weir_anthropic::AnthropicProvider::new(c, upstream.clone())?),
                Vec::new(),
            )
        }
        "openai" => {
            let preset = match &p.preset {
                Some(name) => Some(weir_openai::Preset::parse(name.get_ref())?),
                None => p.base_url().and_then(weir_openai::Preset::infer),
            };
            let base_url = p.base_url().map(str::to_owned).unwrap_or_else(|| {
                preset
                    .map_or(weir_openai::DEFAULT_BASE_URL, |pr| pr.base_url())
                    .into()
            });
            let mut encode =
                openai_encode(p, preset.map(|pr| pr.encode_options()).unwrap_or_default());
            // Gemini through Google's OpenAI-compatible endpoint: another dialect's client
            // kept no thought signatures on its function calls.
            encode.placeholder_thought_signature |= weir_openai::is_google_openai(&base_url);
            // OpenAI's own API refuses tool call ids over 40 characters.
            encode.short_tool_ids |= base_url.starts_with("https://api.openai.com/");
            let c = weir_openai::OpenAiConfig {
                id: id.to_owned(),
                base_url,
                keys,
                timeouts,
                encode,
            };
            let provider = match preset {
                Some(pr) => weir_openai::OpenAiProvider::with_preset(c, upstream.clone(), pr)?,
                None => weir_openai::OpenAiProvider::new(c, upstream.clone())?,
            };
            (Arc::new(provider), Vec::new())
        }
        #[cfg(feature = "bedrock")]
        "bedrock" => {
            let Some(region) = p.region.clone() else {
                return Err("kind = \"bedrock\" needs region (e.g. region = \"us-west-2\")".into());
            };
            let mut c = weir_bedrock::BedrockConfig::new(id, region);
            c.base_url = p.base_url().map(str::to_owned);
            c.timeouts = timeouts;
            c.drop_betas.clone_from(&p.drop_betas);
            c.anthropic_models.clone_from(&p.anthropic_models);
            if let Some(m) = p.default_max_tokens {
                c.encode.default_max_tokens = Some(m);
            }
            (
                Arc::new(weir_bedrock::BedrockProvider::new(c, upstream.clone())?),
                Vec::new(),
            )
        }
        "gemini" => {
            let c = weir_gemini::GeminiConfig {
                id: id.to_owned(),
                base_url: p
                    .base_url()
                    .map_or_else(|| weir_gemini::DEFAULT_BASE_URL.into(), str::to_owned),
                keys,
                timeouts,
                encode: weir_gemini::EncodeOptions::default(),
            };
            (
                Arc::new(weir_gemini::GeminiProvider::new(c, upstream.clone())?),
                Vec::new(),
            )
        }
        #[cfg(feature = "vertex")]
        "vertex" => {
            let (Some(project), Some(region)) = (p.project.clone(), p.region.clone()) else {
                return Err(
                    "kind = \"vertex\" needs project and region (e.g. region = \"us-east5\" or \"global\")"
                        .into(),
                );
            };
            let mut c = weir_vertex::VertexConfig::new(id, project, region);
            c.base_url = p.base_url().map(str::to_owned);
            c.timeouts = timeouts;
            if let Some(m) = p.default_max_tokens {
                c.anthropic_encode.default_max_tokens = Some(m);
            }
            (
                Arc::new(weir_vertex::VertexProvider::with_google_auth(
                    c,
                    upstream.clone(),
                )?),
                Vec::new(),
            )
        }
        "ollama" => {
            let c = weir_ollama::OllamaConfig {
                id: id.to_owned(),
                base_url: p
                    .base_url()
                    .map_or_else(|| weir_ollama::DEFAULT_BASE_URL.into(), str::to_owned),
                keys,
                timeouts,
                encode: (),
            };
            (
                Arc::new(weir_ollama::OllamaProvider::new(c, upstream.clone())?),
                Vec::new(),
            )
        }
        "azure" => {
            let Some(base_url) = p.base_url().map(str::to_owned) else {
                return Err(
                    "kind = \"azure\" needs base_url: https://<resource>.openai.azure.com \
                     (deployment URLs; the target's model is the deployment), \
                     https://<resource>.openai.azure.com/openai/v1, or \
                     https://<resource>.services.ai.azure.com/anthropic (Claude in Foundry)"
                        .into(),
                );
            };
            if base_url.trim_end_matches('/').ends_with("/anthropic") {
                if p.api_version.is_some() {
                    return Err("api_version does not apply to Foundry's Anthropic endpoint".into());
                }
                let mut encode = weir_anthropic::EncodeOptions::default();
                if let Some(m) = p.default_max_tokens {
                    encode.default_max_tokens = Some(m);
                }
                let c = weir_anthropic::AnthropicConfig {
                    id: id.to_owned(),
                    base_url,
                    keys,
                    timeouts,
                    encode,
                };
                (
                    Arc::new(weir_anthropic::AnthropicProvider::new(c, upstream.clone())?),
                    Vec::new(),
                )
            } else {
                let c = weir_openai::OpenAiConfig {
                    id: id.to_owned(),
                    base_url,
                    keys,
                    timeouts,
                    // (Azure OpenAI refuses tool call ids over 40 characters, as OpenAI.)
                    encode: openai_encode(
                        p,
                        weir_openai::EncodeOptions {
                            short_tool_ids: true,
                            ..Default::default()
                        },
                    ),
                };
                (
                    Arc::new(weir_openai::OpenAiProvider::azure(
                        c,
                        upstream.clone(),
                        p.api_version.clone(),
                    )?),
                    Vec::new(),
                )
            }
        }
        "mock" => {
            let mut opts = weir_mock::MockOptions::default();
            if let Some(d) = p.stream_delay {
                opts.stream_delay = d.0;
            }
            let mock = weir_mock::MockProvider::new(id, opts);
            let models = mock.models().to_vec();
            (Arc::new(mock), models)
        }
        // (A kind whose cargo feature this build was made without.)
        other => {
            return Err(format!(
                "kind = \"{other}\" is not in this build of weir-config (its `{other}` cargo feature is off)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// A kind whose cargo feature is off is refused by name, not served by another kind.
    #[test]
    fn kinds_follow_the_build() {
        let cfg = "[providers.b]\nkind = \"bedrock\"\nregion = \"us-west-2\"\n\
                   [[models]]\nname = \"m\"\ntargets = [{ provider = \"b\", model = \"us.anthropic.claude-sonnet-4-5-20250929-v1:0\" }]\n";
        let built = super::router_from_str(cfg);
        if cfg!(feature = "bedrock") {
            assert!(built.is_ok());
        } else {
            let errs = built.err().unwrap();
            assert!(
                errs[0]
                    .to_string()
                    .contains("`bedrock` cargo feature is off"),
                "{}",
                errs[0]
            );
            let boxed: Box<dyn std::error::Error> = Box::new(errs);
            assert!(boxed.to_string().contains("cargo feature is off"));
        }
    }
}
