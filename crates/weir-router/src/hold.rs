//! Stream failover: a stream's opening events are held until its first content event (or
//! its end), so an upstream that answers 200 and then fails before any content can be
//! replaced by the next target without the client noticing.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_util::StreamExt;
use weir_model::{EventStream, Frame, ProviderError, StreamEvent};

use crate::state::{KeyPool, TargetState};
use crate::{Policy, Shared};

/// At most this many opening frames, or this many of their bytes, are held; a stream that
/// sends more without content is let through (it is not one that failed early). The byte
/// bound keeps an upstream's huge opening events (up to the SSE limit of 16 MB each) from
/// holding a gigabyte per request.
const MAX_HELD: usize = 64;
/// (Also: past this many bytes without a whole first event, a byte stream is let through.)
const MAX_HELD_BYTES: usize = 1 << 20;
/// The longest a stream's opening is held by default ([`crate::Policy::stream_hold`]):
/// then it is let through as it is (the client
/// gets its status, headers and opening events; a reasoning model may think for minutes
/// before its first content, and proxies on the way close a silent connection). Upstreams
/// that fail early (Anthropic's `overloaded_error` after `message_start`) do so at once.
pub(crate) const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a frame ends the holding: content, or the message's end.
fn releases(f: &Frame) -> bool {
    f.events.iter().any(|e| {
        e.is_content()
            || matches!(
                e,
                StreamEvent::MessageDelta { .. } | StreamEvent::MessageStop
            )
    })
}

fn error_in(f: &Frame) -> Option<ProviderError> {
    f.events.iter().find_map(|e| match e {
        StreamEvent::Error(api) => Some(ProviderError::from_api(api.clone(), None)),
        _ => None,
    })
}

/// Reads `s` until content arrives. `Err`: the upstream failed before any content (the
/// error is the stream's). `Ok`: the held frames followed by the rest of the stream.
pub(crate) async fn hold(
    mut s: EventStream,
    progress: &weir_model::Progress,
    max: std::time::Duration,
) -> Result<EventStream, ProviderError> {
    // Zero: nothing is held past the first frame, which is still read (an error as the
    // stream's first event goes to the next target; nothing was sent yet).
    let first_only = max.is_zero();
    let mut held: Vec<Frame> = Vec::new();
    let mut bytes = 0;
    // Usage reported before the first content (Anthropic's opening event): given to the
    // caller if the hold is dropped (its client left meanwhile), which charges it.
    let mut abandoned = Reported {
        progress,
        usage: None,
    };
    // (Past a year is no limit, and adding more could overflow the clock.)
    let deadline = tokio::time::Instant::now() + max.min(Duration::from_secs(365 * 86_400));
    // Armed only when a frame is not there at once (most streams' openings are).
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(item) = s.poll_next_unpin(cx) {
                return Poll::Ready(Some(item));
            }
            if first_only {
                // (The stream's own timeouts bound the wait for its first event.)
                return Poll::Pending;
            }
            let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            std::future::Future::poll(t.as_mut(), cx).map(|()| None)
        })
        .await;
        let Some(next) = next else {
            // Held long enough: served as it is.
            break;
        };
        match next {
            None => break,
            Some(Err(e)) => {
                abandoned.usage = None;
                return Err(e);
            }
            Some(Ok(f)) => {
                if let Some(e) = error_in(&f) {
                    abandoned.usage = None;
                    return Err(e);
                }
                bytes += f.source_bytes();
                if progress.is_watched() {
                    for e in &f.events {
                        if let StreamEvent::MessageStart { usage, .. } = e {
                            abandoned.usage = Some(usage.clone());
                        }
                    }
                }
                let done = first_only
                    || releases(&f)
                    || held.len() + 1 >= MAX_HELD
                    || bytes >= MAX_HELD_BYTES;
                held.push(f);
                if done {
                    break;
                }
            }
        }
    }
    // Served: the stream's own log charges its usage from here.
    abandoned.usage = None;
    let head = futures_util::stream::iter(held.into_iter().map(Ok));
    Ok(Box::pin(head.chain(s)))
}

/// Usage a held stream reported, given to the caller's [`weir_model::Progress`] if the
/// hold is dropped unfinished (its client left before the first content).
struct Reported<'a> {
    progress: &'a weir_model::Progress,
    usage: Option<weir_model::Usage>,
}

