//! The config file: TOML with `${ENV}` interpolation, unknown keys rejected, and every
//! error reported with file:line:column. Every key is described in the README's commented
//! `weir.toml`.
//!
//! The file is parsed with the `toml` crate directly (not layered through figment): its
//! spans are what lets `weir check` point at the offending line and column.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use weir_model::Secret;

/// A problem in a config, located when possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, if the config came from one.
    pub file: Option<PathBuf>,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().map(Path::display);
        match (file, self.position) {
            (Some(file), Some((l, c))) => write!(f, "{file}:{l}:{c}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            (None, Some((l, c))) => write!(f, "{l}:{c}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// A duration written as `"250ms"`, `"30s"`, `"5m"` or `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        // (All digits, and still no number: past any u64.)
        if !num.is_empty() {
            format!("`{s}` is too long (at most 100 years, \"876000h\")")
        } else {
            format!("`{s}` is not a duration (use e.g. \"250ms\", \"30s\", \"5m\")")
        }
    })?;
    let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => return Err(format!("`{s}` is not a duration (units: ms, s, m, h)")),
    };
    // Deadlines are made by adding durations to the clock: one that far would overflow it.
    d.filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| format!("`{s}` is too long (at most 100 years, \"876000h\")"))
}

/// The longest duration a setting takes.
const MAX_DURATION: Duration = Duration::from_secs(876_000 * 3600);

fn d(secs: u64) -> Dur {
    Dur(Duration::from_secs(secs))
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The API address.
    pub listen: String,
    /// The admin address (`/status`, `/metrics`); default `127.0.0.1:4001` when an admin
    /// key is configured. Without an admin key the admin API is not served.
    pub admin_listen: Option<String>,
    /// Larger request bodies get 413.
    pub max_request_bytes: usize,
    /// Request bodies held at once, all requests together; a body that would pass it gets
    /// 503 (retry-after 1).
    pub max_buffered_bytes: usize,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_grace: Dur,
    /// Client connections open at once on the API port; past it, new ones wait in the
    /// kernel's queue until one closes. Default (`None`): half the open-files limit, so
    /// clients cannot take the descriptors upstream calls and the admin port need.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one address (IPv6: one address, not a
    /// prefix); past it, a new one from that address is closed at once. Default (`None`):
    /// no such cap (clients behind one proxy or load balancer share its address).
    pub max_connections_per_ip: Option<usize>,
    /// Origins of browser apps allowed to call the API (CORS): exact origins
    /// (`https://app.example.com`, `http://localhost:3000`) or `*`. Default: none (a
    /// browser page of another origin cannot read the API's answers).
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:4000".into(),
            admin_listen: None,
            max_request_bytes: 32 * 1024 * 1024,
            max_buffered_bytes: 1024 * 1024 * 1024,
            shutdown_grace: d(30),
            max_connections: None,
            max_connections_per_ip: None,
            cors_origins: Vec::new(),
        }
    }
}

/// `[timeouts]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Connection establishment.
    #[serde(deserialize_with = "timeout")]
    pub connect: Dur,
    /// Until the upstream's response headers.
    #[serde(deserialize_with = "timeout")]
    pub first_byte: Dur,
    /// Longest silence inside a stream.
    #[serde(deserialize_with = "timeout")]
    pub idle: Dur,
    /// The whole call.
    #[serde(deserialize_with = "timeout")]
    pub total: Dur,
}

/// A timeout: a duration above zero (`"0s"` would fail every call at once).
fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
    let t = Dur::deserialize(d)?;
    if t.0.is_zero() {
        return Err(serde::de::Error::custom(
            "a timeout must be longer than 0 (\"0s\" would fail every call)",
        ));
    }
    Ok(t)
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: d(10),
            first_byte: d(60),
            idle: d(90),
            total: d(600),
        }
    }
}

impl TimeoutsConfig {
    /// As upstream timeouts.
    pub fn to_timeouts(&self) -> weir_upstream::Timeouts {
        weir_upstream::Timeouts {
            connect: self.connect.0,
            first_byte: self.first_byte.0,
            idle: self.idle.0,
            total: self.total.0,
        }
    }
}

/// `[providers.x.timeouts]`: the timeouts given override `[timeouts]`'s, one by one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderTimeouts {
    /// Connection establishment.
    #[serde(default, deserialize_with = "some_timeout")]
    pub connect: Option<Dur>,
    /// Until the upstream's response headers.
    #[serde(default, deserialize_with = "some_timeout")]
    pub first_byte: Option<Dur>,
    /// Longest silence inside a stream.
    #[serde(default, deserialize_with = "some_timeout")]
    pub idle: Option<Dur>,
    /// The whole call.
    #[serde(default, deserialize_with = "some_timeout")]
    pub total: Option<Dur>,
}

fn some_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dur>, D::Error> {
    timeout(d).map(Some)
}

