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
mod connect;
mod h1;
mod ratelimit;
mod retry_after;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode};
use weir_model::{ApiError, ErrorKind, ProviderError};

/// A parsed URL (providers parse their endpoints once, at construction).
pub use url::Url;

pub use call::{
    call, error_in_answer, get_json, listed_ids, post_json, post_passthrough, report_limits,
    secret_header, upstream_request_id, Dialect, HttpProviderConfig, KeyRing,
};
pub use ratelimit::{rate_limit_info, RateLimitInfo, MAX_WAIT, UNKNOWN_RESET};
pub use retry_after::retry_after;
pub use stream::{
    body_frames, body_frames_with_keepalive, byte_stream, byte_stream_with_keepalive, decode_error,
    scrub_stream, sse_frames, sse_frames_relayed, BodyDecoder, FrameDecoder, SseBody,
    COMPLETE_GRACE, KEEPALIVE,
};

/// Runs the calls `calls` yields, at most `at_once` at a time (each made only when its turn
/// comes), and gives their answers in the calls' order; the first failure ends it (the calls
/// in flight are dropped).
pub async fn in_order<F, T>(
    mut calls: impl Iterator<Item = F>,
    at_once: usize,
) -> Result<Vec<T>, ProviderError>
where
    F: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut running = futures_util::stream::FuturesOrdered::new();
    let mut out = Vec::new();
    loop {
        while running.len() < at_once.max(1) {
            let Some(call) = calls.next() else { break };
            running.push_back(call);
        }
        match futures_util::StreamExt::next(&mut running).await {
            Some(answer) => out.push(answer?),
            None => return Ok(out),
        }
    }
}

/// Timeouts for one upstream call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection. (Read by [`Upstream::new`], whose connector it is:
    /// a provider's calls use their `Upstream`'s.)
    pub connect: Duration,
    /// From sending the request until the response headers arrive.
    pub first_byte: Duration,
    /// The longest silence between two chunks of a streamed body.
    pub idle: Duration,
    /// The whole call, body included.
    pub total: Duration,
}

impl Timeouts {
    /// These timeouts with `total` ending no later than `deadline` (a request's own total,
    /// over every attempt: [`weir_model::CallContext::deadline`]).
    pub fn within(&self, deadline: Option<std::time::Instant>) -> Timeouts {
        let mut t = *self;
        if let Some(d) = deadline {
            t.total = t
                .total
                .min(d.saturating_duration_since(std::time::Instant::now()));
        }
        t
    }
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

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<connect::Connect>,
    http_body_util::Full<bytes::Bytes>,
>;

/// A pooled HTTP client for upstream calls: hyper's pooled client over rustls (Mozilla's
/// roots, HTTP/2 by ALPN), no redirects followed, no per-request URL re-parsing.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client,
    proxies: connect::Proxies,
    /// Plain TCP connections, for the keep-alive pools of plain-HTTP endpoints.
    http: hyper_util::client::legacy::connect::HttpConnector,
    /// Those pools, one per origin, shared by the endpoints made for it.
    pools: Arc<Mutex<HashMap<String, Arc<h1::Pool>>>>,
}

/// A response whose headers have arrived.
#[derive(Debug)]
pub struct Response {
    head: http::response::Parts,
    body: hyper::body::Incoming,
    /// When the whole call must be over.
    pub deadline: Instant,
    /// The longest silence allowed between two chunks of the body.
    pub idle: Duration,
    /// The pooled connection the response came on, returned at the body's end.
    lease: Option<h1::Lease>,
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The next chunk of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ProviderError> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Polls for the next chunk of the body (`None` at its end), for streams written by
    /// hand.
    pub fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<bytes::Bytes>, ProviderError>> {
        use hyper::body::Body as _;
        use std::task::Poll;
        loop {
            match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if let Some(l) = self.lease.take() {
                        l.release();
                    }
                    return Poll::Ready(Ok(None));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(body_error(&e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Ok(Some(data)));
                        }
                    }
                }
            }
        }
    }
}

impl Upstream {
    /// A client with `connect` as its connection timeout, through the proxy the
    /// environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`), if any.
    pub fn new(connect: Duration) -> Result<Self, String> {
        for v in connect::PROXY_VARS {
            if let Ok(p) = std::env::var(v) {
                note_proxy_url(&p);
            }
        }
        Ok(Upstream::build(connect, connect::Proxies::from_env()))
    }

