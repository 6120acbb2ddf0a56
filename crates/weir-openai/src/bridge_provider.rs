//! [`ResponsesBridge`]: a provider without the Responses API, serving it through
//! [`crate::bridge`].

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use weir_model::raw::to_raw;
use weir_model::{
    CallContext, Capabilities, ChatRequest, Dialect, EventStream, Provider, ProviderError, Reply,
    ResponsesReply, ResponsesRequest, Secret, WireError,
};

use crate::bridge::{self, StreamBridge};

/// A provider that serves the Responses API by translating it to its chat requests; every
/// other call goes to it unchanged.
///
/// Wrapped around a provider that has the API itself (an OpenAI-compatible service may or
/// may not), it passes the API through and falls back to the translation when the
/// upstream answers that it has no such endpoint ([`no_endpoint`]), remembering it for
/// the process (every runtime's copy of the provider, and across reloads that keep its
/// upstream) once a translated request got past that.
pub struct ResponsesBridge {
    inner: Arc<dyn Provider>,
    /// `None`: always translate. `Some(upstream)`: pass through first, unless the
    /// upstream is one found to lack the endpoint ([`ABSENT`]).
    native: Option<String>,
}

/// Upstreams (as named to [`ResponsesBridge::wrap_with`]) found to have no Responses API.
/// As many as the configs named, at most.
static ABSENT: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

fn absent() -> std::sync::MutexGuard<'static, HashSet<String>> {
    // (A poisoned lock still holds a valid set: entries are only ever added.)
    ABSENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ResponsesBridge {
    /// `inner` as it is when it serves the Responses API itself, else bridged.
    pub fn wrap(inner: Arc<dyn Provider>) -> Arc<dyn Provider> {
        Self::wrap_with(inner, Some(true), "")
    }

    /// `inner` serving the Responses API as `native` says:
    /// - `Some(true)`: only as the upstream serves it (`inner` unchanged when it does);
    /// - `Some(false)`: always by translation to chat requests;
    /// - `None`: passed through where `inner` serves it, falling back to the translation
    ///   when the upstream answers that it has no such endpoint; translated otherwise.
    ///
    /// `upstream` names the service `inner` calls (its id and URL, say): what is learnt
    /// of it holds for every provider wrapped with that name.
    pub fn wrap_with(
        inner: Arc<dyn Provider>,
        native: Option<bool>,
        upstream: &str,
    ) -> Arc<dyn Provider> {
        match (native, inner.serves_responses()) {
            (Some(true), true) => inner,
            (None, true) => Arc::new(ResponsesBridge {
                inner,
                native: Some(upstream.to_owned()),
            }),
            _ => Arc::new(ResponsesBridge {
                inner,
                native: None,
            }),
        }
    }

    /// The request translated to a chat request, for the client key in `cx`.
    fn translated(req: &ResponsesRequest, cx: &CallContext) -> Result<bridge::Bridged, WireError> {
        bridge::chat_request(req, cx.client_key.as_deref().unwrap_or_default())
    }

    /// The request translated to a chat request and the answer back.
    async fn bridged(
        &self,
        req: &ResponsesRequest,
        cx: CallContext,
    ) -> Result<ResponsesReply, ProviderError> {
        let b = Self::translated(req, &cx).map_err(|e| ProviderError::unexpressible(&e))?;
        self.send_bridged(req, b, cx).await
    }

    /// A translated request sent, and its answer translated back.
    ///
    /// A hosted web search goes as `web_search_options`, which the encoders of upstreams
    /// with a search of their own translate (Claude's web search tool, Gemini's grounding)
    /// and the others refuse before sending: then the request goes without it. An
    /// OpenAI-compatible chat upstream would get the field verbatim, which most do not
    /// know: it goes without. The answer's warning names the hosted tools left out.
    async fn send_bridged(
        &self,
        req: &ResponsesRequest,
        mut b: bridge::Bridged,
        mut cx: CallContext,
    ) -> Result<ResponsesReply, ProviderError> {
        // The answer is translated: the provider reads it whole, never verbatim.
        cx.client_dialect = None;
        let mut left_out = std::mem::take(&mut b.answer.dropped_tools);
        let search = match b.answer.web_search.take() {
            // Streamed, not yet: the stream bridge writes each of Claude's cited text
            // blocks as a message of its own and counts no searches in the usage it
            // reports, so a streamed search goes without for now.
            Some(_)
                if req.stream
                    || self.inner.capabilities(&b.chat.model).native_dialect
                        == Some(Dialect::OpenAi) =>
            {
                left_out.push("web_search".to_owned());
                None
            }
            asked => asked,
        };
        let report = cx.report.clone();
        let reply = match search {
            None => self.inner.send(&b.chat, cx).await,
            Some(opts) => {
                let mut chat = b.chat.clone();
                chat.extra.insert("web_search_options", to_raw(&opts));
                match self.inner.send(&chat, cx.clone()).await {
                    Err(e) if e.is_unexpressible() => {
                        tracing::debug!(request_id = %cx.request_id, why = %e.message, "the upstream cannot run the hosted web search; sending the request without it");
                        left_out.push("web_search".to_owned());
                        self.inner.send(&b.chat, cx).await
                    }
                    other => other,
                }
            }
        };
        if !left_out.is_empty() {
            report.warn(format!(
                "{}/{}: hosted tools left out (this upstream has no counterpart): {}",
                self.inner.id(),
                weir_model::log_safe(&b.chat.model),
                left_out.join(", ")
            ));
        }
        match reply? {
            Reply::Complete(resp) => {
                let (body, _) = bridge::response_body(&resp, &b.answer);
                Ok(ResponsesReply::Complete {
                    body,
                    // (Not remembered for `previous_response_id`: it cannot be continued.)
                    id: None,
                    usage: resp.usage,
                })
            }
            Reply::Stream(s) => Ok(ResponsesReply::Stream(Box::pin(BridgeStream {
                bridge: StreamBridge::new(b.answer, &req.model),
                inner: s,
            }))),
        }
    }
}