impl ProviderTimeouts {
    /// These timeouts over `base` (the `[timeouts]` table).
    pub fn over(&self, base: &TimeoutsConfig) -> TimeoutsConfig {
        TimeoutsConfig {
            connect: self.connect.unwrap_or(base.connect),
            first_byte: self.first_byte.unwrap_or(base.first_byte),
            idle: self.idle.unwrap_or(base.idle),
            total: self.total.unwrap_or(base.total),
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer key for the admin endpoints.
    pub admin_key: Option<Secret>,
    /// Client keys.
    pub keys: Vec<Spanned<KeyConfig>>,
}

/// One `[[auth.keys]]`. Its `Debug` shows neither the key nor its hash.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// The key itself.
    pub key: Option<Secret>,
    /// Or its sha256, hex.
    pub sha256: Option<String>,
    /// Requests per minute.
    pub rpm: Option<Spanned<u64>>,
    /// Tokens per minute.
    pub tpm: Option<Spanned<u64>>,
    /// In-flight requests.
    pub max_concurrent: Option<Spanned<u64>>,
    /// Spend per UTC day.
    pub daily_budget_usd: Option<Spanned<f64>>,
    /// Glob allow-list of model names.
    pub models: Option<Vec<String>>,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field named, so a new one cannot be forgotten here.
        let Self {
            name,
            key,
            sha256,
            rpm,
            tpm,
            max_concurrent,
            daily_budget_usd,
            models,
        } = self;
        f.debug_struct("KeyConfig")
            .field("name", name)
            .field("key", key)
            // An unsalted hash of a weak key is as good as the key.
            .field("sha256", &sha256.as_ref().map(|_| "***"))
            .field("rpm", rpm)
            .field("tpm", tpm)
            .field("max_concurrent", max_concurrent)
            .field("daily_budget_usd", daily_budget_usd)
            .field("models", models)
            .finish()
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field named, so a new one cannot be forgotten here.
        let Self {
            kind,
            base_url,
            keys,
            key,
            region,
            project,
            api_version,
            drop_betas,
            anthropic_models,
            preset,
            timeouts,
            stream_delay,
            default_max_tokens,
            max_output_tokens,
            reasoning_effort_from_thinking,
            reasoning_content_in_history,
            system_as_user,
            responses_api,
            capabilities,
        } = self;
        f.debug_struct("ProviderConfig")
            .field("kind", kind)
            .field(
                "base_url",
                &base_url.as_ref().map(|u| redacted_base_url(u.get_ref())),
            )
            .field("keys", keys)
            .field("key", key)
            .field("region", region)
            .field("project", project)
            .field("api_version", api_version)
            .field("drop_betas", drop_betas)
            .field("anthropic_models", anthropic_models)
            .field("preset", preset)
            .field("timeouts", timeouts)
            .field("stream_delay", stream_delay)
            .field("default_max_tokens", default_max_tokens)
            .field("max_output_tokens", max_output_tokens)
            .field(
                "reasoning_effort_from_thinking",
                reasoning_effort_from_thinking,
            )
            .field("reasoning_content_in_history", reasoning_content_in_history)
            .field("system_as_user", system_as_user)
            .field("responses_api", responses_api)
            .field("capabilities", capabilities)
            .finish()
    }
}

/// A base URL as `Debug` shows it: a user part and a query (where a key could be put,
/// `?key=`, `?sig=`) become `***`.
fn redacted_base_url(url: &str) -> Cow<'_, str> {
    let shown = redacted_url(url);
    match shown.find('?') {
        Some(q) if !shown[q..].ends_with("?***") => Cow::Owned(format!("{}?***", &shown[..q])),
        _ => shown,
    }
}

impl ProviderConfig {
    /// `base_url`, if set.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_ref().map(|b| b.get_ref().as_str())
    }
}

/// One `[providers.<id>]`. Its `Debug` shows no secret: keys print as `***`, and the
/// base URL without its user part or query.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// anthropic | openai | bedrock | vertex | gemini | azure | ollama | mock.
    pub kind: Spanned<String>,
    /// Scheme and host of the API (and path prefix for OpenAI-compatible services); where
    /// it is in the file, for its errors.
    pub base_url: Option<Spanned<String>>,
    /// The key pool.
    #[serde(default)]
    pub keys: Vec<Secret>,
    /// A single key (shorthand for a one-key pool).
    pub key: Option<Secret>,
    /// Cloud region (Bedrock, Vertex).
    pub region: Option<String>,
    /// Cloud project (Vertex).
    pub project: Option<String>,
    /// Azure OpenAI's `api-version` (deployment URLs).
    pub api_version: Option<String>,
    /// Bedrock: `anthropic-beta` values not to forward (Bedrock refuses betas a model does
    /// not serve there with a 400).
    #[serde(default)]
    pub drop_betas: Vec<String>,
    /// Bedrock: more model ids served as Claude through InvokeModel (application inference
    /// profile ARNs, whose opaque ids do not say which model they route to).
    #[serde(default)]
    pub anthropic_models: Vec<String>,
    /// OpenAI-compatible preset (groq, xai, ...).
    pub preset: Option<Spanned<String>>,
    /// Per-provider timeouts: each one given overrides `[timeouts]`'s.
    pub timeouts: Option<ProviderTimeouts>,
    /// Mock: pause between streamed chunks.
    pub stream_delay: Option<Dur>,
    /// `max_tokens` for Anthropic requests that have none.
    pub default_max_tokens: Option<u32>,
    /// OpenAI-dialect providers: the largest output limit the upstream accepts; a
    /// client's larger `max_tokens` is lowered to it (Claude Code asks for 32000-64000).
    pub max_output_tokens: Option<u32>,
    /// OpenAI-dialect providers serving reasoning models: an Anthropic client's thinking
    /// (or `output_config.effort`) becomes `reasoning_effort` (other models reject it).
    pub reasoning_effort_from_thinking: Option<bool>,
    /// OpenAI-dialect providers: earlier reasoning goes back as `reasoning_content` on
    /// assistant messages (DeepSeek-style servers; OpenAI itself rejects it).
    pub reasoning_content_in_history: Option<bool>,
    /// OpenAI-dialect providers: an Anthropic client's system messages inside `messages`
    /// go as user text (chat templates that take one leading system message: vLLM with
    /// Gemma's or Mistral's).
    pub system_as_user: Option<bool>,
    /// Kinds openai, azure and mock: whether the upstream has the Responses API. `false`:
    /// it is served by translation to chat completions; `true`: only passed through;
    /// unset: passed through, translated once the upstream answers that it has no such
    /// endpoint.
    pub responses_api: Option<bool>,
    /// What the provider supports, overriding what its kind declares (e.g. a
    /// text-only OpenAI-compatible model: `capabilities = { images = false }`).
    pub capabilities: Option<CapabilitiesConfig>,
}

impl ProviderConfig {
    /// The upstream this provider calls: its kind, preset, base URL, region, project and
    /// API version. Two configs' providers of one id and identity call the same service,
    /// so what was learnt about it (resting keys, breakers, a missing Responses API) holds
    /// across a reload.
    pub fn upstream_identity(&self) -> String {
        format!(
            "{} {:?} {:?} {:?} {:?} {:?}",
            self.kind.get_ref(),
            self.preset.as_ref().map(|s| s.get_ref()),
            self.base_url.as_ref().map(|s| s.get_ref()),
            self.region,
            self.project,
            self.api_version
        )
    }
}

