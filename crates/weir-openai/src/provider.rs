//! The OpenAI provider: OpenAI's API and any OpenAI-compatible service.

use std::borrow::Cow;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use weir_model::{
    CallContext, Capabilities, ChatRequest, Dialect, EmbedRequest, EmbedResponse, ErrorKind, Frame,
    Provider, ProviderError, Reply, Secret, WireError,
};
use weir_upstream::{
    call, endpoint, get_json, listed_ids, post_json, post_passthrough, secret_header, Endpoint,
    FrameDecoder, HttpProviderConfig, KeyRing, Upstream, Url,
};

use crate::{
    decode_error, decode_response, decode_response_summary, encode_request, EncodeOptions, Preset,
    StreamDecoder,
};

/// Settings of an OpenAI provider: `base_url` is the API base up to and including its
/// version segment (`/chat/completions` is appended): `https://api.openai.com/v1`,
/// `https://api.groq.com/openai/v1`.
pub type OpenAiConfig = HttpProviderConfig<EncodeOptions>;

/// OpenAI's own API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Which API shape the endpoint has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI and compatible services: `{base_url}/chat/completions`, `Authorization:
    /// Bearer`.
    OpenAi,
    /// Azure OpenAI's deployment form: `{base_url}/openai/deployments/{model}/chat/
    /// completions?api-version=...` (the model is the deployment name), `api-key` header.
    AzureDeployment {
        /// The `api-version` query parameter.
        api_version: String,
    },
    /// Azure OpenAI's `/openai/v1` form (`base_url` ends with it): OpenAI's paths, the
    /// model in the body, `api-key` header.
    AzureV1,
}

/// The default `api-version` of Azure OpenAI's deployment form.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Sends canonical requests to a Chat Completions endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    cfg: OpenAiConfig,
    upstream: Upstream,
    keys: KeyRing,
    chat_url: Endpoint,
    embeddings_url: Endpoint,
    responses_url: Endpoint,
    base: Url,
    flavor: Flavor,
    preset: Option<Preset>,
}

impl OpenAiProvider {
    /// A provider over a shared HTTP client. Fails when `base_url` is not an http(s) URL.
    pub fn new(cfg: OpenAiConfig, upstream: Upstream) -> Result<Self, String> {
        let keys = KeyRing::new(cfg.keys.clone());
        Ok(OpenAiProvider {
            chat_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/chat/completions")?)
                .map_err(|e| e.message)?,
            embeddings_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/embeddings")?)
                .map_err(|e| e.message)?,
            responses_url: upstream
                .endpoint(endpoint(&cfg.base_url, "/responses")?)
                .map_err(|e| e.message)?,
            base: endpoint(&cfg.base_url, "")?,
            cfg,
            upstream,
            keys,
            flavor: Flavor::OpenAi,
            preset: None,
        })
    }

    /// A provider for a known compatible service: its quirks are handled (see
    /// [`Preset`]); `cfg.encode` should come from [`Preset::encode_options`].
    pub fn with_preset(
        cfg: OpenAiConfig,
        upstream: Upstream,
        preset: Preset,
    ) -> Result<Self, String> {
        let mut p = OpenAiProvider::new(cfg, upstream)?;
        p.preset = Some(preset);
        Ok(p)
    }

