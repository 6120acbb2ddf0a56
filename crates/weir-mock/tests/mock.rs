#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The mock provider through the `Provider` trait: complete and streamed answers, tool
//! calls, tool results, limits, error markers and pacing.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use weir_mock::{MockOptions, MockProvider};
use weir_model::{
    CallContext, ChatRequest, ChatResponse, Content, ContentBlock, Delta, ErrorKind, EventStream,
    Extra, FunctionTool, Message, Provider, ProviderError, Reply, Role, StopReason, StopSequences,
    StreamEvent, Tool, ToolChoice, ToolInput, ToolResultBlock, ToolUseBlock,
};

fn provider() -> MockProvider {
    provider_with_delay(Duration::ZERO)
}

fn provider_with_delay(stream_delay: Duration) -> MockProvider {
    MockProvider::new(
        "mock",
        MockOptions {
            stream_delay,
            ..Default::default()
        },
    )
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: "mock-1".to_owned(),
        messages: vec![Message::text(Role::User, text)],
        ..Default::default()
    }
}

fn streaming(mut req: ChatRequest) -> ChatRequest {
    req.stream = Some(true);
    req
}

fn tool(name: &str, schema: Value) -> Tool {
    Tool::Function(FunctionTool {
        name: name.to_owned(),
        description: None,
        parameters: Some(serde_json::value::to_raw_value(&schema).unwrap()),
        strict: None,
        cache_control: None,
        extra: Extra::new(),
    })
}

fn cx() -> CallContext {
    CallContext::new("req-1")
}

async fn complete(p: &MockProvider, req: ChatRequest) -> ChatResponse {
    match p.send(&req, cx()).await.unwrap() {
        Reply::Complete(r) => *r,
        Reply::Stream(_) => panic!("asked for a complete response"),
    }
}

async fn open_stream(p: &MockProvider, req: ChatRequest) -> EventStream {
    match p.send(&streaming(req), cx()).await.unwrap() {
        Reply::Stream(s) => s,
        Reply::Complete(_) => panic!("asked for a stream"),
    }
}

/// Every event of a stream that must not fail; each frame holds exactly one event.
async fn events(p: &MockProvider, req: ChatRequest) -> Vec<StreamEvent> {
    let mut s = open_stream(p, req).await;
    let mut out = Vec::new();
    while let Some(frame) = s.next().await {
        let frame = frame.unwrap();
        assert!(frame.source.is_none());
        assert_eq!(frame.events.len(), 1);
        out.extend(frame.events);
    }
    out
}

/// A compact picture of an event, for comparing sequences.
fn shape(e: &StreamEvent) -> String {
    match e {
        StreamEvent::MessageStart { .. } => "message_start".to_owned(),
        StreamEvent::BlockStart { index, block } => format!("start {index} {}", block.type_name()),
        StreamEvent::BlockDelta { index, delta } => match delta {
            Delta::Text(t) => format!("text {index} {t}"),
            Delta::InputJson(_) => format!("json {index}"),
            other => format!("other {index} {other:?}"),
        },
        StreamEvent::BlockStop { index } => format!("stop {index}"),
        StreamEvent::MessageDelta { stop_reason, .. } => {
            format!(
                "message_delta {}",
                stop_reason.as_ref().unwrap().anthropic_name()
            )
        }
        StreamEvent::MessageStop => "message_stop".to_owned(),
        other => format!("{other:?}"),
    }
}

fn shapes(events: &[StreamEvent]) -> Vec<String> {
    events.iter().map(shape).collect()
}

/// The text of block `index`, or the arguments of a tool block, concatenated from deltas.
fn accumulated(events: &[StreamEvent], index: u32) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::BlockDelta {
                index: i,
                delta: Delta::Text(t) | Delta::InputJson(t),
            } if *i == index => Some(t.as_str().into_owned()),
            _ => None,
        })
        .collect()
}

fn text_of(r: &ChatResponse) -> String {
    Content::blocks(r.content.clone()).joined_text("")
}

