//! Provider conformance: one shared list of cases, replayed for every provider through the
//! real server against a wiremock upstream that answers with the provider's cassette.
//!
//! Each provider has `fixtures/<provider>/conformance.toml`: how to configure it, which
//! upstream path a request must reach, and per case either a cassette (a response body
//! file, its status and content type) with what the client must then receive, or
//! `unsupported = "<reason>"`. The client requests are the shared scenarios of
//! `fixtures/cases/<case>/{anthropic,openai}.request.json`, sent in both client dialects.
//!
//! `cargo xtask conformance <provider>|all` runs this with `WEIR_CONFORMANCE_PROVIDER` and
//! `WEIR_CONFORMANCE_REPORT` set, prints the matrix and writes `docs/providers.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The shared cases, in matrix order: (name, scenario under fixtures/cases, streamed).
const CASES: &[(&str, &str, bool)] = &[
    ("text", "plain_text", false),
    ("streaming", "streaming_text", true),
    ("parallel_tools", "parallel_tools", false),
    ("tool_results", "tool_results", false),
    ("images", "images", false),
    ("thinking", "thinking", true),
    ("error_400", "plain_text", false),
    ("error_401", "plain_text", false),
    ("error_429", "plain_text", false),
    ("error_5xx", "plain_text", false),
    ("mid_stream_error", "streaming_text", true),
];

const KEY: &str = "sk-conformance-client";

#[derive(Deserialize)]
struct Manifest {
    /// The `[providers.p]` table's body; `{base}` is replaced by the stand-in's URL.
    config: String,
    /// The upstream model the target names.
    model: String,
    /// The path (without query) every request must reach; `{model}` is replaced.
    path: String,
    /// Environment variables set before the gateway is built (credentials of cloud
    /// providers); `{base}` and `{rendered}` are replaced.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Files copied, with `{base}` replaced, into a temporary directory (`{rendered}`).
    #[serde(default)]
    render: BTreeMap<String, String>,
    /// Other answers of the stand-in, by exact path (e.g. a token endpoint).
    #[serde(default)]
    routes: Vec<Route>,
    cases: BTreeMap<String, CaseSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    path: String,
    body: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    /// Why the provider cannot do this case.
    unsupported: Option<String>,
    /// The response body, relative to `fixtures/`.
    body: Option<String>,
    #[serde(default = "ok")]
    status: u16,
    content_type: Option<String>,
    /// Expected: the assistant's text (all text blocks joined).
    text: Option<String>,
    /// Expected: the names of the tool calls, in order.
    #[serde(default)]
    tools: Vec<String>,
    /// Expected: a piece of the thinking.
    thinking: Option<String>,
    /// Expected: the stream ends with an error event.
    #[serde(default)]
    stream_error: bool,
}

fn ok() -> u16 {
    200
}