impl Drop for Reported<'_> {
    fn drop(&mut self) {
        if let Some(u) = &self.usage {
            self.progress.usage(u);
        }
    }
}

/// A call in flight, told to the caller's [`weir_model::Progress`] only if it is dropped
/// unfinished (its client left): nothing is written on the way of every request.
pub(crate) struct Attempting<'a> {
    pub progress: &'a weir_model::Progress,
    pub provider: &'a str,
    pub model: &'a str,
    /// The target called, and when: a call its client gave up on waited that long at
    /// least, which least-latency counts (or a target too slow for its clients' patience
    /// would never be measured, and keep winning as unmeasured).
    pub target: &'a TargetState,
    pub started: Instant,
    /// Cleared once the call is over.
    pub armed: bool,
}

impl Drop for Attempting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.progress.attempt(self.provider, self.model);
            let now = Instant::now();
            self.target
                .waited(now.saturating_duration_since(self.started), now);
        }
    }
}

/// What a stream being served holds on to: the target's and key's in-flight counts, and
/// the target's health (an error after content still counts against it).
pub(crate) struct Guard {
    pub target: Arc<TargetState>,
    pub pool: Option<(Arc<KeyPool>, usize)>,
    pub shared: Arc<Shared>,
    pub policy: Arc<Policy>,
    /// When the request was sent, until the stream's first content is seen (which gives
    /// the target its latency).
    pub first_content_from: Option<Instant>,
    /// Sent past the target's open breaker (the route's last resort): the stream ending
    /// well closes the breaker (a success of a stream under way otherwise leaves an open
    /// one to its probe).
    pub close_on_success: bool,
}

impl Guard {
    /// The stream ended well.
    fn completed(&self) -> crate::state::Transition {
        if self.close_on_success {
            self.target.close()
        } else {
            self.target.stream_completed()
        }
    }
}

impl Guard {
    /// The stream's first content went by (now), if it had not.
    fn content_seen(&mut self) {
        if let Some(from) = self.first_content_from.take() {
            let now = Instant::now();
            self.target
                .first_content(now.saturating_duration_since(from), now);
        }
    }

    /// The stream failed: counted as a failure, not timed.
    fn failed(&mut self) {
        self.first_content_from = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Over before any content (its client left while it thought, or it ended empty):
        // its first content would have come later than now, and least-latency is told
        // so, or a slow target whose clients give up would never be measured.
        if let Some(from) = self.first_content_from.take() {
            let now = Instant::now();
            self.target.waited(now.saturating_duration_since(from), now);
        }
        self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some((pool, i)) = &self.pool {
            if let Some(k) = pool.keys.get(*i) {
                k.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A served stream: passes frames through and records a mid-stream failure. The guard
/// goes at the message's end (`MessageStop`): what the upstream's body does after it (a
/// reset, a linger read apart by the server) is not the answer's, so it neither counts
/// against the target nor keeps its in-flight counts up.
pub(crate) struct Guarded {
    pub inner: EventStream,
    pub guard: Option<Guard>,
    pub failed: bool,
}

impl Stream for Guarded {
    type Item = Result<Frame, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(r)) = &item {
            if let Some(g) = self
                .guard
                .as_mut()
                .filter(|g| g.first_content_from.is_some())
            {
                if matches!(r, Ok(f) if f.events.iter().any(StreamEvent::is_content)) {
                    g.content_seen();
                }
            }
            let Some(g) = &self.guard else {
                return item;
            };
            let health = match r {
                Err(e) => Some(e.counts_against_health),
                Ok(f) => error_in(f).map(|e| e.counts_against_health),
            };
            let counts = health == Some(true) && !self.failed;
            if counts {
                let t = g.target.stream_failed(&g.policy, Instant::now());
                g.shared.breaker_changed(&g.target, t);
            }
            let ended = matches!(r, Ok(f) if f.events.iter().any(|e| matches!(e, StreamEvent::MessageStop)));
            if ended && !counts && !self.failed {
                // Ended well: the stream's success (see `TargetState::stream_started`).
                let t = g.completed();
                g.shared.breaker_changed(&g.target, t);
            }
            if counts {
                self.failed = true;
                if let Some(g) = &mut self.guard {
                    g.failed();
                }
            }
            if ended {
                self.guard = None;
            }
        }
        item
    }
}

/// A passed-through byte stream being served (the Responses API): holds the in-flight
/// counts, and counts a failure after the first byte against the target's health, until
/// the response's final event (`event: response.completed`, `.incomplete`, `.failed`)
/// has gone by: what the body does after it is not the answer's (as [`Guarded`]).
pub(crate) struct GuardedBytes {
    pub inner: weir_model::ByteStream,
    pub guard: Option<Guard>,
    pub failed: bool,
}

/// Whether `bytes` hold a Responses stream's final event: its `event:` line, or, from a
/// server that sends `data:` lines only, its type in the data (quotes inside strings are
/// escaped, so text cannot look like it).
/// Whether `bytes` hold a `response.failed` event for a transient failure that counts
/// against a target's health (a server error, an overload; not a rate limit, which is the
/// client's 429 and rests no target).
fn failed_transiently(bytes: &[u8]) -> bool {
    let failed = memchr::memmem::Finder::new("response.failed");
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = memchr::memmem::find(rest, b"\n\n").map_or(rest.len(), |i| i + 2);
        let (event, tail) = rest.split_at(end);
        if failed.find(event).is_some()
            && error_event(event).is_some_and(|e| e.transient && e.error.counts_against_health)
        {
            return true;
        }
        rest = tail;
    }
    false
}

fn ends_response(bytes: &[u8]) -> bool {
    static FINAL: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| {
            [
                memchr::memmem::Finder::new("response.completed"),
                memchr::memmem::Finder::new("response.incomplete"),
                memchr::memmem::Finder::new("response.failed"),
            ]
        });
    FINAL.iter().any(|f| {
        f.find_iter(bytes).any(|at| {
            let before = &bytes[..at];
            before.ends_with(b"event: ")
                || before.ends_with(b"\"type\":\"")
                || before.ends_with(b"\"type\": \"")
        })
    })
}

