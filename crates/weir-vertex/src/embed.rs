//! Embeddings on Vertex AI: Google's text embedding models (`gemini-embedding-001`,
//! `text-embedding-005`, `text-multilingual-embedding-002`) through `:predict`, from
//! OpenAI's request and back to OpenAI's list.

use serde::Deserialize;
use weir_model::{CallContext, EmbedRequest, EmbedResponse, EmbedTexts, ErrorKind, ProviderError};
use weir_upstream::read_body;

use crate::provider::{json_headers, VertexProvider};

/// The most texts one `:predict` call takes (`gemini-embedding-001` takes one).
pub const PREDICT_BATCH: usize = 250;
/// The most bytes of text one call carries: Vertex refuses a call over 20,000 tokens, and
/// dense text (digits, identifiers) can take a token per byte.
const BATCH_BYTES: usize = 18_000;

/// The texts per call for `model`.
fn batch_of(model: &str) -> usize {
    if model.contains("gemini-embedding") {
        1
    } else {
        PREDICT_BATCH
    }
}

/// The most `:predict` calls one request has in flight at once (`gemini-embedding-001`
/// takes one text a call).
const CALLS_AT_ONCE: usize = 8;

/// The texts of each call: as many as the model takes at once, within the bytes a call may
/// carry (at least one, which Vertex judges alone).
fn parts(texts: &[String], most: usize) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut rest = texts;
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < most && (n == 0 || bytes + rest[n].len() <= BATCH_BYTES) {
            bytes += rest[n].len();
            n += 1;
        }
        let (part, after) = rest.split_at(n);
        out.push(part);
        rest = after;
    }
    out
}

/// The `:predict` instances' `task_type` and the parameters' `outputDimensionality`:
/// Google's `task_type` (`RETRIEVAL_QUERY`, ...) is the one member beyond OpenAI's. Up to
/// [`CALLS_AT_ONCE`] calls at a time, answers kept in order.
pub(crate) async fn embed(
    p: &VertexProvider,
    req: &EmbedRequest,
    cx: CallContext,
) -> Result<EmbedResponse, ProviderError> {
    // (What the client must fix is a 400; what Vertex cannot take passes the target over.)
    let t = req
        .translated("Vertex AI", &["task_type"])
        .map_err(|e| ProviderError::refused(&e))?;
    let url = p.url("google", &req.model, "predict", None)?;
    let answers = weir_upstream::in_order(
        parts(&t.texts, batch_of(&req.model))
            .into_iter()
            .map(|part| call(p, &url, &t, part, &cx)),
        CALLS_AT_ONCE,
    )
    .await?;
    Ok(t.answer(&req.model, answers))
}

/// One `:predict` call: the vectors of `part`, in order, and the tokens Vertex counted, if
/// it said for every text.
async fn call(
    p: &VertexProvider,
    url: &weir_upstream::Url,
    t: &EmbedTexts,
    part: &[String],
    cx: &CallContext,
) -> Result<(Vec<Vec<f64>>, Option<u64>), ProviderError> {
    let instances: Vec<serde_json::Value> = part
        .iter()
        .map(|text| match t.member("task_type") {
            Some(tt) => serde_json::json!({"content": text, "task_type": tt}),
            None => serde_json::json!({ "content": text }),
        })
        .collect();
    let mut body = serde_json::json!({ "instances": instances });
    if let Some(d) = t.dimensions {
        body["parameters"] = serde_json::json!({ "outputDimensionality": d });
    }
    let mut resp = p
        .post(url, &json_headers(), body.to_string().into_bytes(), cx)
        .await?;
    let bytes = read_body(&mut resp).await?;
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        predictions: Vec<Prediction>,
    }
    #[derive(Deserialize)]
    struct Prediction {
        embeddings: Embedding,
    }
    #[derive(Deserialize)]
    struct Embedding {
        values: Vec<f64>,
        statistics: Option<Statistics>,
    }
    #[derive(Deserialize)]
    struct Statistics {
        token_count: Option<f64>,
    }
    let a: Answer = serde_json::from_slice(&bytes).map_err(|e| {
        ProviderError::new(
            ErrorKind::Decode,
            format!("Vertex AI's embeddings could not be decoded: {e}"),
        )
    })?;
    if a.predictions.len() != part.len() {
        return Err(ProviderError::new(
            ErrorKind::Decode,
            format!(
                "Vertex AI answered {} texts with {} embeddings",
                part.len(),
                a.predictions.len()
            ),
        ));
    }
    let mut counted = Some(0u64);
    let mut vectors = Vec::with_capacity(part.len());
    for pr in a.predictions {
        // (Vertex writes the count as a number that may have a fraction: `6.0`.)
        let count = pr
            .embeddings
            .statistics
            .and_then(|s| s.token_count)
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| c.round() as u64);
        counted = counted.zip(count).map(|(a, b)| a.saturating_add(b));
        vectors.push(pr.embeddings.values);
    }
    Ok((vectors, counted))
}
