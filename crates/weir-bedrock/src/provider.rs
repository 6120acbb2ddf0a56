//! The Bedrock provider: one call, signed (or with a Bedrock API key), to InvokeModel for
//! Anthropic models or Converse for the rest, answered whole or as an AWS event stream.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use serde::Deserialize;
use weir_anthropic::EncodeOptions;
use weir_model::{
    CallContext, Capabilities, ChatRequest, EmbedRequest, EmbedResponse, ErrorKind, Provider,
    ProviderError, Reply,
};
use weir_upstream::{
    body_frames, endpoint, read_body, read_error_body, report_limits, scrub, secret_header,
    status_error, Timeouts, Upstream, Url,
};

use crate::converse::{decode_converse_response, encode_converse, ConverseStream};
use crate::credentials::{Auth, CredentialsCache, CredentialsLoader};
use crate::error::{decode_error, error_type_name, THROTTLE_RETRY_AFTER};
use crate::eventstream::EventStreamBody;
use crate::invoke::{betas_from_headers, encode_error, encode_invoke_body, InvokeStream};
use crate::models::{
    anthropic_capabilities, base_model, capabilities, check_model_id, is_anthropic,
};
use crate::sigv4::{encode_model_id, sign};

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Where a provider's credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// The standard sources over an environment and the shared files (see
    /// [`crate::credentials`]), reloaded near their expiry.
    Chain(CredentialsLoader),
    /// Fixed credentials, never reloaded.
    Fixed(Auth),
}

impl Default for CredentialSource {
    /// The process environment and `~/.aws`.
    fn default() -> Self {
        CredentialSource::Chain(CredentialsLoader::from_process_env())
    }
}

/// Settings of a Bedrock provider.
#[derive(Clone, Debug)]
pub struct BedrockConfig {
    /// The provider's id (its config table name).
    pub id: String,
    /// The AWS region (`us-east-1`): the signing region and the default endpoint's.
    pub region: String,
    /// `https://bedrock-runtime.{region}.amazonaws.com` when `None`; a VPC endpoint, a
    /// proxy or a test server otherwise (the path stays `/model/{id}/...`).
    pub base_url: Option<String>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Anthropic encoding options (InvokeModel bodies; `thinking_from_reasoning_effort`
    /// also applies to Converse, and `default_max_tokens` there only beside a thinking
    /// budget: other Converse models keep their own default).
    pub encode: EncodeOptions,
    /// `anthropic-beta` values never sent (Bedrock answers 400 "invalid beta flag" to
    /// betas a model does not serve there).
    pub drop_betas: Vec<String>,
    /// More model ids to serve through InvokeModel as Anthropic models: application
    /// inference profile ARNs, whose opaque ids do not say the model is a Claude.
    pub anthropic_models: Vec<String>,
}

impl BedrockConfig {
    /// A config with the defaults for `region`: the public endpoint, default timeouts,
    /// credentials from the process environment and `~/.aws`.
    pub fn new(id: impl Into<String>, region: impl Into<String>) -> Self {
        BedrockConfig {
            id: id.into(),
            region: region.into(),
            base_url: None,
            timeouts: Timeouts::default(),
            credentials: CredentialSource::default(),
            encode: EncodeOptions::default(),
            drop_betas: Vec::new(),
            anthropic_models: Vec::new(),
        }
    }
}

/// Sends canonical requests to AWS Bedrock.
#[derive(Debug)]
pub struct BedrockProvider {
    cfg: BedrockConfig,
    base_url: String,
    upstream: Upstream,
    /// Shared by the providers every runtime builds from the same sources.
    creds: Arc<CredentialsCache>,
}

impl BedrockProvider {
    /// A provider over a shared HTTP client. Fails when the region or `base_url` is not
    /// usable. Credentials not found now are warned of (saying what was looked at) and
    /// looked for again when a request needs them.
    pub fn new(cfg: BedrockConfig, upstream: Upstream) -> Result<Self, String> {
        let region_ok = !cfg.region.is_empty()
            && cfg
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !region_ok {
            return Err(format!(
                "`{}` is not an AWS region (e.g. us-east-1)",
                cfg.region
            ));
        }
        let base_url = cfg
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://bedrock-runtime.{}.amazonaws.com", cfg.region));
        endpoint(&base_url, "/model")?;
        let creds = match &cfg.credentials {
            CredentialSource::Chain(loader) => {
                let (creds, missing) = CredentialsCache::shared(loader);
                if let Some(e) = missing {
                    tracing::warn!(
                        provider = %cfg.id,
                        "Bedrock credentials: {e}; requests to provider `{}` fail (502) until \
                         some are found (looked for again at most every 10 s)",
                        cfg.id
                    );
                }
                creds
            }
            CredentialSource::Fixed(auth) => Arc::new(CredentialsCache::fixed(auth.clone())),
        };
        Ok(BedrockProvider {
            cfg,
            base_url,
            upstream,
            creds,
        })
    }

