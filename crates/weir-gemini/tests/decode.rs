//! Gemini responses, streams and errors as canonical values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{check_well_formed, sse, stream_events, summary};
use serde_json::json;
use weir_gemini::{decode_error, decode_response, retry_delay, StreamDecoder};
use weir_model::{ContentBlock, ErrorKind, MediaSource, StopReason, ToolInput, WireError};

fn body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn a_text_answer_with_cached_and_thought_usage() {
    let r = decode_response(
        br#"{
  "candidates": [{"content": {"parts": [{"text": "Paris is the capital \u00e9 \"yes\"."}], "role": "model"},
                  "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 1000,
                    "candidatesTokenCount": 12, "thoughtsTokenCount": 30, "totalTokenCount": 1242},
  "modelVersion": "gemini-2.5-flash",
  "responseId": "abc123"
}"#,
    )
    .unwrap();
    assert_eq!(
        (r.id.as_str(), r.model.as_str()),
        ("abc123", "gemini-2.5-flash")
    );
    assert_eq!(r.stop_reason, Some(StopReason::EndTurn));
    let [ContentBlock::Text(t)] = r.content.as_slice() else {
        panic!("{:?}", r.content)
    };
    // The token is kept as it came.
    assert_eq!(t.text.token(), r#""Paris is the capital \u00e9 \"yes\".""#);
    let u = &r.usage;
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_tokens,
            u.output_tokens,
            u.reasoning_tokens,
            u.total_input()
        ),
        (Some(200), Some(1000), Some(42), Some(30), 1200)
    );
}

#[test]
fn tool_use_prompt_tokens_count_as_input() {
    // From a recorded url_context answer: search results are billed as input.
    let r = decode_response(&body(json!({
        "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 32, "candidatesTokenCount": 41,
                          "toolUsePromptTokenCount": 2395, "thoughtsTokenCount": 47,
                          "totalTokenCount": 2515}
    })))
    .unwrap();
    assert_eq!(r.usage.total_input() + r.usage.output(), 2515);
}

#[test]
fn parallel_function_calls_get_stable_valid_ids() {
    let r = decode_response(&body(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
            {"functionCall": {"id": "gemini-own_id", "name": "get_time"}}
        ]}, "finishReason": "STOP"}],
        "responseId": "1lpeaMTxIpW1nvgP-O3vwQY"
    })))
    .unwrap();
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    let calls: Vec<(String, String, String)> = r
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(t) => {
                let ToolInput::Json(raw) = &t.input else {
                    panic!("{:?}", t.input)
                };
                Some((t.id.clone(), t.name.clone(), raw.get().to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            (
                "toolu_gemini_1lpeaMTxIpW1nvgP-O3vwQY_0".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"Paris"}"#.to_owned()
            ),
            (
                "toolu_gemini_1lpeaMTxIpW1nvgP-O3vwQY_1".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"London"}"#.to_owned()
            ),
            (
                "gemini-own_id".to_owned(),
                "get_time".to_owned(),
                "{}".to_owned()
            ),
        ]
    );
    assert_eq!(r.content.len(), 4);
}

#[test]
fn thoughts_and_signatures_become_thinking_blocks() {
    let r = decode_response(&body(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": true},
            {"text": "Still thinking.", "thought": true, "thoughtSignature": "T1"},
            {"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "C1"},
            {"text": "Answer.", "thoughtSignature": "X1"},
            {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
            {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
            {"text": "", "thoughtSignature": "END"}
        ]}, "finishReason": "STOP"}],
        "responseId": "r1"
    })))
    .unwrap();
    let shown: Vec<String> = r
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Thinking(t) => format!(
                "thinking {:?} {}",
                t.thinking.as_str(),
                t.signature.as_deref().unwrap_or("-")
            ),
            ContentBlock::Text(t) => format!("text {}", t.text.as_str()),
            ContentBlock::ToolUse(t) => format!("tool_use {} {}", t.id, t.name),
            ContentBlock::Image(i) => match &i.source {
                MediaSource::Base64 { media_type, data } => format!("image {media_type} {data}"),
                other => format!("image {other:?}"),
            },
            other => other.type_name().to_owned(),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "thinking \"Let me think.\" -",
            "thinking \"Still thinking.\" gemini-thought:T1",
            "thinking \"\" gemini-next-part:C1",
            "tool_use toolu_gemini_r1_0 lookup",
            "thinking \"\" gemini-next-part:X1",
            "text Answer.",
            "image image/png iVBO",
            "thinking \"\" gemini-next-part:END",
        ]
    );
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
}