/// Whether an upstream's error says it has no Responses endpoint: a 405 or 501, or a 404
/// about the path rather than the request. An OpenAI-shaped 404 (an `error` with a `type`)
/// names what the request named ("Item with id ... not found", "The model ... does not
/// exist", a response id): the client's to read, and nothing about the endpoint, unless it
/// says the URL is unknown, as OpenAI does for a path it does not serve. Servers without
/// the route answer their framework's 404 (`{"detail":"Not Found"}`, plain text, HTML).
fn no_endpoint(e: &ProviderError) -> bool {
    match e.status {
        Some(405 | 501) => true,
        Some(404) => match e.api_error.as_deref() {
            Some(api) if api.error_type.is_some() || api.code.is_some() || api.param.is_some() => {
                let m = api.message.to_ascii_lowercase();
                let m = m.trim_end_matches('.');
                // OpenAI's, Groq's older and llama.cpp's words for a path they do not serve.
                m.contains("invalid url")
                    || m.contains("unrecognized request url")
                    || m.contains("unknown request url")
                    || api.code.as_deref() == Some("unknown_url")
                    || m == "not found"
                    || m == "file not found"
            }
            _ => true,
        },
        _ => false,
    }
}

#[async_trait::async_trait]
impl Provider for ResponsesBridge {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn capabilities(&self, model: &str) -> Capabilities {
        self.inner.capabilities(model)
    }

    // (The inner provider's future as it is: no second box on every chat request.)
    fn send<'a, 'b, 'f>(
        &'a self,
        req: &'b ChatRequest,
        cx: CallContext,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Reply, ProviderError>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.inner.send(req, cx)
    }

    fn keys(&self) -> &[Secret] {
        self.inner.keys()
    }

    async fn probe(&self, model: &str, cx: CallContext) -> Result<(), ProviderError> {
        self.inner.probe(model, cx).await
    }

    fn serves_embeddings(&self) -> bool {
        self.inner.serves_embeddings()
    }

    fn default_output(&self, model: &str, stream: bool) -> Option<u32> {
        self.inner.default_output(model, stream)
    }

    fn serves_responses(&self) -> bool {
        true
    }

    async fn embed(
        &self,
        req: &weir_model::EmbedRequest,
        cx: CallContext,
    ) -> Result<weir_model::EmbedResponse, ProviderError> {
        self.inner.embed(req, cx).await
    }

    async fn responses(
        &self,
        req: &ResponsesRequest,
        cx: CallContext,
    ) -> Result<ResponsesReply, ProviderError> {
        let Some(upstream) = &self.native else {
            return self.bridged(req, cx).await;
        };
        if absent().contains(upstream) {
            return self.bridged(req, cx).await;
        }
        let native = match self.inner.responses(req, cx.clone()).await {
            Err(e) if no_endpoint(&e) => e,
            other => return other,
        };
        // What the translation cannot carry keeps the upstream's own answer.
        let Ok(b) = Self::translated(req, &cx) else {
            return Err(native);
        };
        let reply = self.send_bridged(req, b, cx).await;
        // A chat request that got past what refused the Responses request shows the
        // endpoint was missing; one refused alike (the model is unknown there too) or not
        // answered leaves the upstream's own answer to the client, and teaches nothing.
        let past = match &reply {
            Ok(_) => true,
            Err(e) => !no_endpoint(e) && e.status.is_some(),
        };
        if !past {
            return Err(native);
        }
        if absent().insert(upstream.clone()) {
            tracing::warn!(
                provider = %self.inner.id(),
                status = native.status.unwrap_or_default(),
                "the upstream has no Responses API: this provider serves it by translation to chat completions from now on (set responses_api = false to skip the first try)"
            );
        }
        reply
    }

    async fn list_models(&self, cx: CallContext) -> Result<Option<Vec<String>>, ProviderError> {
        self.inner.list_models(cx).await
    }

    async fn count_tokens(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        self.inner.count_tokens(req, cx).await
    }
}

/// A chat stream as the Responses API's events.
struct BridgeStream {
    inner: EventStream,
    bridge: StreamBridge,
}

impl BridgeStream {
    /// The upstream failed: before the client saw an item, the error itself (the target
    /// failed, and the next may serve); after, `response.failed` ends the stream (written
    /// after what `out` already holds).
    fn failed(
        &mut self,
        mut out: Vec<u8>,
        e: ProviderError,
    ) -> Result<bytes::Bytes, ProviderError> {
        if !self.bridge.committed() {
            return Err(e);
        }
        let api = e
            .api_error
            .as_deref()
            .cloned()
            .unwrap_or_else(|| weir_model::ApiError::new(e.kind, e.message.clone()));
        self.bridge.fail(&api, e.retry_after, &mut out);
        Ok(bytes::Bytes::from(out))
    }
}

impl Stream for BridgeStream {
    type Item = Result<bytes::Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.bridge.finished() {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let mut out = Vec::new();
                    for ev in &frame.events {
                        if let Err(api) = this.bridge.push(ev, &mut out) {
                            return Poll::Ready(Some(
                                this.failed(out, ProviderError::from_api(*api, None)),
                            ));
                        }
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(bytes::Bytes::from(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(this.failed(Vec::new(), e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