    /// An Azure OpenAI provider: the `/openai/v1` form when `base_url` ends with it,
    /// else the deployment form with `api_version` (default [`AZURE_API_VERSION`]).
    pub fn azure(
        cfg: OpenAiConfig,
        upstream: Upstream,
        api_version: Option<String>,
    ) -> Result<Self, String> {
        let v1 = cfg.base_url.trim_end_matches('/').ends_with("/openai/v1");
        let mut p = OpenAiProvider::new(cfg, upstream)?;
        p.flavor = if v1 {
            if api_version.is_some() {
                return Err(
                    "api_version applies to Azure's deployment URLs, not to a base_url ending in /openai/v1"
                        .into(),
                );
            }
            Flavor::AzureV1
        } else {
            let api_version = api_version.unwrap_or_else(|| AZURE_API_VERSION.to_owned());
            if !api_version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(format!(
                    "api_version `{api_version}` is not a version string"
                ));
            }
            Flavor::AzureDeployment { api_version }
        };
        Ok(p)
    }

    /// The URL a chat request for `model` goes to.
    fn url(&self, model: &str) -> Result<Cow<'_, Endpoint>, ProviderError> {
        self.url_of(&self.chat_url, model, &["chat", "completions"])
    }

    /// The URL of an API for `model`: `fixed` (under `base_url`), or for Azure's
    /// deployment form the deployment's `path`.
    fn url_of<'a>(
        &'a self,
        fixed: &'a Endpoint,
        model: &str,
        path: &[&str],
    ) -> Result<Cow<'a, Endpoint>, ProviderError> {
        match &self.flavor {
            Flavor::OpenAi | Flavor::AzureV1 => Ok(Cow::Borrowed(fixed)),
            Flavor::AzureDeployment { api_version } => {
                let mut url = self.base.clone();
                {
                    let mut segs = url.path_segments_mut().map_err(|()| {
                        ProviderError::new(ErrorKind::Internal, "the base_url cannot take a path")
                    })?;
                    // Each segment is percent-encoded: the deployment name stays one segment.
                    segs.pop_if_empty()
                        .extend(["openai", "deployments", model])
                        .extend(path);
                }
                url.set_query(Some(&format!("api-version={api_version}")));
                Ok(Cow::Owned(Endpoint::new(url)?))
            }
        }
    }

    fn headers(&self, key: Option<&Secret>, cx: &CallContext) -> Result<HeaderMap, ProviderError> {
        // Room for these and what the upstream layer adds (host, accept-encoding, via).
        let mut h = HeaderMap::with_capacity(8);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &cx.forward_headers {
            if name.as_str() == "openai-beta" {
                h.append(name.clone(), value.clone());
            }
        }
        if let Some(key) = key {
            match self.flavor {
                Flavor::OpenAi => {
                    secret_header(&mut h, AUTHORIZATION, &format!("Bearer {}", key.expose()))?;
                }
                Flavor::AzureDeployment { .. } | Flavor::AzureV1 => {
                    secret_header(&mut h, HeaderName::from_static("api-key"), key.expose())?;
                }
            }
        }
        Ok(h)
    }
}

