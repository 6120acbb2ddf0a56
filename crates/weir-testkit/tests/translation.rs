//! Cross-dialect stream translation over recorded traffic: every recorded Anthropic stream
//! translated for an OpenAI client and read back says the same thing (text, reasoning,
//! tool calls with their exact ids and arguments, stop reason, usage), and the same for
//! every recorded OpenAI-dialect stream translated for an Anthropic client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_model::Frame;
use weir_testkit::{collect, corpus_dir, exchanges, fixtures_dir, sse_events, Collected};

/// What survives a trip through the other dialect: signatures and cache-write counts have
/// no slot in Chat Completions, stop reasons collapse to OpenAI's coarser set, and text
/// blocks separated only by dropped server-tool blocks merge.
fn comparable(c: &Collected) -> Collected {
    let mut c = c.clone();
    c.text = vec![c.text.concat()];
    c.signatures.clear();
    c.usage = (c.usage.0 + c.usage.3, c.usage.1, c.usage.2, 0);
    if !c.errors.is_empty() {
        // A failed stream ends before OpenAI's usage chunk would come.
        c.usage = (0, 0, 0, 0);
    }
    c.stop_reason = c.stop_reason.map(|r| {
        match r.as_str() {
            "stop_sequence" | "pause_turn" => "end_turn",
            "model_context_window_exceeded" => "max_tokens",
            other => other,
        }
        .to_owned()
    });
    c
}

fn anthropic_frames(body: &[u8]) -> Vec<Frame> {
    let mut d = weir_anthropic::StreamDecoder::new();
    sse_events(body)
        .into_iter()
        .map(|e| d.decode(e).unwrap())
        .collect()
}

fn openai_frames(body: &[u8]) -> Vec<Frame> {
    let mut d = weir_openai::StreamDecoder::new();
    let mut frames: Vec<Frame> = sse_events(body)
        .into_iter()
        .map(|e| d.decode(e).unwrap())
        .collect();
    frames.push(d.finish().unwrap());
    frames
}

fn anthropic_to_openai(frames: &[Frame]) -> Vec<u8> {
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: true,
        created: None,
    });
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out).unwrap();
    }
    out
}

fn openai_to_anthropic(frames: &[Frame]) -> Vec<u8> {
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out).unwrap();
    }
    out
}

/// Every web page an Anthropic stream cites (`citations_delta`) reaches the OpenAI client
/// as a `url_citation` annotation, in order, over a span of the content it was given.
fn check_citations(name: &str, body: &[u8], openai: &[u8]) -> usize {
    let mut cited = Vec::new();
    for ev in weir_testkit::sse_events(body) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(ev.data()) else {
            continue;
        };
        let c = &v["delta"]["citation"];
        if v["delta"]["type"] == "citations_delta" && c["type"] == "web_search_result_location" {
            cited.push(c["url"].as_str().unwrap_or_default().to_owned());
        }
    }
    let (mut chars, mut spans) = (0, Vec::new());
    for ev in weir_testkit::sse_events(openai) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(ev.data()) else {
            continue;
        };
        let delta = &v["choices"][0]["delta"];
        chars += delta["content"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .count();
        for a in delta["annotations"].as_array().into_iter().flatten() {
            let u = &a["url_citation"];
            let (start, end) = (
                u["start_index"].as_u64().unwrap(),
                u["end_index"].as_u64().unwrap(),
            );
            assert!(
                start <= end && end as usize <= chars,
                "{name}: {a} beyond {chars}"
            );
            spans.push(u["url"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(spans, cited, "{name}: citations as annotations");
    cited.len()
}

/// Checks one stream; the number of web pages it cites.
fn check_anthropic_stream(name: &str, body: &[u8]) -> usize {
    let original = collect(&anthropic_frames(body));
    let openai = anthropic_to_openai(&anthropic_frames(body));
    let cited = check_citations(name, body, &openai);
    let translated = openai_frames(&openai);
    let back = collect(&translated);
    assert_eq!(
        comparable(&original),
        comparable(&back),
        "{name}: Anthropic -> OpenAI"
    );
    cited
}

fn check_openai_stream(name: &str, body: &[u8]) {
    let original = collect(&openai_frames(body));
    let translated = anthropic_frames(&openai_to_anthropic(&openai_frames(body)));
    let back = collect(&translated);
    assert_eq!(
        comparable(&original),
        comparable(&back),
        "{name}: OpenAI -> Anthropic"
    );
}

fn streams(root: &std::path::Path, providers: &[&str]) -> Vec<(String, Vec<u8>)> {
    providers
        .iter()
        .flat_map(|p| exchanges(root, p))
        .filter(|x| x.content_type.starts_with("text/event-stream") && x.status == 200)
        .map(|x| (x.name, x.body))
        .collect()
}

#[test]
fn fixture_streams_translate_both_ways() {
    let a = streams(&fixtures_dir(), &["anthropic"]);
    let o = streams(&fixtures_dir(), &["openai"]);
    assert!(!a.is_empty() && !o.is_empty());
    for (name, body) in &a {
        check_anthropic_stream(name, body);
    }
    for (name, body) in &o {
        check_openai_stream(name, body);
    }
}

#[test]
fn corpus_streams_translate_both_ways() {
    let Some(root) = corpus_dir() else { return };
    let a = streams(&root, &["anthropic"]);
    let o = streams(&root, &["openai", "groq", "openrouter"]);
    let mut cited = 0;
    for (name, body) in &a {
        cited += check_anthropic_stream(name, body);
    }
    for (name, body) in &o {
        check_openai_stream(name, body);
    }
    println!(
        "translated {} Anthropic and {} OpenAI-dialect recorded streams ({cited} web pages cited)",
        a.len(),
        o.len()
    );
    assert!(!a.is_empty() && !o.is_empty());
}

#[test]
fn generated_benchmark_inputs_are_valid_and_translate() {
    let req = weir_testkit::claude_code_request(100_000);
    assert!((100_000..110_000).contains(&req.len()), "{}", req.len());
    let canon = weir_anthropic::decode_request(&req).unwrap();
    assert_eq!(canon.tools().len(), 50);
    let again = weir_anthropic::encode_request(&canon, &Default::default()).unwrap();
    weir_testkit::assert_json_eq("claude code request", &req, &again);
    weir_openai::encode_request(&canon, &Default::default()).unwrap();
    check_anthropic_stream("generated", &weir_testkit::anthropic_stream(200));
    check_openai_stream("generated", &weir_testkit::openai_stream(200));
}
