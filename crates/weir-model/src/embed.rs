//! Embeddings: an OpenAI `POST /v1/embeddings` request, kept as it came apart from its
//! model, and the answer, kept as the upstream wrote it.
//!
//! There is one embeddings dialect (OpenAI's); providers that speak another translate in
//! their [`Provider::embed`](crate::Provider::embed).

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::raw::{Key, RawJson};
use crate::{Usage, WireError};

/// An embeddings request.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    /// The model the client asked for (the router renames it per target).
    pub model: String,
    /// `input`, verbatim: a string, an array of strings, or token arrays.
    pub input: RawJson,
    /// The other members (`encoding_format`, `dimensions`, `user`, unknown ones),
    /// verbatim and in order.
    pub extra: Vec<(String, RawJson)>,
}

impl EmbedRequest {
    /// Reads a request body: a JSON object with a string `model` and an `input`.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let text = crate::wire::utf8("request body", body)?;
        serde_json::from_str(text).map_err(|e| WireError::from_json("request body", &e))
    }

    /// The body for an upstream: the request as it came, with its (possibly renamed)
    /// model first.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::json_writer::JsonWriter::with_capacity(64 + self.input.get().len());
        w.begin_object();
        w.key("model");
        w.string(&self.model);
        w.key("input");
        w.raw_value(&self.input);
        for (k, v) in &self.extra {
            w.key_escaped(k);
            w.raw_value(v);
        }
        w.end_object();
        w.into_bytes()
    }

    /// A member other than `model` and `input`, verbatim.
    pub fn get(&self, name: &str) -> Option<&RawJson> {
        self.extra.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for EmbedRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbedRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an embeddings request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EmbedRequest, A::Error> {
                let (mut model, mut input) = (None, None);
                let mut extra: Vec<(String, RawJson)> = Vec::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    let duplicate = match k.as_str() {
                        "model" => model.replace(map.next_value::<String>()?).is_some(),
                        "input" => input.replace(map.next_value::<RawJson>()?).is_some(),
                        other => {
                            let dup = extra.iter().any(|(e, _)| e == other);
                            extra.push((k.into_owned(), map.next_value()?));
                            dup
                        }
                    };
                    if duplicate {
                        return Err(de::Error::custom("a member is given twice"));
                    }
                }
                let model = model.ok_or_else(|| de::Error::missing_field("model"))?;
                let input = input.ok_or_else(|| de::Error::missing_field("input"))?;
                if input.get() == "null" {
                    return Err(de::Error::custom("`input` is null"));
                }
                Ok(EmbedRequest {
                    model,
                    input,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// An embeddings answer in OpenAI's shape, as the client gets it.
#[derive(Clone, Debug)]
pub struct EmbedResponse {
    /// The response body (an OpenAI `list` of `embedding` objects).
    pub body: Vec<u8>,
    /// The input tokens the upstream counted (`usage.prompt_tokens`), in `input_tokens`.
    pub usage: Usage,
}

impl EmbedResponse {
    /// Reads an OpenAI embeddings body for its usage, keeping the body as it is. The body
    /// must be a JSON object; `usage` may be absent (some compatible servers leave it out).
    pub fn from_openai(body: Vec<u8>) -> Result<Self, WireError> {
        #[derive(Deserialize)]
        struct Shape {
            #[serde(default)]
            usage: Option<OUsage>,
        }
        #[derive(Deserialize)]
        struct OUsage {
            prompt_tokens: Option<u64>,
        }
        let text = crate::wire::utf8("response body", &body)?;
        if !text.trim_start().starts_with('{') {
            return Err(WireError::Malformed(
                "the embeddings response is not a JSON object".into(),
            ));
        }
        let shape: Shape =
            serde_json::from_str(text).map_err(|e| WireError::from_json("response body", &e))?;
        let usage = Usage {
            input_tokens: shape.usage.and_then(|u| u.prompt_tokens),
            output_tokens: Some(0),
            ..Usage::default()
        };
        Ok(EmbedResponse { body, usage })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_keep_everything_but_the_model_verbatim() {
        let body = br#"{"input": ["a", "b"], "model": "m", "dimensions": 256, "x": {"y": [1, 2]}}"#;
        let mut r = EmbedRequest::decode(body).unwrap();
        assert_eq!(r.get("dimensions").unwrap().get(), "256");
        r.model = "other".into();
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"model":"other","input":["a", "b"],"dimensions":256,"x":{"y": [1, 2]}}"#
        );
        let tokens = EmbedRequest::decode(br#"{"model":"m","input":[[1,2]]}"#).unwrap();
        assert_eq!(tokens.input.get(), "[[1,2]]");
        for bad in [
            &br#"{"input":"a"}"#[..],
            br#"{"model":"m"}"#,
            br#"{"model":"m","input":null}"#,
            br#"{"model":"m","model":"n","input":"a"}"#,
            br#"{"model":1,"input":"a"}"#,
            br#"["m"]"#,
            b"{",
        ] {
            assert!(
                EmbedRequest::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn responses_are_read_for_their_usage_only() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        let r = EmbedResponse::from_openai(body.to_vec()).unwrap();
        assert_eq!(r.usage.input_tokens, Some(7));
        assert_eq!(r.body, body);
        let no_usage = EmbedResponse::from_openai(br#"{"data":[]}"#.to_vec()).unwrap();
        assert_eq!(no_usage.usage.input_tokens, None);
        assert!(EmbedResponse::from_openai(b"[1]".to_vec()).is_err());
        assert!(EmbedResponse::from_openai(b"{".to_vec()).is_err());
    }
}
