//! The OpenAI provider: OpenAI's API and any OpenAI-compatible service.

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use weir_model::{
    CallContext, Capabilities, ChatRequest, Dialect, ErrorKind, Frame, Provider, ProviderError,
    Reply, Secret, WireError,
};
use weir_upstream::{
    call, endpoint, secret_header, FrameDecoder, HttpProviderConfig, KeyRing, Upstream, Url,
};

use crate::{decode_error, decode_response, encode_request, EncodeOptions, StreamDecoder};

/// Settings of an OpenAI provider: `base_url` is the API base up to and including its
/// version segment (`/chat/completions` is appended): `https://api.openai.com/v1`,
/// `https://api.groq.com/openai/v1`.
pub type OpenAiConfig = HttpProviderConfig<EncodeOptions>;

/// OpenAI's own API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Sends canonical requests to a Chat Completions endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    cfg: OpenAiConfig,
    upstream: Upstream,
    keys: KeyRing,
    chat_url: Url,
}

impl OpenAiProvider {
    /// A provider over a shared HTTP client. Fails when `base_url` is not an http(s) URL.
    pub fn new(cfg: OpenAiConfig, upstream: Upstream) -> Result<Self, String> {
        let keys = KeyRing::new(cfg.keys.clone());
        Ok(OpenAiProvider {
            chat_url: endpoint(&cfg.base_url, "/chat/completions")?,
            cfg,
            upstream,
            keys,
        })
    }

    fn headers(&self, key: Option<&Secret>, cx: &CallContext) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &cx.forward_headers {
            if name.as_str() == "openai-beta" {
                h.append(name.clone(), value.clone());
            }
        }
        if let Some(key) = key {
            secret_header(&mut h, AUTHORIZATION, &format!("Bearer {}", key.expose()))?;
        }
        Ok(h)
    }
}

struct Decoder(StreamDecoder);

impl FrameDecoder for Decoder {
    fn decode(&mut self, event: weir_sse::Event) -> Result<Frame, WireError> {
        self.0.decode(event)
    }
    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        let f = self.0.finish()?;
        Ok((!f.events.is_empty()).then_some(f))
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn keys(&self) -> &[Secret] {
        self.keys.all()
    }

    fn capabilities(&self, _model: &str) -> Capabilities {
        Capabilities {
            native_dialect: Some(Dialect::OpenAi),
            ..Capabilities::ALL
        }
    }

    async fn send(&self, req: ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let body = encode_request(&req, &self.cfg.encode)
            .map_err(|e| ProviderError::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let dialect = weir_upstream::Dialect {
            decode_error,
            decode_response,
            stream_decoder: || Decoder(StreamDecoder::new()),
        };
        call(
            &self.upstream,
            &self.chat_url,
            headers,
            body,
            &self.cfg.timeouts,
            req.is_stream(),
            &secrets,
            dialect,
            &cx.report,
        )
        .await
    }
}
