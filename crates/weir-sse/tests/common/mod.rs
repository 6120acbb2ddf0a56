//! Helpers shared by the integration tests.

#![allow(dead_code)]

use weir_sse::{encode, Decoder, Event, Limits, SseError};

/// Everything observable about decoding one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub error: Option<SseError>,
    pub last_event_id: Option<String>,
    pub retry: Option<u64>,
    pub truncated: bool,
}

/// Decodes a stream delivered as `chunks`, stopping at the first error.
pub fn decode_chunks<'a>(limits: Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = Decoder::with_limits(limits);
    let mut events = Vec::new();
    let mut error = None;
    for chunk in chunks {
        if let Err(e) = decoder.feed(chunk, &mut events) {
            error = Some(e);
            break;
        }
    }
    Outcome {
        events,
        error,
        last_event_id: decoder.last_event_id().map(str::to_owned),
        retry: decoder.retry(),
        truncated: decoder.finish(),
    }
}

pub fn decode_whole(bytes: &[u8]) -> Outcome {
    decode_chunks(Limits::default(), [bytes])
}

/// Streams up to this size are split at every offset by brute force; longer
/// ones would take quadratic time, so they go through `check_windows`.
const BRUTE_FORCE_MAX: usize = 8 * 1024;

/// Checks that decoding `bytes` whole, one byte at a time, and split in two at
/// every offset all give the same outcome. Returns the whole-stream outcome.
pub fn check_chunking(name: &str, bytes: &[u8]) -> Outcome {
    let whole = decode_whole(bytes);
    let bytewise = decode_chunks(Limits::default(), bytes.chunks(1));
    assert_eq!(bytewise, whole, "{name}: fed one byte at a time");
    if bytes.len() <= BRUTE_FORCE_MAX {
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            let split_outcome = decode_chunks(Limits::default(), [a, b]);
            assert_eq!(split_outcome, whole, "{name}: split at byte {split}");
        }
    } else {
        check_windows(name, bytes, &whole);
    }
    whole
}

/// Every-offset check in near-linear time for long streams.
///
/// Splitting at offset `k` means feeding `bytes[..k]` then `bytes[k..]`. The
/// stream is cut into windows that end at event boundaries (blank lines), and
/// the decoder is cloned at each window start, reached by feeding the windows
/// one by one (itself checked against the whole-stream result). For every `k`
/// inside a window, a clone is fed `window[..k]` then `window[k..]`; it must
/// emit the window's events and end in the state the next window starts from.
/// The decoder being deterministic, that is the two-chunk split at `k`
/// without re-decoding the rest of the stream each time.
fn check_windows(name: &str, bytes: &[u8], whole: &Outcome) {
    assert_eq!(
        whole.error, None,
        "{name}: windowed check needs a stream that decodes"
    );
    let mut starts = vec![0];
    for end in 2..=bytes.len() {
        if matches!(
            &bytes[..end],
            [.., b'\n', b'\n'] | [.., b'\n', b'\r', b'\n'] | [.., b'\r', b'\r']
        ) {
            starts.push(end);
        }
    }
    if starts.last() != Some(&bytes.len()) {
        starts.push(bytes.len());
    }

    let long_lines = long_lines(bytes);
    let mut decoder = Decoder::new();
    let mut snapshots = vec![decoder.clone()];
    let mut window_events = Vec::new();
    for pair in starts.windows(2) {
        let mut events = Vec::new();
        decoder
            .feed(&bytes[pair[0]..pair[1]], &mut events)
            .expect("whole-stream decoding succeeded, so windows must too");
        window_events.push(events);
        snapshots.push(decoder.clone());
    }
    let all: Vec<Event> = window_events.iter().flatten().cloned().collect();
    assert_eq!(all, whole.events, "{name}: fed window by window");

    for (w, pair) in starts.windows(2).enumerate() {
        let window = &bytes[pair[0]..pair[1]];
        let next = &snapshots[w + 1];
        for split in 0..window.len() {
            let at = pair[0] + split;
            if !worth_splitting(bytes, &long_lines, at) {
                continue;
            }
            let mut decoder = snapshots[w].clone();
            let mut events = Vec::new();
            decoder.feed(&window[..split], &mut events).unwrap();
            decoder.feed(&window[split..], &mut events).unwrap();
            assert_eq!(events, window_events[w], "{name}: split at byte {at}");
            assert_eq!(
                decoder.last_event_id(),
                next.last_event_id(),
                "{name}: {at}"
            );
            assert_eq!(decoder.retry(), next.retry(), "{name}: {at}");
            // `Debug` shows every field, but formatting it for every offset
            // would dominate the run time: sample.
            if split % 61 == 0 {
                assert_eq!(
                    format!("{decoder:?}"),
                    format!("{next:?}"),
                    "{name}: state at {at}"
                );
            }
        }
    }
}

/// Lines longer than this get sampled split points in debug builds.
const LONG_LINE: usize = 2048;
/// How many bytes at either end of a long line are always split at.
const LONG_LINE_EDGE: usize = 256;

/// The `(start, end)` byte ranges of the lines longer than [`LONG_LINE`].
fn long_lines(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (end, _) in bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, b'\n' | b'\r'))
    {
        if end - start > LONG_LINE {
            lines.push((start, end));
        }
        start = end + 1;
    }
    if bytes.len() - start > LONG_LINE {
        lines.push((start, bytes.len()));
    }
    lines
}

/// Whether the split at `at` is checked.
///
/// Splitting inside a line costs time proportional to the line's length, so
/// every offset of a 40 KB line costs 40 KB squared, which unoptimised
/// builds (where `memchr` runs unvectorised) take minutes over. Debug builds
/// therefore split the middle of long lines only at every 61st byte and at
/// every non-ASCII byte (where a UTF-8 sequence may be cut); the first and
/// last [`LONG_LINE_EDGE`] bytes of every line, and everything in shorter
/// lines, are always split at. Release builds (`cargo test --release`) split
/// at every offset.
fn worth_splitting(bytes: &[u8], long_lines: &[(usize, usize)], at: usize) -> bool {
    if !cfg!(debug_assertions) {
        return true;
    }
    let index = long_lines.partition_point(|&(start, _)| start <= at);
    let Some(&(start, end)) = index.checked_sub(1).and_then(|i| long_lines.get(i)) else {
        return true;
    };
    at > end
        || at < start + LONG_LINE_EDGE
        || at + LONG_LINE_EDGE > end
        || at.is_multiple_of(61)
        || !bytes[at].is_ascii()
        || bytes.get(at.wrapping_sub(1)).is_some_and(|b| !b.is_ascii())
}

/// Checks that encoding `events` and decoding the result gives them back.
pub fn check_round_trip(name: &str, events: &[Event]) {
    let mut wire = Vec::new();
    for event in events {
        encode(event, &mut wire).unwrap_or_else(|e| panic!("{name}: encoding {event:?}: {e}"));
    }
    let again = decode_whole(&wire);
    assert_eq!(again.error, None, "{name}: re-decoding");
    assert!(!again.truncated, "{name}: re-decoded stream ends mid-event");
    assert_eq!(again.events, events, "{name}: round trip");
}
