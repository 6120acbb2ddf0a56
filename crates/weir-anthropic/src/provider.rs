//! The Anthropic provider: Anthropic's API and any Anthropic-compatible service.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use weir_model::{
    CallContext, Capabilities, ChatRequest, Dialect, ErrorKind, Frame, Provider, ProviderError,
    Reply, Secret, WireError,
};
use weir_upstream::{
    call, endpoint, get_json, listed_ids, read_body, read_error_body, scrub, secret_header,
    status_error, Endpoint, FrameDecoder, HttpProviderConfig, KeyRing, Upstream, Url,
};

use crate::{
    decode_error, decode_response, decode_response_summary, encode_request, EncodeOptions,
    StreamDecoder,
};

/// `anthropic-version` sent when the client did not send one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// Settings of an Anthropic provider: `base_url` is the scheme and host (and any path
/// prefix) of the API; `/v1/messages` is appended.
pub type AnthropicConfig = HttpProviderConfig<EncodeOptions>;

/// Anthropic's own API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Sends canonical requests to an Anthropic Messages endpoint.
#[derive(Debug)]
pub struct AnthropicProvider {
    cfg: AnthropicConfig,
    upstream: Upstream,
    keys: KeyRing,
    messages_url: Endpoint,
    count_tokens_url: Endpoint,
    models_url: Url,
    /// Anthropic's own API (not a compatible service): it has message threads.
    first_party: bool,
}

impl AnthropicProvider {
    /// A provider over a shared HTTP client. Fails when `base_url` is not an http(s) URL.
    pub fn new(cfg: AnthropicConfig, upstream: Upstream) -> Result<Self, String> {
        let keys = KeyRing::new(cfg.keys.clone());
        Ok(AnthropicProvider {
            messages_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/v1/messages")?)
                .map_err(|e| e.message)?,
            count_tokens_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/v1/messages/count_tokens")?)
                .map_err(|e| e.message)?,
            models_url: {
                let mut u = endpoint(&cfg.base_url, "/v1/models")?;
                u.set_query(Some("limit=1000"));
                u
            },
            first_party: endpoint(&cfg.base_url, "/")?.host_str() == Some("api.anthropic.com"),
            cfg,
            upstream,
            keys,
        })
    }

    fn headers(&self, key: Option<&Secret>, cx: &CallContext) -> Result<HeaderMap, ProviderError> {
        // Room for these and what the upstream layer adds (host, accept-encoding, via).
        let mut h = HeaderMap::with_capacity(8);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &cx.forward_headers {
            if name.as_str().starts_with("anthropic-") {
                h.append(name.clone(), value.clone());
            }
        }
        if !h.contains_key("anthropic-version") {
            h.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(DEFAULT_VERSION),
            );
        }
        if let Some(key) = key {
            secret_header(&mut h, HeaderName::from_static("x-api-key"), key.expose())?;
        }
        Ok(h)
    }

    fn dialect() -> weir_upstream::Dialect<Decoder> {
        weir_upstream::Dialect {
            dialect: weir_model::Dialect::Anthropic,
            decode_error,
            decode_response,
            decode_summary: decode_response_summary,
            stream_decoder: || Decoder(StreamDecoder::new()),
        }
    }
}

struct Decoder(StreamDecoder);

impl FrameDecoder for Decoder {
    fn decode(&mut self, event: weir_sse::Event) -> Result<Frame, WireError> {
        self.0.decode(event)
    }
    fn relay(
        &mut self,
        name: Option<&str>,
        data: &str,
        out: &mut Vec<weir_model::StreamEvent>,
    ) -> bool {
        name.is_some_and(|n| self.0.relay(n, data, out))
    }
    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        self.0.finish()
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn keys(&self) -> &[Secret] {
        self.keys.all()
    }

    fn default_output(&self, model: &str, stream: bool) -> Option<u32> {
        Some(self.cfg.encode.limit_for(model, stream))
    }

    fn capabilities(&self, _model: &str) -> Capabilities {
        // Message threads only where they are known to be kept: a compatible service
        // that ignored `thread` would answer a continuing request's few messages as the
        // whole conversation (`capabilities = { threads = true }` says otherwise).
        Capabilities {
            native_dialect: Some(Dialect::Anthropic),
            threads: self.first_party,
            ..Capabilities::ALL
        }
    }

    /// The token counter: free, and served by the same API as messages.
    /// Counting tokens costs nothing; a service without `count_tokens` (many
    /// Anthropic-compatible ones answer 404 or 405) is asked for a one-token message
    /// instead, as its 404 would otherwise pass for a healthy answer and close the breaker
    /// of a target whose messages still fail.
    async fn probe(&self, model: &str, cx: CallContext) -> Result<(), ProviderError> {
        let mut req = ChatRequest {
            model: model.to_owned(),
            messages: vec![weir_model::Message::text(weir_model::Role::User, "ping")],
            ..Default::default()
        };
        match self.count_tokens(req.clone(), cx.clone()).await {
            Err(e) if matches!(e.status, Some(404 | 405)) => {
                req.max_tokens = Some(1);
                self.send(&req, cx).await.map(|_| ())
            }
            counted => counted.map(|_| ()),
        }
    }

    /// `GET /v1/models` (one page of up to 1000).
    async fn list_models(&self, cx: CallContext) -> Result<Option<Vec<String>>, ProviderError> {
        let key = self.keys.pick(&cx);
        let mut headers = self.headers(key, &cx)?;
        headers.remove(CONTENT_TYPE);
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let body = get_json(
            &self.upstream,
            &self.models_url,
            headers,
            &self.cfg.timeouts.within(cx.deadline),
            &secrets,
            decode_error,
        )
        .await?;
        listed_ids(&body).map(Some)
    }

    async fn count_tokens(
        &self,
        mut req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        // The counting endpoint takes a Messages body without max_tokens and stream.
        req.stream = None;
        let opts = EncodeOptions {
            omit_stream: true,
            omit_max_tokens: true,
            ..self.cfg.encode.clone()
        };
        // (Not parsed again to drop max_tokens: a deeply nested tool input, fine as raw
        // JSON, would fail serde_json's depth limit as a 500.)
        let body = encode_request(&req, &opts).map_err(|e| ProviderError::unexpressible(&e))?;
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let mut resp = self
            .upstream
            .send(
                &self.count_tokens_url,
                headers,
                body,
                &self.cfg.timeouts.within(cx.deadline),
            )
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if !status.is_success() {
            let body = read_error_body(&mut resp).await;
            let mut err = status_error(status, &headers, &body, decode_error);
            for k in self.keys.all().iter().chain(key) {
                scrub(&mut err, k.expose());
            }
            return Err(err);
        }
        let body = read_body(&mut resp).await?;
        #[derive(serde::Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        let c: Count = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's token count could not be decoded: {e}"),
            )
        })?;
        Ok(Some(c.input_tokens))
    }

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let body =
            encode_request(req, &self.cfg.encode).map_err(|e| ProviderError::unexpressible(&e))?;
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        call(
            &self.upstream,
            &self.messages_url,
            headers,
            body,
            &self.cfg.timeouts.within(cx.deadline),
            req.is_stream(),
            &secrets,
            Self::dialect(),
            &cx.report,
            cx.client_dialect,
        )
        .await
    }
}
