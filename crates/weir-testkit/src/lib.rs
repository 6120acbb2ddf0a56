//! Test support shared by Weir's crates: walking the recorded-traffic corpus (read at test
//! time from `$WEIR_CORPUS`, never copied into the repository), the project's own
//! fixtures, SSE helpers, a JSON comparison that names the first difference, and a
//! fault-injecting upstream server ([`upstream`]), and a throwaway Redis server ([`redis`]).
//!
//! A dev-dependency only: nothing in the gateway links it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

pub mod redis;
pub mod upstream;

use serde_json::Value;

/// One recorded HTTP exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `<provider>/<case>/NN`, for messages.
    pub name: String,
    /// The request URL, if recorded.
    pub url: Option<String>,
    /// The request body, if recorded and JSON.
    pub request: Option<Value>,
    /// The response status.
    pub status: u16,
    /// Whether the response is a stream.
    pub streaming: bool,
    /// The response content type.
    pub content_type: String,
    /// The raw response body.
    pub body: Vec<u8>,
}

/// The corpus directory from `WEIR_CORPUS`, or `None` (with a printed reason) when unset.
pub fn corpus_dir() -> Option<PathBuf> {
    match std::env::var_os("WEIR_CORPUS") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_dir(), "WEIR_CORPUS={} is not a directory", p.display());
            Some(p)
        }
        _ => {
            println!(
                "skipping: WEIR_CORPUS is unset, so the recorded-traffic corpus is not checked"
            );
            None
        }
    }
}

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Every exchange recorded for `provider` under `root` (layout `<provider>/<case>/NN.*`).
pub fn exchanges(root: &Path, provider: &str) -> Vec<Exchange> {
    let dir = root.join(provider);
    let Ok(cases) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut cases: Vec<PathBuf> = cases
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut out = Vec::new();
    for case in cases {
        let mut files: Vec<PathBuf> = fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let fname = f.file_name().unwrap().to_string_lossy().into_owned();
            let Some(nn) = fname.strip_suffix(".response.json") else {
                continue;
            };
            let meta: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
            let body_file = meta["body_file"].as_str().unwrap_or("");
            let body = fs::read(case.join(body_file)).unwrap_or_default();
            let req_path = case.join(format!("{nn}.request.json"));
            let (url, request) = match fs::read(&req_path) {
                Ok(bytes) => {
                    let r: Value = serde_json::from_slice(&bytes).unwrap();
                    let body = r.get("body").filter(|b| b.is_object()).cloned();
                    (r["url"].as_str().map(str::to_owned), body)
                }
                Err(_) => (None, None),
            };
            let content_type = header(&meta["headers"], "content-type").unwrap_or_default();
            out.push(Exchange {
                name: format!(
                    "{provider}/{}/{nn}",
                    case.file_name().unwrap().to_string_lossy()
                ),
                url,
                request,
                status: meta["status"].as_u64().unwrap_or(0) as u16,
                streaming: meta["streaming"].as_bool().unwrap_or(false),
                content_type,
                body,
            });
        }
    }
    out
}

fn header(headers: &Value, name: &str) -> Option<String> {
    let obj = headers.as_object()?;
    for (k, v) in obj {
        if k.eq_ignore_ascii_case(name) {
            return match v {
                Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_owned),
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
        }
    }
    None
}

/// Every stream recorded for these providers under `root` that the upstream answered
/// (status 200, `text/event-stream`).
pub fn recorded_streams(root: &Path, providers: &[&str]) -> Vec<Exchange> {
    providers
        .iter()
        .flat_map(|p| exchanges(root, p))
        .filter(|x| x.streaming && x.status == 200 && x.content_type.contains("event-stream"))
        .collect()
}

/// Decodes the events of the recorded stream `x` twice: as they are with `fast`, and
/// through `slow` (an edit that defeats exact-shape fast paths) with `general`, asserting
/// each event gives the same canonical events both ways (or fails both ways). Returns how
/// many events there were.
pub fn assert_fast_path_agrees(
    x: &Exchange,
    slow: impl Fn(&weir_sse::Event) -> weir_sse::Event,
    mut fast: impl FnMut(weir_sse::Event) -> Result<weir_model::Frame, weir_model::WireError>,
    mut general: impl FnMut(weir_sse::Event) -> Result<weir_model::Frame, weir_model::WireError>,
) -> usize {
    let events = sse_events(&x.body);
    let n = events.len();
    for ev in events {
        let slowed = slow(&ev);
        let a = fast(ev).map(|f| format!("{:?}", f.events));
        let b = general(slowed).map(|f| format!("{:?}", f.events));
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", x.name),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{}: {a:?} against {b:?}", x.name),
        }
    }
    n
}