    /// A client that sends plain-HTTP upstream calls to `proxy` (e.g.
    /// `http://user:pass@proxy:3128`) and tunnels HTTPS ones through it.
    pub fn with_proxy(connect: Duration, proxy: &str) -> Self {
        note_proxy_url(proxy);
        let m = hyper_util::client::proxy::matcher::Matcher::builder()
            .all(proxy.to_owned())
            .build();
        Upstream::build(connect, connect::Proxies::from_matcher(m))
    }

    /// A client that uses no proxy, whatever the environment says.
    #[cfg(test)]
    pub(crate) fn direct(connect: Duration) -> Self {
        Upstream::build(connect, connect::Proxies::none())
    }

    fn build(connect: Duration, proxies: connect::Proxies) -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connect::Connect {
                http: http.clone(),
                proxies: proxies.clone(),
            });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(https);
        Upstream {
            client,
            proxies,
            http,
            pools: Arc::default(),
        }
    }

    /// The endpoint for `url`, made once for the calls a provider sends there. A
    /// plain-HTTP one gets its origin's keep-alive pool (unless it is reached through a
    /// proxy); other URLs use the shared pooled client.
    pub fn endpoint(&self, url: Url) -> Result<Endpoint, ProviderError> {
        let mut e = Endpoint::new(url)?;
        let target = e.uri.path_and_query().map(|pq| http::Uri::from(pq.clone()));
        if let (Some(_), Some(target)) = (&e.host, target) {
            if !self.proxies.intercepts(&e.uri) {
                let origin = e.url.origin().ascii_serialization();
                let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
                e.pooled = Some((pools.entry(origin).or_default().clone(), target));
            }
        }
        Ok(e)
    }

    /// POSTs `body` to `url`, waiting at most `first_byte` for the response headers.
    /// Failures to connect or to answer in time are classified; HTTP error statuses are
    /// returned as responses (the caller decodes the body in its dialect). For a URL that
    /// serves many calls, make an [`Endpoint`] once and use [`Upstream::send`].
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Vec<u8>,
        t: &Timeouts,
    ) -> Result<Response, ProviderError> {
        self.send(&Endpoint::new(url.clone())?, headers, body, t)
            .await
    }

    /// POSTs `body` to `to`, as [`Upstream::post`] does.
    pub async fn send(
        &self,
        to: &Endpoint,
        headers: HeaderMap,
        body: Vec<u8>,
        t: &Timeouts,
    ) -> Result<Response, ProviderError> {
        self.request(http::Method::POST, to, headers, body, t).await
    }

    /// GETs `url` (a listing), as [`Upstream::post`] posts.
    pub async fn get(
        &self,
        url: &Url,
        headers: HeaderMap,
        t: &Timeouts,
    ) -> Result<Response, ProviderError> {
        let to = Endpoint::new(url.clone())?;
        self.request(http::Method::GET, &to, headers, Vec::new(), t)
            .await
    }

    async fn request(
        &self,
        method: http::Method,
        to: &Endpoint,
        mut headers: HeaderMap,
        body: Vec<u8>,
        t: &Timeouts,
    ) -> Result<Response, ProviderError> {
        let started = Instant::now();
        let deadline = started + t.total;
        if let Some(host) = &to.host {
            headers.insert(http::header::HOST, host.clone());
        }
        // Answers are read as they come: no compression (without this header a server
        // may choose any).
        headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        // Other gateways' entries the request came with, then this one's.
        match INCOMING_VIA.try_with(http::HeaderValue::clone) {
            Ok(before) => {
                headers.insert(http::header::VIA, before);
                headers.append(http::header::VIA, via().clone());
            }
            Err(_) => {
                headers.insert(http::header::VIA, via().clone());
            }
        }
        let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *req.method_mut() = method;
        if let Some(auth) = self.proxies.http_auth(&to.uri) {
            headers.insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        *req.headers_mut() = headers;
        let limit = t.first_byte.min(t.total);
        let timed_out = || {
            // Said by the timeout that ran out (a first-byte hint would mislead).
            let message = if t.total < t.first_byte {
                format!(
                    "the call's total time ({}: [timeouts] total, or what the request had left of it) ran out before the upstream's response headers",
                    human(limit)
                )
            } else {
                format!("{NO_HEADERS_WITHIN} {}", human(limit))
            };
            ProviderError::new(ErrorKind::Timeout, message)
        };
        if let Some((pool, target)) = &to.pooled {
            *req.uri_mut() = target.clone();
            let sent = h1::send(pool, &self.http, &to.uri, req);
            return match tokio::time::timeout(limit, sent).await {
                Err(_) => Err(timed_out()),
                Ok(Err(e)) => Err(e),
                Ok(Ok((resp, lease))) => {
                    let (head, body) = resp.into_parts();
                    uncompressed(&head)?;
                    Ok(Response {
                        head,
                        body,
                        deadline,
                        idle: t.idle,
                        lease: Some(lease),
                    })
                }
            };
        }
        *req.uri_mut() = to.uri.clone();
        let send = self.client.request(req);
        match tokio::time::timeout(limit, send).await {
            Err(_) => Err(timed_out()),
            Ok(Err(e)) => Err(transport_error(&e)),
            Ok(Ok(resp)) => {
                let (head, body) = resp.into_parts();
                uncompressed(&head)?;
                Ok(Response {
                    head,
                    body,
                    deadline,
                    idle: t.idle,
                    lease: None,
                })
            }
        }
    }
}

