//! The fault-injecting upstream, driven over real sockets by plain HTTP clients (hyper's
//! connection-level client, and raw TCP where the wire itself is the point).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use weir_testkit::sse_events;
use weir_testkit::upstream::{
    Behaviour, FaultyUpstream, RateLimitFormat, PARTIAL_TEXT, SLOW_DRIP_TEXT,
};

/// Generous bound for anything that should happen "now" (slow CI must not fail tests).
const LONG: Duration = Duration::from_secs(10);

const MESSAGES: &str = "/v1/messages";
const CHAT: &str = "/v1/chat/completions";

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

fn openai_body(stream: bool, include_usage: bool) -> Value {
    let mut b = json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    });
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// One HTTP/1.1 connection: the request sender and the task driving the connection
/// (aborting it closes the socket).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

fn addr(url: &str) -> &str {
    url.strip_prefix("http://").expect("http URL")
}

async fn connect(url: &str) -> Conn {
    let tcp = TcpStream::connect(addr(url)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Conn { sender, task }
}

fn request(url: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::post(path)
        .header("host", addr(url))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// Sends one request on a fresh HTTP/1.1 connection; returns the response head and body.
async fn send_on(
    conn: &mut Conn,
    url: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Response<Incoming> {
    timeout(
        LONG,
        conn.sender.send_request(request(url, path, body, headers)),
    )
    .await
    .expect("an answer in time")
    .expect("a response")
}

/// A whole answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// SSE events as (event name, data).
    fn events(&self) -> Vec<(Option<String>, String)> {
        sse_events(self.body.as_bytes())
            .into_iter()
            .map(|e| (e.event().map(str::to_owned), e.data().to_owned()))
            .collect()
    }
}

async fn call(up: &FaultyUpstream, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut conn = connect(up.url()).await;
    let r = send_on(&mut conn, up.url(), path, body, headers).await;
    let (parts, body) = r.into_parts();
    let bytes = timeout(LONG, body.collect())
        .await
        .expect("a complete body in time")
        .expect("a complete body")
        .to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn parse(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}"))
}

fn names(events: &[(Option<String>, String)]) -> Vec<&str> {
    events
        .iter()
        .map(|(n, _)| n.as_deref().unwrap_or("message"))
        .collect()
}

/// Checks a complete Anthropic stream of `text`.
fn assert_anthropic_stream(a: &Answer, text: &str, model: &str) {
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "text/event-stream");
    let events = a.events();
    let words = text.split_whitespace().count();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", words));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected, "{}", a.body);
    let data: Vec<Value> = events.iter().map(|(_, d)| parse(d)).collect();
    for ((name, _), d) in events.iter().zip(&data) {
        assert_eq!(
            d["type"].as_str(),
            name.as_deref(),
            "type matches event name"
        );
    }
    assert!(data[0]["message"]["id"]
        .as_str()
        .unwrap()
        .starts_with("msg_"));
    assert_eq!(data[0]["message"]["model"], model);
    assert_eq!(data[0]["message"]["content"], json!([]));
    assert!(
        data[0]["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let streamed: String = data[2..2 + words]
        .iter()
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, text);
    let delta = &data[3 + words];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], words as u64);
}

/// Checks a complete OpenAI stream of `text`; returns the chunks.
fn assert_openai_stream(a: &Answer, text: &str, model: &str, usage: bool) -> Vec<Value> {
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "text/event-stream");
    let events = a.events();
    assert!(events.iter().all(|(n, _)| n.is_none()), "no event names");
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(last.1, "[DONE]");
    let chunks: Vec<Value> = chunks.iter().map(|(_, d)| parse(d)).collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], model);
        assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let words = text.split_whitespace().count();
    let streamed: String = chunks[1..1 + words]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    let finish = &chunks[1 + words];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    if usage {
        assert_eq!(chunks.len(), words + 3);
        let u = &chunks[words + 2];
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["completion_tokens"], words as u64);
        assert!(u["usage"]["prompt_tokens"].as_u64().unwrap() >= 1);
    } else {
        assert_eq!(chunks.len(), words + 2);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }
    chunks
}

