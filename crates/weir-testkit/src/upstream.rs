//! A fault-injecting upstream: a local HTTP server that plays an LLM provider and
//! misbehaves on demand.
//!
//! [`FaultyUpstream::start`] binds `127.0.0.1:0` and serves HTTP/1.1 and h2c (HTTP/2 with
//! prior knowledge) through hyper-util's auto builder. Every request is recorded
//! ([`FaultyUpstream::requests`]) and answered per a [`Behaviour`], which can be replaced
//! at runtime ([`FaultyUpstream::set`]) or overridden for the next few requests
//! ([`FaultyUpstream::queue`]).
//!
//! Answers that depend on the API dialect choose it from the request path (query
//! ignored): a path ending in `/chat/completions` is OpenAI Chat Completions, a path ending
//! in `/messages` is Anthropic Messages. On any other path those behaviours answer `404`
//! with an error body; the dialect-free behaviours ([`Behaviour::Status`],
//! [`Behaviour::Html500`], [`Behaviour::MalformedSse`], [`Behaviour::ResetConnection`],
//! [`Behaviour::Hang`]) behave the same on every path.
//!
//! Each connection runs in its own task; everything the server spawned stops when the
//! [`FaultyUpstream`] is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use weir_testkit::upstream::{Behaviour, FaultyUpstream, RateLimitFormat};
//!
//! let up = FaultyUpstream::start(Behaviour::ok("Hello there")).await;
//! up.queue(vec![Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(1))]);
//! // First request: 429 with `retry-after: 1`; later ones: "Hello there".
//! # let _ = up.url();
//! # }
//! ```
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// The text [`Behaviour::SlowDrip`] streams, one word per delta.
pub const SLOW_DRIP_TEXT: &str = "one two three four five";

/// The single text delta [`Behaviour::DropMidStream`] and [`Behaviour::Stall`] send before
/// failing.
pub const PARTIAL_TEXT: &str = "Partial";

/// How long [`Behaviour::DropMidStream`] waits after its last event before failing the
/// body, so the events already handed to hyper reach the client first.
const DROP_GRACE: Duration = Duration::from_millis(50);