/// An answer compressed all the same (a proxy's doing, or a server that ignores
/// `accept-encoding: identity`) is an error that says so, not one about undecodable bytes.
fn uncompressed(head: &http::response::Parts) -> Result<(), ProviderError> {
    match head.headers.get(http::header::CONTENT_ENCODING) {
        None => Ok(()),
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => Ok(()),
        Some(v) => {
            let mut e = ProviderError::new(
                ErrorKind::Upstream,
                format!(
                    "the upstream answered {} compressed (content-encoding: {}), though asked \
                     for no compression; the gateway does not decompress answers",
                    head.status.as_u16(),
                    weir_model::log_safe(&String::from_utf8_lossy(v.as_bytes()))
                ),
            );
            e.retryable_elsewhere = true;
            e.repeats = true;
            Err(e)
        }
    }
}

/// TLS to upstreams: Mozilla's roots, plus the certificates of `SSL_CERT_FILE` when it
/// is set (a corporate TLS-inspecting proxy's CA, a private upstream's).
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        use rustls_pki_types::pem::PemObject;
        match rustls_pki_types::CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs.flatten());
                tracing::debug!(added, ignored, "certificates from SSL_CERT_FILE");
            }
            Err(e) => tracing::warn!(
                "SSL_CERT_FILE ({}) cannot be read: {e}; only the bundled roots are trusted",
                std::path::Path::new(&path).display()
            ),
        }
    }
    // ring: no C toolchain or cmake to build (aws-lc-rs needs both). rustls 0.23.48
    // deprecates ring's provider for lacking post-quantum key exchange; embedders who
    // resolve that release would otherwise see a warning. Moving to aws-lc-rs is a
    // deliberate change of its own.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        // ring supports the safe default versions; this cannot fail.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// An endpoint's URL: `base_url` (scheme, host, optional path prefix) and the endpoint's
/// `path`, parsed once. The error never repeats the URL (it may carry credentials).
pub fn endpoint(base_url: &str, path: &str) -> Result<Url, String> {
    if let Ok(base) = Url::parse(base_url) {
        // The endpoint's path is appended: a query would swallow it.
        if base.query().is_some() || base.fragment().is_some() {
            return Err(
                "base_url cannot carry a query string or fragment (the endpoint's path is \
                 appended to it); keys go in the provider's `keys`"
                    .into(),
            );
        }
        // Never sent (and hyper's pool would log them at trace): refused, not dropped.
        if !base.username().is_empty() || base.password().is_some() {
            return Err(
                "base_url cannot carry credentials (user:password@); keys go in the \
                 provider's `keys`"
                    .into(),
            );
        }
    }
    let url = Url::parse(&format!("{}{path}", base_url.trim_end_matches('/')))
        .map_err(|e| format!("base_url is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "base_url must be an http:// or https:// URL, not {other}://"
        )),
    }
}

/// An upstream URL made ready for sending once (providers build theirs at construction):
/// the URI the client sends to, and for plain HTTP (always HTTP/1.1) its `Host` header,
/// which the client would otherwise format on every call.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: Url,
    uri: http::Uri,
    host: Option<http::HeaderValue>,
    /// For a pooled plain-HTTP endpoint: its origin's connections, and the request
    /// target sent on them (path and query).
    pooled: Option<(Arc<h1::Pool>, http::Uri)>,
}

impl Endpoint {
    /// The endpoint for `url`; an error if it is not a URI hyper can send to.
    pub fn new(url: Url) -> Result<Self, ProviderError> {
        let invalid =
            || ProviderError::new(ErrorKind::Internal, "the upstream URL is not a valid URI");
        let uri: http::Uri = url.as_str().parse().map_err(|_| invalid())?;
        // HTTPS may negotiate HTTP/2, where the client sends `:authority` instead: leave
        // those to it.
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(h)) => {
                let v = match uri.port_u16().filter(|&p| p != 80) {
                    Some(p) => http::HeaderValue::from_str(&format!("{h}:{p}")),
                    None => http::HeaderValue::from_str(h),
                };
                Some(v.map_err(|_| invalid())?)
            }
            _ => None,
        };
        Ok(Endpoint {
            url,
            uri,
            host,
            pooled: None,
        })
    }
}

