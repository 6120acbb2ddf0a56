//! The Gemini API provider (Google AI Studio keys): `kind = "gemini"`.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use serde::Deserialize;
use weir_model::{
    CallContext, Capabilities, ChatRequest, EmbedRequest, EmbedResponse, EmbedTexts, ErrorKind,
    Provider, ProviderError, Reply, Secret,
};
use weir_upstream::{
    endpoint, read_body, read_error_body, report_limits, scrub, secret_header, sse_frames,
    status_error, HttpProviderConfig, KeyRing, Response, Upstream, Url, MAX_WAIT,
};

use crate::StreamDecoder;
use crate::{decode_error, decode_response, encode_request, retry_delay, EncodeOptions};

/// Settings of a Gemini provider: `base_url` is the API host (and any path prefix of a
/// proxy in front of it); `/v1beta/models/{model}:{method}` is appended.
pub type GeminiConfig = HttpProviderConfig<EncodeOptions>;

/// Google's Gemini API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The API version segment of every URL.
pub const API_VERSION: &str = "v1beta";

/// The most texts one `batchEmbedContents` call takes: a longer request is sent in parts.
pub const EMBED_BATCH: usize = 100;

/// The most `batchEmbedContents` calls one request has in flight at once.
const EMBED_CALLS_AT_ONCE: usize = 4;

/// Sends canonical requests to the Gemini API.
#[derive(Debug)]
pub struct GeminiProvider {
    cfg: GeminiConfig,
    upstream: Upstream,
    keys: KeyRing,
    base: Url,
}

impl GeminiProvider {
    /// A provider over a shared HTTP client. Fails when `base_url` is not an http(s) URL
    /// that can take a path, or carries a query or fragment (the key goes in the
    /// `x-goog-api-key` header, never in the URL).
    pub fn new(cfg: GeminiConfig, upstream: Upstream) -> Result<Self, String> {
        let base = endpoint(&cfg.base_url, "")?;
        if base.cannot_be_a_base() {
            return Err("base_url cannot take a path".into());
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(
                "base_url must not have a query or fragment (the key is sent in a header)".into(),
            );
        }
        let keys = KeyRing::new(cfg.keys.clone());
        Ok(GeminiProvider {
            cfg,
            upstream,
            keys,
            base,
        })
    }

