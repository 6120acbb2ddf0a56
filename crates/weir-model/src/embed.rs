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

    /// The inputs, in order, for a provider that translates: `input` must be a non-empty
    /// string, an array of them, an array of token ids, or an array of such arrays.
    pub fn inputs(&self) -> Result<Vec<EmbedInput>, WireError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum One {
            Text(String),
            Tokens(Vec<u64>),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            One(One),
            Many(Vec<One>),
        }
        let invalid = || {
            WireError::Malformed(
                "`input` must be a non-empty string, an array of them, an array of token ids, \
                 or an array of such arrays"
                    .into(),
            )
        };
        let shape: Shape = serde_json::from_str(self.input.get()).map_err(|_| invalid())?;
        let all = match shape {
            Shape::One(one) => vec![one],
            // (An array of numbers is read as one input of token ids by `One`.)
            Shape::Many(many) => many,
        };
        let texts = all
            .iter()
            .all(|o| matches!(o, One::Text(t) if !t.is_empty()));
        let tokens = all
            .iter()
            .all(|o| matches!(o, One::Tokens(t) if !t.is_empty()));
        if all.is_empty() || !(texts || tokens) {
            return Err(invalid());
        }
        if all.len() > MAX_INPUTS {
            return Err(WireError::Malformed(format!(
                "`input` holds {} items; at most {MAX_INPUTS} are accepted",
                all.len()
            )));
        }
        Ok(all
            .into_iter()
            .map(|o| match o {
                One::Text(t) => EmbedInput::Text(t),
                One::Tokens(t) => EmbedInput::Tokens(t),
            })
            .collect())
    }

    /// The inputs as texts, for an upstream that takes nothing else (`provider` names it in
    /// the error that refuses token ids).
    pub fn texts(&self, provider: &str) -> Result<Vec<String>, WireError> {
        self.inputs()?
            .into_iter()
            .map(|i| match i {
                EmbedInput::Text(t) => Ok(t),
                EmbedInput::Tokens(_) => Err(WireError::Unsupported(format!(
                    "`input` as token ids is not supported by {provider}: send text \
                     (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
                ))),
            })
            .collect()
    }

    /// `dimensions`, if given: a positive integer.
    pub fn dimensions(&self) -> Result<Option<u32>, WireError> {
        match self.get("dimensions").map(|v| v.get()) {
            None | Some("null") => Ok(None),
            Some(d) => match d.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(WireError::Malformed(format!(
                    "`dimensions` must be a positive integer, not {d}"
                ))),
            },
        }
    }

    /// Whether the vectors are to be written in base64 (`encoding_format: "base64"`, what
    /// OpenAI's Python SDK asks for) rather than as numbers (`"float"`, the default).
    pub fn base64(&self) -> Result<bool, WireError> {
        match self.get("encoding_format").map(|v| v.get()) {
            None | Some("null" | "\"float\"") => Ok(false),
            Some("\"base64\"") => Ok(true),
            Some(f) => Err(WireError::Malformed(format!(
                "`encoding_format` must be \"float\" or \"base64\", not {f}"
            ))),
        }
    }

    /// Refuses a member that a translating provider would have to drop: any but
    /// `dimensions`, `encoding_format`, `user` (advisory) and those in `also` (which the
    /// provider reads itself).
    pub fn only_known_members(&self, provider: &str, also: &[&str]) -> Result<(), WireError> {
        const KNOWN: [&str; 3] = ["dimensions", "encoding_format", "user"];
        match self
            .extra
            .iter()
            .find(|(k, _)| !KNOWN.contains(&k.as_str()) && !also.contains(&k.as_str()))
        {
            Some((k, _)) => Err(WireError::Unsupported(format!(
                "`{k}` is not supported by {provider}'s embeddings"
            ))),
            None => Ok(()),
        }
    }
}