impl Stream for GuardedBytes {
    type Item = Result<bytes::Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        // Its first content: the first `*.delta` event (`response.created` and the like
        // come at once, and are none).
        if let (Some(g), Poll::Ready(Some(Ok(bytes)))) = (self.guard.as_mut(), &item) {
            if g.first_content_from.is_some() && has_delta_event(bytes) {
                g.content_seen();
            }
        }
        let Some(g) = &self.guard else {
            return item;
        };
        match &item {
            Poll::Ready(Some(Err(e))) if e.counts_against_health && !self.failed => {
                let t = g.target.stream_failed(&g.policy, Instant::now());
                g.shared.breaker_changed(&g.target, t);
                self.failed = true;
                if let Some(g) = &mut self.guard {
                    g.failed();
                }
            }
            Poll::Ready(Some(Ok(bytes))) if ends_response(bytes) => {
                // Ended (its final event): the stream's success, unless it is a
                // `response.failed` for a transient failure (a server error, an overload,
                // a cut upstream), which counts against the target as a failed stream.
                if !self.failed {
                    if failed_transiently(bytes) {
                        let t = g.target.stream_failed(&g.policy, Instant::now());
                        g.shared.breaker_changed(&g.target, t);
                        self.failed = true;
                        if let Some(g) = &mut self.guard {
                            g.failed();
                        }
                    } else {
                        let t = g.completed();
                        g.shared.breaker_changed(&g.target, t);
                    }
                }
                self.guard = None;
            }
            _ => {}
        }
        item
    }
}

/// Whether SSE bytes hold a `*.delta` event: an event name (`event: ...delta` at its
/// line's end) or a type (`"type":"...delta"`), not the word in some text (where a quote
/// or a line end would be escaped).
fn has_delta_event(bytes: &[u8]) -> bool {
    let named = bytes
        .windows(7)
        .any(|w| w.starts_with(b".delta") && matches!(w[6], b'\n' | b'\r'));
    named
        || bytes.windows(7).enumerate().any(|(i, w)| {
            if w != b"\"type\":" {
                return false;
            }
            // The value: a string, its quotes unescaped (a quote inside is `\"`).
            let rest = &bytes[i + 7..];
            let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
            let Some(value) = rest.strip_prefix(b"\"") else {
                return false;
            };
            value
                .iter()
                .position(|b| *b == b'"')
                .is_some_and(|end| value[..end].ends_with(b".delta"))
        })
}

