//! Streamed response bodies as streams of canonical frames: the reading (idle and total
//! timeouts, transport errors, cancellation on drop) is shared; what the bytes mean is a
//! [`BodyDecoder`]'s business (SSE for most providers, AWS event streams for Bedrock,
//! NDJSON for Ollama).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::time::Sleep;
use weir_model::{
    Dialect, ErrorKind, EventStream, Frame, ProviderError, SourceEvent, StreamEvent, WireError,
};
use weir_sse::Event;

use crate::Response;

/// A dialect's SSE stream decoder, as the SSE reader drives it.
pub trait FrameDecoder: Send + Unpin + 'static {
    /// Decodes one SSE event.
    fn decode(&mut self, event: Event) -> Result<Frame, WireError>;
    /// Reads an event the reader found in exactly the form `event: NAME` (optional), one
    /// `data: DATA` line, blank line, when the client speaks the upstream's dialect (the
    /// reader then passes the event's bytes on as they came instead of decoding and
    /// re-encoding its framing). Pushes its canonical events to `out` and returns `true`
    /// when it is one of the shapes the dialect reads this way; otherwise pushes nothing,
    /// changes nothing, and returns `false`, and the event goes through [`decode`].
    ///
    /// [`decode`]: FrameDecoder::decode
    fn relay(&mut self, name: Option<&str>, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        let _ = (name, data, out);
        false
    }
    /// The body ended; a final frame, if the dialect closes the message itself.
    fn finish(&mut self) -> Result<Option<Frame>, WireError>;
    /// Whether what came may be the whole answer though the stream has no terminator
    /// (Gemini's: a finish reason and usage seen, and more parts may still come): a body
    /// that then stays silent for [`COMPLETE_GRACE`] is ended as if it had ended.
    fn complete(&self) -> bool {
        false
    }
}

/// Turns a streamed body's bytes into frames, whatever the framing.
pub trait BodyDecoder: Send + Unpin + 'static {
    /// The next bytes of the body (any split); complete frames go to `out`. An error ends
    /// the stream with it.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError>;
    /// The body ended; frames still owed go to `out`.
    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError>;
    /// See [`FrameDecoder::complete`].
    fn complete(&self) -> bool {
        false
    }
}

/// An SSE body decoded by a [`FrameDecoder`].
pub struct SseBody<D> {
    sse: weir_sse::Decoder,
    decoder: D,
    events: Vec<Event>,
    /// Relaying for a client of this dialect (see [`SseBody::relaying`]).
    relay: Option<Dialect>,
    /// Relayed events not handed on yet: their canonical events and their bytes.
    run: Option<(Vec<StreamEvent>, Vec<u8>)>,
}

impl<D: FrameDecoder> SseBody<D> {
    /// SSE framing around `decoder`. A line may be as long as a whole event (16 MiB):
    /// image-generating models (Gemini's) send a whole base64 image on one `data:` line,
    /// past the decoder's default of 1 MiB.
    pub fn new(decoder: D) -> Self {
        SseBody {
            sse: weir_sse::Decoder::with_limits(UPSTREAM_LIMITS),
            decoder,
            events: Vec::new(),
            relay: None,
            run: None,
        }
    }

    /// For a client that speaks the upstream's `dialect`: complete events in the plain
    /// shape the decoder's [`FrameDecoder::relay`] reads (nearly all of a stream: text
    /// deltas, block stops) are read from the bytes without SSE decoding and handed on as
    /// those bytes, consecutive ones as one frame. Everything else, and any event split
    /// across reads, goes through the SSE decoder as before.
    #[must_use]
    pub fn relaying(mut self, dialect: Dialect) -> Self {
        self.relay = Some(dialect);
        self
    }