// ---------------------------------------------------------------------------------------
// Ok

#[tokio::test]
async fn ok_answers_anthropic_json() {
    let up = FaultyUpstream::start(Behaviour::ok("Hello there")).await;
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "application/json");
    let j = a.json();
    assert!(j["id"].as_str().unwrap().starts_with("msg_"), "{j}");
    assert_eq!(j["type"], "message");
    assert_eq!(j["role"], "assistant");
    assert_eq!(j["model"], "claude-test");
    assert_eq!(
        j["content"],
        json!([{"type": "text", "text": "Hello there"}])
    );
    assert_eq!(j["stop_reason"], "end_turn");
    assert_eq!(j["stop_sequence"], Value::Null);
    assert!(j["usage"]["input_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(j["usage"]["output_tokens"], 2);
    assert_eq!(up.cancelled(), 0);
}

#[tokio::test]
async fn ok_answers_openai_json() {
    let up = FaultyUpstream::start(Behaviour::ok("Hello there")).await;
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "application/json");
    let j = a.json();
    assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"), "{j}");
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["model"], "gpt-test");
    assert_eq!(j["choices"][0]["message"]["role"], "assistant");
    assert_eq!(j["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    let u = &j["usage"];
    assert_eq!(u["completion_tokens"], 2);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 2
    );
}

#[tokio::test]
async fn ok_streams_anthropic_sse() {
    let text = "Hello there, streaming world";
    let up = FaultyUpstream::start(Behaviour::ok(text)).await;
    let a = call(&up, MESSAGES, &anthropic_body(true), &[]).await;
    assert_anthropic_stream(&a, text, "claude-test");
    // A stream read to its end is not a cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.cancelled(), 0);
}

#[tokio::test]
async fn ok_streams_openai_sse_with_and_without_usage() {
    let text = "Hello there, streaming world";
    let up = FaultyUpstream::start(Behaviour::ok(text)).await;
    let a = call(&up, CHAT, &openai_body(true, true), &[]).await;
    assert_openai_stream(&a, text, "gpt-test", true);
    let a = call(&up, CHAT, &openai_body(true, false), &[]).await;
    assert_openai_stream(&a, text, "gpt-test", false);
    assert_eq!(up.cancelled(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_for_dialect_behaviours_only() {
    let up = FaultyUpstream::start(Behaviour::ok("hi")).await;
    let a = call(&up, "/v1/models", &json!({}), &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
    up.set(Behaviour::json(202, &json!({"fixed": true})));
    let a = call(&up, "/anything", &json!({}), &[]).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.json(), json!({"fixed": true}));
}

#[tokio::test]
async fn over_h2c_too() {
    let up = FaultyUpstream::start(Behaviour::ok("Hello h2")).await;
    let tcp = TcpStream::connect(addr(up.url())).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("{}{MESSAGES}", up.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(anthropic_body(false).to_string())))
        .unwrap();
    let r = timeout(LONG, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["content"][0]["text"], "Hello h2");
}

// ---------------------------------------------------------------------------------------
// Fixed answers and classic failures

#[tokio::test]
async fn status_is_a_fixed_answer() {
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 418,
        headers: vec![
            ("x-custom".to_owned(), "yes".to_owned()),
            ("x-other".to_owned(), "1".to_owned()),
        ],
        content_type: "text/plain".to_owned(),
        body: "I am a teapot".to_owned(),
    })
    .await;
    for path in [MESSAGES, CHAT, "/elsewhere"] {
        let a = call(&up, path, &json!({}), &[]).await;
        assert_eq!(a.status, 418);
        assert_eq!(a.content_type(), "text/plain");
        assert_eq!(a.header("x-custom"), Some("yes"));
        assert_eq!(a.header("x-other"), Some("1"));
        assert_eq!(a.body, "I am a teapot");
    }
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn rate_limited_in_each_format() {
    let up = FaultyUpstream::start(Behaviour::rate_limited(RateLimitFormat::None)).await;

    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.content_type(), "application/json");
    let j = a.json();
    assert_eq!(j["type"], "error");
    assert_eq!(j["error"]["type"], "rate_limit_error");
    assert!(j["error"]["message"].is_string());
    for h in [
        "retry-after",
        "retry-after-ms",
        "x-ratelimit-reset-requests",
    ] {
        assert_eq!(a.header(h), None, "{h}");
    }

    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.status, 429);
    let j = a.json();
    assert_eq!(j["error"]["type"], "rate_limit_exceeded");
    assert!(j["error"]["message"].is_string());

    up.set(Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(
        7,
    )));
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!((a.status, a.header("retry-after")), (429, Some("7")));

    up.set(Behaviour::rate_limited(RateLimitFormat::RetryAfterMs(1500)));
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.header("retry-after-ms"), Some("1500"));
    assert_eq!(a.header("retry-after"), None);

    up.set(Behaviour::rate_limited(RateLimitFormat::RetryAfterDate(30)));
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    let date = a.header("retry-after").unwrap();
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    assert_eq!(date.len(), 29, "{date}");
    assert!(
        date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "{date}"
    );

    up.set(Behaviour::rate_limited(RateLimitFormat::Anthropic(60)));
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(
        a.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let reset = a.header("anthropic-ratelimit-requests-reset").unwrap();
    assert!(is_rfc3339_utc(reset), "{reset}");
    assert!(reset[..4].parse::<u32>().unwrap() >= 2025, "{reset}");

    up.set(Behaviour::rate_limited(RateLimitFormat::OpenAi(
        "6m0s".into(),
    )));
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(a.header("x-ratelimit-reset-requests"), Some("6m0s"));
    assert_eq!(a.header("retry-after"), None);

    up.set(Behaviour::rate_limited(RateLimitFormat::Groq(
        "2m59.56s".into(),
    )));
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(a.header("x-ratelimit-reset-requests"), Some("2m59.56s"));
    assert_eq!(a.header("retry-after"), Some("180"));

    up.set(Behaviour::rate_limited(RateLimitFormat::Cerebras(33011.38)));
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.header("x-ratelimit-remaining-requests-day"), Some("0"));
    assert_eq!(a.header("x-ratelimit-reset-requests-day"), Some("33011.38"));
}

