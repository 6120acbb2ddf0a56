//! Streamed responses: canonical frames written to the client as SSE in its dialect,
//! each event flushed as soon as it is complete.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame as BodyFrame;
use weir_model::{ApiError, ByteStream, Delta, Dialect, EventStream, Frame, StreamEvent};

use crate::http::{Body, RequestLog};
use crate::live::CutWatch;

/// What a stream still running when the shutdown grace period is over tells its client.
fn shutdown_error() -> ApiError {
    ApiError::new(
        weir_model::ErrorKind::Overloaded,
        "the gateway is shutting down and its grace period is over; retry the request",
    )
}

/// The request's log line, written when the stream ends, fails or is dropped (the client
/// went away: dropping the body drops the upstream stream, which cancels the upstream
/// request).
pub(crate) struct StreamLog {
    log: RequestLog,
    first_token: Option<Instant>,
    input: Option<u64>,
    output: Option<u64>,
    outcome: &'static str,
    /// Bytes of text, reasoning and tool arguments streamed: the output a stream cut
    /// before its usage is charged (a quarter of them, in tokens).
    streamed: u64,
    /// The `active_streams` gauge this stream counts in while it is written.
    active: Option<prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// For a message thread's answer: where its id is remembered (a request continuing
    /// the thread goes to the account that holds it).
    thread: Option<weir_router::ResponseMemory>,
}

impl StreamLog {
    pub(crate) fn new(log: RequestLog) -> Self {
        let active = log.metrics.as_ref().map(|m| {
            let dash = |s: &Option<String>| s.as_deref().unwrap_or("-").to_owned();
            let g = m.active_streams(
                log.series.as_ref(),
                &dash(&log.key),
                &dash(&log.model),
                &dash(&log.provider),
            );
            g.inc();
            g
        });
        StreamLog {
            log,
            first_token: None,
            input: None,
            output: None,
            outcome: "client disconnected",
            streamed: 0,
            active,
            thread: None,
        }
    }

    /// This stream answers a message thread's request: its id is remembered in `memory`.
    pub(crate) fn in_thread(mut self, memory: Option<weir_router::ResponseMemory>) -> Self {
        self.thread = memory;
        self
    }

    fn set_outcome(&mut self, outcome: &'static str) {
        self.outcome = outcome;
    }

    /// The stream ended badly after its 200 (`kind` goes to the ledger).
    fn failed(&mut self, outcome: &'static str, kind: weir_model::ErrorKind) {
        self.outcome = outcome;
        self.log.stream_error = Some(kind);
    }

    /// The upstream's stream failed after its 200: noted and logged; the error to tell
    /// the client.
    fn upstream_failed(&mut self, e: &weir_model::ProviderError) -> ApiError {
        self.failed("upstream failed", e.kind);
        tracing::warn!(request_id = %self.log.request_id, kind = ?e.kind, "upstream stream failed: {}", weir_model::log_safe(&e.message));
        e.api_error
            .as_deref()
            .cloned()
            .unwrap_or_else(|| ApiError::new(e.kind, e.message.clone()))
    }

    /// The stream's first content is written (now): its time to first token, and its
    /// upstream's latency.
    fn content_began(&mut self) {
        let now = Instant::now();
        self.first_token = Some(now);
        if let (Some(m), Some(series), Some(from)) = (
            &self.log.metrics,
            &self.log.series,
            self.log.upstream_from.take(),
        ) {
            m.upstream_took(series, now.saturating_duration_since(from));
        }
    }