    fn decoded(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        self.sse.feed(bytes, &mut self.events).map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("invalid SSE from the upstream: {e}"),
            )
        })?;
        for ev in self.events.drain(..) {
            out.push(self.decoder.decode(ev).map_err(decode_error)?);
        }
        Ok(())
    }

    /// Reads `block` (one whole event, ending in its blank line) if it is in the plain
    /// shape and the decoder relays it.
    fn try_relay(&mut self, block: &[u8]) -> bool {
        // CR ends lines too, so a block holding one is not the plain shape.
        if memchr::memchr(b'\r', block).is_some() {
            return false;
        }
        let Ok(text) = std::str::from_utf8(&block[..block.len() - 2]) else {
            return false;
        };
        let (name, data_line) = match text.strip_prefix("event: ") {
            Some(rest) => match rest.split_once('\n') {
                Some((name, line)) if !name.is_empty() => (Some(name), line),
                _ => return false,
            },
            None => (None, text),
        };
        let Some(data) = data_line.strip_prefix("data: ") else {
            return false;
        };
        if memchr::memchr(b'\n', data.as_bytes()).is_some() {
            return false;
        }
        let run = self.run.get_or_insert_with(Default::default);
        if !self.decoder.relay(name, data, &mut run.0) {
            return false;
        }
        run.1.extend_from_slice(block);
        true
    }

    fn flush_run(&mut self, out: &mut Vec<Frame>) {
        if let (Some(dialect), Some((events, wire))) = (self.relay, self.run.take()) {
            if !wire.is_empty() {
                out.push(Frame {
                    events,
                    source: Some(SourceEvent::relayed(dialect, wire)),
                });
            }
        }
    }
}

/// The SSE limits for upstream streams.
const UPSTREAM_LIMITS: weir_sse::Limits = weir_sse::Limits {
    max_line_bytes: weir_sse::Limits::DEFAULT_MAX_EVENT_BYTES,
    max_event_bytes: weir_sse::Limits::DEFAULT_MAX_EVENT_BYTES,
};

/// A stream decoder's error as a provider error.
pub fn decode_error(e: WireError) -> ProviderError {
    let mut err = ProviderError::new(
        ErrorKind::Decode,
        format!("the upstream's stream could not be decoded: {e}"),
    );
    err.counts_against_health = e.counts_against_health();
    err
}

impl<D: FrameDecoder> BodyDecoder for SseBody<D> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        if self.relay.is_none() {
            return self.decoded(bytes, out);
        }
        static BLANK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n\n"));
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = BLANK.find(rest).map(|e| e + 2);
            if let Some(end) = end {
                // A stream that set an event id has it written on every event after (the
                // SSE encoder does; relayed bytes would not carry it): no relaying there.
                if self.sse.at_event_boundary()
                    && self.sse.last_event_id().is_none()
                    && self.try_relay(&rest[..end])
                {
                    rest = &rest[end..];
                    continue;
                }
            }
            // Up to the end of the next event (or all there is) through the SSE decoder,
            // after the relayed events before it.
            let upto = end.unwrap_or(rest.len());
            self.flush_run(out);
            self.decoded(&rest[..upto], out)?;
            rest = &rest[upto..];
        }
        self.flush_run(out);
        Ok(())
    }

    fn complete(&self) -> bool {
        self.decoder.complete()
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        self.flush_run(out);
        if self.sse.finish() {
            tracing::debug!("upstream stream ended inside an event; the partial event was dropped");
        }
        if let Some(f) = self.decoder.finish().map_err(decode_error)? {
            out.push(f);
        }
        Ok(())
    }
}

/// A streamed body read frame by frame: [`Stream`] written by hand, so that no state
/// moves between polls and the timer is armed only while the upstream keeps us waiting.
struct Frames<B> {
    resp: Response,
    body: B,
    idle: Duration,
    /// Frames decoded and not yet yielded.
    pending: VecDeque<Frame>,
    scratch: Vec<Frame>,
    done: bool,
    /// Fires at the idle or total deadline while armed (from the first wait after data);
    /// made at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The armed deadline is the call's total one, not the idle one.
    total_bound: bool,
    /// Since when the upstream has sent nothing (set when the timer is first armed after
    /// data: the idle timeout counts from there).
    upstream_quiet: Option<Instant>,
    /// Since when no frame was yielded (set likewise): past [`KEEPALIVE`] of it, a
    /// [`StreamEvent::Ping`] frame is yielded, which the client's encoder writes as a
    /// keep-alive, so that proxies and clients on the way do not take a thinking model's
    /// silence (or an upstream's own keep-alive comments, which are not relayed) for a
    /// dead connection.
    client_quiet: Option<Instant>,
    /// The armed deadline is a keep-alive's, not a timeout's.
    keepalive_bound: bool,
    /// The armed deadline ends a body that lingers after a complete answer.
    grace_bound: bool,
    keepalive: Duration,
}

