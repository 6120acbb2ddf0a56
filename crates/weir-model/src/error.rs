//! Errors: what an API answered ([`ApiError`]), what a provider call produced
//! ([`ProviderError`]), and what a dialect codec rejected ([`WireError`]).

use std::fmt;
use std::time::Duration;

/// The kind of an error, independent of dialect. Each dialect maps its error types and
/// HTTP statuses to and from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or not acceptable (400).
    InvalidRequest,
    /// Missing or wrong credentials (401).
    Authentication,
    /// The credentials may not do this (403).
    PermissionDenied,
    /// No such model or endpoint (404).
    NotFound,
    /// The request body is too large (413).
    RequestTooLarge,
    /// Too many requests or tokens (429).
    RateLimited,
    /// The provider is overloaded (Anthropic 529, OpenAI 503).
    Overloaded,
    /// The provider failed (other 5xx).
    Upstream,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream could not be reached.
    Connect,
    /// The upstream answered something that could not be decoded.
    Decode,
    /// The client went away.
    Cancelled,
    /// Weir itself failed.
    Internal,
}

impl ErrorKind {
    /// The HTTP status a gateway answers with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Overloaded => 503,
            ErrorKind::Upstream | ErrorKind::Decode => 502,
            ErrorKind::Timeout => 504,
            ErrorKind::Connect => 502,
            ErrorKind::Cancelled => 499,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind for an upstream HTTP status.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::RequestTooLarge,
            // 402: the key's account has no credit left ([`ApiError::credit_spent`]): the
            // key rests, others serve.
            402 | 429 => ErrorKind::RateLimited,
            503 | 529 => ErrorKind::Overloaded,
            500..=599 => ErrorKind::Upstream,
            // An interim, redirect or switching answer is no answer a gateway can pass on
            // (redirects are not followed: the key would go to another host): the upstream
            // failed, and another target may do better.
            100..=399 => ErrorKind::Upstream,
            400..=499 => ErrorKind::InvalidRequest,
            // No HTTP status at all: a broken upstream.
            _ => ErrorKind::Upstream,
        }
    }

    /// Whether another target may be tried after this error: the request itself was
    /// fine, the target was not. 4xx other than 429 (and 408) are the client's problem.
    pub fn retryable_elsewhere(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Upstream
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Decode
                | ErrorKind::Authentication
                | ErrorKind::PermissionDenied
        )
    }

    /// Whether this error says the target is unhealthy (for circuit breakers): 5xx,
    /// timeouts and connection failures, and answers that cannot be decoded (an HTML
    /// error page, a malformed stream: a 502 in all but name); never 4xx.
    pub fn counts_against_health(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded
                | ErrorKind::Upstream
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Decode
        )
    }
}

/// An error body, as an API answered it or as Weir answers a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Canonical kind.
    pub kind: ErrorKind,
    /// The dialect whose API produced this body (`None`: Weir's own); an encoder of the
    /// same dialect keeps `error_type`, `code` and `param` as they came.
    pub dialect: Option<crate::raw::Dialect>,
    /// HTTP status (for errors inside a stream: the status the error would have had).
    pub status: u16,
    /// The dialect's own error type string (`overloaded_error`, `invalid_request_error`),
    /// kept so the same dialect writes it back unchanged.
    pub error_type: Option<String>,
    /// OpenAI `code`.
    pub code: Option<String>,
    /// OpenAI `param`.
    pub param: Option<String>,
    /// Human-readable message. Must never contain secrets.
    pub message: String,
    /// Anthropic's `error.details` as JSON text (what a client's SDK acts on, e.g.
    /// `{"error_code":"thread_not_found"}`), kept as it came, written back to Anthropic
    /// clients only; or an OpenAI-dialect error's `innererror` (Azure's content filter
    /// findings), as an object of that field, written back to OpenAI clients only.
    pub details: Option<String>,
}

impl ApiError {
    /// An error of a kind, with the kind's usual status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            dialect: None,
            status: kind.http_status(),
            error_type: None,
            code: None,
            param: None,
            message: message.into(),
            details: None,
        }
    }
}

impl ApiError {
    /// Whether the key has no credit left (OpenAI's 429 `insufficient_quota`, Anthropic's
    /// 402 `billing_error`), which is not a rate: it holds for every model and passes only
    /// when someone pays.
    pub fn credit_spent(&self) -> bool {
        // 402 Payment Required: DeepSeek's "Insufficient Balance", OpenRouter's
        // "Insufficient credits".
        self.status == 402
            || self.code.as_deref() == Some("insufficient_quota")
            || matches!(
                self.error_type.as_deref(),
                Some("insufficient_quota" | "billing_error")
            )
    }

    /// Whether this 404 says the model is unknown (Anthropic's `not_found_error` with
    /// `model: <name>`), not that the endpoint is missing.
    pub fn is_unknown_model(&self) -> bool {
        self.error_type.as_deref() == Some("not_found_error") && self.message.starts_with("model:")
    }