#[test]
fn finish_reasons() {
    let stop = |reason: Option<&str>, parts: serde_json::Value| {
        let mut cand = json!({"content": {"parts": parts}});
        if let Some(r) = reason {
            cand["finishReason"] = json!(r);
        }
        decode_response(&body(json!({"candidates": [cand]})))
            .unwrap()
            .stop_reason
    };
    let text = json!([{"text": "x"}]);
    let call = json!([{"functionCall": {"name": "f", "args": {}}}]);
    assert_eq!(stop(Some("STOP"), text.clone()), Some(StopReason::EndTurn));
    assert_eq!(stop(Some("STOP"), call.clone()), Some(StopReason::ToolUse));
    assert_eq!(
        stop(Some("MAX_TOKENS"), call.clone()),
        Some(StopReason::MaxTokens)
    );
    for refusal in [
        "SAFETY",
        "RECITATION",
        "PROHIBITED_CONTENT",
        "SPII",
        "BLOCKLIST",
        "LANGUAGE",
        "IMAGE_OTHER",
    ] {
        assert_eq!(stop(Some(refusal), text.clone()), Some(StopReason::Refusal));
    }
    // A call the model botched is no answer: an error, as Bedrock's malformed_tool_use;
    // so are a conversation Gemini could not continue and a malformed answer.
    for botched in [
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MISSING_THOUGHT_SIGNATURE",
        "MALFORMED_RESPONSE",
    ] {
        let cand = json!({"content": {"parts": []}, "finishReason": botched});
        let err = decode_response(&body(json!({"candidates": [cand]}))).unwrap_err();
        assert!(err.to_string().contains(botched), "{err}");
        // Worth another try, but the upstream is healthy: no breaker opens on it.
        assert!(matches!(err, WireError::ModelOutput(_)), "{err:?}");
        assert!(!err.counts_against_health());
    }
    // Reasons with no counterpart (and ones added later) end the turn as it is: never a
    // value outside the client's dialect.
    for other in ["OTHER", "FINISH_REASON_UNSPECIFIED", "SOMETHING_NEW"] {
        assert_eq!(stop(Some(other), text.clone()), Some(StopReason::EndTurn));
        assert_eq!(stop(Some(other), call.clone()), Some(StopReason::ToolUse));
    }
    assert_eq!(stop(None, text), None);
    // A candidate blocked for safety may have no content at all.
    let r = decode_response(&body(json!({"candidates": [{"finishReason": "SAFETY"}]}))).unwrap();
    assert!(r.content.is_empty());
    assert_eq!(r.stop_reason, Some(StopReason::Refusal));
    // A prompt blocked before any candidate.
    let r = decode_response(&body(json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7}
    })))
    .unwrap();
    assert_eq!(
        (r.stop_reason, r.usage.input_tokens),
        (Some(StopReason::Refusal), Some(7))
    );
}

#[test]
fn undecodable_responses_are_errors() {
    assert!(matches!(
        decode_response(b"<html>"),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        decode_response(b"\xff\xfe"),
        Err(WireError::Malformed(_))
    ));
    assert_eq!(
        decode_response(br#"{"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}"#)
            .unwrap_err(),
        WireError::Malformed("the response body is an error: boom".into())
    );
}

const RATE_LIMITED: &str = r#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
       "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
      {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more"}]},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}
    ]
  }
}"#;

#[test]
fn google_errors_in_both_shapes() {
    let e = decode_error(429, RATE_LIMITED.as_bytes());
    assert_eq!(
        (e.kind, e.status, e.error_type.as_deref()),
        (ErrorKind::RateLimited, 429, Some("RESOURCE_EXHAUSTED"))
    );
    assert!(e.message.starts_with("You exceeded your current quota"));
    assert_eq!(
        retry_delay(RATE_LIMITED.as_bytes()),
        Some(Duration::from_secs(13))
    );

    let wrapped = format!("[{RATE_LIMITED}]");
    assert_eq!(decode_error(429, wrapped.as_bytes()), e);
    assert_eq!(
        retry_delay(wrapped.as_bytes()),
        Some(Duration::from_secs(13))
    );

    let cases = [
        (400, "INVALID_ARGUMENT", ErrorKind::InvalidRequest),
        (401, "UNAUTHENTICATED", ErrorKind::Authentication),
        (403, "PERMISSION_DENIED", ErrorKind::PermissionDenied),
        (400, "FAILED_PRECONDITION", ErrorKind::PermissionDenied),
        (404, "NOT_FOUND", ErrorKind::NotFound),
        (503, "UNAVAILABLE", ErrorKind::Overloaded),
        (500, "INTERNAL", ErrorKind::Upstream),
        (504, "DEADLINE_EXCEEDED", ErrorKind::Timeout),
        (499, "SOMETHING_NEW", ErrorKind::InvalidRequest),
        (502, "SOMETHING_NEW", ErrorKind::Upstream),
    ];
    for (status, google, kind) in cases {
        let b = body(json!([{"error": {"code": status, "message": "m", "status": google}}]));
        let e = decode_error(status, &b);
        assert_eq!((e.kind, e.status), (kind, status), "{google}");
        assert_eq!(retry_delay(&b), None);
    }
}