/// How long a stream may go without a frame for its client before a keep-alive frame
/// ([`StreamEvent::Ping`]) is yielded.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long a body may stay silent after what may be a whole answer
/// ([`FrameDecoder::complete`]) before it is ended as if it had (half the idle timeout
/// when that is shorter).
pub const COMPLETE_GRACE: Duration = Duration::from_secs(3);

/// Reads an SSE body, yielding one frame per upstream event as soon as it is complete.
/// Silence longer than `idle`, or the call's total deadline, ends the stream with a
/// timeout error. Dropping the stream closes the upstream connection.
pub fn sse_frames<D: FrameDecoder>(resp: Response, idle: Duration, decoder: D) -> EventStream {
    body_frames(resp, idle, SseBody::new(decoder))
}

/// [`sse_frames`] for a client of the upstream's `dialect`: plain events are relayed as
/// their bytes (see [`SseBody::relaying`]).
pub fn sse_frames_relayed<D: FrameDecoder>(
    resp: Response,
    idle: Duration,
    decoder: D,
    dialect: Dialect,
) -> EventStream {
    body_frames(resp, idle, SseBody::new(decoder).relaying(dialect))
}

/// Reads a streamed body through `body`, yielding frames as soon as they are complete,
/// with the same timeouts and cancellation as [`sse_frames`].
pub fn body_frames<B: BodyDecoder>(resp: Response, idle: Duration, body: B) -> EventStream {
    body_frames_with_keepalive(resp, idle, body, KEEPALIVE)
}

/// [`body_frames`] with a keep-alive frame after `keepalive` without one (for tests).
pub fn body_frames_with_keepalive<B: BodyDecoder>(
    resp: Response,
    idle: Duration,
    body: B,
    keepalive: Duration,
) -> EventStream {
    Box::pin(Frames {
        resp,
        body,
        idle,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
        timer: None,
        armed: false,
        total_bound: false,
        upstream_quiet: None,
        client_quiet: None,
        keepalive_bound: false,
        grace_bound: false,
        keepalive,
    })
}

