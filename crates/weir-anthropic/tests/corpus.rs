//! Recorded Messages streams (`$WEIR_CORPUS/anthropic`): every event decodes, and the
//! decoder's fast paths (exact-shape events read without a parser) yield the same canonical
//! events as the general serde decoder, event by event, on real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_anthropic::StreamDecoder;
use weir_sse::Event;
use weir_testkit::{corpus_dir, exchanges, sse_events};

#[test]
fn recorded_streams_decode_the_same_on_the_fast_path_and_the_general_one() {
    let Some(root) = corpus_dir() else { return };
    let found: Vec<_> = exchanges(&root, "anthropic")
        .into_iter()
        .filter(|x| x.streaming && x.status == 200 && x.content_type.contains("event-stream"))
        .collect();
    assert!(
        !found.is_empty(),
        "no recorded streams under {}",
        root.display()
    );
    let mut seen = 0;
    for x in &found {
        let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
        for ev in sse_events(&x.body) {
            // A space after the first key defeats every fast path's exact match.
            let data = ev.data().replacen(r#"{"type":"#, r#"{"type": "#, 1);
            let slow = match ev.event() {
                Some(name) => Event::new(data).with_event(name),
                None => Event::new(data),
            };
            let a = fast.decode(ev).map(|f| format!("{:?}", f.events));
            let b = general.decode(slow).map(|f| format!("{:?}", f.events));
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", x.name),
                (a, b) => panic!("{}: {a:?} against {b:?}", x.name),
            }
            seen += 1;
        }
    }
    println!("{} recorded streams, {seen} events", found.len());
}