/// `capabilities = { ... }` of a provider: each omitted feature keeps the kind's default.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesConfig {
    /// Image input.
    pub images: Option<bool>,
    /// Document (PDF) input.
    pub documents: Option<bool>,
    /// Function tools.
    pub tools: Option<bool>,
    /// Several tool calls per turn.
    pub parallel_tools: Option<bool>,
    /// Extended thinking.
    pub thinking: Option<bool>,
    /// Prompt caching.
    pub prompt_caching: Option<bool>,
    /// Anthropic's message threads (by default only Anthropic's own API has them).
    pub threads: Option<bool>,
}

impl CapabilitiesConfig {
    /// `base` with this table's overrides.
    pub fn apply(&self, base: weir_model::Capabilities) -> weir_model::Capabilities {
        weir_model::Capabilities {
            native_dialect: base.native_dialect,
            images: self.images.unwrap_or(base.images),
            documents: self.documents.unwrap_or(base.documents),
            tools: self.tools.unwrap_or(base.tools),
            parallel_tools: self.parallel_tools.unwrap_or(base.parallel_tools),
            thinking: self.thinking.unwrap_or(base.thinking),
            prompt_caching: self.prompt_caching.unwrap_or(base.prompt_caching),
            threads: self.threads.unwrap_or(base.threads),
        }
    }
}

/// One `[[models]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Exact model name or glob.
    pub name: String,
    /// fallback | round_robin | weighted | least_latency.
    pub strategy: Option<Spanned<String>>,
    /// Keep a session on the target that served it while it is healthy (default true).
    pub sticky: Option<bool>,
    /// A target lacking a feature the request uses: `skip` it (default) or `drop` the
    /// feature and warn in `x-weir-warning`.
    pub unsupported: Option<Spanned<String>>,
    /// Where requests go.
    pub targets: Vec<TargetConfig>,
}

/// `[routing]`: resilience settings for every model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Health failures (5xx, timeouts, connection) in a row that open a target's breaker
    /// (0: no breakers).
    pub breaker_failures: u32,
    /// How long an open breaker waits before its probe (doubles per failed probe).
    pub breaker_open: Dur,
    /// The longest an open breaker waits.
    pub breaker_max_open: Dur,
    /// Extra walks over the targets when all failed in a way that may pass.
    pub retries: u32,
    /// First retry's backoff (doubles, with jitter).
    pub retry_backoff: Dur,
    /// Longer waits (e.g. a long `retry-after`) are returned to the client instead.
    pub max_retry_wait: Dur,
    /// How long a key rests after a 429 that did not say.
    pub default_cooldown: Dur,
    /// How long a key the upstream refused (401/403) stays out before one more try.
    pub refused_key_retry: Dur,
    /// How long a session is remembered after its last request.
    pub session_ttl: Dur,
    /// The longest a stream's opening is held for its first content (failover before
    /// the client sees anything); `"0s"`: every event at once.
    pub stream_hold: Dur,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let p = weir_router::Policy::default();
        RoutingConfig {
            breaker_failures: p.breaker_failures,
            breaker_open: Dur(p.breaker_open),
            breaker_max_open: Dur(p.breaker_max_open),
            retries: p.retries,
            retry_backoff: Dur(p.retry_backoff),
            max_retry_wait: Dur(p.max_retry_wait),
            default_cooldown: Dur(p.default_cooldown),
            refused_key_retry: Dur(p.refused_key_retry),
            session_ttl: Dur(p.session_ttl),
            stream_hold: Dur(p.stream_hold),
        }
    }
}

impl RoutingConfig {
    /// The router's policy.
    pub fn policy(&self) -> weir_router::Policy {
        weir_router::Policy {
            breaker_failures: self.breaker_failures,
            breaker_open: self.breaker_open.0,
            breaker_max_open: self.breaker_max_open.0,
            retries: self.retries,
            retry_backoff: self.retry_backoff.0,
            max_retry_wait: self.max_retry_wait.0,
            default_cooldown: self.default_cooldown.0,
            refused_key_retry: self.refused_key_retry.0,
            session_ttl: self.session_ttl.0,
            stream_hold: self.stream_hold.0,
            ..weir_router::Policy::default()
        }
    }
}

/// A `[[models]]` target.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Provider id.
    pub provider: Spanned<String>,
    /// Upstream model; the client's when absent.
    pub model: Option<String>,
    /// For `weighted`.
    pub weight: Option<Spanned<u32>>,
    /// What this model supports, over the provider's `capabilities` and its kind's
    /// defaults (e.g. `capabilities = { images = false }` for a text-only model).
    pub capabilities: Option<CapabilitiesConfig>,
    /// The output limit sent to this target when the client set none (a model whose own
    /// default is small: Llama on Bedrock stops at 512 tokens).
    pub default_max_tokens: Option<Spanned<u32>>,
    /// The largest output limit this target accepts: a client's larger `max_tokens` is
    /// lowered to it (Claude Code asks for 32000-64000).
    pub max_output_tokens: Option<Spanned<u32>>,
}

/// `[pricing."<model>"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// Cache reads.
    pub cache_read: Option<f64>,
    /// Cache writes (Anthropic's five-minute ones).
    pub cache_write: Option<f64>,
    /// One-hour cache writes (Anthropic's `ttl: "1h"`); twice `input` when not set, as
    /// Anthropic prices them.
    pub cache_write_1h: Option<f64>,
    /// USD per 1,000 web searches run by the upstream (Anthropic's web search tool); 10
    /// when not set, Anthropic's price.
    pub web_search: Option<f64>,
    /// The prices of a request whose prompt is over a number of tokens (Claude Sonnet 4
    /// and 4.5 with the 1M context window, Gemini 2.5 Pro).
    pub long_context: Option<LongContextConfig>,
}

/// `[pricing."<model>".long_context]`: a request whose prompt (input, cache reads and
/// cache writes together) is over `above` tokens is charged these prices, all of it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContextConfig {
    /// Prompt tokens over which these prices apply (e.g. 200000).
    pub above: u64,
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// Cache reads; when not set, the short prompts' price scaled as `input` is.
    pub cache_read: Option<f64>,
    /// Cache writes (five-minute ones); when not set, scaled as `input` is.
    pub cache_write: Option<f64>,
    /// One-hour cache writes; when not set, scaled as `input` is.
    pub cache_write_1h: Option<f64>,
}

