//! The API endpoints: one function per endpoint, errors in the client's dialect.

// Helpers return a ready-made error response as their `Err`; it is built once per failed
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use weir_model::{ApiError, CallContext, ChatRequest, Dialect, ErrorKind, Reply, WireError};
use weir_router::RouteError;

use crate::app::App;
use crate::auth::ClientKey;
use crate::sse::{sse_response, StreamLog};

/// Response bodies: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What one request did, for its log line.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    pub request_id: String,
    pub key: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    /// The upstream's own id for the request, when it gave one.
    pub upstream_request_id: Option<String>,
    /// The request's body was read whole (an answer given before leaves the rest unread,
    /// and hyper then closes an HTTP/1.1 connection).
    pub body_read: std::sync::atomic::AtomicBool,
    pub started: Option<Instant>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The key's limiter slot and token reservation, released with the log.
    pub admission: Option<crate::limits::Admission>,
    /// The usage the upstream reported, for the cost.
    pub usage: Option<weir_model::Usage>,
    /// Prices, for the cost.
    pub prices: Option<Arc<crate::pricing::Prices>>,
    /// Served by the built-in mock, which costs nothing: no warning that its model has
    /// no price.
    pub by_mock: bool,
    /// Where the request's row goes.
    pub ledger: Option<weir_ledger::Writer>,
    /// How a stream that had answered 200 ended badly, for the ledger's error kind.
    pub stream_error: Option<weir_model::ErrorKind>,
    /// The request's input tokens as estimated from its body (a quarter of its bytes), for
    /// a stream cut before the upstream reported usage.
    pub input_estimate: u64,
    /// Set while the request is being answered: dropped then (its client went away before
    /// the answer), it is logged as a 499.
    pub armed: std::sync::atomic::AtomicBool,
    /// The shutdown cut: a request dropped once it has fired was ended by the gateway
    /// (its grace period was over), not by its client.
    pub cut: Option<Arc<crate::live::Cut>>,
    /// The request's metric series, once the upstream answered.
    pub series: Option<crate::metrics::SeriesHandle>,
    /// When a stream's serving attempt was sent: its upstream latency is taken at its
    /// first content.
    pub upstream_from: Option<Instant>,
    /// What the router did before the answer: read when the client leaves first.
    pub progress: weir_model::Progress,
    /// What the answer's `x-weir-warning` says (features dropped, an output limit
    /// lowered), for the log line.
    pub warning: Option<String>,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if *self.armed.get_mut() {
            if self.cut.as_ref().is_some_and(|c| c.fired()) {
                self.stream_error = Some(ErrorKind::Overloaded);
                self.emit(503, None, None, None);
            } else {
                self.stream_error = Some(ErrorKind::Cancelled);
                // The attempt in flight names the provider, and usage its upstream already
                // reported (a stream's opening event) is charged: it is billed. Without
                // any, the request's estimated input is: the upstream has the request and
                // bills what it read of it (a whole answer is generated, and billed, after
                // its client left; leaving early must not be a way around a budget).
                let mut input = None;
                if let Some(a) = self.progress.get() {
                    let sent = !a.provider.is_empty();
                    self.provider.get_or_insert(a.provider);
                    self.upstream_model.get_or_insert(a.model);
                    if let Some(u) = a.usage.filter(weir_model::Usage::reports_input) {
                        input = Some(u.total_input());
                        self.usage = Some(u);
                    } else if sent && self.input_estimate > 0 {
                        input = Some(self.input_estimate);
                        self.usage = Some(weir_model::Usage {
                            input_tokens: Some(self.input_estimate),
                            output_tokens: Some(0),
                            ..Default::default()
                        });
                    }
                }
                self.emit(ErrorKind::Cancelled.http_status(), None, input, None);
            }
        }
    }
}

impl RequestLog {
    /// The request's record, for a stream's log line to take with it; what the response's
    /// headers still need (the id for `x-request-id`, whether the body was read) stays.
    pub(crate) fn hand_over(&mut self) -> RequestLog {
        let taken = std::mem::take(self);
        self.request_id.clone_from(&taken.request_id);
        *self.body_read.get_mut() = taken.body_read.load(Ordering::Relaxed);
        taken
    }

    pub(crate) fn emit(
        &self,
        status: u16,
        ttft: Option<Duration>,
        input: Option<u64>,
        output: Option<u64>,
    ) {
        // Written once: a request abandoned after this is not logged again.
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let latency = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        // A count past belief (a broken or hostile upstream's) is neither charged, priced,
        // recorded nor counted: as if unreported, the request's estimate standing in for
        // its input (the sum of believed figures stays well under the bound below).
        let (mut input, mut output) = (input, output);
        let sane;
        let usage = match &self.usage {
            Some(u) if u.past_belief() => {
                tracing::warn!(request_id = %self.request_id, "the upstream reported a token count past belief (over 2^40); not counted");
                let mut s = u.believed();
                if s.total_input() == 0 {
                    s.input_tokens = Some(self.input_estimate);
                }
                input = Some(s.total_input());
                output = s.output_tokens;
                sane = s;
                Some(&sane)
            }
            u => u.as_ref(),
        };
        let bound = 4 * weir_model::Usage::MAX_TOKENS;
        let input = input.map(|n| if n > bound { self.input_estimate } else { n });
        let output = output.filter(|&n| n <= bound);
        if let Some(a) = &self.admission {
            a.charge(input.unwrap_or(0).saturating_add(output.unwrap_or(0)));
        }
        let cost = match (usage, &self.upstream_model, &self.prices) {
            (Some(u), Some(m), Some(p)) => p.cost(m, u),
            _ => None,
        };
        match (cost, &self.admission) {
            (Some(c), Some(a)) => a.spend(c),
            (None, Some(a)) if a.has_budget() && usage.is_some() && !self.by_mock => {
                if let Some(m) = &self.upstream_model {
                    if crate::pricing::first_unpriced(m) {
                        // (A glob route forwards the name a client chose.)
                        let m = weir_model::log_safe(m);
                        tracing::warn!(
                            "model `{m}` has no price: what it costs is not counted against daily_budget_usd (add [pricing.\"{m}\"])"
                        );
                    }
                }
            }
            _ => {}
        }
        // How a stream ended badly after its 200 (or a request was abandoned), else what
        // its error status says.
        let error_kind = self
            .stream_error
            .or_else(|| match status {
                // The gateway's own status for a request its client abandoned.
                499 => Some(ErrorKind::Cancelled),
                s if s >= 400 => Some(ErrorKind::from_status(s)),
                _ => None,
            })
            .map(|k| format!("{k:?}"));
        if let Some(w) = &self.ledger {
            let u = usage.cloned().unwrap_or_default();
            let count = |n: Option<u64>| i64::try_from(n.unwrap_or(0)).unwrap_or(i64::MAX);
            let started_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
                - latency.as_millis() as i64;
            w.record(weir_ledger::Row {
                unix_ms: started_ms,
                request_id: self.request_id.clone(),
                key: self.key.clone().unwrap_or_else(|| "-".into()),
                model: self.model.clone().unwrap_or_else(|| "-".into()),
                provider: self.provider.clone().unwrap_or_else(|| "-".into()),
                upstream_model: self.upstream_model.clone().unwrap_or_else(|| "-".into()),
                status,
                error_kind: error_kind.clone(),
                latency_ms: latency.as_secs_f64() * 1000.0,
                ttft_ms: ttft.map(|t| t.as_secs_f64() * 1000.0),
                // (An upstream's absurd count is kept at the column's largest value.)
                input_tokens: count(u.input_tokens),
                output_tokens: count(u.output_tokens),
                cache_read_tokens: count(u.cache_read_tokens),
                cache_write_tokens: count(u.cache_write_tokens),
                cost_usd: cost,
            });
        }
        if let (Some(c), Some(m)) = (cost, &self.metrics) {
            m.cost(
                self.key.as_deref().unwrap_or("-"),
                self.model.as_deref().unwrap_or("-"),
                self.provider.as_deref().unwrap_or("-"),
                c,
            );
        }
        if let Some(m) = &self.metrics {
            m.observe(&crate::metrics::Observation {
                series: self.series.as_ref(),
                key: self.key.as_deref().unwrap_or("-"),
                model: self.model.as_deref().unwrap_or("-"),
                provider: self.provider.as_deref().unwrap_or("-"),
                status,
                latency,
                ttft,
                input,
                output,
            });
        }
        let latency_ms = (latency.as_secs_f64() * 10_000.0).round() / 10.0;
        // `ttft_ms` is there only for streams that sent something (no sentinel value to
        // skew a log pipeline's averages).
        let ttft_ms = ttft.map(|t| (t.as_secs_f64() * 10_000.0).round() / 10.0);
        if crate::log::json() {
            if tracing::enabled!(target: "weir::request", tracing::Level::INFO) {
                crate::log::request_line(&crate::log::RequestLine {
                    request_id: &self.request_id,
                    key: self.key.as_deref().unwrap_or("-"),
                    model: self.model.as_deref().unwrap_or("-"),
                    provider: self.provider.as_deref().unwrap_or("-"),
                    upstream_model: self.upstream_model.as_deref().unwrap_or("-"),
                    upstream_request_id: self.upstream_request_id.as_deref().unwrap_or("-"),
                    status,
                    error_kind: error_kind.as_deref(),
                    warning: self.warning.as_deref(),
                    latency_ms,
                    ttft_ms,
                    input_tokens: input.unwrap_or(0),
                    output_tokens: output.unwrap_or(0),
                });
            }
            return;
        }
        macro_rules! request_line {
            ($($ttft:tt)*) => {
                tracing::info!(
                    target: "weir::request",
                    request_id = %self.request_id,
                    key = self.key.as_deref().unwrap_or("-"),
                    model = self.model.as_deref().unwrap_or("-"),
                    provider = self.provider.as_deref().unwrap_or("-"),
                    upstream_model = self.upstream_model.as_deref().unwrap_or("-"),
                    upstream_request_id = self.upstream_request_id.as_deref().unwrap_or("-"),
                    status,
                    error_kind = error_kind.as_deref(),
                    warning = self.warning.as_deref(),
                    latency_ms,
                    $($ttft)*
                    input_tokens = input.unwrap_or(0),
                    output_tokens = output.unwrap_or(0),
                    "request"
                )
            };
        }
        match ttft_ms {
            Some(t) => request_line!(ttft_ms = t,),
            None => request_line!(),
        }
    }
}

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    // Room for the headers every answer gets (request ids, provider, model...).
    r.headers_mut().reserve(8);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Anthropic's name for it.
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_WEIR_PROVIDER: HeaderName = HeaderName::from_static("x-weir-provider");
/// The upstream's own id for the request (for the provider's support, and its logs).
const X_WEIR_UPSTREAM_REQUEST_ID: HeaderName =
    HeaderName::from_static("x-weir-upstream-request-id");
