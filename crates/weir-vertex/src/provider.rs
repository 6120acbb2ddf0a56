//! The Vertex AI provider: endpoints, bearer tokens with one retry after a 401, Claude
//! through `rawPredict` / `streamRawPredict`, Gemini through `generateContent`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use weir_anthropic::EncodeOptions;
use weir_model::{
    CallContext, Capabilities, ChatRequest, Dialect, ErrorKind, Frame, Provider, ProviderError,
    Reply, WireError,
};
use weir_upstream::{
    endpoint, rate_limit_info, read_body, read_error_body, report_limits, scrub, secret_header,
    sse_frames, FrameDecoder, Response, Timeouts, Upstream, Url, MAX_WAIT,
};

use crate::tokens::{GoogleTokens, TokenSource};

/// The `anthropic_version` Vertex AI requires in Claude request bodies.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Settings of a Vertex AI provider (`kind = "vertex"`).
#[derive(Clone, Debug)]
pub struct VertexConfig {
    /// The provider's id (its config table name).
    pub id: String,
    /// The Google Cloud project id.
    pub project: String,
    /// The Vertex AI location: a region (`us-east5`, `europe-west1`) or `global`.
    pub region: String,
    /// Scheme and host (and any path prefix) of the API; `None`: [`default_base_url`].
    /// The request path (`/v1/projects/...`) is appended.
    pub base_url: Option<String>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// How Claude requests are encoded (`model` is always left out of the body: it is in
    /// the URL; `stream` is always kept).
    pub anthropic_encode: EncodeOptions,
    /// How Gemini requests are encoded (`call_ids` is always off: Vertex refuses
    /// `functionCall.id` and `functionResponse.id`).
    pub gemini_encode: weir_gemini::EncodeOptions,
}

impl VertexConfig {
    /// A config with default timeouts, encoding and base URL.
    pub fn new(
        id: impl Into<String>,
        project: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        VertexConfig {
            id: id.into(),
            project: project.into(),
            region: region.into(),
            base_url: None,
            timeouts: Timeouts::default(),
            anthropic_encode: EncodeOptions::default(),
            gemini_encode: weir_gemini::EncodeOptions::default(),
        }
    }
}

/// Vertex AI's endpoint for a location: `https://{region}-aiplatform.googleapis.com`, or
/// `https://aiplatform.googleapis.com` for `global`.
pub fn default_base_url(region: &str) -> String {
    if region == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{region}-aiplatform.googleapis.com")
    }
}

/// Whether Vertex serves `model` through Anthropic's publisher (Claude models, whose
/// names start with `claude`); every other model goes to Google's (Gemini).
pub fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

/// Sends canonical requests to Vertex AI.
#[derive(Debug)]
pub struct VertexProvider {
    cfg: VertexConfig,
    upstream: Upstream,
    tokens: Arc<dyn TokenSource>,
    base_url: String,
}