/// Reads a passed-through SSE byte stream (the Responses API) until its first whole event
/// that is not an opening one (`response.created`, `response.queued`,
/// `response.in_progress`, which say nothing of the answer), or for at most `hold` once
/// the first whole event came. `Err`: the upstream failed, or ended, before (an `error` or
/// `response.failed` event among them), so the next target can still serve. `Ok`: the
/// bytes read, followed by the rest.
pub(crate) async fn hold_bytes(
    mut s: weir_model::ByteStream,
    hold: Duration,
) -> Result<weir_model::ByteStream, ProviderError> {
    let mut held: Vec<bytes::Bytes> = Vec::new();
    let mut seen: Vec<u8> = Vec::new();
    // Where the events not yet looked at start, and until when opening events are held.
    let mut at = 0;
    let mut until: Option<tokio::time::Instant> = None;
    'read: loop {
        let next = match until {
            Some(t) => match tokio::time::timeout_at(t, s.next()).await {
                Ok(next) => next,
                // Only opening events within the hold: served as they are.
                Err(_) => break,
            },
            None => s.next().await,
        };
        match next {
            None => {
                return Err(ProviderError::new(
                    weir_model::ErrorKind::Upstream,
                    "the upstream stream ended before its first event",
                ))
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(b)) => {
                // A keep-alive (the bridge writes one after 15 s without an event): the
                // client gets its status and the keep-alive now, not at the first event.
                let keep_alive = b.starts_with(KEEP_ALIVE);
                seen.extend_from_slice(&b);
                held.push(b);
                if keep_alive {
                    break 'read;
                }
                while let Some(len) = first_event_end(&seen[at..]) {
                    let event = &seen[at..at + len];
                    let first = at == 0;
                    at += len;
                    if let Some(e) = error_event(event) {
                        // After the opening events, only a failure another target may not
                        // have (a rate limit, an overload, a server error); the others
                        // (a prompt too long, a policy) are the client's to read in the
                        // stream, as the API sends them.
                        if first || e.transient {
                            return Err(e.error);
                        }
                        break 'read;
                    }
                    if !opening_event(event) {
                        break 'read;
                    }
                    until.get_or_insert_with(|| tokio::time::Instant::now() + hold);
                }
                if seen.len() > MAX_HELD_BYTES {
                    // Opening events this large are not a failing upstream's.
                    break;
                }
            }
        }
    }
    let head = futures_util::stream::iter(held.into_iter().map(Ok));
    Ok(Box::pin(head.chain(s)))
}

/// The SSE comment a keep-alive is written as.
const KEEP_ALIVE: &[u8] = b": keep-alive";

/// Whether an event only opens the response (`response.created`, `response.queued`,
/// `response.in_progress`): by its name, else its data's `type`.
fn opening_event(event: &[u8]) -> bool {
    const OPENING: [&str; 3] = [
        "response.created",
        "response.queued",
        "response.in_progress",
    ];
    let Ok(text) = std::str::from_utf8(event) else {
        return false;
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            return OPENING.contains(&v.trim());
        }
    }
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<std::borrow::Cow<'a, str>>,
    }
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v))
        .collect();
    serde_json::from_str::<Typed<'_>>(&data)
        .ok()
        .and_then(|t| t.ty)
        .is_some_and(|t| OPENING.contains(&t.as_ref()))
}