/// What the upstream answers to a request.
///
/// Dialect-dependent behaviours pick the dialect from the request path (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// A successful answer in the request's dialect carrying `text`: a JSON response, or,
    /// when the request body has `"stream": true`, an SSE stream (Anthropic:
    /// `message_start`, `content_block_start`, one `text_delta` per word,
    /// `content_block_stop`, `message_delta`, `message_stop`; OpenAI: a role chunk, one
    /// content chunk per word, a finish chunk, a usage chunk when
    /// `stream_options.include_usage` is true, then `data: [DONE]`).
    ///
    /// The model echoes the request's `model`; usage counts are synthetic: input tokens are
    /// the request body's length in bytes divided by 4 (at least 1), output tokens the
    /// number of words in `text` (at least 1).
    Ok {
        /// The assistant's text.
        text: String,
    },
    /// A fixed answer, the same on every path.
    Status {
        /// The status code (an invalid code answers 500).
        status: u16,
        /// Extra response headers (invalid names or values are skipped).
        headers: Vec<(String, String)>,
        /// The `content-type`.
        content_type: String,
        /// The body.
        body: String,
    },
    /// `429` with a rate-limit error body in the request's dialect (Anthropic
    /// `rate_limit_error`, OpenAI `rate_limit_exceeded`) and the headers of the given
    /// format.
    RateLimited(RateLimitFormat),
    /// Anthropic's `529` `overloaded_error`; on the OpenAI path, `503` with an OpenAI error
    /// body.
    Overloaded529,
    /// `200 text/event-stream` whose first and only event is an overloaded error
    /// (Anthropic: `event: error` with an `overloaded_error`; OpenAI: a `data:` chunk with
    /// an `error` object), then the stream ends.
    OverloadedFirstEvent,
    /// `200 text/event-stream` that starts normally (Anthropic `message_start`; OpenAI a
    /// role-only chunk) then sends the overloaded error event before any content, then
    /// ends.
    ErrorAfterStart,
    /// `500 text/html` with an nginx error page, the same on every path.
    Html500,
    /// `200 text/event-stream` whose data line is not JSON (`data: {not json`), then the
    /// stream ends. The same on every path.
    MalformedSse,
    /// The connection is closed abruptly, without any response, once the request has been
    /// read and recorded: the socket's linger is set to zero before it is closed, so the
    /// client gets a TCP RST (reads fail with `ECONNRESET`, "connection reset by peer";
    /// HTTP clients report a connection error, never a status). Over HTTP/2 the whole
    /// connection is reset, with every stream on it.
    ResetConnection,
    /// The request is read and recorded, then never answered (until the client goes away or
    /// the upstream is dropped).
    Hang,
    /// A `200` SSE stream in the request's dialect, like a streamed [`Behaviour::Ok`] of
    /// [`SLOW_DRIP_TEXT`] (always streamed, whatever the request says), each event sent
    /// only after `interval`.
    SlowDrip {
        /// The wait before each event (the first included).
        interval: Duration,
    },
    /// A `200` SSE stream with the opening events and one text delta ([`PARTIAL_TEXT`]),
    /// then the body fails: over HTTP/1.1 the connection is closed before the chunked body
    /// is terminated (clients see an incomplete body); over HTTP/2 the stream is reset.
    DropMidStream,
    /// A `200` SSE stream with the opening events and one text delta ([`PARTIAL_TEXT`]),
    /// then silence until the client goes away (counted by [`FaultyUpstream::cancelled`]).
    Stall,
    /// Chooses by the request's upstream key (`x-api-key`, else `Authorization: Bearer
    /// <key>`, else `api-key`): the first pair whose key matches, otherwise the boxed
    /// default.
    PerKey(Vec<(String, Behaviour)>, Box<Behaviour>),
    /// Chooses by the request body's `model`: the first pair whose model matches,
    /// otherwise the boxed default.
    PerModel(Vec<(String, Behaviour)>, Box<Behaviour>),
    /// The behaviour of the first pair whose path ends the request's path (without its
    /// query), else the default: e.g. `/count_tokens` apart from `/messages`.
    PerPath(Vec<(String, Behaviour)>, Box<Behaviour>),
    /// Waits, then behaves.
    Delay(Duration, Box<Behaviour>),
}

/// The rate-limit headers a [`Behaviour::RateLimited`] answer carries, in the styles of
/// the providers.
#[derive(Debug, Clone, PartialEq)]
pub enum RateLimitFormat {
    /// `retry-after: <seconds>`.
    RetryAfterSeconds(u64),
    /// `retry-after-ms: <milliseconds>` (as the OpenAI SDKs read it).
    RetryAfterMs(u64),
    /// `retry-after: <HTTP-date>`, the given number of seconds from now.
    RetryAfterDate(u64),
    /// Anthropic: `anthropic-ratelimit-requests-remaining: 0` and
    /// `anthropic-ratelimit-requests-reset: <RFC 3339 UTC timestamp>` the given number of
    /// seconds from now (e.g. `2025-01-02T03:04:05Z`).
    Anthropic(u64),
    /// OpenAI: `x-ratelimit-remaining-requests: 0` and `x-ratelimit-reset-requests:
    /// <value>` (a duration such as `1s` or `6m0s`).
    OpenAi(String),
    /// Groq: the OpenAI header names with a Groq duration value (e.g. `2m59.56s`), plus
    /// `retry-after` in whole seconds (the duration rounded up; 1 when it does not parse).
    Groq(String),
    /// Cerebras: `x-ratelimit-remaining-requests-day: 0` and
    /// `x-ratelimit-reset-requests-day: <seconds>` (e.g. `33011.38`).
    Cerebras(f64),
    /// No rate-limit headers at all.
    None,
}

impl Behaviour {
    /// [`Behaviour::Ok`] with `text`.
    pub fn ok(text: impl Into<String>) -> Behaviour {
        Behaviour::Ok { text: text.into() }
    }

    /// [`Behaviour::RateLimited`]: a 429 in the request's dialect with `format`'s headers.
    pub fn rate_limited(format: RateLimitFormat) -> Behaviour {
        Behaviour::RateLimited(format)
    }

