//! The gateway end to end over real sockets: a Weir server in-process, scripted upstreams
//! on loopback, and an HTTP client playing the SDKs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const KEY: &str = "sk-test-client";

/// What a scripted upstream answers.
#[derive(Clone)]
enum Script {
    /// Status, content type, body.
    Reply(u16, &'static str, String),
    /// SSE events forever, one every 20 ms; sets the flag when the client goes away.
    Endless(Arc<AtomicBool>),
    /// Accepts the request and never answers.
    Hang,
    /// Starts an SSE stream, sends one text delta, then drops the connection.
    DropMidStream,
    /// Starts an SSE stream, then sends SSE comments as fast as it can for 5 s.
    Flood,
    /// Starts an SSE stream, sends one text delta, then goes silent.
    Stall,
    /// Per path: status, content type, body; any other path gets a plain 404.
    Paths(Vec<(&'static str, u16, &'static str, String)>),
}

/// Requests an upstream received: headers and body.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, Vec<u8>)>>>;

/// A scripted upstream: records requests (headers and body), answers per script.
struct Upstream {
    url: String,
    seen: Seen,
    hits: Arc<AtomicUsize>,
}

/// A scripted upstream's whole answer.
fn whole_reply(
    status: u16,
    ctype: &str,
    body: String,
) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    r
}