/// Classifies a transport failure. The message is built from the error's causes, never
/// from a URL (a URL may carry credentials).
pub fn transport_error(e: &(dyn std::error::Error + 'static)) -> ProviderError {
    classify(e, false)
}

/// The kind of the first I/O error among `e`'s causes (a hyper error's, say), if any.
pub fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = c.source();
    }
    None
}

/// A failure reading an answer's body: one the upstream cut short (its connection closed
/// before the body's end) says so, rather than that a connection failed.
fn body_error(e: &hyper::Error) -> ProviderError {
    let cut = e.is_incomplete_message()
        || matches!(
            io_error_kind(e),
            Some(std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
        );
    if cut {
        ProviderError::new(
            ErrorKind::Upstream,
            format!(
                "the upstream's answer was cut off: its connection closed before the end ({})",
                root_cause(e)
            ),
        )
    } else {
        transport_error(e)
    }
}

/// [`transport_error`], knowing (`connect`) the failure was in making the connection.
pub(crate) fn classify(e: &(dyn std::error::Error + 'static), connect: bool) -> ProviderError {
    let mut timed_out = false;
    let mut connect = connect;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        if let Some(l) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= l.is_connect();
        }
        cur = c.source();
    }
    if timed_out && connect {
        ProviderError::new(
            ErrorKind::Timeout,
            format!(
                "cannot connect to the upstream: no connection within the connect timeout ({})",
                root_cause(e)
            ),
        )
    } else if timed_out {
        ProviderError::new(
            ErrorKind::Timeout,
            format!("upstream timed out: {}", root_cause(e)),
        )
    } else if connect {
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

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    let mut msg = e.to_string();
    while let Some(src) = cur.source() {
        msg = src.to_string();
        cur = src;
    }
    msg
}

/// Reads a whole (non-streamed) body, bounded by [`MAX_BODY_BYTES`], the deadline and,
/// between two chunks, the idle timeout (a body that stalls after its headers is a
/// timeout, so the next target is tried, rather than a wait for the whole `total`).
pub async fn read_body(resp: &mut Response) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    read_into(resp, &mut out, MAX_BODY_BYTES, false).await?;
    Ok(out)
}

/// How much of an error answer's body is read: only its message is used, and an upstream
/// answering an error with an endless body must not have the gateway hold megabytes of it
/// per request.
pub const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Reads an error answer's body: its first [`ERROR_BODY_BYTES`] (what is past them is left
/// unread, the connection then closed), or what came before it failed or timed out (the
/// error is then described from what there is).
pub async fn read_error_body(resp: &mut Response) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = read_into(resp, &mut out, ERROR_BODY_BYTES, true).await;
    out
}