/// `[state]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// memory | redis.
    pub backend: Spanned<String>,
    /// Redis URL (`redis://[user:password@]host:port[/db]`).
    pub url: Option<Spanned<String>>,
    /// Prefix of every Redis key: gateways with the same prefix share state.
    #[serde(default = "default_state_prefix")]
    pub prefix: String,
    /// Without Redis: `open` serves on this instance's local state, `closed` refuses
    /// requests of keys with limits or budgets (503).
    pub fail_mode: Option<Spanned<String>>,
    /// How long one Redis call may take before Redis counts as unreachable.
    #[serde(default = "default_state_timeout", deserialize_with = "timeout")]
    pub timeout: Dur,
}

/// `[state]`'s `prefix` when none is given.
pub const DEFAULT_STATE_PREFIX: &str = "weir";

/// `[state]`'s `timeout` when none is given.
pub const DEFAULT_STATE_TIMEOUT: Duration = Duration::from_millis(250);

fn default_state_prefix() -> String {
    DEFAULT_STATE_PREFIX.into()
}

fn default_state_timeout() -> Dur {
    Dur(DEFAULT_STATE_TIMEOUT)
}

/// `[ledger]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// sqlite:// or postgres:// URL.
    pub url: Spanned<String>,
}

/// A URL with its password (or whole user part) shown as `***`: Redis and PostgreSQL
/// URLs carry credentials.
fn redacted_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let mut shown = match url[scheme_end..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!(
            "{}***{}",
            &url[..scheme_end],
            &url[scheme_end + at..]
        )),
        None => Cow::Borrowed(url),
    };
    // A password in the query (`?password=`, `sslpassword=`): the query goes whole.
    if let Some(q) = shown.find('?') {
        if shown[q..].to_ascii_lowercase().contains("pass") {
            shown = Cow::Owned(format!("{}?***", &shown[..q]));
        }
    }
    shown
}

impl fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|u| redacted_url(u.get_ref())))
            .field("prefix", &self.prefix)
            .field("fail_mode", &self.fail_mode)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("url", &redacted_url(self.url.get_ref()))
            .finish()
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[timeouts]`.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[providers.*]`, by id.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[[models]]`, in file order.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// `[routing]`.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[pricing.*]`.
    #[serde(default)]
    pub pricing: Option<Spanned<BTreeMap<String, PriceConfig>>>,
    /// `[state]`.
    pub state: Option<StateConfig>,
    /// `[ledger]`.
    pub ledger: Option<LedgerConfig>,
}

/// Source text, for turning byte offsets into positions.
pub struct Source<'a> {
    /// The file name, if any.
    pub file: Option<&'a Path>,
    /// The text after interpolation.
    pub text: &'a str,
}

impl Source<'_> {
    /// The byte offset of a key in the text, by its path (`["server", "listen"]`; an
    /// array of tables is indexed by a number: `["models", "2", "name"]`), for errors
    /// about values read without their spans. `None` if the key is not written there.
    pub fn key_at(&self, path: &[&str]) -> Option<usize> {
        use toml::de::{DeTable, DeValue};
        let doc = DeTable::parse(self.text).ok()?;
        let mut table = doc.get_ref();
        let mut at = None;
        let mut segments = path.iter().peekable();
        while let Some(seg) = segments.next() {
            let (key, value) = table.get_key_value(*seg)?;
            at = Some(key.span().start);
            let mut value = value.get_ref();
            if let DeValue::Array(items) = value {
                if let Some(i) = segments.peek().and_then(|i| i.parse::<usize>().ok()) {
                    segments.next();
                    let item = items.get(i)?;
                    at = Some(item.span().start);
                    value = item.get_ref();
                }
            }
            match value {
                DeValue::Table(t) => table = t,
                _ if segments.peek().is_none() => break,
                _ => return None,
            }
        }
        at
    }

    /// An error at a byte offset.
    pub fn error_at(&self, offset: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.map(Path::to_path_buf),
            position: offset.map(|o| line_col(self.text, o)),
            message: message.into(),
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let upto = &text[..offset.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    let col = upto
        .rfind('\n')
        .map_or(upto.chars().count(), |i| upto[i + 1..].chars().count())
        + 1;
    (line, col)
}

/// The byte ranges of the TOML comments in `text` (`#` outside strings, to the end of
/// the line).
fn comment_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                spans.push(i..end);
                i = end;
            }
            q @ (b'"' | b'\'') => {
                let multi = b[i..].starts_with(if q == b'"' { b"\"\"\"" } else { b"'''" });
                let (open, close): (usize, &[u8]) = match (multi, q) {
                    (true, b'"') => (3, b"\"\"\""),
                    (true, _) => (3, b"'''"),
                    (false, b'"') => (1, b"\""),
                    (false, _) => (1, b"'"),
                };
                i += open;
                while i < b.len() && !b[i..].starts_with(close) {
                    if q == b'"' && b[i] == b'\\' {
                        i += 1;
                    } else if !multi && b[i] == b'\n' {
                        // An unclosed one-line string: the parser will say so.
                        break;
                    }
                    i += 1;
                }
                i += close.len();
                // A multi-line string may end with one or two quotes of its own before
                // its closing three (`"""a""""` is `a"`).
                let mut extra = 0;
                while multi && extra < 2 && b.get(i) == Some(&q) {
                    i += 1;
                    extra += 1;
                }
            }
            _ => i += 1,
        }
    }
    spans
}

/// Replaces `${NAME}` with the environment's value (escaped for a TOML string). Every
/// missing variable is an error at its position; `$${` writes a literal `${`.
pub fn interpolate(
    file: Option<&Path>,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    interpolate_recorded(file, text, env).map(|(out, _)| out)
}

/// One `${NAME}` (or `$${`) of a file and what it became: byte ranges in the file and in
/// the interpolated text.
#[derive(Clone, Copy, Debug)]
struct Expansion {
    raw: usize,
    raw_len: usize,
    out: usize,
    out_len: usize,
}

/// Moves errors placed in the interpolated text of `raw` (by `env`; a missing variable
/// counts as empty) to where they are in `raw` itself: lines are the same, but a column
/// after a `${NAME}` on its line moves by the difference in length.
pub fn placed_in_file(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
) -> Vec<ConfigError> {
    let Ok((text, expansions)) =
        interpolate_recorded(None, raw, &|name| env(name).or(Some(String::new())))
    else {
        return errors;
    };
    if expansions.is_empty() {
        return errors;
    }
    errors
        .into_iter()
        .map(|mut e| {
            if let Some((line, col)) = e.position {
                if let Some(at) = offset_of(&text, line, col) {
                    let mut raw_at = at;
                    for x in &expansions {
                        if at < x.out {
                            break;
                        }
                        if at < x.out + x.out_len {
                            // Inside what a reference became: the reference.
                            raw_at = x.raw;
                            break;
                        }
                        raw_at = at - x.out - x.out_len + x.raw + x.raw_len;
                    }
                    e.position = Some(line_col(raw, raw_at));
                }
            }
            e
        })
        .collect()
}