/// `v` with every object's keys in sorted order (serde_json keeps insertion order here),
/// for snapshots that should not depend on the order a writer chose.
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// An Anthropic stream's events as JSON, and what web search tests read of them: the type
/// of each block started, and each `citations_delta` as (block index, page URL).
pub struct AnthropicEvents(pub Vec<Value>);

impl AnthropicEvents {
    /// The events of a whole stream's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        AnthropicEvents(
            sse_events(bytes)
                .iter()
                .map(|e| serde_json::from_str(e.data()).expect("JSON event data"))
                .collect(),
        )
    }

    /// The type of each block started, in order.
    pub fn block_starts(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .filter_map(|e| e["content_block"]["type"].as_str())
            .collect()
    }

    /// Each citation streamed: its block's index and the page it cites.
    pub fn citations(&self) -> Vec<(u64, &str)> {
        self.0
            .iter()
            .filter(|e| e["delta"]["type"] == "citations_delta")
            .filter_map(|e| {
                Some((
                    e["index"].as_u64()?,
                    e["delta"]["citation"]["url"].as_str()?,
                ))
            })
            .collect()
    }
}

/// All SSE events of a complete recorded stream. Some recordings lost the blank line
/// that ends the last event (a decoder rightly discards an unterminated event), so one is
/// added when missing.
pub fn sse_events(bytes: &[u8]) -> Vec<weir_sse::Event> {
    let mut d = weir_sse::Decoder::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out).expect("valid SSE");
    if !(bytes.ends_with(b"\n\n") || bytes.ends_with(b"\r\n\r\n") || bytes.is_empty()) {
        d.feed(b"\n\n", &mut out).expect("valid SSE");
    }
    d.finish();
    out
}

/// The first difference between two JSON values, as `path: left vs right`, or `None` when
/// they are equal. Numbers compare by value (`1` equals `1.0`: JSON does not tell them
/// apart); everything else, key sets included, compares exactly.
pub fn json_diff(a: &Value, b: &Value) -> Option<String> {
    diff_at("$", a, b)
}

fn diff_at(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y || x.as_f64() == y.as_f64() {
                None
            } else {
                Some(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = diff_at(&format!("{path}.{k}"), v, w) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{k}: present on the left only ({v})")),
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    return Some(format!("{path}.{k}: present on the right only ({})", y[k]));
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: {} items vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| diff_at(&format!("{path}[{i}]"), v, w))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// Asserts two JSON texts are equal in the sense of [`json_diff`].
pub fn assert_json_eq(what: &str, left: &[u8], right: &[u8]) {
    let l: Value =
        serde_json::from_slice(left).unwrap_or_else(|e| panic!("{what}: left is not JSON: {e}"));
    let r: Value =
        serde_json::from_slice(right).unwrap_or_else(|e| panic!("{what}: right is not JSON: {e}"));
    if let Some(d) = json_diff(&l, &r) {
        panic!("{what}: {d}");
    }
}

/// What a canonical stream amounts to, for comparing streams across dialects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Collected {
    /// Response id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Text of the text blocks, in order.
    pub text: Vec<String>,
    /// Reasoning text.
    pub thinking: String,
    /// Thinking signatures.
    pub signatures: Vec<String>,
    /// Tool calls: (id, name, concatenated argument JSON).
    pub tool_calls: Vec<(String, String, String)>,
    /// Stop reason, Anthropic name.
    pub stop_reason: Option<String>,
    /// (input excluding cache, output, cache read, cache write).
    pub usage: (u64, u64, u64, u64),
    /// Whether the message was closed (MessageStop).
    pub stopped: bool,
    /// Errors, as `kind: message`.
    pub errors: Vec<String>,
}

/// Accumulates canonical frames (of one stream) into a [`Collected`].
pub fn collect<'a>(frames: impl IntoIterator<Item = &'a weir_model::Frame>) -> Collected {
    use weir_model::{ContentBlock, Delta, StreamEvent, Usage};
    let mut c = Collected::default();
    let mut usage = Usage::default();
    // block index -> (kind, position in c.text or c.tool_calls)
    let mut blocks: Vec<(u32, char, usize)> = Vec::new();
    for f in frames {
        for ev in &f.events {
            match ev {
                StreamEvent::MessageStart {
                    id,
                    model,
                    usage: u,
                } => {
                    c.id.clone_from(id);
                    c.model.clone_from(model);
                    usage.merge(u);
                }
                StreamEvent::BlockStart { index, block } => match block {
                    ContentBlock::Text(t) => {
                        c.text.push(t.text.as_str().into_owned());
                        blocks.push((*index, 't', c.text.len() - 1));
                    }
                    ContentBlock::ToolUse(t) => {
                        let args = match &t.input {
                            weir_model::ToolInput::Json(raw) if raw.get() != "{}" => {
                                raw.get().to_owned()
                            }
                            weir_model::ToolInput::Arguments(a) => a.clone(),
                            _ => String::new(),
                        };
                        c.tool_calls.push((t.id.clone(), t.name.clone(), args));
                        blocks.push((*index, 'u', c.tool_calls.len() - 1));
                    }
                    ContentBlock::Thinking(t) => {
                        c.thinking.push_str(&t.thinking.as_str());
                        blocks.push((*index, 'h', 0));
                    }
                    _ => blocks.push((*index, '?', 0)),
                },
                StreamEvent::BlockDelta { index, delta } => {
                    let Some(&(_, kind, pos)) = blocks.iter().rev().find(|b| b.0 == *index) else {
                        panic!("delta for unopened block {index}");
                    };
                    match (kind, delta) {
                        ('t', Delta::Text(t)) => c.text[pos].push_str(&t.as_str()),
                        ('u', Delta::InputJson(j)) => c.tool_calls[pos].2.push_str(&j.as_str()),
                        ('h', Delta::Thinking(t)) => c.thinking.push_str(&t.as_str()),
                        ('h', Delta::Signature(s)) => c.signatures.push(s.clone()),
                        _ => {}
                    }
                }
                StreamEvent::MessageDelta {
                    stop_reason,
                    usage: u,
                    ..
                } => {
                    c.stop_reason = stop_reason.as_ref().map(|r| r.anthropic_name().to_owned());
                    usage.merge(u);
                }
                StreamEvent::MessageStop => c.stopped = true,
                StreamEvent::Error(e) => c.errors.push(format!("{:?}: {}", e.kind, e.message)),
                _ => {}
            }
        }
    }
    for t in &mut c.tool_calls {
        if t.2.is_empty() {
            t.2 = "{}".to_owned();
        }
    }
    c.usage = (
        usage.input_tokens.unwrap_or(0),
        usage.output_tokens.unwrap_or(0),
        usage.cache_read_tokens.unwrap_or(0),
        usage.cache_write_tokens.unwrap_or(0),
    );
    c
}

