//! Bedrock errors: HTTP error answers (`{"message": "..."}` with the exception's name in
//! `x-amzn-errortype`) and exceptions inside an event stream (`:message-type: exception`).

use std::time::Duration;

use weir_model::{ApiError, ErrorKind, ProviderError};

/// The wait given to a throttled call when the upstream names none (Bedrock sends no
/// `retry-after`): long enough for a per-minute token bucket to refill a little.
pub const THROTTLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The exception name from an `x-amzn-errortype` value
/// (`ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/`).
pub fn error_type_name(header: &str) -> &str {
    header.split(':').next().unwrap_or(header).trim()
}

/// The canonical kind and HTTP status of a Bedrock exception, by name (HTTP answers use
/// `ThrottlingException`, streams `throttlingException`; both are accepted).
pub fn exception_kind(name: &str) -> Option<(ErrorKind, u16)> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "throttlingexception" => (ErrorKind::RateLimited, 429),
        "servicequotaexceededexception" => (ErrorKind::RateLimited, 429),
        "validationexception" => (ErrorKind::InvalidRequest, 400),
        "accessdeniedexception" => (ErrorKind::PermissionDenied, 403),
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "expiredtokenexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception" => (ErrorKind::Authentication, 403),
        "resourcenotfoundexception" => (ErrorKind::NotFound, 404),
        "serviceunavailableexception" => (ErrorKind::Overloaded, 503),
        "modelnotreadyexception" => (ErrorKind::Overloaded, 429),
        "modeltimeoutexception" => (ErrorKind::Timeout, 408),
        "modelstreamerrorexception" => (ErrorKind::Upstream, 424),
        "modelerrorexception" => (ErrorKind::Upstream, 424),
        "internalserverexception" => (ErrorKind::Upstream, 500),
        "conflictexception" => (ErrorKind::InvalidRequest, 409),
        _ => return None,
    })
}

#[derive(serde::Deserialize, Default)]
struct Body {
    #[serde(alias = "Message")]
    message: Option<String>,
}

fn message_of(body: &[u8], status: u16) -> String {
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { message: Some(m) }) => m,
        _ => {
            let text = String::from_utf8_lossy(body);
            let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if one_line.is_empty() {
                format!("upstream answered {status} with an empty body")
            } else {
                let cut: String = one_line.chars().take(200).collect();
                format!("upstream answered {status}: {cut}")
            }
        }
    }
}

/// Decodes an HTTP error answer: the kind from the exception name when it is known, else
/// from the status; the message from the body.
pub fn decode_error(status: u16, error_type: Option<&str>, body: &[u8]) -> ApiError {
    let name = error_type.map(error_type_name).filter(|n| !n.is_empty());
    let kind = name
        .and_then(exception_kind)
        .map_or_else(|| ErrorKind::from_status(status), |(k, _)| k);
    ApiError {
        details: None,
        kind,
        dialect: None,
        status,
        error_type: name.map(str::to_owned),
        code: None,
        param: None,
        message: message_of(body, status),
    }
}

/// An exception inside an event stream, as the error that ends the stream. Throttling
/// gets [`THROTTLE_RETRY_AFTER`] as its wait.
pub fn stream_exception(name: &str, payload: &[u8]) -> ProviderError {
    let (kind, status) = exception_kind(name).unwrap_or((ErrorKind::Upstream, 500));
    let api = ApiError {
        details: None,
        kind,
        dialect: None,
        status,
        error_type: Some(name.to_owned()),
        code: None,
        param: None,
        message: message_of(payload, status),
    };
    let retry = (kind == ErrorKind::RateLimited).then_some(THROTTLE_RETRY_AFTER);
    ProviderError::from_api(api, retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_are_mapped_by_exception_name() {
        let cases = [
            (
                "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                429,
                ErrorKind::RateLimited,
            ),
            (
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                400,
                ErrorKind::InvalidRequest,
            ),
            (
                "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
                403,
                ErrorKind::PermissionDenied,
            ),
            ("ResourceNotFoundException:", 404, ErrorKind::NotFound),
            ("ServiceUnavailableException", 503, ErrorKind::Overloaded),
            ("ModelTimeoutException", 408, ErrorKind::Timeout),
            ("ModelNotReadyException", 429, ErrorKind::Overloaded),
            ("InternalServerException", 500, ErrorKind::Upstream),
            (
                "UnrecognizedClientException",
                403,
                ErrorKind::Authentication,
            ),
        ];
        for (header, status, kind) in cases {
            let e = decode_error(
                status,
                Some(header),
                br#"{"message":"Too many tokens, please wait before trying again."}"#,
            );
            assert_eq!(e.kind, kind, "{header}");
            assert_eq!(e.status, status);
            assert_eq!(
                e.message,
                "Too many tokens, please wait before trying again."
            );
            assert_eq!(e.error_type.as_deref(), Some(error_type_name(header)));
        }
        let e = decode_error(502, None, b"<html>Bad Gateway</html>");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::Upstream,
                "upstream answered 502: <html>Bad Gateway</html>"
            )
        );
        let e = decode_error(418, Some("SomethingNewException"), br#"{"Message":"odd"}"#);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::InvalidRequest, "odd")
        );
    }

    #[test]
    fn stream_exceptions_carry_status_and_wait() {
        let e = stream_exception("throttlingException", br#"{"message":"slow down"}"#);
        assert_eq!(
            (e.kind, e.status, e.retry_after),
            (
                ErrorKind::RateLimited,
                Some(429),
                Some(THROTTLE_RETRY_AFTER)
            )
        );
        assert_eq!(e.message, "slow down");
        let e = stream_exception(
            "modelStreamErrorException",
            br#"{"message":"boom","originalStatusCode":500}"#,
        );
        assert_eq!(
            (e.kind, e.status, e.retry_after),
            (ErrorKind::Upstream, Some(424), None)
        );
        for (name, kind) in [
            ("internalServerException", ErrorKind::Upstream),
            ("serviceUnavailableException", ErrorKind::Overloaded),
            ("validationException", ErrorKind::InvalidRequest),
            ("modelTimeoutException", ErrorKind::Timeout),
            ("somethingElse", ErrorKind::Upstream),
        ] {
            assert_eq!(stream_exception(name, b"{}").kind, kind, "{name}");
        }
    }
}
