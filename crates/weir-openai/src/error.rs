//! OpenAI error bodies: `{"error":{"message","type","param","code"}}`.

use weir_model::{ApiError, Dialect, ErrorKind};

/// Decodes an upstream's error answer. Also understands the shapes compatible servers
/// use: `{"error": "text"}` (Ollama), an integer `code` (OpenRouter), and non-JSON bodies.
pub fn decode_error(status: u16, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match v.get("error") {
            Some(inner) => api_error_from_value(Some(status), inner),
            None => {
                let mut e = api_error_from_value(Some(status), &serde_json::Value::Null);
                if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
                    e.message = m.to_owned();
                } else {
                    e.message = excerpt(&text, status);
                }
                e
            }
        },
        Err(_) => {
            let mut e = ApiError::new(ErrorKind::from_status(status), excerpt(&text, status));
            e.status = status;
            e.dialect = Some(Dialect::OpenAi);
            e
        }
    }
}

fn excerpt(text: &str, status: u16) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return format!("upstream answered {status} with an empty body");
    }
    let cut: String = one_line.chars().take(200).collect();
    format!("upstream answered {status}: {cut}")
}

/// Decodes the value of an `error` key; `status` is `None` inside a stream.
pub(crate) fn api_error_from_value(status: Option<u16>, inner: &serde_json::Value) -> ApiError {
    let as_string = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let (mut message, ty, code, param) = match inner {
        serde_json::Value::String(s) => (s.clone(), None, None, None),
        serde_json::Value::Object(_) => (
            as_string(inner.get("message")).unwrap_or_default(),
            as_string(inner.get("type")),
            as_string(inner.get("code")),
            as_string(inner.get("param")),
        ),
        _ => (String::new(), None, None, None),
    };
    // OpenRouter says "Provider returned error" and puts the cause in `metadata`: the
    // provider's name and its own error, which the message then quotes (cut short).
    if let Some(meta) = inner.get("metadata") {
        let raw = match meta.get("raw") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) if !v.is_null() => Some(v.to_string()),
            _ => None,
        };
        if let Some(raw) = raw.filter(|r| !r.trim().is_empty()) {
            let raw: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut cut: String = raw.chars().take(500).collect();
            if cut.len() < raw.len() {
                cut.push('…');
            }
            message = match meta.get("provider_name").and_then(|p| p.as_str()) {
                Some(p) => format!("{message} ({p}: {cut})"),
                None => format!("{message} ({cut})"),
            };
        }
    }
    // In-stream errors have no HTTP status; OpenRouter puts it in an integer `code`.
    let status = status
        .or_else(|| {
            inner
                .get("code")
                .and_then(serde_json::Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
        })
        .filter(|s| (400..600).contains(s));
    let kind = match status {
        Some(s) => ErrorKind::from_status(s),
        None => code
            .as_deref()
            .and_then(kind_of_code)
            .or_else(|| ty.as_deref().map(kind_of))
            .unwrap_or(ErrorKind::Upstream),
    };
    // Azure's content filter findings (`innererror`: which category, at what severity),
    // kept for OpenAI clients as they came, unless absurdly large.
    let details = inner.as_object().and_then(|o| {
        let kept: serde_json::Map<String, serde_json::Value> = ["innererror", "inner_error"]
            .into_iter()
            .filter_map(|k| o.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        (!kept.is_empty())
            .then(|| serde_json::Value::Object(kept).to_string())
            .filter(|d| d.len() <= MAX_DETAILS)
    });
    ApiError {
        details,
        kind,
        dialect: Some(Dialect::OpenAi),
        status: status.unwrap_or(openai_status(kind)),
        error_type: ty,
        code,
        param,
        message,
    }
}

/// The largest `innererror` passed on to clients, in bytes.
const MAX_DETAILS: usize = 4096;

fn kind_of(ty: &str) -> ErrorKind {
    match ty {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" | "insufficient_quota" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        _ => ErrorKind::Upstream,
    }
}

/// The kind named by an error `code` (in-stream errors carry no status).
fn kind_of_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "overloaded" => ErrorKind::Overloaded,
        "rate_limit_exceeded" => ErrorKind::RateLimited,
        "invalid_api_key" => ErrorKind::Authentication,
        "model_not_found" => ErrorKind::NotFound,
        "context_length_exceeded" => ErrorKind::InvalidRequest,
        "timeout" => ErrorKind::Timeout,
        _ => return None,
    })
}

fn openai_status(kind: ErrorKind) -> u16 {
    kind.http_status()
}

/// The HTTP status an OpenAI client gets: OpenAI has no 529, so overload is 503.
pub fn error_status(e: &ApiError) -> u16 {
    match e.kind {
        ErrorKind::Overloaded => 503,
        // Another dialect's spent credit (Anthropic's 402) as OpenAI says it.
        _ if e.dialect != Some(Dialect::OpenAi) && e.credit_spent() => 429,
        _ => e.status,
    }
}

fn openai_error_type(e: &ApiError) -> (&str, Option<&str>) {
    match e.kind {
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => ("invalid_request_error", None),
        ErrorKind::Authentication => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::PermissionDenied => ("permission_error", None),
        ErrorKind::NotFound => ("not_found_error", None),
        ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        ErrorKind::Timeout => ("timeout_error", Some("timeout")),
        ErrorKind::Upstream
        | ErrorKind::Connect
        | ErrorKind::Decode
        | ErrorKind::Cancelled
        | ErrorKind::Internal => ("server_error", None),
    }
}