/// A Claude Code-sized Messages request: 50 tools with JSON schemas and long
/// descriptions, a long cached system prompt, a multi-turn history with tool calls and
/// results, thinking and an `anthropic-beta` era feature set. About `target_bytes` long.
pub fn claude_code_request(target_bytes: usize) -> Vec<u8> {
    use serde_json::json;
    let para = "When you are asked to change code, read the file first, keep edits minimal, \
                preserve the existing style, and explain what you changed and why. ";
    let tools: Vec<Value> = (0..50)
        .map(|i| {
            json!({
                "name": format!("Tool{i}"),
                "description": para.repeat(4),
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "path": {"type": "string", "description": "Absolute path of the file to operate on."},
                        "limit": {"type": "number", "description": "How many lines to read."},
                        "flags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}}
                    },
                    "required": ["path"]
                }
            })
        })
        .collect();
    let mut messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>The user is working in /repo.</system-reminder>"},
        {"type": "text", "text": "Fix the failing test in crates/weir-sse.", "cache_control": {"type": "ephemeral"}}
    ]})];
    let mut body = json!({});
    let mut turn = 0;
    loop {
        body = json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 32000,
            "stream": true,
            "system": [
                {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                {"type": "text", "text": para.repeat(60), "cache_control": {"type": "ephemeral"}}
            ],
            "messages": messages,
            "tools": tools,
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": "{\"device_id\":\"5f0c\",\"session_id\":\"a1b2\"}"}
        });
        if serde_json::to_vec(&body).unwrap().len() >= target_bytes || turn > 1000 {
            break;
        }
        let id = format!("toolu_01{turn:022}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should look at the file.", "signature": "EqQBCkgIBxABGAIqQKzY3ZbbsUwS2F6b0mFzaQ=="},
            {"type": "tool_use", "id": id, "name": "Tool1", "input": {"path": "/repo/src/lib.rs", "limit": 200}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "fn main() {\n    println!(\"hello\");\n}\n".repeat(8)}
        ]}));
        turn += 1;
    }
    let mut out = String::with_capacity(target_bytes + 1024);
    write_type_first(&body, &mut out);
    out.into_bytes()
}