impl VertexProvider {
    /// A provider over a shared HTTP client and a token source. Fails when `project` or
    /// `region` cannot be a Vertex AI project or location, or `base_url` is not an
    /// http(s) URL. Never touches the network or the credentials.
    pub fn new(
        cfg: VertexConfig,
        upstream: Upstream,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, String> {
        check_project(&cfg.project)?;
        check_region(&cfg.region)?;
        let base_url = cfg
            .base_url
            .clone()
            .unwrap_or_else(|| default_base_url(&cfg.region));
        endpoint(&base_url, "/v1")?;
        Ok(VertexProvider {
            cfg,
            upstream,
            tokens,
            base_url,
        })
    }

    /// A provider whose tokens come from Google's application default credentials
    /// ([`GoogleTokens::from_environment`]). Credentials are looked for at the first
    /// request, not here: a gateway starts without them, and requests to this provider
    /// fail with an authentication error naming `GOOGLE_APPLICATION_CREDENTIALS` and
    /// `gcloud auth application-default login` until they exist.
    pub fn with_google_auth(cfg: VertexConfig, upstream: Upstream) -> Result<Self, String> {
        Self::new(cfg, upstream, Arc::new(GoogleTokens::from_environment()))
    }

    /// The token source.
    pub fn tokens(&self) -> &Arc<dyn TokenSource> {
        &self.tokens
    }

    /// The provider's settings.
    pub fn config(&self) -> &VertexConfig {
        &self.cfg
    }

    /// The URL of `method` (`rawPredict`, `generateContent`, ...) on `model` of
    /// `publisher` (`anthropic`, `google`), with an optional query.
    pub(crate) fn url(
        &self,
        publisher: &str,
        model: &str,
        method: &str,
        query: Option<&str>,
    ) -> Result<Url, ProviderError> {
        let mut path = format!(
            "/v1/projects/{}/locations/{}/publishers/{publisher}/models/{}:{method}",
            self.cfg.project,
            self.cfg.region,
            segment(model)
        );
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        endpoint(&self.base_url, &path).map_err(|e| ProviderError::new(ErrorKind::Internal, e))
    }

    /// POSTs `body` with a bearer token and returns a successful response. After a 401 the
    /// token is invalidated and the request sent once more with a new one (when the source
    /// has a different token to give); any other error status, or a second 401, is
    /// decoded into the error.
    pub(crate) async fn post(
        &self,
        url: &Url,
        headers: &HeaderMap,
        body: Vec<u8>,
        cx: &CallContext,
    ) -> Result<Response, ProviderError> {
        Ok(self.post_with_token(url, headers, body, cx).await?.0)
    }

    /// [`VertexProvider::post`], with the access token the answer came with (to scrub a
    /// stream's error events of it).
    pub(crate) async fn post_with_token(
        &self,
        url: &Url,
        headers: &HeaderMap,
        body: Vec<u8>,
        cx: &CallContext,
    ) -> Result<(Response, weir_model::Secret), ProviderError> {
        let mut token = self.tokens.token().await?;
        let mut retried = false;
        loop {
            let mut h = headers.clone();
            secret_header(&mut h, AUTHORIZATION, &format!("Bearer {}", token.expose()))?;
            let mut resp = self
                .upstream
                .post(url, h, body.clone(), &self.cfg.timeouts.within(cx.deadline))
                .await
                // Streams are the `:stream...` methods (streamRawPredict,
                // streamGenerateContent).
                .map_err(|e| weir_upstream::for_whole_answer(e, url.path().contains(":stream")))?;
            let status = resp.status();
            if status.is_success() {
                report_limits(resp.headers(), &cx.report);
                return Ok((resp, token));
            }
            let resp_headers = resp.headers().clone();
            let resp_body = read_error_body(&mut resp).await;
            if status.as_u16() == 401 && !retried {
                self.tokens.invalidate(&token);
                let fresh = self.tokens.token().await?;
                if fresh != token {
                    tracing::debug!(
                        provider = %self.cfg.id,
                        request_id = %cx.request_id,
                        "Vertex AI refused the access token (401); retrying once with a new one"
                    );
                    token = fresh;
                    retried = true;
                    continue;
                }
            }
            let (mut api, detail_wait) = crate::error::decode(status.as_u16(), &resp_body);
            if status.as_u16() < 400 {
                // An interim, redirect or protocol switch is not an answer to pass on:
                // the upstream failed (as weir_upstream::status_error says for the others).
                api = weir_model::ApiError::new(
                    ErrorKind::Upstream,
                    format!("Vertex AI answered {status} instead of a response (redirects are not followed)"),
                );
            }
            let header_wait = rate_limit_info(&resp_headers, SystemTime::now()).retry_after;
            let wait = header_wait.or(detail_wait.map(|d| d.min(MAX_WAIT)));
            let mut err = ProviderError::from_api(api, wait);
            err.upstream_request_id =
                weir_upstream::upstream_request_id(&resp_headers).map(str::to_owned);
            scrub(&mut err, token.expose());
            return Err(err);
        }
    }

    fn claude_headers(cx: &CallContext) -> HeaderMap {
        let mut h = json_headers();
        let beta = HeaderName::from_static("anthropic-beta");
        for v in cx.forward_headers.get_all(&beta) {
            h.append(beta.clone(), v.clone());
        }
        h
    }

    async fn send_claude(
        &self,
        req: &ChatRequest,
        cx: CallContext,
    ) -> Result<Reply, ProviderError> {
        let stream = req.is_stream();
        // Ours wins over one a client carried through.
        let own;
        let req = if req.extra.contains("anthropic_version") {
            let mut r = req.clone();
            r.extra.remove("anthropic_version");
            own = r;
            &own
        } else {
            req
        };
        let opts = EncodeOptions {
            omit_model: true,
            omit_stream: false,
            ..self.cfg.anthropic_encode.clone()
        };
        let body = weir_anthropic::encode_request(req, &opts).map_err(invalid)?;
        let body = with_anthropic_version(body)?;
        let method = if stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        let url = self.url("anthropic", &req.model, method, None)?;
        let (mut resp, token) = self
            .post_with_token(&url, &Self::claude_headers(&cx), body, &cx)
            .await?;
        if stream {
            let frames = sse_frames(
                resp,
                self.cfg.timeouts.idle,
                ClaudeStream(weir_anthropic::StreamDecoder::new()),
            );
            // A mid-stream error may echo the token, as an error body may.
            return Ok(Reply::Stream(weir_upstream::scrub_stream(
                frames,
                &[&token],
            )));
        }
        let body = read_body(&mut resp).await?;
        // An error body with a 200 is Claude's failure (as Anthropic's own API is read).
        if let Some(mut err) = weir_upstream::error_in_answer(&body, weir_anthropic::decode_error) {
            err.upstream_request_id =
                weir_upstream::upstream_request_id(resp.headers()).map(str::to_owned);
            scrub(&mut err, token.expose());
            return Err(err);
        }
        let r = weir_anthropic::decode_response(&body).map_err(undecodable)?;
        Ok(Reply::Complete(Box::new(r)))
    }

    async fn count_claude(
        &self,
        mut req: ChatRequest,
        cx: CallContext,
    ) -> Result<u64, ProviderError> {
        // Anthropic's counting body: the model stays in it (the URL names the counter, not
        // the model), no max_tokens, no stream.
        req.stream = None;
        req.extra.remove("anthropic_version");
        let opts = EncodeOptions {
            omit_model: false,
            omit_stream: true,
            omit_max_tokens: true,
            ..self.cfg.anthropic_encode.clone()
        };
        // (Not parsed again to edit: a deeply nested tool input, fine as raw JSON, would
        // fail serde_json's depth limit as a 500.)
        let body = weir_anthropic::encode_request(&req, &opts).map_err(invalid)?;
        let body = with_anthropic_version(body)?;
        let url = self.url("anthropic", "count-tokens", "rawPredict", None)?;
        let mut resp = self
            .post(&url, &Self::claude_headers(&cx), body, &cx)
            .await?;
        let body = read_body(&mut resp).await?;
        #[derive(serde::Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        let c: Count = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("Vertex AI's token count could not be decoded: {e}"),
            )
        })?;
        Ok(c.input_tokens)
    }
}

