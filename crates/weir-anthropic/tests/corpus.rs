//! Recorded Messages streams (`$WEIR_CORPUS/anthropic`): every event decodes, and the
//! decoder's fast paths (exact-shape events read without a parser) yield the same canonical
//! events as the general serde decoder, event by event, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use weir_anthropic::StreamDecoder;
use weir_sse::Event;

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("WEIR_CORPUS") {
        Some(p) => Some(PathBuf::from(p).join("anthropic")),
        None => {
            println!("skipping: WEIR_CORPUS is unset");
            None
        }
    }
}

/// Every recorded response body under `dir` that is a Messages stream.
fn streams(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.is_dir() {
            streams(&path, out);
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("response.body"))
        {
            let body = std::fs::read(&path).unwrap();
            if body.windows(20).any(|w| w == b"event: message_start") {
                out.push((path, body));
            }
        }
    }
}

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus() else { return };
    let mut found = Vec::new();
    streams(&root, &mut found);
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let mut events_seen = 0;
    for (path, body) in &found {
        let mut sse = weir_sse::Decoder::new();
        let mut events = Vec::new();
        sse.feed(body, &mut events).unwrap();
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        for ev in events {
            // A space after the first key defeats every fast path's exact match.
            let data = ev.data().replacen(r#"{"type":"#, r#"{"type": "#, 1);
            let slow = match ev.event() {
                Some(name) => Event::new(data).with_event(name),
                None => Event::new(data),
            };
            let a = fast.decode(ev).map(|f| format!("{:?}", f.events));
            let b = general.decode(slow).map(|f| format!("{:?}", f.events));
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", path.display()),
                (a, b) => panic!("{}: {a:?} against {b:?}", path.display()),
            }
            events_seen += 1;
        }
    }
    println!("{} recorded streams, {events_seen} events", found.len());
}