    /// [`Behaviour::Status`] with an `application/json` body and no extra headers.
    pub fn json(status: u16, body: &Value) -> Behaviour {
        Behaviour::Status {
            status,
            headers: Vec::new(),
            content_type: "application/json".to_owned(),
            body: body.to_string(),
        }
    }

    /// [`Behaviour::PerKey`] from `(key, behaviour)` pairs and a default.
    pub fn per_key<K: Into<String>>(
        pairs: impl IntoIterator<Item = (K, Behaviour)>,
        default: Behaviour,
    ) -> Behaviour {
        Behaviour::PerKey(
            pairs.into_iter().map(|(k, b)| (k.into(), b)).collect(),
            Box::new(default),
        )
    }

    /// [`Behaviour::PerModel`] from `(model, behaviour)` pairs and a default.
    pub fn per_model<M: Into<String>>(
        pairs: impl IntoIterator<Item = (M, Behaviour)>,
        default: Behaviour,
    ) -> Behaviour {
        Behaviour::PerModel(
            pairs.into_iter().map(|(m, b)| (m.into(), b)).collect(),
            Box::new(default),
        )
    }

    /// [`Behaviour::PerPath`] from `(path suffix, behaviour)` pairs and a default.
    pub fn per_path<P: Into<String>>(
        pairs: impl IntoIterator<Item = (P, Behaviour)>,
        default: Behaviour,
    ) -> Behaviour {
        Behaviour::PerPath(
            pairs.into_iter().map(|(p, b)| (p.into(), b)).collect(),
            Box::new(default),
        )
    }

    /// [`Behaviour::Delay`]: wait `delay`, then behave as `then`.
    pub fn delayed(delay: Duration, then: Behaviour) -> Behaviour {
        Behaviour::Delay(delay, Box::new(then))
    }
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The path with the query, if any (e.g. `/v1/messages?beta=true`).
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The upstream key the request carried (`x-api-key`, else `Authorization: Bearer`,
    /// else `api-key`), as [`Behaviour::PerKey`] sees it.
    pub fn key(&self) -> Option<&str> {
        request_key(&self.headers)
    }
}

/// A running fault-injecting upstream; stops (with every connection) when dropped.
#[derive(Debug)]
pub struct FaultyUpstream {
    url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    // Dropping the sender ends every connection task and every task hyper spawned.
    _shutdown: watch::Sender<()>,
}

/// State shared by the handle, the accept loop, connections and response bodies.
#[derive(Debug)]
struct Shared {
    current: Mutex<Behaviour>,
    queue: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<Recorded>>,
    cancelled: AtomicUsize,
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultyUpstream {
    /// Starts a server on `127.0.0.1:0` answering every request with `b`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (test support: there is nothing better to do).
    pub async fn start(b: Behaviour) -> FaultyUpstream {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("weir-testkit upstream: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("weir-testkit upstream: no local address: {e}"),
        };
        let shared = Arc::new(Shared {
            current: Mutex::new(b),
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            cancelled: AtomicUsize::new(0),
        });
        let (shutdown, shutdown_rx) = watch::channel(());
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        FaultyUpstream {
            url: format!("http://{addr}"),
            shared,
            accept,
            _shutdown: shutdown,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the behaviour for subsequent requests (queued behaviours still come
    /// first).
    pub fn set(&self, b: Behaviour) {
        *lock(&self.shared.current) = b;
    }

    /// Answers the next requests with these behaviours, in order (after any still queued),
    /// then falls back to the current behaviour.
    pub fn queue(&self, bs: Vec<Behaviour>) {
        lock(&self.shared.queue).extend(bs);
    }

    /// How many requests were received (read in full and recorded) so far.
    pub fn hits(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// How many streamed responses lost their client before the stream finished (the
    /// response body was dropped early: the client went away).
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections until aborted; each connection is served in its own task.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<()>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // E.g. out of file descriptors: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (shared, exec) = (shared.clone(), ShutdownExecutor(shutdown.clone()));
        exec.clone().spawn(serve_connection(stream, shared, exec));
    }
}

/// An executor whose tasks end when the upstream is dropped.
#[derive(Clone)]
struct ShutdownExecutor(watch::Receiver<()>);

impl ShutdownExecutor {
    /// Spawns `fut`, cancelled when the upstream is dropped.
    fn spawn<F>(&self, fut: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut shutdown = self.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                // Only fails once the sender (the FaultyUpstream) is gone.
                _ = shutdown.changed() => {}
            }
        });
    }
}

impl<F> hyper::rt::Executor<F> for ShutdownExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.spawn(fut);
    }
}