/// What a case came to for one provider.
#[derive(Debug, Clone, serde::Serialize)]
struct Outcome {
    provider: String,
    case: String,
    /// pass | unsupported | FAIL | missing
    result: String,
    detail: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn providers() -> Vec<String> {
    let only = std::env::var("WEIR_CONFORMANCE_PROVIDER")
        .ok()
        .filter(|p| p != "all");
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("conformance.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|p| only.as_ref().is_none_or(|o| o == p))
        .collect();
    out.sort();
    out
}

async fn gateway(config: &str) -> String {
    let cfg = weir_server::config::parse(None, config).unwrap();
    let app = match weir_server::build(&cfg, None, config) {
        Ok(a) => Arc::new(a),
        Err(e) => panic!("{e:?}"),
    };
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    tokio::spawn(weir_server::run(app, api, None, std::future::pending()));
    url
}

fn client_request(dialect: &str, scenario: &str, stream: bool) -> Value {
    let p = fixtures().join(format!("cases/{scenario}/{dialect}.request.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["model"] = json!("conformance");
    v["stream"] = json!(stream);
    v
}

/// What the client received, read in its dialect.
#[derive(Debug, Default)]
struct Received {
    text: String,
    thinking: String,
    tools: Vec<String>,
    stream_error: bool,
}

fn read_answer(dialect: &str, body: &str, stream: bool) -> Result<Received, String> {
    let mut r = Received::default();
    if !stream {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        if dialect == "anthropic" {
            for b in v["content"].as_array().ok_or("no content")? {
                match b["type"].as_str() {
                    Some("text") => r.text.push_str(b["text"].as_str().unwrap_or_default()),
                    Some("thinking") => r
                        .thinking
                        .push_str(b["thinking"].as_str().unwrap_or_default()),
                    Some("tool_use") => r.tools.push(b["name"].as_str().unwrap_or_default().into()),
                    _ => {}
                }
            }
        } else {
            let m = &v["choices"][0]["message"];
            r.text = m["content"].as_str().unwrap_or_default().to_owned();
            r.thinking = m["reasoning_content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for c in m["tool_calls"].as_array().into_iter().flatten() {
                r.tools
                    .push(c["function"]["name"].as_str().unwrap_or_default().into());
            }
        }
        return Ok(r);
    }
    let mut d = weir_sse::Decoder::new();
    let mut evs = Vec::new();
    d.feed(body.as_bytes(), &mut evs)
        .map_err(|e| e.to_string())?;
    for e in evs {
        if e.data().trim() == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(e.data()).map_err(|e| format!("bad event: {e}"))?;
        if e.event() == Some("error") || v.get("error").is_some() {
            r.stream_error = true;
        }
        if dialect == "anthropic" {
            r.text
                .push_str(v["delta"]["text"].as_str().unwrap_or_default());
            r.thinking
                .push_str(v["delta"]["thinking"].as_str().unwrap_or_default());
            if v["content_block"]["type"] == "tool_use" {
                r.tools.push(
                    v["content_block"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                );
            }
        } else {
            let d = &v["choices"][0]["delta"];
            r.text.push_str(d["content"].as_str().unwrap_or_default());
            // Same-dialect streams pass through as they came: Groq and OpenRouter say
            // `reasoning`, others `reasoning_content`.
            for field in ["reasoning_content", "reasoning"] {
                r.thinking.push_str(d[field].as_str().unwrap_or_default());
            }
            for c in d["tool_calls"].as_array().into_iter().flatten() {
                if let Some(n) = c["function"]["name"].as_str() {
                    r.tools.push(n.into());
                }
            }
        }
    }
    Ok(r)
}

async fn run_case(
    m: &Manifest,
    case: &str,
    scenario: &str,
    stream: bool,
    spec: &CaseSpec,
) -> Result<String, String> {
    let body_path = spec.body.as_ref().ok_or("no `body` for the case")?;
    let body =
        std::fs::read(fixtures().join(body_path)).map_err(|e| format!("{body_path}: {e}"))?;
    let server = MockServer::start().await;
    let ctype = spec.content_type.clone().unwrap_or_else(|| {
        if stream {
            "text/event-stream"
        } else {
            "application/json"
        }
        .into()
    });
    for r in &m.routes {
        let body =
            std::fs::read(fixtures().join(&r.body)).map_err(|e| format!("{}: {e}", r.body))?;
        Mock::given(method("POST"))
            .and(wiremock::matchers::path(r.path.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(spec.status).set_body_raw(body, &ctype))
        .with_priority(5)
        .mount(&server)
        .await;
    let rendered =
        std::env::temp_dir().join(format!("weir-conformance-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&rendered).map_err(|e| e.to_string())?;
    let fill = |s: &str| {
        s.replace("{base}", &server.uri())
            .replace("{rendered}", &rendered.display().to_string())
    };
    for (name, src) in &m.render {
        let text =
            std::fs::read_to_string(fixtures().join(src)).map_err(|e| format!("{src}: {e}"))?;
        std::fs::write(rendered.join(name), fill(&text)).map_err(|e| e.to_string())?;
    }
    for (k, v) in &m.env {
        // One test in this binary runs the providers one after another: nothing else
        // reads the environment meanwhile.
        std::env::set_var(k, fill(v));
    }
    let config = format!(
        "[[auth.keys]]\nname = \"c\"\nkey = \"{KEY}\"\n[routing]\nretries = 0\n\
         [providers.p]\n{}\n[[models]]\nname = \"conformance\"\ntargets = [{{ provider = \"p\", model = \"{}\" }}]\n",
        m.config.replace("{base}", &server.uri()),
        m.model
    );
    let url = gateway(&config).await;
    let mut seen = Vec::new();
    for dialect in ["anthropic", "openai"] {
        let req = client_request(dialect, scenario, stream);
        let path = if dialect == "anthropic" {
            "/v1/messages"
        } else {
            "/v1/chat/completions"
        };
        let resp = reqwest::Client::new()
            .post(format!("{url}{path}"))
            .bearer_auth(KEY)
            .json(&req)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        // An error keeps its status, or the client dialect's equivalent (overloaded is
        // 529 for Anthropic clients, 503 for OpenAI ones).
        let want = if case.starts_with("error_") {
            let kind = weir_model::ErrorKind::from_status(spec.status);
            let mut w = vec![spec.status, kind.http_status()];
            if kind == weir_model::ErrorKind::Overloaded && dialect == "anthropic" {
                w.push(529);
            }
            w
        } else {
            vec![200]
        };
        if !want.contains(&status) {
            return Err(format!(
                "{dialect} client got {status}, expected {want:?}: {text}"
            ));
        }
        if case.starts_with("error_") {
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["error"]["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("{dialect} client got no error message: {text}"));
            }
            seen.push(format!("{dialect}: {status}"));
            continue;
        }
        let got = read_answer(dialect, &text, stream).map_err(|e| format!("{dialect}: {e}"))?;
        if let Some(t) = &spec.text {
            if &got.text != t {
                return Err(format!(
                    "{dialect} client got text {:?}, expected {t:?}",
                    got.text
                ));
            }
        }
        if got.tools != spec.tools {
            return Err(format!(
                "{dialect} client got tool calls {:?}, expected {:?}",
                got.tools, spec.tools
            ));
        }
        if let Some(t) = &spec.thinking {
            if !got.thinking.contains(t.as_str()) {
                return Err(format!(
                    "{dialect} client got thinking {:?}: {text}",
                    got.thinking
                ));
            }
        }
        if got.stream_error != spec.stream_error {
            return Err(format!(
                "{dialect} client stream error: {}, expected {}",
                got.stream_error, spec.stream_error
            ));
        }
        seen.push(format!("{dialect}: ok"));
    }
    let expected = m.path.replace("{model}", &m.model);
    let requests = server.received_requests().await.unwrap_or_default();
    if requests.is_empty() {
        return Err("no request reached the upstream".into());
    }
    for r in requests
        .iter()
        .filter(|r| !m.routes.iter().any(|x| x.path == r.url.path()))
    {
        let p = percent_decode(r.url.path());
        // `path` may list alternatives (`a|b`), e.g. a provider's stream endpoint.
        if !expected.split('|').any(|e| e == p) {
            return Err(format!(
                "the upstream was called at {p}, expected {expected}"
            ));
        }
    }
    Ok(seen.join(", "))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_passes_each_case_or_says_why_not() {
    let mut outcomes = Vec::new();
    for provider in providers() {
        let text =
            std::fs::read_to_string(fixtures().join(&provider).join("conformance.toml")).unwrap();
        let m: Manifest = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("fixtures/{provider}/conformance.toml: {e}"));
        for (name, spec) in &m.cases {
            assert!(
                CASES.iter().any(|(c, _, _)| c == name),
                "fixtures/{provider}/conformance.toml: unknown case `{name}`"
            );
            if spec.unsupported.is_some() == spec.body.is_some() {
                panic!("fixtures/{provider}/conformance.toml: case `{name}` needs exactly one of `body` and `unsupported`");
            }
        }
        for (case, scenario, stream) in CASES {
            let (result, detail) = match m.cases.get(*case) {
                None => ("missing".to_owned(), "no cassette and no reason".to_owned()),
                Some(CaseSpec {
                    unsupported: Some(why),
                    ..
                }) => ("unsupported".to_owned(), why.clone()),
                Some(spec) => match run_case(&m, case, scenario, *stream, spec).await {
                    Ok(d) => ("pass".to_owned(), d),
                    Err(e) => ("FAIL".to_owned(), e),
                },
            };
            outcomes.push(Outcome {
                provider: provider.clone(),
                case: (*case).to_owned(),
                result,
                detail,
            });
        }
    }
    if let Ok(path) = std::env::var("WEIR_CONFORMANCE_REPORT") {
        std::fs::write(path, serde_json::to_vec_pretty(&outcomes).unwrap()).unwrap();
    }
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result == "FAIL" || o.result == "missing")
        .map(|o| format!("{} / {}: {} ({})", o.provider, o.case, o.result, o.detail))
        .collect();
    assert!(!outcomes.is_empty(), "no provider manifests found");
    assert!(bad.is_empty(), "conformance failures:\n{}", bad.join("\n"));
}
