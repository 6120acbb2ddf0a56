//! AWS event stream bodies decoded into canonical frames, split at every byte offset:
//! ConverseStream (modelled on recorded Bedrock streams: `p` padding, text blocks without
//! a start event, an empty first text block, reasoning, usage after the stop) and
//! InvokeModelWithResponseStream (Anthropic events in base64 chunks).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{chunk, decode_pieces, event, exception, split_everywhere, well_formed};
use weir_bedrock::{ConverseStream, InvokeStream};
use weir_model::{ErrorKind, StreamEvent};
use weir_testkit::collect;

/// A ConverseStream answer with an empty text block, reasoning, text and three parallel
/// tool calls, then the stop and the usage (with cache figures).
fn converse_body() -> Vec<u8> {
    let mut b = Vec::new();
    for (ty, json) in [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":""}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"reasoningContent":{"text":"The user wants \"weather\"."}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"reasoningContent":{"text":" Three cities."}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"reasoningContent":{"signature":"c2lnbmF0dXJl"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"text":"Checking "}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"text":"all three.\n"}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":2}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":3,"start":{"toolUse":{"toolUseId":"tooluse_paris","name":"get_weather"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":3,"delta":{"toolUse":{"input":"{\"city\":"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":3,"delta":{"toolUse":{"input":"\"Paris\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":3}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":4,"start":{"toolUse":{"toolUseId":"tooluse_tokyo","name":"get_weather"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":4,"delta":{"toolUse":{"input":"{\"city\":\"Tokyo\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":4}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":5,"start":{"toolUse":{"toolUseId":"tooluse_lima","name":"get_weather"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":5,"delta":{"toolUse":{"input":""}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":5,"delta":{"toolUse":{"input":"{\"city\":\"Lima\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":5}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"metrics":{"latencyMs":753},"usage":{"inputTokens":70,"outputTokens":43,"cacheReadInputTokens":1200,"cacheWriteInputTokens":30,"serverToolUsage":{},"totalTokens":1343}}"#,
        ),
    ] {
        b.extend(event(ty, json));
    }
    b
}