#[test]
fn a_bad_api_key_is_an_authentication_error_despite_the_400() {
    let e = decode_error(
        400,
        &body(json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
        }})),
    );
    assert_eq!((e.kind, e.status), (ErrorKind::Authentication, 400));
}

#[test]
fn html_and_garbage_fall_back_to_the_http_status() {
    let html = b"<!DOCTYPE html>\n<html lang=en><head><title>Error 502 (Server Error)!!1</title></head><body>...</body></html>";
    let e = decode_error(502, html);
    assert_eq!(
        (e.kind, e.status, e.message.as_str()),
        (
            ErrorKind::Upstream,
            502,
            "upstream answered 502: Error 502 (Server Error)!!1"
        )
    );
    let e = decode_error(503, b"");
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Overloaded,
            "upstream answered 503 with an empty body"
        )
    );
    let e = decode_error(429, b"Too many requests\n  slow down");
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::RateLimited,
            "upstream answered 429: Too many requests slow down"
        )
    );
    assert_eq!(
        decode_error(400, b"{\"error\": \"text\"}").kind,
        ErrorKind::InvalidRequest
    );
    assert_eq!(retry_delay(b"not json"), None);
}

const TEXT_STREAM: &[&str] = &[
    r#"{"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"}}],"usageMetadata": {"promptTokenCount": 15,"totalTokenCount": 15},"modelVersion": "gemini-2.0-flash","responseId": "w1pe"}"#,
    r#"{"candidates": [{"content": {"parts": [{"text": " capital"}],"role": "model"}}],"usageMetadata": {"promptTokenCount": 15,"totalTokenCount": 15},"modelVersion": "gemini-2.0-flash","responseId": "w1pe"}"#,
    r#"{"candidates": [{"content": {"parts": [{"text": " is Paris.\n"}],"role": "model"},"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 13,"cachedContentTokenCount": 3,"candidatesTokenCount": 8,"totalTokenCount": 21},"modelVersion": "gemini-2.0-flash","responseId": "w1pe"}"#,
];

#[test]
fn a_text_stream_split_anywhere() {
    let bytes = sse(TEXT_STREAM);
    let whole = stream_events(&bytes, 0).unwrap();
    assert_eq!(
        summary(&whole),
        [
            "start w1pe gemini-2.0-flash in=15 out=- cache=- reasoning=-",
            "+0 text",
            "0 text The",
            "0 text  capital",
            "0 text  is Paris.\n",
            "-0",
            "delta end_turn in=10 out=8 cache=3 reasoning=-",
            "stop",
        ]
    );
    check_well_formed(&whole).unwrap();
    for split in [1, 2, 7, 64] {
        let events = stream_events(&bytes, split).unwrap();
        assert_eq!(summary(&events), summary(&whole), "split {split}");
    }
}

#[test]
fn a_stream_with_thoughts_signatures_and_parallel_calls() {
    let bytes = sse(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "Plan", "thought": true}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "ning.", "thought": true, "thoughtSignature": "T"}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "I'll look."}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "C"}, {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 10, "thoughtsTokenCount": 202}, "responseId": "r9"}"#,
    ]);
    let events = stream_events(&bytes, 5).unwrap();
    assert_eq!(
        summary(&events),
        [
            "start r9 fallback-model in=- out=- cache=- reasoning=-",
            "+0 thinking",
            "0 thinking Plan",
            "0 thinking ning.",
            "0 sig gemini-thought:T",
            "-0",
            "+1 text",
            "1 text I'll look.",
            "-1",
            "+2 thinking",
            "2 sig gemini-next-part:C",
            "-2",
            "+3 tool_use toolu_gemini_r9_0 get_weather",
            r#"3 json {"city":"Paris"}"#,
            "-3",
            "+4 tool_use toolu_gemini_r9_1 get_weather",
            r#"4 json {"city":"Rome"}"#,
            "-4",
            "delta tool_use in=29 out=212 cache=- reasoning=202",
            "stop",
        ]
    );
    check_well_formed(&events).unwrap();
}

