//! Same-dialect losslessness over recorded traffic: every Anthropic request, response,
//! error and stream decoded and re-encoded gives back JSON equal to the original.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use weir_testkit::{assert_json_eq, corpus_dir, exchanges, fixtures_dir, sse_events, Exchange};

fn is_messages(url: &str) -> bool {
    let path = url.split('?').next().unwrap_or(url);
    path.ends_with("/v1/messages")
        || path.ends_with(":rawPredict")
        || path.ends_with(":streamRawPredict")
}

fn check_exchange(x: &Exchange) -> usize {
    let mut checked = 0;
    let url = x.url.as_deref().unwrap_or("");
    if let (Some(req), true) = (&x.request, is_messages(url)) {
        if req.get("messages").is_some() && req.get("model").is_some() {
            let original = serde_json::to_vec(req).unwrap();
            let canon = weir_anthropic::decode_request(&original)
                .unwrap_or_else(|e| panic!("{}: request: {e}", x.name));
            let again = weir_anthropic::encode_request(&canon, &Default::default())
                .unwrap_or_else(|e| panic!("{}: request re-encode: {e}", x.name));
            assert_json_eq(&format!("{} request", x.name), &original, &again);
            checked += 1;
        }
    }
    if x.streaming || x.content_type.starts_with("text/event-stream") {
        let events = sse_events(&x.body);
        let mut dec = weir_anthropic::StreamDecoder::new();
        let mut enc = weir_anthropic::StreamEncoder::new();
        let mut out = Vec::new();
        for ev in &events {
            let frame = dec
                .decode(ev.clone())
                .unwrap_or_else(|e| panic!("{}: stream event {:?}: {e}", x.name, ev.data()));
            enc.encode(&frame, &mut out).unwrap();
        }
        let again = sse_events(&out);
        assert_eq!(events.len(), again.len(), "{}: event count", x.name);
        for (a, b) in events.iter().zip(&again) {
            assert_eq!(a.event(), b.event(), "{}: event name", x.name);
            assert_json_eq(
                &format!("{} stream event", x.name),
                a.data().as_bytes(),
                b.data().as_bytes(),
            );
        }
        return checked + 1;
    }
    if x.body.first() != Some(&b'{') || !is_messages(url) {
        return checked;
    }
    if x.status == 200 {
        let canon = weir_anthropic::decode_response(&x.body)
            .unwrap_or_else(|e| panic!("{}: response: {e}", x.name));
        let again = weir_anthropic::encode_response(&canon).unwrap();
        assert_json_eq(&format!("{} response", x.name), &x.body, &again);
        // The summary (what the gateway reads of a body it forwards verbatim) agrees.
        let summary = weir_anthropic::decode_response_summary(&x.body)
            .unwrap_or_else(|e| panic!("{}: summary: {e}", x.name));
        assert_eq!(
            (
                &summary.id,
                &summary.model,
                &summary.stop_reason,
                &summary.stop_sequence
            ),
            (
                &canon.id,
                &canon.model,
                &canon.stop_reason,
                &canon.stop_sequence
            ),
            "{}: summary",
            x.name
        );
        assert_eq!(
            format!("{:?}", summary.usage),
            format!("{:?}", canon.usage),
            "{}: summary usage",
            x.name
        );
        checked += 1;
    } else if x.status >= 400 {
        let original: serde_json::Value = serde_json::from_slice(&x.body).unwrap();
        let err = weir_anthropic::decode_error(x.status, &x.body);
        let (status, again) = weir_anthropic::encode_error(&err, original["request_id"].as_str());
        assert_eq!(status, x.status, "{}: error status", x.name);
        assert_json_eq(&format!("{} error", x.name), &x.body, &again);
        checked += 1;
    }
    checked
}

fn check_dir(root: &Path, provider: &str) -> usize {
    exchanges(root, provider).iter().map(check_exchange).sum()
}

#[test]
fn fixtures_round_trip_losslessly() {
    let n = check_dir(&fixtures_dir(), "anthropic");
    assert!(n > 0, "no Anthropic fixtures were checked");
}

#[test]
fn corpus_round_trips_losslessly() {
    let Some(root) = corpus_dir() else { return };
    let n = check_dir(&root, "anthropic");
    println!("checked {n} recorded Anthropic bodies and streams");
    assert!(n > 0);
}

/// A compacted request's `usage` counts the answer's sampling only; its `iterations` list
/// every sampling, the summary's included, all billed. The gateway accounts the sums, and
/// gives the usage back to an Anthropic client as it came.
#[test]
fn compaction_iterations_are_summed_for_accounting_and_kept_for_the_client() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":181,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":8,"iterations":[{"input_tokens":100,"output_tokens":83,"cache_read_input_tokens":55096,"cache_creation_input_tokens":0,"type":"compaction"},{"input_tokens":181,"output_tokens":8,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"type":"message"}]}}"#;
    let billed = |u: &weir_model::Usage| {
        (
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
        )
    };
    let whole = weir_anthropic::decode_response(body).unwrap();
    assert_eq!(
        billed(&whole.usage),
        (Some(281), Some(91), Some(55096), Some(0))
    );
    let summary = weir_anthropic::decode_response_summary(body).unwrap();
    assert_eq!(
        billed(&summary.usage),
        (Some(281), Some(91), Some(55096), Some(0))
    );
    let again = weir_anthropic::encode_response(&whole).unwrap();
    assert_json_eq("compacted response", body, &again);
    // The stream's final usage alike.
    let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":181,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":8,"iterations":[{"input_tokens":100,"output_tokens":83,"cache_read_input_tokens":55096,"cache_creation_input_tokens":0,"type":"compaction"},{"input_tokens":181,"output_tokens":8,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"type":"message"}]}}"#;
    let mut dec = weir_anthropic::StreamDecoder::new();
    let sse = format!("event: message_delta\ndata: {delta}\n\n");
    let event = sse_events(sse.as_bytes()).remove(0);
    let frame = dec.decode(event).unwrap();
    let usage = frame
        .events
        .iter()
        .find_map(|e| match e {
            weir_model::StreamEvent::MessageDelta { usage, .. } => Some(usage.clone()),
            _ => None,
        })
        .expect("a message_delta");
    assert_eq!(billed(&usage), (Some(281), Some(91), Some(55096), Some(0)));
}