async fn upstream(script: Script) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (seen2, hits2) = (seen.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (script, seen, hits) = (script.clone(), seen2.clone(), hits2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (script, seen, hits) = (script.clone(), seen.clone(), hits.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes().to_vec();
                        // The path the request went to, for tests that check it.
                        let path = parts.uri.path().parse().unwrap();
                        parts.headers.insert("x-test-path", path);
                        seen.lock().unwrap().push((parts.headers, body));
                        hits.fetch_add(1, Ordering::SeqCst);
                        let resp: Response<
                            http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>,
                        > = match script {
                            Script::Paths(paths) => {
                                let (status, ctype, body) = paths
                                    .iter()
                                    .find(|p| p.0 == parts.uri.path())
                                    .map(|p| (p.1, p.2, p.3.clone()))
                                    .unwrap_or((404, "text/plain", "Not Found".into()));
                                whole_reply(status, ctype, body)
                            }
                            Script::Reply(status, ctype, body) => {
                                let mut r = whole_reply(status, ctype, body);
                                // The upstream's own id for the request, as Anthropic names it.
                                r.headers_mut()
                                    .insert("request-id", "req_scripted_1".parse().unwrap());
                                r
                            }
                            Script::DropMidStream | Script::Stall => {
                                let stall = matches!(script, Script::Stall);
                                let (tx, rx) = tokio::sync::mpsc::channel::<
                                    Result<Frame<Bytes>, std::io::Error>,
                                >(4);
                                tokio::spawn(async move {
                                    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Partial\"}}\n\n";
                                    let _ = tx.send(Ok(Frame::data(Bytes::from(start)))).await;
                                    if stall {
                                        tx.closed().await;
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    let _ = tx
                                        .send(Err(std::io::Error::other("upstream crashed")))
                                        .await;
                                });
                                let body = StreamBody::new(tokio_stream(rx));
                                let mut r = Response::new(body.boxed_unsync());
                                r.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                r
                            }
                            Script::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Script::Flood => {
                                let (tx, rx) = tokio::sync::mpsc::channel::<
                                    Result<Frame<Bytes>, std::io::Error>,
                                >(64);
                                tokio::spawn(async move {
                                    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n";
                                    let _ = tx.send(Ok(Frame::data(Bytes::from(start)))).await;
                                    let until = std::time::Instant::now() + Duration::from_secs(5);
                                    while std::time::Instant::now() < until {
                                        let ping = Bytes::from_static(b": ping\n\n");
                                        if tx.send(Ok(Frame::data(ping))).await.is_err() {
                                            return;
                                        }
                                    }
                                });
                                let body = StreamBody::new(tokio_stream(rx));
                                let mut r = Response::new(body.boxed_unsync());
                                r.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                r
                            }
                            Script::Endless(closed) => {
                                let (tx, rx) = tokio::sync::mpsc::channel::<
                                    Result<Frame<Bytes>, std::io::Error>,
                                >(1);
                                tokio::spawn(async move {
                                    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
                                    if tx.send(Ok(Frame::data(Bytes::from(start)))).await.is_err() {
                                        closed.store(true, Ordering::SeqCst);
                                        return;
                                    }
                                    for _ in 0..1000 {
                                        let ev = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tick \"}}\n\n";
                                        if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err()
                                        {
                                            closed.store(true, Ordering::SeqCst);
                                            return;
                                        }
                                        tokio::time::sleep(Duration::from_millis(20)).await;
                                    }
                                });
                                let body = StreamBody::new(tokio_stream(rx));
                                let mut r = Response::new(body.boxed_unsync());
                                r.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                r
                            }
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { url, seen, hits }
}

/// An mpsc receiver as a stream (without pulling in tokio-stream).
fn tokio_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Starts Weir with a config (the client key is always `KEY`); returns its base URL.
async fn weir(extra_config: &str) -> String {
    weir_with_admin(extra_config).await.0
}

/// Starts Weir; returns the API and admin base URLs.
async fn weir_with_admin(extra_config: &str) -> (String, String) {
    let text = format!(
        "[server]\nmax_request_bytes = 200000\nshutdown_grace = \"1s\"\n[auth]\nadmin_key = \"sk-admin\"\n[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.mock]\nkind = \"mock\"\nstream_delay = \"0ms\"\n{extra_config}"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    tokio::spawn(weir_server::run(
        app,
        listener,
        Some(admin),
        std::future::pending(),
    ));
    (url, admin_url)
}

/// Config for one Anthropic provider `a` at `url` (with `provider_extra` TOML after its
/// table) serving the model `model`.
fn anthropic_route(url: &str, model: &str, provider_extra: &str) -> String {
    format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{url}\"\nkeys = [\"k\"]\n{provider_extra}\
         [[models]]\nname = \"{model}\"\ntargets = [{{ provider = \"a\" }}]\n"
    )
}

/// How a [`raw_sse_upstream`] ends each answer after its chunks.
#[derive(Clone, Copy)]
enum Then {
    /// Ends the chunked body at once.
    Finish,
    /// Waits, then ends the chunked body (an upstream that lingers).
    Linger(Duration),
    /// Waits, then closes the connection without ending the body (a broken body).
    Cut(Duration),
}

/// An upstream speaking raw HTTP/1.1, for what hyper would not let a test upstream do:
/// each request (on any number of connections) gets a 200 `text/event-stream` whose
/// chunked body is `chunks`, one write each, 50 ms apart, then `then`.
async fn raw_sse_upstream(chunks: Vec<String>, then: Then) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let chunks = chunks.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                for (i, c) in chunks.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    out.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
                    if sock.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                match then {
                    Then::Finish => {}
                    Then::Linger(d) => tokio::time::sleep(d).await,
                    Then::Cut(d) => {
                        tokio::time::sleep(d).await;
                        return;
                    }
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    url
}

/// A gateway serving `text` whose config a test can swap as a reload would: its URL and
/// cell (see [`reload_into`]).
async fn reloadable(text: &str) -> (String, Arc<weir_server::Live>) {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let live = weir_server::Live::new(Arc::new(weir_server::build(&cfg, None, text).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(weir_server::run_live(
        live.clone(),
        listener,
        None,
        std::future::pending(),
    ));
    (url, live)
}

/// Reloads `live` with `text`, as the binary does.
fn reload_into(live: &weir_server::Live, text: &str) {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let app = weir_server::rebuild(&cfg, None, text, &live.get()).unwrap();
    live.set(Arc::new(app));
}

/// One OpenAI-kind provider `o` at `url` (its `/v1`) serving `model`; `provider_extra`
/// goes in its table (e.g. `[providers.o.timeouts]`).
fn openai_route(url: &str, model: &str, provider_extra: &str) -> String {
    format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{url}/v1\"\nkeys = [\"k\"]\n{provider_extra}\
         [[models]]\nname = \"{model}\"\ntargets = [{{ provider = \"o\" }}]\n"
    )
}

/// A request's whole response body as text.
async fn post_text(url: &str, path: &str, body: &Value) -> String {
    post(url, path, body, Some(KEY)).await.text().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// GETs `path` on the admin listener with the admin key.
async fn admin_get(admin: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!("{admin}{path}"))
        .header("authorization", "Bearer sk-admin")
        .send()
        .await
        .unwrap()
}

/// The admin listener's `/metrics` text.
async fn metrics_of(admin: &str) -> String {
    admin_get(admin, "/metrics").await.text().await.unwrap()
}

/// `weir_tokens_total`'s figure for `direction` (`input`, `output`) in a `/metrics` text
/// with one series of it (0 when there is none).
/// The admin port's metrics once they hold `want` (a request's figures are recorded with
/// its log line, just after its client's answer or departure), else the last read.
async fn metrics_with(admin: &str, want: &str) -> String {
    let mut seen = String::new();
    for _ in 0..50 {
        seen = metrics_of(admin).await;
        if seen.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

fn tokens_in(metrics: &str, direction: &str) -> u64 {
    let label = format!("direction=\"{direction}\"");
    metrics
        .lines()
        .find(|l| l.starts_with("weir_tokens_total") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn post(url: &str, path: &str, body: &Value, auth: Option<&str>) -> reqwest::Response {
    let mut r = client().post(format!("{url}{path}")).json(body);
    if let Some(k) = auth {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    r.send().await.unwrap()
}

/// POSTs a Responses API request with the client key.
async fn responses(url: &str, body: &Value) -> reqwest::Response {
    post(url, "/v1/responses", body, Some(KEY)).await
}

fn sse_events(text: &str) -> Vec<(Option<String>, String)> {
    let mut d = weir_sse::Decoder::new();
    let mut evs = Vec::new();
    d.feed(text.as_bytes(), &mut evs).unwrap();
    evs.into_iter()
        .map(|e| (e.event().map(str::to_owned), e.data().to_owned()))
        .collect()
}

/// Every answer carries its request id: `req_` and 32 hex digits.
fn assert_request_id(r: &reqwest::Response) {
    let id = r.headers().get("x-request-id").map(|v| v.to_str().unwrap());
    assert!(
        id.is_some_and(|id| id.len() == 36
            && id.starts_with("req_")
            && id[4..].bytes().all(|b| b.is_ascii_hexdigit())),
        "x-request-id: {id:?}"
    );
}

fn a_req(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

fn o_req(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn health_needs_no_key() {
    let url = weir("").await;
    let r = client().get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    // Uptime checkers that probe with HEAD get the same answer, without a body.
    let r = client().head(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_request_id(&r);
    let r = post(&url, "/health", &json!({}), None).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn missing_and_wrong_keys_get_401_in_each_dialect() {
    let url = weir("").await;
    let r = post(&url, "/v1/messages?beta=true", &a_req("mock", false), None).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("mock", false),
        Some("sk-wrong"),
    )
    .await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["message"], "invalid API key");
}

#[tokio::test]
async fn mock_answers_both_dialects_complete_and_streamed() {
    let url = weir("").await;
    let r = post(
        &url,
        "/v1/messages?beta=true",
        &a_req("mock", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "mock");
    assert_eq!(r.headers()["x-weir-model"], "mock");
    assert_request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");

    let r = client()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&a_req("mock", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.headers()["x-weir-provider"], "mock");
    assert_eq!(r.headers()["x-weir-model"], "mock");
    assert_request_id(&r);
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().filter_map(|e| e.0.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));

    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("mock", true),
        Some(KEY),
    )
    .await;
    assert_request_id(&r);
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())),
        "no usage chunk unless asked"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");

    // Asked for, also beside other stream options (OpenAI's `include_obfuscation`).
    for options in [
        json!({"include_usage": true}),
        json!({"include_usage": true, "include_obfuscation": false}),
    ] {
        let mut with_usage = o_req("mock", true);
        with_usage["stream_options"] = options.clone();
        let r = post(&url, "/v1/chat/completions", &with_usage, Some(KEY)).await;
        let events = sse_events(&r.text().await.unwrap());
        let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
        assert_eq!(usage["choices"], json!([]), "{options}");
        assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
}

/// Sends a chunked request (no content-length) in `chunks` over a raw connection and
/// returns the response's status line and body.
async fn chunked(url: &str, path: &str, chunks: &[&[u8]]) -> (String, String) {
    chunked_as(url, path, "chunked", chunks).await
}

/// [`chunked`] with the given `transfer-encoding` (whose last coding must be chunked).
async fn chunked_as(url: &str, path: &str, te: &str, chunks: &[&[u8]]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\n\
         transfer-encoding: {te}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        let mut frame = format!("{:x}\r\n", c.len()).into_bytes();
        frame.extend_from_slice(c);
        frame.extend_from_slice(b"\r\n");
        // The gateway may answer (413) and close before the rest is sent.
        if s.write_all(&frame).await.is_err() {
            break;
        }
        s.flush().await.unwrap();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn slow_headers_silent_connections_and_stalled_bodies_do_not_hold_a_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!(
        "[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n[providers.mock]\nkind = \"mock\"\n"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let mut app = weir_server::build(&cfg, None, &text).unwrap();
    app.header_read_timeout = Duration::from_millis(300);
    app.body_idle_timeout = Duration::from_millis(300);
    app.body_total_timeout = Duration::from_millis(1000);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(weir_server::run(
        Arc::new(app),
        listener,
        None,
        std::future::pending(),
    ));
    let read_all = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    // Silent after connecting, and headers that never finish: closed, nothing answered.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(read_all(silent).await, "");
    assert_eq!(read_all(trickle).await, "");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A body that stops arriving: 408 in the client's dialect.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_all(stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains(r#""type":"error""#), "{answer}");
    assert!(answer.contains("the request body stalled"), "{answer}");
    // A body that trickles, never silent for the idle timeout, still has a deadline.
    let mut trickled = tokio::net::TcpStream::connect(addr).await.unwrap();
    trickled
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickled.write_all(b" ").await.is_err() {
                break;
            }
        }
        read_all(trickled).await
    });
    let answer = dripping.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("the request body took too long"),
        "{answer}"
    );
    // A request in good time is served as ever; its keep-alive connection, idle after,
    // is closed in as long.
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_vec(&a_req("mock", false)).unwrap();
    good.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    good.write_all(&body).await.unwrap();
    let started = Instant::now();
    let answer = read_all(good).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn chunked_bodies_are_joined_and_limited_without_a_declared_length() {
    let (url, _admin) = weir_with_admin("").await;
    // Under the limit, in several pieces: joined and served.
    let req = serde_json::to_vec(&a_req("mock", false)).unwrap();
    let pieces: Vec<&[u8]> = req.chunks(7).collect();
    let (status, body) = chunked(&url, "/v1/messages", &pieces).await;
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(body.contains("\"type\":\"message\""), "{body}");
    // Over the limit (200000 here) with no content-length: 413 in the dialect, once the
    // limit is passed, not after the whole body.
    let piece = vec![b' '; 64 * 1024];
    let many: Vec<&[u8]> = std::iter::repeat_n(piece.as_slice(), 8).collect();
    let (status, body) = chunked(&url, "/v1/messages", &many).await;
    assert!(status.contains(" 413 "), "{status} {body}");
    assert!(body.contains("request_too_large"), "{body}");
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let url = weir("").await;
    // Over the limit, declared: refused before the body is read.
    let big = "x".repeat(300_000);
    let r = client()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The rest of the body is not read, so the connection closes after the answer: it
    // says so, or a client's pool would send its next request into the closing socket.
    assert_eq!(r.headers()["connection"], "close");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
    // A request body read whole keeps the connection, a stream's too.
    let r = post(&url, "/v1/messages", &a_req("gpt-nope", false), Some(KEY)).await;
    assert!(r.headers().get("connection").is_none());
    let r = post(&url, "/v1/messages", &a_req("mock", true), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("connection").is_none());
    // Answered before its body was read (a wrong key, no such endpoint): closed, and said.
    for (path, key) in [("/v1/messages", Some("wrong")), ("/v1/nope", Some(KEY))] {
        let r = post(&url, path, &a_req("mock", false), key).await;
        assert!(r.status().is_client_error());
        assert_eq!(r.headers()["connection"], "close", "{path}");
    }
    // Nothing to read: kept.
    let r = client().get(format!("{url}/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("connection").is_none());

    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body("{\"model\": \"mock\", \"messages\": [}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "invalid request body: messages[0]: expected value at line 1 column 32"
    );
    // A compressed body is refused as such, not as bytes that are not JSON.
    let r = client()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .header("content-encoding", "identity")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "request bodies with content-encoding `gzip` are not supported: send the JSON uncompressed"
    );

    // So is one compressed by a transfer coding before its chunking.
    let (status, body) = chunked_as(&url, "/v1/messages", "gzip, chunked", &[&[0x1f, 0x8b]]).await;
    assert!(status.contains(" 400 "), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["error"]["message"],
        "request bodies with transfer-encoding `gzip` are not supported: send the JSON uncompressed"
    );

    let r = post(&url, "/v1/messages", &a_req("gpt-nope", false), Some(KEY)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(
        v["error"]["message"],
        "model `gpt-nope` is not available; available: mock"
    );

    // A wrong method: 405 naming the right one, in the endpoint's dialect.
    let r = client()
        .get(format!("{url}/v1/messages?beta=true"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "method GET is not allowed on /v1/messages; use POST"
    );
    let r = post(&url, "/v1/models", &json!({}), Some(KEY)).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // A field of the wrong type: named in the message, and OpenAI's `param`.
    let r = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "mock", "max_tokens": "100", "messages": [{"role": "user", "content": "hi"}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "max_tokens", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`max_tokens`: invalid type"),
        "{v}"
    );
}

#[tokio::test]
async fn anthropic_upstream_passes_through_losslessly_and_translates_for_openai_clients() {
    let body = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/anthropic/claude_code_thinking_stream/00.response.body"),
    )
    .unwrap();
    let up = upstream(Script::Reply(200, "text/event-stream", body.clone())).await;
    let url = weir(&format!(
        "[providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-upstream-secret\"]\n\
         [[models]]\nname = \"claude-*\"\ntargets = [{{ provider = \"anthropic\" }}]\n",
        up.url
    ))
    .await;
    let r = client()
        .post(format!("{url}/v1/messages?beta=true"))
        .header("authorization", format!("Bearer {KEY}"))
        .header(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14,context-management-2025-06-27",
        )
        .header("anthropic-version", "2023-06-01")
        .header("cookie", "session=1")
        .json(&a_req("claude-sonnet-4-5", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "anthropic");
    // The upstream's own id for the request, for its support and logs (a stream's too:
    // its headers came before the first event).
    assert_eq!(r.headers()["x-weir-upstream-request-id"], "req_scripted_1");
    let got = sse_events(&r.text().await.unwrap());
    let want = sse_events(&body);
    assert_eq!(
        got, want,
        "same-dialect streams pass through event for event"
    );

    let (headers, sent) = up.seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-api-key"], "sk-upstream-secret");
    assert_eq!(
        headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
    assert!(headers.get("authorization").is_none() && headers.get("cookie").is_none());
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent, a_req("claude-sonnet-4-5", true));

    // The same upstream behind an OpenAI client.
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("claude-sonnet-4-5", true),
        Some(KEY),
    )
    .await;
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.1).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text,
        "This is a Rust workspace: `Cargo.toml`, a README and `crates/`.\n"
    );
}

#[tokio::test]
async fn fallback_moves_to_the_next_target_and_errors_keep_status_without_leaking_keys() {
    let overloaded = upstream(Script::Reply(
        529,
        "application/json",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.into(),
    ))
    .await;
    let unauthorized = upstream(Script::Reply(
        401,
        "application/json",
        r#"{"error":{"message":"Incorrect API key provided: sk-leaky-upstream-key.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k1\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{}\"\nkeys = [\"sk-leaky-upstream-key\"]\n\
         [[models]]\nname = \"fails-over\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [[models]]\nname = \"bad-key\"\ntargets = [{{ provider = \"o\" }}]\n",
        overloaded.url, unauthorized.url
    ))
    .await;
    let r = post(&url, "/v1/messages", &a_req("fails-over", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "mock");
    assert_eq!(overloaded.hits.load(Ordering::SeqCst), 1);

    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("bad-key", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 401);
    // The error says which upstream answered it.
    assert_eq!(r.headers()["x-weir-provider"], "o");
    assert_eq!(r.headers()["x-weir-model"], "bad-key");
    let text = r.text().await.unwrap();
    assert!(!text.contains("sk-leaky-upstream-key"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // Whose key it was is said (the client's was accepted), also when the refusal is
    // given again while the key rests, without asking the upstream.
    for _ in 0..2 {
        let r = post(
            &url,
            "/v1/chat/completions",
            &o_req("bad-key", false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-weir-provider"], "o");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["message"],
            "the upstream refused the gateway's key for provider `o`: Incorrect API key provided: ***.",
            "{v}"
        );
    }
    assert_eq!(unauthorized.hits.load(Ordering::SeqCst), 1);
}

/// An upstream error body may echo the key in any field, not only its message, or in an
/// HTML page whose excerpt is cut inside the key: none of it reaches the client.
#[tokio::test]
async fn upstream_keys_echoed_in_any_error_field_or_a_cut_excerpt_are_scrubbed() {
    let key = "sk-upstream-ECHOED-0123456789";
    let openai = upstream(Script::Reply(
        400,
        "application/json",
        format!(r#"{{"error":{{"message":"bad","type":"invalid_request_error","param":"Bearer {key}","code":"bad {key}"}}}}"#),
    ))
    .await;
    let anthropic = upstream(Script::Reply(
        401,
        "application/json",
        format!(
            r#"{{"type":"error","error":{{"type":"authentication_error {key}","message":"no"}}}}"#
        ),
    ))
    .await;
    // The excerpt of a non-JSON body keeps 200 characters: the key straddles the cut.
    let page = format!(
        "<html>{}{key}</html>",
        "x".repeat(200 - "upstream answered 502: ".len() - 6 + 12)
    );
    let html = upstream(Script::Reply(502, "text/html", page)).await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}\"\nkeys = [\"{key}\"]\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"{key}\"]\n\
         [providers.h]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"{key}\"]\n\
         [routing]\nretries = 0\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\" }}]\n\
         [[models]]\nname = \"a\"\ntargets = [{{ provider = \"a\" }}]\n\
         [[models]]\nname = \"h\"\ntargets = [{{ provider = \"h\" }}]\n",
        openai.url, anthropic.url, html.url
    ))
    .await;
    for (path, req) in [
        ("/v1/chat/completions", o_req("o", false)),
        ("/v1/messages", a_req("a", false)),
        ("/v1/chat/completions", o_req("a", false)),
        ("/v1/messages", a_req("h", false)),
    ] {
        let r = post(&url, path, &req, Some(KEY)).await;
        assert!(r.status().as_u16() >= 400);
        let text = r.text().await.unwrap();
        // Not the key, nor the start of it where an excerpt was cut.
        assert!(!text.contains("sk-upstream"), "{path} {req}: {text}");
    }
}

/// A 5xx or 429 is the upstream's failure whatever its body says: an Anthropic-shaped
/// `invalid_request_error` on a 503 (a proxy's, a compatible service's) moves on to the
/// next target, as the same body from an OpenAI-shaped upstream does; alone, the client
/// gets the upstream's status and type.
#[tokio::test]
async fn a_5xx_blaming_the_request_still_fails_over() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"upstream misconfigured"}}"#;
    let a503 = upstream(Script::Reply(503, "application/json", body.into())).await;
    let a429 = upstream(Script::Reply(429, "application/json", body.into())).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k1\"]\n\
         [providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k1\"]\n\
         [routing]\nretries = 0\n\
         [[models]]\nname = \"fo\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [[models]]\nname = \"fo429\"\ntargets = [{{ provider = \"b\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [[models]]\nname = \"only\"\ntargets = [{{ provider = \"a\" }}]\n",
        a503.url, a429.url
    ))
    .await;
    for model in ["fo", "fo429"] {
        let r = post(&url, "/v1/messages", &a_req(model, false), Some(KEY)).await;
        assert_eq!(r.status(), 200, "{model}");
        assert_eq!(r.headers()["x-weir-provider"], "mock", "{model}");
    }
    let r = post(&url, "/v1/messages", &a_req("only", false), Some(KEY)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

/// An upstream's redirect is not followed (the key would go to another host) nor passed
/// on: it is the target failing, a 502, and the next target serves.
#[tokio::test]
async fn an_upstream_redirect_is_a_failure_that_fails_over() {
    let redirect = upstream(Script::Reply(
        307,
        "text/html",
        "<a href=\"http://elsewhere/\">moved</a>".into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.r]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k1\"]\n\
         [routing]\nretries = 0\n\
         [[models]]\nname = \"fo\"\ntargets = [{{ provider = \"r\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [[models]]\nname = \"only\"\ntargets = [{{ provider = \"r\" }}]\n",
        redirect.url
    ))
    .await;
    let r = post(&url, "/v1/messages", &a_req("fo", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "mock");
    let r = post(&url, "/v1/messages", &a_req("only", false), Some(KEY)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("307"),
        "{v}"
    );
}

/// A target whose dialect cannot honour a field the client sent is passed over, as one
/// lacking a capability is: a route mixing dialects answers the same request the same way
/// whichever target comes first, and 400 only when no target can take it.
#[tokio::test]
async fn a_target_that_cannot_express_a_request_is_passed_over() {
    let anthropic = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"from anthropic"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#.into(),
    ))
    .await;
    let openai = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"from openai"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k1\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{}\"\nkeys = [\"k2\"]\n\
         [[models]]\nname = \"rr\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"o\" }}]\n\
         [[models]]\nname = \"fb\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"o\" }}]\n\
         [[models]]\nname = \"only-a\"\ntargets = [{{ provider = \"a\" }}]\n\
         [[models]]\nname = \"rr-oa\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"o\" }}, {{ provider = \"a\" }}]\n",
        anthropic.url, openai.url
    ))
    .await;
    for model in ["rr", "fb"] {
        for _ in 0..4 {
            let mut req = o_req(model, false);
            req["logprobs"] = json!(true);
            let r = post(&url, "/v1/chat/completions", &req, Some(KEY)).await;
            assert_eq!(r.status(), 200, "{model}");
            assert_eq!(r.headers()["x-weir-provider"], "o");
        }
    }
    // An Anthropic client's MCP servers: only the Anthropic target takes them.
    for _ in 0..4 {
        let mut req = a_req("rr-oa", false);
        req["mcp_servers"] =
            json!([{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}]);
        let r = post(&url, "/v1/messages", &req, Some(KEY)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-weir-provider"], "a");
    }
    // No target can: 400 in the client's dialect, naming the field.
    let mut req = o_req("only-a", false);
    req["logprobs"] = json!(true);
    let r = post(&url, "/v1/chat/completions", &req, Some(KEY)).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`logprobs`"),
        "{v}"
    );
    assert_eq!(anthropic.hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let closed = Arc::new(AtomicBool::new(false));
    let up = upstream(Script::Endless(closed.clone())).await;
    let url = weir(&anthropic_route(&up.url, "slow", "")).await;
    let mut r = post(&url, "/v1/messages", &a_req("slow", true), Some(KEY)).await;
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(r);
    // The upstream notices on its next write; wait for that event (bounded).
    for _ in 0..200 {
        if closed.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream stream was not cancelled after the client left");
}

#[tokio::test]
async fn models_lists_in_the_shape_the_client_speaks() {
    let url = weir("").await;
    let v: Value = client()
        .get(format!("{url}/v1/models"))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "mock");
    let v: Value = client()
        .get(format!("{url}/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
    // A wrong key is told apart from a missing one, in the dialect the listing speaks.
    let r = client()
        .get(format!("{url}/v1/models"))
        .header("x-api-key", "sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["message"], "invalid API key");
    let v: Value = client()
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("missing API key"));
}

#[test]
fn config_errors_are_all_reported_with_positions() {
    let text = "[providers.b]\nkind = \"vertex\"\n[[models]]\nname = \"m\"\nstrategy = \"fastest\"\ntargets = [{ provider = \"nope\" }]\n[[auth.keys]]\nname = \"a\"\nkey = \"k\"\nrpm = 0\n";
    let cfg = weir_server::config::parse(None, text).unwrap();
    let errs: Vec<String> = weir_server::build(&cfg, None, text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    // In file order, though the keys are checked first.
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(
        errs[3].starts_with("10:7: `rpm` must be at least 1"),
        "{}",
        errs[3]
    );
    assert!(
        errs[0].starts_with("2:8: kind = \"vertex\" needs project and region"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("5:12: unknown strategy `fastest`"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("6:25: model `m` targets provider `nope`, which is not configured"),
        "{}",
        errs[2]
    );
}

#[tokio::test]
async fn admin_status_and_metrics_need_the_admin_key_and_hold_no_secrets() {
    let up = upstream(Script::Reply(200, "application/json", r#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":3}}"#.into())).await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-upstream-needle\"]\n[[models]]\nname = \"c\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url
    ))
    .await;
    assert_eq!(
        post(&url, "/v1/messages", &a_req("c", false), Some(KEY))
            .await
            .status(),
        200
    );
    let streamed = post_text(&url, "/v1/chat/completions", &o_req("mock", true)).await;
    assert!(streamed.ends_with("data: [DONE]\n\n"));
    let listed = client()
        .get(format!("{url}/v1/models"))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // Every admin response carries a request id, refusals and /health included.
    for path in ["/metrics", "/health", "/nowhere"] {
        let r = client().get(format!("{admin}{path}")).send().await.unwrap();
        let id = r.headers().get("x-request-id").unwrap().to_str().unwrap();
        assert!(id.starts_with("req_"), "{path}: {id}");
    }
    assert_eq!(
        client()
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(format!("{admin}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let get = |path: &'static str| {
        let admin = admin.clone();
        async move { admin_get(&admin, path).await.text().await.unwrap() }
    };
    // OpenMetrics text, said so (read as Prometheus 0.0.4 text, the counters lose their type).
    let typed = admin_get(&admin, "/metrics").await;
    assert_eq!(
        typed.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(typed.text().await.unwrap().ends_with("# EOF\n"));
    let metrics = get("/metrics").await;
    // Without Redis there is no Redis series (a `weir_redis_up 0` would read as an outage).
    assert!(!metrics.contains("weir_redis_"), "{metrics}");
    assert!(
        metrics
            .contains(r#"weir_requests_total{key="tester",model="c",provider="a",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"weir_tokens_total{key="tester",model="c",provider="a",direction="input"} 7"#
        ),
        "{metrics}"
    );
    // A model listing is counted under the key that asked.
    assert!(
        metrics
            .contains(r#"weir_requests_total{key="tester",model="-",provider="-",status="200"} 1"#),
        "{metrics}"
    );
    // Latencies and streams by client key too.
    assert!(
        metrics.contains(r#"weir_active_streams{key="tester",model="mock",provider="mock"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"weir_time_to_first_token_seconds_count{key="tester",model="mock",provider="mock"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"weir_request_duration_seconds_count{key="tester",model="c",provider="a"} 1"#
        ),
        "{metrics}"
    );
    let status: Value = serde_json::from_str(&get("/status").await).unwrap();
    let providers: Vec<(&str, &str)> = status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(providers, [("a", "anthropic"), ("mock", "mock")]);
    let key = &status["providers"][0]["keys"][0];
    assert_eq!(
        (key["key"].as_str(), key["state"].as_str()),
        (Some("key-1"), Some("ok"))
    );
    assert_eq!(key["requests"], 1);
    let target = &status["targets"][0];
    assert_eq!(target["provider"], "a");
    assert_eq!(target["breaker"], "closed");
    assert_eq!(target["requests"], 1);
    for out in [metrics, status.to_string()] {
        assert!(
            !out.contains("sk-upstream-needle") && !out.contains(KEY) && !out.contains("sk-admin")
        );
    }
}

/// An HTTP/2 connection with no request in flight is closed after the header timeout, as
/// an idle HTTP/1 keep-alive one is: idle connections (which need no key) cannot hold file
/// descriptors for good by answering pings.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!(
        "[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n[providers.mock]\nkind = \"mock\"\nstream_delay = \"100ms\"\n"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let mut app = weir_server::build(&cfg, None, &text).unwrap();
    app.header_read_timeout = Duration::from_millis(300);
    // Shorter than the mock's gaps between events: an answer waiting on its upstream is
    // not waiting on the client, and is not cut for it.
    app.client_stall_timeout = Duration::from_millis(60);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(weir_server::run(
        Arc::new(app),
        listener,
        Some(admin),
        std::future::pending(),
    ));
    // The preface and an empty SETTINGS frame, then nothing: on the API port and the
    // admin port, closed.
    for (port, at) in [("API", addr), ("admin", admin_addr)] {
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(
            closed.is_ok(),
            "an idle HTTP/2 connection to the {port} port was kept open"
        );
    }
    // A stream longer than the idle period is in flight all along: never cut.
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut req = a_req("mock", true);
    req["messages"][0]["content"] = json!("one two three four five six seven eight nine ten");
    let started = std::time::Instant::now();
    let r = c
        .post(format!("http://{addr}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&req)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(600),
        "the stream was too short to tell"
    );
    assert!(text.contains("message_stop"), "{text}");
}

/// An HTTP/2 client that keeps its receive window at zero is sent no byte of an answer,
/// and hyper waits for window for ever: before any key is checked, such streams (a 401 or
/// `/health`) held their connection open for good. A connection whose answers all wait
/// for the client for the stall period (`timeouts.idle`) is closed.
#[tokio::test]
async fn an_http2_connection_whose_client_takes_no_data_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!("[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n");
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let mut app = weir_server::build(&cfg, None, &text).unwrap();
    // Long enough that only the stall can close the connection within the test.
    app.header_read_timeout = Duration::from_secs(60);
    app.client_stall_timeout = Duration::from_millis(300);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(weir_server::run(
        Arc::new(app),
        listener,
        None,
        std::future::pending(),
    ));
    // Frames: the preface; SETTINGS with INITIAL_WINDOW_SIZE (0x4) = 0; HEADERS on stream
    // 1 (END_STREAM | END_HEADERS) for `POST /v1/messages` with no key (HPACK: :method
    // POST, :scheme http, :path and :authority as literals).
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4, 0, 0, 0, 0]);
    let mut block = vec![0x83, 0x86, 0x44, 12];
    block.extend_from_slice(b"/v1/messages");
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    out.extend_from_slice(&[
        0,
        0,
        u8::try_from(block.len()).unwrap(),
        0x1,
        0x5,
        0,
        0,
        0,
        1,
    ]);
    out.extend_from_slice(&block);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The request comes a moment after the preface: the connection was idle when first
    // watched, and is watched again for a stall all the same.
    let (preface, request) = out.split_at(24 + 15);
    s.write_all(preface).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "a connection whose window stayed shut was kept open"
    );
    // The answer's headers went (a HEADERS frame for stream 1), its body could not.
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len =
            usize::from(got[at]) << 16 | usize::from(got[at + 1]) << 8 | usize::from(got[at + 2]);
        frames.push((
            got[at + 3],
            u32::from_be_bytes([got[at + 5], got[at + 6], got[at + 7], got[at + 8]]),
        ));
        at += 9 + len;
    }
    assert!(frames.contains(&(0x1, 1)), "no answer headers: {frames:?}");
    assert!(
        !frames.contains(&(0x0, 1)),
        "data sent past a shut window: {frames:?}"
    );
}

/// Request bodies held at once are bounded (`server.max_buffered_bytes`): a body that
/// would pass the bound gets 503 with retry-after, in the client's dialect, and the bytes
/// are given back once a request is answered.
#[tokio::test]
async fn request_bodies_held_at_once_are_bounded() {
    let hang = upstream(Script::Hang).await;
    let text = format!(
        "[server]\nmax_request_bytes = 4000\nmax_buffered_bytes = 6000\n\
         [[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.mock]\nkind = \"mock\"\nstream_delay = \"0ms\"\n\
         [providers.slow]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [providers.slow.timeouts]\nfirst_byte = \"1500ms\"\n\
         [[models]]\nname = \"hangs\"\ntargets = [{{ provider = \"slow\" }}]\n",
        hang.url
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    let buffered = app.buffered.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(weir_server::run(
        app,
        listener,
        None,
        std::future::pending(),
    ));
    // About 3,500 bytes each: one is held while its upstream hangs, a second would pass
    // 6,000.
    let big = |model: &str| {
        let mut r = a_req(model, false);
        r["messages"][0]["content"] = json!("x".repeat(3400));
        r
    };
    let held = tokio::spawn({
        let url = url.clone();
        let body = big("hangs");
        async move { post(&url, "/v1/messages", &body, Some(KEY)).await.status() }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while buffered.held() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first body was never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = post(&url, "/v1/messages", &big("mock"), Some(KEY)).await;
    // (Anthropic's status for overloaded is 529; OpenAI clients get 503.)
    assert_eq!(r.status(), 529);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_buffered_bytes"),
        "{v}"
    );
    // The OpenAI dialect says it in its own shape.
    let mut o = o_req("mock", false);
    o["messages"][0]["content"] = json!("x".repeat(3400));
    let r = post(&url, "/v1/chat/completions", &o, Some(KEY)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    // A small body still fits beside the held one.
    let r = post(&url, "/v1/messages", &a_req("mock", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    // Once the first is answered (its upstream timed out), its bytes are given back.
    assert_eq!(held.await.unwrap(), 504);
    assert_eq!(buffered.held(), 0);
    let r = post(&url, "/v1/messages", &big("mock"), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    // A body is held as its bytes arrive, not as declared: clients declaring large bodies
    // and sending little cannot take the bound from the others.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(partial_body(&url, 3900).await);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while buffered.held() < 16 {
        assert!(std::time::Instant::now() < deadline, "{}", buffered.held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(buffered.held(), 16);
    let r = post(&url, "/v1/messages", &big("mock"), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    drop(slow);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while buffered.held() > 0 {
        assert!(std::time::Instant::now() < deadline, "{}", buffered.held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A connection to Weir at `url` that sent a `/v1/messages` request declaring a body of
/// `declared` bytes and only its first 8.
async fn partial_body(url: &str, declared: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    c.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\
             content-type: application/json\r\ncontent-length: {declared}\r\n\r\n{{\"model\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c
}

/// A client that leaves with its body half sent abandoned its request (499): it sent no
/// bad one (400).
#[tokio::test]
async fn a_body_cut_by_the_client_leaving_is_an_abandoned_request() {
    let (url, admin) = weir_with_admin("").await;
    let c = partial_body(&url, 500).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);
    let abandoned = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("weir_requests_total") && l.contains(r#"status="499""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let until = |n: u64| {
        let admin = admin.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let m = metrics_of(&admin).await;
                if abandoned(&m) >= n {
                    assert!(!m.contains(r#"status="400""#), "{m}");
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{m}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until(1).await;

    // HTTP/2: the client resets its stream (RST_STREAM, CANCEL) with the body half sent.
    // Frames: the preface; empty SETTINGS; HEADERS on stream 1 (END_HEADERS, not
    // END_STREAM: a body follows) for `POST /v1/messages` with the key (HPACK: :method
    // POST, :scheme http, literals); 12 bytes of DATA; RST_STREAM.
    use tokio::io::AsyncWriteExt;
    let frame = |ty: u8, flags: u8, payload: &[u8]| {
        let n = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut f = vec![n[1], n[2], n[3], ty, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    };
    let literal = |block: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        block.push(0);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value);
    };
    let mut block = vec![0x83, 0x86];
    literal(&mut block, b":path", b"/v1/messages");
    literal(&mut block, b":authority", b"localhost");
    literal(&mut block, b"x-api-key", KEY.as_bytes());
    literal(&mut block, b"content-length", b"1000");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    out.extend(frame(0x1, 0x4, &block));
    out.extend(frame(0x0, 0, br#"{"model":"m""#));
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(&frame(0x3, 0, &8u32.to_be_bytes()))
        .await
        .unwrap();
    until(2).await;
    drop(s);
}

/// The errors building a config gives (it must not build), one per line, and how many.
fn build_errors(text: &str) -> (String, usize) {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let Err(errors) = weir_server::build(&cfg, None, text) else {
        panic!("built");
    };
    let all = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    (all, errors.len())
}

/// Starts Weir on a whole config of its own (its `[server]` section included), without an
/// admin port; returns its base URL.
async fn weir_own(text: &str) -> String {
    let cfg = weir_server::config::parse(None, text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, text).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(weir_server::run(
        app,
        listener,
        None,
        std::future::pending(),
    ));
    url
}

/// A provider whose base_url names the gateway itself by an address its config check
/// cannot know (here: the config's listen is another port; in life, the machine's own
/// address or a name for it): the request that comes back is refused (508), not forwarded
/// again until connections run out, and a route with another target is served by it.
#[tokio::test]
async fn a_request_that_comes_back_to_the_gateway_is_refused_not_forwarded_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let text = format!(
        "[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.mock]\nkind = \"mock\"\nstream_delay = \"0ms\"\n\
         [providers.itself]\nkind = \"anthropic\"\nbase_url = \"{url}\"\nkeys = [\"{KEY}\"]\n\
         [[models]]\nname = \"loop\"\ntargets = [{{ provider = \"itself\" }}]\n\
         [[models]]\nname = \"loop-then-mock\"\ntargets = [{{ provider = \"itself\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    tokio::spawn(weir_server::run(
        app,
        listener,
        None,
        std::future::pending(),
    ));
    let body = |model: &str| json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&url, "/v1/messages", &body("loop"), Some(KEY)).await;
    assert_eq!(r.status(), 508);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("came back to the gateway"),
        "{v}"
    );
    let r = post(&url, "/v1/messages", &body("loop-then-mock"), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    // A client's own Via (another proxy's) is no loop.
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("via", "1.1 proxy.example, 1.1 weir-0000000000000000")
        .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_buffered_bound_below_the_request_limit_is_a_config_error() {
    let text = "[server]\nmax_request_bytes = 4000\nmax_buffered_bytes = 3000\n";
    let (all, _) = build_errors(text);
    assert!(
        all.contains("max_buffered_bytes (3000) is below server.max_request_bytes (4000)"),
        "{all}"
    );
    assert!(all.contains("3:"), "not placed at its line: {all}");
}

#[test]
fn an_admin_port_on_the_api_port_and_an_empty_model_name_are_config_errors() {
    let (all, _) = build_errors(
        "[server]\nlisten = \"127.0.0.1:4100\"\nadmin_listen = \"0.0.0.0:4100\"\n\
         [auth]\nadmin_key = \"sk-admin\"\n[[auth.keys]]\nname = \"t\"\nkey = \"sk-t\"\n\
         [providers.mock]\nkind = \"mock\"\n\
         [[models]]\nname = \"\"\ntargets = [{ provider = \"mock\" }]\n",
    );
    assert!(
        all.contains("server.admin_listen must differ from server.listen"),
        "{all}"
    );
    assert!(all.contains("a [[models]] name is empty"), "{all}");
    // `[::]` takes IPv4 addresses too (and `0.0.0.0` then clashes with it, whichever is
    // the admin port); `localhost` is 127.0.0.1.
    for (listen, admin) in [
        ("127.0.0.1:4100", "[::]:4100"),
        ("[::]:4100", "0.0.0.0:4100"),
        ("0.0.0.0:4100", "[::]:4100"),
        ("localhost:4100", "0.0.0.0:4100"),
        ("127.0.0.1:4100", "localhost:4100"),
        ("LOCALHOST:4100", "127.0.0.1:4100"),
        ("[::ffff:127.0.0.1]:4100", "127.0.0.1:4100"),
    ] {
        let (all, _) = build_errors(&format!(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\
             [auth]\nadmin_key = \"sk-admin\"\n[[auth.keys]]\nname = \"t\"\nkey = \"sk-t\"\n",
        ));
        assert!(
            all.contains("server.admin_listen must differ from server.listen"),
            "{listen} / {admin}: {all}"
        );
    }
}

#[test]
fn connection_caps_and_a_request_limit_of_zero_are_config_errors() {
    let text = "[server]\nmax_connections = 0\nmax_connections_per_ip = 0\nmax_request_bytes = 0\n";
    let (all, _) = build_errors(text);
    assert!(
        all.contains("2:1: server.max_connections must be at least 1"),
        "{all}"
    );
    assert!(
        all.contains("3:1: server.max_connections_per_ip must be at least 1"),
        "{all}"
    );
    assert!(
        all.contains("4:1: server.max_request_bytes must be at least 1"),
        "{all}"
    );
}

/// A request still waiting on its upstream when the shutdown grace period ends gets the
/// dialect's overloaded error with retry-after (as a cut stream ends with one), not an
/// empty reply.
#[tokio::test]
async fn a_request_waiting_on_its_upstream_at_the_end_of_the_grace_period_gets_an_error() {
    let hang = upstream(Script::Hang).await;
    let text = format!(
        "[server]\nshutdown_grace = \"300ms\"\n[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.slow]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"hangs\"\ntargets = [{{ provider = \"slow\" }}]\n",
        hang.url
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_server::run(app, listener, None, async move {
        let _ = stopped.await;
    }));
    let waiting = [
        ("/v1/messages", a_req("hangs", false)),
        ("/v1/messages", a_req("hangs", true)),
        ("/v1/messages/count_tokens", a_req("hangs", false)),
        ("/v1/chat/completions", o_req("hangs", false)),
    ]
    .map(|(path, body)| {
        let url = url.clone();
        tokio::spawn(async move { post(&url, path, &body, Some(KEY)).await })
    });
    while hang.hits.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    for (i, w) in waiting.into_iter().enumerate() {
        let r = w.await.unwrap();
        assert_eq!(r.status(), if i == 3 { 503 } else { 529 }, "request {i}");
        assert_eq!(r.headers()["retry-after"], "1");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shutting down"),
            "{v}"
        );
    }
    server.await.unwrap().unwrap();
}

/// During shutdown the admin port stays open while a stream drains (its metrics show
/// the stream), and closes when the drain is over.
#[tokio::test]
async fn the_admin_port_answers_while_streams_drain_and_closes_after() {
    let text = format!(
        "[server]\nshutdown_grace = \"10s\"\n[auth]\nadmin_key = \"sk-admin\"\n\
         [[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.mock]\nkind = \"mock\"\nstream_delay = \"150ms\"\n"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_server::run(app, listener, Some(admin), async move {
        let _ = stopped.await;
    }));
    let r = post(&url, "/v1/messages", &a_req("mock", true), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    stop.send(()).unwrap();
    // The API port stops taking connections; the admin port still answers.
    let mut refused = false;
    for _ in 0..100 {
        if client().get(format!("{url}/health")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the API port still accepts");
    let m = metrics_of(&admin_url).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("weir_active_streams{") && l.ends_with(" 1")),
        "{m}"
    );
    assert_eq!(admin_get(&admin_url, "/status").await.status(), 200);
    // The stream ends whole; then the server returns and the admin port is closed.
    let body = r.text().await.unwrap();
    assert!(body.contains("message_stop"), "{body}");
    server.await.unwrap().unwrap();
    assert!(client()
        .get(format!("{admin_url}/status"))
        .send()
        .await
        .is_err());
}

/// With several runtimes, the one holding the admin port keeps it open until the others'
/// drains are over too, though its own connections are done.
#[tokio::test]
async fn the_admin_port_stays_open_until_the_other_runtimes_have_drained() {
    let text = "[auth]\nadmin_key = \"sk-admin\"\n[providers.mock]\nkind = \"mock\"\n";
    let cfg = weir_server::config::parse(None, text).unwrap();
    let live = weir_server::Live::new(Arc::new(weir_server::build(&cfg, None, text).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (others_done, others) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_server::run_live_until(
        live,
        listener,
        Some(admin),
        async move {
            let _ = stopped.await;
        },
        async move {
            let _ = others.await;
        },
    ));
    stop.send(()).unwrap();
    // This runtime has nothing in flight; another is still draining.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin_get(&admin_url, "/status").await.status(), 200);
    assert!(!server.is_finished());
    others_done.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(client()
        .get(format!("{admin_url}/status"))
        .send()
        .await
        .is_err());
}

/// Past `max_connections`, a new client connection waits in the kernel's queue until one
/// closes; the admin port is not counted and still answers.
#[tokio::test]
async fn past_max_connections_a_new_connection_waits_for_one_to_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!(
        "[server]\nmax_connections = 2\n[auth]\nadmin_key = \"sk-admin\"\n\
         [[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n[providers.mock]\nkind = \"mock\"\n"
    );
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = Arc::new(weir_server::build(&cfg, None, &text).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    tokio::spawn(weir_server::run(
        app,
        listener,
        Some(admin),
        std::future::pending(),
    ));
    let health = |mut c: tokio::net::TcpStream| async move {
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Two connections that send nothing hold the two places.
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(health(third));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    assert_eq!(admin_get(&admin_url, "/status").await.status(), 200);
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the third connection is served once one closes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Past `max_connections_per_ip`, a new connection from that address is closed at once;
/// once one of its connections closes, the address is served again.
#[tokio::test]
async fn past_max_connections_per_ip_a_new_connection_from_that_address_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!(
        "[server]\nmax_connections_per_ip = 2\n[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
         [providers.mock]\nkind = \"mock\"\n"
    );
    let url = weir_own(&text).await;
    let addr = url.trim_start_matches("http://").to_owned();
    async fn health(c: &mut tokio::net::TcpStream) -> String {
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("an answer or a close")
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        health(&mut third).await,
        "",
        "a third connection was served"
    );
    // The held connections are served as usual, and stay open.
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let answer = health(&mut again).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
}

/// `server.cors_origins`: a browser app of an allowed origin gets its preflight answered
/// and can read answers (errors and streams included); another origin gets nothing that
/// lets it read them.
#[tokio::test]
async fn browser_apps_of_allowed_origins_can_call_the_api() {
    let text = format!(
        "[server]\ncors_origins = [\"http://localhost:3000\", \"https://app.example.com/\"]\n\
         [[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n[providers.mock]\nkind = \"mock\"\n"
    );
    let url = weir_own(&text).await;
    let c = client();
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, format!("{url}/v1/messages"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "x-api-key,content-type,anthropic-version",
            )
            .send()
    };
    let r = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(
        h["access-control-allow-headers"],
        "x-api-key,content-type,anthropic-version"
    );
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_ne!(r.status(), 204);
    // What a cache keeps depends on the origin, also for an answer without CORS headers.
    assert_eq!(r.headers()["vary"], "origin");
    for (key, status) in [(KEY, 200), ("sk-wrong", 401)] {
        let r = c
            .post(format!("{url}/v1/messages"))
            .header("origin", "https://app.example.com")
            .header("x-api-key", key)
            .json(&a_req("mock", true))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap();
        assert!(exposed.contains("x-request-id") && exposed.contains("x-should-retry"));
    }
    // Without cors_origins, none.
    let plain = weir("").await;
    let r = c
        .post(format!("{plain}/v1/messages"))
        .header("origin", "http://localhost:3000")
        .header("x-api-key", KEY)
        .json(&a_req("mock", false))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn cors_origins_must_be_origins() {
    let text = "[server]\ncors_origins = [\"http://ok:3000\", \"localhost:3000\", \"https://a.example/path\", \"*\"]\n";
    let (all, count) = build_errors(text);
    assert!(all.contains("`localhost:3000` is not an origin"), "{all}");
    assert!(
        all.contains("`https://a.example/path` is not an origin"),
        "{all}"
    );
    assert_eq!(count, 2, "{all}");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let url = weir("").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&a_req("mock", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    // HEAD answers carry no body (over HTTP/2 one is a protocol error to the client).
    for path in ["/health", "/v1/models"] {
        let r = c
            .head(format!("{url}{path}"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.version(), r.status().as_u16()),
            (http::Version::HTTP_2, 200),
            "{path}"
        );
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    let r = c
        .delete(format!("{url}/v1/models/mock"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    // A GET of no model at all: not found, not a method refused.
    let r = c
        .get(format!("{url}/v1/models/"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_with_a_clear_error_and_falls_back() {
    let hang = upstream(Script::Hang).await;
    let url = weir(&format!(
        "[providers.slow]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n[providers.slow.timeouts]\nconnect = \"1s\"\nfirst_byte = \"300ms\"\nidle = \"1s\"\ntotal = \"5s\"\n\
         [[models]]\nname = \"hangs\"\ntargets = [{{ provider = \"slow\" }}]\n\
         [[models]]\nname = \"hangs-then-mock\"\ntargets = [{{ provider = \"slow\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [providers.slow2]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n[providers.slow2.timeouts]\nconnect = \"1s\"\nfirst_byte = \"300ms\"\nidle = \"1s\"\ntotal = \"5s\"\n\
         [[models]]\nname = \"both-hang\"\ntargets = [{{ provider = \"slow\" }}, {{ provider = \"slow2\" }}]\n\
         [providers.short]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\ntimeouts = {{ total = \"300ms\", first_byte = \"30s\" }}\n\
         [[models]]\nname = \"short\"\ntargets = [{{ provider = \"short\" }}]\n",
        hang.url, hang.url, hang.url
    ))
    .await;
    // The call's total time ran out first: said so, with no advice about first_byte.
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("short", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "the call's total time (300ms: [timeouts] total, or what the request had left of it) ran out before the upstream's response headers"
    );
    // Every target timed out: a timeout, saying once why a whole answer's did.
    let r = post(&url, "/v1/messages", &a_req("both-hang", false), Some(KEY)).await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");
    assert_eq!(
        v["error"]["message"],
        "all targets timed out: slow (both-hang): timed out; slow2 (both-hang): timed out (a whole answer's headers come once all of it is written: stream, or raise [timeouts] first_byte for long answers)"
    );
    let before = hang.hits.load(Ordering::SeqCst);
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("hangs", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 504);
    // Asked again, it would be written (and billed) again, to time out the same way: asked
    // once, and the client told not to ask again.
    assert_eq!(hang.hits.load(Ordering::SeqCst) - before, 1);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.json().await.unwrap();
    // A whole answer's headers come once it is written: the error says what to do.
    assert_eq!(
        v["error"]["message"],
        "the upstream sent no response headers within 300ms (a whole answer's headers come once all of it is written: stream, or raise [timeouts] first_byte for long answers)"
    );
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("hangs", true),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 504);
    assert!(r.headers().get("x-should-retry").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "the upstream sent no response headers within 300ms"
    );
    let r = post(
        &url,
        "/v1/messages",
        &a_req("hangs-then-mock", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "mock");
}

/// An Anthropic-compatible service without a counter (404 or 405 there): the count is
/// estimated, not the upstream's refusal passed on.
#[tokio::test]
async fn count_tokens_estimates_for_a_service_without_a_counter() {
    for status in [404, 405] {
        let up = upstream(Script::Reply(
            status,
            "application/json",
            r#"{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}"#.into(),
        ))
        .await;
        let url = weir(&anthropic_route(&up.url, "c", "")).await;
        let body = json!({"model": "c", "messages": [{"role": "user", "content": "count me"}]});
        for _ in 0..2 {
            let r = post(&url, "/v1/messages/count_tokens", &body, Some(KEY)).await;
            assert_eq!(r.status(), 200, "{status}");
            assert_eq!(r.headers()["x-weir-provider"], "estimate");
            let v: Value = r.json().await.unwrap();
            assert!(v["input_tokens"].as_u64().unwrap() > 0);
        }
        // Found to have no counter, the service is not asked again.
        assert_eq!(up.hits.load(Ordering::SeqCst), 1, "{status}");
    }
    // Anthropic's 404 for a model it does not know is the client's to hear.
    let up = upstream(Script::Reply(
        404,
        "application/json",
        r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-sonnet-9"}}"#
            .into(),
    ))
    .await;
    let url = weir(&anthropic_route(&up.url, "c", "")).await;
    let body = json!({"model": "c", "messages": [{"role": "user", "content": "count me"}]});
    let r = post(&url, "/v1/messages/count_tokens", &body, Some(KEY)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "model: claude-sonnet-9", "{v}");
}

/// An image is estimated at a fixed count, not by its base64 (40 KB of it is not 10,000
/// tokens, nor 5 MB 1.3 million): Claude Code reads the count to decide when to compact.
#[tokio::test]
async fn count_tokens_estimates_an_image_by_count_not_by_bytes() {
    let up = upstream(Script::Reply(
        404,
        "application/json",
        r#"{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}"#.into(),
    ))
    .await;
    let url = weir(&anthropic_route(&up.url, "c", "")).await;
    let data = "A".repeat(40_000);
    let body = json!({"model": "c", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "what is this?"}]}]});
    let r = post(&url, "/v1/messages/count_tokens", &body, Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "estimate");
    let v: Value = r.json().await.unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    assert!(
        (weir_model::IMAGE_TOKENS..weir_model::IMAGE_TOKENS + 200).contains(&n),
        "{v}"
    );
}

#[tokio::test]
async fn count_tokens_asks_an_anthropic_target_and_estimates_otherwise() {
    let up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"input_tokens":42}"#.into(),
    ))
    .await;
    let narrow = "[[auth.keys]]\nname = \"narrow\"\nkey = \"sk-narrow\"\nmodels = [\"mock\"]\n\
                  [[auth.keys]]\nname = \"slow\"\nkey = \"sk-slow\"\nrpm = 1\n";
    // (A count is not a request under the key's limits: most are estimates made here, and
    // Claude Code counts often.)
    let (url, admin) =
        weir_with_admin(&format!("{}{narrow}", anthropic_route(&up.url, "c", ""))).await;
    let body =
        json!({"model": "c", "messages": [{"role": "user", "content": "count me"}], "system": "s"});
    let r = post(&url, "/v1/messages/count_tokens", &body, Some(KEY)).await;
    assert_eq!(r.headers()["x-weir-provider"], "a");
    assert_eq!(r.headers()["x-weir-model"], "c");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": 42}));
    let sent: Value = serde_json::from_slice(&up.seen.lock().unwrap()[0].1).unwrap();
    assert_eq!(
        sent, body,
        "forwarded as sent: no max_tokens or stream added"
    );

    let mut to_mock = body.clone();
    to_mock["model"] = json!("mock");
    let r = post(&url, "/v1/messages/count_tokens", &to_mock, Some(KEY)).await;
    assert_eq!(r.headers()["x-weir-provider"], "estimate");
    assert_eq!(r.headers()["x-weir-model"], "mock");
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);

    // A key's model allow-list holds for counting too: refused before any upstream call.
    let r = post(&url, "/v1/messages/count_tokens", &body, Some("sk-narrow")).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(up.seen.lock().unwrap().len(), 1);
    let r = post(
        &url,
        "/v1/messages/count_tokens",
        &to_mock,
        Some("sk-narrow"),
    )
    .await;
    assert_eq!(r.status(), 200);
    // A name no route serves is a 404 listing what the key may use, not a refusal.
    let mut typo = a_req("mokc", false);
    let r = post(&url, "/v1/messages", &typo, Some("sk-narrow")).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "model `mokc` is not available; available: mock"
    );
    typo["model"] = json!("c");
    let r = post(&url, "/v1/messages", &typo, Some("sk-narrow")).await;
    assert_eq!(r.status(), 403);

    for _ in 0..2 {
        let r = post(&url, "/v1/messages/count_tokens", &to_mock, Some("sk-slow")).await;
        assert_eq!(r.status(), 200);
    }
    let r = post(&url, "/v1/messages", &a_req("mock", false), Some("sk-slow")).await;
    assert_eq!(r.status(), 200);
    // A count is not input consumed: no tokens in the metrics (the message's are).
    let m = metrics_of(&admin).await;
    let tokens: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("weir_tokens_total{"))
        .collect();
    assert!(!tokens.is_empty(), "{m}");
    assert!(
        tokens.iter().all(|l| l.contains(r#"provider="mock""#)),
        "{tokens:?}"
    );
    // A tool input nested deeper than serde_json's limit is raw JSON to Weir: counted,
    // not a 500.
    let deep = format!(
        r#"{{"model":"c","messages":[{{"role":"user","content":"q"}},{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"t","input":{{"a":{}0{}}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}}]}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = client()
        .post(format!("{url}/v1/messages/count_tokens"))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_the_stream_with_an_error_in_each_dialect() {
    let up = upstream(Script::DropMidStream).await;
    let url = weir(&anthropic_route(&up.url, "dies", "")).await;
    let text = post_text(&url, "/v1/messages", &a_req("dies", true)).await;
    let events = sse_events(&text);
    let last = events.last().unwrap();
    assert_eq!(last.0.as_deref(), Some("error"), "{text}");
    let v: Value = serde_json::from_str(&last.1).unwrap();
    assert_eq!(v["type"], "error");
    assert!(events.iter().any(|e| e.1.contains("Partial")));

    let text = post_text(&url, "/v1/chat/completions", &o_req("dies", true)).await;
    let events = sse_events(&text);
    let v: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert!(v["error"]["message"].as_str().is_some(), "{text}");
    assert!(text.contains("Partial"));
}

/// An upstream's error event mid-stream ends the stream there, though the upstream goes
/// on to `[DONE]` (vLLM, Azure): the client never sees the message closed as if it ended
/// well after the error.
#[tokio::test]
async fn an_error_event_ends_the_stream_though_the_upstream_sends_done_after_it() {
    let body = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
        "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n",
        "data: [DONE]\n\n",
    );
    let up = upstream(Script::Reply(200, "text/event-stream", body.into())).await;
    let (url, admin) = weir_with_admin(&openai_route(&up.url, "o", "")).await;
    let text = post_text(&url, "/v1/messages", &a_req("o", true)).await;
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("error"), "{text}");
    assert!(
        text.contains("Hel") && text.contains("processing your request"),
        "{text}"
    );
    assert!(
        !text.contains("end_turn") && !text.contains("message_stop"),
        "{text}"
    );
    let text = post_text(&url, "/v1/chat/completions", &o_req("o", true)).await;
    let last: Value = serde_json::from_str(&sse_events(&text).last().unwrap().1).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    // Counted as the upstream's failure, not as clients that went away.
    let metrics = metrics_of(&admin).await;
    let line = |reason: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("weir_stream_errors_total") && l.contains(reason))
            .map(str::to_owned)
    };
    assert!(
        line("reason=\"upstream\"").is_some_and(|l| l.ends_with(" 2")),
        "{metrics}"
    );
    assert!(line("client_disconnected").is_none(), "{metrics}");
}

/// An Anthropic stream's opening, up to a first text delta "Hel" (then the tests' error).
const HEL_SO_FAR: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
);

/// An upstream's error event that echoes its key (in any case) reaches neither dialect's
/// client with the key in it, as its error bodies do not.
#[tokio::test]
async fn an_error_event_echoing_the_upstream_key_is_scrubbed() {
    let body = format!(
        "{HEL_SO_FAR}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error sk-ant-ECHOED-key\",\"message\":\"key sk-ant-ECHOED-key overloaded (SK-ANT-ECHOED-KEY)\"}}}}\n\n"
    );
    let up = upstream(Script::Reply(200, "text/event-stream", body)).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-ant-ECHOED-key\"]\n\
         [[models]]\nname = \"a\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url
    ))
    .await;
    for (path, req) in [
        ("/v1/messages", a_req("a", true)),
        ("/v1/chat/completions", o_req("a", true)),
    ] {
        let text = post_text(&url, path, &req).await;
        assert!(
            text.contains("Hel") && text.contains("key *** overloaded (***)"),
            "{text}"
        );
        assert!(!text.to_ascii_lowercase().contains("echoed"), "{text}");
    }
}

/// A key named only in an error event's other fields (kept when relayed to a client of the
/// same dialect) is not relayed either: the event goes re-encoded.
#[tokio::test]
async fn an_error_event_naming_the_key_in_other_fields_is_not_relayed() {
    let body = format!(
        "{HEL_SO_FAR}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"busy\",\"details\":{{\"key\":\"sk-ant-DETAILS-key\"}}}}}}\n\n"
    );
    let up = upstream(Script::Reply(200, "text/event-stream", body)).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"sk-ant-DETAILS-key\"]\n\
         [[models]]\nname = \"a\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url
    ))
    .await;
    let text = post_text(&url, "/v1/messages", &a_req("a", true)).await;
    assert!(text.contains("Hel") && text.contains("busy"), "{text}");
    assert!(!text.contains("DETAILS"), "{text}");
    // OpenAI to OpenAI.
    let up = raw_sse_upstream(
        vec![concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"busy\",\"type\":\"server_error\",\"details\":{\"key\":\"sk-oai-DETAILS-key\"}}}\n\n",
        )
        .into()],
        Then::Finish,
    )
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{up}\"\nkeys = [\"sk-oai-DETAILS-key\"]\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\" }}]\n"
    ))
    .await;
    let text = post_text(&url, "/v1/chat/completions", &o_req("o", true)).await;
    assert!(text.contains("Hel") && text.contains("busy"), "{text}");
    assert!(!text.contains("DETAILS"), "{text}");
}

/// A stream ends for the client when the upstream's message does (`[DONE]`), though the
/// upstream holds its body open after it: no wait for the upstream's idle timeout, and no
/// timeout error after a complete answer.
#[tokio::test]
async fn a_stream_ends_at_the_messages_end_though_the_upstream_lingers() {
    // The body stays open well past the route's idle timeout.
    let up = raw_sse_upstream(
        vec![concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n",
        )
        .into()],
        Then::Linger(Duration::from_secs(4)),
    )
    .await;
    let url = weir(&openai_route(
        &up,
        "o",
        "[providers.o.timeouts]\nidle = \"1s\"\n",
    ))
    .await;
    for (path, req, end) in [
        ("/v1/messages", a_req("o", true), "message_stop"),
        ("/v1/chat/completions", o_req("o", true), "[DONE]"),
    ] {
        let started = Instant::now();
        let text = post_text(&url, path, &req).await;
        assert!(started.elapsed() < Duration::from_millis(900), "{text}");
        assert!(
            text.trim_end().ends_with(end.trim_end()) || text.contains(end),
            "{text}"
        );
        assert!(!text.contains("error"), "{text}");
        // The usage chunk the gateway asked for reaches no client that did not ask.
        assert!(!text.contains(r#""choices":[]"#), "{text}");
    }
}

/// A stream cut before the upstream reported usage (OpenAI's comes in the final chunk) is
/// charged an estimate (a quarter of the bytes streamed, and of the request's body), not
/// nothing: leaving early does not make an answer free of limits and budgets.
#[tokio::test]
async fn a_stream_cut_before_its_usage_is_charged_an_estimate() {
    // Gone without the final chunk (and its usage).
    let text = "x".repeat(400);
    let up = raw_sse_upstream(
        vec![format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"{text}\"}}}}]}}\n\n"
        )],
        Then::Cut(Duration::from_millis(50)),
    )
    .await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "o", "")).await;
    let req = a_req("o", true);
    let text = post_text(&url, "/v1/messages", &req).await;
    assert!(
        text.contains("xxxx") && text.contains("event: error"),
        "{text}"
    );
    let metrics = metrics_of(&admin).await;
    assert_eq!(tokens_in(&metrics, "output"), 100, "{metrics}");
    let body_len = serde_json::to_vec(&req).unwrap().len() as u64;
    assert_eq!(
        tokens_in(&metrics, "input"),
        body_len.div_ceil(4),
        "{metrics}"
    );
}

/// An upstream that reports no usage (some OpenAI-compatible servers, whole or streamed)
/// is charged an estimate, not nothing: limits and budgets still see its answers.
#[tokio::test]
async fn an_answer_without_usage_is_charged_an_estimate() {
    let answer = format!(
        r#"{{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}]}}"#,
        // 400 bytes of text, 200 of them newlines written as escapes (600 bytes of JSON).
        "y".repeat(200) + &"\\n".repeat(200)
    );
    let whole = upstream(Script::Reply(200, "application/json", answer.clone())).await;
    let streamed = raw_sse_upstream(
        vec![
            format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"{}\"}},\"finish_reason\":\"stop\"}}]}}\n\n",
                "z".repeat(400)
            ),
            "data: [DONE]\n\n".to_owned(),
        ],
        Then::Finish,
    )
    .await;
    for (stream, route) in [
        (false, openai_route(&whole.url, "o", "")),
        (true, openai_route(&streamed, "o", "")),
    ] {
        let (url, admin) = weir_with_admin(&route).await;
        let req = o_req("o", stream);
        let r = post(&url, "/v1/chat/completions", &req, Some(KEY)).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("yyyy") || text.contains("zzzz"), "{text}");
        let metrics = metrics_of(&admin).await;
        let body_len = serde_json::to_vec(&req).unwrap().len() as u64;
        assert_eq!(
            tokens_in(&metrics, "input"),
            body_len.div_ceil(4),
            "stream {stream}: {metrics}"
        );
        // A quarter of the answer's text, whole or streamed: the JSON around it (ids,
        // role, finish_reason: another 130 bytes here) is not output.
        assert_eq!(
            tokens_in(&metrics, "output"),
            100,
            "stream {stream}: {metrics}"
        );
    }
    // Translated for an Anthropic client, the same.
    let (url, admin) = weir_with_admin(&openai_route(&whole.url, "o", "")).await;
    let r = post(&url, "/v1/messages", &a_req("o", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    let metrics = metrics_of(&admin).await;
    assert_eq!(tokens_in(&metrics, "output"), 100, "{metrics}");
    // The Responses API and embeddings alike.
    for (path, answer, req) in [
        (
            "/v1/responses",
            r#"{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi"}]}]}"#,
            json!({"model": "o", "input": "x".repeat(400)}),
        ),
        (
            "/v1/embeddings",
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"m"}"#,
            json!({"model": "o", "input": "x".repeat(400)}),
        ),
    ] {
        let up = upstream(Script::Reply(200, "application/json", answer.to_owned())).await;
        let (url, admin) = weir_with_admin(&openai_route(&up.url, "o", "")).await;
        let r = post(&url, path, &req, Some(KEY)).await;
        assert_eq!(r.status(), 200, "{path}");
        let metrics = metrics_of(&admin).await;
        let input = tokens_in(&metrics, "input");
        let body_len = serde_json::to_vec(&req).unwrap().len() as u64;
        assert_eq!(input, body_len.div_ceil(4), "{path}: {metrics}");
    }
}

/// Streams from `script` through a route with these idle and total timeouts, checks the
/// stream ends with a timeout error saying `message`, and returns its events.
async fn stream_timing_out(
    script: Script,
    idle: &str,
    total: &str,
    message: &str,
) -> Vec<(Option<String>, String)> {
    let up = upstream(script).await;
    let timeouts = format!(
        "[providers.a.timeouts]\nconnect = \"1s\"\nfirst_byte = \"1s\"\nidle = \"{idle}\"\ntotal = \"{total}\"\n"
    );
    let url = weir(&anthropic_route(&up.url, "timed", &timeouts)).await;
    let r = post(&url, "/v1/messages", &a_req("timed", true), Some(KEY)).await;
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    let last = events.last().unwrap();
    assert_eq!(last.0.as_deref(), Some("error"), "{text}");
    let v: Value = serde_json::from_str(&last.1).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    assert_eq!(v["error"]["message"], message, "{text}");
    // The gateway's own error says which request it was, as its error bodies do.
    assert_eq!(v["request_id"], request_id.as_str(), "{text}");
    events
}

#[tokio::test]
async fn a_stream_flooded_with_comments_still_ends_at_the_total_timeout() {
    // Comments as fast as the upstream can send them: no timer gets to fire between two,
    // and the total deadline must end the stream all the same.
    let up = upstream(Script::Flood).await;
    let timeouts = "[providers.a.timeouts]\nconnect = \"1s\"\nfirst_byte = \"1s\"\nidle = \"150ms\"\ntotal = \"500ms\"\n";
    let url = weir(&anthropic_route(&up.url, "timed", timeouts)).await;
    let started = std::time::Instant::now();
    let r = post(&url, "/v1/messages", &a_req("timed", true), Some(KEY)).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Nothing came before the deadline: a timeout, before the stream was let through.
    assert_eq!(status, 504, "{text}");
    assert!(
        text.contains("the upstream stream exceeded the total timeout"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_that_keeps_sending_outlives_its_idle_timeout_until_the_total_one() {
    // Events every 20 ms: the idle timer starts over with each, so only the total
    // deadline ends the stream, and says so.
    let events = stream_timing_out(
        Script::Endless(Arc::new(AtomicBool::new(false))),
        "150ms",
        "700ms",
        "the upstream stream exceeded the total timeout",
    )
    .await;
    let ticks = events.iter().filter(|e| e.1.contains("tick ")).count();
    assert!(ticks >= 10, "{ticks} events before the end");
}

#[tokio::test]
async fn a_silent_stream_ends_with_an_idle_timeout_error() {
    stream_timing_out(
        Script::Stall,
        "200ms",
        "10s",
        "the upstream stream was silent for more than 0.2s",
    )
    .await;
}

#[tokio::test]
async fn a_config_without_client_keys_gets_weir_api_key_or_a_generated_one() {
    let text = "[providers.mock]\nkind = \"mock\"\n";
    let cfg = weir_server::config::parse(None, text).unwrap();
    let serve = |app: weir_server::App| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(weir_server::run(
            Arc::new(app),
            listener,
            None,
            std::future::pending(),
        ));
        url
    };
    // WEIR_API_KEY, when set, is the key (nothing generated to print).
    let mut app = weir_server::build(&cfg, None, text).unwrap();
    let env = |name: &str| (name == "WEIR_API_KEY").then(|| "sk-from-env".to_owned());
    assert_eq!(weir_server::ensure_client_key(&mut app, None, &env), None);
    let url = serve(app).await;
    let r = post(
        &url,
        "/v1/messages",
        &a_req("mock", false),
        Some("sk-from-env"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &url,
        "/v1/messages",
        &a_req("mock", false),
        Some("sk-other"),
    )
    .await;
    assert_eq!(r.status(), 401);
    // Otherwise a generated key, returned to be printed.
    let mut app = weir_server::build(&cfg, None, text).unwrap();
    let generated = weir_server::ensure_client_key(&mut app, None, &|_: &str| None).unwrap();
    let url = serve(app).await;
    let r = post(
        &url,
        "/v1/messages",
        &a_req("mock", false),
        Some(&generated),
    )
    .await;
    assert_eq!(r.status(), 200);
    // A config with keys keeps exactly those.
    let with_keys = format!("[[auth.keys]]\nname = \"t\"\nkey = \"{KEY}\"\n{text}");
    let cfg = weir_server::config::parse(None, &with_keys).unwrap();
    let mut app = weir_server::build(&cfg, None, &with_keys).unwrap();
    assert_eq!(weir_server::ensure_client_key(&mut app, None, &env), None);
    let url = serve(app).await;
    let r = post(
        &url,
        "/v1/messages",
        &a_req("mock", false),
        Some("sk-from-env"),
    )
    .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn not_found_errors_say_what_was_not_found() {
    let url = weir("").await;
    // An unknown model: model_not_found, listing what is available, on every endpoint.
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("nope", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("available: mock"));
    let r = post(
        &url,
        "/v1/messages/count_tokens",
        &a_req("nope", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "model `nope` is not available; available: mock"
    );
    // An unknown path is not a missing model.
    let r = post(&url, "/v1/nowhere", &o_req("mock", false), Some(KEY)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["code"].is_null(), "{v}");
    assert_eq!(v["error"]["message"], "no endpoint POST /v1/nowhere");
    // A base URL set without `/v1`: said what to change.
    let r = post(&url, "/chat/completions", &o_req("m", false), Some(KEY)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "no endpoint POST /chat/completions (did you mean /v1/chat/completions? the base URL needs to end in /v1)"
    );
    // An Anthropic client (its SDKs always send anthropic-version) gets Anthropic's shape.
    for (method, path) in [("POST", "/v1/complete"), ("DELETE", "/v1/models")] {
        let r = client()
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("x-request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(path),
            "{v}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_status_to_a_browser_with_the_admin_key() {
    let (_url, admin) = weir_with_admin("").await;
    // Without credentials: 401 with a Basic challenge, so a browser asks for the key.
    let r = client().get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    // A wrong password is refused; the key as the password (any user) is let in.
    let r = client()
        .get(format!("{admin}/"))
        .basic_auth("anyone", Some("sk-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{admin}/"))
        .basic_auth("anyone", Some("sk-admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<h2>Targets</h2>"), "{page}");
    assert!(page.contains("<td>mock</td>"), "{page}");
    // Basic credentials open the page only: what a browser caches for it must not let a
    // web page POST /reload (a plain form can), nor read /status or /metrics.
    for (method, path) in [("GET", "/status"), ("GET", "/metrics"), ("POST", "/reload")] {
        let r = client()
            .request(method.parse().unwrap(), format!("{admin}{path}"))
            .basic_auth("x", Some("sk-admin"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    let r = admin_get(&admin, "/").await;
    assert_eq!(r.status(), 200);
    // A wrong method on an admin endpoint is 405 with what is allowed, not 404.
    let r = client()
        .get(format!("{admin}/reload"))
        .header("authorization", "Bearer sk-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client()
        .post(format!("{admin}/status"))
        .header("authorization", "Bearer sk-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    // The admin port's health check answers HEAD as the API port's does.
    let r = client()
        .head(format!("{admin}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Gemini serves OpenAI's embeddings by translation: the client gets OpenAI's list, and
/// what Gemini cannot take a 400 in OpenAI's shape naming it.
#[tokio::test]
async fn gemini_serves_openai_embeddings() {
    let up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"embeddings":[{"values":[0.25,-0.5]}],"usageMetadata":{"promptTokenCount":2}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\nkeys = [\"AIza-k\"]\n\
         [[models]]\nname = \"emb\"\ntargets = [{{ provider = \"g\", model = \"gemini-embedding-001\" }}]\n",
        up.url
    ))
    .await;
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "emb", "input": "hi", "dimensions": 2}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "g");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
               "model": "gemini-embedding-001", "usage": {"prompt_tokens": 2, "total_tokens": 2}})
    );
    let (headers, sent) = up.seen.lock().unwrap()[0].clone();
    assert_eq!(
        headers["x-test-path"],
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["requests"][0]["outputDimensionality"], 2);
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "emb", "input": [[1, 2]]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("token ids is not supported by Gemini"),
        "{msg}"
    );
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        1,
        "nothing sent for the refused one"
    );
}

/// An OpenAI-compatible service without embeddings answers 404 there: the next target
/// serves.
#[tokio::test]
async fn embeddings_pass_over_a_service_that_has_none() {
    let answer = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],"model":"e","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    let up = upstream(Script::Reply(200, "application/json", answer.into())).await;
    let none = upstream(Script::Reply(
        404,
        "application/json",
        r#"{"error":{"message":"Unknown request URL: POST /openai/v1/embeddings","type":"invalid_request_error","code":"unknown_url"}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.groq]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"emb\"\ntargets = [{{ provider = \"groq\" }}, {{ provider = \"o\" }}]\n",
        up.url, none.url
    ))
    .await;
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "emb", "input": "x"}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "o");
    assert_eq!(none.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn embeddings_route_like_chat_and_pass_openai_answers_through() {
    let answer = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":3,"total_tokens":3}}"#;
    let up = upstream(Script::Reply(200, "application/json", answer.into())).await;
    let failing = upstream(Script::Reply(
        503,
        "application/json",
        r#"{"error":{"message":"busy","type":"server_error","param":null,"code":null}}"#.into(),
    ))
    .await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up-key\"]\n\
         [providers.busy]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-busy\"]\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"emb\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"busy\" }}, {{ provider = \"o\", model = \"text-embedding-3-small\" }}]\n\
         [[models]]\nname = \"chat-only\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"a\", model = \"other\" }}]\n\
         [[models]]\nname = \"emb-busy\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"busy\" }}]\n",
        up.url, failing.url, up.url
    ))
    .await;
    // Anthropic has no embeddings and is passed over; the busy upstream fails over.
    let body = json!({"model": "emb", "input": ["hi"], "dimensions": 2, "user": "u"});
    let r = post(&url, "/v1/embeddings", &body, Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "o");
    assert_eq!(r.headers()["x-weir-model"], "text-embedding-3-small");
    assert_request_id(&r);
    assert_eq!(
        r.text().await.unwrap(),
        answer,
        "the answer as the upstream wrote it"
    );
    assert_eq!(failing.hits.load(Ordering::SeqCst), 1);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "nothing went to the Anthropic target");
    let (headers, sent) = &seen[0];
    assert_eq!(headers["x-test-path"], "/v1/embeddings");
    assert_eq!(headers["authorization"], "Bearer sk-up-key");
    let sent: Value = serde_json::from_slice(sent).unwrap();
    assert_eq!(
        sent,
        json!({"model": "text-embedding-3-small", "input": ["hi"], "dimensions": 2, "user": "u"})
    );

    // The mock embeds offline.
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "mock", "input": "hello"}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);

    // No target with embeddings: the error says so, in OpenAI's shape.
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "chat-only", "input": "x"}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("does not serve embeddings"), "{msg}");
    // A target passed over does not hide the real failure of the others.
    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "emb-busy", "input": "x"}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-weir-provider"], "busy");

    let r = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "nope", "input": "x"}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    for bad in [
        json!({"model": "emb"}),
        json!(["emb"]),
        json!({"input": "x"}),
    ] {
        let r = post(&url, "/v1/embeddings", &bad, Some(KEY)).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = post(&url, "/v1/embeddings", &body, None).await;
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{url}/v1/embeddings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(up.seen.lock().unwrap().len(), 1);

    // Usage is accounted like chat's.
    let metrics = metrics_of(&admin).await;
    assert!(
        metrics.contains(
            r#"weir_tokens_total{key="tester",model="emb",provider="o",direction="input"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn models_lists_what_glob_routes_serve_as_their_providers_list_it() {
    let up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"dall-e-3","object":"model"},{"id":"gpt-exact","object":"model"}]}"#.into(),
    ))
    .await;
    let down = upstream(Script::Reply(
        500,
        "application/json",
        r#"{"error":{"message":"no","type":"server_error"}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [providers.d]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-down\"]\n\
         [[models]]\nname = \"gpt-exact\"\ntargets = [{{ provider = \"mock\" }}]\n\
         [[models]]\nname = \"gpt-*\"\ntargets = [{{ provider = \"o\" }}]\n\
         [[models]]\nname = \"pinned-*\"\ntargets = [{{ provider = \"o\", model = \"gpt-4o\" }}]\n\
         [[models]]\nname = \"other-*\"\ntargets = [{{ provider = \"d\" }}]\n\
         [[auth.keys]]\nname = \"narrow\"\nkey = \"sk-narrow\"\nmodels = [\"gpt-4*\"]\n",
        up.url, down.url
    ))
    .await;
    let list = |key: &'static str| {
        let url = url.clone();
        async move {
            let v: Value = client()
                .get(format!("{url}/v1/models"))
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // The exact names, then what `gpt-*` serves: not `dall-e-3` (no route takes it), not
    // `gpt-exact` again (its own route takes it), nothing for `pinned-*` (one fixed
    // model) or for the provider that could not list.
    let all = list(KEY).await;
    assert_eq!(all, ["gpt-exact", "mock", "gpt-4o"]);
    assert_eq!(list("sk-narrow").await, ["gpt-4o"]);
    // Listed once, with the provider's key, and kept.
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0["x-test-path"], "/v1/models");
    assert_eq!(seen[0].0["authorization"], "Bearer sk-up");
    assert_eq!(down.hits.load(Ordering::SeqCst), 1);
}

/// A Responses API stream as OpenAI writes it (shortened).
const RESPONSES_STREAM: &str = concat!(
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-x\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-x\",\"output\":[],\"usage\":{\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":5,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":16}}}\n\n",
);

/// The credentials the `i`th request an upstream saw went out with.
fn key_of(seen: &Seen, i: usize) -> String {
    seen.lock().unwrap()[i].0["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A provider's max_output_tokens holds for the Responses API as for chat.
#[tokio::test]
async fn max_output_tokens_caps_responses_requests_too() {
    let up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":1,"output_tokens":1}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\nmax_output_tokens = 1000\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"o\" }}]\n",
        up.url
    ))
    .await;
    for (asked, sent) in [(5000, 1000), (300, 300)] {
        let r = responses(
            &url,
            &json!({"model": "r", "input": "hi", "max_output_tokens": asked}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let seen = up.seen.lock().unwrap();
        let body: Value = serde_json::from_slice(&seen.last().unwrap().1).unwrap();
        assert_eq!(body["max_output_tokens"], json!(sent));
        assert_eq!(body["input"], "hi");
    }
}

/// A target's own output limits (`default_max_tokens`, `max_output_tokens` in
/// `[[models]]`) apply to chat and Responses requests sent to it.
#[tokio::test]
async fn a_targets_output_limits_reach_its_upstream() {
    let chat_up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#.into(),
    ))
    .await;
    let resp_up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":1,"output_tokens":1}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.r]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\nresponses_api = true\n\
         [[models]]\nname = \"c\"\ntargets = [{{ provider = \"o\", default_max_tokens = 2048, max_output_tokens = 4000 }}]\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"r\", default_max_tokens = 2048, max_output_tokens = 4000 }}]\n",
        chat_up.url, resp_up.url
    ))
    .await;
    let last_body = |up: &Upstream| -> Value {
        serde_json::from_slice(&up.seen.lock().unwrap().last().unwrap().1).unwrap()
    };
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for (asked, sent) in [(None, 2048), (Some(9000), 4000), (Some(300), 300)] {
        let mut body = json!({"model": "c", "messages": msgs});
        let mut rbody = json!({"model": "r", "input": "hi"});
        if let Some(n) = asked {
            body["max_tokens"] = json!(n);
            rbody["max_output_tokens"] = json!(n);
        }
        let r = post(&url, "/v1/chat/completions", &body, Some(KEY)).await;
        assert_eq!(r.status(), 200);
        // (The client's field when it set one; else OpenAI's current one.)
        let b = last_body(&chat_up);
        let field = if asked.is_some() {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        assert_eq!(b[field], json!(sent), "{asked:?}: {b}");
        assert_eq!(responses(&url, &rbody).await.status(), 200);
        assert_eq!(
            last_body(&resp_up)["max_output_tokens"],
            json!(sent),
            "{asked:?}"
        );
    }

    // Claude must be sent a limit: a request with none gets the cap, not the provider's
    // own default (21333) above it.
    let claude_up = upstream(Script::Reply(
        200,
        "application/json",
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"claude-x\"\ntargets = [{{ provider = \"a\", model = \"claude-sonnet-4-5\", max_output_tokens = 8192 }}]\n",
        claude_up.url
    ))
    .await;
    let r = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "claude-x", "messages": msgs}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_body(&claude_up)["max_tokens"], 8192);
}

/// A response lives in the account that made it: a request continuing it
/// (`previous_response_id`) goes to the target and key that made it, whole or streamed,
/// though the route rotates targets and the pool rotates keys.
/// A response the upstream does not keep (`store: false`, as Codex sends every turn) cannot
/// be continued by its id: it is not pinned, and continuing "it" rotates as usual.
#[tokio::test]
async fn a_response_not_stored_is_not_pinned() {
    let whole = |id: &str| {
        format!(
            r#"{{"id":"{id}","object":"response","status":"completed","model":"gpt-x","output":[],"usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        )
    };
    let a = upstream(Script::Reply(200, "application/json", whole("resp_NS"))).await;
    let b = upstream(Script::Reply(200, "application/json", whole("resp_B"))).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-a\"]\n\
         [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n\
         [[models]]\nname = \"w\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n",
        a.url, b.url
    ))
    .await;
    while a.hits.load(Ordering::SeqCst) == 0 {
        let r = responses(&url, &json!({"model": "w", "input": "hi", "store": false})).await;
        assert_eq!(r.status(), 200);
    }
    let b0 = b.hits.load(Ordering::SeqCst);
    for _ in 0..4 {
        let body = json!({"model": "w", "input": "more", "store": false, "previous_response_id": "resp_NS"});
        assert_eq!(responses(&url, &body).await.status(), 200);
    }
    assert_eq!(b.hits.load(Ordering::SeqCst) - b0, 2, "rotated as usual");
}

#[tokio::test]
async fn a_continued_response_goes_to_the_target_and_key_that_made_it() {
    let whole = |id: &str| {
        format!(
            r#"{{"id":"{id}","object":"response","status":"completed","model":"gpt-x","output":[],"usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        )
    };
    let a = upstream(Script::Reply(200, "application/json", whole("resp_A"))).await;
    let b = upstream(Script::Reply(200, "application/json", whole("resp_B"))).await;
    let c = upstream(Script::Reply(
        200,
        "text/event-stream",
        RESPONSES_STREAM.into(),
    ))
    .await;
    let d = upstream(Script::Reply(
        200,
        "text/event-stream",
        RESPONSES_STREAM.replace("resp_1", "resp_D"),
    ))
    .await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-a1\", \"sk-a2\", \"sk-a3\"]\n\
         [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n\
         [providers.c]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-c\"]\n\
         [providers.d]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-d\"]\n\
         [[models]]\nname = \"w\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n\
         [[models]]\nname = \"s\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"c\" }}, {{ provider = \"d\" }}]\n\
         [[models]]\nname = \"w2\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"b\" }}, {{ provider = \"a\", model = \"gpt-y\" }}]\n",
        a.url, b.url, c.url, d.url
    ))
    .await;
    // Until one of `a`'s answers is known, requests rotate.
    while a.hits.load(Ordering::SeqCst) == 0 {
        let r = responses(&url, &json!({"model": "w", "input": "hi"})).await;
        assert_eq!(r.status(), 200);
    }
    let maker = key_of(&a.seen, a.hits.load(Ordering::SeqCst) - 1);
    let (a0, b0) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
    for _ in 0..6 {
        let body = json!({"model": "w", "input": "more", "previous_response_id": "resp_A"});
        let r = responses(&url, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-weir-provider"], "a");
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), a0 + 6);
    assert_eq!(b.hits.load(Ordering::SeqCst), b0);
    for i in a0..a0 + 6 {
        assert_eq!(
            key_of(&a.seen, i),
            maker,
            "request {i} went out with another key"
        );
    }
    // Without it, the route and the pool still rotate.
    for _ in 0..4 {
        let r = responses(&url, &json!({"model": "w", "input": "x"})).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), b0 + 2);
    // A client that changes model mid-conversation (another route) still goes to the
    // account that holds the response: the new route's target on that provider.
    // (`a` names every answer resp_A: the last one made it.)
    let (a1, b1) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
    let maker = key_of(&a.seen, a1 - 1);
    for _ in 0..4 {
        let body = json!({"model": "w2", "input": "more", "previous_response_id": "resp_A"});
        let r = responses(&url, &body).await;
        assert_eq!(r.headers()["x-weir-provider"], "a");
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), b1);
    for i in a1..a1 + 4 {
        assert_eq!(
            key_of(&a.seen, i),
            maker,
            "request {i} went out with another key"
        );
    }

    // Streamed: the id comes in the final event.
    let stream = json!({"model": "s", "input": "hi", "stream": true});
    while d.hits.load(Ordering::SeqCst) == 0 {
        let r = responses(&url, &stream).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let c0 = c.hits.load(Ordering::SeqCst);
    for _ in 0..4 {
        let body = json!({"model": "s", "input": "more", "stream": true, "previous_response_id": "resp_D"});
        let r = responses(&url, &body).await;
        assert_eq!(r.headers()["x-weir-provider"], "d");
        r.text().await.unwrap();
    }
    assert_eq!(c.hits.load(Ordering::SeqCst), c0);
}

