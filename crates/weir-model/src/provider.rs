//! The `Provider` trait: the one seam between routing and a concrete upstream.

use std::pin::Pin;
use std::time::Instant;

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
    };
}

/// Per-call context the router hands a provider.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The gateway's request id, for logs and upstream correlation.
    pub request_id: String,
    /// The upstream key chosen from the provider's pool, if the provider uses keys.
    pub key: Option<Secret>,
    /// When the whole call must be finished.
    pub deadline: Option<Instant>,
    /// Client headers to forward (`anthropic-beta`, `anthropic-version`, `openai-beta`):
    /// already filtered; never credentials or hop-by-hop headers.
    pub forward_headers: HeaderMap,
}

impl CallContext {
    /// A context with only a request id.
    pub fn new(request_id: impl Into<String>) -> Self {
        CallContext {
            request_id: request_id.into(),
            key: None,
            deadline: None,
            forward_headers: HeaderMap::new(),
        }
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
/// let reply = provider.send(request, CallContext::new("req-1")).await?;
/// ```
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The provider's id (its config table name).
    fn id(&self) -> &str;

    /// What the provider supports for `model` (the upstream model name).
    fn capabilities(&self, model: &str) -> Capabilities;

    /// Sends one request. Dropping the returned future, or the stream inside
    /// [`Reply::Stream`], cancels the upstream request.
    async fn send(&self, req: ChatRequest, cx: CallContext) -> Result<Reply, ProviderError>;

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
