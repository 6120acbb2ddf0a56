//! Embeddings: deterministic unit vectors derived from each input's text.

use weir_model::{ApiError, EmbedInput, EmbedRequest, EmbedResponse, ErrorKind, ProviderError};

/// Dimensions when the request does not ask for a number.
const DEFAULT_DIMENSIONS: usize = 8;
/// The most dimensions the mock makes.
const MAX_DIMENSIONS: usize = 4096;
/// The most numbers one answer may hold (inputs x dimensions): about 10 MB of JSON.
const MAX_NUMBERS: usize = 1 << 20;

/// Answers an embeddings request: one vector per input (a string, or one token array),
/// the same vector for the same text, `dimensions` long (default 8), unit length; as
/// numbers, or with `encoding_format` `base64` (what OpenAI's Python SDK asks for) as
/// little-endian 32-bit floats in base64.
pub(crate) fn embed(req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
    let invalid = |msg: String| {
        Err(ProviderError::from_api(
            ApiError::new(ErrorKind::InvalidRequest, msg),
            None,
        ))
    };
    let wire = |e: weir_model::WireError| invalid(e.to_string());
    let inputs: Vec<String> = match req.inputs() {
        Ok(inputs) => inputs
            .into_iter()
            .map(|i| match i {
                EmbedInput::Text(t) => t,
                // Token ids as their JSON text, so the same ids get the same vector.
                EmbedInput::Tokens(t) => serde_json::to_string(&t).unwrap_or_default(),
            })
            .collect(),
        Err(e) => return wire(e),
    };
    if let Some(e) = inputs.iter().find_map(|t| crate::plan::error_marker(t)) {
        return Err(e);
    }
    let dimensions = match req.dimensions() {
        Ok(None) => DEFAULT_DIMENSIONS,
        Ok(Some(n)) if n as usize <= MAX_DIMENSIONS => n as usize,
        Ok(Some(n)) => {
            return invalid(format!(
                "`dimensions` must be 1 to {MAX_DIMENSIONS}, not {n}"
            ))
        }
        Err(e) => return wire(e),
    };
    if inputs.len() * dimensions > MAX_NUMBERS {
        return invalid(format!(
            "{} inputs of {dimensions} dimensions is more than the mock answers at once \
             ({MAX_NUMBERS} numbers)",
            inputs.len()
        ));
    }
    let base64 = match req.base64() {
        Ok(b) => b,
        Err(e) => return wire(e),
    };
    let tokens = inputs
        .iter()
        .map(|t| crate::plan::words(t).max(1) as u64)
        .sum();
    let vectors: Vec<Vec<f64>> = inputs.iter().map(|t| vector(t, dimensions)).collect();
    Ok(EmbedResponse::openai_list(
        &req.model, &vectors, base64, tokens,
    ))
}

/// A unit vector from `text`: each component from a hash of the text and its position.
fn vector(text: &str, dimensions: usize) -> Vec<f64> {
    let seed = fnv(text.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let raw: Vec<f64> = (0..dimensions as u64)
        .map(|i| {
            let h = fnv(&i.to_le_bytes(), seed);
            // The top 53 bits as a number in [-1, 1).
            (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.into_iter()
        .map(|x| {
            let v = if norm > 0.0 { x / norm } else { 0.0 };
            // Six decimals, as a readable, stable answer.
            (v * 1e6).round() / 1e6
        })
        .collect()
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn answer(body: &str) -> Result<serde_json::Value, ProviderError> {
        let r = embed(&EmbedRequest::decode(body.as_bytes()).unwrap())?;
        Ok(serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn the_same_text_gets_the_same_unit_vector() {
        let a = answer(r#"{"model":"m","input":["hello","world","hello"]}"#).unwrap();
        let v = |i: usize| a["data"][i]["embedding"].as_array().unwrap().clone();
        assert_eq!(v(0).len(), 8);
        assert_eq!(v(0), v(2));
        assert_ne!(v(0), v(1));
        let norm: f64 = v(1).iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_eq!(a["data"][2]["index"], 2);
        assert_eq!(a["usage"]["prompt_tokens"], 3);
        assert_eq!(a["model"], "m");
        let one = answer(r#"{"model":"m","input":"hello","dimensions":3}"#).unwrap();
        assert_eq!(one["data"][0]["embedding"].as_array().unwrap().len(), 3);
        let b64 = answer(r#"{"model":"m","input":"hello","encoding_format":"base64"}"#).unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let plain = answer(r#"{"model":"m","input":"hello"}"#).unwrap();
        let plain: Vec<f32> = plain["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(floats, plain);
        let tokens = answer(r#"{"model":"m","input":[1,2,3]}"#).unwrap();
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_input_and_markers_are_errors() {
        let many = format!(
            r#"{{"model":"m","input":{}}}"#,
            serde_json::json!(vec!["a"; 2049])
        );
        let wide = format!(
            r#"{{"model":"m","input":{},"dimensions":4096}}"#,
            serde_json::json!(vec!["a"; 1000])
        );
        for body in [
            many.as_str(),
            wide.as_str(),
            r#"{"model":"m","input":[null]}"#,
            r#"{"model":"m","input":["a",1]}"#,
            r#"{"model":"m","input":[[1,"a"]]}"#,
            r#"{"model":"m","input":[-1]}"#,
            r#"{"model":"m","input":[1.5]}"#,
            r#"{"model":"m","input":""}"#,
            r#"{"model":"m","input":[[]]}"#,
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":5}"#,
            r#"{"model":"m","input":"a","dimensions":0}"#,
            r#"{"model":"m","input":"a","encoding_format":"int8"}"#,
        ] {
            let e = answer(body).unwrap_err();
            assert_eq!(e.status, Some(400), "{body}");
        }
        let e = answer(r#"{"model":"m","input":"x [mock:error:503]"}"#).unwrap_err();
        assert_eq!(e.status, Some(503));
    }
}