impl<B: BodyDecoder> Stream for Frames<B> {
    type Item = Result<Frame, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let st = self.get_mut();
        loop {
            if let Some(f) = st.pending.pop_front() {
                st.client_quiet = None;
                return Poll::Ready(Some(Ok(f)));
            }
            if st.done {
                return Poll::Ready(None);
            }
            let chunk = match st.resp.poll_chunk(cx) {
                Poll::Ready(Ok(c)) => {
                    st.armed = false;
                    st.upstream_quiet = None;
                    c
                }
                Poll::Ready(Err(e)) => {
                    st.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => {
                    let timer = match &mut st.timer {
                        Some(t) if st.armed => t,
                        slot => {
                            let now = Instant::now();
                            let left = st.resp.deadline.saturating_duration_since(now);
                            if left.is_zero() {
                                // Past the total deadline: an upstream that sends more
                                // often than a timer can fire (comments or pings in a
                                // tight loop) would otherwise re-arm it for ever.
                                st.done = true;
                                return Poll::Ready(Some(Err(ProviderError::new(
                                    ErrorKind::Timeout,
                                    "the upstream stream exceeded the total timeout",
                                ))));
                            }
                            st.armed = true;
                            // (Quiet since the first wait after data: reading the clock
                            // only here keeps it off the path of a busy stream.)
                            let upstream = *st.upstream_quiet.get_or_insert(now);
                            let client = *st.client_quiet.get_or_insert(now);
                            st.total_bound = now + left < upstream + st.idle;
                            let timeout = (upstream + st.idle).min(now + left);
                            let keepalive = client + st.keepalive;
                            let grace = st
                                .body
                                .complete()
                                // (Within the idle timeout, however short.)
                                .then(|| upstream + COMPLETE_GRACE.min(st.idle / 2))
                                .filter(|g| *g < timeout.min(keepalive));
                            st.grace_bound = grace.is_some();
                            st.keepalive_bound = !st.grace_bound && keepalive < timeout;
                            let at = grace.unwrap_or(keepalive.min(timeout)).into();
                            match slot {
                                Some(t) => {
                                    t.as_mut().reset(at);
                                    t
                                }
                                None => slot.insert(Box::pin(tokio::time::sleep_until(at))),
                            }
                        }
                    };
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if st.grace_bound {
                        // The answer was whole and the body lingers: it ends here.
                        st.done = true;
                        if let Err(e) = st.body.finish(&mut st.scratch) {
                            st.scratch.clear();
                            return Poll::Ready(Some(Err(e)));
                        }
                        st.pending.extend(st.scratch.drain(..));
                        continue;
                    }
                    if st.keepalive_bound {
                        st.armed = false;
                        st.client_quiet = None;
                        return Poll::Ready(Some(Ok(Frame::from_events(vec![StreamEvent::Ping]))));
                    }
                    st.done = true;
                    let msg = if st.total_bound {
                        "the upstream stream exceeded the total timeout".to_owned()
                    } else {
                        format!(
                            "the upstream stream was silent for more than {}s",
                            st.idle.as_secs_f32()
                        )
                    };
                    return Poll::Ready(Some(Err(ProviderError::new(ErrorKind::Timeout, msg))));
                }
            };
            let fed = match &chunk {
                Some(bytes) => st.body.feed(bytes, &mut st.scratch),
                None => {
                    st.done = true;
                    st.body.finish(&mut st.scratch)
                }
            };
            if let Err(e) = fed {
                // Frames decoded before the error are not sent: the stream failed there.
                st.done = true;
                st.scratch.clear();
                st.pending.clear();
                return Poll::Ready(Some(Err(e)));
            }
            st.pending.extend(st.scratch.drain(..));
        }
    }
}

/// A streamed answer passed through byte for byte (the Responses API), under the same
/// timeouts as decoded streams: `idle` between chunks, and the call's total. An SSE
/// comment (`: keep-alive`) is added after [`KEEPALIVE`] without bytes for the client, when
/// what went before ended an event, for the reason decoded streams get one.
pub fn byte_stream(resp: Response, idle: Duration) -> weir_model::ByteStream {
    byte_stream_with_keepalive(resp, idle, KEEPALIVE)
}

