//! Gemini models on Vertex AI: `publishers/google/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (each SSE `data:` a whole response), through
//! `weir-gemini`'s codec.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use weir_model::{CallContext, ChatRequest, ErrorKind, ProviderError, Reply};
use weir_upstream::{read_body, sse_frames};

use crate::provider::{invalid, json_headers, undecodable, VertexProvider};

/// The codec's options for Vertex.
fn options(p: &VertexProvider) -> weir_gemini::EncodeOptions {
    weir_gemini::EncodeOptions {
        // Vertex's generateContent refuses `functionCall.id` / `functionResponse.id`
        // ("Unknown name \"id\""), which the Gemini API takes.
        call_ids: false,
        ..p.config().gemini_encode.clone()
    }
}

/// The fields of a `generateContent` body that Vertex's `CountTokensRequest` also has
/// (it has no `toolConfig`, `safetySettings` or `cachedContent`, and refuses unknown
/// fields).
const COUNTED: &[&str] = &["contents", "systemInstruction", "tools", "generationConfig"];

/// Counts a Gemini request's input tokens with `:countTokens`; `None` for an answer with
/// no count (`{}` or 0: no request is free of tokens), which the caller estimates.
pub(crate) async fn count(
    p: &VertexProvider,
    req: ChatRequest,
    cx: CallContext,
) -> Result<Option<u64>, ProviderError> {
    let body = weir_gemini::encode_request(&req, &options(p)).map_err(invalid)?;
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(ErrorKind::Internal, e.to_string()))?;
    fields.retain(|k, _| COUNTED.contains(&k.as_str()));
    let body = serde_json::to_vec(&fields)
        .map_err(|e| ProviderError::new(ErrorKind::Internal, e.to_string()))?;
    let url = p.url("google", &req.model, "countTokens", None)?;
    let mut resp = p.post(&url, &json_headers(), body, &cx).await?;
    let bytes = read_body(&mut resp).await?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Count {
        total_tokens: Option<u64>,
    }
    let c: Count = serde_json::from_slice(&bytes).map_err(|e| {
        ProviderError::new(
            ErrorKind::Decode,
            format!("Vertex AI's token count could not be decoded: {e}"),
        )
    })?;
    Ok(c.total_tokens.filter(|&n| n > 0))
}

/// Sends a request for a Gemini model.
pub(crate) async fn send(
    p: &VertexProvider,
    req: &ChatRequest,
    cx: CallContext,
) -> Result<Reply, ProviderError> {
    let body = weir_gemini::encode_request(req, &options(p)).map_err(invalid)?;
    let stream = req.is_stream();
    let url = if stream {
        p.url(
            "google",
            &req.model,
            "streamGenerateContent",
            Some("alt=sse"),
        )?
    } else {
        p.url("google", &req.model, "generateContent", None)?
    };
    let (mut resp, token) = p.post_with_token(&url, &json_headers(), body, &cx).await?;
    if stream {
        let decoder = weir_gemini::StreamDecoder::new()
            .with_model(req.model.clone())
            .one_call_only(req.parallel_tool_calls == Some(false));
        let frames = sse_frames(resp, p.config().timeouts.idle, decoder);
        // A mid-stream error may echo the token, as an error body may.
        return Ok(Reply::Stream(weir_upstream::scrub_stream(
            frames,
            &[&token],
        )));
    }
    let body = read_body(&mut resp).await?;
    let mut r = weir_gemini::decode_response(&body).map_err(undecodable)?;
    if r.model.is_empty() {
        r.model.clone_from(&req.model);
    }
    if req.parallel_tool_calls == Some(false) {
        weir_gemini::keep_one_call(&mut r);
    }
    Ok(Reply::Complete(Box::new(r)))
}
