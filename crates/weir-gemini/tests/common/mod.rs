//! Helpers the test files share: run SSE bytes through the stream decoder, render events
//! compactly, check a canonical event sequence is well formed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use weir_gemini::StreamDecoder;
use weir_model::{ContentBlock, Delta, ProviderError, StreamEvent, Usage};
use weir_upstream::{BodyDecoder, SseBody};

/// Decodes a whole SSE body fed in pieces of `split` bytes (0: all at once).
pub fn stream_events(body: &[u8], split: usize) -> Result<Vec<StreamEvent>, ProviderError> {
    let mut dec = SseBody::new(StreamDecoder::new().with_model("fallback-model"));
    let mut frames = Vec::new();
    if split == 0 {
        dec.feed(body, &mut frames)?;
    } else {
        for piece in body.chunks(split) {
            dec.feed(piece, &mut frames)?;
        }
    }
    dec.finish(&mut frames)?;
    Ok(frames.into_iter().flat_map(|f| f.events).collect())
}

/// SSE text from `data:` payloads.
pub fn sse(chunks: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for c in chunks {
        out.push_str("data: ");
        out.push_str(c);
        out.push_str("\r\n\r\n");
    }
    out.into_bytes()
}

fn usage(u: &Usage) -> String {
    let f = |o: Option<u64>| o.map_or("-".to_owned(), |n| n.to_string());
    format!(
        "in={} out={} cache={} reasoning={}",
        f(u.input_tokens),
        f(u.output_tokens),
        f(u.cache_read_tokens),
        f(u.reasoning_tokens)
    )
}

/// One line per event.
pub fn summary(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::MessageStart {
                id,
                model,
                usage: u,
            } => {
                format!("start {id} {model} {}", usage(u))
            }
            StreamEvent::BlockStart { index, block } => match block {
                ContentBlock::ToolUse(t) => format!("+{index} tool_use {} {}", t.id, t.name),
                other => format!("+{index} {}", other.type_name()),
            },
            StreamEvent::BlockDelta { index, delta } => match delta {
                Delta::Text(t) => format!("{index} text {}", t.as_str()),
                Delta::Thinking(t) => format!("{index} thinking {}", t.as_str()),
                Delta::InputJson(j) => format!("{index} json {}", j.as_str()),
                Delta::Signature(s) => format!("{index} sig {s}"),
                Delta::Unknown { raw, .. } => format!("{index} unknown {}", raw.get()),
            },
            StreamEvent::BlockStop { index } => format!("-{index}"),
            StreamEvent::MessageDelta {
                stop_reason,
                usage: u,
                ..
            } => format!(
                "delta {} {}",
                stop_reason.as_ref().map_or("none", |s| s.anthropic_name()),
                usage(u)
            ),
            StreamEvent::MessageStop => "stop".to_owned(),
            StreamEvent::Ping => "ping".to_owned(),
            StreamEvent::Error(e) => format!("error {:?} {} {}", e.kind, e.status, e.message),
            StreamEvent::Unknown { event } => format!("unknown {event}"),
        })
        .collect()
}

/// MessageStart first; every block opened once, before its deltas, at the next index, and
/// closed; at most one block open at a time; tool-use input is JSON once concatenated;
/// MessageDelta then MessageStop last.
pub fn check_well_formed(events: &[StreamEvent]) -> Result<(), String> {
    let mut it = events.iter().enumerate();
    match it.next() {
        Some((_, StreamEvent::MessageStart { .. })) => {}
        other => return Err(format!("first event is not MessageStart: {other:?}")),
    }
    let mut open: Option<(u32, bool, String)> = None;
    let mut next = 0u32;
    let mut delta_seen = false;
    let mut stopped = false;
    for (at, e) in it {
        if stopped {
            return Err(format!("event {at} after MessageStop: {e:?}"));
        }
        match e {
            StreamEvent::MessageStart { .. } => return Err(format!("second MessageStart at {at}")),
            StreamEvent::BlockStart { index, block } => {
                if let Some((i, ..)) = &open {
                    return Err(format!("block {index} opens at {at} while {i} is open"));
                }
                if *index != next {
                    return Err(format!(
                        "block {index} opens at {at}; expected index {next}"
                    ));
                }
                next += 1;
                open = Some((
                    *index,
                    matches!(block, ContentBlock::ToolUse(_))
                        || block.type_name() == "server_tool_use",
                    String::new(),
                ));
            }
            StreamEvent::BlockDelta { index, delta } => match &mut open {
                Some((i, tool, json)) if i == index => {
                    if let Delta::InputJson(j) = delta {
                        if !*tool {
                            return Err(format!("input_json delta on a non-tool block at {at}"));
                        }
                        json.push_str(&j.as_str());
                    }
                }
                _ => {
                    return Err(format!(
                        "delta for block {index} at {at}, which is not open"
                    ))
                }
            },
            StreamEvent::BlockStop { index } => match open.take() {
                Some((i, tool, json)) if i == *index => {
                    if tool {
                        let v: serde_json::Value = serde_json::from_str(&json)
                            .map_err(|e| format!("tool input of block {i} is not JSON: {e}"))?;
                        if !v.is_object() {
                            return Err(format!("tool input of block {i} is not an object"));
                        }
                    }
                }
                _ => return Err(format!("stop for block {index} at {at}, which is not open")),
            },
            StreamEvent::MessageDelta { .. } => {
                if open.is_some() || delta_seen {
                    return Err(format!("MessageDelta at {at} with a block open or twice"));
                }
                delta_seen = true;
            }
            StreamEvent::MessageStop => {
                if !delta_seen {
                    return Err(format!("MessageStop at {at} without MessageDelta"));
                }
                stopped = true;
            }
            StreamEvent::Ping | StreamEvent::Unknown { .. } => {}
            StreamEvent::Error(err) => return Err(format!("error event at {at}: {err}")),
        }
    }
    if !stopped {
        return Err("no MessageStop".into());
    }
    Ok(())
}