/// The body of an error for an OpenAI client.
pub(crate) fn openai_error_body(e: &ApiError) -> Vec<u8> {
    let (default_ty, default_code) = openai_error_type(e);
    let same = e.dialect == Some(Dialect::OpenAi);
    // The upstream's own type and code for its dialect (a type it left out is filled
    // in: clients expect one); Weir's own errors take the kind's, or the code they carry.
    // (A spent credit's type is OpenAI's for it, not the rate limit its kind shares.)
    let default_ty = if e.credit_spent() {
        "insufficient_quota"
    } else {
        default_ty
    };
    let (ty, code) = if same {
        (
            e.error_type.as_deref().or(Some(default_ty)),
            e.code.as_deref(),
        )
    } else if e.is_context_overflow() {
        (Some(default_ty), Some("context_length_exceeded"))
    } else if e.credit_spent() {
        (Some(default_ty), Some("insufficient_quota"))
    } else {
        (Some(default_ty), e.code.as_deref().or(default_code))
    };
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        ty: Option<&'a str>,
        param: Option<&'a str>,
        code: Option<&'a str>,
        /// An OpenAI-dialect upstream's `innererror` (Azure's), for OpenAI clients.
        #[serde(flatten)]
        details: Option<serde_json::Map<String, serde_json::Value>>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    let body = Body {
        error: Inner {
            message: &e.message,
            ty,
            param: e.param.as_deref(),
            code,
            details: e
                .details
                .as_deref()
                .filter(|_| same)
                .and_then(|d| serde_json::from_str(d).ok()),
        },
    };
    // Plain strings only: serialization cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Encodes an error for an OpenAI client: `(status, body)`.
pub fn encode_error(e: &ApiError) -> (u16, Vec<u8>) {
    (error_status(e), openai_error_body(e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn openrouters_provider_error_is_quoted_in_the_message() {
        let e = decode_error(
            400,
            br#"{"error":{"code":400,"message":"Provider returned error","metadata":{"raw":"{\n  \"error\": {\"message\": \"Unsupported parameter: logit_bias\"}\n}","provider_name":"Google"}},"user_id":"u"}"#,
        );
        assert_eq!(
            e.message,
            r#"Provider returned error (Google: { "error": {"message": "Unsupported parameter: logit_bias"} })"#
        );
        assert_eq!(e.status, 400);
    }

    #[test]
    fn anthropics_billing_error_is_openais_insufficient_quota() {
        let e = weir_model::ApiError {
            dialect: Some(Dialect::Anthropic),
            status: 402,
            error_type: Some("billing_error".into()),
            ..weir_model::ApiError::new(ErrorKind::RateLimited, "Your credit balance is too low")
        };
        assert!(e.credit_spent());
        let (status, body) = encode_error(&e);
        assert_eq!(status, 429);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
        assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    }

    #[test]
    fn azures_content_filter_findings_reach_openai_clients() {
        let body = br#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"jailbreak":{"filtered":true,"detected":true}}}}}"#;
        let e = decode_error(400, body);
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&e).1).unwrap();
        assert_eq!(
            v["error"]["innererror"]["content_filter_result"]["jailbreak"]["filtered"], true,
            "{v}"
        );
        assert_eq!(v["error"]["code"], "content_filter");
        // (Kept as an OpenAI error's details, which Anthropic clients do not get: see
        // weir-testkit's pitfalls.)
        assert!(e.details.is_some());
        assert_eq!(e.dialect, Some(Dialect::OpenAi));
    }

    #[test]
    fn an_openai_dialect_402_without_a_type_is_insufficient_quota() {
        // OpenRouter's "Insufficient credits": no type, an integer code.
        let e = decode_error(
            402,
            br#"{"error":{"message":"Insufficient credits","code":402}}"#,
        );
        assert!(e.credit_spent());
        let (status, body) = encode_error(&e);
        assert_eq!(status, 402);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    }

    #[test]
    fn an_upstream_error_without_a_type_still_gets_one() {
        let e = decode_error(404, b"");
        let (status, body) = encode_error(&e);
        assert_eq!(status, 404);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "not_found_error", "{v}");
        // One that has its own type and code keeps them.
        let e = decode_error(
            400,
            br#"{"error":{"message":"m","type":"invalid_request_error","param":"x","code":"bad_thing"}}"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&e).1).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "bad_thing");
        assert_eq!(v["error"]["param"], "x");
    }

    #[test]
    fn an_anthropic_prompt_too_long_is_context_length_exceeded() {
        let e = weir_anthropic_shaped("prompt is too long: 208310 tokens > 200000 maximum");
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&e).1).unwrap();
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        // Bedrock's wording.
        let e = weir_anthropic_shaped("Input is too long for requested model.");
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&e).1).unwrap();
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
        let e = weir_anthropic_shaped("messages: text content blocks must be non-empty");
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&e).1).unwrap();
        assert!(v["error"]["code"].is_null(), "{v}");
    }

    fn weir_anthropic_shaped(message: &str) -> ApiError {
        ApiError {
            details: None,
            kind: ErrorKind::InvalidRequest,
            dialect: Some(Dialect::Anthropic),
            status: 400,
            error_type: Some("invalid_request_error".into()),
            code: None,
            param: None,
            message: message.into(),
        }
    }
}
