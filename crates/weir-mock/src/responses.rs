//! The Responses API, offline: the last user text echoed back as one message, whole or
//! streamed word by word with the events OpenAI sends, in its order.

use std::time::Duration;

use serde_json::{json, Value};
use weir_model::{
    ApiError, ByteStream, ErrorKind, ProviderError, ResponsesReply, ResponsesRequest, Usage,
};

use crate::plan::{chunk_end, echo, error_marker, words};

/// Answers a Responses API request (text only: tools are not called).
pub(crate) fn respond(
    req: &ResponsesRequest,
    delay: Duration,
) -> Result<ResponsesReply, ProviderError> {
    let input = req
        .fields
        .iter()
        .find(|(k, _)| k == "input")
        .map(|(_, v)| v.get())
        .ok_or_else(|| {
            ProviderError::from_api(
                ApiError::new(ErrorKind::InvalidRequest, "`input` is required"),
                None,
            )
        })?;
    let input: Value = serde_json::from_str(input).unwrap_or_default();
    let user = last_user_text(&input);
    if let Some(e) = error_marker(&user) {
        return Err(e);
    }
    let text = echo(&user);
    // Deterministic, and distinct for distinct requests (a continuation, other settings).
    let mut whole = req.model.clone();
    for (k, v) in &req.fields {
        whole.push('\n');
        whole.push_str(k);
        whole.push('=');
        whole.push_str(v.get());
    }
    let id = format!("{:016x}", fnv(&whole));
    // What the request set, echoed as OpenAI does.
    let field = |name: &str, default: Value| {
        req.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| serde_json::from_str::<Value>(v.get()).ok())
            .unwrap_or(default)
    };
    let input_tokens = words(&user).max(1) as u64;
    let output_tokens = words(&text) as u64;
    let message = |status: &str, text: &str| {
        json!({
            "type": "message",
            "id": format!("msg_mock_{id}"),
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    };
    // The answer is deterministic; its time is the real one, as chat answers' `created`.
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let response = |status: &str, output: Vec<Value>, usage: Value| {
        json!({
            "id": format!("resp_mock_{id}"),
            "object": "response",
            "created_at": created_at,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": field("instructions", Value::Null),
            "max_output_tokens": field("max_output_tokens", Value::Null),
            "model": req.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": field("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": field("store", json!(false)),
            "temperature": field("temperature", json!(1.0)),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": field("top_p", json!(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "metadata": field("metadata", json!({})),
        })
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let done = response("completed", vec![message("completed", &text)], usage);
    if !req.stream {
        return Ok(ResponsesReply::Complete {
            body: done.to_string().into_bytes(),
            id: Some(format!("resp_mock_{id}")),
            usage: Usage {
                input_tokens: Some(input_tokens),
                output_tokens: Some(output_tokens),
                ..Usage::default()
            },
        });
    }
    // Events before the text, one per word, and after it; only the words are paced.
    let mut head = vec![
        (
            "response.created",
            json!({"response": response("in_progress", vec![], Value::Null)}),
        ),
        (
            "response.in_progress",
            json!({"response": response("in_progress", vec![], Value::Null)}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {
            "type": "message", "id": format!("msg_mock_{id}"), "status": "in_progress",
            "role": "assistant", "content": []}}),
        ),
        (
            "response.content_part.added",
            json!({"item_id": format!("msg_mock_{id}"),
            "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    let mut words_out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let end = chunk_end(&text, pos);
        words_out.push((
            "response.output_text.delta",
            json!({"item_id": format!("msg_mock_{id}"), "output_index": 0, "content_index": 0,
                "delta": &text[pos..end], "logprobs": []}),
        ));
        pos = end;
    }
    let tail = vec![
        (
            "response.output_text.done",
            json!({"item_id": format!("msg_mock_{id}"),
            "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        ),
        (
            "response.content_part.done",
            json!({"item_id": format!("msg_mock_{id}"),
            "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []}}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": message("completed", &text)}),
        ),
        ("response.completed", json!({"response": done})),
    ];
    let n_head = head.len();
    let n_words = words_out.len();
    head.extend(words_out);
    head.extend(tail);
    let events: Vec<(bool, Vec<u8>)> = head
        .into_iter()
        .enumerate()
        .map(|(seq, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(seq);
            let paced = seq >= n_head && seq < n_head + n_words;
            (
                paced,
                format!("event: {name}\ndata: {data}\n\n").into_bytes(),
            )
        })
        .collect();
    let stream: ByteStream = Box::pin(futures_util::stream::unfold(
        events.into_iter(),
        move |mut events| async move {
            let (paced, bytes) = events.next()?;
            if paced && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok(bytes::Bytes::from(bytes)), events))
        },
    ));
    Ok(ResponsesReply::Stream(stream))
}

/// The text of the last user turn: `input` as a string, or the last user message's text
/// (a string `content`, or its `input_text` parts joined).
fn last_user_text(input: &Value) -> String {
    if let Some(s) = input.as_str() {
        return s.to_owned();
    }
    let Some(items) = input.as_array() else {
        return String::new();
    };
    items
        .iter()
        .rev()
        .filter(|i| i["role"] == "user")
        .find_map(|i| match &i["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter(|p| p["type"] == "input_text")
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                (!texts.is_empty()).then(|| texts.join(" "))
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::StreamExt;

    fn req(body: &str) -> ResponsesRequest {
        ResponsesRequest::decode(body.as_bytes()).unwrap()
    }

    #[test]
    fn whole_answers_echo_the_last_user_text() {
        let ResponsesReply::Complete { body, usage, .. } = respond(
            &req(r#"{"model":"mock","input":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"input_text","text":"hello there"}]}]}"#),
            Duration::ZERO,
        )
        .unwrap() else {
            panic!("not whole")
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["output"][0]["content"][0]["text"],
            "Mock reply to: hello there"
        );
        assert_eq!(v["status"], "completed");
        // A real time: after 2025-01-01.
        assert!(v["created_at"].as_u64().unwrap() > 1_735_689_600, "{v}");
        assert_eq!(usage.input_tokens, Some(2));
        assert!(respond(&req(r#"{"model":"mock"}"#), Duration::ZERO).is_err());
        let e = respond(
            &req(r#"{"model":"mock","input":"[mock:error:429]"}"#),
            Duration::ZERO,
        )
        .unwrap_err();
        assert_eq!(e.status, Some(429));
    }

    #[tokio::test]
    async fn streams_carry_openais_events_in_order() {
        let ResponsesReply::Stream(s) = respond(
            &req(r#"{"model":"mock","input":"hello","stream":true}"#),
            Duration::ZERO,
        )
        .unwrap() else {
            panic!("not a stream")
        };
        let bytes: Vec<u8> = s
            .map(|b| b.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        let text = String::from_utf8(bytes).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"response.created"));
        assert_eq!(names.last(), Some(&"response.completed"));
        let deltas: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|v| v["type"] == "response.output_text.delta")
            .map(|v| v["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, "Mock reply to: hello");
        assert!(text.contains(r#""sequence_number":0"#));
    }
}
