//! Vertex AI error bodies.
//!
//! Google's platform answers `{"error":{"code","message","status","details"}}`, sometimes
//! wrapped in an array (`[{"error":{...}}]`, typical of streaming methods). Claude models
//! may also answer in Anthropic's shape (`{"type":"error","error":{"type","message"}}`):
//! those go to the Anthropic dialect's decoder, so an Anthropic client gets the error
//! type back unchanged.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::{ApiError, ErrorKind};

/// The canonical kind of a Google RPC status (`google.rpc.Code` names).
pub fn kind_of_status(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "NOT_FOUND" => ErrorKind::NotFound,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => ErrorKind::Upstream,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct GoogleBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    code: Option<u16>,
    message: Option<String>,
    status: Option<String>,
    #[serde(default)]
    details: Vec<Box<RawValue>>,
}

/// Decodes a Vertex AI error answer: Google-shaped (plain or in an array),
/// Anthropic-shaped, or anything else (an HTML page from a proxy, an empty body), which
/// still gives an error of the HTTP status's kind with a short excerpt of the body.
///
/// `error_type` keeps Google's status name (`RESOURCE_EXHAUSTED`); `dialect` is `None`,
/// so client dialects write their own error type for the kind.
pub fn decode_error(status: u16, body: &[u8]) -> ApiError {
    decode(status, body).0
}

/// [`decode_error`], plus the wait a Google `RetryInfo` detail asks for.
pub(crate) fn decode(status: u16, body: &[u8]) -> (ApiError, Option<Duration>) {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') && is_anthropic(trimmed) {
        return (weir_anthropic::decode_error(status, body), None);
    }
    let google = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<GoogleBody>>(trimmed)
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        serde_json::from_str::<GoogleBody>(trimmed).ok()
    };
    match google {
        Some(g) => from_google(status, g.error),
        None => {
            let mut e = ApiError::new(ErrorKind::from_status(status), excerpt(&text, status));
            e.status = status;
            (e, None)
        }
    }
}

/// `{"type":"error", ...}`, or an `error` object with a string `type` and no Google
/// `status`.
fn is_anthropic(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<&'a str>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct InnerProbe<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<&'a str>,
        #[serde(borrow)]
        status: Option<&'a str>,
    }
    let Ok(p) = serde_json::from_str::<Probe<'_>>(text) else {
        return false;
    };
    if p.ty == Some("error") {
        return true;
    }
    p.error
        .and_then(|e| serde_json::from_str::<InnerProbe<'_>>(e.get()).ok())
        .is_some_and(|i| i.ty.is_some() && i.status.is_none())
}

fn from_google(http_status: u16, g: GoogleError) -> (ApiError, Option<Duration>) {
    let kind = g
        .status
        .as_deref()
        .and_then(kind_of_status)
        .unwrap_or_else(|| ErrorKind::from_status(g.code.unwrap_or(http_status)));
    let retry = g.details.iter().find_map(|d| retry_delay(d.get()));
    let message = match g.message {
        Some(m) if !m.is_empty() => m,
        _ => format!(
            "Vertex AI answered {http_status}{}",
            g.status
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default()
        ),
    };
    let e = ApiError {
        details: None,
        kind,
        dialect: None,
        status: http_status,
        error_type: g.status,
        code: None,
        param: None,
        message,
    };
    (e, retry)
}