/// A client that asked for one tool call per turn (`parallel_tool_calls: false`) gets only
/// Gemini's first, whole and streamed: Gemini has no switch for it.
#[test]
fn one_call_per_turn_keeps_the_first_call() {
    let chunks = [
        r#"{"candidates": [{"content": {"parts": [{"text": "I'll look."}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "C"}, {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "D"}, {"functionCall": {"name": "get_time", "args": {}}}]}}], "responseId": "r9"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 10}, "responseId": "r9"}"#,
    ];
    use weir_upstream::BodyDecoder as _;
    let mut dec =
        weir_upstream::SseBody::new(StreamDecoder::new().with_model("m").one_call_only(true));
    let mut frames = Vec::new();
    dec.feed(&sse(&chunks), &mut frames).unwrap();
    dec.finish(&mut frames).unwrap();
    let events: Vec<_> = frames.into_iter().flat_map(|f| f.events).collect();
    check_well_formed(&events).unwrap();
    let calls: Vec<String> = summary(&events)
        .into_iter()
        .filter(|l| l.contains("tool_use toolu") || l.contains(" sig "))
        .collect();
    assert_eq!(
        calls,
        [
            "1 sig gemini-next-part:C",
            "+2 tool_use toolu_gemini_r9_0 get_weather"
        ]
    );
    // Whole: the same answer, merged.
    let whole = json!({
        "candidates": [{"content": {"parts": [
            {"text": "I'll look."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "C"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "D"},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]}, "finishReason": "STOP"}],
        "responseId": "r9"
    });
    let mut r = decode_response(&body(whole)).unwrap();
    assert_eq!(r.content.len(), 6);
    weir_gemini::keep_one_call(&mut r);
    let kinds: Vec<&str> = r
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Text(_) => "text",
            ContentBlock::Thinking(_) => "signature",
            ContentBlock::ToolUse(t) if t.id == "toolu_gemini_r9_0" => "first call",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["text", "signature", "first call"]);
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
}

/// A signature on a later chunk of a text under way (Gemini 3 signs a text's last part)
/// leaves the text one block, so clients show one message (the Responses bridge made two
/// of it, and Codex printed only the second); the signature follows the text, to be written
/// back as a signature-only part after it, as Gemini itself ends a turn (text parts'
/// signatures are not validated; function calls' keep their place).
#[test]
fn a_signed_later_text_chunk_keeps_the_text_whole() {
    let bytes = sse(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "Hello"}]}}]}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " world", "thoughtSignature": "S"}]}}]}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"}]}"#,
    ]);
    let events = stream_events(&bytes, 0).unwrap();
    assert_eq!(
        summary(&events)[1..],
        [
            "+0 text",
            "0 text Hello",
            "0 text  world",
            "0 text !",
            "-0",
            "+1 thinking",
            "1 sig gemini-next-part:S",
            "-1",
            // No usage ever came: the message ends when the body does.
            "delta end_turn in=- out=- cache=- reasoning=-",
            "stop",
        ]
    );
}

#[test]
fn usage_after_the_finish_reason_is_waited_for_and_the_last_reported_counts() {
    let bytes = sse(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "MAX_TOKENS"}]}"#,
        r#"{"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}"#,
        r#"{"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}}"#,
    ]);
    let events = stream_events(&bytes, 0).unwrap();
    assert_eq!(
        summary(&events)[1..],
        [
            "+0 text",
            "0 text Hi",
            "-0",
            "delta max_tokens in=5 out=3 cache=- reasoning=-",
            "stop"
        ]
    );
}