/// Id, input and output usage from `message_start` and `message_delta`.
fn stream_meta(events: &[StreamEvent]) -> (String, String, u64, u64, Option<String>) {
    let StreamEvent::MessageStart { id, model, usage } = &events[0] else {
        panic!("no message_start");
    };
    let StreamEvent::MessageDelta {
        usage: out,
        stop_sequence,
        ..
    } = &events[events.len() - 2]
    else {
        panic!("no message_delta");
    };
    assert_eq!(usage.output_tokens, None);
    assert_eq!(out.input_tokens, None);
    (
        id.clone(),
        model.clone(),
        usage.input_tokens.unwrap(),
        out.output_tokens.unwrap(),
        stop_sequence.clone(),
    )
}

#[tokio::test]
async fn plain_text_complete() {
    let r = complete(&provider(), request("hello there")).await;
    assert_eq!(text_of(&r), "Mock reply to: hello there");
    assert_eq!(r.content.len(), 1);
    assert_eq!(r.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(r.stop_sequence, None);
    assert_eq!(r.model, "mock-1");
    assert!(r.origin.is_none());
    let hex = r.id.strip_prefix("msg_mock_").unwrap();
    assert_eq!(hex.len(), 16);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(r.usage.input_tokens, Some(2));
    assert_eq!(r.usage.output_tokens, Some(5));
}

#[tokio::test]
async fn plain_text_stream_is_anthropic_shaped_and_matches_the_complete_answer() {
    let p = provider();
    let ev = events(&p, request("hello there")).await;
    assert_eq!(
        shapes(&ev),
        [
            "message_start",
            "start 0 text",
            "text 0 Mock ",
            "text 0 reply ",
            "text 0 to: ",
            "text 0 hello ",
            "text 0 there",
            "stop 0",
            "message_delta end_turn",
            "message_stop",
        ]
    );
    let r = complete(&p, request("hello there")).await;
    assert_eq!(accumulated(&ev, 0), text_of(&r));
    let (id, model, input, output, stop_sequence) = stream_meta(&ev);
    assert_eq!((id, model), (r.id.clone(), r.model.clone()));
    assert_eq!(Some(input), r.usage.input_tokens);
    assert_eq!(Some(output), r.usage.output_tokens);
    assert_eq!(stop_sequence, None);
}

fn three_tools_request() -> ChatRequest {
    let mut req = request("Use get_weather, GET_TIME and search for Paris, limit=5");
    req.tools = Some(vec![
        tool(
            "search",
            json!({"type": "object",
                   "properties": {"query": {"type": "string"}, "limit": {"type": "integer"},
                                  "lang": {"type": "string"}},
                   "required": ["query", "limit"]}),
        ),
        tool("translate", json!({"type": "object", "properties": {}})),
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"location": {"type": "string"},
                   "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["location", "unit"]}),
        ),
        tool(
            "get_time",
            json!({"type": "object", "properties": {"timezone": {"type": "string"}}}),
        ),
    ]);
    req
}

fn valid_tool_id(id: &str) -> bool {
    id.starts_with("toolu_mock_")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[tokio::test]
async fn three_mentioned_tools_are_called_in_declaration_order() {
    let p = provider();
    let r = complete(&p, three_tools_request()).await;
    assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(r.content.len(), 4);
    assert_eq!(text_of(&r), "Calling search, get_weather, get_time.");
    let calls: Vec<&ToolUseBlock> = r.content[1..]
        .iter()
        .map(|b| match b {
            ContentBlock::ToolUse(u) => u,
            other => panic!("expected tool_use, got {other:?}"),
        })
        .collect();
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["search", "get_weather", "get_time"]);
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert!(ids.iter().all(|id| valid_tool_id(id)), "{ids:?}");
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3);

    let args: Vec<Value> = calls
        .iter()
        .map(|c| match &c.input {
            ToolInput::Json(raw) => serde_json::from_str(raw.get()).unwrap(),
            ToolInput::Arguments(_) => panic!("mock calls carry JSON objects"),
        })
        .collect();
    assert_eq!(args[0], json!({"query": "Paris", "limit": 5}));
    assert_eq!(args[1], json!({"location": "mock", "unit": "celsius"}));
    assert_eq!(args[2], json!({"timezone": "mock"}));

    // The stream carries the same blocks, arguments in two fragments each.
    let ev = events(&p, three_tools_request()).await;
    let mut expected = vec!["message_start".to_owned(), "start 0 text".to_owned()];
    expected
        .extend(["text 0 Calling ", "text 0 search, ", "text 0 get_weather, "].map(String::from));
    expected.extend(["text 0 get_time.", "stop 0"].map(String::from));
    for i in 1..=3 {
        expected.extend([
            format!("start {i} tool_use"),
            format!("json {i}"),
            format!("json {i}"),
        ]);
        expected.push(format!("stop {i}"));
    }
    expected.extend(["message_delta tool_use", "message_stop"].map(String::from));
    assert_eq!(shapes(&ev), expected);
    for (i, call) in calls.iter().enumerate() {
        let index = i as u32 + 1;
        let Some(StreamEvent::BlockStart {
            block: ContentBlock::ToolUse(start),
            ..
        }) = ev
            .iter()
            .find(|e| matches!(e, StreamEvent::BlockStart { index: n, .. } if *n == index))
        else {
            panic!("no start for block {index}");
        };
        assert_eq!((&start.id, &start.name), (&call.id, &call.name));
        assert!(matches!(&start.input, ToolInput::Json(raw) if raw.get() == "{}"));
        let streamed: Value = serde_json::from_str(&accumulated(&ev, index)).unwrap();
        assert_eq!(streamed, args[i]);
    }
    assert_eq!(accumulated(&ev, 0), text_of(&r));
    let (_, _, input, output, _) = stream_meta(&ev);
    assert_eq!(
        (Some(input), Some(output)),
        (r.usage.input_tokens, r.usage.output_tokens)
    );
}