#[async_trait::async_trait]
impl Provider for VertexProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Claude's (rawPredict must send one); Gemini models keep their own.
    fn default_output(&self, model: &str, stream: bool) -> Option<u32> {
        is_claude(model).then(|| self.cfg.anthropic_encode.limit_for(model, stream))
    }

    fn capabilities(&self, model: &str) -> Capabilities {
        if is_claude(model) {
            // Message threads are Anthropic's own API's, not Vertex AI's.
            Capabilities {
                native_dialect: Some(Dialect::Anthropic),
                threads: false,
                ..Capabilities::ALL
            }
        } else {
            Capabilities {
                native_dialect: None,
                images: true,
                documents: true,
                tools: true,
                parallel_tools: true,
                thinking: true,
                prompt_caching: false,
                threads: false,
            }
        }
    }

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        if is_claude(&req.model) {
            self.send_claude(req, cx).await
        } else {
            crate::gemini::send(self, req, cx).await
        }
    }

    fn serves_embeddings(&self) -> bool {
        true
    }

    /// Google's text embedding models through `:predict` (250 texts and 18 KB a call,
    /// one text for `gemini-embedding-001`, up to eight calls at once), answered as OpenAI's
    /// list; Claude has no embeddings.
    async fn embed(
        &self,
        req: &weir_model::EmbedRequest,
        cx: CallContext,
    ) -> Result<weir_model::EmbedResponse, ProviderError> {
        if is_claude(&req.model) {
            return Err(invalid(WireError::Unsupported(format!(
                "`{}` is not an embeddings model",
                req.model
            ))));
        }
        crate::embed::embed(self, req, cx).await
    }

    /// Claude: Vertex's `count-tokens:rawPredict`. Gemini: the model's `:countTokens`.
    async fn count_tokens(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        if is_claude(&req.model) {
            self.count_claude(req, cx).await.map(Some)
        } else {
            crate::gemini::count(self, req, cx).await
        }
    }
}

