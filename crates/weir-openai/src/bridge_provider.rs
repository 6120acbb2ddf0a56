//! [`ResponsesBridge`]: a provider without the Responses API, serving it through
//! [`crate::bridge`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use weir_model::{
    CallContext, Capabilities, ChatRequest, EventStream, Provider, ProviderError, Reply,
    ResponsesReply, ResponsesRequest, Secret,
};

use crate::bridge::{self, StreamBridge};

/// A provider that serves the Responses API by translating it to its chat requests; every
/// other call goes to it unchanged.
pub struct ResponsesBridge {
    inner: Arc<dyn Provider>,
}

impl ResponsesBridge {
    /// `inner` as it is when it serves the Responses API itself, else bridged.
    pub fn wrap(inner: Arc<dyn Provider>) -> Arc<dyn Provider> {
        if inner.serves_responses() {
            inner
        } else {
            Arc::new(ResponsesBridge { inner })
        }
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
        mut cx: CallContext,
    ) -> Result<ResponsesReply, ProviderError> {
        let owner = cx.client_key.clone().unwrap_or_default();
        let b = bridge::chat_request(req, &owner).map_err(|e| ProviderError::unexpressible(&e))?;
        if !b.answer.dropped_tools.is_empty() {
            tracing::debug!(request_id = %cx.request_id, tools = ?b.answer.dropped_tools, "hosted tools left out of a bridged Responses request");
        }
        // The answer is translated: the provider reads it whole, never verbatim.
        cx.client_dialect = None;
        match self.inner.send(&b.chat, cx).await? {
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