/// The byte offset of a 1-based line and column (in characters) of `text`.
fn offset_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &text[start..];
    let in_line = rest
        .char_indices()
        .nth(col.saturating_sub(1))
        .map_or(rest.len(), |(i, _)| i);
    Some(start + in_line)
}

fn interpolate_recorded(
    file: Option<&Path>,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Expansion>), Vec<ConfigError>> {
    let mut expansions = Vec::new();
    let src = Source { file, text };
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut base = 0;
    let comments = comment_spans(text);
    while let Some(i) = rest.find("${") {
        if comments.iter().any(|c| c.contains(&(base + i))) {
            // A comment is not configuration: `${...}` there is text (a line commented
            // out keeps working after its variable is gone).
            out.push_str(&rest[..i + 2]);
            rest = &rest[i + 2..];
            base += i + 2;
            continue;
        }
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            expansions.push(Expansion {
                raw: base + i - 1,
                raw_len: 3,
                out: out.len(),
                out_len: 2,
            });
            out.push_str("${");
            rest = &rest[i + 2..];
            base += i + 2;
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            errors.push(src.error_at(Some(base + i), "`${` without a closing `}`"));
            rest = "";
            break;
        };
        let name = &rest[i + 2..i + end];
        let name_len = name
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(name.len());
        if name_len < name.len() || name.is_empty() {
            // Only the name is quoted: what follows, up to the next `}` anywhere in the
            // file, may be secrets (an unclosed `${` before a key line).
            let shown = &name[..name_len];
            errors.push(src.error_at(
                Some(base + i),
                if shown.is_empty() {
                    "`${` must be followed by a variable name (letters, digits and `_`) and `}`"
                        .to_owned()
                } else {
                    format!(
                        "`${{{shown}` is not closed by `}}` (a variable name is letters, digits \
                         and `_`)"
                    )
                },
            ));
            // Scanning goes on after the name.
            rest = &rest[i + 2 + name_len..];
            base += i + 2 + name_len;
            continue;
        } else {
            match env(name) {
                Some(v) => {
                    let from = out.len();
                    for c in v.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            '\n' => out.push_str("\\n"),
                            c => out.push(c),
                        }
                    }
                    expansions.push(Expansion {
                        raw: base + i,
                        raw_len: end + 1,
                        out: from,
                        out_len: out.len() - from,
                    });
                }
                None => errors.push(src.error_at(
                    Some(base + i),
                    format!(
                        "environment variable `{name}` is not set (referenced as `${{{name}}}`)"
                    ),
                )),
            }
        }
        rest = &rest[i + end + 1..];
        base += i + end + 1;
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok((out, expansions))
    } else {
        Err(errors)
    }
}

/// Parses config text (already interpolated); the first error if it does not parse (see
/// [`parse_all`] for every error).
pub fn parse(file: Option<&Path>, text: &str) -> Result<Config, ConfigError> {
    // `parse_all` never returns an empty list of errors.
    parse_all(file, text).map_err(|mut errors| errors.remove(0))
}

/// Parses config text (already interpolated), or returns every error found, in file order
/// (never an empty list).
///
/// A parser stops at its first error, so a text that does not parse is read again piece by
/// piece: every syntax error, then each top-level section, each provider, model, client key
/// and price, and each key of those on its own, so that each reports its own first error.
pub fn parse_all(file: Option<&Path>, text: &str) -> Result<Config, Vec<ConfigError>> {
    let first = match toml::from_str::<Config>(text) {
        Ok(cfg) => return Ok(cfg),
        Err(e) => e,
    };
    let src = Source { file, text };
    let located = |e: &toml::de::Error| {
        src.error_at(
            e.span().map(|s| s.start),
            plain_types(&without_string_value(e.message().trim_end())),
        )
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    let mut errors: Vec<ConfigError> = syntax.iter().map(located).collect();
    if errors.is_empty() {
        for (piece, partial) in pieces(root) {
            match Config::deserialize(toml::de::Deserializer::from(piece)) {
                Err(e) if !(partial && e.message().starts_with("missing field")) => {
                    errors.push(located(&e));
                }
                _ => {}
            }
        }
    }
    if errors.is_empty() {
        // The pieces all parse but the whole does not: report what the whole said.
        errors.push(located(&first));
    }
    errors.sort_by_key(|e| e.position);
    errors.dedup();
    Err(errors)
}

/// A type error's message without the string it quotes (`invalid type: string "sk-...",
/// expected a sequence`): a key written where a list of keys belongs, say, must not reach
/// `weir check`'s output, a `/reload` answer or a log. The position says where it is.
fn without_string_value(message: &str) -> String {
    for head in ["invalid type: string \"", "invalid value: string \""] {
        let Some(rest) = message.strip_prefix(head) else {
            continue;
        };
        // The quoted value ends at the first `"` not escaped by a backslash.
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    let kind = &head[..head.len() - "string \"".len()];
                    return format!("{kind}a string{}", &rest[i + 1..]);
                }
                _ => escaped = false,
            }
        }
    }
    message.to_owned()
}

/// A type error's message with Rust's type names said as a config's reader knows them
/// (`expected u64` is `expected a whole number of 0 or more`).
fn plain_types(message: &str) -> String {
    let Some((head, ty)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    // A number where a string belongs may be a numeric secret (`admin_key = 12345678`):
    // its value is not repeated, as a string's never is.
    if ty == "a string" || ty == "a sequence" {
        for (lead, kind) in [
            ("invalid type: integer `", "an integer"),
            ("invalid type: floating point `", "a number"),
        ] {
            if head.starts_with(lead) {
                return format!("invalid type: {kind}, expected {ty}");
            }
        }
    }
    // A whole number too large for its field (`max_output_tokens = 5000000000`).
    let largest = match ty {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        _ => None,
    };
    if let Some(max) = largest {
        if head
            .strip_prefix("invalid value: integer `")
            .and_then(|n| n.strip_suffix('`'))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > max)
        {
            return format!("{head}, expected a whole number of at most {max}");
        }
    }
    let plain = match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        _ => return message.to_owned(),
    };
    format!("{head}, expected {plain}")
}