    fn observe(&mut self, f: &Frame) {
        // Time to first token: the first content written (an opening held past its second
        // goes out before any, and is no token).
        if self.first_token.is_none() && f.events.iter().any(StreamEvent::is_content) {
            self.content_began();
        }
        for ev in &f.events {
            if let StreamEvent::MessageStart { id, .. } = ev {
                if let Some(m) = self.thread.take() {
                    m.remember(id);
                }
            }
            match ev {
                StreamEvent::MessageStart { usage, .. }
                | StreamEvent::MessageDelta { usage, .. } => {
                    let reports_input =
                        usage.input_tokens.is_some() || usage.cache_read_tokens.is_some();
                    if usage.output_tokens.is_some() {
                        self.output = usage.output_tokens;
                    }
                    // The latest figure of each kind is the cumulative one.
                    let u = self.log.usage.get_or_insert_with(Default::default);
                    for (mine, theirs) in [
                        (&mut u.input_tokens, usage.input_tokens),
                        (&mut u.output_tokens, usage.output_tokens),
                        (&mut u.cache_read_tokens, usage.cache_read_tokens),
                        (&mut u.cache_write_tokens, usage.cache_write_tokens),
                        (&mut u.cache_write_1h_tokens, usage.cache_write_1h_tokens),
                        (&mut u.web_search_requests, usage.web_search_requests),
                        (&mut u.reasoning_tokens, usage.reasoning_tokens),
                    ] {
                        if theirs.is_some() {
                            *mine = theirs;
                        }
                    }
                    if usage.billed_usd.is_some() {
                        u.billed_usd = usage.billed_usd;
                    }
                    // The input so far, all kinds (a later event may repeat some of the
                    // figures an earlier one gave, not all).
                    if reports_input {
                        self.input = Some(u.total_input());
                    }
                }
                // The upstream's own error event, passed on to the client.
                StreamEvent::Error(api) => self.log.stream_error = Some(api.kind),
                StreamEvent::BlockDelta { delta, .. } => {
                    self.streamed += match delta {
                        Delta::Text(t) | Delta::Thinking(t) | Delta::InputJson(t) => {
                            t.token().len().saturating_sub(2) as u64
                        }
                        Delta::Signature(_) | Delta::Unknown { .. } => 0,
                    };
                }
                _ => {}
            }
        }
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        let ttft = match (self.first_token, self.log.started) {
            (Some(f), Some(s)) => Some(f.duration_since(s)),
            _ => None,
        };
        tracing::debug!(request_id = %self.log.request_id, outcome = self.outcome, "stream ended");
        if self.outcome == "client disconnected" {
            self.log.stream_error = Some(weir_model::ErrorKind::Cancelled);
        }
        let unreported = self
            .log
            .usage
            .as_ref()
            .is_none_or(weir_model::Usage::unreported);
        // Cut before its usage came (OpenAI's is in the final chunk), or from an upstream
        // that reports none (some OpenAI-compatible servers ignore `stream_options`), or
        // no input: charged what was streamed and the request's input, estimated, so
        // neither makes an answer free of limits and budgets. The upstream bills it all
        // the same.
        if self.outcome != "complete" || unreported {
            let output = self.streamed.div_ceil(4);
            let u = self.log.usage.get_or_insert_with(Default::default);
            if u.output_tokens.is_none_or(|o| o < output) {
                u.output_tokens = Some(output);
                self.output = Some(output);
            }
        }
        if let Some(u) = self.log.usage.as_mut().filter(|u| !u.reports_input()) {
            u.input_tokens = Some(self.log.input_estimate);
            self.input = Some(self.log.input_estimate);
        }
        if let Some(g) = &self.active {
            g.dec();
        }
        if let Some(m) = &self.log.metrics {
            if let Some(kind) = self.log.stream_error {
                let reason = match (self.outcome, kind) {
                    ("translation failed", _) => "translation",
                    ("shutdown grace over", _) => "shutdown",
                    (_, weir_model::ErrorKind::Cancelled) => "client_disconnected",
                    (_, weir_model::ErrorKind::Timeout) => "timeout",
                    _ => "upstream",
                };
                let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                m.stream_error(
                    &dash(&self.log.key),
                    &dash(&self.log.model),
                    &dash(&self.log.provider),
                    reason,
                );
            }
        }
        self.log.emit(200, ttft, self.input, self.output);
    }
}

enum Encoder {
    Anthropic(weir_anthropic::StreamEncoder),
    OpenAi(Box<weir_openai::StreamEncoder>),
}