/// Reads `resp`'s body into `out`, at most `limit` bytes: past them, an error, or with
/// `truncate`, the first `limit` bytes kept and the rest left unread.
async fn read_into(
    resp: &mut Response,
    out: &mut Vec<u8>,
    limit: usize,
    truncate: bool,
) -> Result<(), ProviderError> {
    let deadline = tokio::time::Instant::from_std(resp.deadline);
    let idle = resp.idle;
    let read = async {
        loop {
            // Nearly always there already: taken without a timer; only a body still on
            // its way gets one.
            let ready =
                resp.poll_chunk(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            let next = match ready {
                std::task::Poll::Ready(next) => next,
                std::task::Poll::Pending => match tokio::time::timeout(idle, resp.chunk()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(ProviderError::new(
                            ErrorKind::Timeout,
                            format!(
                                "the upstream's response body stalled: nothing arrived for {}",
                                human(idle)
                            ),
                        ))
                    }
                },
            };
            let Some(chunk) = next? else {
                break;
            };
            if out.len() + chunk.len() > limit {
                if truncate {
                    let room = limit - out.len();
                    out.extend_from_slice(&chunk[..room]);
                    return Ok(());
                }
                return Err(ProviderError::new(
                    ErrorKind::Decode,
                    format!("the upstream's response exceeds {limit} bytes"),
                ));
            }
            if out.is_empty() {
                // Most bodies arrive in one chunk: take it without copying.
                *out = Vec::from(chunk);
            } else {
                out.extend_from_slice(&chunk);
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Err(_) => Err(ProviderError::new(
            ErrorKind::Timeout,
            "the upstream did not finish its response within the total timeout",
        )),
        Ok(r) => r,
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
    let mut api = decode(status.as_u16(), body);
    if status.as_u16() < 400 {
        // An interim, redirect or protocol switch is not an answer to pass on (a 101 would
        // hand the client's connection over; redirects are not followed, the key would go
        // to another host): the upstream failed, a 502, and another target may do better.
        api = weir_model::ApiError::new(
            ErrorKind::Upstream,
            format!(
                "the upstream answered {status} instead of a response (redirects are not followed)"
            ),
        );
    } else if status.as_u16() > 599 {
        // No HTTP status: a broken upstream, whose number no client should get.
        api = weir_model::ApiError::new(
            ErrorKind::Upstream,
            format!(
                "the upstream answered with a status no HTTP answer has ({})",
                status.as_u16()
            ),
        );
    }
    let limits = rate_limit_info(headers, SystemTime::now());
    // OpenAI's 429 `insufficient_quota` is a key with no credit left, not a rate: it will
    // not pass in seconds, so the key rests as long as a refused one does.
    let retry_after = if api.credit_spent() {
        Some(limits.retry_after.unwrap_or_default().max(NO_QUOTA_REST))
    } else {
        limits.retry_after
    };
    let mut e = ProviderError::from_api(api, retry_after);
    e.upstream_request_id = crate::call::upstream_request_id(headers).map(str::to_owned);
    // 508 Loop Detected (a gateway that got its own request back, [`came_back`]): asked
    // again, it would loop again.
    e.repeats = status.as_u16() == 508;
    e
}

/// This process's `Via` entry (RFC 9110's, which a proxy adds to what it forwards), sent
/// with every upstream request: `1.1 weir-<16 hex digits>`, random per process, so a
/// request that comes back to this gateway (a provider's `base_url` naming the gateway
/// itself, by any address or name) is told from a client's ([`came_back`]) instead of
/// being forwarded again until connections run out.
pub fn via() -> &'static http::HeaderValue {
    static VIA: std::sync::LazyLock<http::HeaderValue> = std::sync::LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState's keys are random per process; the clock and pid add to them.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        // Hex digits and ASCII text: always a valid header value.
        http::HeaderValue::from_str(&format!("1.1 weir-{:016x}", h.finish()))
            .unwrap_or_else(|_| http::HeaderValue::from_static("1.1 weir"))
    });
    &VIA
}

tokio::task_local! {
    /// The Weir entries of the `Via` headers of the request being served
    /// ([`gateway_vias`]), sent on before this process's own: a loop through several
    /// gateways comes back to one of them with its own entry ([`came_back`]).
    pub static INCOMING_VIA: http::HeaderValue;
}

/// The Weir gateways' entries of a request's `Via` headers, joined, if any (other
/// proxies' are not sent on: they name the client's side).
pub fn gateway_vias(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
    let mut joined: Vec<u8> = Vec::new();
    for v in headers.get_all(http::header::VIA) {
        for entry in v.as_bytes().split(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.starts_with(b"1.1 weir-") {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(entry);
            }
        }
    }
    (!joined.is_empty())
        .then(|| http::HeaderValue::from_bytes(&joined).ok())
        .flatten()
}

/// Whether a request's `Via` headers hold this process's entry ([`via`]): it was sent by
/// this gateway to itself.
pub fn came_back(headers: &http::HeaderMap) -> bool {
    let ours = via().as_bytes();
    headers.get_all(http::header::VIA).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|entry| entry.trim_ascii() == ours)
    })
}

/// How long a key whose quota is spent rests (as long as the router's default rest for a
/// refused key).
pub const NO_QUOTA_REST: Duration = Duration::from_secs(600);

/// Removes a secret from an error (upstreams echo keys back in 401 bodies), and the
/// proxies' credentials (a proxy's error page may echo its `Proxy-Authorization`): from
/// its message and from every field of its upstream error body.
pub fn scrub(e: &mut ProviderError, secret: &str) {
    let proxy = lock_read(&PROXY_SECRETS);
    for s in std::iter::once(secret).chain(proxy.iter().map(String::as_str)) {
        redact_cut(&mut e.message, s);
        if let Some(api) = &mut e.api_error {
            redact_api(api, s);
        }
    }
}

/// Removes `secret` from every text field of an error body; whether it found it.
pub fn redact_api(api: &mut weir_model::ApiError, secret: &str) -> bool {
    let mut found = redact_cut(&mut api.message, secret);
    for field in [&mut api.error_type, &mut api.code, &mut api.param]
        .into_iter()
        .flatten()
    {
        found |= redact_cut(field, secret);
    }
    if let Some(details) = &mut api.details {
        found |= redact_json(details, secret);
    }
    found
}