/// A reload keeps where responses were made, by route name, target and key, though the
/// new config orders routes, targets and keys differently; a pin whose target or key is
/// gone from the new config is dropped.
#[tokio::test]
async fn a_continued_response_keeps_its_account_across_a_reload() {
    let whole = |id: &str| {
        format!(r#"{{"id":"{id}","object":"response","status":"completed","output":[]}}"#)
    };
    let a = upstream(Script::Reply(200, "application/json", whole("resp_A"))).await;
    let b = upstream(Script::Reply(200, "application/json", whole("resp_B"))).await;
    let config = |keys: &str, extra_route_first: bool| {
        format!(
            "[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
             [providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [{keys}]\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n{}\
             [[models]]\nname = \"w\"\nstrategy = \"round_robin\"\ntargets = [{}]\n",
            a.url,
            b.url,
            if extra_route_first {
                "[[models]]\nname = \"other\"\ntargets = [{ provider = \"b\" }]\n"
            } else {
                ""
            },
            if extra_route_first {
                "{ provider = \"b\" }, { provider = \"a\" }"
            } else {
                "{ provider = \"a\" }, { provider = \"b\" }"
            }
        )
    };
    let first = config("\"sk-a1\", \"sk-a2\", \"sk-a3\"", false);
    let (url, live) = reloadable(&first).await;
    let reload = |text: String| reload_into(&live, &text);
    // Make resp_A with the pool's second key (any answer from `a` re-pins resp_A to its
    // key: ask until the last one went out with sk-a2).
    loop {
        let r = responses(&url, &json!({"model": "w", "input": "hi"})).await;
        assert_eq!(r.status(), 200);
        let n = a.hits.load(Ordering::SeqCst);
        if n > 0 && key_of(&a.seen, n - 1) == "Bearer sk-a2" {
            break;
        }
    }
    let continued = json!({"model": "w", "input": "more", "previous_response_id": "resp_A"});
    // Routes, targets and keys reordered; the maker key now second to last.
    reload(config("\"sk-a3\", \"sk-a2\", \"sk-a4\"", true));
    for _ in 0..4 {
        let n = a.hits.load(Ordering::SeqCst);
        let r = responses(&url, &continued).await;
        assert_eq!(r.headers()["x-weir-provider"], "a");
        assert_eq!(key_of(&a.seen, n), "Bearer sk-a2");
    }
    // The maker key gone: the pin goes with it (the pool rotates again).
    reload(config("\"sk-a3\", \"sk-a4\"", true));
    let mut providers = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = responses(&url, &continued).await;
        providers.insert(r.headers()["x-weir-provider"].to_str().unwrap().to_owned());
    }
    assert_eq!(providers.len(), 2, "{providers:?}");
}

/// A reload keeps sessions where they are (by route name and target, though the new
/// config orders them differently), so a conversation keeps its prompt cache; a session
/// whose target is gone moves on.
#[tokio::test]
async fn a_session_stays_on_its_target_across_a_reload() {
    let answer = |who: &str| {
        format!(
            r#"{{"id":"chatcmpl-{who}","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"{who}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}}"#
        )
    };
    let a = upstream(Script::Reply(200, "application/json", answer("a"))).await;
    let b = upstream(Script::Reply(200, "application/json", answer("b"))).await;
    let config = |targets: &str, extra_route_first: bool| {
        format!(
            "[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n\
             [providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-a\"]\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n{}\
             [[models]]\nname = \"w\"\nstrategy = \"round_robin\"\ntargets = [{targets}]\n",
            a.url,
            b.url,
            if extra_route_first {
                "[[models]]\nname = \"other\"\ntargets = [{ provider = \"b\" }]\n"
            } else {
                ""
            },
        )
    };
    let first = config("{ provider = \"a\" }, { provider = \"b\" }", false);
    let (url, live) = reloadable(&first).await;
    let reload = |text: String| reload_into(&live, &text);
    let served_by = || async {
        let r = client()
            .post(format!("{url}/v1/chat/completions"))
            .header("authorization", format!("Bearer {KEY}"))
            .header("x-weir-session", "s-1")
            .json(&o_req("w", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["x-weir-provider"].to_str().unwrap().to_owned()
    };
    // Round robin starts with the first target, and the session stays there.
    for _ in 0..3 {
        assert_eq!(served_by().await, "a");
    }
    // Routes and targets reordered: a fresh router would start with `b`.
    reload(config("{ provider = \"b\" }, { provider = \"a\" }", true));
    for _ in 0..3 {
        assert_eq!(served_by().await, "a");
    }
    // The session's target gone: it moves on, and stays where it went.
    reload(config("{ provider = \"b\" }", true));
    assert_eq!(served_by().await, "b");
    reload(config("{ provider = \"a\" }, { provider = \"b\" }", false));
    assert_eq!(served_by().await, "b");
}

/// A request whose client leaves before the answer is still counted and logged, as a
/// 499 (nginx's "client closed request"), once: not as nothing; under the provider it was
/// sent to.
#[tokio::test]
async fn a_request_abandoned_before_its_answer_is_counted_as_499() {
    let up = upstream(Script::Hang).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up.url, "slow", "")).await;
    let body =
        json!({"model": "slow", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = quick
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "the upstream never answers");
    let metrics = || metrics_of(&admin);
    let want = r#"weir_requests_total{key="tester",model="slow",provider="a",status="499"} 1"#;
    let seen = metrics_with(&admin, want).await;
    assert!(seen.contains(want), "{seen}");
    // The upstream has the request (and bills it): its estimated input is charged.
    let estimate = body.to_string().len().div_ceil(4) as u64;
    assert_eq!(tokens_in(&seen, "input"), estimate, "{seen}");
    // An answered request is not counted again when its future ends.
    let r = post(&url, "/health", &json!({}), None).await;
    assert_eq!(r.status(), 405);
    assert!(!metrics().await.contains(r#"status="499"} 2"#));
}

/// A stream whose client leaves after the upstream's opening event (its usage) but before
/// its first content is charged that usage: the upstream bills it.
#[tokio::test]
async fn a_stream_abandoned_before_its_content_is_charged_the_usage_already_reported() {
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1000,\"cache_read_input_tokens\":50000,\"output_tokens\":1}}}\n\n";
    let up = raw_sse_upstream(
        vec![start.to_owned()],
        Then::Linger(Duration::from_secs(10)),
    )
    .await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up, "held", "")).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = quick
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&a_req("held", true))
        .send()
        .await;
    assert!(r.is_err(), "no content came");
    let want = r#"weir_requests_total{key="tester",model="held",provider="a",status="499"} 1"#;
    let seen = metrics_with(&admin, want).await;
    assert!(seen.contains(want), "{seen}");
    assert_eq!(tokens_in(&seen, "input"), 51_000, "{seen}");
}

#[tokio::test]
async fn the_responses_api_passes_through_to_openai_targets_whole_and_streamed() {
    let whole = r#"{"id":"resp_2","object":"response","status":"completed","model":"gpt-x","output":[{"type":"message","id":"msg_2","role":"assistant","content":[{"type":"output_text","text":"Hello","annotations":[]}]}],"usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":8},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":23}}"#;
    let up = upstream(Script::Reply(200, "application/json", whole.into())).await;
    let streaming = upstream(Script::Reply(
        200,
        "text/event-stream",
        RESPONSES_STREAM.into(),
    ))
    .await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [providers.s]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"o\", model = \"gpt-x\" }}]\n\
         [[models]]\nname = \"rs\"\ntargets = [{{ provider = \"s\", model = \"gpt-x\" }}]\n",
        up.url, streaming.url
    ))
    .await;
    // Background mode not streamed is refused, before any upstream: its result would be
    // fetched with a GET the gateway does not serve, and its usage never counted.
    let hits = up.hits.load(Ordering::SeqCst);
    let r = responses(
        &url,
        &json!({"model": "r", "input": "hi", "background": true}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("background responses"),
        "{v}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), hits);
    // Streamed, its result and usage come in the stream: served.
    let r = responses(
        &url,
        &json!({"model": "rs", "input": "hi", "background": true, "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), RESPONSES_STREAM);
    let body = json!({"model": "r", "input": "hi", "store": false, "tools": []});
    let r = responses(&url, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "o");
    assert_eq!(r.headers()["x-weir-model"], "gpt-x");
    assert_eq!(r.text().await.unwrap(), whole);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0["x-test-path"], "/v1/responses");
    let sent: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(
        sent,
        json!({"model": "gpt-x", "input": "hi", "store": false, "tools": []})
    );

    // Streamed: the upstream's bytes, as they came.
    let r = responses(&url, &json!({"model": "rs", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.text().await.unwrap(), RESPONSES_STREAM);

    // A stream asked of an upstream that answers with JSON is no stream: a 502.
    let r = responses(&url, &json!({"model": "r", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 502);

    for bad in [
        json!({"input": "x"}),
        json!({"model": "r", "stream": "yes"}),
        json!([1]),
    ] {
        let r = responses(&url, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }

    // Usage of both is accounted: 20 + 11 input tokens, 3 + 5 output (the stream twice,
    // once in background mode).
    let metrics = metrics_of(&admin).await;
    for line in [
        r#"weir_tokens_total{key="tester",model="r",provider="o",direction="input"} 20"#,
        r#"weir_tokens_total{key="tester",model="r",provider="o",direction="output"} 3"#,
        r#"weir_tokens_total{key="tester",model="rs",provider="s",direction="input"} 22"#,
        r#"weir_tokens_total{key="tester",model="rs",provider="s",direction="output"} 10"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

/// What an OpenAI-compatible upstream without the Responses API (DeepSeek's older models,
/// Z.AI, vLLM builds without it) answers a chat completion.
const CHAT_ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"glm-x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

#[tokio::test]
async fn the_responses_api_falls_back_to_translation_where_a_compatible_service_lacks_it() {
    let chat_only = || {
        Script::Paths(vec![(
            "/v1/chat/completions",
            200,
            "application/json",
            CHAT_ANSWER.into(),
        )])
    };
    let (auto, forced, strict) = (
        upstream(chat_only()).await,
        upstream(chat_only()).await,
        upstream(chat_only()).await,
    );
    let streams = upstream(Script::Paths(vec![(
        "/v1/chat/completions",
        200,
        "text/event-stream",
        concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n",
        )
        .into(),
    )]))
    .await;
    // A service that knows neither the model nor... anything: 404 everywhere, with
    // OpenAI's model_not_found body.
    let unknown_model = upstream(Script::Reply(
        404,
        "application/json",
        r#"{"error":{"message":"The model `nope` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.auto]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [providers.forced]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\nresponses_api = false\n\
         [providers.strict]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\nresponses_api = true\n\
         [providers.gone]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [providers.streams]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
         [[models]]\nname = \"streams\"\ntargets = [{{ provider = \"streams\", model = \"glm-x\" }}]\n\
         [[models]]\nname = \"auto\"\ntargets = [{{ provider = \"auto\", model = \"glm-x\" }}]\n\
         [[models]]\nname = \"forced\"\ntargets = [{{ provider = \"forced\", model = \"glm-x\" }}]\n\
         [[models]]\nname = \"strict\"\ntargets = [{{ provider = \"strict\", model = \"glm-x\" }}]\n\
         [[models]]\nname = \"gone\"\ntargets = [{{ provider = \"gone\", model = \"nope\" }}]\n",
        auto.url, forced.url, strict.url, unknown_model.url, streams.url
    ))
    .await;
    let paths = |u: &Upstream| -> Vec<String> {
        u.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h["x-test-path"].to_str().unwrap().to_owned())
            .collect()
    };
    let text_of = |v: &Value| -> String {
        v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Unset: tried as the Responses API first; its 404 sends the request through the
    // translation, and the provider's next requests go there directly.
    let r = responses(&url, &json!({"model": "auto", "input": "hi"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "auto");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(text_of(&v), "Hi there", "{v}");
    assert_eq!(v["usage"]["input_tokens"], 9, "{v}");
    let r = responses(&url, &json!({"model": "auto", "input": "again"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(text_of(&r.json().await.unwrap()), "Hi there");
    assert_eq!(
        paths(&auto),
        [
            "/v1/responses",
            "/v1/chat/completions",
            "/v1/chat/completions"
        ]
    );
    // Streamed alike: the Responses events, translated from the chat stream.
    for _ in 0..2 {
        let r = responses(
            &url,
            &json!({"model": "streams", "input": "hi", "stream": true}),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let events = r.text().await.unwrap();
        assert!(
            events.contains("event: response.output_text.delta"),
            "{events}"
        );
        assert!(events.contains("event: response.completed"), "{events}");
    }
    assert_eq!(
        paths(&streams),
        [
            "/v1/responses",
            "/v1/chat/completions",
            "/v1/chat/completions"
        ]
    );
    // What went to chat completions is the translation: messages, not `input`.
    let sent: Value = serde_json::from_slice(&auto.seen.lock().unwrap()[1].1).unwrap();
    assert_eq!(sent["model"], "glm-x");
    assert_eq!(sent["messages"][0]["content"], "hi", "{sent}");
    assert!(sent.get("input").is_none(), "{sent}");

    // `responses_api = false`: translated from the first request.
    let r = responses(&url, &json!({"model": "forced", "input": "hi"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(text_of(&r.json().await.unwrap()), "Hi there");
    assert_eq!(paths(&forced), ["/v1/chat/completions"]);

    // `responses_api = true`: passed through only, the upstream's 404 as it is.
    let r = responses(&url, &json!({"model": "strict", "input": "hi"})).await;
    assert_eq!(r.status(), 404);
    assert_eq!(paths(&strict), ["/v1/responses"]);

    // An OpenAI-shaped 404 about what the request named (the model, an item) is the
    // client's answer, as the upstream wrote it, and says nothing about the endpoint.
    for _ in 0..2 {
        let r = responses(&url, &json!({"model": "gone", "input": "hi"})).await;
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    }
    assert_eq!(paths(&unknown_model), ["/v1/responses", "/v1/responses"]);
}

#[tokio::test]
async fn the_responses_fallback_reads_what_a_404_is_about() {
    let answer = |status: u16, ctype: &'static str, body: &str| {
        Script::Paths(vec![
            ("/v1/responses", status, ctype, body.to_owned()),
            (
                "/v1/chat/completions",
                200,
                "application/json",
                CHAT_ANSWER.to_owned(),
            ),
        ])
    };
    let cases = [
        // No such route, as servers without it say: translated.
        (405, "text/plain", "Method Not Allowed", true),
        (501, "text/plain", "Not Implemented", true),
        (404, "application/json", r#"{"detail":"Not Found"}"#, true),
        (
            404,
            "application/json",
            r#"{"error":{"message":"Invalid URL (POST /v1/responses)","type":"invalid_request_error","param":null,"code":null}}"#,
            true,
        ),
        // llama.cpp's answer for a path it does not serve.
        (
            404,
            "application/json",
            r#"{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}"#,
            true,
        ),
        // What the request named, in OpenAI's words: the client's answer, untranslated.
        (
            404,
            "application/json",
            r#"{"error":{"message":"Item with id 'rs_1' not found. Items are not persisted when `store` is set to false.","type":"invalid_request_error","param":"input","code":null}}"#,
            false,
        ),
    ];
    let mut config = String::new();
    let mut ups = Vec::new();
    for (i, (status, ctype, body, _)) in cases.iter().enumerate() {
        let up = upstream(answer(*status, ctype, body)).await;
        config.push_str(&format!(
            "[providers.p{i}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-up\"]\n\
             [[models]]\nname = \"m{i}\"\ntargets = [{{ provider = \"p{i}\", model = \"glm-x\" }}]\n",
            up.url
        ));
        ups.push(up);
    }
    let url = weir(&config).await;
    for (i, (status, _, body, translated)) in cases.iter().enumerate() {
        let r = responses(&url, &json!({"model": format!("m{i}"), "input": "hi"})).await;
        let hits: Vec<String> = ups[i]
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h["x-test-path"].to_str().unwrap().to_owned())
            .collect();
        if *translated {
            assert_eq!(r.status(), 200, "{body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["output"][0]["content"][0]["text"], "Hi there", "{v}");
            assert_eq!(hits, ["/v1/responses", "/v1/chat/completions"], "{body}");
        } else {
            assert_eq!(r.status(), *status, "{body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["param"], "input", "{v}");
            assert_eq!(hits, ["/v1/responses"], "{body}");
        }
    }
}

const CLAUDE_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"Plan it.","signature":"sig-1"},{"type":"text","text":"Patching."},{"type":"tool_use","id":"toolu_1","name":"apply_patch","input":{"input":"*** Begin Patch"}},{"type":"tool_use","id":"toolu_2","name":"shell","input":{"cmd":["ls"]}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":3,"output_tokens":7}}"#;

const CLAUDE_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hm.\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig-2\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"shell\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"cmd\\\":\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"[\\\"ls\\\"]}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test]
async fn responses_requests_reach_chat_upstreams_through_the_bridge() {
    let whole = upstream(Script::Reply(200, "application/json", CLAUDE_ANSWER.into())).await;
    let streaming = upstream(Script::Reply(
        200,
        "text/event-stream",
        CLAUDE_STREAM.into(),
    ))
    .await;
    // A stream that fails once its text began.
    let cut: String = CLAUDE_STREAM
        .split_inclusive("\n\n")
        .take(7)
        .chain(["event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"])
        .collect();
    let failing = upstream(Script::Reply(200, "text/event-stream", cut)).await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [providers.s]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [providers.f]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"c\"\ntargets = [{{ provider = \"a\", model = \"claude-sonnet-4-5\" }}]\n\
         [[models]]\nname = \"cs\"\ntargets = [{{ provider = \"s\", model = \"claude-sonnet-4-5\" }}]\n\
         [[models]]\nname = \"cf\"\ntargets = [{{ provider = \"f\", model = \"claude-sonnet-4-5\" }}]\n",
        whole.url, streaming.url, failing.url
    ))
    .await;
    // A Codex-shaped turn: instructions, a user message, an earlier signed reasoning item,
    // a call and its output; a function tool, a custom tool and a hosted one.
    let body = json!({
        "model": "c",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
            {"type": "reasoning", "id": "rs_0", "summary": [{"type": "summary_text", "text": "Look first."}],
             "encrypted_content": "weir.thinking.v1:sig-0"},
            {"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": "gAAAA-openai-only"},
            {"type": "function_call", "call_id": "call_a", "name": "shell", "arguments": "{\"cmd\":[\"cat\",\"f\"]}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "bug here"}
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Run", "parameters": {"type": "object", "properties": {"cmd": {"type": "array"}}}},
            {"type": "custom", "name": "apply_patch", "description": "Patch files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: PATCH"}},
            {"type": "web_search"}
        ],
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "s-1",
        "max_output_tokens": 4000
    });
    let r = responses(&url, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-weir-provider"], "a");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][0]["summary"][0]["text"], "Plan it.");
    assert_eq!(
        v["output"][0]["encrypted_content"],
        "weir.thinking.v1:sig-1"
    );
    assert_eq!(v["output"][1]["type"], "message");
    assert_eq!(v["output"][1]["content"][0]["text"], "Patching.");
    assert_eq!(v["output"][2]["type"], "custom_tool_call");
    assert_eq!(v["output"][2]["call_id"], "toolu_1");
    assert_eq!(v["output"][2]["input"], "*** Begin Patch");
    assert_eq!(v["output"][3]["type"], "function_call");
    assert_eq!(v["output"][3]["call_id"], "toolu_2");
    assert_eq!(v["output"][3]["arguments"], r#"{"cmd":["ls"]}"#);
    assert_eq!(v["usage"]["input_tokens"], 18);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens"], 7);
    // What Claude was sent.
    let seen = whole.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0["x-test-path"], "/v1/messages");
    let sent: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "Be brief.", "{sent}");
    assert_eq!(sent["max_tokens"], 4000);
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // The hosted web search is Claude's.
    assert_eq!(names, ["shell", "apply_patch", "web_search"], "{sent}");
    assert_eq!(
        sent["tools"][2],
        json!({"type": "web_search_20250305", "name": "web_search"})
    );
    assert_eq!(
        sent["tools"][1]["input_schema"]["required"],
        json!(["input"])
    );
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[1]["content"][0],
        json!({"type": "thinking", "thinking": "Look first.", "signature": "sig-0"})
    );
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[1]["content"][1]["id"], "call_a");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], "call_a");
    assert!(
        sent.get("thinking").is_some(),
        "effort asks for thinking: {sent}"
    );

    // Streamed: the Responses API's events, in order, numbered.
    let r = responses(&url, &json!({"model": "cs", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{text}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let done = &events[events.len() - 1]["response"];
    assert_eq!(
        done["output"][0]["encrypted_content"],
        "weir.thinking.v1:sig-2"
    );
    assert_eq!(done["output"][1]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][2]["call_id"], "toolu_9");
    assert_eq!(done["output"][2]["arguments"], r#"{"cmd":["ls"]}"#);
    assert_eq!(done["usage"]["input_tokens"], 12);
    assert_eq!(done["usage"]["output_tokens"], 9);

    // Failing once its text began: `response.failed` says why (Codex reads it there), with
    // what was finished and the usage known.
    let r = responses(&url, &json!({"model": "cf", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let last: Value = serde_json::from_str(
        text.trim_end()
            .rsplit("\n\n")
            .next()
            .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["type"], "response.failed", "{text}");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(last["response"]["output"][0]["type"], "reasoning");
    assert_eq!(text.matches("event: response.failed").count(), 1, "{text}");
    assert!(!text.contains("event: error"), "{text}");

    // What needs an OpenAI account's stored state is refused, saying why.
    for body in [
        json!({"model": "c", "input": "hi", "previous_response_id": "resp_1"}),
        json!({"model": "c", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
    ] {
        let r = responses(&url, &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Responses bridge")
                || v["error"]["message"].as_str().unwrap().contains("stored"),
            "{v}"
        );
    }

    // Usage is accounted: 18 input (cache reads and writes with it), 7 output; the stream
    // 12 and 9.
    let metrics = metrics_of(&admin).await;
    for line in [
        r#"weir_tokens_total{key="tester",model="c",provider="a",direction="input"} 18"#,
        r#"weir_tokens_total{key="tester",model="c",provider="a",direction="output"} 7"#,
        r#"weir_tokens_total{key="tester",model="cs",provider="s",direction="input"} 12"#,
        r#"weir_tokens_total{key="tester",model="cs",provider="s",direction="output"} 9"#,
        r#"weir_tokens_total{key="tester",model="cf",provider="f",direction="input"} 12"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

/// Claude's answer to a search: the search, its results, then text cut at what a page
/// supports.
const CLAUDE_SEARCHED: &str = r#"{"id":"msg_s","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"weather sf"}},{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result","url":"https://w.example/sf","title":"SF weather","encrypted_content":"x","page_age":null}]},{"type":"text","text":"Héllo: "},{"type":"text","text":"It is sunny.","citations":[{"type":"web_search_result_location","url":"https://w.example/sf","title":"SF weather","cited_text":"sunny","encrypted_index":"e"}]},{"type":"text","text":" Bye."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":7,"server_tool_use":{"web_search_requests":1}}}"#;

const CLAUDE_SEARCHED_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_2\",\"name\":\"web_search\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\": \\\"weather\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" sf\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"web_search_tool_result\",\"tool_use_id\":\"srvtoolu_2\",\"content\":[{\"type\":\"web_search_result\",\"url\":\"https://w.example/sf\",\"title\":\"SF weather\",\"encrypted_content\":\"x\",\"page_age\":null}]}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\",\"text\":\"Today: \"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"citations\":[],\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"type\":\"web_search_result_location\",\"cited_text\":\"20C\",\"url\":\"https://w.example/sf\",\"title\":\"SF weather\",\"encrypted_index\":\"e\"}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"text_delta\",\"text\":\"It is 20°C.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// The `data` of each event of a Responses stream.
fn responses_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A hosted `web_search` (Codex's, the Agents SDK's `WebSearchTool`) is Claude's web search
/// through the bridge: its location goes with it, the search comes back as a
/// `web_search_call` item and the pages the text cites as `url_citation` annotations over
/// the characters they support, whole and streamed.
#[tokio::test]
async fn a_hosted_web_search_is_claudes_through_the_responses_bridge() {
    let whole = upstream(Script::Reply(
        200,
        "application/json",
        CLAUDE_SEARCHED.into(),
    ))
    .await;
    let streaming = upstream(Script::Reply(
        200,
        "text/event-stream",
        CLAUDE_SEARCHED_STREAM.into(),
    ))
    .await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [providers.s]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"c\"\ntargets = [{{ provider = \"a\", model = \"claude-sonnet-4-5\" }}]\n\
         [[models]]\nname = \"cs\"\ntargets = [{{ provider = \"s\", model = \"claude-sonnet-4-5\" }}]\n",
        whole.url, streaming.url
    ))
    .await;
    let tools = json!([
        {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
        {"type": "web_search", "search_context_size": "low",
         "user_location": {"type": "approximate", "city": "San Francisco", "country": "US"}},
        {"type": "web_search_preview"}
    ]);
    let r = responses(
        &url,
        &json!({"model": "c", "input": "weather?", "tools": tools}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-weir-warning").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["output"][0],
        json!({"id": v["output"][0]["id"], "type": "web_search_call", "status": "completed",
               "action": {"type": "search", "query": "weather sf"}})
    );
    let msg = &v["output"][1]["content"][0];
    assert_eq!(msg["text"], "Héllo: It is sunny. Bye.");
    // "It is sunny." is characters 7 to 19 (é is one).
    assert_eq!(
        msg["annotations"],
        json!([{"type": "url_citation", "start_index": 7, "end_index": 19,
                "url": "https://w.example/sf", "title": "SF weather"}])
    );
    assert_eq!(v["output"].as_array().unwrap().len(), 2, "{v}");
    let sent: Value = serde_json::from_slice(&whole.seen.lock().unwrap()[0].1).unwrap();
    // One search tool (the second asks for nothing more), with the client's location.
    assert_eq!(
        sent["tools"][1],
        json!({"type": "web_search_20250305", "name": "web_search",
               "user_location": {"type": "approximate", "city": "San Francisco", "country": "US"}})
    );
    assert_eq!(sent["tools"].as_array().unwrap().len(), 2, "{sent}");

    // Streamed, the search is not asked for yet (the stream bridge would write each cited
    // block as its own message and count no searches): left out, and said so. Search
    // blocks an upstream streams anyway are still told as searches and annotations.
    let r = responses(
        &url,
        &json!({"model": "cs", "input": "weather?", "tools": tools, "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let warning = r.headers()["x-weir-warning"].to_str().unwrap().to_owned();
    assert!(
        warning.contains("hosted tools left out") && warning.contains("web_search"),
        "{warning}"
    );
    let sent: Value = serde_json::from_slice(&streaming.seen.lock().unwrap()[0].1).unwrap();
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1, "{sent}");
    let text = r.text().await.unwrap();
    let events = responses_events(&text);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..8],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
            "response.output_item.added",
        ],
        "{text}"
    );
    assert_eq!(events[2]["item"]["type"], "web_search_call");
    assert_eq!(events[2]["item"]["status"], "in_progress");
    assert_eq!(events[6]["item"]["action"]["query"], "weather sf");
    let added: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.annotation.added")
        .collect();
    assert_eq!(added.len(), 1, "{text}");
    let annotation = json!({"type": "url_citation", "start_index": 0, "end_index": 11,
                            "url": "https://w.example/sf", "title": "SF weather"});
    assert_eq!(added[0]["annotation"], annotation);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let done = &events[events.len() - 1];
    assert_eq!(done["type"], "response.completed");
    let output = done["response"]["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "web_search_call");
    assert_eq!(output[1]["content"][0]["text"], "Today: ");
    assert_eq!(output[2]["content"][0]["text"], "It is 20°C.");
    assert_eq!(output[2]["content"][0]["annotations"], json!([annotation]));
    assert_eq!(output.len(), 3, "{done}");
    // The searches are charged (Claude's $10 a thousand on the bundled Sonnet price).
    let metrics = metrics_of(&admin).await;
    assert!(metrics.contains("weir_cost_usd_total"), "{metrics}");
}

/// Claude's real streamed answer to a search (the recorded corpus) through the bridge: a
/// `web_search_call` with its query for each search, and the cited text's annotations.
#[tokio::test]
async fn a_recorded_claude_search_stream_reaches_a_responses_client_as_a_search_and_citations() {
    let Some(root) = weir_testkit::corpus_dir() else {
        return;
    };
    let body = std::fs::read_to_string(root.join(
        "anthropic/pydantic-ai__test_anthropic_model_web_search_tool_stream/00.response.body",
    ))
    .unwrap();
    let up = upstream(Script::Reply(200, "text/event-stream", body)).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"c\"\ntargets = [{{ provider = \"a\", model = \"claude-sonnet-4-5\" }}]\n",
        up.url
    ))
    .await;
    let r = responses(
        &url,
        &json!({"model": "c", "input": "weather in SF?", "tools": [{"type": "web_search"}], "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = responses_events(&text);
    let done = &events[events.len() - 1];
    assert_eq!(done["type"], "response.completed", "{text}");
    let output = done["response"]["output"].as_array().unwrap();
    let searches: Vec<&Value> = output
        .iter()
        .filter(|o| o["type"] == "web_search_call")
        .collect();
    // (Claude searched twice.)
    assert_eq!(searches.len(), 2, "{done}");
    for s in searches {
        assert_eq!(s["status"], "completed");
        assert!(
            s["action"]["query"]
                .as_str()
                .unwrap()
                .contains("San Francisco weather"),
            "{s}"
        );
    }
    let annotations: Vec<&Value> = output
        .iter()
        .filter(|o| o["type"] == "message")
        .flat_map(|m| m["content"][0]["annotations"].as_array().unwrap())
        .collect();
    assert!(!annotations.is_empty(), "{done}");
    for a in &annotations {
        assert_eq!(a["type"], "url_citation");
        assert!(a["url"].as_str().unwrap().starts_with("http"), "{a}");
        assert!(a["end_index"].as_u64().unwrap() > a["start_index"].as_u64().unwrap());
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "response.output_text.annotation.added")
            .count(),
        annotations.len()
    );
}

#[tokio::test]
async fn a_responses_stream_that_dies_ends_with_an_error_event() {
    let up = upstream(Script::DropMidStream).await;
    let url = weir(&openai_route(&up.url, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(text.contains("Partial"), "{text}");
    let events = sse_events(&text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{text}");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
}

/// A Responses stream that fails in the middle of an event: the client gets the whole
/// events before it and the error event, not the half event (which, ended by the error
/// event's blank line, would read as a broken event).
#[tokio::test]
async fn a_responses_stream_failing_mid_event_passes_on_whole_events_only() {
    let created = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\"}}\n\n";
    let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n";
    let half =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"seq";
    let up = raw_sse_upstream(
        vec![created.to_owned(), format!("{delta}{half}")],
        Then::Cut(Duration::from_millis(50)),
    )
    .await;
    let url = weir(&openai_route(&up, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(text.starts_with(&format!("{created}{delta}")), "{text}");
    assert!(!text.contains("\"seq\n"), "{text}");
    let events = sse_events(&text);
    for (_, data) in &events {
        serde_json::from_str::<Value>(data).unwrap_or_else(|e| panic!("{e}: {data}\n{text}"));
    }
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["sequence_number"],
        2
    );
}

/// A Responses stream that ends with the API's own `error` event gets no second one from
/// the gateway, and a key the event echoes is scrubbed from the bytes passed through.
#[tokio::test]
async fn a_responses_streams_own_error_event_ends_it_once_without_the_key() {
    let body = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"BEFORE\"}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"key sk-resp-ECHOED failed\",\"param\":null}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"AFTER\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"}}\n\n",
    );
    let up = upstream(Script::Reply(200, "text/event-stream", body.into())).await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-resp-ECHOED\"]\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"o\" }}]\n",
        up.url
    ))
    .await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    let errors = sse_events(&text)
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("error"))
        .count();
    assert_eq!(errors, 1, "{text}");
    assert!(
        text.contains("key *** failed") && !text.contains("ECHOED"),
        "{text}"
    );
    // What the upstream sent after the error, in the same read, is not passed on.
    assert!(
        !text.contains("AFTER") && !text.contains("response.completed"),
        "{text}"
    );
}

/// A Responses stream whose error comes after its opening events but before any content
/// (OpenAI sends a rate limit so) is the target's failure: the next target serves.
#[tokio::test]
async fn a_responses_stream_failing_after_its_opening_events_fails_over() {
    let limited = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n",
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"resp_1\"}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"too_many_requests\",\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached\"}}\n\n",
    );
    let first = upstream(Script::Reply(200, "text/event-stream", limited.into())).await;
    let second = upstream(Script::Reply(
        200,
        "text/event-stream",
        RESPONSES_STREAM.into(),
    ))
    .await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n",
        first.url, second.url
    ))
    .await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(text, RESPONSES_STREAM);
    assert_eq!(first.hits.load(Ordering::SeqCst), 1);
}

/// A Responses stream's `error` event ends it: what the upstream sends in later reads is
/// not passed on, and the request is logged as the upstream's failure.
#[tokio::test]
async fn nothing_after_a_responses_error_event_is_passed_on() {
    // An upstream that sends the error event, then, a moment later, more events.
    // (An error before any content would be failed over instead.)
    let up = raw_sse_upstream(
        vec![
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"BEFORE\"}\n\nevent: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}\n\n".into(),
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"AFTER\"}\n\n".into(),
        ],
        Then::Finish,
    )
    .await;
    let url = weir(&openai_route(&up, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(text.contains("boom") && !text.contains("AFTER"), "{text}");
}

/// A Responses stream that ends with `response.failed` is counted as a stream that failed
/// upstream (metrics, log line and ledger), not as a whole answer.
#[tokio::test]
async fn a_responses_stream_ending_with_response_failed_counts_as_a_stream_error() {
    let up = raw_sse_upstream(
        vec![
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n\
             event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
             event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n".into(),
        ],
        Then::Finish,
    )
    .await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(text.contains("response.failed"), "{text}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = metrics_of(&admin).await;
    assert!(
        metrics.contains(r#"model="r",provider="o",reason="upstream"} 1"#),
        "{metrics}"
    );
}

/// The gateway's own `error` event comes next in the stream's sequence (the SDK's event
/// type has `sequence_number`); upstreams that number nothing get none.
#[tokio::test]
async fn a_responses_error_event_of_the_gateway_takes_the_next_sequence_number() {
    let numbered = [
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\": 7,\"delta\":\"Hi\"}\n\n",
    ];
    let unnumbered = [
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
    ];
    for (events, expected) in [(numbered, Some(8)), (unnumbered, None)] {
        let up = raw_sse_upstream(
            events.iter().map(|e| (*e).to_owned()).collect(),
            Then::Finish,
        )
        .await;
        let url = weir(&openai_route(&up, "r", "")).await;
        let text = post_text(
            &url,
            "/v1/responses",
            &json!({"model": "r", "input": "hi", "stream": true}),
        )
        .await;
        let events = sse_events(&text);
        let (name, data) = events.last().unwrap();
        assert_eq!(name.as_deref(), Some("error"), "{text}");
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["sequence_number"].as_u64(), expected, "{text}");
    }
}

/// A Responses stream ends for the client with the response's final event, though the
/// upstream holds its body open after it (as chat streams end at `message_stop`).
#[tokio::test]
async fn a_responses_stream_ends_at_its_final_event_though_the_upstream_lingers() {
    let up = raw_sse_upstream(
        vec![concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}}}\n\n",
        )
        .into()],
        Then::Linger(Duration::from_secs(4)),
    )
    .await;
    let url = weir(&openai_route(
        &up,
        "r",
        "[providers.o.timeouts]\nidle = \"1s\"\n",
    ))
    .await;
    let started = Instant::now();
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(900), "{text}");
    assert!(
        text.contains("response.completed") && !text.contains("error"),
        "{text}"
    );
}

/// What an upstream's body does after the message ended (here: it is cut off before its
/// chunked end) is not the answer's: the target is not counted as failing.
#[tokio::test]
async fn a_failure_after_the_messages_end_does_not_count_against_the_target() {
    // Closed without the chunked body's end: a broken body, after [DONE].
    let up = raw_sse_upstream(
        vec![concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        )
        .into()],
        Then::Cut(Duration::from_millis(30)),
    )
    .await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "o", "")).await;
    for _ in 0..4 {
        let text = post_text(&url, "/v1/chat/completions", &o_req("o", true)).await;
        assert!(text.contains("[DONE]") && !text.contains("error"), "{text}");
    }
    // (The tails are read apart; give them their moment.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status: Value = admin_get(&admin, "/status").await.json().await.unwrap();
    let t = &status["targets"][0];
    assert_eq!(t["failures"], 0, "{status}");
    assert_eq!(t["in_flight"], 0, "{status}");
}

/// A Responses stream cut before its final event (which carries the usage) is charged an
/// estimate from the text deltas it streamed, as chat streams are.
#[tokio::test]
async fn a_responses_stream_cut_before_its_usage_is_charged_an_estimate() {
    // Gone before `response.completed`.
    let text = "x".repeat(400);
    let up = raw_sse_upstream(
        vec![format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_1\"}}}}\n\n\
             event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{text}\"}}\n\n"
        )],
        Then::Cut(Duration::from_millis(50)),
    )
    .await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(
        text.contains("xxxx") && text.contains("event: error"),
        "{text}"
    );
    let metrics = metrics_of(&admin).await;
    let output = metrics
        .lines()
        .find(|l| l.starts_with("weir_tokens_total") && l.contains("direction=\"output\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(output, Some(100), "{metrics}");
}

/// An upstream that writes more after the message's end in the same read: a same-dialect
/// client gets nothing after `message_stop`.
#[tokio::test]
async fn nothing_after_message_stop_is_relayed_even_within_one_read() {
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"end\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"JUNK\"}}\n\n",
    );
    let up = upstream(Script::Reply(200, "text/event-stream", body.into())).await;
    let url = weir(&anthropic_route(&up.url, "a", "")).await;
    let text = post_text(&url, "/v1/messages", &a_req("a", true)).await;
    assert!(
        text.contains("\"end\"") && text.contains("message_stop"),
        "{text}"
    );
    assert!(!text.contains("JUNK"), "{text}");
}

/// A Responses stream's final event split across two reads, with more after it: the
/// client's stream ends right after the event, whatever the split.
#[tokio::test]
async fn a_responses_final_event_split_across_reads_still_ends_the_stream() {
    let stream = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"JUNK\"}\n\n",
    );
    let end = stream.find("event: response.output_text.delta").unwrap();
    let start = stream.find("event: response.completed").unwrap();
    for split in [start + 10, start + 60, end - 3, end - 1] {
        let (first, second) = stream.split_at(split);
        let up = raw_sse_upstream(vec![first.into(), second.into()], Then::Finish).await;
        let url = weir(&openai_route(&up, "r", "")).await;
        let text = post_text(
            &url,
            "/v1/responses",
            &json!({"model": "r", "input": "hi", "stream": true}),
        )
        .await;
        assert_eq!(text, &stream[..end], "split at {split}");
    }
}

/// A Responses upstream that resets its connection after the final event: the client's
/// stream was whole, and the target is not counted as failing.
#[tokio::test]
async fn a_responses_reset_after_the_final_event_does_not_count_against_the_target() {
    // With event lines, and (some compatible servers) data lines only, spaced as Python's
    // json.dumps writes them.
    for body in [
        concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"}}\n\n",
        ),
        concat!(
            "data: {\"type\": \"response.created\", \"response\": {\"id\": \"resp_1\"}}\n\n",
            "data: {\"type\": \"response.completed\", \"response\": {\"id\": \"resp_1\", \"status\": \"completed\"}}\n\n",
        ),
    ] {
        reset_after_the_final_event(body).await;
    }
}

async fn reset_after_the_final_event(body: &str) {
    // Closed without the chunked body's end.
    let up = raw_sse_upstream(vec![body.into()], Then::Cut(Duration::from_millis(30))).await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "r", "")).await;
    for _ in 0..3 {
        let text = post_text(
            &url,
            "/v1/responses",
            &json!({"model": "r", "input": "hi", "stream": true}),
        )
        .await;
        assert!(
            text.contains("response.completed") && !text.contains("error"),
            "{text}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status: Value = admin_get(&admin, "/status").await.json().await.unwrap();
    let t = &status["targets"][0];
    assert_eq!(
        (&t["failures"], &t["in_flight"]),
        (&json!(0), &json!(0)),
        "{status}"
    );
}

#[tokio::test]
async fn embeddings_of_one_session_stick_to_one_target() {
    let url = weir(
        "[providers.mock2]\nkind = \"mock\"\n\
         [[models]]\nname = \"rr\"\nstrategy = \"round_robin\"\ntargets = [{ provider = \"mock\", model = \"mock\" }, { provider = \"mock2\", model = \"mock\" }]\n",
    )
    .await;
    let served = |session: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut r = client()
                .post(format!("{url}/v1/embeddings"))
                .bearer_auth(KEY)
                .json(&json!({"model": "rr", "input": "x"}));
            if let Some(s) = session {
                r = r.header("x-weir-session", s);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-weir-provider"].to_str().unwrap().to_owned()
        }
    };
    let mut sticky = Vec::new();
    let mut spread = Vec::new();
    for _ in 0..4 {
        sticky.push(served(Some("s1")).await);
    }
    for _ in 0..4 {
        spread.push(served(None).await);
    }
    assert!(sticky.iter().all(|p| *p == sticky[0]), "{sticky:?}");
    assert!(
        spread.contains(&"mock".to_owned()) && spread.contains(&"mock2".to_owned()),
        "{spread:?}"
    );
}

#[tokio::test]
async fn responses_streams_fail_over_before_their_first_event_and_are_checked_to_the_end() {
    let empty = upstream(Script::Reply(200, "text/event-stream", String::new())).await;
    let failing_first = upstream(Script::Reply(
        200,
        "text/event-stream",
        "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\"}\n\n".into(),
    ))
    .await;
    // Cut short: everything but the final event.
    let cut = RESPONSES_STREAM
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("response.completed"))
        .collect::<String>();
    let truncated = upstream(Script::Reply(200, "text/event-stream", cut.clone())).await;
    // Only `data:` lines, as some compatible servers send.
    let data_only = RESPONSES_STREAM
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let nameless = upstream(Script::Reply(200, "text/event-stream", data_only.clone())).await;
    let (url, admin) = weir_with_admin(&format!(
        "[providers.e]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.f]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.t]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.n]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"fo\"\ntargets = [{{ provider = \"e\" }}, {{ provider = \"f\" }}, {{ provider = \"mock\", model = \"mock\" }}]\n\
         [[models]]\nname = \"cut\"\ntargets = [{{ provider = \"t\" }}]\n\
         [[models]]\nname = \"nameless\"\ntargets = [{{ provider = \"n\" }}]\n",
        empty.url, failing_first.url, truncated.url, nameless.url
    ))
    .await;
    let stream = |model: &str| json!({"model": model, "input": "hi", "stream": true});
    let r = post(&url, "/v1/responses", &stream("fo"), Some(KEY)).await;
    assert_eq!(r.headers()["x-weir-provider"], "mock");
    assert!(r.text().await.unwrap().contains("response.completed"));
    assert_eq!(empty.hits.load(Ordering::SeqCst), 1);
    assert_eq!(failing_first.hits.load(Ordering::SeqCst), 1);

    let text = post_text(&url, "/v1/responses", &stream("cut")).await;
    assert!(text.starts_with(&cut), "{text}");
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("error"), "{text}");

    let text = post_text(&url, "/v1/responses", &stream("nameless")).await;
    assert_eq!(text, data_only, "passed on as it came");
    let metrics = metrics_of(&admin).await;
    let line =
        r#"weir_tokens_total{key="tester",model="nameless",provider="n",direction="input"} 11"#;
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn anthropic_model_listings_page_and_single_models_can_be_fetched() {
    let mut routes: String = (0..25)
        .map(|i| format!("[[models]]\nname = \"m{i:02}\"\ntargets = [{{ provider = \"mock\" }}]\n"))
        .collect();
    // A glob route of a provider that lists nothing (as Gemini's, Bedrock's).
    routes.push_str(
        "[[models]]\nname = \"gem-*\"\ntargets = [{ provider = \"mock\", model = \"mock\" }]\n",
    );
    let url = weir(&routes).await;
    let get = |path: String, anthropic: bool| {
        let url = url.clone();
        async move {
            let mut r = client().get(format!("{url}{path}"));
            r = if anthropic {
                r.header("x-api-key", KEY)
                    .header("anthropic-version", "2023-06-01")
            } else {
                r.bearer_auth(KEY)
            };
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let ids = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Anthropic's default page is 20; the rest follow `last_id`.
    let (_, first) = get("/v1/models".into(), true).await;
    assert_eq!(ids(&first).len(), 20);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["first_id"], "m00");
    let (_, rest) = get(
        format!("/v1/models?after_id={}", first["last_id"].as_str().unwrap()),
        true,
    )
    .await;
    assert_eq!(ids(&rest).len(), 6, "m19.. and mock: {rest}");
    assert_eq!(rest["has_more"], false);
    let (_, before) = get("/v1/models?before_id=m05&limit=3".into(), true).await;
    assert_eq!(ids(&before), ["m02", "m03", "m04"]);
    assert_eq!(before["has_more"], true);
    let (status, _) = get("/v1/models?limit=0".into(), true).await;
    assert_eq!(status, 400);
    // OpenAI's listing is one page.
    let (_, all) = get("/v1/models".into(), false).await;
    assert_eq!(ids(&all).len(), 26);
    // One model, in either shape.
    let (status, m) = get("/v1/models/m07".into(), true).await;
    assert_eq!((status, m["type"].as_str()), (200, Some("model")));
    let (status, m) = get("/v1/models/m07".into(), false).await;
    assert_eq!((status, m["object"].as_str()), (200, Some("model")));
    let (status, e) = get("/v1/models/nope".into(), false).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "model_not_found");
    // Not listed, but served by a glob route: it can be fetched.
    let (status, m) = get("/v1/models/gem-pro".into(), false).await;
    assert_eq!((status, m["id"].as_str()), (200, Some("gem-pro")));
    // A pattern is no model, even one the glob matches as text.
    for pattern in ["gem-*", "gem-p%3F", "gem-%2A"] {
        let (status, _) = get(format!("/v1/models/{pattern}"), false).await;
        assert_eq!(status, 404, "{pattern}");
    }
}

#[tokio::test]
async fn streams_that_fail_after_their_200_are_counted_as_stream_errors() {
    let up = upstream(Script::DropMidStream).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up.url, "dies", "")).await;
    let text = post_text(&url, "/v1/messages", &a_req("dies", true)).await;
    assert!(text.contains("event: error"), "{text}");
    // A whole stream is no error.
    post_text(&url, "/v1/messages", &a_req("mock", true)).await;
    // The log line is written when the response body is dropped, just after the last read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = metrics_of(&admin).await;
    let line =
        r#"weir_stream_errors_total{key="tester",model="dies",provider="a",reason="upstream"} 1"#;
    assert!(metrics.contains(line), "{metrics}");
    assert!(
        !metrics.contains(r#"weir_stream_errors_total{key="tester",model="mock""#),
        "{metrics}"
    );
}

/// A client that stops reading a long stream is cut off after `[timeouts] idle` without
/// taking a byte: its upstream call and its key's max_concurrent slot are let go.
#[tokio::test]
async fn a_client_that_stops_reading_is_let_go_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    // 20 MB: more than the sockets' buffers hold.
    let up = raw_sse_upstream(long_text_stream(20_000), Then::Finish).await;
    let (url, admin) = weir_with_admin(&format!(
        "[timeouts]\nidle = \"1s\"\n[[auth.keys]]\nname = \"one\"\nkey = \"sk-one\"\nmax_concurrent = 1\n{}",
        anthropic_route(&up, "big", "")
    ))
    .await;
    let body = json!({"model": "big", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut stalled = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: sk-one\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The stream holds the key's one slot while the client reads nothing...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = || {
        let url = url.clone();
        async move {
            client()
                .post(format!("{url}/v1/messages"))
                .header("x-api-key", "sk-one")
                .json(&a_req("mock", false))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(again().await, 429);
    // ...until it has taken nothing for a second.
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if again().await == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the stalled client's slot was never let go");
    let status: Value = admin_get(&admin, "/status").await.json().await.unwrap();
    assert_eq!(status["targets"][0]["in_flight"], json!(0), "{status}");
    drop(stalled);
}

/// A client that reads steadily, however slowly, is never cut: only one that takes no
/// bytes for `[timeouts] idle` is.
#[tokio::test]
async fn a_slow_but_steady_reader_gets_the_whole_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 4 MB, read at about 1.3 MB/s: a second without a write going through is common.
    let up = raw_sse_upstream(long_text_stream(4_000), Then::Finish).await;
    let url = weir(&format!(
        "[timeouts]\nidle = \"1s\"\n{}",
        anthropic_route(&up, "big", "")
    ))
    .await;
    let body = json!({"model": "big", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("event: message_stop"),
        "cut after {} bytes",
        got.len()
    );
}

/// An Anthropic stream of `n` text deltas of 1,000 bytes each, for [`raw_sse_upstream`]:
/// its opening, the deltas (one chunk), its end.
fn long_text_stream(n: usize) -> Vec<String> {
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n\
                 event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let delta = format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\n",
        "x".repeat(1000)
    );
    let end = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
               event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n\
               event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    vec![start.into(), delta.repeat(n), end.into()]
}

/// A stream whose client leaves while its opening is held and no input was reported (an
/// OpenAI stream's role chunk says nothing of usage; a reasoning model then thinks) is
/// charged the request's estimated input: the upstream bills it.
#[tokio::test]
async fn a_held_stream_abandoned_without_reported_input_is_charged_the_estimate() {
    let role = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    let up = raw_sse_upstream(vec![role.to_owned()], Then::Linger(Duration::from_secs(10))).await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "thinks", "")).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let body = o_req("thinks", true);
    let r = quick
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "no content came");
    let want = r#"weir_requests_total{key="tester",model="thinks",provider="o",status="499"} 1"#;
    let seen = metrics_with(&admin, want).await;
    assert!(seen.contains(want), "{seen}");
    let estimate = body.to_string().len().div_ceil(4) as u64;
    assert_eq!(tokens_in(&seen, "input"), estimate, "{seen}");
}

/// A stream whose opening outlasts the hold (a model thinking behind pings): time to first
/// token is the first content's, not when the opening was let through; and a client that
/// leaves then, when the opening said 0 input (as some Anthropic-compatible servers'
/// does), is charged the request's estimated input.
#[tokio::test]
async fn a_stream_let_through_before_content_times_its_first_token_and_charges_its_input() {
    let start = |input: u32| {
        format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{input},\"output_tokens\":1}}}}}}\n\n")
    };
    let ping = "event: ping\ndata: {\"type\": \"ping\"}\n\n".to_owned();
    // 30 pings, 50 ms apart: the text comes after 1.5 s.
    let mut chunks = vec![start(5)];
    chunks.extend(std::iter::repeat_n(ping.clone(), 30));
    chunks.push("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned());
    let up = raw_sse_upstream(chunks, Then::Finish).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up, "slow-thought", "")).await;
    let r = post(
        &url,
        "/v1/messages",
        &a_req("slow-thought", true),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"hi\""));
    let want = r#"weir_time_to_first_token_seconds_count{key="tester",model="slow-thought",provider="a"} 1"#;
    let seen = metrics_with(&admin, want).await;
    let sum: f64 = seen
        .lines()
        .find(|l| {
            l.starts_with(
                "weir_time_to_first_token_seconds_sum{key=\"tester\",model=\"slow-thought\"",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        sum >= 1.4,
        "the first token came after 1.5 s, not at the release: {sum}"
    );

    // The client leaves after the release, before any content; the opening said 0 input.
    let mut chunks = vec![start(0)];
    chunks.extend(std::iter::repeat_n(ping, 60));
    let up = raw_sse_upstream(chunks, Then::Linger(Duration::from_secs(10))).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up, "zero-input", "")).await;
    let body = a_req("zero-input", true);
    let mut r = client()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "let through after a second");
    let _ = r.chunk().await;
    drop(r);
    let want =
        r#"weir_requests_total{key="tester",model="zero-input",provider="a",status="200"} 1"#;
    let seen = metrics_with(&admin, want).await;
    assert!(seen.contains(want), "{seen}");
    let estimate = body.to_string().len().div_ceil(4) as u64;
    assert_eq!(tokens_in(&seen, "input"), estimate, "{seen}");

    // A whole stream whose every figure says 0 input is charged the estimate too.
    let ended = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned();
    let up = raw_sse_upstream(vec![start(0), ended], Then::Finish).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up, "no-input", "")).await;
    let body = a_req("no-input", true);
    let r = post(&url, "/v1/messages", &body, Some(KEY)).await;
    assert!(r.text().await.unwrap().contains("message_stop"));
    let want = r#"weir_requests_total{key="tester",model="no-input",provider="a",status="200"} 1"#;
    let seen = metrics_with(&admin, want).await;
    let estimate = body.to_string().len().div_ceil(4) as u64;
    assert_eq!(tokens_in(&seen, "input"), estimate, "{seen}");
    assert_eq!(tokens_in(&seen, "output"), 2, "the reported output stands");
}

/// A Responses stream's upstream latency is its first content's (a `*.delta` event), not
/// its `response.created`'s, which comes at once: in the metric and in `/status`.
#[tokio::test]
async fn a_responses_streams_upstream_latency_is_its_first_contents() {
    let mut chunks = vec![
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n".to_owned(),
    ];
    // Ten keep-alive comments, 50 ms apart, before the first text.
    chunks.extend((0..10).map(|_| ": thinking\n\n".to_owned()));
    chunks.push(concat!(
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}}}\n\n",
    ).to_owned());
    let up = raw_sse_upstream(chunks, Then::Finish).await;
    let (url, admin) = weir_with_admin(&openai_route(&up, "r", "")).await;
    let text = post_text(
        &url,
        "/v1/responses",
        &json!({"model": "r", "input": "hi", "stream": true}),
    )
    .await;
    assert!(text.contains("response.completed"), "{text}");
    let m = admin_get(&admin, "/metrics").await.text().await.unwrap();
    let took: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("weir_upstream_duration_seconds_sum{")
                .and_then(|l| l.split_once("} "))
                .map(|(_, v)| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{m}"));
    assert!(took >= 0.45, "{m}");
    let status: Value = admin_get(&admin, "/status").await.json().await.unwrap();
    assert!(
        status["targets"][0]["latency_ms"].as_f64().unwrap() >= 450.0,
        "{status}"
    );
}