impl Encoder {
    fn encode(&mut self, f: &Frame, out: &mut Vec<u8>) -> Result<(), weir_model::WireError> {
        match self {
            Encoder::Anthropic(e) => e.encode(f, out),
            Encoder::OpenAi(e) => e.encode(f, out),
        }
    }
}

struct State {
    upstream: EventStream,
    encoder: Encoder,
    dialect: Dialect,
    log: StreamLog,
    cut: CutWatch,
    done: bool,
    /// The upstream's message ended (`message_stop`, `[DONE]`): the client's stream ends
    /// there, and the upstream's body, whatever it still sends, is read to its end apart.
    ended: bool,
}

impl State {
    /// An Anthropic client's `message_start` from an upstream that tells the input only at
    /// the end (OpenAI-compatible streams): the gateway's estimate there, not 0, which
    /// clients that read the input from `message_start` alone (LangChain) would keep. The
    /// closing `message_delta` carries the upstream's own figure. (After `observe`: the
    /// accounting waits for that figure.)
    fn estimate_opening_input(&self, frame: &mut Frame) {
        // (An Anthropic upstream's own events go as they came.)
        if frame
            .source
            .as_ref()
            .is_some_and(|s| s.dialect == Dialect::Anthropic)
        {
            return;
        }
        for ev in &mut frame.events {
            if let StreamEvent::MessageStart { usage, .. } = ev {
                if !usage.reports_input() {
                    usage.input_tokens = Some(self.log.log.input_estimate.max(1));
                }
            }
        }
    }
}

/// Up to this many bytes of events already received are written as one body frame.
const BATCH_BYTES: usize = 64 * 1024;

/// How long the rest of an upstream body whose message already ended is read, so its
/// connection can serve again, before it is closed.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl State {
    /// Writes what the upstream stream yielded (a frame, its failure, or its end) to
    /// `out` in the client's dialect; `done` once nothing more is to be written.
    fn absorb(
        &mut self,
        item: Option<Result<Frame, weir_model::ProviderError>>,
        out: &mut Vec<u8>,
    ) {
        match item {
            None => {
                self.done = true;
                self.log.set_outcome("complete");
            }
            Some(Ok(mut frame)) => {
                // Nothing after an error event or the message's end reaches the client (a
                // decoder may close the message after an error, as for DeepSeek's
                // out-of-capacity finish; an upstream may write more after message_stop in
                // the same read); re-encoded, as the source events would carry it all.
                if let Some(i) = frame
                    .events
                    .iter()
                    .position(|e| matches!(e, StreamEvent::Error(_) | StreamEvent::MessageStop))
                {
                    if i + 1 < frame.events.len() {
                        frame.events.truncate(i + 1);
                        frame.source = None;
                    }
                }
                self.log.observe(&frame);
                if self.dialect == Dialect::Anthropic {
                    self.estimate_opening_input(&mut frame);
                }
                // (The usage chunk the gateway asked an OpenAI upstream for, which the client
                // did not, is left out by the encoder: `StreamEncodeOptions::include_usage`.)
                // The upstream's own error event ends the stream: what an upstream sends
                // after it (vLLM and Azure send `[DONE]`) would close the message as if it
                // had ended well (`end_turn`, `message_stop`).
                if frame
                    .events
                    .iter()
                    .any(|e| matches!(e, StreamEvent::Error(_)))
                {
                    self.done = true;
                    // (`observe` noted the error's kind.)
                    self.log.set_outcome("upstream failed");
                }
                if !self.done
                    && frame
                        .events
                        .iter()
                        .any(|e| matches!(e, StreamEvent::MessageStop))
                {
                    // Nothing comes after the message's end: an upstream that lingers
                    // (keep-alive pings, a late close) must not hold the client, nor time
                    // a finished answer out.
                    self.done = true;
                    self.ended = true;
                    self.log.set_outcome("complete");
                }
                if let Err(e) = self.encoder.encode(&frame, out) {
                    self.done = true;
                    self.log
                        .failed("translation failed", weir_model::ErrorKind::Upstream);
                    let err = ApiError::new(
                        weir_model::ErrorKind::Upstream,
                        format!("cannot translate the upstream's stream: {e}"),
                    );
                    error_event(&mut self.encoder, self.dialect, &err, out);
                }
            }
            Some(Err(e)) => {
                self.done = true;
                let api = self.log.upstream_failed(&e);
                error_event(&mut self.encoder, self.dialect, &api, out);
            }
        }
    }
}