#[tokio::test]
async fn overloaded_529_and_its_openai_503() {
    let up = FaultyUpstream::start(Behaviour::Overloaded529).await;
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.status, 529);
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let a = call(&up, CHAT, &openai_body(false, false), &[]).await;
    assert_eq!(a.status, 503);
    assert!(a.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn overloaded_as_the_first_event() {
    let up = FaultyUpstream::start(Behaviour::OverloadedFirstEvent).await;
    let a = call(&up, MESSAGES, &anthropic_body(true), &[]).await;
    assert_eq!((a.status, a.content_type()), (200, "text/event-stream"));
    assert!(a.body.starts_with("event: error\ndata: {"), "{}", a.body);
    let events = a.events();
    assert_eq!(names(&events), ["error"]);
    assert_eq!(
        parse(&events[0].1),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let a = call(&up, CHAT, &openai_body(true, false), &[]).await;
    assert_eq!((a.status, a.content_type()), (200, "text/event-stream"));
    let events = a.events();
    assert_eq!(events.len(), 1, "{}", a.body);
    assert!(parse(&events[0].1)["error"]["message"].is_string());
}

#[tokio::test]
async fn error_after_start_comes_before_any_content() {
    let up = FaultyUpstream::start(Behaviour::ErrorAfterStart).await;
    let a = call(&up, MESSAGES, &anthropic_body(true), &[]).await;
    assert_eq!((a.status, a.content_type()), (200, "text/event-stream"));
    let events = a.events();
    let n = names(&events);
    assert_eq!(n.first(), Some(&"message_start"));
    assert_eq!(n.last(), Some(&"error"));
    assert!(!n.contains(&"content_block_delta"), "{n:?}");
    assert_eq!(
        parse(&events.last().unwrap().1)["error"]["type"],
        "overloaded_error"
    );

    let a = call(&up, CHAT, &openai_body(true, false), &[]).await;
    let events = a.events();
    assert_eq!(events.len(), 2, "{}", a.body);
    let first = parse(&events[0].1);
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["choices"][0]["delta"]["content"], "");
    assert!(parse(&events[1].1)["error"]["message"].is_string());
}

#[tokio::test]
async fn html_500_is_an_nginx_page() {
    let up = FaultyUpstream::start(Behaviour::Html500).await;
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.content_type(), "text/html");
    assert!(a.body.contains("<center>nginx</center>"), "{}", a.body);
    assert!(serde_json::from_str::<Value>(&a.body).is_err());
}