    /// Whether this is a prompt over the model's context window: Anthropic's "prompt is
    /// too long", OpenAI's `context_length_exceeded` (and the wording compatible servers
    /// use). Clients react to it (Claude Code compacts the conversation), so each dialect
    /// gets the other's in its own words.
    pub fn is_context_overflow(&self) -> bool {
        if self.kind != ErrorKind::InvalidRequest {
            return false;
        }
        if self.code.as_deref() == Some("context_length_exceeded") {
            return true;
        }
        let m = self.message.to_ascii_lowercase();
        m.starts_with("prompt is too long")
            || m.contains("maximum context length")
            || m.contains("context_length_exceeded")
            || m.contains("context window")
            // OpenAI's newer wording, and Bedrock's.
            || m.contains("input tokens exceed the configured limit")
            || m.contains("input is too long")
            // Z.AI's (code 1261) and Gemini's OpenAI endpoint's.
            || m.contains("prompt exceeds max length")
            || m.contains("exceeds the maximum number of tokens allowed")
    }

    /// The message an Anthropic client gets for a context overflow of another dialect:
    /// Anthropic's own wording (`prompt is too long: N tokens > M maximum` when the
    /// upstream's message gives both counts), the upstream's message after it.
    pub fn as_prompt_too_long(&self) -> String {
        let m = self.message.to_ascii_lowercase();
        let after = |marker: &str| -> Option<u64> {
            let rest = &m[m.find(marker)? + marker.len()..];
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let max = after("maximum context length is").or_else(|| after("configured limit of"));
        let used = after("resulted in")
            .or_else(|| after("requested about"))
            .or_else(|| after("requested"));
        match (used, max) {
            (Some(u), Some(x)) => {
                format!(
                    "prompt is too long: {u} tokens > {x} maximum ({})",
                    self.message
                )
            }
            _ => format!("prompt is too long: {}", self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status,
            self.error_type.as_deref().unwrap_or("error"),
            self.message
        )
    }
}

/// What a `first_byte` timeout of a call whose answer was to be whole adds to its message:
/// a whole answer's headers come only once all of it is written, so `first_byte` bounds
/// its generation (reasoning models and long answers take minutes; Claude Code falls back
/// to a whole answer of up to 32000 tokens when a stream fails).
pub const WHOLE_ANSWER_TIMEOUT_HINT: &str = " (a whole answer's headers come once all of it is written: stream, or raise [timeouts] first_byte for long answers)";

/// A provider call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ProviderError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    /// How long the upstream asked us to wait.
    pub retry_after: Option<Duration>,
    /// A rate limit on what was asked of the key (its quota for this model), not on the
    /// key: the key rests for this model only and keeps serving others. Every upstream
    /// 429 is one ([`ProviderError::from_api`]): Anthropic's, OpenAI's, Groq's, Gemini's
    /// and Azure's limits are per model, and where a service's are per key the cost is
    /// one refused request per model. Not OpenAI's `insufficient_quota` (the key has no
    /// credit left, for every model).
    pub per_model_quota: bool,
    /// May the router try another target? Derived from `kind`, overridable by a provider
    /// that knows better.
    pub retryable_elsewhere: bool,
    /// Does this count against the target's health? Derived from `kind`.
    pub counts_against_health: bool,
    /// The same request to this target would fail the same way (an answer the gateway
    /// cannot read, whatever the model said): another target may take it, but a retry
    /// here would only pay for another generation. The message is the gateway's own.
    pub repeats: bool,
    /// The upstream's error body in canonical form, when it sent one.
    pub api_error: Option<Box<ApiError>>,
    /// Sanitized message: never a key, never a URL with credentials.
    pub message: String,
    /// The upstream's own id for the request (its `request-id` or `x-request-id`), when
    /// it answered with an error and said one: to quote to its support.
    pub upstream_request_id: Option<String>,
}

impl ProviderError {
    /// An error of a kind, with the kind's defaults.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            status: None,
            retry_after: None,
            per_model_quota: false,
            retryable_elsewhere: kind.retryable_elsewhere(),
            counts_against_health: kind.counts_against_health(),
            repeats: false,
            api_error: None,
            message: message.into(),
            upstream_request_id: None,
        }
    }

    /// A request this target's encoder cannot express (a field its API has no counterpart
    /// for): nothing was sent, and another target may take it, so the router passes this
    /// one over as it does a target lacking a capability.
    pub fn unexpressible(e: &WireError) -> Self {
        let mut p = ProviderError::new(ErrorKind::InvalidRequest, e.to_string());
        p.retryable_elsewhere = true;
        p.counts_against_health = false;
        p
    }

    /// A request refused before anything was sent: malformed (`WireError::Malformed`,
    /// the client's to fix, as any target would say) is a 400 returned at once; anything
    /// else is [`ProviderError::unexpressible`] here, and another target may take it.
    pub fn refused(e: &WireError) -> Self {
        match e {
            WireError::Malformed(_) => {
                let mut p = ProviderError::from_api(
                    ApiError::new(ErrorKind::InvalidRequest, e.to_string()),
                    None,
                );
                p.retryable_elsewhere = false;
                p.counts_against_health = false;
                p
            }
            _ => ProviderError::unexpressible(e),
        }
    }

    /// Whether this is [`ProviderError::unexpressible`]'s error (no upstream answered).
    pub fn is_unexpressible(&self) -> bool {
        self.kind == ErrorKind::InvalidRequest
            && self.retryable_elsewhere
            && !self.counts_against_health
            && self.status.is_none()
            && self.api_error.is_none()
    }

    /// From an upstream's error answer. A rate limit whose wait came in no header takes
    /// the one its message names (OpenAI's "Please try again in 2.5s.", also in an error
    /// sent inside a stream).
    pub fn from_api(api: ApiError, retry_after: Option<Duration>) -> Self {
        let mut e = ProviderError::new(api.kind, api.message.clone());
        e.status = Some(api.status);
        e.retry_after = retry_after.or_else(|| {
            (api.kind == ErrorKind::RateLimited)
                .then(|| wait_in_message(&api.message))
                .flatten()
        });
        e.per_model_quota = api.kind == ErrorKind::RateLimited && !api.credit_spent();
        e.api_error = Some(Box::new(api));
        e
    }
}