/// A `google.rpc.RetryInfo` detail's `retryDelay` (`"30s"`, `"1.5s"`).
fn retry_delay(detail: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Detail {
        #[serde(rename = "@type")]
        ty: Option<String>,
        #[serde(rename = "retryDelay")]
        retry_delay: Option<String>,
    }
    let d: Detail = serde_json::from_str(detail).ok()?;
    if !d.ty?.ends_with("google.rpc.RetryInfo") {
        return None;
    }
    let secs: f64 = d.retry_delay?.strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// A short, single-line excerpt of a non-JSON error body.
fn excerpt(text: &str, status: u16) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return format!("Vertex AI answered {status} with an empty body");
    }
    let cut: String = one_line.chars().take(200).collect();
    format!("Vertex AI answered {status}: {cut}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::Dialect;

    fn check(status: u16, body: &str, kind: ErrorKind, error_type: Option<&str>, message: &str) {
        let e = decode_error(status, body.as_bytes());
        assert_eq!(
            (
                e.kind,
                e.status,
                e.error_type.as_deref(),
                e.message.as_str()
            ),
            (kind, status, error_type, message),
            "{body}"
        );
    }

    #[test]
    fn google_statuses_map_to_kinds() {
        for (code, status, kind) in [
            (429, "RESOURCE_EXHAUSTED", ErrorKind::RateLimited),
            (503, "UNAVAILABLE", ErrorKind::Overloaded),
            (401, "UNAUTHENTICATED", ErrorKind::Authentication),
            (403, "PERMISSION_DENIED", ErrorKind::PermissionDenied),
            (400, "INVALID_ARGUMENT", ErrorKind::InvalidRequest),
            (400, "FAILED_PRECONDITION", ErrorKind::InvalidRequest),
            (404, "NOT_FOUND", ErrorKind::NotFound),
            (500, "INTERNAL", ErrorKind::Upstream),
            (504, "DEADLINE_EXCEEDED", ErrorKind::Timeout),
        ] {
            let body =
                format!(r#"{{"error":{{"code":{code},"message":"m","status":"{status}"}}}}"#);
            check(code, &body, kind, Some(status), "m");
            let wrapped = format!("[{body}]");
            check(code, &wrapped, kind, Some(status), "m");
        }
    }

    #[test]
    fn array_wrapped_quota_error() {
        let body = r#"[{
  "error": {
    "code": 429,
    "message": "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.",
    "status": "RESOURCE_EXHAUSTED"
  }
}
]"#;
        check(
            429,
            body,
            ErrorKind::RateLimited,
            Some("RESOURCE_EXHAUSTED"),
            "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.",
        );
        assert_eq!(decode_error(429, body.as_bytes()).dialect, None);
    }

    #[test]
    fn unknown_status_falls_back_to_the_code() {
        check(
            409,
            r#"{"error":{"code":409,"message":"exists","status":"ALREADY_EXISTS"}}"#,
            ErrorKind::InvalidRequest,
            Some("ALREADY_EXISTS"),
            "exists",
        );
        check(
            501,
            r#"{"error":{"code":501,"message":"nope","status":"UNIMPLEMENTED"}}"#,
            ErrorKind::Upstream,
            Some("UNIMPLEMENTED"),
            "nope",
        );
    }

    #[test]
    fn anthropic_shaped_errors_use_the_anthropic_decoder() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = decode_error(529, body.as_bytes());
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.dialect, Some(Dialect::Anthropic));
        assert_eq!(e.error_type.as_deref(), Some("overloaded_error"));
        // Without the outer type, an inner `type` and no `status` is still Anthropic's.
        let body = r#"{"error":{"type":"invalid_request_error","message":"bad"}}"#;
        let e = decode_error(400, body.as_bytes());
        assert_eq!(e.dialect, Some(Dialect::Anthropic));
        assert_eq!(e.error_type.as_deref(), Some("invalid_request_error"));
    }

    #[test]
    fn non_json_bodies_keep_the_status_kind() {
        check(
            502,
            "<html><body>502 Bad Gateway</body></html>",
            ErrorKind::Upstream,
            None,
            "Vertex AI answered 502: <html><body>502 Bad Gateway</body></html>",
        );
        check(
            503,
            "",
            ErrorKind::Overloaded,
            None,
            "Vertex AI answered 503 with an empty body",
        );
    }

    #[test]
    fn retry_info_gives_the_wait() {
        let body = r#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED"},
                       {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#;
        let (e, wait) = decode(429, body.as_bytes());
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(wait, Some(Duration::from_millis(1500)));
    }
}