/// The response body: a hand-written [`hyper::body::Body`], so nothing moves between polls.
struct SseBody(State);

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let st = &mut self.get_mut().0;
        let mut out = Vec::new();
        if !st.done && st.cut.poll(cx) {
            st.done = true;
            st.log
                .failed("shutdown grace over", weir_model::ErrorKind::Overloaded);
            error_event(&mut st.encoder, st.dialect, &shutdown_error(), &mut out);
            return Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(out)))));
        }
        // Events the upstream already sent go out together: one body frame (and one
        // write) instead of one each. Nothing waits for more.
        while !st.done && out.len() < BATCH_BYTES {
            match st.upstream.poll_next_unpin(cx) {
                Poll::Ready(item) => {
                    if out.capacity() == 0 {
                        // Room for a few events at once rather than growing from 8 bytes.
                        out.reserve(2048);
                    }
                    st.absorb(item, &mut out)
                }
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        if st.ended {
            st.ended = false;
            release_upstream(&mut st.upstream, cx);
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(out)))))
    }
}

/// Reads what `upstream` sends after its message ended, to the body's end, so its connection
/// goes back to the pool: at once when that is already here (nearly always), else in a task
/// of its own for up to [`DRAIN`]. `upstream` is left empty.
fn release_upstream<T: Send + 'static>(
    upstream: &mut Pin<
        Box<dyn futures_util::Stream<Item = Result<T, weir_model::ProviderError>> + Send>,
    >,
    cx: &mut Context<'_>,
) {
    loop {
        match upstream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(None | Some(Err(_))) => return,
            Poll::Pending => break,
        }
    }
    let mut rest = std::mem::replace(upstream, Box::pin(futures_util::stream::empty()));
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN, async {
            while let Some(Ok(_)) = rest.next().await {}
        })
        .await;
    });
}

/// A `text/event-stream` response that writes each frame as soon as it arrives.
pub(crate) fn sse_response(
    dialect: Dialect,
    upstream: EventStream,
    client_usage: bool,
    log: StreamLog,
    cut: CutWatch,
) -> Response<Body> {
    let encoder = match dialect {
        Dialect::Anthropic => Encoder::Anthropic(weir_anthropic::StreamEncoder::with_request_id(
            log.log.request_id.clone(),
        )),
        Dialect::OpenAi => Encoder::OpenAi(Box::new(weir_openai::StreamEncoder::new(
            weir_openai::StreamEncodeOptions {
                include_usage: client_usage,
                created: None,
            },
        ))),
    };
    let state = State {
        upstream,
        encoder,
        dialect,
        log,
        cut,
        done: false,
        ended: false,
    };
    sse_headers(Response::new(SseBody(state).boxed_unsync()))
}

/// 200 with the headers of an event stream.
fn sse_headers(mut r: Response<Body>) -> Response<Body> {
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    const X_ACCEL_BUFFERING: http::HeaderName = http::HeaderName::from_static("x-accel-buffering");
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    r
}

fn error_event(enc: &mut Encoder, _dialect: Dialect, e: &ApiError, out: &mut Vec<u8>) {
    let f = Frame::from_events(vec![StreamEvent::Error(e.clone())]);
    // Encoding an error event writes plain JSON; it cannot fail.
    let _ = enc.encode(&f, out);
}