/// The document split into small documents that each hold one thing to check: each
/// top-level section; each provider, price, model and client key on its own; and each key
/// of those tables alone (`true`: such a piece lacks its table's other keys, so its
/// "missing field" errors are not errors).
fn pieces<'i>(root: Spanned<DeTable<'i>>) -> Vec<(Spanned<DeTable<'i>>, bool)> {
    let span = root.span();
    let mut out = Vec::new();
    for (key, value) in root.into_inner() {
        let vspan = value.span();
        // A piece of this section, made back into a document.
        let mut section = |v: DeValue<'i>, partial: bool| {
            let doc = one_entry(key.clone(), Spanned::new(vspan.clone(), v));
            out.push((Spanned::new(span.clone(), doc), partial));
        };
        match (key.get_ref().as_ref(), value.into_inner()) {
            ("providers" | "pricing", DeValue::Table(t)) => {
                for (name, item) in t {
                    for (v, partial) in each_key(item) {
                        section(DeValue::Table(one_entry(name.clone(), v)), partial);
                    }
                }
            }
            ("models", DeValue::Array(items)) => {
                for (v, partial) in items.into_iter().flat_map(each_key) {
                    section(one_item(v), partial);
                }
            }
            ("auth", DeValue::Table(t)) => {
                let (keys, rest): (Vec<_>, Vec<_>) =
                    t.into_iter().partition(|(k, _)| k.get_ref() == "keys");
                let rest = DeValue::Table(rest.into_iter().collect());
                for (v, partial) in each_key(Spanned::new(vspan.clone(), rest)) {
                    section(v.into_inner(), partial);
                }
                for (k, list) in keys {
                    let lspan = list.span();
                    match list.into_inner() {
                        DeValue::Array(items) => {
                            for (v, partial) in items.into_iter().flat_map(each_key) {
                                let list = Spanned::new(lspan.clone(), one_item(v));
                                section(DeValue::Table(one_entry(k.clone(), list)), partial);
                            }
                        }
                        other => {
                            let list = Spanned::new(lspan, other);
                            section(DeValue::Table(one_entry(k, list)), false);
                        }
                    }
                }
            }
            (_, inner) => {
                for (v, partial) in each_key(Spanned::new(vspan.clone(), inner)) {
                    section(v.into_inner(), partial);
                }
            }
        }
    }
    out
}

/// A table whole, and each of its keys alone (partial); any other value as it is.
fn each_key(value: Spanned<DeValue<'_>>) -> Vec<(Spanned<DeValue<'_>>, bool)> {
    let mut out = Vec::new();
    if let DeValue::Table(t) = value.get_ref() {
        if t.len() > 1 {
            for (k, v) in t.iter() {
                let one = DeValue::Table(one_entry(k.clone(), v.clone()));
                out.push((Spanned::new(value.span(), one), true));
            }
        }
    }
    out.push((value, false));
    out
}

fn one_entry<'i>(key: Spanned<Cow<'i, str>>, value: Spanned<DeValue<'i>>) -> DeTable<'i> {
    std::iter::once((key, value)).collect()
}