    fn anthropic(&self, model: &str) -> bool {
        is_anthropic(model) || self.cfg.anthropic_models.iter().any(|m| m == model)
    }

    fn url(&self, model: &str, action: &str) -> Result<Url, ProviderError> {
        endpoint(
            &self.base_url,
            &format!("/model/{}/{action}", encode_model_id(model)),
        )
        .map_err(|e| ProviderError::new(ErrorKind::Internal, e))
    }

    fn auth(&self) -> Result<Auth, ProviderError> {
        self.creds.get(SystemTime::now()).map_err(|e| {
            let mut err = ProviderError::new(ErrorKind::Authentication, e.0);
            // The credentials are this target's problem, not the request's.
            err.retryable_elsewhere = true;
            err
        })
    }

    fn headers(
        &self,
        url: &Url,
        body: &[u8],
        accept: &'static str,
        auth: &Auth,
    ) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        match auth {
            Auth::Bearer(token) => {
                secret_header(&mut h, AUTHORIZATION, &format!("Bearer {}", token.expose()))?;
            }
            Auth::SigV4(c) => sign(
                "POST",
                url.as_str(),
                &mut h,
                body,
                c,
                &self.cfg.region,
                SystemTime::now(),
            )
            .map_err(|e| ProviderError::new(ErrorKind::Internal, e))?,
        }
        Ok(h)
    }

    fn timeouts(&self, cx: &CallContext) -> Timeouts {
        self.cfg.timeouts.within(cx.deadline)
    }

    /// POSTs a body; an error status becomes a classified, scrubbed error.
    async fn post(
        &self,
        url: &Url,
        body: Vec<u8>,
        accept: &'static str,
        cx: &CallContext,
        betas: &[String],
    ) -> Result<weir_upstream::Response, ProviderError> {
        let auth = self.auth()?;
        // Kept to be sent again, once, should Bedrock refuse the credentials as expired
        // and fresh ones be found: rotated credentials then cost the client nothing.
        let again = (matches!(auth, Auth::SigV4(_))
            && matches!(self.cfg.credentials, CredentialSource::Chain(_)))
        .then(|| body.clone());
        // Credentials Bedrock refuses as expired are the gateway's failure, not the
        // client's key, though Bedrock says 403 (which clients read as their own key
        // refused): told as the gateway's own failure (a 502).
        let gateways = |e: ProviderError, why: &str| {
            tracing::warn!(request_id = %cx.request_id, provider = %self.cfg.id, "Bedrock refused the AWS credentials as expired, {why}: {}", e.message);
            let mut failed = ProviderError::new(
                ErrorKind::Authentication,
                format!("Bedrock refused the gateway's AWS credentials as expired, {why}"),
            );
            failed.upstream_request_id = e.upstream_request_id;
            failed
        };
        match self.post_with(url, body, accept, cx, betas, &auth).await {
            Err((e, true)) => {
                let fresh = self.auth().ok().filter(|f| f.secrets() != auth.secrets());
                match (fresh, again) {
                    (Some(fresh), Some(body)) => {
                        tracing::info!(request_id = %cx.request_id, provider = %self.cfg.id, "Bedrock refused the AWS credentials as expired; sending again with reloaded ones");
                        match self.post_with(url, body, accept, cx, betas, &fresh).await {
                            Err((e, true)) => Err(gateways(e, "and the reloaded ones too")),
                            answer => answer.map_err(|(e, _)| e),
                        }
                    }
                    (Some(_), None) => Err(gateways(
                        e,
                        "and the request could not be sent again with the reloaded ones",
                    )),
                    (None, _) => Err(gateways(e, "and no fresh ones were found")),
                }
            }
            answer => answer.map_err(|(e, _)| e),
        }
    }