/// Writes kept one hour cost more than five-minute ones, and web searches are billed:
/// `usage.cache_creation` and `usage.server_tool_use` say how many there were, read for
/// pricing (whole answers, summaries, stream openings and
/// deltas, compaction iterations) and given back to the client as it came.
#[test]
fn one_hour_cache_writes_and_web_searches_are_read_and_kept() {
    let usage = r#"{"input_tokens":3,"cache_creation_input_tokens":1500,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000},"output_tokens":8,"server_tool_use":{"web_search_requests":2,"web_fetch_requests":1},"service_tier":"standard"}"#;
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{{"type":"text","text":"ok"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{usage}}}"#
    );
    let searches = |u: &weir_model::Usage| u.web_search_requests;
    let writes = |u: &weir_model::Usage| (u.cache_write_tokens, u.cache_write_1h_tokens);
    let whole = weir_anthropic::decode_response(body.as_bytes()).unwrap();
    assert_eq!(writes(&whole.usage), (Some(1500), Some(1000)));
    let summary = weir_anthropic::decode_response_summary(body.as_bytes()).unwrap();
    assert_eq!(writes(&summary.usage), (Some(1500), Some(1000)));
    assert_eq!(searches(&whole.usage), Some(2));
    assert_eq!(searches(&summary.usage), Some(2));
    let again = weir_anthropic::encode_response(&whole).unwrap();
    assert_json_eq("one-hour writes", body.as_bytes(), &again);
    // Compaction iterations that do not break their writes down leave the top level's.
    let iterations = r#","iterations":[{"input_tokens":3,"output_tokens":8,"cache_read_input_tokens":0,"cache_creation_input_tokens":1500,"type":"message"}]}"#;
    let with = body.replacen(
        r#","service_tier":"standard"}"#,
        &format!(r#","service_tier":"standard"{iterations}"#),
        1,
    );
    assert_ne!(with, body);
    let compacted = weir_anthropic::decode_response(with.as_bytes()).unwrap();
    assert_eq!(writes(&compacted.usage), (Some(1500), Some(1000)));

    let start = format!(
        r#"{{"type":"message_start","message":{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{usage}}}}}"#
    );
    let delta = format!(
        r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{usage}}}"#
    );
    let compacted = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":8,"iterations":[{"input_tokens":100,"output_tokens":83,"cache_read_input_tokens":0,"cache_creation_input_tokens":700,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":700},"type":"compaction"},{"input_tokens":3,"output_tokens":8,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"type":"message"}]}}"#;
    for (name, data, want) in [
        ("message_start", start.as_str(), (Some(1500), Some(1000))),
        ("message_delta", delta.as_str(), (Some(1500), Some(1000))),
        ("message_delta", compacted, (Some(700), Some(700))),
    ] {
        let mut dec = weir_anthropic::StreamDecoder::new();
        let sse = format!("event: {name}\ndata: {data}\n\n");
        let frame = dec.decode(sse_events(sse.as_bytes()).remove(0)).unwrap();
        let usage = frame
            .events
            .iter()
            .find_map(|e| match e {
                weir_model::StreamEvent::MessageStart { usage, .. }
                | weir_model::StreamEvent::MessageDelta { usage, .. } => Some(usage.clone()),
                _ => None,
            })
            .expect("an event with usage");
        assert_eq!(writes(&usage), want, "{name}: {data}");
        let searched = if data.contains("web_search_requests") {
            Some(2)
        } else {
            None
        };
        assert_eq!(searches(&usage), searched, "{name}: {data}");
    }
}

/// A 200 whose body is no Messages response (`{}`, an error object) carries no answer:
/// an error, whole or summarized, never an empty success passed on.
#[test]
fn a_body_without_content_is_no_response() {
    for body in [
        &b"{}"[..],
        br#"{"message":"The system encountered an unexpected error"}"#,
    ] {
        let e = weir_anthropic::decode_response(body).unwrap_err();
        assert!(e.to_string().contains("no `content`"), "{e}");
        assert!(weir_anthropic::decode_response_summary(body).is_err());
    }
    let ok = br#"{"id":"m","type":"message","role":"assistant","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":0}}"#;
    assert!(weir_anthropic::decode_response_summary(ok).is_ok());
}

/// A response holding the upstream's body verbatim (what a provider gives when told the
/// client's dialect) encodes as that body, not as its empty summary; one of the other
/// dialect is refused rather than written empty.
#[test]
fn a_verbatim_response_encodes_as_its_body() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}"#;
    let mut resp = weir_anthropic::decode_response_summary(body).unwrap();
    assert!(resp.content.is_empty());
    resp.raw = Some(body.to_vec());
    assert_eq!(weir_anthropic::encode_response(&resp).unwrap(), body);
    resp.origin = Some(weir_model::Dialect::OpenAi);
    assert!(weir_anthropic::encode_response(&resp).is_err());
}
