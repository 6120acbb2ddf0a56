//! Recorded Chat Completions streams from OpenAI and compatible services
//! (`$WEIR_CORPUS/{openai,groq,openrouter}`): the stream decoder's fast path (exact-shape
//! chunks read without a parser) yields the same canonical events as the general serde
//! decoder, chunk by chunk, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_openai::StreamDecoder;
use weir_sse::Event;
use weir_testkit::{corpus_dir, exchanges, sse_events};

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus_dir() else { return };
    let found: Vec<_> = ["openai", "groq", "openrouter"]
        .into_iter()
        .flat_map(|p| exchanges(&root, p))
        .filter(|x| x.streaming && x.status == 200 && x.content_type.contains("event-stream"))
        .collect();
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let mut text_chunks = 0;
    for x in &found {
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        for ev in sse_events(&x.body) {
            // A space after the colon defeats every fast path's exact match.
            let slow = Event::new(ev.data().replace(r#""delta":{"#, r#""delta": {"#));
            text_chunks += usize::from(ev.data().contains(r#""delta":{"content":""#));
            let a = fast.decode(ev).map(|f| format!("{:?}", f.events));
            let b = general.decode(slow).map(|f| format!("{:?}", f.events));
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", x.name),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{}: {a:?} against {b:?}", x.name),
            }
        }
    }
    assert!(text_chunks > 0, "no text chunks in {} streams", found.len());
    println!(
        "{} recorded streams, {text_chunks} text chunks",
        found.len()
    );
}
