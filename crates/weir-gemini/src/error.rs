//! Google API error bodies: `{"error":{"code","message","status","details"}}`, also
//! wrapped in an array (`[{"error":{...}}]`, as Vertex and some Google front ends send).

use std::time::Duration;

use serde_json::Value;
use weir_model::{ApiError, ErrorKind};

/// Decodes an upstream's error answer.
///
/// The kind comes from the canonical `status` string (`RESOURCE_EXHAUSTED` is a rate
/// limit, `UNAVAILABLE` an overload, ...), else from the HTTP status. Two refinements: an
/// invalid API key, which Google answers with 400 `INVALID_ARGUMENT`, is an
/// authentication error; `FAILED_PRECONDITION` (the free tier is not offered in the
/// caller's region, billing is off) is a permission problem of the key, not of the
/// request. `error_type` keeps the `status` string. Bodies that are not Google errors
/// (HTML pages from a proxy, empty bodies) give an error of the HTTP status with an
/// excerpt (an HTML page's `<title>`).
///
/// `status` is the HTTP status; inside a stream (a 200) the error's own `code` is used.
pub fn decode_error(status: u16, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body);
    match error_object(&text) {
        Some(inner) => from_value(status, &inner),
        None => {
            let mut e = ApiError::new(ErrorKind::from_status(status), excerpt(&text, status));
            if (400..600).contains(&status) {
                e.status = status;
            }
            e
        }
    }
}

/// The `error` object of a body, in either shape.
fn error_object(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text).ok()?;
    let outer = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    match outer {
        Value::Object(mut m) => match m.remove("error") {
            Some(inner @ Value::Object(_)) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// An error object as an [`ApiError`]; `status` is the HTTP status (200 inside a stream).
pub(crate) fn from_value(status: u16, inner: &Value) -> ApiError {
    let code = inner
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let http = Some(status).filter(|s| (400..600).contains(s)).or(code);
    let google = inner.get("status").and_then(Value::as_str);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = if bad_key(inner, &message) {
        ErrorKind::Authentication
    } else {
        google
            .and_then(kind_of)
            .or_else(|| http.map(ErrorKind::from_status))
            .unwrap_or(ErrorKind::Upstream)
    };
    ApiError {
        details: None,
        kind,
        dialect: None,
        status: http.unwrap_or_else(|| kind.http_status()),
        error_type: google.map(str::to_owned),
        code: None,
        param: None,
        message: if message.is_empty() {
            format!("upstream answered {}", google.unwrap_or("an error"))
        } else {
            message
        },
    }
}

/// The kind a canonical Google status names.
fn kind_of(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "INVALID_ARGUMENT" | "OUT_OF_RANGE" | "ALREADY_EXISTS" | "UNIMPLEMENTED" => {
            ErrorKind::InvalidRequest
        }
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" | "FAILED_PRECONDITION" => ErrorKind::PermissionDenied,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" | "ABORTED" | "CANCELLED" => ErrorKind::Upstream,
        _ => return None,
    })
}

/// Google answers a wrong API key with 400 `INVALID_ARGUMENT`, reason `API_KEY_INVALID`.
fn bad_key(inner: &Value, message: &str) -> bool {
    let reason = details(inner).any(|d| {
        d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
            && d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.ErrorInfo"))
    });
    reason || message.starts_with("API key not valid")
}

fn details(inner: &Value) -> impl Iterator<Item = &Value> {
    inner
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The wait a Google error body asks for: the `retryDelay` of a `google.rpc.RetryInfo`
/// detail (`"13s"`, `"0.5s"`; Gemini sends one with `RESOURCE_EXHAUSTED`). The provider
/// puts it in `ProviderError::retry_after` when the headers name no wait.
pub fn retry_delay(body: &[u8]) -> Option<Duration> {
    let inner = error_object(std::str::from_utf8(body).ok()?)?;
    let delay = details(&inner)
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")
                .and_then(Value::as_str)
                .and_then(duration)
        });
    delay
}

/// A protobuf JSON `Duration`: decimal seconds with an `s` suffix.
fn duration(s: &str) -> Option<Duration> {
    let secs = s.trim().strip_suffix('s')?;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(whole, nanos))
}

/// The message of an error object's text, for other errors to quote.
pub(crate) fn message_of(error_json: &str) -> String {
    serde_json::from_str::<Value>(error_json)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| excerpt(error_json, 0))
}

fn excerpt(text: &str, status: u16) -> String {
    let shown = html_title(text).unwrap_or(text);
    let one_line = shown.split_whitespace().collect::<Vec<_>>().join(" ");
    let head = if status == 0 {
        "upstream error".to_owned()
    } else {
        format!("upstream answered {status}")
    };
    if one_line.is_empty() {
        return format!("{head} with an empty body");
    }
    let cut: String = one_line.chars().take(200).collect();
    format!("{head}: {cut}")
}

fn html_title(text: &str) -> Option<&str> {
    let mut cut = text.len().min(4096);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let lower = text[..cut].to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    text.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_protobuf_json() {
        assert_eq!(duration("13s"), Some(Duration::from_secs(13)));
        assert_eq!(duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(duration("1.000000001s"), Some(Duration::new(1, 1)));
        assert_eq!(duration(".25s"), Some(Duration::from_millis(250)));
        for bad in ["13", "s", "abc s", "1.5.5s", "-1s", "1.0000000001s"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }
}
