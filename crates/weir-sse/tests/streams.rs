//! Realistic streams: chunking invariance and encode/decode round trips, on
//! the streams in `tests/data` and, when `WEIR_CORPUS` names it, on the
//! recorded provider exchanges of the external corpus.

// Helpers outside #[test] functions panic on purpose too (clippy.toml only
// covers the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{check_chunking, check_round_trip, decode_whole};
use weir_sse::Event;

fn data_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

const DATA_FILES: [&str; 6] = [
    "anthropic_messages.sse",
    "anthropic_messages_crlf.sse",
    "anthropic_error.sse",
    "openai_chat.sse",
    "openrouter_chat.sse",
    "edge_cases.sse",
];

#[test]
fn data_files_are_chunking_invariant_and_round_trip() {
    for name in DATA_FILES {
        let bytes = data_file(name);
        let outcome = check_chunking(name, &bytes);
        assert_eq!(outcome.error, None, "{name}");
        assert!(!outcome.truncated, "{name} ends mid-event");
        assert!(!outcome.events.is_empty(), "{name}");
        check_round_trip(name, &outcome.events);
    }
}

#[test]
fn anthropic_stream() {
    let events = decode_whole(&data_file("anthropic_messages.sse")).events;
    assert_eq!(events.len(), 24);
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(types[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(types.iter().filter(|t| **t == "ping").count(), 2);
    assert_eq!(types.last(), Some(&"message_stop"));
    assert_eq!(
        events[2],
        Event::new(r#"{"type": "ping"}"#).with_event("ping")
    );
    // Padding after the JSON is part of the data.
    assert!(
        events[4].data().ends_with("}}   "),
        "{:?}",
        events[4].data()
    );
    assert!(events
        .iter()
        .all(|e| e.id().is_none() && e.retry().is_none()));
}

#[test]
fn crlf_variant_decodes_like_lf() {
    let lf = decode_whole(&data_file("anthropic_messages.sse"));
    let crlf = decode_whole(&data_file("anthropic_messages_crlf.sse"));
    assert_eq!(lf, crlf);
}

#[test]
fn anthropic_error_stream() {
    let events = decode_whole(&data_file("anthropic_error.sse")).events;
    let last = events.last().unwrap();
    assert_eq!(last.event(), Some("error"));
    assert!(last.data().contains("overloaded_error"));
}

#[test]
fn openai_stream() {
    let events = decode_whole(&data_file("openai_chat.sse")).events;
    assert_eq!(events.len(), 20);
    assert!(events
        .iter()
        .all(|e| e.event().is_none() && e.event_type() == "message"));
    assert_eq!(events.last(), Some(&Event::new("[DONE]")));
    assert!(events[10].data().contains("Ça va 😀"));
}

#[test]
fn openrouter_comments_are_skipped() {
    let events = decode_whole(&data_file("openrouter_chat.sse")).events;
    assert_eq!(events.len(), 8);
    assert!(events.iter().all(|e| !e.data().contains("OPENROUTER")));
    assert_eq!(events.last(), Some(&Event::new("[DONE]")));
}

#[test]
fn edge_case_stream() {
    let outcome = decode_whole(&data_file("edge_cases.sse"));
    assert_eq!(
        outcome.events,
        [
            Event::new("hello\nworld\n two spaces")
                .with_event("greeting")
                .with_id("1")
                .with_retry(3000),
            Event::new("").with_id("1"),
            Event::new("id cleared").with_id(""),
            Event::new("caf\u{e9} \u{2713} \u{1F600} bad:\u{FFFD}\u{FFFD}").with_id(""),
            Event::new("{\"k\": \"v\"}   ").with_id("2").with_retry(500),
        ]
    );
    assert_eq!(outcome.last_event_id.as_deref(), Some("2"));
    assert_eq!(outcome.retry, Some(500));
    assert!(!outcome.truncated);
}

/// One recorded SSE response body from the corpus.
struct CorpusStream {
    name: String,
    body: PathBuf,
}

/// The corpus's streamed `text/event-stream` responses:
/// `<root>/<provider>/<case>/NN.response.json` with `"streaming": true`.
fn corpus_streams(root: &Path) -> Vec<CorpusStream> {
    let mut streams = Vec::new();
    for provider in sorted_dirs(root) {
        for case in sorted_dirs(&provider) {
            let mut files: Vec<PathBuf> = fs::read_dir(&case)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.ends_with(".response.json"))
                })
                .collect();
            files.sort();
            for meta_path in files {
                let meta: serde_json::Value =
                    serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
                if meta["streaming"] != true || !is_event_stream(&meta["headers"]) {
                    continue;
                }
                let body_file = meta["body_file"].as_str().unwrap();
                streams.push(CorpusStream {
                    name: meta_path.strip_prefix(root).unwrap().display().to_string(),
                    body: case.join(body_file),
                });
            }
        }
    }
    streams
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn is_event_stream(headers: &serde_json::Value) -> bool {
    let Some(headers) = headers.as_object() else {
        return false;
    };
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .filter_map(|(_, values)| values.as_array())
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .any(|value| value.to_ascii_lowercase().contains("text/event-stream"))
}

#[test]
fn corpus_streams_are_chunking_invariant_and_round_trip() {
    let Some(root) = std::env::var_os("WEIR_CORPUS") else {
        eprintln!("skipping corpus check: WEIR_CORPUS unset (point it at the recorded corpus)");
        return;
    };
    let streams = corpus_streams(Path::new(&root));
    assert!(!streams.is_empty(), "no SSE streams under {root:?}");
    let mut events = 0;
    for stream in &streams {
        let bytes = fs::read(&stream.body)
            .unwrap_or_else(|e| panic!("reading {}: {e}", stream.body.display()));
        let outcome = check_chunking(&stream.name, &bytes);
        assert_eq!(outcome.error, None, "{}", stream.name);
        assert!(!outcome.events.is_empty(), "{}: no events", stream.name);
        check_round_trip(&stream.name, &outcome.events);
        events += outcome.events.len();
    }
    eprintln!(
        "corpus: checked {} SSE streams, {events} events",
        streams.len()
    );
}
