//! Helpers shared by the integration tests: building AWS event streams, decoding bodies
//! split anywhere, and checking that a canonical event sequence is well formed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use weir_bedrock::{EventHandler, EventStreamBody};
use weir_model::{Frame, ProviderError, StreamEvent};
use weir_upstream::BodyDecoder;

/// One event stream frame with string headers.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let headers = headers
        .iter()
        .map(|(k, v)| Header::new(k.to_string(), HeaderValue::String(v.to_string().into())))
        .collect();
    let m = Message::new_from_parts(headers, payload.to_vec());
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap();
    out
}

/// `json` with the padding field `p` Bedrock adds; `pad` picks the padding (different
/// paddings give different lengths and CRC bytes).
pub fn padded(json: &str, pad: usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let p: String = (0..1 + pad % 300)
        .map(|i| char::from(LETTERS[(i + pad / 300) % LETTERS.len()]))
        .collect();
    match json.strip_suffix('}') {
        Some(head) if head.len() > 1 => format!(r#"{head},"p":"{p}"}}"#),
        _ => format!(r#"{{"p":"{p}"}}"#),
    }
}

/// A `:message-type: event` frame with a padded JSON payload.
pub fn event_padded(event_type: &str, json: &str, pad: usize) -> Vec<u8> {
    frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        padded(json, pad).as_bytes(),
    )
}

/// An event frame as Bedrock sends it.
pub fn event(event_type: &str, json: &str) -> Vec<u8> {
    event_padded(event_type, json, 7)
}

/// The first frame `make(pad)` whose every byte is ASCII (the padding is varied until
/// the lengths and CRCs happen to be), so it can be served as a `String` body by the test
/// upstream.
pub fn ascii(make: impl Fn(usize) -> Vec<u8>) -> String {
    for pad in 0..300 * 62 {
        let f = make(pad);
        if f.is_ascii() {
            return String::from_utf8(f).unwrap();
        }
    }
    panic!("no ASCII padding found");
}

/// An ASCII event frame (see [`ascii`]).
pub fn ascii_event(event_type: &str, json: &str) -> String {
    ascii(|pad| event_padded(event_type, json, pad))
}

/// An ASCII exception frame (see [`ascii`]).
pub fn ascii_exception(exception_type: &str, json: &str) -> String {
    ascii(|pad| exception(exception_type, &padded(json, pad)))
}

/// An exception frame.
pub fn exception(exception_type: &str, json: &str) -> Vec<u8> {
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json.as_bytes(),
    )
}

/// An InvokeModelWithResponseStream `chunk` frame carrying one Anthropic event.
pub fn chunk(anthropic_event_json: &str) -> Vec<u8> {
    let b64 = aws_smithy_types::base64::encode(anthropic_event_json.as_bytes());
    event("chunk", &format!(r#"{{"bytes":"{b64}"}}"#))
}

/// Decodes a whole body fed in the given pieces.
pub fn decode_pieces<H: EventHandler>(
    handler: H,
    pieces: &[&[u8]],
) -> Result<Vec<Frame>, ProviderError> {
    let mut d = EventStreamBody::new(handler);
    let mut out = Vec::new();
    let mut all = Vec::new();
    for p in pieces {
        d.feed(p, &mut out)?;
        all.append(&mut out);
    }
    d.finish(&mut out)?;
    all.append(&mut out);
    Ok(all)
}

/// A stream's canonical events, one line each, for comparisons.
pub fn lines(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .flat_map(|f| &f.events)
        .map(|e| format!("{e:?}"))
        .collect()
}

/// Checks the canonical sequence: one `MessageStart` first; blocks opened with
/// consecutive indices from 0, each receiving deltas only while open and stopped once;
/// a `MessageDelta` then `MessageStop` last. Errors say where.
pub fn well_formed(frames: &[Frame]) -> Result<(), String> {
    let events: Vec<&StreamEvent> = frames.iter().flat_map(|f| &f.events).collect();
    let mut open: Vec<u32> = Vec::new();
    let mut next = 0u32;
    let mut started = false;
    let mut delta_seen = false;
    let mut stopped = false;
    for (i, e) in events.iter().enumerate() {
        let at = |what: &str| format!("event {i} ({e:?}): {what}");
        if stopped {
            return Err(at("after MessageStop"));
        }
        match e {
            StreamEvent::MessageStart { .. } if started => return Err(at("second MessageStart")),
            StreamEvent::MessageStart { .. } => started = true,
            _ if !started => return Err(at("before MessageStart")),
            StreamEvent::BlockStart { index, .. } => {
                if *index != next {
                    return Err(at(&format!("expected block {next}")));
                }
                next += 1;
                open.push(*index);
            }
            StreamEvent::BlockDelta { index, .. } => {
                if !open.contains(index) {
                    return Err(at("delta for a block that is not open"));
                }
            }
            StreamEvent::BlockStop { index } => {
                if !open.contains(index) {
                    return Err(at("stop for a block that is not open"));
                }
                open.retain(|o| o != index);
            }
            StreamEvent::MessageDelta { .. } => {
                if !open.is_empty() {
                    return Err(at("blocks still open"));
                }
                delta_seen = true;
            }
            StreamEvent::MessageStop => {
                if !delta_seen {
                    return Err(at("MessageStop without MessageDelta"));
                }
                stopped = true;
            }
            StreamEvent::Ping | StreamEvent::Unknown { .. } => {}
            StreamEvent::Error(_) => return Err(at("error event")),
        }
    }
    if !stopped {
        return Err("the stream never reached MessageStop".to_owned());
    }
    Ok(())
}

/// Decodes `body` whole, then split in two at every byte offset, and checks every split
/// gives the same canonical events. Returns the whole decode.
pub fn split_everywhere<H: EventHandler>(make: impl Fn() -> H, body: &[u8]) -> Vec<Frame> {
    let whole = decode_pieces(make(), &[body]).unwrap();
    let expected = lines(&whole);
    for k in 0..=body.len() {
        let (a, b) = body.split_at(k);
        let got = decode_pieces(make(), &[a, b]).unwrap_or_else(|e| panic!("split at {k}: {e}"));
        assert_eq!(lines(&got), expected, "split at {k}");
    }
    whole
}
