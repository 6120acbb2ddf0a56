//! The `Provider` trait: the one seam between routing and a concrete upstream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use http::HeaderMap;

use crate::error::ProviderError;
use crate::raw::Dialect;
use crate::request::ChatRequest;
use crate::response::ChatResponse;
use crate::secret::Secret;
use crate::stream::Frame;

/// A provider's stream of frames. Dropping it cancels the upstream request.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Frame, ProviderError>> + Send>>;

/// What a provider call returns.
pub enum Reply {
    /// A complete response (the request did not ask for a stream).
    Complete(Box<ChatResponse>),
    /// A stream of frames.
    Stream(EventStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Complete(r) => f.debug_tuple("Complete").field(r).finish(),
            Reply::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// What a provider supports for a model. A request that needs something a target lacks
/// skips that target (or, where configured, drops the feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The dialect the upstream speaks natively (same-dialect requests pass losslessly).
    pub native_dialect: Option<Dialect>,
    /// Image input.
    pub images: bool,
    /// Document (PDF) input.
    pub documents: bool,
    /// Function tools.
    pub tools: bool,
    /// Several tool calls per turn.
    pub parallel_tools: bool,
    /// Extended thinking / reasoning.
    pub thinking: bool,
    /// Prompt caching (`cache_control`).
    pub prompt_caching: bool,
    /// Anthropic's message threads (`thread`: the upstream keeps the conversation, so a
    /// continuing request holds only the new messages).
    pub threads: bool,
}

impl Capabilities {
    /// Everything supported.
    pub const ALL: Capabilities = Capabilities {
        native_dialect: None,
        images: true,
        documents: true,
        tools: true,
        parallel_tools: true,
        thinking: true,
        prompt_caching: true,
        threads: true,
    };
}

/// Per-call context the router hands a provider.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The gateway's request id, for logs and upstream correlation.
    pub request_id: String,
    /// The upstream key chosen from the provider's pool, if the provider uses keys.
    pub key: Option<Secret>,
    /// When the whole call must be finished: the router starts no attempt after it, and
    /// Weir's HTTP providers end an attempt still running then (a timeout).
    pub deadline: Option<Instant>,
    /// Client headers to forward (`anthropic-beta`, `anthropic-version`, `openai-beta`):
    /// already filtered; never credentials or hop-by-hop headers.
    pub forward_headers: HeaderMap,
    /// The client's session (`x-weir-session`, `x-claude-code-session-id` or
    /// `metadata.user_id`), so the router can keep a session on one target.
    pub session: Option<String>,
    /// Where a provider reports what the upstream's response headers said about the
    /// key's rate limits (read by the router after the call).
    pub report: KeyReport,
    /// The client's dialect: a provider of the same dialect may answer a non-streamed
    /// request with the upstream's body verbatim ([`ChatResponse::raw`](crate::ChatResponse::raw)),
    /// decoding only its id, model and usage (`content` stays empty). That dialect's
    /// `encode_response` writes it; leave this `None` to get the whole answer decoded.
    pub client_dialect: Option<crate::Dialect>,
    /// Where the router tells the caller what it has done so far (see [`Progress`]).
    pub progress: Progress,
    /// The name of the gateway's client key the request came with, for state a provider
    /// keeps per client (the Responses bridge's remembered items).
    pub client_key: Option<String>,
}

/// What the router has done for a request so far, for its caller to read if the request
/// is dropped before its answer (the client went away): the attempt in flight, and the
/// usage its upstream already reported (a stream's opening event, held until its first
/// content). Clones share it; the default watches nothing and costs nothing.
#[derive(Clone, Debug, Default)]
pub struct Progress(Option<Arc<Mutex<Attempted>>>);

/// What [`Progress`] holds.
#[derive(Clone, Debug, Default)]
pub struct Attempted {
    /// The provider of the attempt in flight (empty: none yet).
    pub provider: String,
    /// Its upstream model.
    pub model: String,
    /// Usage its upstream reported already.
    pub usage: Option<crate::response::Usage>,
}

