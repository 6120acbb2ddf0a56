//! Property tests: the decoder never panics and does not care how its input is
//! chunked; whatever the encoder accepts decodes back exactly.

// Helpers outside #[test] functions panic on purpose too (clippy.toml only
// covers the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{decode_chunks, decode_whole};
use proptest::prelude::*;
use proptest::sample::Index;
use weir_sse::{encode, Event, Limits};

/// Bytes that look enough like an event stream for the interesting paths
/// (field names, colons, every line ending, BOMs, NULs, multi-byte and
/// invalid UTF-8) to come up often, mixed with arbitrary bytes.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => prop::sample::select(vec![
            &b"data"[..], b"event", b"id", b"retry", b":", b": ", b" ", b"\n", b"\r",
            b"\r\n", b"\n\n", b"\0", b"\xEF\xBB\xBF", b"\xEF", b"\xC3\xA9", b"\xFF",
            b"123", b"x", b"data: ", b"event: ", b"id: ", b"retry: ",
        ])
        .prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        4 => prop::collection::vec(token, 0..64).prop_map(|tokens| tokens.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Cuts `bytes` at the given points (sorted, duplicates allowed).
fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    offsets.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for offset in offsets {
        chunks.push(bytes[start..offset].to_vec());
        start = offset;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

/// Strings rich in characters that matter on the wire.
fn text(exclude: &'static [char]) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        any::<char>(),
        prop::sample::select(vec![
            '\n',
            '\r',
            ' ',
            ':',
            '\0',
            '\u{FEFF}',
            'a',
            '\u{e9}',
            '\u{1F600}'
        ]),
    ];
    prop::collection::vec(ch, 0..24)
        .prop_map(move |chars| chars.into_iter().filter(|c| !exclude.contains(c)).collect())
}

/// Events the encoder accepts.
fn event() -> impl Strategy<Value = Event> {
    (
        text(&['\r']),
        prop::option::of(text(&['\r', '\n'])),
        prop::option::of(text(&['\r', '\n', '\0'])),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(data, name, id, retry)| {
            let mut event = Event::new(data);
            if let Some(name) = name {
                event = event.with_event(name);
            }
            if let Some(id) = id {
                event = event.with_id(id);
            }
            if let Some(ms) = retry {
                event = event.with_retry(ms);
            }
            event
        })
}

proptest! {
    #[test]
    fn chunking_never_changes_the_outcome(
        bytes in stream_bytes(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let chunks = split(&bytes, &cuts);
        let chunked = decode_chunks(Limits::default(), chunks.iter().map(Vec::as_slice));
        prop_assert_eq!(chunked, decode_whole(&bytes));
    }

    #[test]
    fn chunking_never_changes_errors(
        bytes in stream_bytes(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        max_line_bytes in 0usize..24,
        max_event_bytes in 0usize..24,
    ) {
        let limits = Limits { max_line_bytes, max_event_bytes };
        let chunks = split(&bytes, &cuts);
        let chunked = decode_chunks(limits, chunks.iter().map(Vec::as_slice));
        prop_assert_eq!(chunked, decode_chunks(limits, [bytes.as_slice()]));
    }

    #[test]
    fn accepted_events_round_trip(event in event()) {
        let mut wire = Vec::new();
        encode(&event, &mut wire).unwrap();
        let outcome = decode_whole(&wire);
        prop_assert_eq!(outcome.error, None);
        prop_assert!(!outcome.truncated);
        prop_assert_eq!(outcome.events, vec![event]);
    }

    #[test]
    fn accepted_event_sequences_round_trip(
        mut events in prop::collection::vec(event(), 0..6),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        // A stream's id persists until changed, so a decoder never yields an
        // event without an id after one with an id: give such events the id
        // they would have had.
        let mut id: Option<String> = None;
        for event in &mut events {
            match event.id() {
                Some(own) => id = Some(own.to_owned()),
                None => if let Some(id) = &id {
                    *event = event.clone().with_id(id.clone());
                },
            }
        }
        let mut wire = Vec::new();
        for event in &events {
            encode(event, &mut wire).unwrap();
        }
        let chunks = split(&wire, &cuts);
        let outcome = decode_chunks(Limits::default(), chunks.iter().map(Vec::as_slice));
        prop_assert_eq!(outcome.error, None);
        prop_assert!(!outcome.truncated);
        prop_assert_eq!(outcome.events, events);
    }
}