    /// [`Self::post`] with these credentials; an error says whether Bedrock refused them
    /// as expired.
    async fn post_with(
        &self,
        url: &Url,
        body: Vec<u8>,
        accept: &'static str,
        cx: &CallContext,
        betas: &[String],
        auth: &Auth,
    ) -> Result<weir_upstream::Response, (ProviderError, bool)> {
        let headers = self
            .headers(url, &body, accept, auth)
            .map_err(|e| (e, false))?;
        let mut resp = self
            .upstream
            .post(url, headers, body, &self.timeouts(cx))
            .await
            .map_err(|e| {
                (
                    weir_upstream::for_whole_answer(e, accept == EVENT_STREAM),
                    false,
                )
            })?;
        let status = resp.status();
        if status.is_success() {
            report_limits(resp.headers(), &cx.report);
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = read_error_body(&mut resp).await;
        let error_type = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut err = status_error(status, &headers, &body, |s, b| {
            decode_error(s, error_type.as_deref(), b)
        });
        if err.kind == ErrorKind::RateLimited && err.retry_after.is_none() {
            err.retry_after = Some(THROTTLE_RETRY_AFTER);
        }
        let expired = error_type.as_deref().map(error_type_name) == Some("ExpiredTokenException");
        if expired {
            self.creds.invalidate(SystemTime::now());
        }
        if err.message.contains("invalid beta flag") && !betas.is_empty() {
            let hint = format!(
                " (betas sent: {}; list the ones this model does not serve on Bedrock in the provider's drop_betas)",
                betas.join(", ")
            );
            err.message.push_str(&hint);
            if let Some(api) = &mut err.api_error {
                api.message.push_str(&hint);
            }
        }
        for s in auth.secrets() {
            scrub(&mut err, s.expose());
        }
        Err((err, expired))
    }

    /// The upstream's request id (Converse answers have no id of their own).
    fn request_id(resp: &weir_upstream::Response) -> String {
        resp.headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The most embeddings calls one request has in flight at once.
const EMBED_CALLS_AT_ONCE: usize = 8;

impl BedrockProvider {
    /// One InvokeModel call of an embeddings request: the vectors of `part`, in order, and
    /// the tokens Bedrock counted (Titan's `inputTextTokenCount`, else the
    /// `x-amzn-bedrock-input-token-count` header), if it said.
    async fn embed_part(
        &self,
        url: &Url,
        plan: &crate::EmbedPlan,
        part: &[String],
        cx: &CallContext,
    ) -> Result<(Vec<Vec<f64>>, Option<u64>), ProviderError> {
        let mut resp = self.post(url, plan.body(part), JSON, cx, &[]).await?;
        let header_count = resp
            .headers()
            .get("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = read_body(&mut resp).await?;
        let (got, count) =
            crate::embed::decode_answer(plan.family, &body).map_err(decode_failure)?;
        if got.len() != part.len() {
            return Err(decode_failure(format!(
                "{} texts were answered with {} embeddings",
                part.len(),
                got.len()
            )));
        }
        Ok((got, count.or(header_count)))
    }
}

fn decode_failure(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        ErrorKind::Decode,
        format!("the upstream's response could not be decoded: {e}"),
    )
}

#[async_trait::async_trait]
impl Provider for BedrockProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Claude's (through InvokeModel, which must send one); Converse models keep their own.
    fn default_output(&self, model: &str, stream: bool) -> Option<u32> {
        self.anthropic(model)
            .then(|| self.cfg.encode.limit_for(model, stream))
    }

    fn capabilities(&self, model: &str) -> Capabilities {
        if self.anthropic(model) {
            anthropic_capabilities()
        } else {
            capabilities(model)
        }
    }

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let model = req.model.clone();
        let stream = req.is_stream();
        let accept = if stream { EVENT_STREAM } else { JSON };
        let anthropic = self.anthropic(&model);
        let mut betas = Vec::new();
        let (action, body) = if anthropic {
            betas = betas_from_headers(&cx.forward_headers);
            betas.retain(|b| !self.cfg.drop_betas.contains(b));
            // The invoke encoder takes Anthropic's own fields out of the request's extras.
            let body = encode_invoke_body(
                &mut req.clone(),
                &self.cfg.encode,
                &betas,
                &self.cfg.drop_betas,
            )
            .map_err(|e| encode_error(&e))?;
            (
                if stream {
                    "invoke-with-response-stream"
                } else {
                    "invoke"
                },
                body,
            )
        } else {
            let body =
                encode_converse(req, &model, &self.cfg.encode).map_err(|e| encode_error(&e))?;
            (
                if stream {
                    "converse-stream"
                } else {
                    "converse"
                },
                body,
            )
        };
        let url = self.url(&model, action)?;
        tracing::debug!(provider = %self.cfg.id, model = %weir_model::log_safe(&model), action, "bedrock call");
        let mut resp = match self.post(&url, body, accept, &cx, &betas).await {
            Ok(r) => r,
            Err(mut e) => {
                // Say what to do about a Claude 4 id used without an inference profile.
                if e.message.contains("on-demand throughput") {
                    if let Some(hint) = check_model_id(&model) {
                        e.message = format!("{} ({hint})", e.message);
                    }
                }
                return Err(e);
            }
        };
        let id = Self::request_id(&resp);
        let idle = self.cfg.timeouts.idle;
        if stream {
            // Dropping the stream drops the response, which closes the connection.
            let frames = if anthropic {
                body_frames(resp, idle, EventStreamBody::new(InvokeStream::new()))
            } else {
                body_frames(
                    resp,
                    idle,
                    EventStreamBody::new(ConverseStream::new(id, model)),
                )
            };
            // A mid-stream error may echo the credentials, as an error body may.
            let auth = self.auth().ok();
            let secrets = auth.as_ref().map(Auth::secrets).unwrap_or_default();
            return Ok(Reply::Stream(weir_upstream::scrub_stream(frames, &secrets)));
        }
        let body = read_body(&mut resp).await?;
        let r = if anthropic {
            weir_anthropic::decode_response(&body).map_err(decode_failure)?
        } else {
            decode_converse_response(&body, &id, &model)?
        };
        Ok(Reply::Complete(Box::new(r)))
    }

    fn serves_embeddings(&self) -> bool {
        true
    }

    /// OpenAI's embeddings request through InvokeModel, to Amazon Titan Text Embeddings
    /// (one call per text) or Cohere Embed (96 texts per call), answered as OpenAI's list.
    /// Its usage is what Bedrock reports (Titan's `inputTextTokenCount`, else the
    /// `x-amzn-bedrock-input-token-count` header), else an estimate (a token for every four
    /// bytes of text).
    async fn embed(
        &self,
        req: &EmbedRequest,
        cx: CallContext,
    ) -> Result<EmbedResponse, ProviderError> {
        let model = req.model.as_str();
        // (What the client must fix is a 400; what this model cannot take passes the
        // target over.)
        let plan = crate::EmbedPlan::new(req, model).map_err(|e| ProviderError::refused(&e))?;
        let url = self.url(model, "invoke")?;
        // Several calls at once (Titan takes one text a call), answers kept in order.
        let answers = weir_upstream::in_order(
            plan.request
                .texts
                .chunks(plan.family.batch())
                .map(|part| self.embed_part(&url, &plan, part, &cx)),
            EMBED_CALLS_AT_ONCE,
        )
        .await?;
        Ok(plan.request.answer(model, answers))
    }

    /// Bedrock's CountTokens, for Anthropic models (the InvokeModel body, base64-encoded,
    /// counted for the foundation model); `None` for the others.
    async fn count_tokens(
        &self,
        mut req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, ProviderError> {
        if !self.anthropic(&req.model) {
            return Ok(None);
        }
        let model = if req.model.starts_with("arn:") {
            req.model.clone()
        } else {
            base_model(&req.model).to_owned()
        };
        req.stream = None;
        let mut betas = betas_from_headers(&cx.forward_headers);
        betas.retain(|b| !self.cfg.drop_betas.contains(b));
        let invoke = encode_invoke_body(&mut req, &self.cfg.encode, &betas, &self.cfg.drop_betas)
            .map_err(|e| encode_error(&e))?;
        let body = format!(
            r#"{{"input":{{"invokeModel":{{"body":"{}"}}}}}}"#,
            aws_smithy_types::base64::encode(&invoke)
        );
        let url = self.url(&model, "count-tokens")?;
        let mut resp = match self.post(&url, body.into_bytes(), JSON, &cx, &betas).await {
            Ok(r) => r,
            // CountTokens takes fewer model ids than inference (not every inference
            // profile or cross-region model): estimated, rather than a count refused for a
            // model that serves messages.
            Err(e) if matches!(e.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound) => {
                tracing::debug!(
                    model = %weir_model::log_safe(&model),
                    "Bedrock refused to count tokens ({}); estimated instead",
                    weir_model::log_safe(&e.message)
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let body = read_body(&mut resp).await?;
        #[derive(Deserialize)]
        struct Count {
            #[serde(rename = "inputTokens")]
            input_tokens: u64,
        }
        let c: Count = serde_json::from_slice(&body).map_err(decode_failure)?;
        Ok(Some(c.input_tokens))
    }
}