#[test]
fn parts_after_a_finish_reason_are_kept_until_the_body_ends() {
    // Relays (and Gemini in 2024) mark every chunk finished, usage included; one starts
    // with an empty finished chunk. The body's end is the answer's.
    let chunk = |parts: &str, finish: &str| {
        format!(
            r#"{{"candidates": [{{"content": {{"role": "model", "parts": [{parts}]}}{finish}}}], "usageMetadata": {{"promptTokenCount": 5, "candidatesTokenCount": 3}}}}"#
        )
    };
    let stop = r#", "finishReason": "STOP""#;
    let every = [
        chunk(r#"{"text": "The quick "}"#, stop),
        chunk(r#"{"text": "brown fox "}"#, stop),
        chunk(r#"{"text": "jumps."}"#, stop),
    ];
    let leading = [
        chunk("", stop),
        chunk(r#"{"text": "Hello "}"#, ""),
        chunk(r#"{"text": "world"}"#, ""),
        chunk("", stop),
    ];
    let called = [
        chunk(r#"{"text": "Let me look."}"#, stop),
        chunk(r#"{"functionCall": {"name": "ls", "args": {}}}"#, stop),
    ];
    for (chunks, text, stop) in [
        (&every[..], "The quick brown fox jumps.", "end_turn"),
        (&leading[..], "Hello world", "end_turn"),
        (&called[..], "Let me look.", "tool_use"),
    ] {
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let events = stream_events(&sse(&refs), 0).unwrap();
        let s = summary(&events);
        let texts: Vec<&str> = s.iter().filter_map(|l| l.strip_prefix("0 text ")).collect();
        assert_eq!(texts.concat(), text, "{s:?}");
        assert_eq!(
            s.iter().filter(|l| l.starts_with("delta ")).count(),
            1,
            "{s:?}"
        );
        let delta = s.iter().find(|l| l.starts_with("delta ")).unwrap();
        assert!(delta.starts_with(&format!("delta {stop} ")), "{s:?}");
        assert_eq!(s.last().map(String::as_str), Some("stop"), "{s:?}");
    }
}

#[test]
fn usage_reported_on_several_chunks_takes_the_last() {
    let bytes = sse(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "1"}]}}], "usageMetadata": {"promptTokenCount": 18, "candidatesTokenCount": 31, "thoughtsTokenCount": 35}}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "2"}]}}], "usageMetadata": {"promptTokenCount": 18, "candidatesTokenCount": 79, "thoughtsTokenCount": 35}}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "3"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 18, "candidatesTokenCount": 80, "thoughtsTokenCount": 35}}"#,
    ]);
    let events = stream_events(&bytes, 0).unwrap();
    let s = summary(&events);
    assert_eq!(
        s[0],
        "start  fallback-model in=18 out=- cache=- reasoning=-"
    );
    assert_eq!(
        s[s.len() - 2],
        "delta end_turn in=18 out=115 cache=- reasoning=35"
    );
}

