//! Recorded Messages streams (`$WEIR_CORPUS/anthropic`): every event decodes, and the
//! decoder's fast paths (exact-shape events read without a parser) yield the same canonical
//! events as the general serde decoder, event by event, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_anthropic::StreamDecoder;
use weir_sse::Event;
use weir_testkit::{assert_fast_path_agrees, corpus_dir, recorded_streams};

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus_dir() else { return };
    let found = recorded_streams(&root, &["anthropic"]);
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let mut seen = 0;
    for x in &found {
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        seen += assert_fast_path_agrees(
            x,
            |ev| {
                // A space after the first key defeats every fast path's exact match.
                let data = ev.data().replacen(r#"{"type":"#, r#"{"type": "#, 1);
                match ev.event() {
                    Some(name) => Event::new(data).with_event(name),
                    None => Event::new(data),
                }
            },
            // Every recorded event decodes.
            |ev| Ok(fast.decode(ev).unwrap()),
            |ev| general.decode(ev),
        );
    }
    println!("{} recorded streams, {seen} events", found.len());
}