/// [`byte_stream`] with a keep-alive after `keepalive` without bytes (for tests).
pub fn byte_stream_with_keepalive(
    resp: Response,
    idle: Duration,
    keepalive: Duration,
) -> weir_model::ByteStream {
    struct State {
        resp: Response,
        /// When the upstream last sent bytes (the idle timeout counts from there).
        upstream_at: Instant,
        /// When the client was last given bytes.
        client_at: Instant,
        /// The last bytes sent, enough to tell whether they ended an event.
        tail: [u8; 4],
    }
    const KEEPALIVE_COMMENT: &[u8] = b": keep-alive\n\n";
    let now = Instant::now();
    let state = State {
        resp,
        upstream_at: now,
        client_at: now,
        // (The start of a body is between events.)
        tail: *b"\n\n\n\n",
    };
    Box::pin(futures_util::stream::unfold(
        Some(state),
        move |state| async move {
            let mut st = state?;
            let now = Instant::now();
            let left = st.resp.deadline.saturating_duration_since(now);
            if left.is_zero() {
                // (`timeout` would still take a chunk that is ready: a flood never ends.)
                let e = ProviderError::new(
                    ErrorKind::Timeout,
                    "the upstream stream exceeded the total timeout",
                );
                return Some((Err(e), None));
            }
            let timeout = (st.upstream_at + idle).min(now + left);
            let between_events = st.tail.ends_with(b"\n\n")
                || st.tail.ends_with(b"\r\r")
                || st.tail.ends_with(b"\n\r\n");
            let keepalive =
                Some(st.client_at + keepalive).filter(|k| between_events && *k < timeout);
            let until = keepalive.unwrap_or(timeout);
            match tokio::time::timeout_at(until.into(), st.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    let now = Instant::now();
                    st.upstream_at = now;
                    st.client_at = now;
                    let n = bytes.len().min(4);
                    st.tail.rotate_left(n);
                    st.tail[4 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
                    Some((Ok(bytes), Some(st)))
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((Err(e), None)),
                Err(_) if keepalive.is_some() => {
                    st.client_at = Instant::now();
                    Some((Ok(bytes::Bytes::from_static(KEEPALIVE_COMMENT)), Some(st)))
                }
                Err(_) => {
                    let msg = if now + left <= st.upstream_at + idle {
                        "the upstream stream exceeded the total timeout".to_owned()
                    } else {
                        format!(
                            "the upstream stream was silent for more than {}s",
                            idle.as_secs_f32()
                        )
                    };
                    Some((Err(ProviderError::new(ErrorKind::Timeout, msg)), None))
                }
            }
        },
    ))
}

/// A passed-through stream's bytes with `secrets` replaced by `***`, in any ASCII case (an
/// error event may echo a key), and its failures scrubbed. A secret split across reads is
/// caught too: the end of a read that could begin one is held back until the next read
/// (or the end) shows it is not one; an event's own end (`\n\n`) never could.
pub(crate) fn scrub_bytes(
    stream: weir_model::ByteStream,
    secrets: &[&weir_model::Secret],
) -> weir_model::ByteStream {
    let secrets: Vec<Vec<u8>> = secrets
        .iter()
        .map(|s| s.expose().as_bytes().to_ascii_lowercase())
        .filter(|s| s.len() >= 4)
        .collect();
    if secrets.is_empty() {
        return stream;
    }
    Box::pin(ScrubBytes {
        inner: stream,
        secrets,
        held: Vec::new(),
        failed: None,
        done: false,
    })
}

struct ScrubBytes {
    inner: weir_model::ByteStream,
    /// Lower-cased.
    secrets: Vec<Vec<u8>>,
    /// The end of the last read, which may be the start of a secret.
    held: Vec<u8>,
    /// A failure to pass on after the held bytes.
    failed: Option<ProviderError>,
    done: bool,
}

impl ScrubBytes {
    /// `data` with every secret replaced, and how many of its last bytes could begin one.
    fn scrub(&self, data: &[u8]) -> (Vec<u8>, usize) {
        let lower = data.to_ascii_lowercase();
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        'scan: while at < data.len() {
            for s in &self.secrets {
                if lower[at..].starts_with(s) {
                    out.extend_from_slice(b"***");
                    at += s.len();
                    continue 'scan;
                }
            }
            out.push(data[at]);
            at += 1;
        }
        let lower_out = out.to_ascii_lowercase();
        let hold = self
            .secrets
            .iter()
            .filter_map(|s| {
                (1..s.len().min(lower_out.len() + 1))
                    .rev()
                    .find(|&k| lower_out[lower_out.len() - k..] == s[..k])
            })
            .max()
            .unwrap_or(0);
        (out, hold)
    }
}

impl Stream for ScrubBytes {
    type Item = Result<bytes::Bytes, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let me = self.get_mut();
        if let Some(e) = me.failed.take() {
            me.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        if me.done {
            return Poll::Ready(None);
        }
        loop {
            let item = match me.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            match item {
                Some(Ok(bytes)) => {
                    let mut data = std::mem::take(&mut me.held);
                    data.extend_from_slice(&bytes);
                    let (mut out, hold) = me.scrub(&data);
                    me.held = out.split_off(out.len() - hold);
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(bytes::Bytes::from(out))));
                }
                Some(Err(mut e)) => {
                    for s in me
                        .secrets
                        .iter()
                        .filter_map(|s| std::str::from_utf8(s).ok())
                    {
                        crate::scrub(&mut e, s);
                    }
                    if me.held.is_empty() {
                        me.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    me.failed = Some(e);
                    let held = std::mem::take(&mut me.held);
                    return Poll::Ready(Some(Ok(bytes::Bytes::from(held))));
                }
                None => {
                    me.done = true;
                    if me.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    let held = std::mem::take(&mut me.held);
                    return Poll::Ready(Some(Ok(bytes::Bytes::from(held))));
                }
            }
        }
    }
}