/// A message's whole answer as Anthropic writes it, with the id `id`.
fn a_message(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"message","role":"assistant","model":"claude-x","content":[{{"type":"text","text":"ok"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":3,"output_tokens":1}}}}"#
    )
}

/// Anthropic's message threads: the upstream keeps the conversation, so a request
/// continuing it (`thread: {"type": "continue", "previous_message_id": ...}`, with only
/// the new messages) goes to the target and key that answered that message, whole or
/// streamed, though the route rotates targets and the pool keys; a target that keeps no
/// threads (another dialect, or an Anthropic-compatible service not said to) is passed
/// over, and when none can take the request the client gets the refusal its SDK acts on
/// (`error.details.error_code`): it sends the conversation again without `thread`, or
/// whole as a new thread.
#[tokio::test]
async fn message_threads_stay_with_the_account_that_holds_them() {
    let a = upstream(Script::Reply(200, "application/json", a_message("msg_A"))).await;
    let b = upstream(Script::Reply(200, "application/json", a_message("msg_B"))).await;
    let stream = |id: &str| {
        format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"{id}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":3,\"output_tokens\":1}}}}}}\n\n\
             event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
             event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"ok\"}}}}\n\n\
             event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":1}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        )
    };
    let c = upstream(Script::Reply(200, "text/event-stream", stream("msg_C"))).await;
    let d = upstream(Script::Reply(200, "text/event-stream", stream("msg_D"))).await;
    let o = upstream(Script::Reply(200, "application/json", "{}".into())).await;
    let threads = "capabilities = { threads = true }\n";
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"ka1\", \"ka2\", \"ka3\"]\n{threads}\
         [providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"kb\"]\n{threads}\
         [providers.c]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"kc\"]\n{threads}\
         [providers.d]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"kd\"]\n{threads}\
         [providers.compatible]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"kx\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"ko\"]\n\
         [[models]]\nname = \"t\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n\
         [[models]]\nname = \"ts\"\nstrategy = \"round_robin\"\ntargets = [{{ provider = \"c\" }}, {{ provider = \"d\" }}]\n\
         [[models]]\nname = \"mixed\"\ntargets = [{{ provider = \"o\" }}, {{ provider = \"b\" }}]\n\
         [[models]]\nname = \"none\"\ntargets = [{{ provider = \"o\" }}, {{ provider = \"compatible\" }}]\n",
        a.url, b.url, c.url, d.url, o.url, o.url
    ))
    .await;
    let turn = |model: &str, thread: Value, stream: bool| {
        json!({"model": model, "max_tokens": 10, "stream": stream, "thread": thread,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let create = json!({"type": "create"});
    let cont = |id: &str| json!({"type": "continue", "previous_message_id": id});
    let key = |up: &Upstream, i: usize| {
        up.seen.lock().unwrap()[i].0["x-api-key"]
            .to_str()
            .unwrap()
            .to_owned()
    };

    // Whole answers: until one of `a`'s is known, requests rotate.
    while a.hits.load(Ordering::SeqCst) == 0 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("t", create.clone(), false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let last = a.hits.load(Ordering::SeqCst) - 1;
    let sent: Value = serde_json::from_slice(&a.seen.lock().unwrap()[last].1).unwrap();
    assert_eq!(sent["thread"], create, "the thread goes to the upstream");
    let maker = key(&a, last);
    let (a0, b0) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
    for _ in 0..6 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("t", cont("msg_A"), false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-weir-provider"], "a");
    }
    assert_eq!(
        (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst)),
        (a0 + 6, b0)
    );
    for i in a0..a0 + 6 {
        assert_eq!(key(&a, i), maker, "request {i} went out with another key");
    }
    // Without a thread, the route and the pool still rotate.
    for _ in 0..4 {
        let r = post(&url, "/v1/messages", &a_req("t", false), Some(KEY)).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), b0 + 2);
    // A continuation takes no turn of the rotation: new threads, each continued once,
    // still spread over the targets.
    let mut made = Vec::new();
    for _ in 0..6 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("t", create.clone(), false),
            Some(KEY),
        )
        .await;
        let by = r.headers()["x-weir-provider"].to_str().unwrap().to_owned();
        let id: Value = r.json().await.unwrap();
        let r = post(
            &url,
            "/v1/messages",
            &turn("t", cont(id["id"].as_str().unwrap()), false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.headers()["x-weir-provider"], by.as_str());
        made.push(by);
    }
    assert_eq!(made.iter().filter(|p| *p == "a").count(), 3, "{made:?}");

    // Streamed: the id comes in `message_start`.
    while d.hits.load(Ordering::SeqCst) == 0 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("ts", create.clone(), true),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let c0 = c.hits.load(Ordering::SeqCst);
    for _ in 0..4 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("ts", cont("msg_D"), true),
            Some(KEY),
        )
        .await;
        assert_eq!(r.headers()["x-weir-provider"], "d");
        assert!(r.text().await.unwrap().contains("message_stop"));
    }
    assert_eq!(c.hits.load(Ordering::SeqCst), c0);

    // A target that keeps no threads is passed over for one that does.
    for _ in 0..2 {
        let r = post(
            &url,
            "/v1/messages",
            &turn("mixed", create.clone(), false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-weir-provider"], "b");
    }
    // None can: refused as Anthropic's SDKs understand, and nothing is sent upstream.
    let r = post(
        &url,
        "/v1/messages",
        &turn("none", create.clone(), false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    assert_eq!(
        e["error"]["details"]["error_code"], "thread_unsupported_request",
        "{e}"
    );
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("compatible") && m.contains("`thread`"), "{m}");
    let r = post(
        &url,
        "/v1/messages",
        &turn("none", cont("msg_Z"), true),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "not_found_error", "{e}");
    assert_eq!(
        e["error"]["details"]["error_code"], "thread_not_found",
        "{e}"
    );
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    // Without `thread`, the same route serves as ever (here: the OpenAI target).
    post(
        &url,
        "/v1/messages",
        &turn("none", Value::Null, false),
        Some(KEY),
    )
    .await;
    assert_ne!(o.hits.load(Ordering::SeqCst), 0);
}

/// An Anthropic upstream's error `details` (what its SDKs act on) reach an Anthropic
/// client as they came, and the request's id comes as `request-id` too; an OpenAI
/// client's error shape has no place for details.
#[tokio::test]
async fn anthropic_error_details_and_the_request_id_reach_anthropic_clients() {
    let body = r#"{"type":"error","error":{"type":"not_found_error","message":"thread not found","details":{"error_code":"thread_not_found"}},"request_id":"req_up"}"#;
    let up = upstream(Script::Reply(404, "application/json", body.into())).await;
    let url = weir(&anthropic_route(&up.url, "claude-x", "")).await;
    let r = post(&url, "/v1/messages", &a_req("claude-x", false), Some(KEY)).await;
    assert_eq!(r.status(), 404);
    // Anthropic's SDKs read the request's id as `request-id`.
    let id = r.headers()["x-request-id"].clone();
    assert_eq!(r.headers()["request-id"], id);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["request_id"], id.to_str().unwrap());
    assert_eq!(
        e["error"]["details"],
        json!({"error_code": "thread_not_found"}),
        "{e}"
    );
    assert_eq!(e["error"]["message"], "thread not found");
    let r = post(
        &url,
        "/v1/chat/completions",
        &o_req("claude-x", false),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("request-id").is_none());
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].get("details").is_none(), "{e}");
}