/// A passed-through stream (the Responses API): the upstream's bytes go to the client as
/// they come; a copy is read as SSE only for the usage its final event carries
/// (`response.completed`, `response.incomplete` or `response.failed`). A failure after
/// the first byte ends it with the Responses API's `error` event.
pub(crate) fn passthrough_response(
    upstream: ByteStream,
    log: StreamLog,
    memory: weir_router::ResponseMemory,
    cut: CutWatch,
) -> Response<Body> {
    let scan = weir_sse::Decoder::with_limits(weir_sse::Limits {
        max_line_bytes: 64 << 20,
        max_event_bytes: 64 << 20,
    });
    sse_headers(Response::new(
        PassthroughBody {
            upstream,
            log,
            memory,
            cut,
            scan: Some(scan),
            events: Vec::new(),
            finished: false,
            errored: false,
            end_data: None,
            held: Bytes::new(),
            done: false,
            last_sequence: None,
        }
        .boxed_unsync(),
    ))
}

struct PassthroughBody {
    upstream: ByteStream,
    log: StreamLog,
    /// Remembers where the response was made, once its final event names it.
    memory: weir_router::ResponseMemory,
    cut: CutWatch,
    /// `None` once the copy could not be read as SSE (the bytes still go through).
    scan: Option<weir_sse::Decoder>,
    events: Vec<weir_sse::Event>,
    /// The response's final event came.
    finished: bool,
    /// The API's `error` event came.
    errored: bool,
    /// The data of the event that ended the response (its final event or an error), to
    /// find where it ends in the read that held it: nothing after it is passed on.
    end_data: Option<(String, String)>,
    /// The start of an event the last read cut, held until its end comes: only whole
    /// events reach the client, so a failure or timeout mid-event cannot leave half of one
    /// to be read with the error event after it.
    held: Bytes,
    done: bool,
    /// The highest `sequence_number` of the upstream's events: an `error` event of the
    /// gateway's own comes next in the sequence.
    last_sequence: Option<u64>,
}

/// The kind of failure a `response.failed` event's `response.error.code` names.
fn failed_kind(data: &str) -> weir_model::ErrorKind {
    use weir_model::ErrorKind;
    let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    match v["response"]["error"]["code"].as_str().unwrap_or("") {
        c if c.contains("rate_limit") || c == "insufficient_quota" => ErrorKind::RateLimited,
        c if c.contains("overloaded") => ErrorKind::Overloaded,
        "context_length_exceeded" | "invalid_prompt" => ErrorKind::InvalidRequest,
        c if c.contains("timeout") => ErrorKind::Timeout,
        _ => ErrorKind::Upstream,
    }
}