impl EmbedRequest {
    /// The request as a provider that translates it reads it, checked before any call:
    /// its texts, `dimensions`, `encoding_format`, and the provider's own string members
    /// (`own`: Gemini's `task_type`, Cohere's `input_type`); any other member is refused.
    /// What the provider cannot take (token ids, another member) is
    /// [`WireError::Unsupported`]; what no target could take, [`WireError::Malformed`].
    pub fn translated(&self, provider: &str, own: &[&str]) -> Result<EmbedTexts, WireError> {
        self.only_known_members(provider, own)?;
        let mut members = Vec::new();
        for name in own {
            if let Some(v) = self.get(name) {
                let s = serde_json::from_str::<String>(v.get())
                    .map_err(|_| WireError::Malformed(format!("`{name}` must be a string")))?;
                members.push(((*name).to_owned(), s));
            }
        }
        Ok(EmbedTexts {
            texts: self.texts(provider)?,
            dimensions: self.dimensions()?,
            base64: self.base64()?,
            members,
        })
    }
}

/// An embeddings request as a translating provider reads it ([`EmbedRequest::translated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedTexts {
    /// The texts, in order.
    pub texts: Vec<String>,
    /// `dimensions`, if asked.
    pub dimensions: Option<u32>,
    /// The vectors are to be written in base64.
    pub base64: bool,
    /// The provider's own members that were given, by name.
    pub members: Vec<(String, String)>,
}

