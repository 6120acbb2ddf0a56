//! OpenAI's Responses API (`POST /v1/responses`), passed through: the request is kept as it
//! came apart from its model, and the answer, whole or streamed, goes back as the upstream
//! wrote it. Only providers that speak the Responses API serve it; nothing is translated.

use std::pin::Pin;

use futures_core::Stream;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::raw::{Key, RawJson};
use crate::{ProviderError, Usage, WireError};

/// A Responses API request.
#[derive(Clone, Debug)]
pub struct ResponsesRequest {
    /// The model the client asked for (the router renames it per target).
    pub model: String,
    /// Whether the client asked for a stream (`"stream": true`).
    pub stream: bool,
    /// Every other member (including `stream`), verbatim and in order.
    pub fields: Vec<(String, RawJson)>,
    /// The largest output limit the target takes ([`crate::ChatRequest::output_cap`]),
    /// set by the router, not on the wire: a translated request keeps within it.
    pub output_cap: Option<u32>,
}

impl ResponsesRequest {
    /// Reads a request body: a JSON object with a string `model`.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let text = crate::wire::utf8("request body", body)?;
        serde_json::from_str(text).map_err(|e| WireError::from_json("request body", &e))
    }

    /// Whether the upstream keeps the response (the API's default; `"store": false` says
    /// not): only a stored response can be continued by its id.
    pub fn stores(&self) -> bool {
        !self
            .fields
            .iter()
            .any(|(k, v)| k == "store" && v.get().trim() == "false")
    }

    /// Whether the request asks for background mode (`"background": true`), whose result is
    /// fetched later with `GET /v1/responses/{id}`.
    pub fn background(&self) -> bool {
        self.fields
            .iter()
            .any(|(k, v)| k == "background" && v.get().trim() == "true")
    }

    /// The session the request names for stickiness: its `conversation` (stored by the
    /// upstream account that made it: its turns go where the first went while the session
    /// lasts), else `metadata.user_id`, `user` or `safety_identifier` (which OpenAI has
    /// replace `user`). Not `prompt_cache_key`: an application may send one for every
    /// user, which would hold all its requests on one target.
    pub fn user_session(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Meta {
            user_id: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Conversation {
            Id(String),
            Object { id: String },
        }
        let field = |name: &str| self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let string = |name: &str| {
            field(name)
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .filter(|s| !s.is_empty())
        };
        field("conversation")
            .and_then(|v| serde_json::from_str::<Conversation>(v.get()).ok())
            .map(|c| match c {
                Conversation::Id(id) | Conversation::Object { id } => format!("conversation:{id}"),
            })
            .filter(|s| s.len() > "conversation:".len())
            .or_else(|| {
                field("metadata")
                    .and_then(|v| serde_json::from_str::<Meta>(v.get()).ok())
                    .and_then(|m| m.user_id)
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| string("user"))
            .or_else(|| string("safety_identifier"))
    }

    /// The `previous_response_id` the request continues, if it names one.
    pub fn previous_response_id(&self) -> Option<std::borrow::Cow<'_, str>> {
        let (_, v) = self
            .fields
            .iter()
            .find(|(k, _)| k == "previous_response_id")?;
        let token = v.get();
        let id = token.strip_prefix('"')?.strip_suffix('"')?;
        let id = if id.contains('\\') {
            // Written with escapes (`\/`, `\u0072`): the id they spell.
            std::borrow::Cow::Owned(serde_json::from_str::<String>(token).ok()?)
        } else {
            std::borrow::Cow::Borrowed(id)
        };
        (!id.is_empty()).then_some(id)
    }

    /// The body for an upstream: the request as it came, with its (possibly renamed) model
    /// first.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut w = crate::json_writer::JsonWriter::with_capacity(size + 64);
        w.begin_object();
        w.key("model");
        w.string(&self.model);
        for (k, v) in &self.fields {
            w.key_escaped(k);
            w.raw_value(v);
        }
        w.end_object();
        w.into_bytes()
    }
}