/// The `sequence_number` of a Responses API event's data (an unescaped `"` can only open a
/// key in JSON text, so the key is found without parsing the event).
fn sequence_number(data: &str) -> Option<u64> {
    const KEY: &str = "\"sequence_number\":";
    let at = memchr::memmem::find(data.as_bytes(), KEY.as_bytes())? + KEY.len();
    let digits = data[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The type of a Responses API stream event: its `event:` name, else its data's `type`
/// (some compatible servers send only `data:` lines).
fn responses_event_type(ev: &weir_sse::Event) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(name) = ev.event() {
        return Some(std::borrow::Cow::Borrowed(name));
    }
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        ty: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Typed<'_>>(ev.data())
        .ok()
        .map(|t| t.ty)
}

impl PassthroughBody {
    fn observe(&mut self, bytes: &[u8]) {
        let Some(scan) = &mut self.scan else {
            return;
        };
        if let Err(e) = scan.feed(bytes, &mut self.events) {
            tracing::warn!(request_id = %self.log.log.request_id, "the upstream's stream could not be read for its usage (passed on as it is): {e}");
            self.scan = None;
            return;
        }
        for ev in self.events.drain(..) {
            if self.end_data.is_some() {
                // After the response's end: not passed on, not read.
                continue;
            }
            if let Some(n) = sequence_number(ev.data()) {
                self.last_sequence = Some(self.last_sequence.map_or(n, |l| l.max(n)));
            }
            let ty = responses_event_type(&ev);
            // The API's own `error` event ends the stream: no second one is added, and
            // what an upstream sends after it is not passed on (as chat streams end at
            // theirs).
            if ty.as_deref() == Some("error") {
                self.finished = true;
                self.errored = true;
                self.end_data = Some(("error".to_owned(), ev.data().to_owned()));
                self.log
                    .failed("upstream failed", weir_model::ErrorKind::Upstream);
                continue;
            }
            if ty.as_deref().is_some_and(|t| t.ends_with(".delta")) {
                // Time to first token: the first content (`response.created` and the
                // like come at once, and are none).
                if self.log.first_token.is_none() {
                    self.log.content_began();
                }
                // What was streamed, for the estimate a stream cut before its usage is
                // charged.
                #[derive(serde::Deserialize)]
                struct Piece<'a> {
                    #[serde(borrow)]
                    delta: Option<std::borrow::Cow<'a, str>>,
                }
                if let Ok(Piece { delta: Some(d) }) = serde_json::from_str::<Piece<'_>>(ev.data()) {
                    self.log.streamed += d.len() as u64;
                }
                continue;
            }
            let final_event = ty.as_ref().is_some_and(|t| {
                matches!(
                    &**t,
                    "response.completed" | "response.incomplete" | "response.failed"
                )
            });
            let Some(name) = ty.filter(|_| final_event).map(|t| t.into_owned()) else {
                continue;
            };
            self.finished = true;
            if name == "response.failed" {
                // The response failed upstream (its usage, if any, is still charged): a
                // stream error in the log line, metrics and ledger, as a chat stream's,
                // of the kind its error's code names.
                self.errored = true;
                self.log.failed("upstream failed", failed_kind(ev.data()));
            }
            self.end_data = Some((name, ev.data().to_owned()));
            #[derive(serde::Deserialize)]
            struct Final<'a> {
                #[serde(borrow)]
                response: Option<&'a serde_json::value::RawValue>,
            }
            let (id, usage) = serde_json::from_str::<Final<'_>>(ev.data())
                .ok()
                .and_then(|f| f.response)
                .and_then(|r| weir_model::responses::response_summary(r.get()).ok())
                .unwrap_or_default();
            // (A bridged response cannot be continued by its id: not remembered.)
            if let Some(id) = id.filter(|id| !weir_openai::bridge::is_bridged_id(id)) {
                self.memory.remember(&id);
            }
            if let Some(u) = usage {
                self.log.input = Some(u.total_input());
                self.log.output = u.output_tokens;
                self.log.log.usage = Some(u);
            }
        }
    }
}

impl PassthroughBody {
    fn next_sequence(&self) -> Option<u64> {
        self.last_sequence.map(|n| n.saturating_add(1))
    }
}