const X_WEIR_MODEL: HeaderName = HeaderName::from_static("x-weir-model");
const X_WEIR_WARNING: HeaderName = HeaderName::from_static("x-weir-warning");

fn set_header(r: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// An error in the client's dialect, with `x-request-id` and (for 429) `retry-after`.
pub(crate) fn error_response(
    dialect: Dialect,
    e: &ApiError,
    request_id: &str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let (status, body) = match dialect {
        Dialect::Anthropic => weir_anthropic::encode_error(e, Some(request_id)),
        Dialect::OpenAi => weir_openai::encode_error(e),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = full(status, "application/json", body);
    // Not registered statuses: hyper would write `529 <none>`.
    let reason: Option<&'static [u8]> = match status.as_u16() {
        529 => Some(b"Overloaded"),
        499 => Some(b"Client Closed Request"),
        _ => None,
    };
    if let Some(reason) = reason {
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(reason));
    }
    set_header(&mut r, X_REQUEST_ID, request_id);
    if status == StatusCode::TOO_MANY_REQUESTS || retry_after.is_some() {
        let secs = retry_after
            .map_or(1, |d| d.as_secs_f64().ceil() as u64)
            .max(1);
        set_header(&mut r, http::header::RETRY_AFTER, &secs.to_string());
    }
    r
}

fn simple_error(
    dialect: Dialect,
    kind: ErrorKind,
    message: impl Into<String>,
    log: &RequestLog,
) -> Response<Body> {
    gateway_error(dialect, &ApiError::new(kind, message), log)
}

/// The answer to a model the key may not use: 404 (listing what it may use) when no route
/// serves it either, since a misspelt name is no permission problem; else 403.
fn refused_model(
    app: &App,
    dialect: Dialect,
    key: &ClientKey,
    model: &str,
    log: &RequestLog,
) -> Response<Body> {
    if app.router.resolve(model).is_none() {
        let available: Vec<String> = app.router.routes().map(|r| r.name.clone()).collect();
        return unknown_model(dialect, key, model, &available, log);
    }
    simple_error(
        dialect,
        ErrorKind::PermissionDenied,
        format!("the key `{}` may not use model `{model}`", key.name),
        log,
    )
}

/// 404 for a model no route matches, listing the models the key may use.
fn unknown_model(
    dialect: Dialect,
    key: &ClientKey,
    model: &str,
    available: &[String],
    log: &RequestLog,
) -> Response<Body> {
    let allowed: Vec<&str> = available
        .iter()
        .map(String::as_str)
        .filter(|m| {
            key.models
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| weir_router::glob_match(g, m) || g == m))
        })
        .collect();
    let e = ApiError {
        code: Some("model_not_found".to_owned()),
        ..ApiError::new(
            ErrorKind::NotFound,
            format!(
                "model `{model}` is not available; available: {}",
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(", ")
                }
            ),
        )
    };
    gateway_error(dialect, &e, log)
}

/// An error the gateway itself answers with, logged.
fn gateway_error(dialect: Dialect, e: &ApiError, log: &RequestLog) -> Response<Body> {
    let r = error_response(dialect, e, &log.request_id, None);
    log.emit(r.status().as_u16(), None, None, None);
    r
}

/// 405 with `allow`, in the client's dialect (an invalid request, by its type).
fn method_not_allowed(
    dialect: Dialect,
    method: &Method,
    path: &str,
    allow: &'static str,
    log: &RequestLog,
) -> Response<Body> {
    let mut e = ApiError::new(
        ErrorKind::InvalidRequest,
        format!("method {method} is not allowed on {path}; use {allow}"),
    );
    e.status = StatusCode::METHOD_NOT_ALLOWED.as_u16();
    let mut r = gateway_error(dialect, &e, log);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A new request id: 16 random bytes, hex.
pub(crate) fn request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = rand::random();
    let mut id = *b"req_00000000000000000000000000000000";
    for (i, b) in id[4..].iter_mut().enumerate() {
        *b = HEX[((v >> ((31 - i) * 4)) & 0xf) as usize];
    }
    // ASCII by construction, so never the empty fallback.
    std::str::from_utf8(&id).unwrap_or_default().to_owned()
}

/// The endpoint a path missing its `/v1` would name (`/chat/completions`, `/messages`...).
fn without_v1(path: &str) -> Option<&'static str> {
    const ENDPOINTS: [&str; 6] = [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/models",
    ];
    ENDPOINTS.into_iter().find(|e| e["/v1".len()..] == *path)
}

/// The dialect of an answer to a request for no endpoint: Anthropic's for an Anthropic
/// client (its path, or the `anthropic-version` header its SDKs always send), else
/// OpenAI's.
fn guess(req: &Request<Incoming>, by_path: Dialect) -> Dialect {
    if req.headers().contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        by_path
    }
}

/// Browser origins allowed to call the API (`server.cors_origins`).
#[derive(Clone, Debug)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

/// Headers a browser app may read from an answer.
const CORS_EXPOSED: &str = "x-request-id, request-id, x-weir-provider, x-weir-model, \
    x-weir-upstream-request-id, x-weir-warning, retry-after, x-should-retry";

impl Cors {
    /// From the config's list; `None` when it is empty.
    pub fn new(origins: &[String]) -> Option<Cors> {
        (!origins.is_empty()).then(|| Cors {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        })
    }

    /// Why an entry is not an origin (`scheme://host[:port]`, or `*`).
    pub fn check_origin(o: &str) -> Result<(), &'static str> {
        if o == "*" {
            return Ok(());
        }
        let Some((scheme, rest)) = o.split_once("://") else {
            return Err("is not an origin: scheme://host[:port], or *");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if !matches!(scheme, "http" | "https") {
            return Err("is not an origin: the scheme is http or https");
        }
        if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
            return Err("is not an origin: scheme://host[:port], without a path (or *)");
        }
        Ok(())
    }

    /// The request's `Origin` when it is allowed.
    fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(http::header::ORIGIN)?;
        let o = origin.to_str().ok()?;
        (self.any || self.origins.iter().any(|a| a.eq_ignore_ascii_case(o))).then(|| origin.clone())
    }
}