impl Progress {
    /// A progress that is watched (the caller keeps a clone).
    pub fn watched() -> Progress {
        Progress(Some(Arc::default()))
    }

    fn with(&self, f: impl FnOnce(&mut Attempted)) {
        if let Some(p) = &self.0 {
            // The state is plain data, valid after any panic: keep going.
            f(&mut p.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }

    /// Whether anyone reads it.
    pub fn is_watched(&self) -> bool {
        self.0.is_some()
    }

    /// The attempt in flight is on `provider`'s `model`.
    pub fn attempt(&self, provider: &str, model: &str) {
        self.with(|a| {
            provider.clone_into(&mut a.provider);
            model.clone_into(&mut a.model);
        });
    }

    /// The attempt's upstream reported `usage`.
    pub fn usage(&self, usage: &crate::response::Usage) {
        self.with(|a| a.usage = Some(usage.clone()));
    }

    /// What was recorded, if anything was.
    pub fn get(&self) -> Option<Attempted> {
        let p = self.0.as_ref()?;
        let a = p.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (!a.provider.is_empty()).then(|| a.clone())
    }
}

impl CallContext {
    /// A context with only a request id.
    pub fn new(request_id: impl Into<String>) -> Self {
        CallContext {
            request_id: request_id.into(),
            key: None,
            deadline: None,
            forward_headers: HeaderMap::new(),
            session: None,
            report: KeyReport::default(),
            client_dialect: None,
            progress: Progress::default(),
            client_key: None,
        }
    }
}

/// A provider's report on the call it made with a key: set when the upstream's rate-limit
/// headers say a limit is exhausted (`remaining: 0`), so the key can rest until it resets
/// without spending a request; and the upstream's own id for the request, for the client
/// and the log. Shared between the router and the provider (clones share state).
#[derive(Clone, Debug, Default)]
pub struct KeyReport(Arc<Mutex<Reported>>);

#[derive(Debug, Default)]
struct Reported {
    exhausted: Option<Duration>,
    request_id: Option<String>,
    warnings: Vec<String>,
}

impl KeyReport {
    /// A fresh, empty report.
    pub fn new() -> Self {
        KeyReport::default()
    }

    /// The key's limits are exhausted for `d`.
    pub fn exhausted_for(&self, d: Duration) {
        if let Ok(mut g) = self.0.lock() {
            g.exhausted = Some(g.exhausted.map_or(d, |old| old.max(d)));
        }
    }

    /// What was reported of the key's limits, clearing it.
    pub fn take(&self) -> Option<Duration> {
        self.0.lock().ok().and_then(|mut g| g.exhausted.take())
    }

    /// The upstream named the request `id` (Anthropic's `request-id`, `x-request-id`...).
    pub fn upstream_request_id(&self, id: &str) {
        if let Ok(mut g) = self.0.lock() {
            g.request_id = Some(id.to_owned());
        }
    }

    /// The upstream's id for the request, if it gave one.
    pub fn request_id(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.request_id.clone())
    }

    /// Something the client should know about how its request was served (a part of it
    /// left out, say): added to the answer's `x-weir-warning`. Never the request's
    /// content or a secret.
    pub fn warn(&self, warning: String) {
        if let Ok(mut g) = self.0.lock() {
            g.warnings.push(warning);
        }
    }

    /// The upstream's id for the request and the warnings reported (cleared), in one look:
    /// what a served request takes.
    pub fn take_served(&self) -> (Option<String>, Vec<String>) {
        self.0
            .lock()
            .map(|mut g| (g.request_id.clone(), std::mem::take(&mut g.warnings)))
            .unwrap_or_default()
    }
}

/// An upstream provider.
///
/// Implementations translate the canonical request to their wire format, call the
/// upstream, and translate the answer back. They know nothing of routing: one call, one
/// upstream, one key (from `cx`). Failures are classified in [`ProviderError`] so the
/// router can decide whether to try elsewhere and whether the target is unhealthy.
///
/// ```text
/// let reply = provider.send(&request, CallContext::new("req-1")).await?;
/// ```
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The provider's id (its config table name).
    fn id(&self) -> &str;