/// Writes JSON with each object's `type` key first, as SDKs do (serde_json's own maps
/// sort keys, which would put `type` last).
fn write_type_first(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut first = true;
            let typed = m.get_key_value("type").into_iter();
            for (k, v) in typed.chain(m.iter().filter(|(k, _)| k.as_str() != "type")) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_type_first(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_type_first(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A long Anthropic Messages stream: text, then a tool call, `n` text deltas in all.
pub fn anthropic_stream(n: usize) -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1200,\"cache_read_input_tokens\":20000,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..n {
        if i % 50 == 0 {
            s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
        s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"The quick brown fox jumps over the lazy dog, \\\"quoted\\\" and\\nnewline \"}}    \n\n");
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01bench\",\"name\":\"Read\",\"input\":{}}}\n\n");
    // Ten fragments of one JSON object: `{"path": "/repo/dir/.../lib.rs"}`.
    for i in 0..10 {
        let part = match i {
            0 => "{\\\"path\\\": \\\"/repo",
            9 => "/lib.rs\\\"}",
            _ => "/dir",
        };
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{part}\"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":900}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A long Chat Completions stream with `n` content chunks, a tool call and a usage chunk.
pub fn openai_stream(n: usize) -> Vec<u8> {
    let head = "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f785eb5f47\",\"choices\":[{\"index\":0,\"delta\":";
    let mut s = String::new();
    s.push_str(&format!("data: {head}{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    for _ in 0..n {
        s.push_str(&format!("data: {head}{{\"content\":\"The quick brown fox jumps over the lazy dog, \\\"quoted\\\" and\\nnewline \"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    }
    s.push_str(&format!("data: {head}{{\"tool_calls\":[{{\"index\":0,\"id\":\"call_bench\",\"type\":\"function\",\"function\":{{\"name\":\"Read\",\"arguments\":\"\"}}}}]}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    // Ten fragments of one JSON object, as in `anthropic_stream`.
    for i in 0..10 {
        let part = match i {
            0 => "{\\\"path\\\": \\\"/repo",
            9 => "/lib.rs\\\"}",
            _ => "/dir",
        };
        s.push_str(&format!("data: {head}{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\"{part}\"}}}}]}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    }
    s.push_str(&format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}}]}}\n\n"
    ));
    s.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":21200,\"completion_tokens\":900,\"total_tokens\":22100,\"prompt_tokens_details\":{\"cached_tokens\":20000}}}\n\n");
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

/// Re-encodes a canonical stream for both client dialects (Anthropic and OpenAI SSE),
/// decodes each back, and checks the text, thinking and tool calls (ids, names,
/// arguments) said the same. For streams from providers without a client dialect of their
/// own (Gemini, Bedrock Converse, Ollama).
pub fn reencode_both(frames: &[weir_model::Frame]) -> Result<(), String> {
    let original = collect(frames);
    let key = |c: &Collected| {
        let args: Vec<(String, String, Value)> = c
            .tool_calls
            .iter()
            .map(|(id, name, args)| {
                let v = if args.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(args).unwrap_or(Value::String(args.clone()))
                };
                // (The call's own id: an OpenAI client's carries Gemini's signature too,
                // set apart again when it comes back.)
                let own = weir_model::content::split_signed_id(id).map_or(id.as_str(), |s| s.0);
                (own.to_owned(), name.clone(), v)
            })
            .collect();
        (c.text.concat(), c.thinking.clone(), args)
    };
    // Anthropic clients.
    let mut enc = weir_anthropic::StreamEncoder::new();
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out)
            .map_err(|e| format!("encoding for Anthropic clients: {e}"))?;
    }
    let mut dec = weir_anthropic::StreamDecoder::new();
    let mut back = Vec::new();
    for e in sse_events(&out) {
        back.push(
            dec.decode(e)
                .map_err(|e| format!("reading the Anthropic stream back: {e}"))?,
        );
    }
    if key(&collect(&back)) != key(&original) {
        return Err(format!(
            "Anthropic clients would read {:?}, not {:?}",
            key(&collect(&back)),
            key(&original)
        ));
    }
    // OpenAI clients.
    let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
        include_usage: true,
        created: None,
    });
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out)
            .map_err(|e| format!("encoding for OpenAI clients: {e}"))?;
    }
    let mut dec = weir_openai::StreamDecoder::new();
    let mut back = Vec::new();
    for e in sse_events(&out) {
        back.push(
            dec.decode(e)
                .map_err(|e| format!("reading the OpenAI stream back: {e}"))?,
        );
    }
    back.push(
        dec.finish()
            .map_err(|e| format!("the OpenAI stream did not finish: {e}"))?,
    );
    if key(&collect(&back)) != key(&original) {
        return Err(format!(
            "OpenAI clients would read {:?}, not {:?}",
            key(&collect(&back)),
            key(&original)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_diff_names_the_first_difference() {
        assert_eq!(json_diff(&json!({"a": 1}), &json!({"a": 1.0})), None);
        assert_eq!(
            json_diff(&json!({"a": [1, {"b": null}]}), &json!({"a": [1, {}]})).as_deref(),
            Some("$.a[1].b: present on the left only (null)")
        );
        assert!(json_diff(&json!("x"), &json!("y")).is_some());
    }
}