#[test]
fn converse_stream_split_at_every_offset() {
    let body = converse_body();
    let frames = split_everywhere(
        || ConverseStream::new("req-1", "us.amazon.nova-pro-v1:0"),
        &body,
    );
    well_formed(&frames).unwrap();
    assert!(frames.iter().all(|f| f.source.is_none()));
    let c = collect(&frames);
    assert_eq!(
        (c.id.as_str(), c.model.as_str()),
        ("req-1", "us.amazon.nova-pro-v1:0")
    );
    assert_eq!(c.thinking, "The user wants \"weather\". Three cities.");
    assert_eq!(c.signatures, ["c2lnbmF0dXJl"]);
    // The empty first block is left out; the text block is the second canonical block.
    assert_eq!(c.text, ["Checking all three.\n"]);
    assert_eq!(
        c.tool_calls,
        [
            (
                "tooluse_paris".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"Paris"}"#.to_owned()
            ),
            (
                "tooluse_tokyo".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"Tokyo"}"#.to_owned()
            ),
            (
                "tooluse_lima".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"Lima"}"#.to_owned()
            ),
        ]
    );
    assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(c.usage, (70, 43, 1200, 30));
    let starts: Vec<String> = frames
        .iter()
        .flat_map(|f| &f.events)
        .filter_map(|e| match e {
            StreamEvent::BlockStart { index, block } => {
                Some(format!("{index}:{}", block.type_name()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [
            "0:thinking",
            "1:text",
            "2:tool_use",
            "3:tool_use",
            "4:tool_use"
        ]
    );
}

#[test]
fn converse_stream_ends_at_the_body_end_when_metadata_is_missing() {
    let mut body = event("messageStart", r#"{"role":"assistant"}"#);
    body.extend(event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
    ));
    body.extend(event(
        "messageStop",
        r#"{"stopReason":"guardrail_intervened"}"#,
    ));
    let frames = decode_pieces(ConverseStream::new("", "m"), &[&body]).unwrap();
    // The block without a stop event is closed by messageStop.
    well_formed(&frames).unwrap();
    assert_eq!(collect(&frames).stop_reason.as_deref(), Some("refusal"));

    // A body that ends before messageStop is a truncated answer.
    let mut body = event("messageStart", r#"{"role":"assistant"}"#);
    body.extend(event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
    ));
    let e = decode_pieces(ConverseStream::new("", "m"), &[&body]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("ended before"), "{}", e.message);

    // A malformed tool call is the model failing.
    let mut body = event("messageStart", r#"{"role":"assistant"}"#);
    body.extend(event(
        "messageStop",
        r#"{"stopReason":"malformed_tool_use"}"#,
    ));
    let e = decode_pieces(ConverseStream::new("", "m"), &[&body]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains("malformed_tool_use"), "{}", e.message);
    assert!(!e.counts_against_health);
}

#[test]
fn in_stream_throttling_ends_the_stream_after_the_frames_before_it() {
    let mut body = event("messageStart", r#"{"role":"assistant"}"#);
    body.extend(event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
    ));
    body.extend(exception(
        "throttlingException",
        r#"{"message":"Too many tokens, please wait before trying again."}"#,
    ));
    let mut d = weir_bedrock::EventStreamBody::new(ConverseStream::new("", "m"));
    let mut out = Vec::new();
    weir_upstream::BodyDecoder::feed(&mut d, &body, &mut out).unwrap();
    assert_eq!(common::lines(&out).len(), 3, "{:?}", common::lines(&out));
    let e = weir_upstream::BodyDecoder::finish(&mut d, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(
        e.message,
        "Too many tokens, please wait before trying again."
    );
    let api = e.api_error.unwrap();
    assert_eq!(api.error_type.as_deref(), Some("throttlingException"));

    for (name, kind, status) in [
        ("modelStreamErrorException", ErrorKind::Upstream, 424),
        ("internalServerException", ErrorKind::Upstream, 500),
        ("serviceUnavailableException", ErrorKind::Overloaded, 503),
        ("validationException", ErrorKind::InvalidRequest, 400),
        ("modelTimeoutException", ErrorKind::Timeout, 408),
    ] {
        let e = decode_pieces(
            ConverseStream::new("", "m"),
            &[&exception(name, r#"{"message":"x"}"#)],
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.status, e.retry_after),
            (kind, Some(status), None),
            "{name}"
        );
    }
}

/// The Anthropic events of a streamed InvokeModel answer, as Bedrock wraps them.
const ANTHROPIC_EVENTS: &[&str] = &[
    r#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":1}}}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Weather for two cities."}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkYIBxgCKkBsig=="}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check \u00e9 \"both\"."}}"#,
    r#"{"type":"content_block_stop","index":1}"#,
    r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_bdrk_01","name":"get_weather","input":{}}}"#,
    r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
    r#"{"type":"content_block_stop","index":2}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":57}}"#,
    r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":57,"invocationLatency":1290,"firstByteLatency":412,"cacheReadInputTokenCount":2048,"cacheWriteInputTokenCount":0}}"#,
];

#[test]
fn invoke_stream_split_at_every_offset_gives_back_the_anthropic_events() {
    let mut body = Vec::new();
    for e in ANTHROPIC_EVENTS {
        body.extend(chunk(e));
    }
    let frames = split_everywhere(InvokeStream::new, &body);
    well_formed(&frames).unwrap();
    let sources: Vec<(String, String)> = frames
        .iter()
        .map(|f| {
            let s = f
                .source
                .as_ref()
                .expect("every frame keeps its Anthropic event");
            assert_eq!(s.dialect, weir_model::Dialect::Anthropic);
            (
                s.event.event().unwrap_or("").to_owned(),
                s.event.data().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ANTHROPIC_EVENTS
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            (v["type"].as_str().unwrap().to_owned(), (*e).to_owned())
        })
        .collect();
    assert_eq!(sources, expected);
    // An Anthropic client gets the same SSE bytes Anthropic's API would have sent.
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut sse = Vec::new();
    for f in &frames {
        enc.encode(f, &mut sse).unwrap();
    }
    let mut expected_sse = String::new();
    for (name, data) in &expected {
        expected_sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    assert_eq!(String::from_utf8(sse).unwrap(), expected_sse);
    let c = collect(&frames);
    assert_eq!(c.usage, (12, 57, 2048, 0));
    assert_eq!(c.tool_calls[0].2, r#"{"city": "Paris"}"#);
    assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
}

#[test]
fn invoke_stream_exception_after_content() {
    let mut body = chunk(ANTHROPIC_EVENTS[0]);
    body.extend(exception(
        "modelStreamErrorException",
        r#"{"message":"Model stream failed","originalStatusCode":500}"#,
    ));
    let mut d = weir_bedrock::EventStreamBody::new(InvokeStream::new());
    let mut out = Vec::new();
    weir_upstream::BodyDecoder::feed(&mut d, &body, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let e = weir_upstream::BodyDecoder::finish(&mut d, &mut out).unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::Upstream, Some(424)));
    assert_eq!(e.message, "Model stream failed");
}