/// Removes `secret` from every string (and key) of a JSON text, read decoded (an escape
/// cannot hide it); whether it found it. Text that is not JSON is dropped whole.
fn redact_json(text: &mut String, secret: &str) -> bool {
    use serde_json::Value;
    fn walk(v: &mut Value, secret: &str) -> bool {
        match v {
            Value::String(s) => redact(s, secret),
            Value::Array(items) => items.iter_mut().fold(false, |f, i| walk(i, secret) | f),
            Value::Object(map) => {
                let mut found = false;
                let old = std::mem::take(map);
                for (mut k, mut v) in old {
                    found |= redact(&mut k, secret) | walk(&mut v, secret);
                    map.insert(k, v);
                }
                found
            }
            _ => false,
        }
    }
    if secret.len() < 4 {
        return false;
    }
    // (At once when it holds neither the secret nor an escape that could spell it.)
    let plain = text
        .to_ascii_lowercase()
        .contains(&secret.to_ascii_lowercase());
    if !plain && !text.contains('\\') {
        return false;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            let found = walk(&mut v, secret);
            if found {
                *text = v.to_string();
            }
            found
        }
        Err(_) => {
            *text = "{}".into();
            true
        }
    }
}

/// [`redact`], and a start of `secret` (8 characters or more) that ends `text`: an
/// excerpt of an error body may have been cut inside a key.
fn redact_cut(text: &mut String, secret: &str) -> bool {
    let mut found = redact(text, secret);
    let lower = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let longest = needle.len().saturating_sub(1).min(lower.len());
    for n in (8..=longest).rev() {
        if lower.ends_with(&needle[..n]) && text.is_char_boundary(text.len() - n) {
            text.truncate(text.len() - n);
            text.push_str("***");
            found = true;
            break;
        }
    }
    found
}

/// Credentials of the proxies upstream calls go through, as sent (`Proxy-Authorization`
/// values and their tokens), to scrub from errors like keys.
static PROXY_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

fn lock_read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A list of strings stays valid after a panic elsewhere.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers a proxy's `Proxy-Authorization` (`Basic <token>`), and its token, as secrets.
pub(crate) fn note_proxy_auth(auth: &http::HeaderValue) {
    let Ok(value) = auth.to_str() else { return };
    let token = value.split_once(' ').map_or(value, |(_, t)| t.trim());
    if lock_read(&PROXY_SECRETS).iter().any(|s| s == token) {
        return;
    }
    let mut w = PROXY_SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !w.iter().any(|s| s == token) && token.len() >= 4 {
        w.push(token.to_owned());
    }
}

