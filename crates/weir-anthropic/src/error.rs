//! Anthropic error bodies: `{"type":"error","error":{"type","message"},"request_id"}`.

use serde::Deserialize;
use weir_model::{ApiError, Dialect, ErrorKind};

/// Decodes an upstream's error answer. Bodies that are not Anthropic-shaped (an HTML page
/// from a proxy, an empty body) still give an error of the status's kind, with a short
/// excerpt of the body as the message.
pub fn decode_error(status: u16, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Box<serde_json::value::RawValue>>,
    }
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Outer>(&text) {
        Ok(Outer { error: Some(inner) }) => api_error_from_body(Some(status), inner.get()),
        _ => {
            let kind = ErrorKind::from_status(status);
            let mut e = ApiError::new(kind, excerpt(&text, status));
            e.status = status;
            e.dialect = Some(Dialect::Anthropic);
            e
        }
    }
}

/// A short, single-line excerpt of a non-JSON error body.
pub(crate) fn excerpt(text: &str, status: u16) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return format!("upstream answered {status} with an empty body");
    }
    let cut: String = one_line.chars().take(200).collect();
    format!("upstream answered {status}: {cut}")
}

/// Decodes the inner `error` object (`{"type","message"}`); `status` is the HTTP status,
/// or `None` inside a stream.
pub(crate) fn api_error_from_body(status: Option<u16>, inner: &str) -> ApiError {
    #[derive(Deserialize, Default)]
    struct Inner {
        #[serde(rename = "type")]
        ty: Option<String>,
        message: Option<String>,
        details: Option<Box<serde_json::value::RawValue>>,
    }
    let inner: Inner = serde_json::from_str(inner).unwrap_or_default();
    let by_status = status.map_or(ErrorKind::Upstream, ErrorKind::from_status);
    let kind = match inner.ty.as_deref().and_then(kind_of) {
        // A 5xx or 429 whose body blames the request (a proxy or compatible service's
        // `invalid_request_error` on a 503) is the upstream's failure, as its status says:
        // another target may serve it. (The client still gets the status and the body's
        // type: a 503 stays a 503, not the 529 an overload is to Anthropic clients.)
        Some(k)
            if status.is_some() && !k.retryable_elsewhere() && by_status.retryable_elsewhere() =>
        {
            match by_status {
                ErrorKind::Overloaded => ErrorKind::Upstream,
                other => other,
            }
        }
        Some(k) => k,
        None => by_status,
    };
    let status = status.unwrap_or(match kind {
        ErrorKind::Overloaded => 529,
        k => k.http_status(),
    });
    ApiError {
        kind,
        dialect: Some(Dialect::Anthropic),
        status,
        error_type: inner.ty,
        code: None,
        param: None,
        message: inner.message.unwrap_or_default(),
        // Kept for the client's SDK (it may act on them), unless absurdly large.
        details: inner
            .details
            .map(|d| d.get().to_owned())
            .filter(|d| d != "null" && d.len() <= MAX_DETAILS),
    }
}

/// The largest `error.details` passed on to clients, in bytes.
const MAX_DETAILS: usize = 4096;

fn kind_of(ty: &str) -> Option<ErrorKind> {
    Some(match ty {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimited,
        // 402: the key's organization has no credit left. Like OpenAI's
        // `insufficient_quota` ([`ApiError::credit_spent`]): the key rests, others serve.
        "billing_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::Upstream,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        _ => return None,
    })
}

/// The Anthropic error type for a canonical error.
pub(crate) fn anthropic_error_type(e: &ApiError) -> &str {
    if let Some(t) = e.error_type.as_deref() {
        if e.dialect == Some(Dialect::Anthropic) || kind_of(t) == Some(e.kind) {
            return t;
        }
    }
    // Another dialect's 402 (no credit left) as Anthropic says it.
    if e.status == 402 && e.credit_spent() {
        return "billing_error";
    }
    match e.kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Upstream
        | ErrorKind::Connect
        | ErrorKind::Decode
        | ErrorKind::Cancelled
        | ErrorKind::Internal => "api_error",
    }
}