#[test]
fn errors_inside_and_ends_of_streams() {
    // An error event after content: reported, and nothing after it.
    let bytes = sse(&[
        TEXT_STREAM[0],
        r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
        TEXT_STREAM[1],
    ]);
    let events = stream_events(&bytes, 0).unwrap();
    assert_eq!(
        summary(&events)[1..],
        [
            "+0 text",
            "0 text The",
            "-0",
            "error Overloaded 503 The model is overloaded. Please try again later.",
        ]
    );
    // Cut before the finish reason.
    let e = stream_events(&sse(&TEXT_STREAM[..2]), 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
    assert!(
        e.message
            .ends_with("the stream ended before the response finished (no finishReason)"),
        "{}",
        e.message
    );
    // Nothing at all.
    let e = stream_events(b"", 0).unwrap_err();
    assert!(
        e.message
            .ends_with("the stream ended before any response chunk"),
        "{}",
        e.message
    );
    // Not JSON.
    let e = stream_events(b"data: {not json\n\n", 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
    // Keep-alive blank data is nothing.
    let mut d = StreamDecoder::new();
    assert!(d
        .decode(&weir_sse::Event::new(""))
        .unwrap()
        .events
        .is_empty());
}

/// A 200 with neither candidates nor a blocked prompt's feedback (`{}`) carries no
/// answer; a blocked prompt is a refusal.
#[test]
fn a_body_without_candidates_is_no_response() {
    let e = decode_response(b"{}").unwrap_err();
    assert!(e.to_string().contains("no `candidates`"), "{e}");
    let blocked = decode_response(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
    assert_eq!(blocked.stop_reason, Some(StopReason::Refusal));
}

/// Grounding as Gemini sends it (the shape of a recorded answer: `startIndex` 0 left out,
/// offsets in bytes), on a text with a two-byte character before the second claim.
fn grounded() -> serde_json::Value {
    json!({
        "webSearchQueries": ["euro 2024 winner", "euro 2024 final score"],
        "searchEntryPoint": {"renderedContent": "<div>...</div>"},
        "groundingChunks": [
            {"web": {"uri": "https://example.com/a", "title": "example.com"}},
            {"web": {"uri": "https://uefa.example/b", "title": "uefa.example"}},
            {"web": {"uri": "https://example.com/a", "title": "example.com"}}
        ],
        "groundingSupports": [
            {"segment": {"endIndex": 21, "text": "Spain won Euro 2024."},
             "groundingChunkIndices": [0, 2]},
            {"segment": {"startIndex": 32, "endIndex": 53, "text": "They beat England 2–1."},
             "groundingChunkIndices": [1, 0]},
            {"segment": {"startIndex": 0, "endIndex": 5, "text": "not in the answer"},
             "groundingChunkIndices": [1]}
        ]
    })
}

#[test]
fn grounding_with_google_search_becomes_a_web_search_and_cited_text() {
    let text = "Spain won Euro 2024. In Berlin, They beat England 2–1. Done.";
    let r = decode_response(&body(json!({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP", "groundingMetadata": grounded()}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20},
        "responseId": "resp1"
    })))
    .unwrap();
    let kinds: Vec<_> = r.content.iter().map(|b| b.type_name()).collect();
    assert_eq!(
        kinds,
        [
            "server_tool_use",
            "web_search_tool_result",
            "text",
            "text",
            "text",
            "text"
        ]
    );
    let raw = |b: &ContentBlock| match b {
        ContentBlock::Unknown(u) => serde_json::from_str::<serde_json::Value>(u.raw.get()).unwrap(),
        other => panic!("{other:?}"),
    };
    let call = raw(&r.content[0]);
    assert_eq!(call["name"], "web_search");
    assert_eq!(
        call["input"],
        json!({"query": "euro 2024 winner; euro 2024 final score"})
    );
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("srvtoolu_") && id.len() <= 64, "{id}");
    let result = raw(&r.content[1]);
    assert_eq!(result["tool_use_id"], id);
    // Each page once.
    let urls: Vec<_> = result["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["type"].as_str().unwrap(), p["url"].as_str().unwrap()))
        .collect();
    assert_eq!(
        urls,
        [
            ("web_search_result", "https://example.com/a"),
            ("web_search_result", "https://uefa.example/b")
        ]
    );
    // The text cut at the supported claims, which cite their pages; it joins back whole.
    let texts: Vec<_> = r.content[2..]
        .iter()
        .map(|b| match b {
            ContentBlock::Text(t) => (
                t.text.as_str().into_owned(),
                t.extra.get("citations").map(|c| {
                    serde_json::from_str::<Vec<serde_json::Value>>(c.get())
                        .unwrap()
                        .iter()
                        .map(|c| {
                            assert_eq!(c["type"], "web_search_result_location");
                            format!("{} {}", c["url"].as_str().unwrap(), c["cited_text"])
                        })
                        .collect::<Vec<_>>()
                }),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            (
                "Spain won Euro 2024.".to_owned(),
                Some(vec![
                    "https://example.com/a \"Spain won Euro 2024.\"".to_owned()
                ])
            ),
            (" In Berlin, ".to_owned(), None),
            (
                "They beat England 2–1.".to_owned(),
                Some(vec![
                    "https://uefa.example/b \"They beat England 2–1.\"".to_owned(),
                    "https://example.com/a \"They beat England 2–1.\"".to_owned()
                ])
            ),
            (" Done.".to_owned(), None),
        ]
    );
    assert_eq!(r.usage.web_search_requests, Some(2));
    // Without grounding, none of it.
    let plain = decode_response(&body(json!({
        "candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP",
                        "groundingMetadata": {}}]
    })))
    .unwrap();
    assert_eq!(plain.content.len(), 1);
    assert_eq!(plain.usage.web_search_requests, None);
    // Offsets past any text (one at the largest integer) place nothing and break nothing.
    let far = decode_response(&body(json!({
        "candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP",
                        "groundingMetadata": {
                            "groundingChunks": [{"web": {"uri": "https://a.example", "title": "a"}}],
                            "groundingSupports": [
                                {"segment": {"startIndex": u64::MAX, "endIndex": 3, "text": "nowhere"},
                                 "groundingChunkIndices": [0]},
                                {"segment": {"startIndex": 5, "endIndex": 900}, "groundingChunkIndices": [0, 7]}
                            ]}}]
    })))
    .unwrap();
    let texts = far
        .content
        .iter()
        .filter(|b| matches!(b, ContentBlock::Text(_)))
        .count();
    assert_eq!(texts, 1);
    // Metadata of a shape not known is ignored, not an error.
    let odd = decode_response(&body(json!({
        "candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP",
                        "groundingMetadata": {"groundingChunks": "?"}}]
    })))
    .unwrap();
    assert_eq!(odd.content.len(), 1);
}

