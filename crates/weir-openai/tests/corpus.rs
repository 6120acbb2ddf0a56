//! Recorded Chat Completions streams from OpenAI and compatible services
//! (`$WEIR_CORPUS/{openai,groq,openrouter}`): the stream decoder's fast path (exact-shape
//! chunks read without a parser) yields the same canonical events as the general serde
//! decoder, chunk by chunk, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_openai::StreamDecoder;
use weir_sse::Event;
use weir_testkit::{assert_fast_path_agrees, corpus_dir, recorded_streams};

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus_dir() else { return };
    let found = recorded_streams(&root, &["openai", "groq", "openrouter"]);
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let text_chunks: usize = found
        .iter()
        .map(|x| {
            String::from_utf8_lossy(&x.body)
                .matches(r#""delta":{"content":""#)
                .count()
        })
        .sum();
    assert!(text_chunks > 0, "no text chunks in {} streams", found.len());
    for x in &found {
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        assert_fast_path_agrees(
            x,
            // A space after the colon defeats every fast path's exact match.
            |ev| Event::new(ev.data().replace(r#""delta":{"#, r#""delta": {"#)),
            |ev| fast.decode(ev),
            |ev| general.decode(ev),
        );
    }
    println!(
        "{} recorded streams, {text_chunks} text chunks",
        found.len()
    );
}