/// The HTTP status an Anthropic client gets for a canonical error: Anthropic's own 529 for
/// overload (OpenAI's 503 becomes 529), otherwise the error's status.
pub fn error_status(e: &ApiError) -> u16 {
    match e.kind {
        ErrorKind::Overloaded => 529,
        _ => e.status,
    }
}

/// The JSON of an error body, keys in Anthropic's order.
pub(crate) fn error_json(e: &ApiError, request_id: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        #[serde(rename = "type")]
        ty: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        error: Inner<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
    }
    let overflow = (e.dialect != Some(Dialect::Anthropic)
        && e.is_context_overflow()
        && !e.message.starts_with("prompt is too long"))
    .then(|| e.as_prompt_too_long());
    let body = Body {
        ty: "error",
        error: Inner {
            ty: anthropic_error_type(e),
            message: overflow.as_deref().unwrap_or(&e.message),
            // Another dialect's (none has them) never; Anthropic's or the gateway's own.
            details: e
                .details
                .as_deref()
                .filter(|_| e.dialect != Some(Dialect::OpenAi))
                .and_then(|d| serde_json::from_str(d).ok()),
        },
        request_id,
    };
    // Plain strings only: serialization cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// Encodes an error for an Anthropic client: `(status, body)`.
pub fn encode_error(e: &ApiError, request_id: Option<&str>) -> (u16, Vec<u8>) {
    (error_status(e), error_json(e, request_id).into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn openai_error(code: Option<&str>, message: &str) -> ApiError {
        ApiError {
            kind: ErrorKind::InvalidRequest,
            dialect: Some(Dialect::OpenAi),
            status: 400,
            error_type: Some("invalid_request_error".into()),
            code: code.map(str::to_owned),
            param: None,
            message: message.into(),
            details: None,
        }
    }

    /// Claude Code compacts a conversation when the error says "prompt is too long".
    #[test]
    fn a_5xx_or_429_blaming_the_request_is_still_the_upstreams_failure() {
        for (status, kind) in [
            (503, ErrorKind::Upstream),
            (500, ErrorKind::Upstream),
            (429, ErrorKind::RateLimited),
        ] {
            let e = decode_error(
                status,
                br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad gateway config"}}"#,
            );
            assert_eq!((e.kind, e.status), (kind, status));
            assert_eq!(e.error_type.as_deref(), Some("invalid_request_error"));
        }
        // A 400 is the request's, and a 5xx's own transient type is kept.
        let e = decode_error(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"x"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let e = decode_error(
            500,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Overloaded);
        // In a stream (no status), the type is all there is.
        let e = api_error_from_body(None, r#"{"type":"invalid_request_error","message":"x"}"#);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn another_dialects_context_overflow_says_prompt_is_too_long() {
        let e = openai_error(
            Some("context_length_exceeded"),
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130,512 tokens. Please reduce the length of the messages.",
        );
        let v: serde_json::Value = serde_json::from_str(&error_json(&e, None)).unwrap();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("prompt is too long: 130512 tokens > 128000 maximum ("),
            "{m}"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        // OpenAI's newer wording.
        let e = openai_error(
            Some("context_length_exceeded"),
            "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in 300000 tokens. Please reduce the length of the messages.",
        );
        let v: serde_json::Value = serde_json::from_str(&error_json(&e, None)).unwrap();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("prompt is too long: 300000 tokens > 272000 maximum ("),
            "{m}"
        );
        // Counts not given: the wording, then the upstream's message.
        let e = openai_error(None, "Input exceeds the context window of this model");
        let v: serde_json::Value = serde_json::from_str(&error_json(&e, None)).unwrap();
        assert_eq!(
            v["error"]["message"],
            "prompt is too long: Input exceeds the context window of this model"
        );
        // Z.AI's (code 1261), and Gemini's.
        for said in [
            "Prompt exceeds max length",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        ] {
            let e = openai_error(None, said);
            let v: serde_json::Value = serde_json::from_str(&error_json(&e, None)).unwrap();
            assert_eq!(
                v["error"]["message"],
                format!("prompt is too long: {said}")
            );
        }
        // Other errors keep their message.
        let e = openai_error(Some("invalid_value"), "temperature: too high");
        let v: serde_json::Value = serde_json::from_str(&error_json(&e, None)).unwrap();
        assert_eq!(v["error"]["message"], "temperature: too high");
    }
}
