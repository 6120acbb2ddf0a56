//! Embeddings through InvokeModel: Amazon Titan Text Embeddings (one text per call) and
//! Cohere Embed (up to [`COHERE_BATCH`] texts per call), from OpenAI's request and back to
//! OpenAI's list.

use serde::Deserialize;
use weir_model::{EmbedRequest, EmbedTexts, WireError};

/// The most texts one Cohere Embed call takes on Bedrock.
pub const COHERE_BATCH: usize = 96;

/// The embedding model families Bedrock serves through InvokeModel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `amazon.titan-embed-text-v1`, `amazon.titan-embed-text-v2:0` (and their profiles).
    Titan,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`.
    Cohere,
}

impl Family {
    /// The family of a model id (a profile's region prefix or an ARN's path allowed), if
    /// it is an embeddings model Bedrock serves.
    pub fn of(model: &str) -> Option<Family> {
        let base = model.rsplit('/').next().unwrap_or(model);
        if base.contains("amazon.titan-embed-text") {
            Some(Family::Titan)
        } else if base.contains("cohere.embed-") {
            Some(Family::Cohere)
        } else {
            None
        }
    }

    /// The texts per call.
    pub fn batch(self) -> usize {
        match self {
            Family::Titan => 1,
            Family::Cohere => COHERE_BATCH,
        }
    }
}

/// What an OpenAI embeddings request asks of a Bedrock model, checked before any call.
#[derive(Clone, Debug)]
pub struct EmbedPlan {
    /// The family.
    pub family: Family,
    /// The texts and options (`dimensions`: Titan v2's `dimensions`, Cohere v4's
    /// `output_dimension`).
    pub request: EmbedTexts,
    /// Cohere's `input_type` (`search_document` unless the request says).
    pub input_type: String,
}

impl EmbedPlan {
    /// Reads `req` for `model`: `input_type` (Cohere's own member) is the only one beyond
    /// OpenAI's.
    pub fn new(req: &EmbedRequest, model: &str) -> Result<EmbedPlan, WireError> {
        let Some(family) = Family::of(model) else {
            return Err(WireError::Unsupported(format!(
                "Bedrock serves embeddings with Amazon Titan Text Embeddings and Cohere Embed \
                 models, not `{model}`"
            )));
        };
        let own: &[&str] = match family {
            Family::Titan => &[],
            Family::Cohere => &["input_type"],
        };
        let request = req.translated("Bedrock", own)?;
        if let Some(d) = request.dimensions {
            // Refused here, so that a route's next target (which may take it) is tried.
            let (name, allowed): (&str, &[u32]) = if model.contains("titan-embed-text-v1") {
                ("Titan Text Embeddings v1", &[])
            } else if model.contains("titan-embed-text-v2") {
                ("Titan Text Embeddings v2", &[256, 512, 1024])
            } else if model.contains("cohere.embed-v4") {
                ("Cohere Embed v4", &[256, 512, 1024, 1536])
            } else if family == Family::Cohere {
                ("Cohere Embed v3", &[])
            } else {
                ("", &[d])
            };
            if !allowed.contains(&d) {
                return Err(WireError::Unsupported(if allowed.is_empty() {
                    format!("`dimensions` is not supported by {name}")
                } else {
                    format!(
                        "`dimensions` {d} is not supported by {name} (it takes {})",
                        allowed
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }));
            }
        }
        Ok(EmbedPlan {
            family,
            input_type: request
                .member("input_type")
                .unwrap_or("search_document")
                .to_owned(),
            request,
        })
    }

    /// The InvokeModel body for `texts` (one text for Titan).
    pub fn body(&self, texts: &[String]) -> Vec<u8> {
        let mut b = match self.family {
            Family::Titan => serde_json::json!({ "inputText": texts.first() }),
            Family::Cohere => serde_json::json!({
                "texts": texts,
                "input_type": self.input_type,
                "embedding_types": ["float"],
            }),
        };
        if let Some(d) = self.request.dimensions {
            let key = match self.family {
                Family::Titan => "dimensions",
                Family::Cohere => "output_dimension",
            };
            b[key] = d.into();
        }
        b.to_string().into_bytes()
    }
}

/// The vectors of one InvokeModel answer, and the input tokens it reports, if any.
pub fn decode_answer(family: Family, body: &[u8]) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
    match family {
        Family::Titan => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Titan {
                embedding: Vec<f64>,
                input_text_token_count: Option<u64>,
            }
            let t: Titan = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            Ok((vec![t.embedding], t.input_text_token_count))
        }
        Family::Cohere => {
            // v3 with `embedding_types` answers `{"float": [...]}`; without, a bare list.
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Embeddings {
                Floats(Vec<Vec<f64>>),
                ByType { float: Vec<Vec<f64>> },
            }
            #[derive(Deserialize)]
            struct Cohere {
                embeddings: Embeddings,
            }
            let c: Cohere = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let v = match c.embeddings {
                Embeddings::Floats(v) | Embeddings::ByType { float: v } => v,
            };
            Ok((v, None))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(body: serde_json::Value) -> EmbedRequest {
        EmbedRequest::decode(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn families_bodies_and_answers() {
        assert_eq!(
            Family::of("amazon.titan-embed-text-v2:0"),
            Some(Family::Titan)
        );
        assert_eq!(Family::of("us.cohere.embed-v4:0"), Some(Family::Cohere));
        assert_eq!(
            Family::of("arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3"),
            Some(Family::Cohere)
        );
        assert_eq!(Family::of("anthropic.claude-3-haiku"), None);

        let p = EmbedPlan::new(
            &req(serde_json::json!({"model": "m", "input": ["a", "b"], "dimensions": 256})),
            "amazon.titan-embed-text-v2:0",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(p.body(&p.request.texts[1..])).unwrap(),
            r#"{"inputText":"b","dimensions":256}"#
        );
        let v4 = EmbedPlan::new(
            &req(serde_json::json!({"model": "m", "input": "a", "dimensions": 1536})),
            "cohere.embed-v4:0",
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&v4.body(&v4.request.texts)).unwrap();
        assert_eq!(body["output_dimension"], 1536);
        let p = EmbedPlan::new(
            &req(serde_json::json!({"model": "m", "input": "a", "input_type": "search_query"})),
            "cohere.embed-english-v3",
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&p.body(&p.request.texts)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"texts": ["a"], "input_type": "search_query", "embedding_types": ["float"]})
        );

        for (body, model, says) in [
            (
                serde_json::json!({"model": "m", "input": "a"}),
                "meta.llama3",
                "not `meta.llama3`",
            ),
            (
                serde_json::json!({"model": "m", "input": "a", "input_type": "q"}),
                "amazon.titan-embed-text-v2:0",
                "`input_type` is not supported by Bedrock",
            ),
            (
                serde_json::json!({"model": "m", "input": "a", "dimensions": 8}),
                "amazon.titan-embed-text-v1",
                "not supported by Titan Text Embeddings v1",
            ),
            (
                serde_json::json!({"model": "m", "input": "a", "dimensions": 300}),
                "amazon.titan-embed-text-v2:0",
                "`dimensions` 300 is not supported by Titan Text Embeddings v2 (it takes 256, 512, 1024)",
            ),
            (
                serde_json::json!({"model": "m", "input": "a", "dimensions": 256}),
                "cohere.embed-english-v3",
                "not supported by Cohere Embed v3",
            ),
            (
                serde_json::json!({"model": "m", "input": "a", "dimensions": 300}),
                "us.cohere.embed-v4:0",
                "it takes 256, 512, 1024, 1536",
            ),
            (
                serde_json::json!({"model": "m", "input": [[1]]}),
                "cohere.embed-v4:0",
                "token ids",
            ),
        ] {
            let e = EmbedPlan::new(&req(body), model).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }

        assert_eq!(
            decode_answer(
                Family::Titan,
                br#"{"embedding":[0.5,1],"inputTextTokenCount":3}"#
            )
            .unwrap(),
            (vec![vec![0.5, 1.0]], Some(3))
        );
        assert_eq!(
            decode_answer(
                Family::Cohere,
                br#"{"id":"x","embeddings":{"float":[[1],[2]]},"texts":["a","b"]}"#
            )
            .unwrap(),
            (vec![vec![1.0], vec![2.0]], None)
        );
        assert_eq!(
            decode_answer(Family::Cohere, br#"{"embeddings":[[1]]}"#)
                .unwrap()
                .0,
            vec![vec![1.0]]
        );
        assert!(decode_answer(Family::Titan, b"{}").is_err());
    }
}
