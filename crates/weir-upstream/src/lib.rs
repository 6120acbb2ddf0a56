//! The HTTP client side that Weir's providers share: one pooled client (rustls), the
//! four timeouts (connect, first byte, idle, total), classification of upstream failures
//! into [`ProviderError`]s (with the wait the upstream asked for), what a response's
//! rate-limit headers say about the key ([`rate_limit_info`]), and SSE response bodies
//! turned into canonical frames by a dialect's stream decoder.
//!
//! It knows HTTP and SSE; it knows no dialect (decoders are passed in) and no routing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod call;
mod ratelimit;
mod retry_after;
mod stream;

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode};
use weir_model::{ApiError, ErrorKind, ProviderError};

/// A parsed URL (providers parse their endpoints once, at construction).
pub use reqwest::Url;

pub use call::{call, report_limits, secret_header, Dialect, HttpProviderConfig, KeyRing};
pub use ratelimit::{rate_limit_info, RateLimitInfo, MAX_WAIT, UNKNOWN_RESET};
pub use retry_after::retry_after;
pub use stream::{body_frames, decode_error, sse_frames, BodyDecoder, FrameDecoder, SseBody};

/// Timeouts for one upstream call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: Duration,
    /// From sending the request until the response headers arrive.
    pub first_byte: Duration,
    /// The longest silence between two chunks of a streamed body.
    pub idle: Duration,
    /// The whole call, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(90),
            total: Duration::from_secs(600),
        }
    }
}

/// The largest non-streamed upstream body read (responses, error bodies).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A pooled HTTP client for upstream calls.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
}

/// A response whose headers have arrived.
#[derive(Debug)]
pub struct Response {
    /// The upstream's response.
    pub inner: reqwest::Response,
    /// When the whole call must be over.
    pub deadline: Instant,
}

impl Upstream {
    /// A client with `connect` as its connection timeout.
    pub fn new(connect: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // An API endpoint that redirects is misconfigured; following it would send
            // the request (and, to the same host, the key) somewhere unintended.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Upstream { client })
    }

    /// POSTs `body` to `url`, waiting at most `first_byte` for the response headers.
    /// Failures to connect or to answer in time are classified; HTTP error statuses are
    /// returned as responses (the caller decodes the body in its dialect).
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Vec<u8>,
        t: &Timeouts,
    ) -> Result<Response, ProviderError> {
        let started = Instant::now();
        let deadline = started + t.total;
        let send = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send();
        let limit = t.first_byte.min(t.total);
        match tokio::time::timeout(limit, send).await {
            Err(_) => Err(ProviderError::new(
                ErrorKind::Timeout,
                format!(
                    "the upstream sent no response headers within {}",
                    human(limit)
                ),
            )),
            Ok(Err(e)) => Err(transport_error(&e)),
            Ok(Ok(inner)) => Ok(Response { inner, deadline }),
        }
    }
}

/// An endpoint's URL: `base_url` (scheme, host, optional path prefix) and the endpoint's
/// `path`, parsed once. The error never repeats the URL (it may carry credentials).
pub fn endpoint(base_url: &str, path: &str) -> Result<Url, String> {
    let url = Url::parse(&format!("{}{path}", base_url.trim_end_matches('/')))
        .map_err(|e| format!("base_url is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "base_url must be an http:// or https:// URL, not {other}://"
        )),
    }
}

/// Classifies a transport failure. The message is built from the error's causes, never
/// from reqwest's own Display, which includes the URL (and a URL may carry credentials).
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(
            ErrorKind::Timeout,
            format!("upstream timed out: {}", root_cause(e)),
        )
    } else if e.is_connect() {
        ProviderError::new(
            ErrorKind::Connect,
            format!("cannot connect to the upstream: {}", root_cause(e)),
        )
    } else {
        ProviderError::new(
            ErrorKind::Connect,
            format!("upstream connection failed: {}", root_cause(e)),
        )
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    let mut msg = String::from("request failed");
    while let Some(src) = cur.source() {
        msg = src.to_string();
        cur = src;
    }
    msg
}

/// Reads a whole (non-streamed) body, bounded by [`MAX_BODY_BYTES`] and the deadline.
pub async fn read_body(resp: &mut Response) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    loop {
        let left = resp.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.inner.chunk()).await {
            Err(_) => {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    "the upstream did not finish its response within the total timeout",
                ))
            }
            Ok(Err(e)) => return Err(transport_error(&e)),
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(chunk))) => {
                if out.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ProviderError::new(
                        ErrorKind::Decode,
                        format!("the upstream's response exceeds {MAX_BODY_BYTES} bytes"),
                    ));
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

/// Turns an error status and body into a [`ProviderError`], using the dialect's error
/// decoder and the response's headers for the wait: `retry-after-ms`, `retry-after`
/// (seconds or an HTTP date), else the reset of an exhausted rate limit (see
/// [`rate_limit_info`]).
pub fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    decode: impl Fn(u16, &[u8]) -> ApiError,
) -> ProviderError {
    let api = decode(status.as_u16(), body);
    let limits = rate_limit_info(headers, SystemTime::now());
    ProviderError::from_api(api, limits.retry_after)
}

/// Removes a secret from an error's messages (upstreams echo keys back in 401 bodies).
pub fn scrub(e: &mut ProviderError, secret: &str) {
    if secret.len() < 4 {
        return;
    }
    e.message = e.message.replace(secret, "***");
    if let Some(api) = &mut e.api_error {
        api.message = api.message.replace(secret, "***");
    }
}

fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