/// Serves one connection; a [`Behaviour::ResetConnection`] answer aborts it with an RST.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, exec: ShutdownExecutor) {
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Kill::default());
    let io = TokioIo::new(ResettableIo {
        inner: stream,
        kill: kill.clone(),
    });
    let svc_kill = kill.clone();
    let svc =
        service_fn(move |req: Request<Incoming>| handle(shared.clone(), svc_kill.clone(), req));
    let builder = auto::Builder::new(exec);
    let conn = builder.serve_connection(io, svc);
    tokio::select! {
        _ = conn => {}
        // `conn`, and with it the socket, is dropped as this branch wins: the socket then
        // closes with an RST, since the flag was set first.
        _ = kill.notify.notified() => {}
    }
}

/// A connection's kill switch, thrown by a [`Behaviour::ResetConnection`] answer.
#[derive(Default)]
struct Kill {
    /// Close the socket with an RST when it is dropped.
    reset: AtomicBool,
    /// Wakes the connection task to drop the connection.
    notify: Notify,
}

impl Kill {
    /// Resets the connection: set the flag first, then wake the connection task.
    fn throw(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// The connection's socket; when the kill switch was thrown by the time it is dropped, it
/// closes with a TCP RST (zero linger) instead of a FIN.
struct ResettableIo {
    inner: TcpStream,
    kill: Arc<Kill>,
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.kill.reset.load(Ordering::SeqCst) {
            // Best effort: if it fails, the client sees a plain close (EOF) instead.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The API dialect of a request, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Anthropic,
    OpenAi,
}

impl Dialect {
    fn of(path: &str) -> Option<Dialect> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Dialect::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Dialect::Anthropic)
        } else {
            None
        }
    }
}

/// What an answer needs to know about its request.
struct Ctx {
    /// 1-based arrival number, for ids.
    index: usize,
    method: Method,
    path: String,
    dialect: Option<Dialect>,
    model: String,
    stream: bool,
    include_usage: bool,
    input_tokens: u64,
}

/// The upstream key of a request: `x-api-key`, else `Authorization: Bearer`, else
/// `api-key`.
fn request_key(headers: &HeaderMap) -> Option<&str> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(k) = get("x-api-key") {
        return Some(k.trim());
    }
    if let Some(auth) = get("authorization") {
        let auth = auth.trim();
        if auth.len() > 7 && auth[..7].eq_ignore_ascii_case("bearer ") {
            return Some(auth[7..].trim());
        }
    }
    get("api-key").map(str::trim)
}