    /// What the provider supports for `model` (the upstream model name).
    fn capabilities(&self, model: &str) -> Capabilities;

    /// Sends one request. Dropping the returned future, or the stream inside
    /// [`Reply::Stream`], cancels the upstream request. The request is borrowed: the
    /// router sends the same one to each key and target it tries, and the client's
    /// request as it is when the target keeps its model name, without copying it.
    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError>;

    /// The provider's key pool, in configured order. The router picks one per call (least
    /// loaded, skipping keys that are cooling down or were refused) and passes it in
    /// [`CallContext::key`]. Empty: the provider needs no keys or manages its own.
    fn keys(&self) -> &[Secret] {
        &[]
    }

    /// A cheap request proving the upstream serves `model` again (a circuit breaker's
    /// half-open probe; never a user's request). The default sends a one-token
    /// completion; providers override it with something cheaper where they can.
    async fn probe(&self, model: &str, cx: CallContext) -> Result<(), ProviderError> {
        let req = ChatRequest {
            model: model.to_owned(),
            messages: vec![crate::content::Message::text(
                crate::content::Role::User,
                "ping",
            )],
            max_tokens: Some(1),
            ..Default::default()
        };
        match self.send(&req, cx).await? {
            Reply::Complete(_) => Ok(()),
            // Not asked for, but a stream that opened is an answer too.
            Reply::Stream(_) => Ok(()),
        }
    }

    /// The output limit this provider sends for `model` when a request sets none (Claude
    /// must be given one); `None` when it sends none and the upstream decides. The router
    /// reads it to hold such a request within a target's `max_output_tokens`.
    fn default_output(&self, _model: &str, _stream: bool) -> Option<u32> {
        None
    }

    /// Whether the provider serves embeddings ([`Provider::embed`]): the router passes over
    /// targets that do not, before any call.
    fn serves_embeddings(&self) -> bool {
        false
    }

    /// Whether the provider serves the Responses API ([`Provider::responses`]): the router
    /// passes over targets that do not, before any call.
    fn serves_responses(&self) -> bool {
        false
    }

    /// Embeds `req.input` with `req.model` (already this target's model). Providers without
    /// embeddings keep this default: a 400 that sends the router on to the next target,
    /// without counting against this one's health.
    async fn embed(
        &self,
        _req: &crate::EmbedRequest,
        _cx: CallContext,
    ) -> Result<crate::EmbedResponse, ProviderError> {
        let mut e = ProviderError::new(
            crate::ErrorKind::InvalidRequest,
            format!("provider `{}` does not serve embeddings", self.id()),
        );
        e.status = Some(400);
        e.retryable_elsewhere = true;
        e.counts_against_health = false;
        Err(e)
    }

    /// Serves a Responses API request (`req.model` is already this target's model), the
    /// answer passed through as the upstream wrote it. Providers without the Responses API
    /// keep this default: a 400 that sends the router on to the next target, without
    /// counting against this one's health.
    async fn responses(
        &self,
        _req: &crate::ResponsesRequest,
        _cx: CallContext,
    ) -> Result<crate::ResponsesReply, ProviderError> {
        let mut e = ProviderError::new(
            crate::ErrorKind::InvalidRequest,
            format!("provider `{}` does not serve the Responses API", self.id()),
        );
        e.status = Some(400);
        e.retryable_elsewhere = true;
        e.counts_against_health = false;
        Err(e)
    }

    /// The model names the upstream lists (its own `GET /v1/models`), for the gateway's
    /// listing of glob routes. `Ok(None)`: the provider has no listing.
    async fn list_models(&self, _cx: CallContext) -> Result<Option<Vec<String>>, ProviderError> {
        Ok(None)
    }

    /// Counts the input tokens of a request with the upstream's own counter, when it has
    /// one. `Ok(None)`: no counter (the caller estimates).
    async fn count_tokens(
        &self,
        _req: ChatRequest,
        _cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }
}
