//! `application/vnd.amazon.eventstream` bodies as canonical frames: the framing (prelude,
//! headers, CRCs) is `aws-smithy-eventstream`'s `MessageFrameDecoder`, fed whatever
//! chunks the connection delivers; what an event means is a [`EventHandler`]'s business
//! (InvokeModel chunks or Converse events).

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::BytesMut;
use weir_model::{ErrorKind, Frame, ProviderError};
use weir_upstream::BodyDecoder;

use crate::error::stream_exception;

/// The largest frame accepted: AWS caps event stream messages at 16 MiB of payload plus
/// 128 KiB of headers. A larger length prefix is a corrupt stream, not a frame to buffer.
const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024 + 128 * 1024 + 16;

/// Turns the events of one stream into frames.
pub trait EventHandler: Send + Unpin + 'static {
    /// An event (`:message-type: event`) with its `:event-type` and payload.
    fn event(
        &mut self,
        event_type: &str,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), ProviderError>;
    /// The body ended (after every event was handled).
    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError>;
}

/// An event stream body decoded by an [`EventHandler`].
pub struct EventStreamBody<H> {
    buf: BytesMut,
    frames: MessageFrameDecoder,
    /// The decoder has not consumed the next frame's prelude yet.
    at_frame_start: bool,
    handler: H,
    /// An error met after frames of the same read were decoded: those frames go out
    /// first, the error with the next read or the end of the body.
    pending: Option<ProviderError>,
}

impl<H: EventHandler> EventStreamBody<H> {
    /// Event stream framing around `handler`.
    pub fn new(handler: H) -> Self {
        EventStreamBody {
            buf: BytesMut::new(),
            frames: MessageFrameDecoder::new(),
            at_frame_start: true,
            handler,
            pending: None,
        }
    }

    /// The handler (tests look at its state).
    pub fn handler(&self) -> &H {
        &self.handler
    }

    fn next_message(&mut self) -> Result<Option<Message>, ProviderError> {
        if self.at_frame_start && self.buf.len() >= 4 {
            let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            if !(16..=MAX_FRAME_BYTES).contains(&total) {
                return Err(corrupt(format!("a frame claims {total} bytes")));
            }
        }
        let had_prelude = self.buf.len() >= 12;
        match self.frames.decode_frame(&mut self.buf) {
            Ok(DecodedFrame::Complete(m)) => {
                self.at_frame_start = true;
                Ok(Some(m))
            }
            Ok(DecodedFrame::Incomplete) => {
                if had_prelude {
                    self.at_frame_start = false;
                }
                Ok(None)
            }
            Err(e) => Err(corrupt(e.to_string())),
        }
    }

    fn dispatch(&mut self, m: &Message, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let header = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| match h.value() {
                    HeaderValue::String(s) => Some(s.as_str()),
                    _ => None,
                })
        };
        match header(":message-type").unwrap_or("event") {
            "event" => {
                let ty = header(":event-type").unwrap_or("");
                self.handler.event(ty, m.payload(), out)
            }
            "exception" => Err(stream_exception(
                header(":exception-type").unwrap_or("unknownException"),
                m.payload(),
            )),
            "error" => Err(ProviderError::new(
                ErrorKind::Upstream,
                format!(
                    "the upstream's stream failed: {} {}",
                    header(":error-code").unwrap_or("error"),
                    header(":error-message").unwrap_or("")
                )
                .trim_end()
                .to_owned(),
            )),
            other => {
                tracing::debug!(
                    message_type = other,
                    "ignoring an event stream message of an unknown type"
                );
                Ok(())
            }
        }
    }

    /// Holds `e` back when frames decoded before it are waiting in `out`.
    fn fail(&mut self, e: ProviderError, out: &[Frame]) -> Result<(), ProviderError> {
        if out.is_empty() {
            Err(e)
        } else {
            self.pending = Some(e);
            Ok(())
        }
    }
}

fn corrupt(detail: String) -> ProviderError {
    ProviderError::new(
        ErrorKind::Decode,
        format!("the upstream's event stream is corrupt: {detail}"),
    )
}

