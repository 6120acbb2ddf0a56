//! Same-dialect losslessness over recorded traffic: every Chat Completions request,
//! response, error and stream decoded and re-encoded gives back JSON equal to the
//! original. OpenAI-compatible services (Groq, OpenRouter, Ollama's /v1, Cerebras) are
//! included: their quirks must survive too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use weir_testkit::{assert_json_eq, corpus_dir, exchanges, fixtures_dir, sse_events, Exchange};

fn is_chat(url: &str) -> bool {
    url.split('?')
        .next()
        .unwrap_or(url)
        .ends_with("/chat/completions")
}

fn check_exchange(x: &Exchange) -> usize {
    let mut checked = 0;
    let url = x.url.as_deref().unwrap_or("");
    if let (Some(req), true) = (&x.request, is_chat(url)) {
        let original = serde_json::to_vec(req).unwrap();
        let canon = weir_openai::decode_request(&original)
            .unwrap_or_else(|e| panic!("{}: request: {e}", x.name));
        let again = weir_openai::encode_request(&canon, &Default::default())
            .unwrap_or_else(|e| panic!("{}: request re-encode: {e}", x.name));
        assert_json_eq(&format!("{} request", x.name), &original, &again);
        checked += 1;
    }
    if x.content_type.starts_with("text/event-stream") {
        let events = sse_events(&x.body);
        let mut dec = weir_openai::StreamDecoder::new();
        let mut enc = weir_openai::StreamEncoder::new(Default::default());
        let mut out = Vec::new();
        for ev in &events {
            let frame = dec
                .decode(ev.clone())
                .unwrap_or_else(|e| panic!("{}: stream event {:?}: {e}", x.name, ev.data()));
            enc.encode(&frame, &mut out).unwrap();
        }
        dec.finish()
            .unwrap_or_else(|e| panic!("{}: stream end: {e}", x.name));
        let again = sse_events(&out);
        assert_eq!(events.len(), again.len(), "{}: event count", x.name);
        for (a, b) in events.iter().zip(&again) {
            assert_eq!(a.event(), b.event(), "{}: event name", x.name);
            if a.data() == "[DONE]" {
                assert_eq!(b.data(), "[DONE]");
                continue;
            }
            assert_json_eq(
                &format!("{} stream event", x.name),
                a.data().as_bytes(),
                b.data().as_bytes(),
            );
        }
        return checked + 1;
    }
    if x.body.first() != Some(&b'{') || !(is_chat(url) || x.url.is_none()) {
        return checked;
    }
    if x.status == 200 {
        let canon = weir_openai::decode_response(&x.body)
            .unwrap_or_else(|e| panic!("{}: response: {e}", x.name));
        let again = weir_openai::encode_response(&canon).unwrap();
        assert_json_eq(&format!("{} response", x.name), &x.body, &again);
        checked += 1;
    } else if x.status >= 400 {
        let err = weir_openai::decode_error(x.status, &x.body);
        let (status, again) = weir_openai::encode_error(&err);
        assert_eq!(status, x.status, "{}: error status", x.name);
        let original: serde_json::Value = serde_json::from_slice(&x.body).unwrap();
        if original["error"].is_object() && original.as_object().unwrap().len() == 1 {
            assert_json_eq(&format!("{} error", x.name), &x.body, &again);
        }
        checked += 1;
    }
    checked
}

fn check_dir(root: &Path, providers: &[&str]) -> usize {
    providers
        .iter()
        .flat_map(|p| exchanges(root, p))
        .map(|x| check_exchange(&x))
        .sum()
}

#[test]
fn fixtures_round_trip_losslessly() {
    let n = check_dir(&fixtures_dir(), &["openai"]);
    assert!(n > 0, "no OpenAI fixtures were checked");
}

#[test]
fn corpus_round_trips_losslessly() {
    let Some(root) = corpus_dir() else { return };
    let n = check_dir(&root, &["openai", "groq", "openrouter", "ollama"]);
    println!("checked {n} recorded OpenAI-dialect bodies and streams");
    assert!(n > 0);
}