/// Where the first event with data ends (its blank line), if it has come: comments and
/// blank lines before it are not events.
fn first_event_end(b: &[u8]) -> Option<usize> {
    let mut data = false;
    let mut at = 0;
    while let Some(nl) = b[at..].iter().position(|&c| c == b'\n') {
        let line = &b[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.is_empty() {
            if data {
                return Some(at);
            }
        } else if line.starts_with(b"data") {
            data = true;
        }
    }
    None
}

/// The failure an `error` or `response.failed` event states.
struct EventError {
    error: ProviderError,
    /// A rate limit, an overload or a server error: another target (or key) may serve.
    transient: bool,
}

/// The failure an `error` (or `response.failed`) event states, if it is one.
fn error_event(event: &[u8]) -> Option<EventError> {
    let text = std::str::from_utf8(event).ok()?;
    let mut name = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let v: serde_json::Value = serde_json::from_str(&data).ok()?;
    let ty = name.or_else(|| v["type"].as_str().map(str::to_owned))?;
    if ty != "error" && ty != "response.failed" {
        return None;
    }
    let message = v["message"]
        .as_str()
        .or(v["error"]["message"].as_str())
        .or(v["response"]["error"]["message"].as_str())
        .unwrap_or("the upstream stream failed before its first event");
    // The event's code (or its error's type, as OpenAI nests it) says what kind of
    // failure (a rate limit is the client's 429, and rests no target).
    let code = v["code"]
        .as_str()
        .or(v["error"]["code"].as_str())
        .or(v["response"]["error"]["code"].as_str())
        .or(v["error"]["type"].as_str())
        .unwrap_or("");
    let kind = if code.contains("rate_limit")
        || code == "insufficient_quota"
        || code == "too_many_requests"
    {
        weir_model::ErrorKind::RateLimited
    } else if code.contains("overloaded") {
        weir_model::ErrorKind::Overloaded
    } else {
        weir_model::ErrorKind::Upstream
    };
    let transient = kind != weir_model::ErrorKind::Upstream
        || matches!(code, "server_error" | "internal_error" | "");
    let mut e = ProviderError::new(kind, format!("the upstream's stream failed: {message}"));
    if kind != weir_model::ErrorKind::Upstream {
        e.status = Some(kind.http_status());
    }
    Some(EventError {
        error: e,
        transient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_response_failed_is_a_failed_stream() {
        let failed = |code: &str| {
            format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"x\"}}\n\n\
                 event: response.failed\ndata: {{\"type\":\"response.failed\",\"response\":{{\"status\":\"failed\",\"error\":{{\"code\":\"{code}\",\"message\":\"m\"}}}}}}\n\n"
            )
        };
        assert!(failed_transiently(failed("server_error").as_bytes()));
        // A rate limit rests no target.
        assert!(!failed_transiently(
            failed("rate_limit_exceeded").as_bytes()
        ));
        // The request's own fault is no failure of the target.
        assert!(!failed_transiently(
            failed("context_length_exceeded").as_bytes()
        ));
        assert!(!failed_transiently(
            b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n"
        ));
    }

    /// A Responses stream is held past its opening events: an error after them (OpenAI
    /// sends a rate limit so, after `response.created`) is the target's failure, which
    /// the next target can make good; an event with content serves it; opening events
    /// alone are let through after the hold.
    #[tokio::test]
    async fn responses_streams_are_held_past_their_opening_events() {
        // The events, then an upstream that sends nothing more.
        let stream = |events: &[&str]| -> weir_model::ByteStream {
            let chunks: Vec<Result<bytes::Bytes, ProviderError>> = events
                .iter()
                .map(|e| Ok(bytes::Bytes::from(e.to_string())))
                .collect();
            Box::pin(futures_util::stream::iter(chunks).chain(futures_util::stream::pending()))
        };
        // Served: the events' bytes come first, in order.
        async fn served_as_sent(events: &[&str], s: weir_model::ByteStream, hold: Duration) {
            let mut out = hold_bytes(s, hold).await.unwrap();
            let mut got = Vec::new();
            for _ in events {
                got.extend_from_slice(&out.next().await.unwrap().unwrap());
            }
            assert_eq!(got, events.concat().into_bytes());
        }
        let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}\n\n";
        let progress = "event: response.in_progress\ndata: {\"type\":\"response.in_progress\"}\n\n";
        let limited = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"too_many_requests\",\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached\"}}\n\n";
        let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n";
        let hold = Duration::from_millis(50);
        let Err(e) = hold_bytes(stream(&[created, progress, limited]), hold).await else {
            panic!("a rate limit after the opening events is a failure");
        };
        assert_eq!(e.kind, weir_model::ErrorKind::RateLimited, "{e:?}");
        assert!(e.message.contains("Rate limit reached"), "{e:?}");
        // Content: served, every byte in order.
        let events = [created, progress, delta];
        served_as_sent(&events, stream(&events), hold).await;
        // Opening events only: let through once the hold is over.
        let out =
            tokio::time::timeout(Duration::from_secs(5), hold_bytes(stream(&[created]), hold))
                .await
                .expect("let through after the hold");
        assert!(out.is_ok());
        // One event split across reads is read whole (served at once, not by the hold).
        let (a, b) = delta.split_at(10);
        let long = Duration::from_secs(600);
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            hold_bytes(stream(&[created, a, b]), long),
        )
        .await
        .expect("served by its content, not the hold");
        assert!(served.is_ok());
        // A failure the client caused (a prompt too long), after the opening events, is
        // the client's to read in the stream: served as it came.
        let too_long = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"context_length_exceeded\",\"message\":\"too long\"}}}\n\n";
        let events = [created, progress, too_long];
        served_as_sent(&events, stream(&events), long).await;
        // A keep-alive (the bridge's after 15 s of silence) lets the stream through at
        // once, before any event, with a zero hold too.
        for hold in [long, Duration::ZERO] {
            let served = tokio::time::timeout(
                Duration::from_secs(5),
                hold_bytes(stream(&[": keep-alive\n\n"]), hold),
            )
            .await
            .expect("let through by the keep-alive");
            assert!(served.is_ok());
        }
    }

    /// Opening events without content are held up to a megabyte, not 64 of any size: a
    /// stream of huge pings is let through once past it (it would never release here).
    #[tokio::test]
    async fn huge_opening_events_are_held_up_to_a_megabyte() {
        let ping = |kb: usize| {
            let source = weir_model::SourceEvent::new(
                weir_model::Dialect::Anthropic,
                weir_sse::Event::new("x".repeat(kb << 10)),
            );
            Ok(Frame {
                events: vec![StreamEvent::Ping],
                source: Some(source),
            })
        };
        // Three 512 KB pings, then an upstream that never sends another byte.
        let frames = futures_util::stream::iter([ping(512), ping(512), ping(512)]);
        let s: EventStream = Box::pin(frames.chain(futures_util::stream::pending()));
        // (Well before the time bound lets it through.)
        let mut out = tokio::time::timeout(
            MAX_HOLD / 2,
            hold(s, &weir_model::Progress::default(), MAX_HOLD),
        )
        .await
        .expect("let through past a megabyte")
        .unwrap();
        // Both pings held so far come first.
        assert_eq!(out.next().await.unwrap().unwrap().source_bytes(), 512 << 10);
        assert_eq!(out.next().await.unwrap().unwrap().source_bytes(), 512 << 10);
    }

    /// A stream with no content yet (a reasoning model thinking) is let through after
    /// [`MAX_HOLD`], with what it sent: the client has its status and opening events.
    #[tokio::test]
    async fn an_opening_without_content_is_held_a_second_at_most() {
        let start = Ok(Frame {
            events: vec![StreamEvent::MessageStart {
                id: "m".into(),
                model: "m".into(),
                usage: Default::default(),
            }],
            source: None,
        });
        let s: EventStream =
            Box::pin(futures_util::stream::iter([start]).chain(futures_util::stream::pending()));
        let began = std::time::Instant::now();
        let mut out = tokio::time::timeout(
            MAX_HOLD * 10,
            hold(s, &weir_model::Progress::default(), MAX_HOLD),
        )
        .await
        .expect("let through after MAX_HOLD")
        .unwrap();
        assert!(began.elapsed() >= MAX_HOLD);
        let first = out.next().await.unwrap().unwrap();
        assert!(matches!(first.events[0], StreamEvent::MessageStart { .. }));
    }

    #[test]
    fn a_delta_event_is_told_from_the_word_in_text() {
        assert!(has_delta_event(
            b"event: response.output_text.delta\ndata: {}\n\n"
        ));
        assert!(has_delta_event(
            b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
        ));
        assert!(has_delta_event(
            b"data: {\"type\": \"response.reasoning_summary_text.delta\"}\n\n"
        ));
        assert!(!has_delta_event(
            b"event: response.created\ndata: {\"type\":\"response.created\",\"instructions\":\"explain x.delta please, \\\"y.delta\\\"\\nz.delta\"}\n\n"
        ));
    }

    #[test]
    fn a_first_error_event_says_its_kind() {
        let event = |data: &str| format!("event: error\ndata: {data}\n\n");
        let limited = error_event(
            event(r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(limited.transient);
        let limited = limited.error;
        assert_eq!(limited.kind, weir_model::ErrorKind::RateLimited);
        assert_eq!(limited.status, Some(429));
        assert!(limited.message.contains("slow down"));
        let failed = error_event(
            event(r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(failed.transient);
        let failed = failed.error;
        assert_eq!(failed.kind, weir_model::ErrorKind::Upstream);
        assert!(failed.message.contains("boom"));
        let too_long = error_event(
            event(r#"{"type":"response.failed","response":{"error":{"code":"context_length_exceeded","message":"long"}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(!too_long.transient);
        assert!(
            error_event(b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n")
                .is_none()
        );
    }
}