#[tokio::test]
async fn tool_choice_and_parallel_flag_are_honoured() {
    let p = provider();
    let mut req = three_tools_request();
    req.tool_choice = Some(ToolChoice::None);
    assert_eq!(
        complete(&p, req).await.stop_reason,
        Some(StopReason::EndTurn)
    );

    let mut req = three_tools_request();
    req.parallel_tool_calls = Some(false);
    assert_eq!(complete(&p, req).await.content.len(), 2);

    let mut req = request("no tool named here");
    req.tools = three_tools_request().tools;
    req.tool_choice = Some(ToolChoice::Tool("translate".to_owned()));
    let r = complete(&p, req).await;
    assert!(matches!(&r.content[1], ContentBlock::ToolUse(u) if u.name == "translate"));

    let mut req = request("no tool named here");
    req.tools = three_tools_request().tools;
    req.tool_choice = Some(ToolChoice::Required);
    let r = complete(&p, req).await;
    assert!(matches!(&r.content[1], ContentBlock::ToolUse(u) if u.name == "search"));
}

fn result(id: &str, text: &str) -> ContentBlock {
    ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: id.to_owned(),
        content: Content::text(text),
        is_error: None,
        cache_control: None,
        extra: Extra::new(),
    })
}

#[tokio::test]
async fn tool_results_are_summarized() {
    let p = provider();
    let first = complete(&p, three_tools_request()).await;
    let calls: Vec<ToolUseBlock> = first
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    let mut req = three_tools_request();
    req.messages.push(Message {
        role: Role::Assistant,
        content: Content::blocks(first.content.clone()),
        extra: Extra::new(),
    });
    let long = "x".repeat(300);
    req.messages.push(Message {
        role: Role::User,
        content: Content::blocks(vec![
            result(&calls[0].id, "3 results\nfound"),
            result(&calls[1].id, "sunny, 21C"),
        ]),
        extra: Extra::new(),
    });
    req.messages.push(Message {
        role: Role::Tool,
        content: Content::blocks(vec![result("call_unknown", &long)]),
        extra: Extra::new(),
    });
    let r = complete(&p, req.clone()).await;
    assert_eq!(r.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(
        text_of(&r),
        format!(
            "Tool result for search: 3 results found\nTool result for get_weather: sunny, 21C\n\
             Tool result for call_unknown: {}",
            "x".repeat(200)
        )
    );
    let ev = events(&p, req).await;
    assert_eq!(accumulated(&ev, 0), text_of(&r));
    assert!(r.usage.input_tokens.unwrap() > first.usage.input_tokens.unwrap());
}

#[tokio::test]
async fn same_request_same_answer() {
    let p = provider();
    let a = complete(&p, three_tools_request()).await;
    let b = complete(&p, three_tools_request()).await;
    assert_eq!(format!("{:?}", a.content), format!("{:?}", b.content));
    assert_eq!(a.id, b.id);
    let other = complete(&p, request("something else")).await;
    assert_ne!(a.id, other.id);
    // A different provider instance answers the same way.
    let c = complete(
        &provider_with_delay(Duration::from_secs(1)),
        three_tools_request(),
    )
    .await;
    assert_eq!(a.id, c.id);
}

#[tokio::test]
async fn max_tokens_truncates() {
    let p = provider();
    let mut req = request("one two three four");
    req.max_tokens = Some(3);
    let r = complete(&p, req.clone()).await;
    assert_eq!(text_of(&r), "Mock reply to:");
    assert_eq!(r.stop_reason, Some(StopReason::MaxTokens));
    assert_eq!(r.usage.output_tokens, Some(3));
    let ev = events(&p, req).await;
    assert_eq!(
        shapes(&ev)[2..],
        [
            "text 0 Mock ",
            "text 0 reply ",
            "text 0 to:",
            "stop 0",
            "message_delta max_tokens",
            "message_stop"
        ]
    );

    // Exactly at the limit is a natural end.
    let mut req = request("one two");
    req.max_tokens = Some(5);
    assert_eq!(
        complete(&p, req).await.stop_reason,
        Some(StopReason::EndTurn)
    );
}

#[tokio::test]
async fn stop_sequences_cut_the_answer() {
    let p = provider();
    let mut req = request("say hello STOP world END");
    req.stop = Some(StopSequences {
        sequences: vec!["END".to_owned(), "STOP".to_owned()],
        single_string: false,
    });
    let r = complete(&p, req.clone()).await;
    assert_eq!(text_of(&r), "Mock reply to: say hello ");
    assert_eq!(r.stop_reason, Some(StopReason::StopSequence));
    assert_eq!(r.stop_sequence.as_deref(), Some("STOP"));
    assert_eq!(r.usage.output_tokens, Some(5));
    let ev = events(&p, req).await;
    assert_eq!(accumulated(&ev, 0), text_of(&r));
    assert_eq!(stream_meta(&ev).4.as_deref(), Some("STOP"));
    assert_eq!(shape(&ev[ev.len() - 2]), "message_delta stop_sequence");
}

fn assert_mock_error(e: &ProviderError, status: u16, kind: ErrorKind, retry: Option<u64>) {
    assert_eq!(e.kind, kind, "{status}");
    assert_eq!(e.status, Some(status));
    assert_eq!(e.retry_after, retry.map(Duration::from_secs));
    assert_eq!(e.message, format!("mock error {status}"));
    let api = e.api_error.as_ref().unwrap();
    assert_eq!((api.status, api.kind), (status, kind));
}

#[tokio::test]
async fn error_markers_fail_the_call() {
    let p = provider();
    for (status, kind, retry) in [
        (529, ErrorKind::Overloaded, None),
        (429, ErrorKind::RateLimited, Some(1)),
        (500, ErrorKind::Upstream, None),
        (400, ErrorKind::InvalidRequest, None),
    ] {
        let text = format!("please [mock:error:{status}] fail");
        for req in [request(&text), streaming(request(&text))] {
            let e = p.send(&req, cx()).await.unwrap_err();
            assert_mock_error(&e, status, kind, retry);
        }
    }
    assert!(!ErrorKind::from_status(400).retryable_elsewhere());
}

#[tokio::test]
async fn error_after_first_fails_mid_stream() {
    let p = provider();
    let req = request("hi [mock:error-after-first:529] there");
    let mut s = open_stream(&p, req.clone()).await;
    let mut seen = Vec::new();
    let err = loop {
        match s.next().await.expect("the stream ends with an error") {
            Ok(frame) => seen.extend(frame.events),
            Err(e) => break e,
        }
    };
    assert_eq!(
        shapes(&seen),
        ["message_start", "start 0 text", "text 0 Mock "]
    );
    assert_mock_error(&err, 529, ErrorKind::Overloaded, None);
    assert!(s.next().await.is_none());
    // Without a stream, the call simply fails.
    let e = p.send(&req, cx()).await.unwrap_err();
    assert_mock_error(&e, 529, ErrorKind::Overloaded, None);
}

#[tokio::test(start_paused = true)]
async fn streams_are_paced_by_the_delay() {
    let p = provider_with_delay(Duration::from_millis(50));
    let req = request("tell me a long story");
    let start = tokio::time::Instant::now();
    let ev = events(&p, req.clone()).await;
    let deltas = ev
        .iter()
        .filter(|e| matches!(e, StreamEvent::BlockDelta { .. }))
        .count();
    assert!((50..65).contains(&deltas), "{deltas}");
    assert_eq!(start.elapsed(), Duration::from_millis(50) * deltas as u32);

    // Dropping the stream early stops it: no more time passes for it.
    let start = tokio::time::Instant::now();
    let mut s = open_stream(&p, req).await;
    for _ in 0..5 {
        s.next().await.unwrap().unwrap();
    }
    // message_start, block start, then three paced deltas.
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    drop(s);
    tokio::time::sleep(Duration::from_secs(10)).await;

    // A zero delay never sleeps.
    let start = tokio::time::Instant::now();
    let ev = events(&provider(), request("tell me a long story")).await;
    assert!(ev.len() > 50);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn identity_models_and_capabilities() {
    let p = MockProvider::new("demo", MockOptions::default());
    assert_eq!(p.id(), "demo");
    assert_eq!(p.models(), ["mock"]);
    assert_eq!(
        MockOptions::default().stream_delay,
        Duration::from_millis(20)
    );
    let caps = p.capabilities("mock");
    // Everything but message threads (it keeps no conversations).
    assert_eq!(
        caps,
        weir_model::Capabilities {
            threads: false,
            ..weir_model::Capabilities::ALL
        }
    );
    assert!(caps.native_dialect.is_none());

    // An empty conversation is still answered, with at least one input token.
    let r = complete(&p, ChatRequest::default()).await;
    assert_eq!(r.usage.input_tokens, Some(1));
}

#[tokio::test]
async fn openai_clients_get_chatcmpl_ids_and_n_above_one_is_refused() {
    let p = provider();
    let mut req = request("hello there");
    req.origin = Some(weir_model::Dialect::OpenAi);
    let r = complete(&p, req.clone()).await;
    let hex = r.id.strip_prefix("chatcmpl-mock-").unwrap();
    assert_eq!(hex.len(), 16);
    for n in ["1", "null"] {
        req.extra.insert(
            "n".to_owned(),
            serde_json::value::RawValue::from_string(n.into()).unwrap(),
        );
        complete(&p, req.clone()).await;
    }
    req.extra.insert(
        "n".to_owned(),
        serde_json::value::RawValue::from_string("3".into()).unwrap(),
    );
    let Err(e) = p.send(&req, cx()).await else {
        panic!("n = 3 was answered");
    };
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.status, Some(400));
    assert!(e.message.contains("n = 3"), "{}", e.message);
}

#[tokio::test]
async fn responses_ids_differ_by_request_and_the_request_s_settings_are_echoed() {
    use weir_model::{ResponsesReply, ResponsesRequest};
    let p = provider();
    let answer = |body: Value| {
        let p = &p;
        async move {
            let req = ResponsesRequest::decode(body.to_string().as_bytes()).unwrap();
            match p.responses(&req, cx()).await.unwrap() {
                ResponsesReply::Complete { body, .. } => {
                    serde_json::from_slice::<Value>(&body).unwrap()
                }
                ResponsesReply::Stream(_) => panic!("a stream"),
            }
        }
    };
    let plain = answer(json!({"model": "mock", "input": "x"})).await;
    let again = answer(json!({"model": "mock", "input": "x"})).await;
    let styled = answer(json!({"model": "mock", "input": "x", "instructions": "Talk like a pirate", "max_output_tokens": 16, "temperature": 0.1})).await;
    let next =
        answer(json!({"model": "mock", "input": "x", "previous_response_id": plain["id"]})).await;
    assert_eq!(plain["id"], again["id"], "deterministic");
    assert_ne!(plain["id"], styled["id"]);
    assert_ne!(plain["id"], next["id"]);
    assert_eq!(styled["instructions"], "Talk like a pirate");
    assert_eq!(styled["max_output_tokens"], 16);
    assert_eq!(styled["temperature"], 0.1);
    assert_eq!(next["previous_response_id"], plain["id"]);
    assert_eq!(plain["previous_response_id"], Value::Null);
}