/// The wait a rate limit's message names: "try again in " and a duration written as Go
/// writes them (`6ms`, `2.5s`, `1m30s`, `1h2m3.5s`), at most a day.
fn wait_in_message(message: &str) -> Option<Duration> {
    const AT: &str = "try again in ";
    let at = message.find(AT)? + AT.len();
    let mut rest = &message[at..];
    let mut total = 0.0_f64;
    let mut any = false;
    loop {
        // (A number starts with a digit: a sentence's full stop ends the duration.)
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (scale, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return None;
        };
        total += value * scale;
        rest = &rest[len..];
        any = true;
    }
    (any && total.is_finite() && total <= 86_400.0).then(|| Duration::from_secs_f64(total))
}

/// A dialect codec could not decode or encode something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input is not valid JSON, or not the expected shape. The message says where.
    #[error("{0}")]
    Malformed(String),
    /// The input is well-formed but cannot be expressed in the target dialect.
    #[error("{0}")]
    Unsupported(String),
    /// The upstream answered well, but the model's answer cannot be used (a tool call it
    /// could not form, e.g. Gemini's `MALFORMED_FUNCTION_CALL`): worth another try, but
    /// not a sign the upstream is unhealthy.
    #[error("{0}")]
    ModelOutput(String),
}

impl WireError {
    /// Whether this error says the upstream is unhealthy, when it is its answer that
    /// could not be decoded: not for [`WireError::ModelOutput`].
    pub fn counts_against_health(&self) -> bool {
        !matches!(self, WireError::ModelOutput(_))
    }

    /// A malformed-input error from a serde_json error, keeping its line and column.
    pub fn from_json(what: &str, err: &serde_json::Error) -> Self {
        WireError::Malformed(format!("invalid {what}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rate_limits_message_names_its_wait() {
        use std::time::Duration;
        let w = |m: &str| super::wait_in_message(m);
        assert_eq!(
            w("Rate limit reached for gpt-4o on tokens per min. Please try again in 2.5s. Visit..."),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            w("Please try again in 20ms."),
            Some(Duration::from_millis(20))
        );
        assert_eq!(w("try again in 1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            w("try again in 1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(w("try again later"), None);
        assert_eq!(w("try again in 5 minutes"), None);
        assert_eq!(w("try again in 9999h"), None);
        let mut api = ApiError::new(ErrorKind::RateLimited, "Please try again in 3s.");
        api.status = 429;
        assert_eq!(
            ProviderError::from_api(api.clone(), None).retry_after,
            Some(Duration::from_secs(3))
        );
        // A header's wait wins.
        assert_eq!(
            ProviderError::from_api(api, Some(Duration::from_secs(7))).retry_after,
            Some(Duration::from_secs(7))
        );
    }

    use super::*;

    #[test]
    fn client_errors_never_count_against_health() {
        // 408 is the upstream timing out (Bedrock's modelTimeoutException), not the client.
        for s in (400..500u16).filter(|s| *s != 408) {
            assert!(!ErrorKind::from_status(s).counts_against_health(), "{s}");
        }
        for s in [500u16, 502, 503, 529] {
            assert!(ErrorKind::from_status(s).counts_against_health(), "{s}");
        }
    }

    #[test]
    fn bad_requests_are_not_retried_elsewhere() {
        assert!(!ErrorKind::from_status(400).retryable_elsewhere());
        assert!(!ErrorKind::from_status(413).retryable_elsewhere());
        assert!(ErrorKind::from_status(429).retryable_elsewhere());
        assert!(ErrorKind::from_status(529).retryable_elsewhere());
    }
}
