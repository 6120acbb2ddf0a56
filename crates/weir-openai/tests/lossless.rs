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
        // As the recorded client asked: a usage chunk in the recording was asked for.
        let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
            include_usage: true,
            ..Default::default()
        });
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
    let body_json: serde_json::Value = serde_json::from_slice(&x.body).unwrap_or_default();
    if x.status == 200 && body_json.get("choices").is_none() && body_json.get("error").is_some() {
        // An error inside a 200 answer (OpenRouter): an error body, not a completion.
        let err = weir_openai::decode_error(x.status, &x.body);
        assert!(!err.message.is_empty(), "{}: error message", x.name);
        return checked + 1;
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

fn round_trip_request(req: serde_json::Value) {
    let body = req.to_string();
    let canon = weir_openai::decode_request(body.as_bytes()).unwrap();
    let again = weir_openai::encode_request(&canon, &Default::default()).unwrap();
    assert_json_eq("request", body.as_bytes(), &again);
}

fn round_trip_response(resp: serde_json::Value) {
    let body = resp.to_string();
    let canon = weir_openai::decode_response(body.as_bytes()).unwrap();
    let again = weir_openai::encode_response(&canon).unwrap();
    assert_json_eq("response", body.as_bytes(), &again);
}

#[test]
fn deprecated_function_messages_and_both_token_limits_round_trip() {
    round_trip_request(serde_json::json!({
        "model": "gpt-3.5-turbo",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "function_call": {"name": "w", "arguments": "{}"}},
            {"role": "function", "name": "w", "content": "sunny"}
        ],
        "functions": [{"name": "w", "parameters": {"type": "object"}}],
        "max_tokens": 10,
        "max_completion_tokens": 20
    }));
}

#[test]
fn max_completion_tokens_is_the_limit_whichever_comes_first() {
    for body in [
        r#"{"model":"m","messages":[],"max_tokens":100,"max_completion_tokens":50}"#,
        r#"{"model":"m","messages":[],"max_completion_tokens":50,"max_tokens":100}"#,
        r#"{"model":"m","messages":[],"max_tokens":null,"max_completion_tokens":50}"#,
    ] {
        let canon = weir_openai::decode_request(body.as_bytes()).unwrap();
        assert_eq!(canon.max_tokens, Some(50), "{body}");
        assert_eq!(
            canon.max_tokens_field,
            weir_model::MaxTokensField::MaxCompletionTokens,
            "{body}"
        );
        round_trip_request(serde_json::from_str(body).unwrap());
    }
    // A null `max_completion_tokens` leaves `max_tokens` the limit.
    let canon = weir_openai::decode_request(
        br#"{"model":"m","messages":[],"max_tokens":100,"max_completion_tokens":null}"#,
    )
    .unwrap();
    assert_eq!(canon.max_tokens, Some(100));
}

#[test]
fn stream_options_with_other_keys_round_trip_and_still_ask_for_usage() {
    for options in [
        serde_json::json!({"include_usage": true, "include_obfuscation": false}),
        serde_json::json!({"include_obfuscation": false}),
        serde_json::json!({"include_usage": false}),
    ] {
        let req = serde_json::json!({
            "model": "gpt-4o", "stream": true, "stream_options": options,
            "messages": [{"role": "user", "content": "hi"}]
        });
        round_trip_request(req.clone());
        let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
        assert_eq!(
            canon.include_usage,
            options["include_usage"].as_bool(),
            "{options}"
        );
    }
}

#[test]
fn responses_without_choices_or_with_part_arrays_round_trip() {
    round_trip_response(serde_json::json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    }));
    let body = serde_json::json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "magistral",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]}, {"type": "text", "text": "Hi"}]}}]
    });
    round_trip_response(body.clone());
    let canon = weir_openai::decode_response(body.to_string().as_bytes()).unwrap();
    let anthropic: serde_json::Value =
        serde_json::from_slice(&weir_anthropic_like_text(&canon)).unwrap();
    assert_eq!(anthropic, serde_json::json!("Hi"));
    assert!(
        matches!(&canon.content[0], weir_model::ContentBlock::Thinking(t) if t.thinking.as_str() == "hm"),
        "{:?}",
        canon.content
    );
}

/// The text a translation would carry (the canonical text block, after any reasoning).
fn weir_anthropic_like_text(r: &weir_model::ChatResponse) -> Vec<u8> {
    match r.content.as_slice() {
        [weir_model::ContentBlock::Text(t)]
        | [weir_model::ContentBlock::Thinking(_), weir_model::ContentBlock::Text(t)] => {
            t.text.token().as_bytes().to_vec()
        }
        other => panic!("unexpected content {other:?}"),
    }
}