/// Remembers the password of a proxy URL (`http://user:password@proxy:3128`) as a secret.
pub(crate) fn note_proxy_url(proxy: &str) {
    let Ok(u) = url::Url::parse(proxy) else {
        return;
    };
    let Some(p) = u.password() else { return };
    // (Percent-decoded; a `+` in a URL's userinfo is a plus, not a space.)
    let p = url::form_urlencoded::parse(format!("p={}", p.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| p.to_owned(), |(_, v)| v.into_owned());
    let mut w = PROXY_SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if p.len() >= 4 && !w.contains(&p) {
        w.push(p);
    }
}

/// Replaces every occurrence of `secret` in `text` by `***`, in any ASCII case (an
/// upstream may echo a key upper-cased); whether it found one.
pub fn redact(text: &mut String, secret: &str) -> bool {
    if secret.len() < 4 || text.len() < secret.len() {
        return false;
    }
    // (ASCII lower-casing keeps every byte where it was, so positions carry over.)
    let lower = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    if !lower.contains(&needle) {
        return false;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(&needle) {
        out.push_str(&text[at..at + i]);
        out.push_str("***");
        at += i + needle.len();
    }
    out.push_str(&text[at..]);
    *text = out;
    true
}

/// How the error of a call whose response headers did not come in time begins.
const NO_HEADERS_WITHIN: &str = "the upstream sent no response headers within";

/// `e` for a call whose answer was to be whole (not `stream`): a `first_byte` timeout says
/// why ([`weir_model::error::WHOLE_ANSWER_TIMEOUT_HINT`]), and is not asked of the target
/// again (`repeats`): the upstream was most likely still writing a long answer, and asked
/// again it would write (and bill) it again, to time out the same way. Another target may
/// still take it.
pub fn for_whole_answer(mut e: ProviderError, stream: bool) -> ProviderError {
    if !stream && e.kind == ErrorKind::Timeout && e.message.starts_with(NO_HEADERS_WITHIN) {
        e.message
            .push_str(weir_model::error::WHOLE_ANSWER_TIMEOUT_HINT);
        e.repeats = true;
    }
    e
}

fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Calls run at most `at_once` at a time, are made only when their turn comes, and
    /// answer in their order whatever order they finish in; the first failure ends it.
    #[tokio::test]
    async fn calls_in_order_at_most_so_many_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (now, most, made) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let call = |i: u64| {
            made.fetch_add(1, Ordering::SeqCst);
            let (now, most) = (&now, &most);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                // Earlier calls finish later.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                if i == 15 {
                    return Err(ProviderError::new(ErrorKind::Upstream, "fifteen"));
                }
                Ok(i)
            }
        };
        let out = in_order((0..10).map(call), 3).await.unwrap();
        assert_eq!(out, (0..10).collect::<Vec<u64>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
        made.store(0, Ordering::SeqCst);
        let e = in_order((10..20).map(call), 2).await.unwrap_err();
        assert_eq!(e.message, "fifteen");
        assert!(
            made.load(Ordering::SeqCst) < 10,
            "no call made past the failure's turn"
        );
    }

    /// An attempt ends by the request's deadline: a later attempt gets what is left of
    /// the request's total, not a total of its own.
    #[test]
    fn timeouts_end_by_the_deadline() {
        let t = Timeouts::default();
        assert_eq!(t.within(None), t);
        let soon = std::time::Instant::now() + Duration::from_secs(5);
        let w = t.within(Some(soon));
        assert!(w.total <= Duration::from_secs(5) && w.total > Duration::from_secs(4));
        assert_eq!((w.first_byte, w.idle), (t.first_byte, t.idle));
        let past = std::time::Instant::now() - Duration::from_secs(1);
        assert_eq!(t.within(Some(past)).total, Duration::ZERO);
        let late = std::time::Instant::now() + Duration::from_secs(3600);
        assert_eq!(t.within(Some(late)).total, t.total);
    }

    fn host(url: &str) -> Option<String> {
        let e = Endpoint::new(Url::parse(url).unwrap()).unwrap();
        e.host.map(|h| h.to_str().unwrap().to_owned())
    }

    /// Upstream requests carry this process's `Via` entry after the Weir entries the
    /// request being served came with, so a loop through several gateways comes back to
    /// one of them; other proxies' entries are not sent on.
    /// A 508 (a gateway that got its own request back) is not asked again: it would loop
    /// again.
    #[test]
    fn a_loop_detected_answer_repeats() {
        let decode = |status: u16, _: &[u8]| {
            weir_model::ApiError::new(ErrorKind::from_status(status), "came back")
        };
        for (status, repeats) in [(508, true), (502, false), (500, false)] {
            let e = status_error(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                b"",
                decode,
            );
            assert_eq!(e.repeats, repeats, "{status}");
        }
    }

    #[tokio::test]
    async fn via_carries_the_gateways_before_this_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", l.local_addr().unwrap());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let vias: Vec<String> = head
                                .lines()
                                .filter_map(|l| l.strip_prefix("via:"))
                                .map(|v| v.trim().to_owned())
                                .collect();
                            tx.send(vias).unwrap();
                            // (The body, `{}`, arrived with the head or is left unread.)
                            buf.clear();
                            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await
                                .unwrap();
                        }
                    }
                });
            }
        });
        let up = Upstream::direct(Duration::from_secs(2));
        let ep = up.endpoint(Url::parse(&url).unwrap()).unwrap();
        let t = Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle: Duration::from_secs(2),
            total: Duration::from_secs(5),
        };
        let own = via().to_str().unwrap().to_ascii_lowercase();
        up.send(&ep, http::HeaderMap::new(), b"{}".to_vec(), &t)
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap(), vec![own.clone()]);
        let mut incoming = http::HeaderMap::new();
        incoming.append(
            http::header::VIA,
            http::HeaderValue::from_static("1.1 squid, 1.1 weir-00000000000000aa"),
        );
        incoming.append(
            http::header::VIA,
            http::HeaderValue::from_static("1.1 weir-00000000000000bb"),
        );
        let before = gateway_vias(&incoming).unwrap();
        assert_eq!(
            before,
            "1.1 weir-00000000000000aa, 1.1 weir-00000000000000bb"
        );
        INCOMING_VIA
            .scope(before, async {
                up.send(&ep, http::HeaderMap::new(), b"{}".to_vec(), &t)
                    .await
                    .unwrap();
            })
            .await;
        assert_eq!(
            rx.recv().await.unwrap(),
            vec![
                "1.1 weir-00000000000000aa, 1.1 weir-00000000000000bb".to_owned(),
                own.clone()
            ]
        );
        // Such a request, back at this gateway, is known by its own entry among them.
        let mut back = incoming.clone();
        back.append(http::header::VIA, via().clone());
        assert!(came_back(&back));
        assert!(!came_back(&incoming));
        assert!(gateway_vias(&http::HeaderMap::new()).is_none());
    }

    /// A status no HTTP answer has (999) is the upstream's failure, a 502 another target
    /// may make good: not the client's fault, and not a number to pass on.
    #[test]
    fn a_status_past_599_is_an_upstream_failure() {
        let decode = |status: u16, _: &[u8]| {
            let mut e = weir_model::ApiError::new(ErrorKind::from_status(status), "x");
            e.status = status;
            e
        };
        let status = StatusCode::from_u16(999).unwrap();
        let e = status_error(status, &HeaderMap::new(), b"<html>oops</html>", decode);
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert!(e.retryable_elsewhere);
        let api = e.api_error.unwrap();
        assert_eq!(api.status, 502);
        assert!(
            api.message.contains("no HTTP answer has (999)"),
            "{}",
            api.message
        );
    }

    #[test]
    fn proxy_credentials_and_keys_are_scrubbed_from_every_field_and_a_cut_tail() {
        note_proxy_url("http://puser:PROXY%2BPASS+123@127.0.0.1:3128");
        note_proxy_auth(&http::HeaderValue::from_static(
            "Basic cHVzZXI6UFJPWFlQQVNTMTIz",
        ));
        let mut api = weir_model::ApiError::new(
            ErrorKind::InvalidRequest,
            "proxy said Basic cHVzZXI6UFJPWFlQQVNTMTIz",
        );
        api.param = Some("password PROXY+PASS+123".into());
        api.code = Some("key sk-the-upstream-key".into());
        api.error_type = Some("cut sk-the-ups".into());
        // In `details` (JSON kept as it came), plain or spelt with escapes, value or key.
        api.details = Some(
            r#"{"key":"sk-the-upstream-key","k":["\u0073k-the-upstream-key"],"sk-the-upstream-key":1}"#
                .into(),
        );
        let mut e = ProviderError::from_api(api, None);
        e.message = "ends in sk-the-upstr".into();
        scrub(&mut e, "sk-the-upstream-key");
        let api = e.api_error.as_deref().unwrap();
        assert_eq!(api.message, "proxy said Basic ***");
        assert_eq!(api.param.as_deref(), Some("password ***"));
        assert_eq!(api.code.as_deref(), Some("key ***"));
        assert_eq!(api.error_type.as_deref(), Some("cut ***"));
        let details: serde_json::Value =
            serde_json::from_str(api.details.as_deref().unwrap()).unwrap();
        assert_eq!(
            details,
            serde_json::json!({"key": "***", "k": ["***"], "***": 1})
        );
        assert_eq!(e.message, "ends in ***");
        // Short tails are words, not cut keys.
        let mut t = "ends in sk-the".to_owned();
        assert!(!redact_cut(&mut t, "sk-the-upstream-key"));
    }

    #[test]
    fn base_urls_with_a_query_or_credentials_are_refused_without_repeating_them() {
        for bad in [
            "http://127.0.0.1:9/v1?key=SECRETQ",
            "http://127.0.0.1:9/v1#SECRETF",
            "https://user:SECRETP@example.com/v1",
            "https://SECRETU@example.com/v1",
        ] {
            let e = endpoint(bad, "/chat/completions").unwrap_err();
            assert!(e.starts_with("base_url cannot carry"), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        let ok = endpoint("https://example.com/v1/", "/chat/completions?api-version=1").unwrap();
        assert_eq!(
            ok.as_str(),
            "https://example.com/v1/chat/completions?api-version=1"
        );
    }

    #[test]
    fn plain_http_endpoints_carry_the_host_header_the_client_would_send() {
        assert_eq!(
            host("http://127.0.0.1:18081/v1").as_deref(),
            Some("127.0.0.1:18081")
        );
        assert_eq!(
            host("http://example.com:80/v1").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host("http://user:pw@example.com/v1").as_deref(),
            Some("example.com")
        );
        assert_eq!(host("http://[::1]:8080/").as_deref(), Some("[::1]:8080"));
        // HTTPS may be HTTP/2 (`:authority`): the client decides.
        assert_eq!(host("https://api.openai.com/v1"), None);
    }
}