/// Anthropic's stream decoder as the SSE reader drives it.
struct ClaudeStream(weir_anthropic::StreamDecoder);

impl FrameDecoder for ClaudeStream {
    fn decode(&mut self, event: weir_sse::Event) -> Result<Frame, WireError> {
        self.0.decode(event)
    }
    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        self.0.finish()
    }
}

pub(crate) fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

pub(crate) fn invalid(e: WireError) -> ProviderError {
    ProviderError::unexpressible(&e)
}

pub(crate) fn undecodable(e: WireError) -> ProviderError {
    let mut err = ProviderError::new(
        ErrorKind::Decode,
        format!("Vertex AI's response could not be decoded: {e}"),
    );
    err.counts_against_health = e.counts_against_health();
    err
}

/// Puts `"anthropic_version"` first in an encoded Messages body (an object: the encoder
/// writes `{` first), leaving the rest byte for byte.
fn with_anthropic_version(body: Vec<u8>) -> Result<Vec<u8>, ProviderError> {
    let Some(rest) = body.strip_prefix(b"{") else {
        return Err(ProviderError::new(
            ErrorKind::Internal,
            "the Anthropic encoder did not produce a JSON object",
        ));
    };
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(b"{\"anthropic_version\":\"");
    out.extend_from_slice(ANTHROPIC_VERSION.as_bytes());
    out.push(b'"');
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// A model id as one path segment: kept as is when it holds only characters Vertex model
/// ids use (`claude-sonnet-4-5@20250929`, `gemini-2.5-pro`), otherwise percent-encoded
/// so it cannot change the path (`/`, `?`, `#`, `:`).
fn segment(s: &str) -> Cow<'_, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@');
    if s.bytes().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

fn check_project(p: &str) -> Result<(), String> {
    // Project ids are lowercase letters, digits and '-'; legacy domain-scoped ones add
    // '.' and ':' (`example.com:my-project`).
    let ok = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`project` must be a Google Cloud project id (letters, digits, '-'), not `{p}`"
        ))
    }
}

fn check_region(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`region` must be a Vertex AI location such as `us-east5`, `europe-west1` or `global`, not `{r}`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_goes_first() {
        let b = with_anthropic_version(br#"{"max_tokens":5,"messages":[]}"#.to_vec()).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5,"messages":[]}"#
        );
        let b = with_anthropic_version(b"{}".to_vec()).unwrap();
        assert_eq!(b, br#"{"anthropic_version":"vertex-2023-10-16"}"#);
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            default_base_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base_url("global"),
            "https://aiplatform.googleapis.com"
        );
    }

    #[test]
    fn model_segments() {
        assert_eq!(
            segment("claude-sonnet-4-5@20250929"),
            "claude-sonnet-4-5@20250929"
        );
        assert_eq!(segment("gemini-2.5-pro"), "gemini-2.5-pro");
        assert_eq!(segment("a/b?c#d:e f"), "a%2Fb%3Fc%23d%3Ae%20f");
    }

    #[test]
    fn config_is_checked() {
        assert!(check_project("my-project-123").is_ok());
        assert!(check_project("example.com:my-project").is_ok());
        assert!(check_project("").is_err());
        assert!(check_project("a/b").is_err());
        assert!(check_region("us-east5").is_ok());
        assert!(check_region("global").is_ok());
        assert!(check_region("US-EAST5").is_err());
        assert!(check_region("us-east5.evil.com/").is_err());
        assert!(check_region("").is_err());
    }
}