/// The first `finish_reason` string in an answer's bytes (the first choice's: `choices`
/// come in order), read without decoding it. (`"finish_reason"` with its quotes is in no
/// JSON string's text, where the quotes would be escaped.)
fn first_finish_reason(body: &[u8]) -> Option<&str> {
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(r#""finish_reason""#));
    let at = KEY.find(body)? + r#""finish_reason""#.len();
    let rest = body[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
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
        // OpenAI's chunks are nameless events.
        name.is_none() && self.0.relay(data, out)
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
            threads: false,
            ..Capabilities::ALL
        }
    }

    async fn send(&self, req: &ChatRequest, cx: CallContext) -> Result<Reply, ProviderError> {
        let adapted;
        let req = match self.preset {
            Some(p) => {
                let (r, removed) = p.adapted(req);
                if !removed.is_empty() {
                    tracing::debug!(
                        preset = p.name(),
                        ?removed,
                        "removed fields the service rejects"
                    );
                }
                adapted = r;
                &*adapted
            }
            None => req,
        };
        let body =
            encode_request(req, &self.cfg.encode).map_err(|e| ProviderError::unexpressible(&e))?;
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let dialect = weir_upstream::Dialect {
            dialect: weir_model::Dialect::OpenAi,
            decode_error,
            decode_response,
            decode_summary: decode_response_summary,
            stream_decoder: || Decoder(StreamDecoder::new()),
        };
        let url = self.url(&req.model)?;
        let reply = call(
            &self.upstream,
            &url,
            headers,
            body,
            &self.cfg.timeouts.within(cx.deadline),
            req.is_stream(),
            &secrets,
            dialect,
            &cx.report,
            cx.client_dialect,
        )
        .await?;
        // A whole answer cut short for lack of capacity is the upstream's failure (the
        // stream decoder says so as an error event).
        if let Reply::Complete(r) = &reply {
            // An OpenAI client's answer goes verbatim, decoded only for its usage: in full
            // only when its first finish reason is one that says so.
            let full;
            let answer = match &r.raw {
                Some(raw) if first_finish_reason(raw).is_some_and(crate::failed) => {
                    full = crate::decode_response(raw).ok();
                    full.as_ref()
                }
                Some(_) => None,
                None => Some(&**r),
            };
            if let Some(a) = answer.filter(|a| crate::cut_short(&a.stop_reason)) {
                let reason = match &a.stop_reason {
                    Some(weir_model::StopReason::Other(s)) => s.as_str(),
                    _ => "",
                };
                let api = crate::cut_short_error(reason, a.choice_extra.get("error"));
                let mut e = ProviderError::new(api.kind, api.message.clone());
                e.status = Some(api.status);
                e.api_error = Some(Box::new(api));
                e.retryable_elsewhere = true;
                for s in &secrets {
                    weir_upstream::scrub(&mut e, s.expose());
                }
                return Err(e);
            }
        }
        Ok(reply)
    }

    fn serves_embeddings(&self) -> bool {
        true
    }

    fn serves_responses(&self) -> bool {
        !matches!(self.flavor, Flavor::AzureDeployment { .. })
    }

    /// `{base_url}/responses`, passed through. Azure's deployment form has no Responses
    /// API; a `base_url` ending in `/openai/v1` does.
    async fn responses(
        &self,
        req: &weir_model::ResponsesRequest,
        cx: CallContext,
    ) -> Result<weir_model::ResponsesReply, ProviderError> {
        if matches!(self.flavor, Flavor::AzureDeployment { .. }) {
            let mut e = ProviderError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "provider `{}` uses Azure's deployment URLs, which have no Responses API (a base_url ending in /openai/v1 has)",
                    self.cfg.id
                ),
            );
            e.status = Some(400);
            e.retryable_elsewhere = true;
            e.counts_against_health = false;
            return Err(e);
        }
        // The provider's max_output_tokens holds for the Responses API too.
        let capped;
        let req = match self.cfg.encode.max_output_tokens {
            Some(cap) => match weir_model::responses::with_max_output_tokens(req, cap) {
                Some(r) => {
                    capped = r;
                    &capped
                }
                None => req,
            },
            None => req,
        };
        // Reasoning the Responses bridge wrote (a conversation that began on a Claude or
        // DeepSeek target): this upstream would refuse it.
        let own;
        let req = match crate::bridge::without_bridged_reasoning(req) {
            Some(r) => {
                own = r;
                &own
            }
            None => req,
        };
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        post_passthrough(
            &self.upstream,
            &self.responses_url,
            headers,
            req.encode(),
            &self.cfg.timeouts.within(cx.deadline),
            req.stream,
            &secrets,
            decode_error,
            &cx.report,
        )
        .await
    }

    /// `GET {base_url}/models`. Azure's deployment form has no listing of deployments.
    async fn list_models(&self, cx: CallContext) -> Result<Option<Vec<String>>, ProviderError> {
        if matches!(self.flavor, Flavor::AzureDeployment { .. }) {
            return Ok(None);
        }
        let key = self.keys.pick(&cx);
        let mut headers = self.headers(key, &cx)?;
        headers.remove(CONTENT_TYPE);
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let url = endpoint(self.base.as_str(), "/models").map_err(|e| {
            ProviderError::new(ErrorKind::Internal, format!("no model listing URL: {e}"))
        })?;
        let body = get_json(
            &self.upstream,
            &url,
            headers,
            &self.cfg.timeouts.within(cx.deadline),
            &secrets,
            decode_error,
        )
        .await?;
        listed_ids(&body).map(Some)
    }

    /// OpenAI's `/embeddings` (Azure: the deployment's), the body passed through with the
    /// target's model and the answer returned as the upstream wrote it. A service without
    /// embeddings answers with its own error (often a 404).
    async fn embed(
        &self,
        req: &EmbedRequest,
        cx: CallContext,
    ) -> Result<EmbedResponse, ProviderError> {
        let key = self.keys.pick(&cx);
        let headers = self.headers(key, &cx)?;
        let secrets: Vec<&Secret> = self.keys.all().iter().chain(key).collect();
        let url = self.url_of(&self.embeddings_url, &req.model, &["embeddings"])?;
        let body = post_json(
            &self.upstream,
            &url,
            headers,
            req.encode(),
            &self.cfg.timeouts.within(cx.deadline),
            &secrets,
            decode_error,
            &cx.report,
        )
        .await?;
        EmbedResponse::from_openai(body).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's embeddings response could not be decoded: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_finish_reason_is_read_in_any_spacing() {
        use super::first_finish_reason as f;
        assert_eq!(
            f(br#"{"choices":[{"finish_reason":"error","error":{}}]}"#),
            Some("error")
        );
        assert_eq!(
            f(b"{\"choices\":[{\"finish_reason\" :\n \"network_error\"},{\"finish_reason\":\"stop\"}]}"),
            Some("network_error")
        );
        assert_eq!(f(br#"{"choices":[{"finish_reason":null}]}"#), None);
        // Quoted inside text, its quotes are escaped: not a key.
        assert_eq!(
            f(br#"{"choices":[{"message":{"content":"say \"finish_reason\":\"error\""},"finish_reason":"stop"}]}"#),
            Some("stop")
        );
    }
}