    /// The URL of `method` (`generateContent`, `streamGenerateContent`, `countTokens`) for
    /// `model`: `{base_url}/v1beta/models/{model}:{method}`, plus `?alt=sse` for streams.
    /// The model is one percent-encoded path segment (a leading `models/` is dropped), so
    /// no model name can reach another path.
    pub fn url(&self, model: &str, method: &str) -> Result<Url, ProviderError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        if model.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::InvalidRequest,
                "the request names no model",
            ));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                ProviderError::new(ErrorKind::Internal, "the base_url cannot take a path")
            })?
            .pop_if_empty()
            .extend([API_VERSION, "models", &format!("{model}:{method}")]);
        if method == "streamGenerateContent" {
            url.set_query(Some("alt=sse"));
        }
        Ok(url)
    }

    fn headers(&self, key: Option<&Secret>) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = key {
            secret_header(
                &mut h,
                HeaderName::from_static("x-goog-api-key"),
                key.expose(),
            )?;
        }
        Ok(h)
    }

    /// POSTs `body`; an error answer becomes a [`ProviderError`] with the wait the
    /// upstream asked for (headers first, then the body's `RetryInfo`) and no key in it.
    async fn exchange(
        &self,
        url: &Url,
        body: Vec<u8>,
        cx: &CallContext,
    ) -> Result<Response, ProviderError> {
        let key = self.keys.pick(cx);
        let headers = self.headers(key)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let scrubbed = |mut e: ProviderError| {
            for s in &secrets {
                scrub(&mut e, s.expose());
            }
            e
        };
        let mut resp = self
            .upstream
            .post(url, headers, body, &self.cfg.timeouts.within(cx.deadline))
            .await
            // Streams are the `:streamGenerateContent` method.
            .map_err(|e| weir_upstream::for_whole_answer(e, url.path().contains(":stream")))
            .map_err(scrubbed)?;
        let status = resp.status();
        if status.is_success() {
            report_limits(resp.headers(), &cx.report);
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = read_error_body(&mut resp).await;
        let mut err = status_error(status, &headers, &body, decode_error);
        if err.retry_after.is_none() {
            err.retry_after = retry_delay(&body).map(|d| d.min(MAX_WAIT));
        }
        Err(scrubbed(err))
    }

    /// One `batchEmbedContents` call: the vectors of `part`, in order, and the tokens
    /// Gemini counted, if it said.
    async fn embed_part(
        &self,
        url: &Url,
        t: &EmbedTexts,
        qualified: &str,
        part: &[String],
        cx: &CallContext,
    ) -> Result<(Vec<Vec<f64>>, Option<u64>), ProviderError> {
        let task_type = t.member("task_type");
        let requests: Vec<serde_json::Value> = part
            .iter()
            .map(|text| {
                let mut r = serde_json::json!({
                    "model": qualified,
                    "content": {"parts": [{"text": text}]},
                });
                if let Some(d) = t.dimensions {
                    r["outputDimensionality"] = d.into();
                }
                if let Some(tt) = task_type {
                    r["taskType"] = tt.into();
                }
                r
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "requests": requests }))
            .map_err(|e| ProviderError::new(ErrorKind::Internal, e.to_string()))?;
        let mut resp = self.exchange(url, body, cx).await?;
        let bytes = read_body(&mut resp).await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Batch {
            #[serde(default)]
            embeddings: Vec<Values>,
            usage_metadata: Option<Meta>,
        }
        #[derive(Deserialize)]
        struct Values {
            values: Vec<f64>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            prompt_token_count: Option<u64>,
        }
        let batch: Batch = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's embeddings could not be decoded: {e}"),
            )
        })?;
        if batch.embeddings.iter().any(|e| e.values.is_empty()) {
            return Err(ProviderError::new(
                ErrorKind::Decode,
                "the upstream answered an embedding without values",
            ));
        }
        if batch.embeddings.len() != part.len() {
            return Err(ProviderError::new(
                ErrorKind::Decode,
                format!(
                    "the upstream answered {} texts with {} embeddings",
                    part.len(),
                    batch.embeddings.len()
                ),
            ));
        }
        Ok((
            batch.embeddings.into_iter().map(|e| e.values).collect(),
            batch.usage_metadata.and_then(|m| m.prompt_token_count),
        ))
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn keys(&self) -> &[Secret] {
        self.keys.all()
    }

    fn capabilities(&self, _model: &str) -> Capabilities {
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

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let body =
            encode_request(req, &self.cfg.encode).map_err(|e| ProviderError::unexpressible(&e))?;
        let stream = req.is_stream();
        let method = if stream {
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        let url = self.url(&req.model, method)?;
        let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
        let mut resp = self.exchange(&url, body, &cx).await?;
        if stream {
            let decoder = StreamDecoder::new()
                .with_model(model)
                .one_call_only(req.parallel_tool_calls == Some(false));
            let secrets: Vec<&Secret> = self.keys.all().iter().collect();
            return Ok(Reply::Stream(weir_upstream::scrub_stream(
                sse_frames(resp, self.cfg.timeouts.idle, decoder),
                &secrets,
            )));
        }
        let body = read_body(&mut resp).await?;
        let mut r = decode_response(&body).map_err(|e| {
            let mut err = ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's response could not be decoded: {e}"),
            );
            err.counts_against_health = e.counts_against_health();
            err
        })?;
        if r.model.is_empty() {
            model.clone_into(&mut r.model);
        }
        if req.parallel_tool_calls == Some(false) {
            crate::keep_one_call(&mut r);
        }
        Ok(Reply::Complete(Box::new(r)))
    }

    fn serves_embeddings(&self) -> bool {
        true
    }

    /// OpenAI's embeddings request as `batchEmbedContents` calls of at most
    /// [`EMBED_BATCH`] texts: `dimensions` is `outputDimensionality`, and `task_type`
    /// (Gemini's own, e.g. `RETRIEVAL_QUERY`) is `taskType`. The answer is OpenAI's list;
    /// its usage is Gemini's `usageMetadata` when sent, else an estimate (a token for
    /// every four bytes of text).
    async fn embed(
        &self,
        req: &EmbedRequest,
        cx: CallContext,
    ) -> Result<EmbedResponse, ProviderError> {
        // (What the client must fix is a 400; what Gemini cannot take passes the target
        // over.)
        let t = req
            .translated("Gemini", &["task_type"])
            .map_err(|e| ProviderError::refused(&e))?;
        let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
        let url = self.url(model, "batchEmbedContents")?;
        let qualified = format!("models/{model}");
        // (Several calls at once, answers kept in order.)
        let answers = weir_upstream::in_order(
            t.texts
                .chunks(EMBED_BATCH)
                .map(|part| self.embed_part(&url, &t, &qualified, part, &cx)),
            EMBED_CALLS_AT_ONCE,
        )
        .await?;
        Ok(t.answer(model, answers))
    }

    /// Gemini's `countTokens`, given the whole `generateContent` request (tools and
    /// system instruction count too).
    async fn count_tokens(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        let inner =
            encode_request(&req, &self.cfg.encode).map_err(|e| ProviderError::unexpressible(&e))?;
        let url = self.url(&req.model, "countTokens")?;
        let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
        // `inner` is an object that always has `contents`: its fields follow `model`.
        let fields = inner.get(1..).unwrap_or_default();
        let mut body = Vec::with_capacity(inner.len() + model.len() + 48);
        body.extend_from_slice(br#"{"generateContentRequest":{"model":"#);
        body.extend_from_slice(
            serde_json::to_string(&format!("models/{model}"))
                .unwrap_or_default()
                .as_bytes(),
        );
        body.push(b',');
        body.extend_from_slice(fields);
        body.push(b'}');
        let mut resp = self.exchange(&url, body, &cx).await?;
        let bytes = read_body(&mut resp).await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Count {
            // (Proto3 JSON leaves a zero out, but no request is free of tokens: absent or
            // 0 is no count, as `{}` is.)
            total_tokens: Option<u64>,
            error: Option<serde::de::IgnoredAny>,
        }
        let c: Count = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's token count could not be decoded: {e}"),
            )
        })?;
        if c.error.is_some() {
            // An error body with a 200: no count (the caller estimates instead).
            return Err(ProviderError::new(
                ErrorKind::Upstream,
                format!(
                    "the upstream answered the token count with an error: {}",
                    crate::error::message_of(&String::from_utf8_lossy(&bytes))
                ),
            ));
        }
        // No count (the caller estimates, or asks the next target), never a made-up 0.
        Ok(c.total_tokens.filter(|&n| n > 0))
    }
}