/// `req` with its `max_output_tokens` lowered to `cap`, when it asks for more (`None`:
/// nothing to change).
pub fn with_max_output_tokens(req: &ResponsesRequest, cap: u32) -> Option<ResponsesRequest> {
    let i = req.fields.iter().position(|(k, v)| {
        k == "max_output_tokens" && v.get().parse::<u64>().is_ok_and(|n| n > u64::from(cap))
    })?;
    let mut out = req.clone();
    out.fields[i].1 = crate::raw::to_raw(&cap);
    Some(out)
}

/// Sets `req`'s `max_output_tokens` to `n`, replacing the one it has, if any.
pub fn set_max_output_tokens(req: &mut ResponsesRequest, n: u32) {
    let v = crate::raw::to_raw(&n);
    match req
        .fields
        .iter_mut()
        .find(|(k, _)| k == "max_output_tokens")
    {
        Some(f) => f.1 = v,
        None => req.fields.push(("max_output_tokens".to_owned(), v)),
    }
}

impl<'de> Deserialize<'de> for ResponsesRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResponsesRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Responses API request object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ResponsesRequest, A::Error> {
                let mut model = None;
                let mut fields: Vec<(String, RawJson)> = Vec::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    if k.as_str() == "model" {
                        if model.replace(map.next_value::<String>()?).is_some() {
                            return Err(de::Error::duplicate_field("model"));
                        }
                        continue;
                    }
                    if fields.iter().any(|(f, _)| f == k.as_str()) {
                        return Err(de::Error::custom(format_args!(
                            "`{}` is given twice",
                            k.as_str()
                        )));
                    }
                    let v: RawJson = map.next_value()?;
                    fields.push((k.into_owned(), v));
                }
                let model = model.ok_or_else(|| de::Error::missing_field("model"))?;
                let stream = match fields.iter().find(|(k, _)| k == "stream") {
                    None => false,
                    Some((_, v)) => match v.get() {
                        "true" => true,
                        "false" | "null" => false,
                        _ => return Err(de::Error::custom("`stream` must be a boolean")),
                    },
                };
                Ok(ResponsesRequest {
                    model,
                    stream,
                    fields,
                    output_cap: None,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// The bytes of a streamed answer, as the upstream sent them.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, ProviderError>> + Send>>;

/// A Responses API answer.
pub enum ResponsesReply {
    /// A response object: the body as the upstream wrote it, and its usage.
    Complete {
        /// The body.
        body: Vec<u8>,
        /// Its `id` (which a later request's `previous_response_id` names).
        id: Option<String>,
        /// Its `usage`.
        usage: Usage,
    },
    /// The upstream's SSE stream, byte for byte.
    Stream(ByteStream),
}

impl std::fmt::Debug for ResponsesReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponsesReply::Complete { usage, .. } => {
                f.debug_struct("Complete").field("usage", usage).finish()
            }
            ResponsesReply::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// The usage of a Responses API response object (`{"usage": {...}}`, or the `response`
/// of a stream's `response.completed` event): input tokens are split into uncached and
/// cache-read, as canonical usage counts them. `Ok(None)` when there is no usage; `Err`
/// when the text is not a JSON object.
pub fn response_usage(response: &str) -> Result<Option<Usage>, WireError> {
    response_summary(response).map(|(_, usage)| usage)
}

/// The `id` (when a string) and usage ([`response_usage`]) of a Responses API response
/// object.
pub fn response_summary(response: &str) -> Result<(Option<String>, Option<Usage>), WireError> {
    #[derive(Deserialize)]
    struct Shape<'a> {
        // Any value: an id of another type is no reason to refuse the answer.
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        usage: Option<RUsage>,
    }
    #[derive(Deserialize)]
    struct RUsage {
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        input_tokens_details: Option<InDetails>,
        output_tokens_details: Option<OutDetails>,
        /// OpenRouter: what it charged (see [`Usage::billed_usd`]); any value (what is
        /// not a number is no reason to refuse the usage).
        cost: Option<serde_json::Value>,
        is_byok: Option<serde_json::Value>,
        cost_details: Option<serde_json::Value>,
        /// xAI: what it charged, in ten-billionths of a dollar.
        cost_in_usd_ticks: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct InDetails {
        cached_tokens: Option<u64>,
        /// Cache writes, as the Responses bridge (`weir_openai::bridge`) reports Claude's.
        cache_creation_input_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct OutDetails {
        reasoning_tokens: Option<u64>,
    }
    let shape = serde_json::from_str::<Shape<'_>>(response)
        .map_err(|e| WireError::from_json("response", &e))?;
    let id = shape
        .id
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let Some(u) = shape.usage else {
        return Ok((id, None));
    };
    let (cached, written) = u.input_tokens_details.map_or((None, None), |d| {
        (d.cached_tokens, d.cache_creation_input_tokens)
    });
    let usage = Some(Usage {
        input_tokens: u.input_tokens.map(|i| {
            i.saturating_sub(cached.unwrap_or(0))
                .saturating_sub(written.unwrap_or(0))
        }),
        output_tokens: u.output_tokens,
        cache_read_tokens: cached.filter(|c| *c > 0),
        cache_write_tokens: written.filter(|c| *c > 0),
        reasoning_tokens: u.output_tokens_details.and_then(|d| d.reasoning_tokens),
        billed_usd: Usage::billed(
            u.cost.and_then(|c| c.as_f64()).or_else(|| {
                u.cost_in_usd_ticks
                    .and_then(|t| t.as_f64())
                    .map(|ticks| ticks / 1e10)
            }),
            u.is_byok.and_then(|b| b.as_bool()) == Some(true),
            u.cost_details
                .and_then(|d| d["upstream_inference_cost"].as_f64()),
        ),
        ..Usage::default()
    });
    Ok((id, usage))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_session_is_metadata_user_id_else_user() {
        let session = |body: &str| {
            ResponsesRequest::decode(body.as_bytes())
                .unwrap()
                .user_session()
        };
        assert_eq!(
            session(r#"{"model":"m","metadata":{"user_id":"u-1"},"user":"u-2"}"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(
            session(r#"{"model":"m","user":"u-2"}"#).as_deref(),
            Some("u-2")
        );
        assert_eq!(session(r#"{"model":"m","metadata":{"team":"x"}}"#), None);
        assert_eq!(session(r#"{"model":"m","user":""}"#), None);
        assert_eq!(session(r#"{"model":"m","metadata":null,"user":7}"#), None);
        // OpenAI's replacements for `user`.
        assert_eq!(
            session(r#"{"model":"m","safety_identifier":"s-1","prompt_cache_key":"k"}"#).as_deref(),
            Some("s-1")
        );
        assert_eq!(session(r#"{"model":"m","prompt_cache_key":"k-1"}"#), None);
        // A conversation goes where it is kept, before any user.
        for body in [
            r#"{"model":"m","user":"u","conversation":"conv_1"}"#,
            r#"{"model":"m","conversation":{"id":"conv_1"}}"#,
        ] {
            assert_eq!(
                session(body).as_deref(),
                Some("conversation:conv_1"),
                "{body}"
            );
        }
        assert_eq!(
            session(r#"{"model":"m","conversation":"","user":"u"}"#).as_deref(),
            Some("u")
        );
    }

    #[test]
    fn the_response_a_request_continues_is_read() {
        let id = |body: &str| {
            ResponsesRequest::decode(body.as_bytes())
                .unwrap()
                .previous_response_id()
                .map(std::borrow::Cow::into_owned)
        };
        assert_eq!(
            id(r#"{"model":"m","previous_response_id":"resp_1"}"#),
            Some("resp_1".into())
        );
        for none in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","previous_response_id":null}"#,
            r#"{"model":"m","previous_response_id":""}"#,
            r#"{"model":"m","previous_response_id":7}"#,
        ] {
            assert_eq!(id(none), None, "{none}");
        }
        // Escapes spell the same id.
        for escaped in [
            r#"{"model":"m","previous_response_id":"resp_\/x"}"#,
            r#"{"model":"m","previous_response_id":"\u0072esp_/x"}"#,
        ] {
            assert_eq!(id(escaped), Some("resp_/x".into()), "{escaped}");
        }
        // An id that is not a string is no reason to refuse the answer.
        for body in [r#"{"id":12345,"usage":null}"#, r#"{"id":{"a":1}}"#] {
            assert_eq!(response_summary(body).unwrap().0, None, "{body}");
        }
        let (rid, usage) =
            response_summary(r#"{"id":"resp_9","usage":{"input_tokens":3,"output_tokens":1}}"#)
                .unwrap();
        assert_eq!(rid.as_deref(), Some("resp_9"));
        assert_eq!(usage.unwrap().output_tokens, Some(1));
    }

    #[test]
    fn requests_keep_everything_but_the_model_verbatim() {
        let body = br#"{"input": [{"role": "user", "content": "hi"}], "model": "m", "stream": true, "tools": [], "x": 1}"#;
        let mut r = ResponsesRequest::decode(body).unwrap();
        assert!(r.stream);
        r.model = "gpt-x".into();
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"model":"gpt-x","input":[{"role": "user", "content": "hi"}],"stream":true,"tools":[],"x":1}"#
        );
        assert!(
            !ResponsesRequest::decode(br#"{"model":"m","input":"x"}"#)
                .unwrap()
                .stream
        );
        for bad in [
            &br#"{"input":"x"}"#[..],
            br#"{"model":"m","stream":"yes"}"#,
            br#"{"model":"m","model":"n"}"#,
            br#"{"model":"m","input":1,"input":2}"#,
            br#"{"model":7}"#,
            br#"[]"#,
        ] {
            assert!(
                ResponsesRequest::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn openrouters_billed_cost_is_read_and_anything_else_there_ignored() {
        let billed = |usage: &str| {
            response_usage(&format!(r#"{{"id":"r","usage":{usage}}}"#))
                .unwrap()
                .unwrap()
                .billed_usd
        };
        assert_eq!(billed(r#"{"input_tokens":1,"cost":0.5}"#), Some(0.5));
        // xAI's, in ten-billionths of a dollar.
        assert_eq!(
            billed(r#"{"input_tokens":1,"cost_in_usd_ticks":158000000}"#),
            Some(0.0158)
        );
        assert_eq!(
            billed(
                r#"{"cost":0.5,"is_byok":true,"cost_details":{"upstream_inference_cost":0.25}}"#
            ),
            Some(0.75)
        );
        assert_eq!(
            billed(
                r#"{"cost":0.5,"is_byok":false,"cost_details":{"upstream_inference_cost":0.25}}"#
            ),
            Some(0.5)
        );
        assert_eq!(
            billed(r#"{"cost":"n/a","is_byok":"yes","cost_details":[]}"#),
            None
        );
        assert_eq!(billed(r#"{"input_tokens":1}"#), None);
    }

    #[test]
    fn usage_splits_cached_input() {
        let u = response_usage(
            r#"{"id":"resp_1","usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":120}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.input_tokens, Some(40));
        assert_eq!(u.cache_read_tokens, Some(60));
        assert_eq!(u.total_input(), 100);
        assert_eq!(u.output_tokens, Some(20));
        assert_eq!(u.reasoning_tokens, Some(5));
        assert!(response_usage(r#"{"usage":null}"#).unwrap().is_none());
        assert!(response_usage("[").is_err());
        assert!(response_usage("[1]").is_err());
    }
}