impl EmbedTexts {
    /// The provider's own member `name`, if given.
    pub fn member(&self, name: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// OpenAI's list from the answers of the calls these texts were sent in, in order:
    /// each call's vectors and the tokens the upstream counted, if it said; where any call
    /// did not, the whole is [`EmbedTexts::estimated_tokens`].
    pub fn answer(&self, model: &str, calls: Vec<(Vec<Vec<f64>>, Option<u64>)>) -> EmbedResponse {
        let mut vectors = Vec::with_capacity(self.texts.len());
        let mut counted = Some(0u64);
        for (got, count) in calls {
            counted = counted.zip(count).map(|(a, b)| a.saturating_add(b));
            vectors.extend(got);
        }
        let tokens = counted.unwrap_or_else(|| self.estimated_tokens());
        EmbedResponse::openai_list(model, &vectors, self.base64, tokens)
    }

    /// The input tokens where the upstream counts none: a token for every four bytes of
    /// text.
    pub fn estimated_tokens(&self) -> u64 {
        self.texts
            .iter()
            .map(|t| (t.len() as u64).div_ceil(4))
            .fold(0, u64::saturating_add)
    }
}

/// The most inputs one embeddings request may hold (OpenAI's limit): each may cost an
/// upstream call where the upstream takes one text a call.
pub const MAX_INPUTS: usize = 2048;

/// One input of an embeddings request ([`EmbedRequest::inputs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedInput {
    /// A text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u64>),
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

impl EmbedResponse {
    /// An OpenAI embeddings answer made by a provider that translates: one `embedding`
    /// object per vector, in order, as numbers or (`base64`) as little-endian 32-bit floats
    /// in base64, with `prompt_tokens` as its usage.
    pub fn openai_list(
        model: &str,
        vectors: &[Vec<f64>],
        base64: bool,
        prompt_tokens: u64,
    ) -> Self {
        use base64::Engine as _;
        let numbers: usize = vectors.iter().map(Vec::len).sum();
        let mut w = crate::json_writer::JsonWriter::with_capacity(128 + numbers * 12);
        w.begin_object();
        w.key("object");
        w.string("list");
        w.key("data");
        w.begin_array();
        let mut bytes = Vec::new();
        for (index, v) in vectors.iter().enumerate() {
            w.begin_object();
            w.key("object");
            w.string("embedding");
            w.key("index");
            w.raw(itoa::Buffer::new().format(index));
            w.key("embedding");
            if base64 {
                bytes.clear();
                bytes.extend(v.iter().flat_map(|x| (*x as f32).to_le_bytes()));
                w.string(&base64::engine::general_purpose::STANDARD.encode(&bytes));
            } else {
                w.begin_array();
                for x in v {
                    // (Not finite: not a number JSON can hold; an upstream never sends one.)
                    w.raw(&serde_json::Number::from_f64(*x).map_or("0".into(), |n| n.to_string()));
                }
                w.end_array();
            }
            w.end_object();
        }
        w.end_array();
        w.key("model");
        w.string(model);
        w.key("usage");
        w.begin_object();
        w.key("prompt_tokens");
        w.raw(itoa::Buffer::new().format(prompt_tokens));
        w.key("total_tokens");
        w.raw(itoa::Buffer::new().format(prompt_tokens));
        w.end_object();
        w.end_object();
        EmbedResponse {
            body: w.into_bytes(),
            usage: Usage {
                input_tokens: Some(prompt_tokens),
                output_tokens: Some(0),
                ..Usage::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inputs_options_and_members_are_read_for_translation() {
        let r = |body: &str| EmbedRequest::decode(body.as_bytes()).unwrap();
        assert_eq!(r(r#"{"model":"m","input":"a"}"#).texts("X").unwrap(), ["a"]);
        assert_eq!(
            r(r#"{"model":"m","input":["a","b"]}"#).texts("X").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            r(r#"{"model":"m","input":[1,2]}"#).inputs().unwrap(),
            [EmbedInput::Tokens(vec![1, 2])]
        );
        assert_eq!(
            r(r#"{"model":"m","input":[[1],[2,3]]}"#)
                .inputs()
                .unwrap()
                .len(),
            2
        );
        let e = r(r#"{"model":"m","input":[1,2]}"#)
            .texts("Gemini")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("token ids is not supported by Gemini"),
            "{e}"
        );
        let many = |n: usize| {
            let list = serde_json::to_string(&vec!["a"; n]).unwrap();
            r(&format!(r#"{{"model":"m","input":{list}}}"#))
        };
        let e = many(MAX_INPUTS + 1).inputs().unwrap_err();
        assert!(e.to_string().contains("at most 2048"), "{e}");
        assert!(many(MAX_INPUTS).inputs().is_ok());
        for bad in [
            r#""""#,
            "[]",
            r#"["a",""]"#,
            r#"["a",[1]]"#,
            "[[]]",
            "{}",
            "1",
        ] {
            let q = r(&format!(r#"{{"model":"m","input":{bad}}}"#));
            assert!(q.inputs().is_err(), "{bad}");
        }
        let q = r(
            r#"{"model":"m","input":"a","dimensions":256,"encoding_format":"base64","user":"u"}"#,
        );
        assert_eq!(q.dimensions().unwrap(), Some(256));
        assert!(q.base64().unwrap());
        assert!(q.only_known_members("X", &[]).is_ok());
        let q = r(
            r#"{"model":"m","input":"a","dimensions":0,"encoding_format":"hex","task_type":"t","x":1}"#,
        );
        assert!(q.dimensions().is_err());
        assert!(q.base64().is_err());
        let e = q.only_known_members("X", &["task_type"]).unwrap_err();
        assert_eq!(e.to_string(), "`x` is not supported by X's embeddings");
        let t = r(r#"{"model":"m","input":["abcde","a"],"task_type":"Q","dimensions":8}"#)
            .translated("X", &["task_type"])
            .unwrap();
        assert_eq!(t.member("task_type"), Some("Q"));
        assert_eq!(
            (t.dimensions, t.base64, t.estimated_tokens()),
            (Some(8), false, 3)
        );
        let e = r(r#"{"model":"m","input":"a","task_type":3}"#)
            .translated("X", &["task_type"])
            .unwrap_err();
        assert!(
            matches!(&e, WireError::Malformed(m) if m.contains("`task_type` must be a string")),
            "{e}"
        );
    }

    #[test]
    fn a_translated_answer_is_openais_list() {
        let r = EmbedResponse::openai_list("m", &[vec![0.5, -0.25], vec![1.0, 0.0]], false, 7);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"object":"list","data":[
                {"object":"embedding","index":0,"embedding":[0.5,-0.25]},
                {"object":"embedding","index":1,"embedding":[1.0,0.0]}],
                "model":"m","usage":{"prompt_tokens":7,"total_tokens":7}})
        );
        assert_eq!(r.usage.input_tokens, Some(7));
        let b = EmbedResponse::openai_list("m", &[vec![0.5, -0.25]], true, 1);
        let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        // 0.5 and -0.25 as little-endian f32s.
        assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL4=");
    }

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