#[tokio::test]
async fn malformed_sse_has_non_json_data() {
    let up = FaultyUpstream::start(Behaviour::MalformedSse).await;
    for (path, body) in [
        (MESSAGES, anthropic_body(true)),
        (CHAT, openai_body(true, false)),
    ] {
        let a = call(&up, path, &body, &[]).await;
        assert_eq!((a.status, a.content_type()), (200, "text/event-stream"));
        let events = a.events();
        assert!(!events.is_empty());
        for (_, data) in &events {
            assert!(serde_json::from_str::<Value>(data).is_err(), "{data}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Connection-level faults

async fn raw_post(tcp: &mut TcpStream, path: &str, body: &Value) {
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: upstream\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn reset_connection_is_a_tcp_reset() {
    let up = FaultyUpstream::start(Behaviour::ResetConnection).await;

    // On the wire: no response bytes, a reset.
    let mut tcp = TcpStream::connect(addr(up.url())).await.unwrap();
    raw_post(&mut tcp, MESSAGES, &anthropic_body(false)).await;
    let mut buf = [0u8; 1024];
    match timeout(LONG, tcp.read(&mut buf)).await.expect("no hang") {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!(
            "expected a reset, read {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    assert_eq!(up.hits(), 1, "the request was read and recorded first");

    // Through an HTTP client: a connection error, not a status.
    let mut conn = connect(up.url()).await;
    let r = timeout(
        LONG,
        conn.sender
            .send_request(request(up.url(), CHAT, &openai_body(false, false), &[])),
    )
    .await
    .expect("no hang");
    assert!(r.is_err(), "expected a connection error, got {r:?}");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn hang_never_answers() {
    let up = FaultyUpstream::start(Behaviour::Hang).await;
    let mut conn = connect(up.url()).await;
    let r = timeout(
        Duration::from_millis(300),
        conn.sender
            .send_request(request(up.url(), MESSAGES, &anthropic_body(false), &[])),
    )
    .await;
    assert!(r.is_err(), "expected no answer, got {r:?}");
    wait_until("the request to be recorded", || up.hits() == 1).await;
    // Other connections are unaffected once the behaviour changes.
    up.set(Behaviour::ok("back"));
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.json()["content"][0]["text"], "back");
}

#[tokio::test]
async fn slow_drip_paces_every_event() {
    let interval = Duration::from_millis(60);
    let up = FaultyUpstream::start(Behaviour::SlowDrip { interval }).await;
    // Anthropic: 2 opening events, one delta per word, 3 closing events.
    let events = 2 + SLOW_DRIP_TEXT.split_whitespace().count() + 3;

    let mut conn = connect(up.url()).await;
    let start = Instant::now();
    // Not a streaming request: SlowDrip streams anyway.
    let r = send_on(&mut conn, up.url(), MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let mut bytes = Vec::new();
    let mut first = None;
    while let Some(frame) = timeout(LONG, body.frame()).await.expect("progress") {
        let frame = frame.expect("a clean stream");
        if let Some(d) = frame.data_ref() {
            first.get_or_insert_with(|| start.elapsed());
            bytes.extend_from_slice(d);
        }
    }
    let total = start.elapsed();
    let first = first.expect("some data");
    assert!(first >= interval, "first event after {first:?}");
    assert!(
        total >= interval * events as u32,
        "{events} events in {total:?}"
    );
    let a = Answer {
        status: 200,
        headers: {
            let mut h = HeaderMap::new();
            h.insert("content-type", "text/event-stream".parse().unwrap());
            h
        },
        body: String::from_utf8(bytes).unwrap(),
    };
    assert_anthropic_stream(&a, SLOW_DRIP_TEXT, "claude-test");

    // OpenAI dialect, still paced.
    let start = Instant::now();
    let a = call(&up, CHAT, &openai_body(true, true), &[]).await;
    assert!(start.elapsed() >= interval * 4);
    assert_openai_stream(&a, SLOW_DRIP_TEXT, "gpt-test", true);
    assert_eq!(up.cancelled(), 0);
}

/// Reads a response body until `needle` has arrived; returns what was read.
async fn read_until(body: &mut Incoming, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let frame = timeout(LONG, body.frame())
            .await
            .expect("progress")
            .expect("more body")
            .expect("no error yet");
        if let Some(d) = frame.data_ref() {
            text.push_str(std::str::from_utf8(d).unwrap());
        }
    }
    text
}

#[tokio::test]
async fn drop_mid_stream_breaks_the_body_after_one_delta() {
    let up = FaultyUpstream::start(Behaviour::DropMidStream).await;
    for (path, req, opening) in [
        (MESSAGES, anthropic_body(true), "event: message_start"),
        (CHAT, openai_body(true, false), "\"role\":\"assistant\""),
    ] {
        let mut conn = connect(up.url()).await;
        let r = send_on(&mut conn, up.url(), path, &req, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut body = r.into_body();
        let mut text = String::new();
        let error = loop {
            match timeout(LONG, body.frame()).await.expect("progress") {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        text.push_str(std::str::from_utf8(d).unwrap());
                    }
                }
                Some(Err(e)) => break e,
                None => panic!("the stream ended cleanly: {text}"),
            }
        };
        assert!(text.contains(opening), "{text}");
        assert!(text.contains(PARTIAL_TEXT), "{text}");
        assert_eq!(text.matches(PARTIAL_TEXT).count(), 1, "{text}");
        assert!(!text.contains("message_stop") && !text.contains("[DONE]"));
        // hyper reports the unterminated chunked body (EOF inside it).
        let eof = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof);
        assert!(eof || error.is_incomplete_message(), "{error:?}");
    }
    // A body that fails is the upstream's doing, not a client cancellation.
    assert_eq!(up.cancelled(), 0);
}

#[tokio::test]
async fn stall_goes_silent_and_counts_the_client_leaving() {
    let up = FaultyUpstream::start(Behaviour::Stall).await;
    for (n, (path, req)) in [
        (MESSAGES, anthropic_body(true)),
        (CHAT, openai_body(true, false)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut conn = connect(up.url()).await;
        let r = send_on(&mut conn, up.url(), path, &req, &[]).await;
        assert_eq!(r.status(), 200);
        let mut body = r.into_body();
        read_until(&mut body, PARTIAL_TEXT).await;
        let more = timeout(Duration::from_millis(300), body.frame()).await;
        assert!(more.is_err(), "expected silence, got {more:?}");
        assert_eq!(up.cancelled(), n, "still streaming");
        // The client goes away.
        drop(body);
        conn.task.abort();
        drop(conn);
        wait_until("the cancellation to be counted", || up.cancelled() == n + 1).await;
    }
}

// ---------------------------------------------------------------------------------------
// Choosing behaviours

#[tokio::test]
async fn per_key_chooses_by_upstream_key() {
    let up = FaultyUpstream::start(Behaviour::per_key(
        [
            ("key-a", Behaviour::json(201, &json!({"k": "a"}))),
            ("key-b", Behaviour::json(202, &json!({"k": "b"}))),
            ("key-c", Behaviour::json(203, &json!({"k": "c"}))),
        ],
        Behaviour::json(299, &json!({"k": "default"})),
    ))
    .await;
    let cases: [(&[(&str, &str)], u16); 6] = [
        (&[("x-api-key", "key-a")], 201),
        (&[("authorization", "Bearer key-b")], 202),
        (&[("api-key", "key-c")], 203),
        (&[("x-api-key", "key-zzz")], 299),
        (&[], 299),
        // x-api-key wins over Authorization.
        (
            &[("x-api-key", "key-c"), ("authorization", "Bearer key-a")],
            203,
        ),
    ];
    for (headers, status) in cases {
        let a = call(&up, MESSAGES, &anthropic_body(false), headers).await;
        assert_eq!(a.status, status, "{headers:?}");
    }
    // Per-key behaviours nest: a key can get a real answer in the request's dialect.
    up.set(Behaviour::per_key(
        [("good", Behaviour::ok("fine"))],
        Behaviour::Overloaded529,
    ));
    let a = call(
        &up,
        CHAT,
        &openai_body(false, false),
        &[("authorization", "Bearer good")],
    )
    .await;
    assert_eq!(a.json()["choices"][0]["message"]["content"], "fine");
    let a = call(
        &up,
        MESSAGES,
        &anthropic_body(false),
        &[("x-api-key", "bad")],
    )
    .await;
    assert_eq!(a.status, 529);
}

#[tokio::test]
async fn queue_comes_first_then_the_current_behaviour() {
    let up = FaultyUpstream::start(Behaviour::ok("base")).await;
    up.queue(vec![
        Behaviour::json(500, &json!({"n": 1})),
        Behaviour::rate_limited(RateLimitFormat::RetryAfterSeconds(1)),
    ]);
    up.queue(vec![Behaviour::Overloaded529]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            call(&up, MESSAGES, &anthropic_body(false), &[])
                .await
                .status,
        );
    }
    assert_eq!(statuses, [500, 429, 529, 200, 200]);

    // `set` changes the fallback at runtime; a queue still goes first.
    up.set(Behaviour::json(418, &json!({})));
    assert_eq!(
        call(&up, MESSAGES, &anthropic_body(false), &[])
            .await
            .status,
        418
    );
    up.queue(vec![Behaviour::ok("once")]);
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert_eq!(a.json()["content"][0]["text"], "once");
    assert_eq!(
        call(&up, MESSAGES, &anthropic_body(false), &[])
            .await
            .status,
        418
    );
    assert_eq!(up.hits(), 8);
}

#[tokio::test]
async fn delay_waits_then_behaves() {
    let delay = Duration::from_millis(250);
    let up = FaultyUpstream::start(Behaviour::delayed(delay, Behaviour::ok("late"))).await;
    let start = Instant::now();
    let a = call(&up, MESSAGES, &anthropic_body(false), &[]).await;
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    assert_eq!(a.json()["content"][0]["text"], "late");
}

// ---------------------------------------------------------------------------------------
// Recording and lifetime

#[tokio::test]
async fn records_requests() {
    let up = FaultyUpstream::start(Behaviour::ok("hi")).await;
    assert_eq!(up.hits(), 0);
    let body = anthropic_body(false);
    call(
        &up,
        "/v1/messages?beta=true",
        &body,
        &[("x-api-key", "sk-up"), ("anthropic-version", "2023-06-01")],
    )
    .await;
    call(
        &up,
        CHAT,
        &openai_body(false, false),
        &[("authorization", "Bearer sk-o")],
    )
    .await;
    assert_eq!(up.hits(), 2);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, http::Method::POST);
    assert_eq!(reqs[0].path, "/v1/messages?beta=true");
    assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(reqs[0].key(), Some("sk-up"));
    assert_eq!(reqs[0].json(), Some(body));
    assert_eq!(reqs[1].path, CHAT);
    assert_eq!(reqs[1].key(), Some("sk-o"));
    assert_eq!(reqs[1].json().unwrap()["model"], "gpt-test");
}

#[tokio::test]
async fn dropping_the_upstream_stops_the_server() {
    let up = FaultyUpstream::start(Behaviour::Stall).await;
    let url = up.url().to_owned();
    let mut conn = connect(&url).await;
    let r = send_on(&mut conn, &url, MESSAGES, &anthropic_body(true), &[]).await;
    let mut body = r.into_body();
    read_until(&mut body, PARTIAL_TEXT).await;
    drop(up);
    // The open stream ends (its connection is torn down) and new connections fail.
    let end = timeout(LONG, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                other => break other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the stalled stream ends once the upstream is dropped");
    assert!(matches!(end, Some(Err(_))), "{end:?}");
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr(&url)).await.is_err() {
            break;
        }
        assert!(start.elapsed() < LONG, "still accepting connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