fn one_item(value: Spanned<DeValue<'_>>) -> DeValue<'_> {
    DeValue::Array(std::iter::once(value).collect())
}

/// Reads, interpolates and parses a config file; every error found, in file order.
pub fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, String), Vec<ConfigError>> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: Some(path.to_path_buf()),
            position: None,
            message: format!("cannot read the config: {e}"),
        }]
    })?;
    match interpolate(Some(path), &raw, env) {
        Ok(text) => match parse_all(Some(path), &text) {
            Ok(cfg) => Ok((cfg, text)),
            Err(errors) => Err(placed_in_file(&raw, env, errors)),
        },
        Err(mut errors) => {
            // Read on with the missing variables empty, to report the rest too; a line
            // whose variable is missing reports only that.
            let text = interpolate(Some(path), &raw, &|name| env(name).or(Some(String::new())))?;
            if let Err(more) = parse_all(Some(path), &text) {
                let more = placed_in_file(&raw, env, more);
                let line = |e: &ConfigError| e.position.map(|(l, _)| l);
                let missing: Vec<_> = errors.iter().map(line).collect();
                errors.extend(more.into_iter().filter(|e| !missing.contains(&line(e))));
                errors.sort_by_key(|e| e.position);
            }
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-\"quoted\"".into()),
            _ => None,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("s").is_err());
        // Past any deadline the clock can hold: refused, not wrapped or left to panic.
        assert_eq!(parse_duration("876000h"), Ok(MAX_DURATION));
        for long in [
            "876001h",
            "9223372036854775807s",
            "307445734561825861h",
            "99999999999999999999h",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("too long"), "{long}: {e}");
        }
    }

    #[test]
    fn interpolation_escapes_values_and_reports_every_missing_variable() {
        let out = interpolate(None, "a = \"${KEY}\"\nb = \"$${KEY}\"", &env).unwrap();
        assert_eq!(out, "a = \"sk-\\\"quoted\\\"\"\nb = \"${KEY}\"");
        let errs = interpolate(None, "a = \"${NOPE}\"\nb = \"${ALSO}\"", &env).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "1:6: environment variable `NOPE` is not set (referenced as `${NOPE}`)",
                "2:6: environment variable `ALSO` is not set (referenced as `${ALSO}`)"
            ]
        );
    }

    #[test]
    fn a_malformed_reference_quotes_only_its_name() {
        // An unclosed `${` before a key line must not quote the key (up to the next `}`).
        let text =
            "a = \"${ADMIN\"\nkey = \"sk-secret\"\nb = \"${}\"\nc = \"${X-Y}\"\nd = { e = 1 }";
        let errs = interpolate(None, text, &env).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "1:6: `${ADMIN` is not closed by `}` (a variable name is letters, digits and `_`)",
                "3:6: `${` must be followed by a variable name (letters, digits and `_`) and `}`",
                "4:6: `${X` is not closed by `}` (a variable name is letters, digits and `_`)",
            ]
        );
        assert!(!msgs.concat().contains("sk-secret"));
    }

    #[test]
    fn variables_in_comments_are_left_alone() {
        let text = "# old: key = \"${RETIRED}\"\n\
                    a = \"#${KEY}\" # was ${RETIRED}\n\
                    b = '#' # ${RETIRED}\n\
                    c = \"\"\"\n# ${KEY}\n\"\"\"\n\
                    d = \"\\\"#\" # ${RETIRED}\n\
                    f = \"\"\"q\"\"\"\" # ${RETIRED}\n\
                    e = \"${KEY}\"";
        let out = interpolate(None, text, &env).unwrap();
        assert_eq!(
            out,
            "# old: key = \"${RETIRED}\"\n\
             a = \"#sk-\\\"quoted\\\"\" # was ${RETIRED}\n\
             b = '#' # ${RETIRED}\n\
             c = \"\"\"\n# sk-\\\"quoted\\\"\n\"\"\"\n\
             d = \"\\\"#\" # ${RETIRED}\n\
             f = \"\"\"q\"\"\"\" # ${RETIRED}\n\
             e = \"sk-\\\"quoted\\\"\""
        );
    }

    #[test]
    fn keys_are_found_by_path() {
        let text = "[server]\nlisten = \"x\"\n\n[[models]]\nname = \"a\"\n[[models]]\n\
                    name = \"b\"\ntargets = []\n[auth]\nadmin_key = \"k\"\n";
        let src = Source { file: None, text };
        let pos = |path: &[&str]| src.key_at(path).map(|o| line_col(text, o));
        assert_eq!(pos(&["server", "listen"]), Some((2, 1)));
        assert_eq!(pos(&["models", "1", "name"]), Some((7, 1)));
        assert_eq!(pos(&["models", "0", "name"]), Some((5, 1)));
        assert_eq!(pos(&["auth", "admin_key"]), Some((10, 1)));
        assert_eq!(pos(&["server", "admin_listen"]), None);
        assert_eq!(pos(&["models", "2", "name"]), None);
    }

    #[test]
    fn unknown_keys_are_errors_with_positions() {
        let err = parse(
            Some(Path::new("weir.toml")),
            "[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(err.position, Some((3, 1)));
        assert!(
            err.to_string()
                .starts_with("weir.toml:3:1: unknown field `listn`"),
            "{err}"
        );
    }

    #[test]
    fn every_section_and_every_item_reports_its_own_error() {
        let text = r#"[server]
listen = "127.0.0.1:1"
max_request_bytes = "lots"
shutdown_grace = "5 parsecs"

[[auth.keys]]
name = "a"
kee = "x"

[[auth.keys]]
name = "b"
rpm = -1

[providers.one]
kind = "openai"
base_url = 5

[providers.two]
kind = "mock"
stream_delay = "5 parsecs"

[[models]]
name = "m"
targets = [{ provider = "one" }]
colour = "blue"
sticky = "yes"

[[models]]
name = "n"
targets = "two"

[surprise]
x = 1
"#;
        let errs = parse_all(Some(Path::new("w.toml")), text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.position.unwrap().0).collect();
        assert_eq!(lines, [3, 4, 8, 12, 16, 20, 25, 26, 30, 32], "{errs:#?}");
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].starts_with("w.toml:3:21: invalid type: a string,"),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("w.toml:4:18: `5 parsecs` is not a duration"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("w.toml:8:1: unknown field `kee`"),
            "{}",
            shown[2]
        );
        assert!(
            shown[8].contains("invalid type: a string, expected a sequence"),
            "{}",
            shown[8]
        );
        assert!(
            shown[9].starts_with("w.toml:32:2: unknown field `surprise`"),
            "{}",
            shown[9]
        );
        // The first error alone, as `parse` gives it.
        assert_eq!(parse(Some(Path::new("w.toml")), text).unwrap_err(), errs[0]);
    }

    #[test]
    fn client_keys_that_are_not_a_list_say_so() {
        let errs = parse_all(None, "[auth]\nkeys = \"sk-1\"\nadmin = 1\n").unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("2:8: invalid type: a string, expected a sequence"),
            "{shown:#?}"
        );
        // The value (a key, here) is not quoted back.
        assert!(!shown[0].contains("sk-1"), "{shown:#?}");
        assert_eq!(
            without_string_value(r#"invalid value: string "s\"k\\", expected x"#),
            "invalid value: a string, expected x"
        );
        // A number where a string belongs (perhaps a numeric key) is not repeated.
        let errs = parse_all(None, "[auth]\nadmin_key = 12345678\n").unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "2:13: invalid type: an integer, expected a string"
        );
        // Rust's type names are said plainly.
        let errs = parse_all(
            None,
            "[server]\nmax_request_bytes = 1.5\n[[auth.keys]]\nname = \"a\"\nkey = \"k\"\nrpm = -1\ndaily_budget_usd = \"z\"\n",
        )
        .unwrap_err();
        let plain: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            plain,
            [
                "2:21: invalid type: floating point `1.5`, expected a whole number of 0 or more",
                "6:7: invalid value: integer `-1`, expected a whole number of 0 or more",
                "7:20: invalid type: a string, expected a number",
            ],
            "{plain:#?}"
        );
        // Too large for its field: the limit is said, not "0 or more".
        let errs = parse_all(
            None,
            "[providers.p]\nkind = \"openai\"\nmax_output_tokens = 5000000000\n",
        )
        .unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "3:21: invalid value: integer `5000000000`, expected a whole number of at most 4294967295"
        );
        assert!(
            shown[1].starts_with("3:1: unknown field `admin`"),
            "{shown:#?}"
        );
    }

    #[test]
    fn a_zero_timeout_is_an_error_at_its_place() {
        let text = "[timeouts]\nidle = \"0s\"\n[providers.p]\nkind = \"mock\"\n[providers.p.timeouts]\ntotal = \"0ms\"\n[state]\ntimeout = \"0s\"\n";
        let errs = parse_all(Some(Path::new("w.toml")), text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "w.toml:2:8: a timeout must be longer than 0 (\"0s\" would fail every call)",
                "w.toml:6:9: a timeout must be longer than 0 (\"0s\" would fail every call)",
                "w.toml:8:11: a timeout must be longer than 0 (\"0s\" would fail every call)"
            ]
        );
    }

    #[test]
    fn syntax_errors_are_all_reported() {
        let errs = parse_all(None, "a = \n[server]\nlisten = \"x\"\nb = [1,\n").unwrap_err();
        assert!(errs.len() >= 2, "{errs:#?}");
        assert_eq!(errs[0].position.map(|p| p.0), Some(1));
    }

    #[test]
    fn a_missing_variable_does_not_hide_the_other_errors() {
        let dir = std::env::temp_dir().join(format!("weir-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weir.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"${NOPE}\"\nlistn = 1\n\n[[auth.keys]]\nname = \"k\"\nkey = \"${KEY}\"\nmodel = []\n",
        )
        .unwrap();
        let errs = load(&path, &env).unwrap_err();
        let shown: Vec<String> = errs
            .iter()
            .map(|e| e.to_string().replace(&path.display().to_string(), "F"))
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(
            shown[0].starts_with("F:2:11: environment variable `NOPE` is not set"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("F:3:1: unknown field `listn`"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("F:8:1: unknown field `model`"),
            "{shown:#?}"
        );
    }

    #[test]
    fn errors_after_a_variable_are_placed_where_they_are_in_the_file() {
        let dir = std::env::temp_dir().join(format!("weir-config-cols-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weir.toml");
        let long = |name: &str| match name {
            "LONG_VARIABLE_NAME_HERE" => Some("x".into()),
            "Q" => Some("a\"b".into()),
            _ => None,
        };
        let show = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let errs = load(&path, &long).unwrap_err();
            errs.iter()
                .map(|e| e.to_string().replace(&path.display().to_string(), "F"))
                .collect::<Vec<_>>()
        };
        // The `5` is at column 48 of the file (the value `x` is shorter than its reference).
        let shown = show(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"http://h\"\n\
             keys = [\"${LONG_VARIABLE_NAME_HERE}\", \"$${x}\", 5]\n",
        );
        assert!(shown[0].starts_with("F:4:48: "), "{shown:#?}");
        // A longer value (escaped quote), and a missing variable read as empty.
        let shown = show(
            "[server]\nshutdown_grace = [\"${NOPE}\", 1]\n[providers.p]\nkind = \"openai\"\n\
             keys = [\"${Q}\", 5]\n",
        );
        assert!(
            shown[0].starts_with("F:2:20: environment variable `NOPE`"),
            "{shown:#?}"
        );
        assert!(shown[1].starts_with("F:5:17: "), "{shown:#?}");
        let shown =
            show("[server]\nadmin_listen = \"${Q}\"\nlisten = \"${Q}\" \nlistn = 1 # ${Q}\n");
        assert!(
            shown[0].starts_with("F:4:1: unknown field `listn`"),
            "{shown:#?}"
        );
        let shown = show("[providers.p]\nkind = \"openai\"\nkeys = [\"${Q}\", \"${Q}\", 5]\n");
        assert!(shown[0].starts_with("F:3:25: "), "{shown:#?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
[server]
listen = "127.0.0.1:4000"
admin_listen = "127.0.0.1:4001"
max_request_bytes = 33554432
shutdown_grace = "30s"

[timeouts]
connect = "10s"
first_byte = "60s"
idle = "90s"
total = "10m"

[auth]
admin_key = "admin"

[[auth.keys]]
name = "alice"
key = "k"
models = ["claude-*", "gpt-4o"]

[providers.anthropic]
kind = "anthropic"
keys = ["a", "b"]

[providers.demo]
kind = "mock"

[[models]]
name = "claude-sonnet-4-5"
strategy = "fallback"
targets = [
  { provider = "anthropic", model = "claude-sonnet-4-5-20250929" },
  { provider = "demo" },
]
"#;
        let c = parse(None, text).unwrap();
        assert_eq!(c.timeouts.total.0, Duration::from_secs(600));
        assert_eq!(c.models[0].targets.len(), 2);
        let keys: Vec<&str> = c.providers["anthropic"]
            .keys
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(keys, ["a", "b"]);
        // Secrets stay out of the config's Debug (a panic message, a log line).
        let shown = format!("{c:?}");
        for secret in ["\"admin\"", "\"k\"", "\"a\"", "\"b\""] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        for (url, shown) in [
            ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
            ("postgres://u:pw@h/db?x=a@b", "postgres://***@h/db?x=a@b"),
            ("sqlite://weir.db", "sqlite://weir.db"),
            ("redis://h", "redis://h"),
            (
                "postgres://h/db?sslmode=require",
                "postgres://h/db?sslmode=require",
            ),
            ("postgres://h/db?user=u&password=pw", "postgres://h/db?***"),
        ] {
            assert_eq!(redacted_url(url), shown);
        }
    }

    #[test]
    fn a_providers_base_url_and_a_keys_hash_stay_out_of_debug() {
        let text = "[[auth.keys]]\nname = \"bob\"\nsha256 = \"feedc0de\"\n\
                    [providers.p]\nkind = \"openai\"\n\
                    base_url = \"https://u:pw@h.example/v1?key=sk-q\"\n\
                    [providers.q]\nkind = \"openai\"\nbase_url = \"https://h.example/v1\"\n";
        let c = parse(None, text).unwrap();
        let shown = format!("{c:?}");
        for secret in ["pw", "sk-q", "feedc0de"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert!(shown.contains("https://***@h.example/v1?***"), "{shown}");
        assert!(shown.contains("\"https://h.example/v1\""), "{shown}");
        assert!(shown.contains("bob"), "{shown}");
    }

    #[test]
    fn a_providers_timeouts_override_the_global_ones_one_by_one() {
        let text = "[timeouts]\nfirst_byte = \"2s\"\nidle = \"7s\"\n\
                    [providers.p]\nkind = \"mock\"\n[providers.p.timeouts]\nconnect = \"5s\"\nidle = \"9s\"\n";
        let c = parse(None, text).unwrap();
        let t = c.providers["p"]
            .timeouts
            .as_ref()
            .unwrap()
            .over(&c.timeouts)
            .to_timeouts();
        // Given: connect and idle; from [timeouts]: first_byte; the default: total.
        assert_eq!(
            [t.connect, t.first_byte, t.idle, t.total],
            [5, 2, 9, 600].map(Duration::from_secs)
        );
    }
}