/// `stream` with `secrets` taken out of its errors: the upstream's own error events (which
/// may echo a key, as its error bodies do) and failures. An error event that named a
/// secret loses its source bytes, so a same-dialect client gets it re-encoded, not
/// relayed as it came.
pub fn scrub_stream(stream: EventStream, secrets: &[&weir_model::Secret]) -> EventStream {
    let secrets: Vec<weir_model::Secret> = secrets
        .iter()
        .filter(|s| s.expose().len() >= 4)
        .map(|s| (*s).clone())
        .collect();
    if secrets.is_empty() {
        return stream;
    }
    Box::pin(Scrubbed {
        inner: stream,
        secrets,
    })
}

struct Scrubbed {
    inner: EventStream,
    secrets: Vec<weir_model::Secret>,
}

impl Stream for Scrubbed {
    type Item = Result<Frame, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let me = self.get_mut();
        let item = match me.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(item.map(|r| match r {
            Ok(mut frame) => {
                let mut named = false;
                for ev in &mut frame.events {
                    if let weir_model::StreamEvent::Error(api) = ev {
                        for s in &me.secrets {
                            named |= crate::redact_api(api, s.expose());
                        }
                    }
                }
                // An error event's upstream bytes (relayed to a client of the same dialect)
                // may name the key in fields the canonical error does not keep: then the
                // event goes re-encoded, without them.
                if !named
                    && frame
                        .events
                        .iter()
                        .any(|e| matches!(e, weir_model::StreamEvent::Error(_)))
                {
                    if let Some(src) = &frame.source {
                        let mut text = src.event.data().to_owned();
                        if let Some(w) = &src.wire {
                            text.push_str(&String::from_utf8_lossy(w));
                        }
                        named = me
                            .secrets
                            .iter()
                            .any(|s| crate::redact(&mut text, s.expose()));
                    }
                }
                if named {
                    frame.source = None;
                }
                Ok(frame)
            }
            Err(mut e) => {
                for s in &me.secrets {
                    crate::scrub(&mut e, s.expose());
                }
                Err(e)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What `scrub_bytes` makes of `chunks` (then a failure, if `fail`): each item.
    async fn scrubbed(chunks: &[&str], fail: bool) -> Vec<Result<String, String>> {
        use futures_util::StreamExt as _;
        let mut items: Vec<Result<bytes::Bytes, ProviderError>> = chunks
            .iter()
            .map(|c| Ok(bytes::Bytes::from(c.to_string())))
            .collect();
        if fail {
            items.push(Err(ProviderError::new(
                ErrorKind::Connect,
                "reset while sending sk-secret-123",
            )));
        }
        let secret = weir_model::Secret::new("sk-Secret-123".to_owned());
        scrub_bytes(Box::pin(futures_util::stream::iter(items)), &[&secret])
            .map(|r| {
                r.map(|b| String::from_utf8(b.to_vec()).unwrap())
                    .map_err(|e| e.message)
            })
            .collect()
            .await
    }

    /// Each event as an `Unknown` named by its data.
    struct Named;
    impl FrameDecoder for Named {
        fn decode(&mut self, e: Event) -> Result<Frame, WireError> {
            Ok(Frame::from_events(vec![StreamEvent::Unknown {
                event: e.data().to_owned(),
            }]))
        }
        fn finish(&mut self) -> Result<Option<Frame>, WireError> {
            Ok(None)
        }
    }

    /// Each event as an `Unknown`; whole after an event `done`, ended by `end`.
    #[derive(Default)]
    struct Ends {
        whole: bool,
    }
    impl FrameDecoder for Ends {
        fn decode(&mut self, e: Event) -> Result<Frame, WireError> {
            self.whole |= e.data() == "done";
            Ok(Frame::from_events(vec![StreamEvent::Unknown {
                event: e.data().to_owned(),
            }]))
        }
        fn finish(&mut self) -> Result<Option<Frame>, WireError> {
            Ok(Some(Frame::from_events(vec![StreamEvent::Unknown {
                event: "end".to_owned(),
            }])))
        }
        fn complete(&self) -> bool {
            self.whole
        }
    }

    /// An upstream answering one request with an SSE body written as `writes` (each
    /// after its delay), then silent for 30 s; its answer, with `idle` as the idle timeout.
    async fn streamed(writes: Vec<(u64, &'static str)>, idle: Duration) -> crate::Response {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for (ms, t) in writes {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let chunk = format!("{:x}\r\n{t}\r\n", t.len());
                s.write_all(chunk.as_bytes()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let up = crate::Upstream::direct(Duration::from_secs(2));
        let ep = up.endpoint(url::Url::parse(&url).unwrap()).unwrap();
        let t = crate::Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle,
            total: Duration::from_secs(30),
        };
        up.send(&ep, http::HeaderMap::new(), b"{}".to_vec(), &t)
            .await
            .unwrap()
    }

    /// What a stream yields, one line per item: an event's name, `ping`, or the error.
    async fn items(s: EventStream) -> Vec<String> {
        use futures_util::StreamExt as _;
        s.map(|r| match r {
            Ok(f) => match &f.events[..] {
                [StreamEvent::Ping] => "ping".to_owned(),
                [StreamEvent::Unknown { event }] => event.clone(),
                other => format!("{other:?}"),
            },
            Err(e) => format!("error: {}", e.message),
        })
        .collect()
        .await
    }

    /// A body that lingers after what may be a whole answer (a Gemini stream past its
    /// finish) is ended after [`COMPLETE_GRACE`] (here half the idle timeout, which is
    /// shorter), not left to time out.
    #[tokio::test]
    async fn a_body_lingering_after_a_whole_answer_is_ended_after_a_grace() {
        let idle = Duration::from_secs(2);
        let resp = streamed(vec![(0, "data: one\n\ndata: done\n\n")], idle).await;
        let got = items(body_frames(resp, idle, SseBody::new(Ends::default()))).await;
        assert_eq!(got, ["one", "done", "end"]);
    }

    /// A silent upstream, or one sending only keep-alive comments, gets its client a
    /// keep-alive frame (`Ping`) every interval; the idle timeout still counts from the
    /// upstream's last bytes.
    #[tokio::test]
    async fn a_quiet_stream_yields_keep_alives_and_still_times_out() {
        // Comments only, for longer than the keep-alive interval; an event; then silence,
        // past the idle timeout.
        let mut writes = vec![(60, ": PROCESSING\n\n"); 10];
        writes.push((0, "data: one\n\n"));
        let idle = Duration::from_secs(1);
        let resp = streamed(writes, idle).await;
        let keepalive = Duration::from_millis(150);
        let items = items(body_frames_with_keepalive(
            resp,
            idle,
            SseBody::new(Named),
            keepalive,
        ))
        .await;
        let one = items.iter().position(|i| i == "one").expect("the event");
        assert!(
            one >= 1 && items[..one].iter().all(|i| i == "ping"),
            "{items:?}"
        );
        let last = items.len() - 1;
        assert!(items[last].contains("silent for more than 1s"), "{items:?}");
        assert!(
            last > one + 1 && items[one + 1..last].iter().all(|i| i == "ping"),
            "{items:?}"
        );
    }

    /// What a passed-through stream yields, with a keep-alive after 150 ms of quiet: each
    /// read as text, or the error.
    async fn passed_through(resp: crate::Response, idle: Duration) -> Vec<String> {
        use futures_util::StreamExt as _;
        byte_stream_with_keepalive(resp, idle, Duration::from_millis(150))
            .map(|r| match r {
                Ok(b) => String::from_utf8(b.to_vec()).unwrap(),
                Err(e) => format!("error: {}", e.message),
            })
            .collect()
            .await
    }

    /// A passed-through stream gets an SSE comment every interval of quiet between events,
    /// none inside an event (a client would read it as part of the event); the idle
    /// timeout still counts from the upstream's last bytes.
    #[tokio::test]
    async fn a_quiet_passed_through_stream_gets_keep_alive_comments_between_events() {
        let idle = Duration::from_secs(1);
        let writes = vec![(0, "data: one\n\n"), (500, "data: tw"), (500, "o\n\n")];
        let got = passed_through(streamed(writes, idle).await, idle).await;
        let at = |t: &str| {
            got.iter()
                .position(|i| i == t)
                .unwrap_or_else(|| panic!("{t}: {got:?}"))
        };
        let (one, tw, o) = (at("data: one\n\n"), at("data: tw"), at("o\n\n"));
        let keepalive = |r: std::ops::Range<usize>| got[r].iter().all(|i| i == ": keep-alive\n\n");
        assert!(one == 0 && tw >= 2 && keepalive(1..tw), "{got:?}");
        assert_eq!(o, tw + 1, "none inside an event: {got:?}");
        let last = got.len() - 1;
        assert!(got[last].contains("silent for more than 1s"), "{got:?}");
        assert!(last > o + 1 && keepalive(o + 1..last), "{got:?}");
    }

    /// Events ended with CRLF line ends are between events too.
    #[tokio::test]
    async fn a_quiet_passed_through_crlf_stream_gets_keep_alives() {
        let idle = Duration::from_millis(600);
        let resp = streamed(vec![(0, "data: one\r\n\r\n")], idle).await;
        let got = passed_through(resp, idle).await;
        assert!(got.len() >= 3 && got[1] == ": keep-alive\n\n", "{got:?}");
    }

    #[tokio::test]
    async fn passed_through_bytes_lose_a_secret_in_any_case_even_split_across_reads() {
        let out = scrubbed(
            &[
                "data: key sk-Se",
                "CRET-123 end\n\n",
                "data: SK-SECRET-123\n\n",
            ],
            false,
        )
        .await;
        // The end of the first read could begin the key: held back, not sent half.
        assert_eq!(
            out,
            [
                Ok("data: key ".to_owned()),
                Ok("*** end\n\n".to_owned()),
                Ok("data: ***\n\n".to_owned())
            ]
        );
        // Held bytes that turn out not to be the key go out with the next read, or at the
        // end, and before a failure (scrubbed too).
        let out = scrubbed(&["a sk-S", "x\n\n", "sk-"], true).await;
        assert_eq!(
            out,
            [
                Ok("a ".to_owned()),
                Ok("sk-Sx\n\n".to_owned()),
                Ok("sk-".to_owned()),
                Err("reset while sending ***".to_owned())
            ]
        );
    }

    /// Records each event's data length.
    struct Lengths(Arc<Mutex<Vec<usize>>>);

    impl FrameDecoder for Lengths {
        fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
            self.0.lock().unwrap().push(event.data().len());
            Ok(Frame::from_events(Vec::new()))
        }
        fn finish(&mut self) -> Result<Option<Frame>, WireError> {
            Ok(None)
        }
    }

    #[test]
    fn a_whole_base64_image_on_one_data_line_is_one_event() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut body = SseBody::new(Lengths(seen.clone()));
        let image = "A".repeat(3 << 20);
        let stream = format!("data: {{\"inlineData\":\"{image}\"}}\n\ndata: {{}}\n\n");
        let mut out = Vec::new();
        for chunk in stream.as_bytes().chunks(64 * 1024) {
            body.feed(chunk, &mut out).unwrap();
        }
        body.finish(&mut out).unwrap();
        assert_eq!(*seen.lock().unwrap(), [image.len() + 17, 2]);
        assert_eq!(out.len(), 2);
    }
}