/// xAI counts reasoning apart from `completion_tokens` (its `total_tokens` is prompt,
/// completion and reasoning summed) and bills it as completion: the gateway's output
/// counts it, while an OpenAI client gets xAI's figures back unchanged. OpenAI's own
/// completion includes reasoning: counted once.
#[test]
fn reasoning_outside_the_completion_is_output_and_the_figures_round_trip() {
    let body = |total: u64| {
        serde_json::json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "grok-4",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 6000, "completion_tokens": 300, "total_tokens": total,
                "prompt_tokens_details": {"cached_tokens": 5000},
                "completion_tokens_details": {"reasoning_tokens": 500}}})
    };
    for (total, output) in [(6800, 800), (6300, 300)] {
        let b = body(total);
        let r = weir_openai::decode_response(b.to_string().as_bytes()).unwrap();
        assert_eq!(r.usage.output_tokens, Some(output), "total {total}");
        assert_eq!(r.usage.input_tokens, Some(1000));
        round_trip_response(b);
    }
}

/// OpenRouter says what it charged (`usage.cost`; with the account's own key, the
/// provider's inference is billed apart, in `cost_details.upstream_inference_cost`): that
/// is the request's cost. The figures go back to an OpenAI client as they came.
#[test]
fn openrouters_billed_cost_is_read_and_round_trips() {
    let body = |byok: bool| {
        serde_json::json!({"id": "gen-1", "object": "chat.completion", "created": 1,
            "model": "meta-llama/llama-3.3-70b-instruct", "provider": "Together",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                "cost": 0.0123, "is_byok": byok,
                "cost_details": {"upstream_inference_cost": 0.1, "upstream_inference_prompt_cost": 0.06}}})
    };
    for (byok, billed) in [(false, 0.0123), (true, 0.1123)] {
        let b = body(byok);
        let r = weir_openai::decode_response(b.to_string().as_bytes()).unwrap();
        let got = r.usage.billed_usd.unwrap();
        assert!((got - billed).abs() < 1e-12, "byok {byok}: {got}");
        round_trip_response(b);
    }
    let plain = serde_json::json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    let r = weir_openai::decode_response(plain.to_string().as_bytes()).unwrap();
    assert_eq!(r.usage.billed_usd, None);
}

/// A response holding the upstream's body verbatim (what a provider gives when told the
/// client's dialect) encodes as that body, not as its empty summary; one of the other
/// dialect is refused rather than written empty.
#[test]
fn a_verbatim_response_encodes_as_its_body() {
    let body = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let mut resp = weir_openai::decode_response_summary(body).unwrap();
    assert!(resp.content.is_empty());
    resp.raw = Some(body.to_vec());
    assert_eq!(weir_openai::encode_response(&resp).unwrap(), body);
    resp.origin = Some(weir_model::Dialect::Anthropic);
    assert!(weir_openai::encode_response(&resp).is_err());
}

/// Ids carrying Gemini's signature in LiteLLM's form (`<id>__thought__<signature>`) go to
/// an OpenAI-compatible upstream as they came (a LiteLLM in front of Gemini reads its
/// signature from them), in Weir's own form as the call's own id (the upstream never saw
/// the signature); towards OpenAI's own API, which takes 40 characters at most, they are
/// shortened alike in the call and its result.
#[test]
fn signed_tool_call_ids_pass_as_they_came_unless_the_upstream_limits_them() {
    let sig = "EpwICpkIAXLI2nxlU6gsWZaZ+/HRYkX1orzuM8vSUFwaAt1JRxEC2hJzPAcAu3PWaKz7X+PIyTTqF==";
    let id = format!("call_abc__thought__{sig}");
    let req = serde_json::json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "sunny"}
        ]
    });
    round_trip_request(req.clone());
    let canon = weir_openai::decode_request(req.to_string().as_bytes()).unwrap();
    let opts = weir_openai::EncodeOptions {
        short_tool_ids: true,
        ..Default::default()
    };
    let sent: serde_json::Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &opts).unwrap()).unwrap();
    let call_id = sent["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert!(
        call_id.len() <= 40 && call_id.starts_with("call_abc"),
        "{call_id}"
    );
    assert_eq!(sent["messages"][2]["tool_call_id"], call_id);
    assert!(
        sent["messages"][1].get("reasoning_content").is_none(),
        "{sent}"
    );
    // Weir's own form: the call's own id, to any OpenAI-compatible upstream.
    let ours = format!("call_abc__wsig{}_{sig}", sig.len());
    let text = req.to_string().replace(&id, &ours);
    let canon = weir_openai::decode_request(text.as_bytes()).unwrap();
    let sent: serde_json::Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_abc");
}

/// A client that sent both limits gets both back, the other lowered with the one Weir
/// lowered (a cap, or a model's ceiling the upstream named), never left above it.
#[test]
fn both_limits_are_lowered_together() {
    let body = r#"{"model":"m","messages":[],"max_tokens":128000,"max_completion_tokens":128000}"#;
    let mut canon = weir_openai::decode_request(body.as_bytes()).unwrap();
    canon.max_tokens = Some(16384);
    canon.output_cap = Some(16384);
    let sent: serde_json::Value =
        serde_json::from_slice(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
            .unwrap();
    assert_eq!(
        (&sent["max_tokens"], &sent["max_completion_tokens"]),
        (&serde_json::json!(16384), &serde_json::json!(16384))
    );
    // Unchanged, both go as they came (a smaller other one too).
    let body = r#"{"model":"m","messages":[],"max_tokens":100,"max_completion_tokens":500}"#;
    round_trip_request(serde_json::from_str(body).unwrap());
}