#[test]
fn a_grounded_stream_cites_its_open_text_and_ends_with_the_search() {
    // As recorded: the grounding comes with the last chunk, its spans over the whole text.
    let last = json!({
        "candidates": [{"content": {"parts": [{"text": " 2–1. Done."}], "role": "model"},
                        "finishReason": "STOP", "groundingMetadata": grounded()}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20},
        "responseId": "resp2"
    })
    .to_string();
    let first = json!({
        "candidates": [{"content": {"parts": [{"text": "Spain won Euro 2024. In Berlin, They beat England"}],
                        "role": "model"}, "groundingMetadata": {}}],
        "responseId": "resp2"
    })
    .to_string();
    let events = stream_events(&sse(&[&first, &last]), 0).unwrap();
    check_well_formed(&events).unwrap();
    let s = summary(&events);
    let cites = s
        .iter()
        .filter(|l| l.starts_with("0 ") && l.contains("citations_delta"))
        .count();
    // One per page of each support placed in the text, citing that text; the support
    // whose text is not in the answer cites nothing.
    assert_eq!(cites, 3, "{s:#?}");
    let cited: Vec<_> = s.iter().filter(|l| l.contains("citations_delta")).collect();
    assert!(
        cited[0].contains(r#""cited_text":"Spain won Euro 2024.""#),
        "{cited:?}"
    );
    assert!(
        cited[2].contains(r#""cited_text":"They beat England 2–1.""#),
        "{cited:?}"
    );
    assert!(!cited.iter().any(|l| l.contains("not in the answer")));
    // The text block closes after its citations; then the search call with its query as
    // one input delta, and the results.
    let stop_text = s.iter().position(|l| l == "-0").unwrap();
    assert!(s[..stop_text].iter().any(|l| l.contains("citations_delta")));
    assert!(s[stop_text + 1].starts_with("+1 server_tool_use"), "{s:#?}");
    assert!(
        s[stop_text + 2].contains("euro 2024 winner; euro 2024 final score"),
        "{s:#?}"
    );
    assert_eq!(s[stop_text + 3], "-1");
    assert!(
        s[stop_text + 4].starts_with("+2 web_search_tool_result"),
        "{s:#?}"
    );
    assert_eq!(s[stop_text + 5], "-2");
    let u = events
        .iter()
        .rev()
        .find_map(|e| match e {
            weir_model::StreamEvent::MessageDelta { usage, .. } => Some(usage.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(u.web_search_requests, Some(2));
}

#[test]
fn a_grounded_stream_with_thinking_still_cites_its_text() {
    // Thinking on: the last chunk ends the turn with a signature on an empty text part, in
    // the chunk that brings the grounding.
    let first = json!({"candidates": [{"content": {"parts": [
        {"text": "Weighing sources.", "thought": true},
        {"text": "Spain won Euro 2024. In Berlin, They beat England"}]}}], "responseId": "r3"})
    .to_string();
    let last = json!({
        "candidates": [{"content": {"parts": [{"text": " 2–1. Done."}, {"text": "", "thoughtSignature": "U0lH"}]},
                        "finishReason": "STOP", "groundingMetadata": grounded()}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20}, "responseId": "r3"
    })
    .to_string();
    let events = stream_events(&sse(&[&first, &last]), 0).unwrap();
    check_well_formed(&events).unwrap();
    let s = summary(&events);
    let cites = s.iter().filter(|l| l.contains("citations_delta")).count();
    assert_eq!(cites, 3, "{s:#?}");
    // The signature still follows the text, on a block of its own.
    let text_stop = s.iter().position(|l| l == "-1").unwrap();
    assert!(s[text_stop + 1].starts_with("+2 thinking"), "{s:#?}");
    assert!(s[text_stop + 2].starts_with("2 sig "), "{s:#?}");
}
