use std::fmt;

use memchr::{memchr, memchr2, memchr_iter};

use crate::event::Event;

/// Why an event or comment cannot be written as server-sent events.
///
/// Each case is a value that a decoder would read back differently, so the
/// encoder refuses it rather than send something else than was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event name contains CR or LF, which would end its line early.
    LineBreakInEventName,
    /// The id contains CR or LF, which would end its line early.
    LineBreakInId,
    /// The id contains NUL: decoders ignore such an `id:` field.
    NulInId,
    /// The data contains CR. Decoders turn CR, CRLF and LF alike into `'\n'`,
    /// so data holding CR cannot survive the trip; data a decoder produced
    /// never holds one.
    CarriageReturnInData,
    /// The comment contains CR or LF, which would end it early.
    LineBreakInComment,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::LineBreakInEventName => "server-sent event name contains a line break",
            EncodeError::LineBreakInId => "server-sent event id contains a line break",
            EncodeError::NulInId => "server-sent event id contains NUL",
            EncodeError::CarriageReturnInData => {
                "server-sent event data contains a carriage return"
            }
            EncodeError::LineBreakInComment => "server-sent events comment contains a line break",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Appends the wire form of `event` to `out`.
///
/// Writes `event: NAME` (only if the event has a name), `id: ID` (only if it
/// has an id), `retry: MS` (only if it has a retry time), one `data: LINE` per
/// `'\n'`-separated line of data, then the blank line that dispatches it.
/// Every field is written with exactly one space after the colon, which a
/// decoder strips, so values starting with a space survive. Empty data is
/// written as a single `data: ` line, which decodes to an event with empty
/// data.
///
/// Every event a [`Decoder`](crate::Decoder) produces is accepted, and
/// decoding the output gives it back. Values that cannot round-trip are
/// rejected and nothing is written: see [`EncodeError`].
pub fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let name = event.event().map(str::as_bytes);
    let id = event.id().map(str::as_bytes);
    let data = event.data().as_bytes();
    if name.is_some_and(has_line_break) {
        return Err(EncodeError::LineBreakInEventName);
    }
    if let Some(id) = id {
        if has_line_break(id) {
            return Err(EncodeError::LineBreakInId);
        }
        if memchr(0, id).is_some() {
            return Err(EncodeError::NulInId);
        }
    }
    if memchr(b'\r', data).is_some() {
        return Err(EncodeError::CarriageReturnInData);
    }

    out.reserve(data.len() + 16);
    if let Some(name) = name {
        field(out, b"event: ", name);
    }
    if let Some(id) = id {
        field(out, b"id: ", id);
    }
    if let Some(ms) = event.retry() {
        field(out, b"retry: ", decimal(ms, &mut [0; 20]));
    }
    let mut start = 0;
    for end in memchr_iter(b'\n', data) {
        field(out, b"data: ", &data[start..end]);
        start = end + 1;
    }
    field(out, b"data: ", &data[start..]);
    out.push(b'\n');
    Ok(())
}

/// Appends a comment line followed by a blank line (`: TEXT\n\n`), the usual
/// keep-alive. Decoders ignore both lines; the blank line makes proxies that
/// buffer whole events pass the keep-alive on at once.
///
/// Write comments only between events: a blank line in the middle of an
/// event would end it.
pub fn encode_comment(text: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if has_line_break(text.as_bytes()) {
        return Err(EncodeError::LineBreakInComment);
    }
    if text.is_empty() {
        out.extend_from_slice(b":\n\n");
    } else {
        out.extend_from_slice(b": ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    Ok(())
}

fn field(out: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn has_line_break(bytes: &[u8]) -> bool {
    memchr2(b'\n', b'\r', bytes).is_some()
}

/// Formats `n` in base ten into `buffer`, returning the digits.
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoder;

    fn encoded(event: &Event) -> String {
        let mut out = Vec::new();
        encode(event, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn decode(bytes: &[u8]) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        decoder.feed(bytes, &mut events).unwrap();
        assert!(!decoder.finish());
        events
    }

    #[test]
    fn writes_only_present_fields() {
        assert_eq!(encoded(&Event::new("hi")), "data: hi\n\n");
        assert_eq!(
            encoded(
                &Event::new("hi")
                    .with_event("ping")
                    .with_id("7")
                    .with_retry(1500)
            ),
            "event: ping\nid: 7\nretry: 1500\ndata: hi\n\n"
        );
    }

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        assert_eq!(
            encoded(&Event::new("a\n\nb\n")),
            "data: a\ndata: \ndata: b\ndata: \n\n"
        );
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        let event = Event::new("");
        assert_eq!(encoded(&event), "data: \n\n");
        assert_eq!(decode(encoded(&event).as_bytes()), [event]);
    }

    #[test]
    fn leading_spaces_and_colons_survive() {
        let event = Event::new("  :x: ").with_event(" a:b").with_id(" 1");
        assert_eq!(decode(encoded(&event).as_bytes()), [event]);
    }

    #[test]
    fn retry_extremes() {
        assert_eq!(
            encoded(&Event::new("").with_retry(0)),
            "retry: 0\ndata: \n\n"
        );
        let max = Event::new("").with_retry(u64::MAX);
        assert_eq!(encoded(&max), "retry: 18446744073709551615\ndata: \n\n");
        assert_eq!(decode(encoded(&max).as_bytes()), [max]);
    }

    #[test]
    fn empty_event_name_is_the_default_type() {
        let event = Event::new("x").with_event("");
        assert_eq!(event.event(), None);
        assert_eq!(encoded(&event), "data: x\n\n");
    }

    #[test]
    fn rejects_line_breaks_in_event_name() {
        let mut out = Vec::new();
        for name in ["a\nb", "a\rb", "\r\n"] {
            let event = Event::new("x").with_event(name);
            assert_eq!(
                encode(&event, &mut out),
                Err(EncodeError::LineBreakInEventName)
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_line_breaks_in_id() {
        let mut out = Vec::new();
        for id in ["1\n", "\r1"] {
            let event = Event::new("x").with_id(id);
            assert_eq!(encode(&event, &mut out), Err(EncodeError::LineBreakInId));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_nul_in_id() {
        let mut out = Vec::new();
        let event = Event::new("x").with_id("a\0b");
        assert_eq!(encode(&event, &mut out), Err(EncodeError::NulInId));
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_carriage_return_in_data() {
        let mut out = Vec::new();
        for data in ["a\rb", "a\r\nb", "\r"] {
            let event = Event::new(data);
            assert_eq!(
                encode(&event, &mut out),
                Err(EncodeError::CarriageReturnInData)
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn nul_in_name_and_data_is_fine() {
        let event = Event::new("a\0b").with_event("n\0");
        assert_eq!(decode(encoded(&event).as_bytes()), [event]);
    }

    #[test]
    fn comments() {
        let mut out = Vec::new();
        encode_comment("keep-alive", &mut out).unwrap();
        encode_comment("", &mut out).unwrap();
        assert_eq!(out, b": keep-alive\n\n:\n\n");
        assert!(decode(&out).is_empty());
        for text in ["a\nb", "a\r"] {
            assert_eq!(
                encode_comment(text, &mut out),
                Err(EncodeError::LineBreakInComment)
            );
        }
        assert_eq!(out, b": keep-alive\n\n:\n\n");
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            EncodeError::NulInId.to_string(),
            "server-sent event id contains NUL"
        );
    }
}