/// The answer to a browser's preflight from an allowed origin: any method of the API's
/// and the headers it asks for (keys and versions), for ten minutes.
fn preflight(req: &Request<Incoming>) -> Response<Body> {
    use http::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_MAX_AGE,
        ACCESS_CONTROL_REQUEST_HEADERS,
    };
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// Routes a request to its endpoint.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // Sent by other Weir gateways: their entries go on with this one's, so a loop through
    // several comes back to one of them.
    if let Some(before) = weir_upstream::gateway_vias(req.headers()) {
        return weir_upstream::INCOMING_VIA
            .scope(before, handle_here(app, req))
            .await;
    }
    handle_here(app, req).await
}

async fn handle_here(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let Some(cors) = app.cors.as_ref() else {
        return route(app, req, false).await;
    };
    let origin = cors.allowed(req.headers());
    let mut r = route(app, req, origin.is_some()).await?;
    let h = r.headers_mut();
    if let Some(origin) = origin {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSED),
        );
    }
    // Every answer depends on the origin (the allowed one is echoed), also one that
    // names none.
    h.append(http::header::VARY, HeaderValue::from_static("origin"));
    Ok(r)
}

async fn route(
    app: Arc<App>,
    req: Request<Incoming>,
    cors: bool,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let mut log = RequestLog::default();
    log.request_id = request_id();
    log.started = Some(Instant::now());
    log.metrics = Some(app.metrics.clone());
    log.prices = Some(app.prices.clone());
    log.ledger.clone_from(&app.ledger);
    log.cut = app.cut.get().cloned();
    let dialect = if path.starts_with("/v1/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    // Until answered: a client that leaves before then drops this future, and `log` with
    // it, which logs the request as abandoned (499).
    log.armed = true.into();
    // An HTTP/1.1 request with a body that is answered before its body was read whole (a
    // refused key, no such endpoint, too large): hyper closes the connection after the
    // answer, which must then say so, or a client's pool sends its next request into the
    // closing socket.
    let unread_closes = req.version() < http::Version::HTTP_2
        && (req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(http::header::TRANSFER_ENCODING));
    let r = match (&method, path.as_str()) {
        // A provider's base_url names this gateway: forwarding it again would loop until
        // connections ran out.
        (_, _) if weir_upstream::came_back(req.headers()) => {
            // (A server error to the gateway that sent it: it tries its next target.)
            let mut e = ApiError::new(
                ErrorKind::Upstream,
                "this request came back to the gateway that sent it upstream: a provider's \
                 base_url points at the gateway itself",
            );
            e.status = 508;
            tracing::error!(request_id = %log.request_id, "a request came back to this gateway: a provider's base_url points at it");
            gateway_error(guess(&req, dialect), &e, &log)
        }
        (&Method::OPTIONS, _)
            if cors
                && req
                    .headers()
                    .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD) =>
        {
            let r = preflight(&req);
            log.emit(204, None, None, None);
            r
        }
        (&Method::GET | &Method::HEAD, "/health") => {
            full(StatusCode::OK, "application/json", r#"{"status":"ok"}"#)
        }
        (&Method::POST, "/v1/messages") => chat(&app, req, Dialect::Anthropic, &mut log).await,
        (&Method::POST, "/v1/chat/completions") => chat(&app, req, Dialect::OpenAi, &mut log).await,
        (&Method::POST, "/v1/messages/count_tokens") => count_tokens(&app, req, &mut log).await,
        (&Method::GET | &Method::HEAD, "/v1/models") => models(&app, &req, None, &mut log).await,
        (&Method::GET | &Method::HEAD, p)
            if p.len() > "/v1/models/".len() && p.starts_with("/v1/models/") =>
        {
            models(&app, &req, Some(&p["/v1/models/".len()..]), &mut log).await
        }
        (&Method::POST, "/v1/embeddings") => embeddings(&app, req, &mut log).await,
        (&Method::POST, "/v1/responses") => responses(&app, req, &mut log).await,
        (_, "/health") => {
            method_not_allowed(guess(&req, dialect), &method, &path, "GET, HEAD", &log)
        }
        (m, p)
            if *m != Method::GET
                && *m != Method::HEAD
                && (p == "/v1/models" || p.starts_with("/v1/models/")) =>
        {
            method_not_allowed(guess(&req, dialect), &method, &path, "GET, HEAD", &log)
        }
        (
            _,
            "/v1/messages"
            | "/v1/chat/completions"
            | "/v1/messages/count_tokens"
            | "/v1/responses"
            | "/v1/embeddings",
        ) => method_not_allowed(guess(&req, dialect), &method, &path, "POST", &log),
        _ => simple_error(
            guess(&req, dialect),
            ErrorKind::NotFound,
            match without_v1(&path) {
                // A base URL set without `/v1` (the Anthropic SDK's has none; the OpenAI
                // SDK's and the AI SDK's need it): said what to change.
                Some(known) => format!(
                    "no endpoint {method} {path} (did you mean {known}? the base URL needs to end in /v1)"
                ),
                None => format!("no endpoint {method} {path}"),
            },
            &log,
        ),
    };
    *log.armed.get_mut() = false;
    let mut r = r;
    if method == Method::HEAD {
        // The headers a GET would have, without its body: over HTTP/2 a HEAD answer with
        // a body is a protocol error to the client (HTTP/1 leaves it out by itself).
        let (mut parts, _) = r.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        r = Response::from_parts(parts, Full::new(Bytes::new()).boxed_unsync());
    }
    if !r.headers().contains_key(&X_REQUEST_ID) {
        set_header(&mut r, X_REQUEST_ID, &log.request_id);
    }
    // Anthropic's SDKs read the id as `request-id` (`_request_id`, `APIError.requestID`),
    // as the API names it: the same id, which the log line and error bodies carry.
    if dialect == Dialect::Anthropic {
        set_header(&mut r, REQUEST_ID, &log.request_id);
    }
    if unread_closes && !*log.body_read.get_mut() {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(r)
}

fn authenticate<'a>(
    app: &'a App,
    headers: &HeaderMap,
    dialect: Dialect,
    log: &mut RequestLog,
) -> Result<&'a ClientKey, Response<Body>> {
    match app.keys.verify(headers) {
        Some(k) => {
            log.key = Some(k.name.clone());
            Ok(k)
        }
        None => {
            let msg = if crate::auth::presented_key(headers).is_some() {
                "invalid API key"
            } else {
                "missing API key: send it as `x-api-key: <key>` or `Authorization: Bearer <key>`"
            };
            Err(simple_error(dialect, ErrorKind::Authentication, msg, log))
        }
    }
}

/// The bytes of request bodies the process holds now (`server.max_buffered_bytes` bounds
/// them: a request body is held, decoded and encoded again while its upstream call is
/// made, and many large ones at once could take all memory).
#[derive(Debug, Default)]
pub struct Buffered(AtomicUsize);

impl Buffered {
    /// The bytes held now.
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body's share of [`Buffered`], given back when dropped (once its request has
/// been answered, or its stream has begun).
pub(crate) struct Charge {
    of: Arc<Buffered>,
    bytes: usize,
}

impl Charge {
    fn new(of: &Arc<Buffered>) -> Charge {
        Charge {
            of: of.clone(),
            bytes: 0,
        }
    }

    /// Holds `more` bytes, unless all bodies together would then pass `limit`.
    fn hold(&mut self, more: usize, limit: usize) -> bool {
        let held = self
            .of
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(more).filter(|&n| n <= limit)
            })
            .is_ok();
        if held {
            self.bytes += more;
        }
        held
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.of.0.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Whether a request body's read failed because the client went away (its connection
/// closed or reset before the body's end).
fn client_left(e: &hyper::Error) -> bool {
    use std::io::ErrorKind as Io;
    e.is_incomplete_message()
        || e.is_canceled()
        || matches!(
            weir_upstream::io_error_kind(e),
            Some(Io::UnexpectedEof | Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe)
        )
        || h2_peer_ended(e)
}

/// HTTP/2: the client reset the stream, or its connection went away (not an error of
/// the gateway's own protocol handling).
fn h2_peer_ended(e: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            // (A GOAWAY the client sent is remote; the gateway's own is its own error.)
            return h2.is_remote() || h2.is_io();
        }
        cur = c.source();
    }
    false
}