impl hyper::body::Body for PassthroughBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let me = self.get_mut();
        if me.done {
            return Poll::Ready(None);
        }
        if me.cut.poll(cx) {
            me.done = true;
            me.log
                .failed("shutdown grace over", weir_model::ErrorKind::Overloaded);
            return Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(
                responses_error_event(&shutdown_error(), me.next_sequence()),
            )))));
        }
        loop {
            return match me.upstream.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => {
                    me.done = true;
                    if me.finished || me.scan.is_none() {
                        me.log.set_outcome("complete");
                        if !me.held.is_empty() {
                            // Not read as SSE: passed on as it came.
                            return Poll::Ready(Some(Ok(BodyFrame::data(std::mem::take(
                                &mut me.held,
                            )))));
                        }
                        return Poll::Ready(None);
                    }
                    // The upstream ended without the response's final event: cut short.
                    me.log
                        .failed("upstream failed", weir_model::ErrorKind::Upstream);
                    tracing::warn!(request_id = %me.log.log.request_id, "the upstream's stream ended before the response finished");
                    let api = ApiError::new(
                        weir_model::ErrorKind::Upstream,
                        "the upstream stream ended before the response finished",
                    );
                    Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(
                        responses_error_event(&api, me.next_sequence()),
                    )))))
                }
                Poll::Ready(Some(Ok(bytes))) => {
                    me.observe(&bytes);
                    let mut bytes = if me.held.is_empty() {
                        bytes
                    } else {
                        let mut joined = Vec::with_capacity(me.held.len() + bytes.len());
                        joined.extend_from_slice(&me.held);
                        joined.extend_from_slice(&bytes);
                        me.held = Bytes::new();
                        Bytes::from(joined)
                    };
                    if let Some((name, data)) = me.end_data.take() {
                        // The response ended (its final event, or an error): the client's
                        // stream ends with that event; anything after it in this read is not
                        // passed on, and the rest of the upstream's body is read apart.
                        if let Some(end) = event_end(&bytes, &name, &data) {
                            bytes.truncate(end);
                        }
                        me.done = true;
                        if !me.errored {
                            me.log.set_outcome("complete");
                        }
                        release_upstream(&mut me.upstream, cx);
                    } else if me.scan.is_some() {
                        // Whole events only; the one this read cut waits for its end.
                        let whole = events_end(&bytes);
                        me.held = bytes.split_off(whole);
                        if bytes.is_empty() {
                            continue;
                        }
                    }
                    Poll::Ready(Some(Ok(BodyFrame::data(bytes))))
                }
                Poll::Ready(Some(Err(e))) => {
                    me.done = true;
                    // An event the failure cut is not passed on.
                    me.held = Bytes::new();
                    let api = me.log.upstream_failed(&e);
                    Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(
                        responses_error_event(&api, me.next_sequence()),
                    )))))
                }
            };
        }
    }
}

/// Where the last whole event in `bytes` ends: just after its blank line (`\n\n`,
/// `\r\n\r\n`, `\n\r\n` or `\r\r`), or 0 when no event ends in it.
fn events_end(bytes: &[u8]) -> usize {
    [&b"\n\n"[..], b"\r\n\r\n", b"\n\r\n", b"\r\r"]
        .iter()
        .filter_map(|sep| memchr::memmem::rfind(bytes, sep).map(|i| i + sep.len()))
        .max()
        .unwrap_or(0)
}

/// Where, in `bytes` (what is passed on now: the read, after the start of an event an
/// earlier read cut), the event that ended the response ends, just after its blank line:
/// the event is `name`'s (`event: <name>` line) or, for servers that send no event lines,
/// the one whose data is `data` on one line; else the first blank line. `None`: not
/// found; all of `bytes` goes on.
fn event_end(bytes: &[u8], name: &str, data: &str) -> Option<usize> {
    let blank_after = |from: usize| -> Option<usize> {
        let rest = &bytes[from..];
        [&b"\n\n"[..], b"\r\n\r\n", b"\n\r\n", b"\r\r"]
            .iter()
            .filter_map(|sep| memchr::memmem::find(rest, sep).map(|i| from + i + sep.len()))
            .min()
    };
    let line = format!("event: {name}");
    if let Some(p) = memchr::memmem::find(bytes, line.as_bytes()) {
        return blank_after(p);
    }
    if let Some(p) = memchr::memmem::find(bytes, data.as_bytes()) {
        return blank_after(p + data.len());
    }
    blank_after(0)
}

/// The Responses API's stream error event (`{"type":"error","code",...}`), with the type
/// OpenAI's error bodies give the error as its code, and the next `sequence_number` when
/// the upstream's events had them.
fn responses_error_event(e: &ApiError, sequence: Option<u64>) -> Vec<u8> {
    let (_, body) = weir_openai::encode_error(e);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let inner = &v["error"];
    let code = inner["code"]
        .as_str()
        .or(inner["type"].as_str())
        .unwrap_or("server_error");
    let mut data = serde_json::json!({
        "type": "error",
        "code": code,
        "message": e.message,
        "param": null,
    });
    if let Some(n) = sequence {
        data["sequence_number"] = n.into();
    }
    // A leading blank line ends an event the upstream left unfinished.
    format!("\n\nevent: error\ndata: {data}\n\n").into_bytes()
}
