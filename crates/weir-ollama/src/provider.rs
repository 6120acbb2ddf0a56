//! The `kind = "ollama"` provider: Ollama's native `/api/chat`.

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use weir_model::{
    CallContext, Capabilities, ChatRequest, ErrorKind, Provider, ProviderError, Reply, Secret,
};
use weir_upstream::{
    body_frames, endpoint, read_body, read_error_body, report_limits, scrub, secret_header,
    status_error, Endpoint, HttpProviderConfig, KeyRing, Upstream,
};

use crate::codec::{decode_error, decode_response, encode_request, NdjsonDecoder};

/// Settings of an Ollama provider: `base_url` is the daemon's address (`/api/chat` is
/// appended); keys are optional (sent as `Authorization: Bearer`, for hosted Ollama).
pub type OllamaConfig = HttpProviderConfig<()>;

/// A local Ollama daemon.
pub const DEFAULT_BASE_URL: &str = "http://localhost:11434";

/// Sends canonical requests to Ollama's `/api/chat`.
#[derive(Debug)]
pub struct OllamaProvider {
    cfg: OllamaConfig,
    upstream: Upstream,
    keys: KeyRing,
    chat_url: Endpoint,
}

impl OllamaProvider {
    /// A provider over a shared HTTP client. Fails when `base_url` is not an http(s) URL.
    pub fn new(cfg: OllamaConfig, upstream: Upstream) -> Result<Self, String> {
        Ok(OllamaProvider {
            chat_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/api/chat")?)
                .map_err(|e| e.message)?,
            keys: KeyRing::new(cfg.keys.clone()),
            cfg,
            upstream,
        })
    }
}

#[async_trait::async_trait]
impl Provider for OllamaProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn keys(&self) -> &[Secret] {
        self.keys.all()
    }

    fn capabilities(&self, _model: &str) -> Capabilities {
        Capabilities {
            native_dialect: None,
            documents: false,
            prompt_caching: false,
            threads: false,
            ..Capabilities::ALL
        }
    }

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let body = encode_request(req).map_err(|e| ProviderError::unexpressible(&e))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let key = self.keys.pick(&cx);
        if let Some(k) = key {
            secret_header(
                &mut headers,
                AUTHORIZATION,
                &format!("Bearer {}", k.expose()),
            )?;
        }
        let mut resp = self
            .upstream
            .send(
                &self.chat_url,
                headers,
                body,
                &self.cfg.timeouts.within(cx.deadline),
            )
            .await
            .map_err(|e| weir_upstream::for_whole_answer(e, req.is_stream()))?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = read_error_body(&mut resp).await;
            let mut err = status_error(status, &headers, &body, decode_error);
            for k in self.keys.all().iter().chain(key) {
                scrub(&mut err, k.expose());
            }
            return Err(err);
        }
        report_limits(resp.headers(), &cx.report);
        if req.is_stream() {
            return Ok(Reply::Stream(body_frames(
                resp,
                self.cfg.timeouts.idle,
                NdjsonDecoder::new(),
            )));
        }
        let body = read_body(&mut resp).await?;
        let r = decode_response(&body).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's response could not be decoded: {e}"),
            )
        })?;
        Ok(Reply::Complete(Box::new(r)))
    }
}
