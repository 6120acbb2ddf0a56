//! The recorded Gemini exchanges (`$WEIR_CORPUS/gemini`): every answer decodes, every stream
//! decodes into a well-formed canonical sequence, and the requests the recordings sent use
//! the field names this encoder writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use weir_gemini::{decode_error, decode_response, encode_request, EncodeOptions};
use weir_model::raw::to_raw;
use weir_model::{
    ChatRequest, Content, ContentBlock, FunctionTool, ImageBlock, MediaSource, Message, Role,
    StopSequences, TextBlock, ThinkingBlock, ThinkingConfig, Tool, ToolChoice, ToolInput,
    ToolResultBlock, ToolUseBlock,
};

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("WEIR_CORPUS") {
        Some(p) => Some(PathBuf::from(p).join("gemini")),
        None => {
            println!("skipping: WEIR_CORPUS is unset");
            None
        }
    }
}

/// Every `NN` exchange of every case, in order: (case/NN, request, response meta, body).
fn exchanges(dir: &Path) -> Vec<(String, Value, Value, Vec<u8>)> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut out = Vec::new();
    for case in cases {
        let mut metas: Vec<PathBuf> = std::fs::read_dir(&case)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".response.json"))
            .collect();
        metas.sort();
        for meta_path in metas {
            let name = meta_path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let nn = name.trim_end_matches(".response.json");
            let read_json = |p: &Path| -> Value {
                serde_json::from_slice(&std::fs::read(p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            };
            let meta = read_json(&meta_path);
            let req = read_json(&case.join(format!("{nn}.request.json")));
            let body_file = meta["body_file"].as_str().unwrap_or("").to_owned();
            let body = std::fs::read(case.join(body_file)).unwrap_or_default();
            let label = format!("{}/{nn}", case.file_name().unwrap().to_string_lossy());
            out.push((label, req, meta, body));
        }
    }
    out
}

fn is_generate(req: &Value) -> bool {
    req["url"]
        .as_str()
        .is_some_and(|u| u.contains(":generateContent") || u.contains(":streamGenerateContent"))
}

#[test]
fn recorded_answers_decode() {
    let Some(dir) = corpus() else { return };
    let (mut streams, mut whole, mut empty) = (0, 0, 0);
    for (label, req, meta, body) in exchanges(&dir) {
        if !is_generate(&req) {
            continue;
        }
        if body.is_empty() {
            // The recorder lost some bodies; nothing to decode.
            empty += 1;
            continue;
        }
        let status = meta["status"].as_u64().unwrap() as u16;
        if status != 200 {
            let e = decode_error(status, &body);
            assert_eq!(e.status, status, "{label}");
            continue;
        }
        if meta["streaming"] == json!(true) {
            let events = common::stream_events(&body, 0).unwrap_or_else(|e| panic!("{label}: {e}"));
            common::check_well_formed(&events)
                .unwrap_or_else(|e| panic!("{label}: {e}\n{:#?}", common::summary(&events)));
            // Reads split anywhere decode the same.
            let split = common::stream_events(&body, 3).unwrap();
            assert_eq!(common::summary(&split), common::summary(&events), "{label}");
            // Both client dialects read the same text, thinking and tool calls.
            let frames = [weir_model::Frame::from_events(events)];
            weir_testkit::reencode_both(&frames).unwrap_or_else(|e| panic!("{label}: {e}"));
            streams += 1;
        } else {
            let r = decode_response(&body).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(r.stop_reason.is_some(), "{label}: no stop reason");
            assert!(!r.content.is_empty(), "{label}: no content");
            whole += 1;
        }
    }
    println!("decoded {streams} streams and {whole} answers ({empty} recorded without a body)");
    assert!(streams > 0, "no streamed Gemini exchange in the corpus");
}

