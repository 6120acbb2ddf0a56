//! Recorded Chat Completions streams from OpenAI and compatible services
//! (`$WEIR_CORPUS/{openai,groq,openrouter}`): the stream decoder's fast path (exact-shape
//! chunks read without a parser) yields the same canonical events as the general serde
//! decoder, chunk by chunk, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use weir_openai::StreamDecoder;
use weir_sse::Event;

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("WEIR_CORPUS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            println!("skipping: WEIR_CORPUS is unset");
            None
        }
    }
}

/// Every recorded response body under `dir` that is a Chat Completions stream.
fn streams(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            streams(&path, out);
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("response.body"))
        {
            let body = std::fs::read(&path).unwrap();
            if body.windows(21).any(|w| w == b"chat.completion.chunk") {
                out.push((path, body));
            }
        }
    }
}

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus() else { return };
    let mut found = Vec::new();
    for dialect in ["openai", "groq", "openrouter"] {
        streams(&root.join(dialect), &mut found);
    }
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let mut text_chunks = 0;
    for (path, body) in &found {
        let mut sse = weir_sse::Decoder::new();
        let mut events = Vec::new();
        sse.feed(body, &mut events).unwrap();
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        for ev in events {
            // A space after the colon defeats every fast path's exact match.
            let slow = Event::new(ev.data().replace(r#""delta":{"#, r#""delta": {"#));
            let is_content = ev.data().contains(r#""delta":{"content":""#);
            let a = fast.decode(ev).map(|f| format!("{:?}", f.events));
            let b = general.decode(slow).map(|f| format!("{:?}", f.events));
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", path.display()),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{}: {a:?} against {b:?}", path.display()),
            }
            text_chunks += usize::from(is_content);
        }
    }
    assert!(text_chunks > 0, "no text chunks in {} streams", found.len());
    println!(
        "{} recorded streams, {text_chunks} text chunks",
        found.len()
    );
}