/// Reads the body, refusing one larger than the limit before reading it whole, or one
/// that would take the bodies held at once past `server.max_buffered_bytes` (503). The
/// charge holds the body's bytes against that bound until dropped.
///
/// A refusal leaves the rest of the body unread (see [`handle`] for what that does to the
/// connection).
async fn read_body(
    app: &App,
    req: Request<Incoming>,
    dialect: Dialect,
    log: &RequestLog,
) -> Result<(HeaderMap, Bytes, Charge), Response<Body>> {
    let limit = app.max_request_bytes;
    let too_large = || {
        simple_error(
            dialect,
            ErrorKind::RequestTooLarge,
            format!("request body exceeds the gateway's limit of {limit} bytes"),
            log,
        )
    };
    let overloaded = || {
        let e = ApiError::new(
            ErrorKind::Overloaded,
            "the gateway holds too many request bodies at once (server.max_buffered_bytes); \
             retry shortly",
        );
        let r = error_response(dialect, &e, &log.request_id, Some(Duration::from_secs(1)));
        log.emit(r.status().as_u16(), None, None, None);
        r
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Bytes are held as they arrive, not as declared: clients that declare large bodies
    // and send them slowly (or never) hold what they sent, not the gateway's whole bound.
    let mut charge = Charge::new(&app.buffered);
    // A compressed body would otherwise be read as bytes that are not JSON (or, for `br`,
    // not UTF-8): say what is wrong instead. (hyper takes `Transfer-Encoding: gzip,
    // chunked` as chunked, and hands over the still compressed bytes.)
    for (header, plain) in [
        (http::header::CONTENT_ENCODING, "identity"),
        (http::header::TRANSFER_ENCODING, "chunked"),
    ] {
        if let Some(coding) = req
            .headers()
            .get_all(&header)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .find(|c| !c.eq_ignore_ascii_case(plain.as_bytes()))
        {
            let name: String = String::from_utf8_lossy(coding).chars().take(32).collect();
            return Err(simple_error(
                dialect,
                ErrorKind::InvalidRequest,
                format!(
                    "request bodies with {header} `{}` are not supported: send the JSON \
                     uncompressed",
                    weir_model::log_safe(&name)
                ),
                log,
            ));
        }
    }
    let (parts, mut body) = req.into_parts();
    // Read by hand rather than through `Collected`: a body that arrives as one data frame
    // (nearly every request) is kept as that frame's bytes, without a copy.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        // The frame is nearly always there already: it is taken without a timer (a poll
        // that finds nothing loses nothing); only a body still on its way gets one.
        let ready = hyper::body::Body::poll_frame(
            Pin::new(&mut body),
            &mut Context::from_waker(Waker::noop()),
        );
        let mut over_total = false;
        let next = match ready {
            Poll::Ready(frame) => Ok(frame),
            Poll::Pending => {
                let deadline = log.started.unwrap_or_else(Instant::now) + app.body_total_timeout;
                let left = deadline.saturating_duration_since(Instant::now());
                over_total = left < app.body_idle_timeout;
                tokio::time::timeout(app.body_idle_timeout.min(left), body.frame()).await
            }
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                let mut e = ApiError::new(
                    ErrorKind::InvalidRequest,
                    if over_total {
                        format!(
                            "the request body took too long: it did not arrive whole within {:?}",
                            app.body_total_timeout
                        )
                    } else {
                        format!(
                            "the request body stalled: nothing arrived for {:?}",
                            app.body_idle_timeout
                        )
                    },
                );
                e.status = 408;
                return Err(gateway_error(dialect, &e, log));
            }
        };
        let frame = frame.map_err(|e| {
            if client_left(&e) {
                // The client left with its body half sent: no bad request, an abandoned
                // one (499), as a client leaving before its answer.
                let e = ApiError::new(
                    ErrorKind::Cancelled,
                    "the client closed its connection before its request body arrived whole",
                );
                return gateway_error(dialect, &e, log);
            }
            simple_error(
                dialect,
                ErrorKind::InvalidRequest,
                format!("cannot read the request body: {e}"),
                log,
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(too_large());
        }
        if total > charge.bytes && !charge.hold(total - charge.bytes, app.max_buffered_bytes) {
            return Err(overloaded());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(f) => {
                // (The declared length, if the body has come that far: a declared length
                // is no reason to hold memory for bytes that may never come.)
                let declared = declared.map_or(0, |n| n as usize);
                joined.reserve(if declared <= total.saturating_mul(4) {
                    declared
                } else {
                    total
                });
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
        }
    }
    log.body_read.store(true, Ordering::Relaxed);
    Ok((
        parts.headers,
        first.unwrap_or_else(|| Bytes::from(joined)),
        charge,
    ))
}

/// The top-level field a decoding error names (``invalid request body: `max_tokens`: ...``),
/// for OpenAI's `param`.
fn named_param(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid request body: `")?;
    let (field, after) = rest.split_once('`')?;
    (after.starts_with(':') && !field.is_empty()).then(|| field.to_owned())
}

fn decode(dialect: Dialect, body: &[u8]) -> Result<ChatRequest, WireError> {
    let r = match dialect {
        Dialect::Anthropic => weir_anthropic::decode_request(body),
        Dialect::OpenAi => weir_openai::decode_request(body),
    }?;
    // An unreadable `data:` URL is refused alike for every target and dialect (no
    // upstream takes one as a URL).
    r.check_data_urls()?;
    Ok(r)
}

/// A whole answer's usage when the upstream reported none (some OpenAI-compatible
/// servers): an estimate, as a stream cut before its usage is charged (a quarter of the
/// request's bytes, `input_estimate`, and of what the answer says: `answer_len`), so
/// limits, budgets and the ledger still see it.
fn estimate_unreported(usage: &mut weir_model::Usage, input_estimate: u64, answer_len: usize) {
    if usage.unreported() {
        usage.input_tokens = Some(input_estimate);
        usage.output_tokens = Some((answer_len as u64).div_ceil(4));
    } else if !usage.reports_input() {
        usage.input_tokens = Some(input_estimate);
    }
}

/// Bytes of what a whole answer says (see [`said_len`]). A same-dialect answer passed on
/// verbatim was read for its usage only: without usage, it is read whole here (rare:
/// servers that report none).
fn said_in(resp: &weir_model::ChatResponse) -> usize {
    match (&resp.raw, resp.origin) {
        (Some(raw), Some(origin)) if resp.content.is_empty() => {
            let whole = match origin {
                Dialect::Anthropic => weir_anthropic::decode_response(raw),
                Dialect::OpenAi => weir_openai::decode_response(raw),
            };
            whole.map_or(raw.len(), |r| said_len(&r.content))
        }
        _ => said_len(&resp.content),
    }
}

/// Bytes of what a whole Responses API answer says (`output`: messages' text and refusals,
/// reasoning summaries and text, function calls' names and arguments), as [`said_len`]
/// counts a chat answer's; its whole body if it cannot be read so.
fn responses_said(body: &[u8]) -> usize {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        output: Vec<Item<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Item<'a> {
        #[serde(borrow, default)]
        content: Vec<Part<'a>>,
        #[serde(borrow, default)]
        summary: Vec<Part<'a>>,
        #[serde(borrow)]
        name: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        arguments: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Part<'a> {
        #[serde(borrow)]
        text: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        refusal: Option<std::borrow::Cow<'a, str>>,
    }
    let len = |s: &Option<std::borrow::Cow<'_, str>>| s.as_ref().map_or(0, |s| s.len());
    match serde_json::from_slice::<Answer<'_>>(body) {
        Ok(a) => a
            .output
            .iter()
            .map(|i| {
                len(&i.name)
                    + len(&i.arguments)
                    + i.content
                        .iter()
                        .chain(&i.summary)
                        .map(|p| len(&p.text) + len(&p.refusal))
                        .sum::<usize>()
            })
            .sum(),
        Err(_) => body.len(),
    }
}