/// Key paths of a JSON value, arrays collapsed to `[]`, not descending into values that
/// are data (arguments, results, schemas).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                let opaque = matches!(
                    k.as_str(),
                    "args"
                        | "response"
                        | "parameters"
                        | "parameters_json_schema"
                        | "parametersJsonSchema"
                );
                if !opaque {
                    paths(val, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// A request using everything the encoder can write.
fn everything() -> ChatRequest {
    let call = ContentBlock::ToolUse(ToolUseBlock {
        id: "c1".into(),
        name: "f".into(),
        input: ToolInput::Json(to_raw(&json!({"a": 1}))),
        cache_control: None,
        extra: Default::default(),
    });
    let result = ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: "c1".into(),
        content: Content::text("ok"),
        is_error: None,
        cache_control: None,
        extra: Default::default(),
    });
    let image = |source| {
        ContentBlock::Image(ImageBlock {
            source,
            detail: None,
            cache_control: None,
            extra: Default::default(),
        })
    };
    let thinking = ContentBlock::Thinking(ThinkingBlock {
        thinking: "hmm".into(),
        signature: Some("gemini-thought:U0lH".into()),
        extra: Default::default(),
    });
    ChatRequest {
        model: "m".into(),
        system: Some(Content::text("sys")),
        messages: vec![
            Message {
                role: Role::User,
                content: Content::blocks(vec![
                    ContentBlock::Text(TextBlock::new("look")),
                    image(MediaSource::Base64 {
                        media_type: "image/png".into(),
                        data: "AA==".into(),
                    }),
                    image(MediaSource::Url("https://example.com/a.png".into())),
                ]),
                extra: Default::default(),
            },
            Message {
                role: Role::Assistant,
                content: Content::blocks(vec![thinking, call]),
                extra: Default::default(),
            },
            Message {
                role: Role::User,
                content: Content::blocks(vec![result]),
                extra: Default::default(),
            },
        ],
        tools: Some(vec![Tool::Function(FunctionTool {
            name: "f".into(),
            description: Some("d".into()),
            parameters: Some(to_raw(
                &json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            )),
            strict: None,
            cache_control: None,
            extra: Default::default(),
        })]),
        tool_choice: Some(ToolChoice::Tool("f".into())),
        max_tokens: Some(10),
        temperature: Some(0.0),
        top_p: Some(1.0),
        top_k: Some(1),
        stop: Some(StopSequences {
            sequences: vec!["x".into()],
            single_string: false,
        }),
        thinking: Some(ThinkingConfig::Enabled {
            budget_tokens: 1024,
        }),
        ..Default::default()
    }
}

/// Fields the recorded clients send that this encoder never writes, by design: output
/// modalities, Gemini's own server tools, a role on the system instruction (ignored by
/// the API), and the snake_case spelling of `parametersJsonSchema`.
const NOT_WRITTEN: &[&str] = &[
    "generationConfig.responseModalities",
    "systemInstruction.role",
    "tools[].fileSearch",
    "tools[].fileSearch.file_search_store_names",
    "tools[].urlContext",
    "tools[].functionDeclarations[].parameters_json_schema",
];

#[test]
fn recorded_requests_use_the_field_names_the_encoder_writes() {
    let Some(dir) = corpus() else { return };
    let ours: Value =
        serde_json::from_slice(&encode_request(&everything(), &EncodeOptions::default()).unwrap())
            .unwrap();
    let mut written = BTreeSet::new();
    paths(&ours, "", &mut written);
    let mut checked = 0;
    for (label, req, _, _) in exchanges(&dir) {
        if !is_generate(&req) {
            continue;
        }
        let mut theirs = BTreeSet::new();
        paths(&req["body"], "", &mut theirs);
        let unknown: Vec<&String> = theirs
            .iter()
            .filter(|p| !written.contains(*p) && !NOT_WRITTEN.contains(&p.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{label}: the recorded request uses fields the encoder never writes: {unknown:?}"
        );
        checked += 1;
    }
    assert!(checked > 0);
}