impl<H: EventHandler> BodyDecoder for EventStreamBody<H> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let m = match self.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(e, out),
            };
            if let Err(e) = self.dispatch(&m, out) {
                return self.fail(e, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if !self.buf.is_empty() || !self.at_frame_start {
            return Err(corrupt("the body ended inside a frame".to_owned()));
        }
        self.handler.finish(out)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building event streams for tests.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

    /// One `:message-type: event` frame.
    pub fn event(event_type: &str, payload: &str) -> Vec<u8> {
        frame(
            &[
                (":event-type", event_type),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload,
        )
    }

    /// One `:message-type: exception` frame.
    pub fn exception(exception_type: &str, payload: &str) -> Vec<u8> {
        frame(
            &[
                (":exception-type", exception_type),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            payload,
        )
    }

    /// A frame with string headers.
    pub fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        let headers = headers
            .iter()
            .map(|(k, v)| Header::new(k.to_string(), HeaderValue::String(v.to_string().into())))
            .collect();
        let m = Message::new_from_parts(headers, payload.as_bytes().to_vec());
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::testing::{event, exception, frame};
    use super::*;
    use weir_model::StreamEvent;

    /// Records events as `Unknown` stream events named `type:payload`.
    #[derive(Default)]
    struct Echo {
        finished: bool,
    }

    impl EventHandler for Echo {
        fn event(
            &mut self,
            ty: &str,
            payload: &[u8],
            out: &mut Vec<Frame>,
        ) -> Result<(), ProviderError> {
            out.push(Frame::from_events(vec![StreamEvent::Unknown {
                event: format!("{ty}:{}", String::from_utf8_lossy(payload)),
            }]));
            Ok(())
        }
        fn finish(&mut self, _out: &mut Vec<Frame>) -> Result<(), ProviderError> {
            self.finished = true;
            Ok(())
        }
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .flat_map(|f| &f.events)
            .map(|e| match e {
                StreamEvent::Unknown { event } => event.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut body = event("a", r#"{"x":1}"#);
        body.extend(event("b", ""));
        body.extend(frame(
            &[(":message-type", "event"), (":event-type", "c")],
            "{}",
        ));
        for chunk in 1..=body.len() {
            let mut d = EventStreamBody::new(Echo::default());
            let mut out = Vec::new();
            for c in body.chunks(chunk) {
                d.feed(c, &mut out).unwrap();
            }
            d.finish(&mut out).unwrap();
            assert!(d.handler().finished);
            assert_eq!(names(&out), ["a:{\"x\":1}", "b:", "c:{}"], "chunk {chunk}");
        }
    }

    #[test]
    fn corrupt_and_truncated_bodies_are_decode_errors() {
        let mut body = event("a", "{}");
        let n = body.len();
        body[n - 1] ^= 0xff;
        let mut d = EventStreamBody::new(Echo::default());
        let e = d.feed(&body, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Decode);
        assert!(e.message.contains("corrupt"), "{}", e.message);

        let body = event("a", "{}");
        let mut d = EventStreamBody::new(Echo::default());
        let mut out = Vec::new();
        d.feed(&body[..body.len() - 3], &mut out).unwrap();
        let e = d.finish(&mut out).unwrap_err();
        assert!(e.message.contains("ended inside a frame"), "{}", e.message);

        let mut d = EventStreamBody::new(Echo::default());
        let e = d
            .feed(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], &mut Vec::new())
            .unwrap_err();
        assert!(
            e.message.contains("claims 4294967295 bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_exception_after_events_in_the_same_read_comes_after_them() {
        let mut body = event("a", "{}");
        body.extend(exception(
            "throttlingException",
            r#"{"message":"Too many requests"}"#,
        ));
        let mut d = EventStreamBody::new(Echo::default());
        let mut out = Vec::new();
        d.feed(&body, &mut out).unwrap();
        assert_eq!(names(&out), ["a:{}"]);
        let e = d.finish(&mut out).unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
        assert_eq!(e.message, "Too many requests");

        let mut d = EventStreamBody::new(Echo::default());
        let e = d
            .feed(
                &exception("validationException", r#"{"message":"bad"}"#),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }
}
