//! SSE response bodies as streams of canonical frames.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::stream;
use weir_model::{ErrorKind, EventStream, Frame, ProviderError, WireError};
use weir_sse::Event;

use crate::{transport_error, Response};

/// A dialect's stream decoder, as the SSE reader drives it.
pub trait FrameDecoder: Send + 'static {
    /// Decodes one SSE event.
    fn decode(&mut self, event: Event) -> Result<Frame, WireError>;
    /// The body ended; a final frame, if the dialect closes the message itself.
    fn finish(&mut self) -> Result<Option<Frame>, WireError>;
}

struct State<D> {
    resp: Response,
    sse: weir_sse::Decoder,
    decoder: D,
    idle: Duration,
    pending: VecDeque<Frame>,
    events: Vec<Event>,
    done: bool,
}

fn decode_error(e: WireError) -> ProviderError {
    ProviderError::new(
        ErrorKind::Decode,
        format!("the upstream's stream could not be decoded: {e}"),
    )
}

/// Reads an SSE body, yielding one frame per upstream event as soon as it is complete.
/// Silence longer than `idle`, or the call's total deadline, ends the stream with a
/// timeout error. Dropping the stream closes the upstream connection.
pub fn sse_frames<D: FrameDecoder>(resp: Response, idle: Duration, decoder: D) -> EventStream {
    let state = State {
        resp,
        sse: weir_sse::Decoder::new(),
        decoder,
        idle,
        pending: VecDeque::new(),
        events: Vec::new(),
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(f) = st.pending.pop_front() {
                return Some((Ok(f), st));
            }
            if st.done {
                return None;
            }
            let left = st.resp.deadline.saturating_duration_since(Instant::now());
            let wait = st.idle.min(left);
            let chunk = match tokio::time::timeout(wait, st.resp.inner.chunk()).await {
                Err(_) => {
                    st.done = true;
                    let msg = if wait < st.idle {
                        "the upstream stream exceeded the total timeout".to_owned()
                    } else {
                        format!(
                            "the upstream stream was silent for more than {}s",
                            st.idle.as_secs_f32()
                        )
                    };
                    return Some((Err(ProviderError::new(ErrorKind::Timeout, msg)), st));
                }
                Ok(Err(e)) => {
                    st.done = true;
                    return Some((Err(transport_error(&e)), st));
                }
                Ok(Ok(c)) => c,
            };
            match chunk {
                Some(bytes) => {
                    if let Err(e) = st.sse.feed(&bytes, &mut st.events) {
                        st.done = true;
                        let err = ProviderError::new(
                            ErrorKind::Decode,
                            format!("invalid SSE from the upstream: {e}"),
                        );
                        return Some((Err(err), st));
                    }
                    let events = std::mem::take(&mut st.events);
                    for ev in events {
                        match st.decoder.decode(ev) {
                            Ok(f) => st.pending.push_back(f),
                            Err(e) => {
                                st.done = true;
                                st.pending.clear();
                                return Some((Err(decode_error(e)), st));
                            }
                        }
                    }
                }
                None => {
                    st.done = true;
                    if st.sse.finish() {
                        tracing::debug!(
                            "upstream stream ended inside an event; the partial event was dropped"
                        );
                    }
                    match st.decoder.finish() {
                        Ok(Some(f)) => st.pending.push_back(f),
                        Ok(None) => {}
                        Err(e) => return Some((Err(decode_error(e)), st)),
                    }
                }
            }
        }
    }))
}