/// An upstream's token count past belief (a broken or hostile one's: 2^64 - 1) does not
/// wrap in the client's totals, and is not counted: the metrics keep the gateway's
/// estimate, not a wrapped or absurd figure.
#[tokio::test]
async fn a_token_count_past_belief_neither_wraps_nor_counts() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":18446744073709551615}}"#;
    let up = upstream(Script::Reply(200, "application/json", body.into())).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up.url, "claude-x", "")).await;
    for _ in 0..2 {
        let r = post(
            &url,
            "/v1/chat/completions",
            &o_req("claude-x", false),
            Some(KEY),
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["usage"]["total_tokens"], u64::MAX, "{v}");
    }
    let m = metrics_with(&admin, "direction=\"input\"").await;
    assert_eq!(tokens_in(&m, "input"), 20, "{m}");
    assert!(tokens_in(&m, "output") < 10, "{m}");
    // An input past belief: the request's estimate (a quarter of its bytes) stands in.
    let body = body
        .replace(
            "\"input_tokens\":10",
            "\"input_tokens\":18446744073709551615",
        )
        .replace("18446744073709551615}", "3}");
    let up = upstream(Script::Reply(200, "application/json", body)).await;
    let (url, admin) = weir_with_admin(&anthropic_route(&up.url, "claude-x", "")).await;
    let r = post(&url, "/v1/messages", &a_req("claude-x", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    let m = metrics_with(&admin, "direction=\"input\"").await;
    let input = tokens_in(&m, "input");
    assert!(input > 0 && input < 100, "{m}");
    assert_eq!(tokens_in(&m, "output"), 3, "{m}");
}

/// A `data:` URL that cannot be read as base64 data of a media type is refused for an
/// Anthropic client too (no upstream takes one as a URL), whatever the target.
#[tokio::test]
async fn an_unreadable_data_url_is_refused_in_either_dialect() {
    let url = weir("[[models]]\nname = \"m\"\ntargets = [{ provider = \"mock\" }]\n").await;
    for bad in [
        "data:image/png,AAAA",
        "data:;base64,AAAAAAAA",
        " data:image/png;base64,AAAA",
    ] {
        let body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": bad}},
            {"type": "text", "text": "what is it?"}]}]});
        let r = post(&url, "/v1/messages", &body, Some(KEY)).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("a data URL could not be read"),
            "{bad}: {e}"
        );
    }
    // (Without a media type, where the data shows one, as OpenAI clients may send it.)
    for good in [
        "data:image/png;base64,iVBORw0KGgo=",
        "data:;base64,iVBORw0KGgo=",
    ] {
        let body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": good}},
            {"type": "text", "text": "what is it?"}]}]});
        let r = post(&url, "/v1/messages", &body, Some(KEY)).await;
        assert_eq!(r.status(), 200, "{good}");
    }
}