/// Answers one request: records it, picks a behaviour, and carries it out.
async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Kill>,
    req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // A body that fails to arrive (the client went away) is recorded as empty; hyper
    // drops this future with the connection anyway.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let key = request_key(&parts.headers).map(str::to_owned);
    let recorded = Recorded {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers,
        body,
    };
    let body_len = recorded.body.len() as u64;
    let index = {
        let mut requests = lock(&shared.requests);
        requests.push(recorded);
        requests.len()
    };
    let ctx = Ctx {
        index,
        method: parts.method,
        dialect: Dialect::of(parts.uri.path()),
        path,
        model: json
            .as_ref()
            .and_then(|j| j.get("model"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        stream: json
            .as_ref()
            .and_then(|j| j.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        include_usage: json
            .as_ref()
            .and_then(|j| j.pointer("/stream_options/include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        input_tokens: (body_len / 4).max(1),
    };

    let next = lock(&shared.queue).pop_front();
    let mut behaviour = match next {
        Some(b) => b,
        None => lock(&shared.current).clone(),
    };
    loop {
        behaviour = match behaviour {
            Behaviour::PerKey(pairs, default) => {
                let chosen = key
                    .as_deref()
                    .and_then(|k| pairs.into_iter().find(|(pk, _)| pk == k));
                match chosen {
                    Some((_, b)) => b,
                    None => *default,
                }
            }
            Behaviour::PerModel(pairs, default) => {
                match pairs.into_iter().find(|(m, _)| *m == ctx.model) {
                    Some((_, b)) => b,
                    None => *default,
                }
            }
            Behaviour::PerPath(pairs, default) => {
                let path = ctx.path.split('?').next().unwrap_or_default();
                match pairs.into_iter().find(|(p, _)| path.ends_with(p.as_str())) {
                    Some((_, b)) => b,
                    None => *default,
                }
            }
            Behaviour::Delay(delay, then) => {
                tokio::time::sleep(delay).await;
                *then
            }
            Behaviour::Hang => std::future::pending().await,
            Behaviour::ResetConnection => {
                // The connection task drops the connection (with an RST); this future is
                // dropped with it.
                kill.throw();
                std::future::pending().await
            }
            other => return Ok(respond(other, &ctx, &shared)),
        };
    }
}

/// The response for a behaviour that answers (not `PerKey`, `Delay`, `Hang`, `Reset`).
fn respond(b: Behaviour, ctx: &Ctx, shared: &Arc<Shared>) -> Response<UpBody> {
    let dialect = ctx.dialect;
    match (b, dialect) {
        (
            Behaviour::Status {
                status,
                headers,
                content_type,
                body,
            },
            _,
        ) => {
            let mut r = full(status_or_500(status), &content_type, body);
            for (name, value) in headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    r.headers_mut().append(n, v);
                }
            }
            r
        }
        (Behaviour::Html500, _) => {
            let mut r = full(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/html",
                NGINX_500.to_owned(),
            );
            r.headers_mut()
                .insert("server", HeaderValue::from_static("nginx"));
            r
        }
        (Behaviour::MalformedSse, _) => sse(
            vec![Bytes::from_static(b"data: {not json\n\n")],
            End::Finish,
            None,
            shared,
        ),
        (_, None) => not_found(ctx),
        (Behaviour::Ok { text }, Some(d)) => {
            if ctx.stream {
                sse(stream_events(d, ctx, &text), End::Finish, None, shared)
            } else {
                let body = match d {
                    Dialect::Anthropic => anthropic_message(ctx, &text),
                    Dialect::OpenAi => openai_completion(ctx, &text),
                };
                full(StatusCode::OK, "application/json", body.to_string())
            }
        }
        (Behaviour::SlowDrip { interval }, Some(d)) => sse(
            stream_events(d, ctx, SLOW_DRIP_TEXT),
            End::Finish,
            Some(interval),
            shared,
        ),
        (Behaviour::RateLimited(format), Some(d)) => {
            let body = match d {
                Dialect::Anthropic => json!({
                    "type": "error",
                    "error": {
                        "type": "rate_limit_error",
                        "message": "Number of requests has exceeded your rate limit. Please try again later."
                    }
                }),
                Dialect::OpenAi => json!({
                    "error": {
                        "message": "Rate limit reached for requests. Please try again later.",
                        "type": "rate_limit_exceeded",
                        "param": null,
                        "code": "rate_limit_exceeded"
                    }
                }),
            };
            let mut r = full(
                StatusCode::TOO_MANY_REQUESTS,
                "application/json",
                body.to_string(),
            );
            for (name, value) in rate_limit_headers(&format, SystemTime::now()) {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            r
        }
        (Behaviour::Overloaded529, Some(Dialect::Anthropic)) => full(
            status_or_500(529),
            "application/json",
            anthropic_overloaded().to_string(),
        ),
        (Behaviour::Overloaded529, Some(Dialect::OpenAi)) => full(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            openai_overloaded().to_string(),
        ),
        (Behaviour::OverloadedFirstEvent, Some(d)) => {
            sse(vec![error_event(d)], End::Finish, None, shared)
        }
        (Behaviour::ErrorAfterStart, Some(d)) => {
            let mut events = opening_events(d, ctx);
            events.push(error_event(d));
            sse(events, End::Finish, None, shared)
        }
        (b @ (Behaviour::DropMidStream | Behaviour::Stall), Some(d)) => {
            let mut events = opening_events(d, ctx);
            events.push(text_delta(d, ctx, PARTIAL_TEXT));
            let end = if matches!(b, Behaviour::Stall) {
                End::Stall
            } else {
                End::Error(DROP_GRACE)
            };
            sse(events, end, None, shared)
        }
        // Resolved by `handle` before answering; kept total for safety.
        (
            Behaviour::PerKey(..)
            | Behaviour::PerModel(..)
            | Behaviour::PerPath(..)
            | Behaviour::Delay(..)
            | Behaviour::Hang
            | Behaviour::ResetConnection,
            Some(_),
        ) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "weir-testkit upstream: unresolved behaviour".to_owned(),
        ),
    }
}

const NGINX_500: &str = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn not_found(ctx: &Ctx) -> Response<UpBody> {
    let body = json!({
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": format!("weir-testkit upstream: no route for {} {}", ctx.method, ctx.path)
        }
    });
    full(StatusCode::NOT_FOUND, "application/json", body.to_string())
}

/// A complete (non-streamed) response.
fn full(status: StatusCode, content_type: &str, body: String) -> Response<UpBody> {
    let body = UpBody {
        chunks: VecDeque::from([Bytes::from(body)]),
        interval: None,
        sleep: None,
        end: End::Finish,
        finished: false,
        stream: None,
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// A `200 text/event-stream` response sending `events`, then ending per `end`.
fn sse(
    events: Vec<Bytes>,
    end: End,
    interval: Option<Duration>,
    shared: &Arc<Shared>,
) -> Response<UpBody> {
    let body = UpBody {
        chunks: events.into(),
        interval,
        sleep: None,
        end,
        finished: false,
        stream: Some(shared.clone()),
    };
    let mut r = Response::new(body);
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// How a scripted body ends once its chunks are sent.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Normally.
    Finish,
    /// With a body error after a grace delay (hyper drops the connection or resets the
    /// stream).
    Error(Duration),
    /// Never: pending until dropped.
    Stall,
}

/// A response body: chunks, optionally paced, then an ending. Streamed bodies
/// (`stream: Some`) count a drop before their end as a cancellation.
struct UpBody {
    chunks: VecDeque<Bytes>,
    interval: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    end: End,
    finished: bool,
    stream: Option<Arc<Shared>>,
}

impl UpBody {
    fn complete(&self) -> bool {
        self.finished || (self.chunks.is_empty() && matches!(self.end, End::Finish))
    }

    /// Polls a sleep of `d` (started on first poll); ready once it has elapsed.
    fn wait(&mut self, d: Duration, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if !this.chunks.is_empty() {
            if let Some(interval) = this.interval {
                if this.wait(interval, cx).is_pending() {
                    return Poll::Pending;
                }
            }
            return Poll::Ready(this.chunks.pop_front().map(|c| Ok(Frame::data(c))));
        }
        match this.end {
            End::Finish => {
                this.finished = true;
                Poll::Ready(None)
            }
            End::Error(grace) => {
                if this.wait(grace, cx).is_pending() {
                    return Poll::Pending;
                }
                this.finished = true;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "weir-testkit upstream: stream dropped mid-way",
                ))))
            }
            // Never woken: the body waits to be dropped (client gone, upstream dropped).
            End::Stall => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.complete()
    }

    fn size_hint(&self) -> SizeHint {
        if self.stream.is_none() && matches!(self.end, End::Finish) && !self.finished {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for UpBody {
    fn drop(&mut self) {
        if let Some(shared) = &self.stream {
            if !self.complete() {
                shared.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dialect bodies and events

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn output_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// The text split into deltas: one word (with its trailing whitespace) each.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let (mut in_space, mut seen_word) = (false, false);
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else {
            if in_space && seen_word {
                out.push(&text[start..i]);
                start = i;
            }
            in_space = false;
            seen_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn anthropic_id(ctx: &Ctx) -> String {
    format!("msg_testkit{:06}", ctx.index)
}

fn openai_id(ctx: &Ctx) -> String {
    format!("chatcmpl-testkit{:06}", ctx.index)
}

fn anthropic_message(ctx: &Ctx, text: &str) -> Value {
    json!({
        "id": anthropic_id(ctx),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": ctx.input_tokens, "output_tokens": output_tokens(text)}
    })
}

fn openai_usage(ctx: &Ctx, text: &str) -> Value {
    let out = output_tokens(text);
    json!({
        "prompt_tokens": ctx.input_tokens,
        "completion_tokens": out,
        "total_tokens": ctx.input_tokens + out
    })
}

fn openai_completion(ctx: &Ctx, text: &str) -> Value {
    json!({
        "id": openai_id(ctx),
        "object": "chat.completion",
        "created": now_unix(),
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": openai_usage(ctx, text)
    })
}

fn anthropic_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn openai_data(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn openai_chunk(ctx: &Ctx, choices: Value) -> Value {
    json!({
        "id": openai_id(ctx),
        "object": "chat.completion.chunk",
        "created": now_unix(),
        "model": ctx.model,
        "choices": choices
    })
}

/// The events before any content: Anthropic `message_start` and `content_block_start`;
/// OpenAI a role-only chunk.
fn opening_events(d: Dialect, ctx: &Ctx) -> Vec<Bytes> {
    match d {
        Dialect::Anthropic => vec![
            anthropic_event(
                "message_start",
                &json!({
                    "type": "message_start",
                    "message": {
                        "id": anthropic_id(ctx),
                        "type": "message",
                        "role": "assistant",
                        "model": ctx.model,
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        "usage": {"input_tokens": ctx.input_tokens, "output_tokens": 1}
                    }
                }),
            ),
            anthropic_event(
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""}
                }),
            ),
        ],
        Dialect::OpenAi => vec![openai_data(&openai_chunk(
            ctx,
            json!([{
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null
            }]),
        ))],
    }
}

fn text_delta(d: Dialect, ctx: &Ctx, piece: &str) -> Bytes {
    match d {
        Dialect::Anthropic => anthropic_event(
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece}
            }),
        ),
        Dialect::OpenAi => openai_data(&openai_chunk(
            ctx,
            json!([{
                "index": 0,
                "delta": {"content": piece},
                "logprobs": null,
                "finish_reason": null
            }]),
        )),
    }
}

/// A whole successful stream of `text`.
fn stream_events(d: Dialect, ctx: &Ctx, text: &str) -> Vec<Bytes> {
    let mut events = opening_events(d, ctx);
    for piece in pieces(text) {
        events.push(text_delta(d, ctx, piece));
    }
    match d {
        Dialect::Anthropic => {
            events.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(anthropic_event(
                "message_delta",
                &json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens(text)}
                }),
            ));
            events.push(anthropic_event(
                "message_stop",
                &json!({"type": "message_stop"}),
            ));
        }
        Dialect::OpenAi => {
            events.push(openai_data(&openai_chunk(
                ctx,
                json!([{
                    "index": 0,
                    "delta": {},
                    "logprobs": null,
                    "finish_reason": "stop"
                }]),
            )));
            if ctx.include_usage {
                let mut chunk = openai_chunk(ctx, json!([]));
                chunk["usage"] = openai_usage(ctx, text);
                events.push(openai_data(&chunk));
            }
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
    }
    events
}

fn anthropic_overloaded() -> Value {
    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
}

fn openai_overloaded() -> Value {
    json!({
        "error": {
            "message": "The server is overloaded. Please try again later.",
            "type": "server_error",
            "param": null,
            "code": "overloaded"
        }
    })
}

/// The in-stream overloaded error.
fn error_event(d: Dialect) -> Bytes {
    match d {
        Dialect::Anthropic => anthropic_event("error", &anthropic_overloaded()),
        Dialect::OpenAi => openai_data(&openai_overloaded()),
    }
}

// ---------------------------------------------------------------------------------------
// Rate-limit headers and time formatting

/// The headers of a rate-limit format, at `now`.
fn rate_limit_headers(format: &RateLimitFormat, now: SystemTime) -> Vec<(&'static str, String)> {
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match format {
        RateLimitFormat::RetryAfterSeconds(s) => vec![("retry-after", s.to_string())],
        RateLimitFormat::RetryAfterMs(ms) => vec![("retry-after-ms", ms.to_string())],
        RateLimitFormat::RetryAfterDate(s) => {
            vec![("retry-after", http_date(now_secs.saturating_add(*s)))]
        }
        RateLimitFormat::Anthropic(s) => vec![
            ("anthropic-ratelimit-requests-remaining", "0".to_owned()),
            (
                "anthropic-ratelimit-requests-reset",
                rfc3339(now_secs.saturating_add(*s)),
            ),
        ],
        RateLimitFormat::OpenAi(reset) => vec![
            ("x-ratelimit-remaining-requests", "0".to_owned()),
            ("x-ratelimit-reset-requests", reset.clone()),
        ],
        RateLimitFormat::Groq(reset) => {
            let retry = go_duration_secs(reset).map_or(1, |s| s.ceil().max(0.0) as u64);
            vec![
                ("x-ratelimit-remaining-requests", "0".to_owned()),
                ("x-ratelimit-reset-requests", reset.clone()),
                ("retry-after", retry.to_string()),
            ]
        }
        RateLimitFormat::Cerebras(secs) => vec![
            ("x-ratelimit-remaining-requests-day", "0".to_owned()),
            ("x-ratelimit-reset-requests-day", secs.to_string()),
        ],
        RateLimitFormat::None => Vec::new(),
    }
}

/// A Go-style duration (`2m59.56s`, `1h0m0s`, `250ms`) in seconds.
fn go_duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The civil (proleptic Gregorian) date of a day count since 1970-01-01: (year, month,
/// day). Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Splits Unix seconds into (days, hour, minute, second).
fn split_secs(secs: u64) -> (i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    (days, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix seconds as an RFC 3339 UTC timestamp, e.g. `1994-11-06T08:49:37Z`.
fn rfc3339(secs: u64) -> String {
    let (days, h, m, s) = split_secs(secs);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Unix seconds as an HTTP-date (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, h, m, s) = split_secs(secs);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let month = MONTHS[(month as usize).saturating_sub(1) % 12];
    format!("{weekday}, {day:02} {month} {year:04} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_735_689_600), "Wed, 01 Jan 2025 00:00:00 GMT");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration_secs("1s"), Some(1.0));
        assert_eq!(go_duration_secs("6m0s"), Some(360.0));
        let groq = go_duration_secs("2m59.56s").unwrap_or_default();
        assert!((groq - 179.56).abs() < 1e-9, "{groq}");
        assert_eq!(go_duration_secs("250ms"), Some(0.25));
        assert_eq!(go_duration_secs("1h0m0s"), Some(3600.0));
        assert_eq!(go_duration_secs(""), None);
        assert_eq!(go_duration_secs("soon"), None);
        assert_eq!(go_duration_secs("5x"), None);
    }

    #[test]
    fn text_splits_into_words_losslessly() {
        assert_eq!(pieces("Hello there, world"), ["Hello ", "there, ", "world"]);
        assert_eq!(pieces(" lead  and trail "), [" lead  ", "and ", "trail "]);
        assert!(pieces("").is_empty());
        let text = "ünï cödé  ok";
        assert_eq!(pieces(text).concat(), text);
    }

    #[test]
    fn dialect_by_path() {
        assert_eq!(Dialect::of("/v1/messages"), Some(Dialect::Anthropic));
        assert_eq!(Dialect::of("/v1/chat/completions"), Some(Dialect::OpenAi));
        assert_eq!(
            Dialect::of("/openai/v1/chat/completions"),
            Some(Dialect::OpenAi)
        );
        assert_eq!(Dialect::of("/v1/messages/count_tokens"), None);
        assert_eq!(Dialect::of("/v1/models"), None);
    }

    #[test]
    fn keys_in_precedence_order() {
        let mut h = HeaderMap::new();
        h.insert("api-key", HeaderValue::from_static("azure"));
        assert_eq!(request_key(&h), Some("azure"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk-b"));
        assert_eq!(request_key(&h), Some("sk-b"));
        h.insert("x-api-key", HeaderValue::from_static("sk-a"));
        assert_eq!(request_key(&h), Some("sk-a"));
    }
}