/// Bytes of what a whole answer says (text, reasoning, tool calls' names and arguments,
/// blocks kept verbatim), as a stream's are counted: its JSON envelope (ids, roles,
/// `finish_reason`) is not output the model wrote.
fn said_len(content: &[weir_model::ContentBlock]) -> usize {
    use weir_model::{ContentBlock as B, ToolInput};
    content
        .iter()
        .map(|b| match b {
            B::Text(t) => t.text.as_str().len(),
            B::Thinking(t) => t.thinking.as_str().len(),
            B::RedactedThinking(t) => t.data.len(),
            B::ToolUse(t) => {
                t.name.len()
                    + match &t.input {
                        ToolInput::Json(j) => j.get().len(),
                        ToolInput::Arguments(a) => a.len(),
                    }
            }
            B::Unknown(u) => u.raw.get().len(),
            B::Image(_) | B::Document(_) | B::ToolResult(_) => 0,
        })
        .sum()
}

/// `call`'s outcome, or `None` if the shutdown grace period ended first (the caller then
/// drops the call, which cancels it upstream). The call is pinned where the caller made
/// it (a routed call's future is large: moving it into a `select!` cost a copy of it).
async fn unless_cut<F: Future>(app: &App, mut call: Pin<&mut F>) -> Option<F::Output> {
    let Some(cut) = app.cut.get() else {
        return Some(call.await);
    };
    let notified = cut.notified();
    tokio::pin!(notified);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if cut.fired() || notified.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The answer to a request still waiting on its upstream when the shutdown grace period
/// ends: the dialect's overloaded error with `retry-after`, as cut streams end with, so an
/// SDK retries (elsewhere) rather than seeing an empty reply.
fn shutting_down(dialect: Dialect, log: &RequestLog) -> Response<Body> {
    let e = ApiError::new(
        ErrorKind::Overloaded,
        "the gateway is shutting down and its grace period is over; retry",
    );
    let r = error_response(dialect, &e, &log.request_id, Some(Duration::from_secs(1)));
    log.emit(r.status().as_u16(), None, None, None);
    r
}

/// Client headers forwarded upstream: `anthropic-*` and `openai-beta` only; never
/// credentials, cookies or hop-by-hop headers.
fn forward_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("anthropic-") || n == "openai-beta" {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The client's session, for stickiness: the headers' (see [`header_session`]), else the
/// end user (`metadata.user_id`, OpenAI's `user` or
/// `safety_identifier`). (Not `prompt_cache_key`: an application may send one for every
/// user, which would hold all its requests on one target.)
fn session(headers: &HeaderMap, req: &ChatRequest) -> Option<String> {
    header_session(headers).or_else(|| req.end_user().map(str::to_owned))
}

/// The session the headers name: `x-weir-session`, else a coding agent's own
/// (`x-claude-code-session-id` from Claude Code, `x-session-affinity` from opencode, which
/// sends it for gateways, `session-id` from Codex, `session_id` from its earlier versions,
/// `x-session-id`).
fn header_session(headers: &HeaderMap) -> Option<String> {
    // (One pass over the request's few headers, comparing names, costs a fraction of
    // hashing six names into the map's lookups, on every request.)
    const NAMES: [&str; 6] = [
        "x-weir-session",
        "x-claude-code-session-id",
        "x-session-affinity",
        "session-id",
        "session_id",
        "x-session-id",
    ];
    let mut best: Option<(usize, &str)> = None;
    for (name, value) in headers {
        let n = name.as_str();
        if !(n.starts_with("x-") || n.starts_with("session")) {
            continue;
        }
        let Some(rank) = NAMES.iter().position(|c| *c == n) else {
            continue;
        };
        if best.is_some_and(|(r, _)| r <= rank) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            best = Some((rank, v));
        }
    }
    best.map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Admits a request under its key's limits and budget (the admission rides in `log`,
/// which charges the real usage when it is written), or answers 429 (503 when the shared
/// state cannot be reached).
/// How long a `max_concurrent` refusal waits for a slot on its way back before it is
/// asked again (memory backend; the shared one waits for its queued releases).
const CONCURRENCY_GRACE: Duration = Duration::from_millis(5);

/// The 404 for a model no route serves, checked before a limited key's limits are: such
/// a request costs the client nothing and is counted as unknown (`model="-"`), never as
/// its own series. (Without limits, routing answers the same 404 itself.)
fn unroutable(
    app: &App,
    key: &ClientKey,
    model: &str,
    dialect: Dialect,
    log: &RequestLog,
) -> Option<Response<Body>> {
    key.limiter.as_ref()?;
    match app.router.known(model) {
        Err(RouteError::UnknownModel { model, available }) => {
            Some(unknown_model(dialect, key, &model, &available, log))
        }
        _ => None,
    }
}

async fn admit(
    app: &App,
    key: &ClientKey,
    estimate: u64,
    dialect: Dialect,
    log: &mut RequestLog,
) -> Result<(), Response<Body>> {
    let Some(limiter) = &key.limiter else {
        return Ok(());
    };
    // The request's input tokens by estimate; the real usage is charged after.
    let admitted = match &app.state {
        // Renewed while the request runs: it outlives it by 30 s if this instance dies.
        Some(state) => {
            limiter
                .admit_shared(state, &key.name, estimate, weir_redis::LEASE_TTL)
                .await
        }
        None => match limiter.admit(estimate, Instant::now()) {
            // A slot may be on its way back: a request whose client just left is let go
            // when its connection's task next runs, and the client's next request can
            // come first. A moment for it, then asked again once.
            Err(r) if r.limit == "max_concurrent" => {
                tokio::time::sleep(CONCURRENCY_GRACE).await;
                limiter.admit(estimate, Instant::now()).map_err(|_| r)
            }
            other => other,
        },
    };
    match admitted {
        Ok(a) => {
            log.admission = Some(a);
            Ok(())
        }
        Err(r) => {
            app.metrics.limit_rejected(&key.name, r.limit);
            let kind = if r.unavailable {
                ErrorKind::Overloaded
            } else {
                ErrorKind::RateLimited
            };
            let spent = r.limit == "budget";
            let mut e = ApiError::new(kind, r.message);
            if spent {
                // OpenAI's code for a spent quota, which tools do not retry; OpenAI
                // clients get its type too (as OpenAI sends it).
                e.code = Some("insufficient_quota".into());
                if dialect == Dialect::OpenAi {
                    e.dialect = Some(Dialect::OpenAi);
                    e.error_type = Some("insufficient_quota".into());
                }
            }
            let mut resp = error_response(dialect, &e, &log.request_id, Some(r.retry_after));
            if spent {
                // The budget comes back at midnight UTC: the official SDKs would sleep
                // until then (Anthropic's obeys any retry-after) and retry, holding their
                // caller for hours. `x-should-retry: false` tells them not to.
                resp.headers_mut().insert(
                    HeaderName::from_static("x-should-retry"),
                    HeaderValue::from_static("false"),
                );
            }
            log.emit(resp.status().as_u16(), None, None, None);
            Err(resp)
        }
    }
}

async fn chat(
    app: &App,
    req: Request<Incoming>,
    dialect: Dialect,
    log: &mut RequestLog,
) -> Response<Body> {
    let key = match authenticate(app, req.headers(), dialect, log) {
        Ok(k) => k.clone(),
        Err(r) => return r,
    };
    // The body's bytes stay held until the upstream has answered (this function returns).
    let (headers, body, _charge) = match read_body(app, req, dialect, log).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    log.input_estimate = (body.len() as u64).div_ceil(4);
    let mut creq = match decode(dialect, &body) {
        Ok(r) => r,
        Err(e) => {
            // The message may quote request values, so only at debug level.
            tracing::debug!(request_id = %log.request_id, "undecodable request: {e}");
            let message = e.to_string();
            let mut err = ApiError::new(ErrorKind::InvalidRequest, message);
            err.param = named_param(&err.message);
            return gateway_error(dialect, &err, log);
        }
    };
    log.input_estimate = creq.estimate_input_tokens(body.len());
    log.model = Some(creq.model.clone());
    if !app.allows(&key, &creq.model) {
        return refused_model(app, dialect, &key, &creq.model, log);
    }
    if let Some(r) = unroutable(app, &key, &creq.model, dialect, log) {
        return r;
    }
    if let Err(r) = admit(app, &key, log.input_estimate, dialect, log).await {
        return r;
    }
    // Usage is what the gateway accounts by; ask OpenAI-dialect streams for it, and keep
    // the extra chunk from clients that did not ask.
    let client_usage = creq.include_usage == Some(true);
    if dialect == Dialect::OpenAi && creq.is_stream() && !client_usage {
        creq.include_usage = Some(true);
    }
    let stream = creq.is_stream();
    let thread = creq.thread().is_some();
    let mut cx = CallContext::new(log.request_id.clone());
    cx.forward_headers = forward_headers(&headers);
    cx.session = session(&headers, &creq);
    cx.client_dialect = Some(dialect);
    cx.deadline = log.started.map(|s| s + app.total_timeout);
    cx.progress = weir_model::Progress::watched();
    log.progress = cx.progress.clone();
    let model_name = creq.model.clone();
    let call = app.router.send(creq, cx);
    tokio::pin!(call);
    let Some(routed) = unless_cut(app, call).await else {
        return shutting_down(dialect, log);
    };
    if let Ok((reply, served)) = &routed {
        upstream_timed(
            app,
            &key,
            &model_name,
            served,
            matches!(reply, Reply::Stream(_)),
            log,
        );
    }
    match routed {
        Err(RouteError::UnknownModel { model, available }) => {
            unknown_model(dialect, &key, &model, &available, log)
        }
        Err(RouteError::Failed { last, attempts }) => route_failed(dialect, &last, &attempts, log),
        Ok((reply, served)) => {
            if log.admission.as_ref().is_some_and(|a| a.has_budget()) {
                log.by_mock = app
                    .provider_kinds
                    .iter()
                    .any(|(id, kind)| *id == served.provider && kind == "mock");
            }
            log.provider = Some(served.provider.clone());
            log.upstream_model = Some(served.model.clone());
            log.upstream_request_id
                .clone_from(&served.upstream_request_id);
            if !served.warnings.is_empty() {
                log.warning = Some(served.warnings.join("; "));
            }
            let warning = log.warning.clone();
            // A message thread is held by the account that answered: a request continuing
            // it from this answer goes there.
            let memory = thread.then(|| app.router.response_memory(&served));
            let mut r = match reply {
                Reply::Complete(mut resp) => {
                    if let Some(m) = &memory {
                        m.remember(&resp.id);
                    }
                    let said = if resp.usage.unreported() {
                        said_in(&resp)
                    } else {
                        0
                    };
                    // A same-dialect upstream's body goes out as it came (lossless and
                    // cheaper); anything else is encoded in the client's dialect.
                    let raw = resp.raw.take().filter(|_| resp.origin == Some(dialect));
                    let encoded = match (raw, dialect) {
                        (Some(raw), _) => Ok(raw),
                        (None, Dialect::Anthropic) => weir_anthropic::encode_response(&resp),
                        (None, Dialect::OpenAi) => weir_openai::encode_response(&resp),
                    };
                    match encoded {
                        Ok(body) => {
                            let mut usage = resp.usage.clone();
                            estimate_unreported(&mut usage, log.input_estimate, said);
                            let (input, output) = (usage.total_input(), usage.output_tokens);
                            log.usage = Some(usage);
                            log.emit(200, None, Some(input), output);
                            full(StatusCode::OK, "application/json", body)
                        }
                        Err(e) => {
                            return simple_error(dialect, ErrorKind::Upstream, e.to_string(), log);
                        }
                    }
                }
                Reply::Stream(s) => {
                    debug_assert!(stream);
                    let slog = StreamLog::new(log.hand_over()).in_thread(memory);
                    sse_response(dialect, s, client_usage, slog, app.cut_watch())
                }
            };
            set_header(&mut r, X_WEIR_PROVIDER, &served.provider);
            set_header(&mut r, X_WEIR_MODEL, &served.model);
            if let Some(id) = &served.upstream_request_id {
                set_header(&mut r, X_WEIR_UPSTREAM_REQUEST_ID, id);
            }
            if let Some(w) = &warning {
                set_header(&mut r, X_WEIR_WARNING, w);
            }
            r
        }
    }
}

/// A served request's metric series, and its upstream latency: the serving attempt's own
/// time (not the failed ones' before it); a stream's is its first content's, which may
/// come after the router handed it over (told by the stream's log).
fn upstream_timed(
    app: &App,
    key: &ClientKey,
    model: &str,
    served: &weir_router::Served,
    stream: bool,
    log: &mut RequestLog,
) {
    let series = app.metrics.served(&key.name, model, &served.provider);
    if stream {
        log.upstream_from = Some(served.started);
    } else {
        app.metrics.upstream_took(&series, served.latency);
    }
    log.series = Some(series);
}

/// What the OpenAI pass-through endpoints (embeddings, the Responses API) have, ready to
/// route: the caller's key, the request, and the call's context.
struct Pass<R> {
    key: ClientKey,
    req: R,
    cx: CallContext,
    /// The body's bytes, held until the request has been answered.
    _charge: Charge,
}

/// The pass-through endpoints' first steps, as chat's: the key, the body, the request
/// (`decode`), the key's model allow-list and its limits. `Err`: the answer already.
async fn pass_prelude<R>(
    app: &App,
    req: Request<Incoming>,
    log: &mut RequestLog,
    decode: fn(&[u8]) -> Result<R, WireError>,
    model: fn(&R) -> &str,
) -> Result<Pass<R>, Response<Body>> {
    let dialect = Dialect::OpenAi;
    let key = authenticate(app, req.headers(), dialect, log)?.clone();
    let (headers, body, charge) = read_body(app, req, dialect, log).await?;
    log.input_estimate = (body.len() as u64).div_ceil(4);
    let parsed = decode(&body).map_err(|e| {
        tracing::debug!(request_id = %log.request_id, "undecodable request: {e}");
        simple_error(dialect, ErrorKind::InvalidRequest, e.to_string(), log)
    })?;
    let name = model(&parsed);
    log.model = Some(name.to_owned());
    if !app.allows(&key, name) {
        return Err(refused_model(app, dialect, &key, name, log));
    }
    if let Some(r) = unroutable(app, &key, name, dialect, log) {
        return Err(r);
    }
    admit(app, &key, log.input_estimate, dialect, log).await?;
    let mut cx = CallContext::new(log.request_id.clone());
    cx.forward_headers = forward_headers(&headers);
    // Sessions stick here too (vectors of different models are not comparable; stored
    // responses live with one upstream).
    cx.session = header_session(&headers);
    cx.client_dialect = Some(dialect);
    cx.client_key = Some(key.name.clone());
    cx.deadline = log.started.map(|s| s + app.total_timeout);
    cx.progress = weir_model::Progress::watched();
    log.progress = cx.progress.clone();
    Ok(Pass {
        key,
        req: parsed,
        cx,
        _charge: charge,
    })
}

/// A pass-through request's routing outcome: the error in OpenAI's shape, or, once served,
/// the upstream's latency and the log's provider and model recorded and `answer` made
/// (with `x-weir-provider` and `x-weir-model`).
fn pass_outcome<T>(
    app: &App,
    key: &ClientKey,
    model_name: &str,
    routed: Result<(T, weir_router::Served), RouteError>,
    streamed: fn(&T) -> bool,
    log: &mut RequestLog,
    answer: impl FnOnce(T, &weir_router::Served, &mut RequestLog) -> Response<Body>,
) -> Response<Body> {
    let dialect = Dialect::OpenAi;
    match routed {
        Err(RouteError::UnknownModel { model, available }) => {
            unknown_model(dialect, key, &model, &available, log)
        }
        Err(RouteError::Failed { last, attempts }) => route_failed(dialect, &last, &attempts, log),
        Ok((reply, served)) => {
            upstream_timed(app, key, model_name, &served, streamed(&reply), log);
            log.provider = Some(served.provider.clone());
            log.upstream_model = Some(served.model.clone());
            log.upstream_request_id
                .clone_from(&served.upstream_request_id);
            if !served.warnings.is_empty() {
                log.warning = Some(served.warnings.join("; "));
            }
            let warning = log.warning.clone();
            let mut r = answer(reply, &served, log);
            set_header(&mut r, X_WEIR_PROVIDER, &served.provider);
            set_header(&mut r, X_WEIR_MODEL, &served.model);
            if let Some(id) = &served.upstream_request_id {
                set_header(&mut r, X_WEIR_UPSTREAM_REQUEST_ID, id);
            }
            if let Some(w) = &warning {
                set_header(&mut r, X_WEIR_WARNING, w);
            }
            r
        }
    }
}

/// `POST /v1/embeddings`: OpenAI's embeddings API, routed by `[[models]]` like chat, to
/// the targets whose provider has embeddings; the upstream's answer goes back as it came.
async fn embeddings(app: &App, req: Request<Incoming>, log: &mut RequestLog) -> Response<Body> {
    let pass = match pass_prelude(app, req, log, weir_model::EmbedRequest::decode, |r| {
        &r.model
    })
    .await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    let model_name = pass.req.model.clone();
    let call = app.router.embed(pass.req, pass.cx);
    tokio::pin!(call);
    let Some(routed) = unless_cut(app, call).await else {
        return shutting_down(Dialect::OpenAi, log);
    };
    pass_outcome(
        app,
        &pass.key,
        &model_name,
        routed,
        |_| false,
        log,
        |mut resp, _, log| {
            // An upstream that reports no usage is charged an estimate (as chat is).
            if resp.usage.input_tokens.is_none() {
                resp.usage.input_tokens = Some(log.input_estimate);
            }
            let input = resp.usage.input_tokens;
            log.usage = Some(resp.usage);
            log.emit(200, None, input, Some(0));
            full(StatusCode::OK, "application/json", resp.body)
        },
    )
}

/// `POST /v1/responses`: OpenAI's Responses API, routed by `[[models]]` like chat to the
/// targets whose provider speaks it, and passed through: the request with only its model
/// renamed, the answer (whole or streamed) as the upstream wrote it.
async fn responses(app: &App, req: Request<Incoming>, log: &mut RequestLog) -> Response<Body> {
    // A background response not streamed is fetched later with `GET
    // /v1/responses/{id}`, which the gateway does not serve: its result could not be had
    // through it, nor its usage counted against the key. Refused before the key's limits.
    // (Streamed, its result and usage come in the stream.)
    let decode = |body: &[u8]| {
        let r = weir_model::ResponsesRequest::decode(body)?;
        if r.background() && !r.stream {
            return Err(WireError::Unsupported(
                "background responses are not supported through this gateway unless \
                 streamed: their result is fetched with GET /v1/responses/{id}, which it \
                 does not serve; set \"stream\": true"
                    .into(),
            ));
        }
        Ok(r)
    };
    let pass = match pass_prelude(app, req, log, decode, |r| &r.model).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let model_name = pass.req.model.clone();
    let stored = pass.req.stores();
    let mut cx = pass.cx;
    // As for chat: the headers' session, else `metadata.user_id`, else `user`.
    if cx.session.is_none() {
        cx.session = pass.req.user_session();
    }
    let call = app.router.responses(pass.req, cx);
    tokio::pin!(call);
    let Some(routed) = unless_cut(app, call).await else {
        return shutting_down(Dialect::OpenAi, log);
    };
    pass_outcome(
        app,
        &pass.key,
        &model_name,
        routed,
        |r| matches!(r, weir_model::ResponsesReply::Stream(_)),
        log,
        |reply, served, log| {
            // A later request continuing this response goes to the account that holds it.
            let memory = app.router.response_memory(served).if_stored(stored);
            match reply {
                weir_model::ResponsesReply::Complete {
                    body,
                    id,
                    mut usage,
                } => {
                    if let Some(id) = id {
                        memory.remember(&id);
                    }
                    let said = if usage.unreported() {
                        responses_said(&body)
                    } else {
                        0
                    };
                    estimate_unreported(&mut usage, log.input_estimate, said);
                    let (input, output) = (usage.total_input(), usage.output_tokens);
                    log.usage = Some(usage);
                    log.emit(200, None, Some(input), output);
                    full(StatusCode::OK, "application/json", body)
                }
                weir_model::ResponsesReply::Stream(s) => {
                    let slog = StreamLog::new(log.hand_over());
                    crate::sse::passthrough_response(s, slog, memory, app.cut_watch())
                }
            }
        },
    )
}

/// A wait longer than this is the caller's to plan: the answer says `x-should-retry: false`.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// The answer when every target failed: the upstream's own error when one answered (status
/// and type kept), else a sanitized summary, naming the last upstream a request went to.
fn route_failed(
    dialect: Dialect,
    last: &weir_model::ProviderError,
    attempts: &[weir_router::Attempt],
    log: &mut RequestLog,
) -> Response<Body> {
    let api = client_error(last);
    // (A skipped attempt with an upstream's answer: a refusal given again while its key
    // rests.)
    let tried = attempts
        .iter()
        .rev()
        .find(|a| !a.skipped || a.error.api_error.is_some());
    if let Some(a) = tried.or(attempts.last()) {
        log.provider = Some(a.provider.clone());
        log.upstream_model = Some(a.model.clone());
    }
    let mut r = error_response(dialect, &api, &log.request_id, last.retry_after);
    // A whole answer longer than `first_byte`, or a wait over a minute (an upstream's
    // long retry-after: the JS SDKs sleep for any, silently, before each retry).
    // And no credit left: it comes back only when someone pays.
    if last.retry_after.is_some_and(|d| d > LONG_WAIT)
        || api.credit_spent()
        || last.kind == ErrorKind::Timeout
            && last
                .message
                .ends_with(weir_model::error::WHOLE_ANSWER_TIMEOUT_HINT)
    {
        // A whole answer longer than `first_byte`: the SDKs retry a 504 twice, each
        // paying for the whole answer again, to time out the same way.
        r.headers_mut().insert(
            HeaderName::from_static("x-should-retry"),
            HeaderValue::from_static("false"),
        );
    }
    if let Some(a) = tried {
        set_header(&mut r, X_WEIR_PROVIDER, &a.provider);
        set_header(&mut r, X_WEIR_MODEL, &a.model);
        // The upstream's own id for the answer passed on, to quote to its support.
        if let Some(id) = &a.error.upstream_request_id {
            set_header(&mut r, X_WEIR_UPSTREAM_REQUEST_ID, id);
            log.upstream_request_id = Some(id.clone());
        }
    }
    log.emit(r.status().as_u16(), None, None, None);
    r
}

/// The error a client gets for a request every target failed: the upstream's own when one
/// answered; else one of the failure's kind. The gateway's own credentials for an upstream
/// failing (cloud credentials missing or expired: no upstream answered) is a 502, not a
/// 401, which SDKs and Claude Code take for their own key being wrong, and says so without
/// their details (file paths, variables), which the log has.
fn client_error(last: &weir_model::ProviderError) -> ApiError {
    last.api_error.as_deref().cloned().unwrap_or_else(|| {
        if last.kind == ErrorKind::Authentication && last.status.is_none() {
            return ApiError::new(ErrorKind::Upstream, weir_router::CREDENTIALS_FAILED);
        }
        let mut a = ApiError::new(last.kind, last.message.clone());
        if let Some(s) = last.status.filter(|s| (400..600).contains(s)) {
            a.status = s;
        }
        a
    })
}

async fn count_tokens(app: &App, req: Request<Incoming>, log: &mut RequestLog) -> Response<Body> {
    let dialect = Dialect::Anthropic;
    let key = match authenticate(app, req.headers(), dialect, log) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (headers, body, _charge) = match read_body(app, req, dialect, log).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let creq = match weir_anthropic::decode_request(&body) {
        Ok(r) => r,
        Err(e) => return simple_error(dialect, ErrorKind::InvalidRequest, e.to_string(), log),
    };
    log.model = Some(creq.model.clone());
    if !app.allows(key, &creq.model) {
        return refused_model(app, dialect, key, &creq.model, log);
    }
    let requested = creq.model.clone();
    let estimate = creq.estimate_input_tokens(body.len()).max(1);
    let mut cx = CallContext::new(log.request_id.clone());
    cx.forward_headers = forward_headers(&headers);
    let call = app.router.count_tokens(creq, cx);
    tokio::pin!(call);
    let Some(counted) = unless_cut(app, call).await else {
        return shutting_down(dialect, log);
    };
    let (tokens, provider, model) = match counted {
        Ok(Some((n, served))) => (n, served.provider, served.model),
        // No target has a counter (the mock, OpenAI-compatible services): an estimate
        // of about four bytes of JSON per token, images at a fixed count.
        Ok(None) => (estimate, "estimate".to_owned(), requested),
        Err(RouteError::UnknownModel { model, available }) => {
            return unknown_model(dialect, key, &model, &available, log)
        }
        Err(RouteError::Failed { last, attempts }) => {
            return route_failed(dialect, &last, &attempts, log)
        }
    };
    log.provider = Some(provider.clone());
    log.upstream_model = Some(model.clone());
    // (A count is not input consumed: no tokens are recorded.)
    log.emit(200, None, None, None);
    let mut r = full(
        StatusCode::OK,
        "application/json",
        format!("{{\"input_tokens\":{tokens}}}"),
    );
    set_header(&mut r, X_WEIR_PROVIDER, &provider);
    set_header(&mut r, X_WEIR_MODEL, &model);
    r
}

/// `GET /v1/models` (or, with `one`, `GET /v1/models/{id}`): the models the caller's key
/// may use, in the shape of the dialect the request speaks; the Anthropic listing pages as
/// Anthropic's does (`limit`, default 20, `after_id`, `before_id`).
async fn models(
    app: &App,
    req: &Request<Incoming>,
    one: Option<&str>,
    log: &mut RequestLog,
) -> Response<Body> {
    let anthropic =
        req.headers().contains_key("anthropic-version") || req.headers().contains_key("x-api-key");
    let dialect = if anthropic {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let key = match authenticate(app, req.headers(), dialect, log) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Exact names, then what glob routes serve as their providers list it.
    let listing = app.router.provider_models();
    tokio::pin!(listing);
    let Some(from_providers) = unless_cut(app, listing).await else {
        return shutting_down(dialect, log);
    };
    let mut names: Vec<&str> = Vec::new();
    for m in app.listed_models.iter().chain(&from_providers) {
        if app.allows(key, m) && !names.contains(&m.as_str()) {
            names.push(m);
        }
    }
    let entry = |m: &str| {
        if anthropic {
            serde_json::json!({"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"})
        } else {
            serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": "weir"})
        }
    };
    if let Some(id) = one {
        let id = percent_decoded(id);
        // A name no listing has may still be served: a glob route takes it (Gemini's,
        // Bedrock's and Vertex's models are not listed).
        // (A pattern is no model, though a glob route matches its text.)
        let served =
            || !id.contains(['*', '?']) && app.allows(key, &id) && app.router.known(&id).is_ok();
        if !names.contains(&id.as_str()) && !served() {
            let e = ApiError {
                code: Some("model_not_found".to_owned()),
                ..ApiError::new(
                    ErrorKind::NotFound,
                    format!("model `{id}` is not available to this key"),
                )
            };
            return gateway_error(dialect, &e, log);
        }
        log.emit(200, None, None, None);
        return full(StatusCode::OK, "application/json", entry(&id).to_string());
    }
    let body = if anthropic {
        let query = req.uri().query().unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| percent_decoded(v))
        };
        let limit = match param("limit").map(|l| l.parse::<usize>()) {
            None => 20,
            Some(Ok(n)) if (1..=1000).contains(&n) => n,
            Some(_) => {
                return simple_error(
                    dialect,
                    ErrorKind::InvalidRequest,
                    "limit: must be an integer from 1 to 1000",
                    log,
                )
            }
        };
        let position = |id: Option<String>| match id {
            None => Ok(None),
            Some(id) => names.iter().position(|n| *n == id).map(Some).ok_or(id),
        };
        let (after, before) = match (position(param("after_id")), position(param("before_id"))) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(id), _) | (_, Err(id)) => {
                return simple_error(
                    dialect,
                    ErrorKind::NotFound,
                    format!("model `{id}` is not available to this key"),
                    log,
                )
            }
        };
        // A page after `after_id`, or the last one before `before_id`, else the first.
        let (start, end) = match (after, before) {
            (Some(a), _) => (a + 1, (a + 1 + limit).min(names.len())),
            (None, Some(b)) => (b.saturating_sub(limit), b),
            (None, None) => (0, limit.min(names.len())),
        };
        let page = &names[start..end];
        let has_more = if before.is_some() && after.is_none() {
            start > 0
        } else {
            end < names.len()
        };
        serde_json::json!({
            "data": page.iter().map(|m| entry(m)).collect::<Vec<_>>(),
            "has_more": has_more,
            "first_id": page.first(),
            "last_id": page.last(),
        })
    } else {
        let data: Vec<serde_json::Value> = names.iter().map(|m| entry(m)).collect();
        serde_json::json!({"object": "list", "data": data})
    };
    log.emit(200, None, None, None);
    full(StatusCode::OK, "application/json", body.to_string())
}