/// An OpenAI-compatible stream tells its input only at the end: an Anthropic client's
/// `message_start` carries the gateway's estimate (clients that read the input there
/// alone, as LangChain does, would keep 0), and the closing `message_delta` the
/// upstream's own figure.
#[tokio::test]
async fn an_anthropic_clients_stream_from_openai_opens_with_an_input_estimate() {
    let chunk = |body: &str| {
        format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",{body}}}\n\n")
    };
    let body = [
        chunk(r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#),
        chunk(r#""choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]"#),
        chunk(r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}]"#),
        chunk(r#""choices":[],"usage":{"prompt_tokens":123,"completion_tokens":1,"total_tokens":124}"#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let up = upstream(Script::Reply(200, "text/event-stream", body)).await;
    let url = weir(&openai_route(&up.url, "o", "")).await;
    let text = post_text(&url, "/v1/messages", &a_req("o", true)).await;
    let events = sse_events(&text);
    let data = |name: &str| -> Value {
        let (_, d) = events
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {name}: {text}"));
        serde_json::from_str(d).unwrap()
    };
    let opening = data("message_start")["message"]["usage"]["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(opening > 0 && opening != 123, "{text}");
    assert_eq!(
        data("message_delta")["usage"]["input_tokens"],
        123,
        "{text}"
    );
}

/// Claude Code's web search (Claude's `web_search` tool, alone) routed to Gemini is
/// grounding with Google Search, and the answer comes back in Claude's shape; an OpenAI
/// client's `web_search_options` likewise, with `url_citation` annotations.
#[tokio::test]
async fn web_search_reaches_gemini_as_grounding_with_google_search() {
    let answer = json!({
        "candidates": [{"content": {"parts": [{"text": "Spain won. The end."}], "role": "model"},
                        "finishReason": "STOP",
                        "groundingMetadata": {
                            "webSearchQueries": ["euro 2024 winner"],
                            "groundingChunks": [{"web": {"uri": "https://a.example/r", "title": "a.example"}}],
                            "groundingSupports": [{"segment": {"endIndex": 10, "text": "Spain won."},
                                                   "groundingChunkIndices": [0]}]}}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"
    });
    let up = upstream(Script::Reply(200, "application/json", answer.to_string())).await;
    let url = weir(&format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\nkeys = [\"AIza-k\"]\n\
         [[models]]\nname = \"*\"\ntargets = [{{ provider = \"g\", model = \"gemini-2.5-flash\" }}]\n",
        up.url
    ))
    .await;
    let r = post(
        &url,
        "/v1/messages",
        &json!({"model": "claude-haiku-4-5", "max_tokens": 1000,
                "messages": [{"role": "user", "content": "Perform a web search for the query: euro 2024 winner"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let (_, sent) = up.seen.lock().unwrap()[0].clone();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]));
    let types: Vec<_> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["server_tool_use", "web_search_tool_result", "text", "text"]
    );
    assert_eq!(v["content"][0]["input"]["query"], "euro 2024 winner");
    assert_eq!(v["content"][1]["content"][0]["url"], "https://a.example/r");
    assert_eq!(
        v["content"][2]["citations"][0]["url"],
        "https://a.example/r"
    );
    assert_eq!(v["usage"]["server_tool_use"]["web_search_requests"], 1);

    let r = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "gemini", "web_search_options": {},
                "messages": [{"role": "user", "content": "Who won euro 2024?"}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "Spain won. The end.");
    assert_eq!(
        msg["annotations"],
        json!([{"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 10,
                "url": "https://a.example/r", "title": "a.example"}}])
    );
    let (_, sent) = up.seen.lock().unwrap()[1].clone();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]));
    // Domains Gemini cannot restrict to: a 400 in the client's dialect, nothing sent.
    let r = post(
        &url,
        "/v1/messages",
        &json!({"model": "claude-haiku-4-5", "max_tokens": 1000,
                "messages": [{"role": "user", "content": "search"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search", "allowed_domains": ["example.com"]}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_domains"),
        "{v}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
}

/// Claude's web search tool (Claude Code's web search) routed to OpenRouter is its web
/// search server tool, and the answer's `url_citation` annotations come back in Claude's shape, whole
/// and streamed.
#[tokio::test]
async fn web_search_reaches_openrouter_as_its_web_search_tool() {
    let text = "Héllo. Spain won. Bye.";
    let note = |start: usize, end: usize, url: &str| {
        json!({"type": "url_citation", "url_citation": {"url": url, "title": "T", "content": "page text",
               "start_index": start, "end_index": end}})
    };
    let notes = json!([
        note(7, 17, "https://a.example"),
        note(7, 17, "https://b.example")
    ]);
    let whole = json!({
        "id": "gen-1", "object": "chat.completion", "created": 1, "model": "google/gemini-2.5-flash",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text, "annotations": notes}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    });
    let head = r#"{"id":"gen-2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":"#;
    let streamed = format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"Héllo. Spain\"}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{\"content\":\" won. Bye.\",\"annotations\":{notes}}},\"finish_reason\":null}}]}}\n\n\
         data: {head}{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: {{\"id\":\"gen-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}}}\n\n\
         data: [DONE]\n\n"
    );
    let up = upstream(Script::Paths(vec![
        (
            "/whole/v1/chat/completions",
            200,
            "application/json",
            whole.to_string(),
        ),
        (
            "/stream/v1/chat/completions",
            200,
            "text/event-stream",
            streamed,
        ),
    ]))
    .await;
    let url = weir(&format!(
        "[providers.or]\nkind = \"openai\"\npreset = \"openrouter\"\nbase_url = \"{0}/whole/v1\"\nkeys = [\"sk-or\"]\n\
         [providers.ors]\nkind = \"openai\"\npreset = \"openrouter\"\nbase_url = \"{0}/stream/v1\"\nkeys = [\"sk-or\"]\n\
         [[models]]\nname = \"whole\"\ntargets = [{{ provider = \"or\", model = \"google/gemini-2.5-flash\" }}]\n\
         [[models]]\nname = \"streamed\"\ntargets = [{{ provider = \"ors\", model = \"google/gemini-2.5-flash\" }}]\n",
        up.url
    ))
    .await;
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 1000, "stream": stream,
               "messages": [{"role": "user", "content": "Perform a web search for the query: euro 2024"}],
               "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]})
    };
    let r = post(&url, "/v1/messages", &ask("whole", false), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let (_, sent) = up.seen.lock().unwrap()[0].clone();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"type": "openrouter:web_search", "parameters": {"max_uses": 8}}])
    );
    let content = v["content"].as_array().unwrap();
    let types: Vec<_> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "server_tool_use",
            "web_search_tool_result",
            "text",
            "text",
            "text"
        ]
    );
    assert_eq!(content[1]["tool_use_id"], content[0]["id"]);
    assert_eq!(content[1]["content"].as_array().unwrap().len(), 2);
    assert_eq!(content[3]["text"], "Spain won.");
    assert_eq!(content[3]["citations"][1]["url"], "https://b.example");
    let joined: String = content[2..]
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text);

    let r = post(&url, "/v1/messages", &ask("streamed", true), Some(KEY)).await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let got = weir_testkit::AnthropicEvents::of(&body);
    let events = &got.0;
    let starts = got.block_starts();
    assert_eq!(
        starts,
        ["text", "server_tool_use", "web_search_tool_result"]
    );
    let cited = got.citations();
    assert_eq!(cited, [(0, "https://a.example"), (0, "https://b.example")]);
    let text_out: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text_out, text);
    assert_eq!(events.last().unwrap()["type"], "message_stop");

    // Domain lists go as OpenRouter's; a choice naming the search has no function to name
    // (left to the model); `none` sends no search.
    let r = post(
        &url,
        "/v1/messages",
        &json!({"model": "whole", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "tool", "name": "web_search"},
                "tools": [{"type": "web_search_20250305", "name": "web_search",
                           "allowed_domains": ["a.example"], "blocked_domains": ["b.example"]}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, sent) = up.seen.lock().unwrap()[2].clone();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"type": "openrouter:web_search", "parameters": {
            "allowed_domains": ["a.example"], "excluded_domains": ["b.example"]}}])
    );
    assert!(sent.get("tool_choice").is_none(), "{sent}");
    let r = post(
        &url,
        "/v1/messages",
        &json!({"model": "whole", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "none"},
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, sent) = up.seen.lock().unwrap()[3].clone();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
}