/// `%XX` escapes of a path segment or query value decoded (invalid ones kept as written).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{client_error, ErrorKind};

    /// 529 is not a registered status: without a reason phrase of its own, hyper writes
    /// `HTTP/1.1 529 <none>`.
    #[test]
    fn an_overloaded_answer_has_a_reason_phrase() {
        let e = weir_model::ApiError::new(weir_model::ErrorKind::Overloaded, "busy");
        let r = super::error_response(weir_model::Dialect::Anthropic, &e, "req_1", None);
        assert_eq!(r.status().as_u16(), 529);
        let reason = r.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(reason.map(|p| p.as_bytes()), Some(&b"Overloaded"[..]));
        // Nor is 499 (a client that left with its body half sent may still read).
        let e = weir_model::ApiError::new(weir_model::ErrorKind::Cancelled, "left");
        let r = super::error_response(weir_model::Dialect::OpenAi, &e, "req_1", None);
        assert_eq!(r.status().as_u16(), 499);
        let reason = r.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(
            reason.map(|p| p.as_bytes()),
            Some(&b"Client Closed Request"[..])
        );
    }

    #[test]
    fn a_responses_answer_says_its_output_not_its_envelope() {
        let body = br#"{"id":"resp_1","object":"response","status":"completed","model":"m","output":[
            {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"why"}]},
            {"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"hello from fake","annotations":[]}]},
            {"type":"function_call","id":"fc_1","call_id":"c","name":"f","arguments":"{\"a\":1}"}
        ],"usage":null}"#;
        assert_eq!(super::responses_said(body), 3 + 15 + 1 + 7);
        assert_eq!(super::responses_said(b"not json"), 8);
    }

    #[test]
    fn the_gateways_own_failed_credentials_are_a_502_not_the_clients_401() {
        let local = weir_model::ProviderError::new(
            ErrorKind::Authentication,
            "no usable Google credentials for Vertex AI",
        );
        let e = client_error(&local);
        assert_eq!((e.status, e.kind), (502, ErrorKind::Upstream));
        assert_eq!(e.message, weir_router::CREDENTIALS_FAILED);
        // An upstream's own 401 (its key refused) stays what it said.
        let mut refused = local.clone();
        refused.status = Some(401);
        assert_eq!(client_error(&refused).status, 401);
    }

    #[test]
    fn the_session_is_a_header_else_the_end_user_not_the_prompt_cache_key() {
        use http::{HeaderMap, HeaderValue};
        let req = |body: &str| weir_openai::decode_request(body.as_bytes()).unwrap();
        let none = HeaderMap::new();
        let q = r#""messages":[{"role":"user","content":"q"}]"#;
        let s = |body: String| super::session(&none, &req(&body));
        assert_eq!(
            s(format!(r#"{{"model":"m","prompt_cache_key":"k1",{q}}}"#)),
            None
        );
        assert_eq!(
            s(format!(
                r#"{{"model":"m","safety_identifier":"u1","prompt_cache_key":"k1",{q}}}"#
            ))
            .as_deref(),
            Some("u1")
        );
        assert_eq!(s(format!(r#"{{"model":"m",{q}}}"#)), None);
        let mut h = HeaderMap::new();
        h.insert("x-weir-session", HeaderValue::from_static("h1"));
        assert_eq!(
            super::session(
                &h,
                &req(&format!(r#"{{"model":"m","prompt_cache_key":"k1",{q}}}"#))
            )
            .as_deref(),
            Some("h1")
        );
        // Coding agents' own session headers; Weir's own wins.
        for (name, value) in [
            ("x-claude-code-session-id", "cc"),
            ("x-session-affinity", "oc"),
            ("session-id", "codex"),
            ("session_id", "codex-old"),
            ("x-session-id", "x"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(super::header_session(&h).as_deref(), Some(value), "{name}");
            h.insert("x-weir-session", HeaderValue::from_static("w"));
            assert_eq!(super::header_session(&h).as_deref(), Some("w"), "{name}");
        }
    }

    #[test]
    fn request_ids_are_req_and_32_random_hex_digits() {
        let a = super::request_id();
        let b = super::request_id();
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("req_"));
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }
}
