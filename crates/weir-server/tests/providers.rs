//! Provider kinds through the real server, against local stand-ins of their APIs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use weir_testkit::upstream::{Behaviour, FaultyUpstream};

const KEY: &str = "sk-test-client";

/// What building the gateway from `text` reports, one line per error (it must fail).
fn config_errors(text: &str) -> Vec<String> {
    let cfg = weir_server::config::parse(None, text).unwrap();
    weir_server::build(&cfg, None, text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

async fn weir(extra: &str) -> String {
    let text = format!("[[auth.keys]]\nname = \"tester\"\nkey = \"{KEY}\"\n{extra}");
    let cfg = weir_server::config::parse(None, &text).unwrap();
    let app = match weir_server::build(&cfg, None, &text) {
        Ok(a) => Arc::new(a),
        Err(e) => panic!("{e:?}"),
    };
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    tokio::spawn(weir_server::run(app, api, None, std::future::pending()));
    url
}

async fn post(url: &str, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn sse(status: u16, body: &str) -> Behaviour {
    Behaviour::Status {
        status,
        headers: vec![],
        content_type: "text/event-stream".into(),
        body: body.into(),
    }
}

/// Azure's stream: a first chunk with only `prompt_filter_results`, then OpenAI chunks.
const AZURE_STREAM: &str = concat!(
    "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp\"}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Hello from Azure\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp\"}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp\",\"usage\":null}\n\n",
    "data: {\"choices\":[],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":4,\"prompt_tokens\":9,\"total_tokens\":13}}\n\n",
    "data: [DONE]\n\n",
);

#[tokio::test]
async fn azure_openai_deployment_urls_api_key_and_the_prompt_filter_chunk() {
    let up = FaultyUpstream::start(sse(200, AZURE_STREAM)).await;
    let url = weir(&format!(
        "[providers.az]\nkind = \"azure\"\nbase_url = \"{}\"\nkeys = [\"az-secret-key\"]\n\
         [[models]]\nname = \"gpt-4o\"\ntargets = [{{ provider = \"az\", model = \"my gpt4o deployment\" }}]\n",
        up.url()
    ))
    .await;
    // An Anthropic client streaming from Azure.
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 20, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""text":"Hello from Azure""#), "{body}");
    assert_eq!(body.matches("event: message_start").count(), 1, "{body}");
    assert!(body.contains(r#""id":"chatcmpl-az""#), "{body}");
    assert!(body.contains("event: message_stop"), "{body}");
    let r = &up.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/my%20gpt4o%20deployment/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some("az-secret-key"));
    assert!(r.header("authorization").is_none());

    // An OpenAI client: the stream passes through, prompt filter chunk and all.
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Hello from Azure") && body.ends_with("data: [DONE]\n\n"),
        "{body}"
    );
    assert!(body.contains("prompt_filter_results"), "{body}");
    // The usage chunk is hidden from a client that did not ask for usage.
    assert!(!body.contains("\"completion_tokens\":4"), "{body}");
}

#[tokio::test]
async fn openai_passthrough_streams_keep_to_what_the_upstream_sent() {
    let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":"#;
    let body = format!(
        "{head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n\
         {head}[{{\"index\":0,\"delta\":{{\"content\":\"Hello\"}},\"finish_reason\":null}}]}}\n\n\
         {head}[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         {head} [ ],\"usage\":{{\"prompt_tokens\":13,\"completion_tokens\":5,\"total_tokens\":18}}}}\n\n"
    );
    // No `[DONE]`: the upstream just closes.
    let up = FaultyUpstream::start(sse(200, &body)).await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\" }}]\n",
        up.url()
    ))
    .await;
    let ask = |usage: bool| {
        let mut r =
            json!({"model": "o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        if usage {
            r["stream_options"] = json!({"include_usage": true});
        }
        r
    };
    let (status, got) = post(&url, "/v1/chat/completions", &ask(true)).await;
    assert_eq!(status, 200);
    // The upstream's chunks, then only the [DONE] it left out: no second finish, no
    // made-up usage.
    assert_eq!(got, format!("{body}data: [DONE]\n\n"));
    // Without include_usage the usage chunk is hidden, however its empty choices are spaced.
    let (_, got) = post(&url, "/v1/chat/completions", &ask(false)).await;
    assert!(!got.contains("usage"), "{got}");
    assert_eq!(got.matches("finish_reason\":\"stop").count(), 1, "{got}");
    assert!(got.ends_with("data: [DONE]\n\n"), "{got}");
}

#[tokio::test]
async fn azure_v1_form_and_foundry_anthropic() {
    let up = FaultyUpstream::start(Behaviour::ok("from azure")).await;
    let url = weir(&format!(
        "[providers.v1]\nkind = \"azure\"\nbase_url = \"{0}/openai/v1\"\nkeys = [\"az-key\"]\n\
         [providers.foundry]\nkind = \"azure\"\nbase_url = \"{0}/anthropic\"\nkeys = [\"foundry-key\"]\n\
         [[models]]\nname = \"gpt\"\ntargets = [{{ provider = \"v1\", model = \"gpt-4o\" }}]\n\
         [[models]]\nname = \"claude\"\ntargets = [{{ provider = \"foundry\", model = \"claude-sonnet-4-5\" }}]\n",
        up.url()
    ))
    .await;
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from azure"));
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from azure"));
    let reqs = up.requests();
    assert_eq!(reqs[0].path, "/openai/v1/chat/completions");
    assert_eq!(reqs[0].header("api-key"), Some("az-key"));
    assert_eq!(reqs[0].json().unwrap()["model"], "gpt-4o");
    assert_eq!(reqs[1].path, "/anthropic/v1/messages");
    assert_eq!(reqs[1].header("x-api-key"), Some("foundry-key"));
    assert_eq!(reqs[1].json().unwrap()["model"], "claude-sonnet-4-5");
}

#[test]
fn azure_config_mistakes_are_explained() {
    for (extra, expect) in [
        ("", "kind = \"azure\" needs base_url"),
        (
            "base_url = \"https://r.openai.azure.com/openai/v1\"\napi_version = \"2024-10-21\"\n",
            "api_version applies to Azure's deployment URLs",
        ),
        (
            "base_url = \"https://r.openai.azure.com\"\napi_version = \"2024-10-21&x=1\"\n",
            "is not a version string",
        ),
    ] {
        let text = format!("[providers.az]\nkind = \"azure\"\n{extra}");
        let errs = config_errors(&text);
        assert!(errs.iter().any(|e| e.contains(expect)), "{errs:?}");
    }
}

/// One OpenAI-compatible provider `p` with `preset` at `up`, serving model `m`.
async fn preset_gateway(up: &FaultyUpstream, preset: &str) -> String {
    weir(&format!(
        "[providers.p]\nkind = \"openai\"\npreset = \"{preset}\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-p\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\", model = \"upstream-model\" }}]\n",
        up.url()
    ))
    .await
}

fn chunk(delta: &str, extra: &str) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"upstream-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]{extra}}}\n\n"
    )
}

#[tokio::test]
async fn groq_gets_no_fields_it_rejects_and_its_x_groq_usage_is_read() {
    let stream = [
        chunk(r#"{"role":"assistant","content":""}"#, ""),
        chunk(r#"{"content":"Hi"}"#, ""),
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"upstream-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let up = FaultyUpstream::start(sse(200, &stream)).await;
    let url = preset_gateway(&up, "groq").await;
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "logprobs": false, "top_logprobs": null, "logit_bias": {}, "n": 1,
                "messages": [{"role": "user", "name": "alice", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = up.requests()[0].json().unwrap();
    for f in ["logprobs", "top_logprobs", "logit_bias", "n"] {
        assert!(sent.get(f).is_none(), "{f} was sent: {sent}");
    }
    assert!(sent["messages"][0].get("name").is_none(), "{sent}");
    // Fields that ask for something Groq does not do are sent, so Groq's 400 names them
    // instead of the client silently getting one choice and no logprobs.
    post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "logprobs": true, "top_logprobs": 2, "logit_bias": {"50256": -100}, "n": 2,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let sent = up.requests()[1].json().unwrap();
    for f in ["logprobs", "top_logprobs", "logit_bias", "n"] {
        assert!(sent.get(f).is_some(), "{f} was not sent: {sent}");
    }
    // An Anthropic client gets the usage Groq reported in x_groq.
    let (_, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(body.contains(r#""output_tokens":2"#), "{body}");
    assert!(body.contains(r#""text":"Hi""#), "{body}");
}

#[tokio::test]
async fn cerebras_and_mistral_get_what_they_accept() {
    let up = FaultyUpstream::start(Behaviour::ok("fine")).await;
    let url = preset_gateway(&up, "cerebras").await;
    let (status, _) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "frequency_penalty": 0, "presence_penalty": 0.0, "parallel_tool_calls": true,
                "logit_bias": null, "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = up.requests()[0].json().unwrap();
    for f in [
        "frequency_penalty",
        "presence_penalty",
        "parallel_tool_calls",
        "logit_bias",
    ] {
        assert!(sent.get(f).is_none(), "{f} was sent: {sent}");
    }
    assert_eq!(sent["max_completion_tokens"], 50);
    // What asks for something is sent (Cerebras's 400 names it), not silently dropped.
    post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "frequency_penalty": 0.5, "presence_penalty": 0.1, "parallel_tool_calls": false,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let sent = up.requests()[1].json().unwrap();
    for f in [
        "frequency_penalty",
        "presence_penalty",
        "parallel_tool_calls",
    ] {
        assert!(sent.get(f).is_some(), "{f} was not sent: {sent}");
    }
    // An Anthropic client never named the field: its disable_parallel_tool_use does not
    // reach Cerebras as a parallel_tool_calls it refuses.
    post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
    )
    .await;
    let sent = up.requests()[2].json().unwrap();
    assert!(sent.get("parallel_tool_calls").is_none(), "{sent}");

    let up = FaultyUpstream::start(Behaviour::ok("fine")).await;
    let url = preset_gateway(&up, "mistral").await;
    let (status, _) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 30, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = up.requests()[0].json().unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert_eq!(sent["max_tokens"], 30, "{sent}");
}

#[tokio::test]
async fn openrouter_comments_are_skipped_and_a_mid_stream_error_reaches_the_client() {
    let stream = [
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        chunk(r#"{"role":"assistant","content":"Par"}"#, ""),
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"upstream-model\",\"error\":{\"code\":502,\"message\":\"Provider returned error\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n".to_owned(),
    ]
    .concat();
    let up = FaultyUpstream::start(sse(200, &stream)).await;
    let url = preset_gateway(&up, "openrouter").await;
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""text":"Par""#), "{body}");
    assert!(body.contains("event: error"), "{body}");
    assert!(body.contains("Provider returned error"), "{body}");
    let sent = up.requests()[0].json().unwrap();
    assert_eq!(sent["max_tokens"], 10, "{sent}");
}

#[tokio::test]
async fn deepseek_reasoning_and_usage_on_the_finish_chunk() {
    let stream = [
        chunk(r#"{"role":"assistant","content":null,"reasoning_content":"Think"}"#, ""),
        chunk(r#"{"content":null,"reasoning_content":"ing."}"#, ""),
        chunk(r#"{"content":"Answer"}"#, ""),
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"upstream-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5,\"total_tokens\":12,\"prompt_cache_hit_tokens\":0,\"prompt_cache_miss_tokens\":7}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let up = FaultyUpstream::start(sse(200, &stream)).await;
    let url = preset_gateway(&up, "deepseek").await;
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""thinking":"Think""#), "{body}");
    assert!(body.contains(r#""text":"Answer""#), "{body}");
    assert!(body.contains(r#""output_tokens":5"#), "{body}");
}

/// DeepSeek's `insufficient_system_resource` (out of capacity mid-answer) is an overloaded
/// error the client retries, whole or streamed, not a stop an agent would carry on from.
#[tokio::test]
async fn deepseek_out_of_capacity_is_an_overloaded_error() {
    let whole = r#"{"id":"c1","object":"chat.completion","created":1,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"part"},"finish_reason":"insufficient_system_resource"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let whole: Value = serde_json::from_str(whole).unwrap();
    let up = FaultyUpstream::start(Behaviour::json(200, &whole)).await;
    let url = preset_gateway(&up, "deepseek").await;
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 529, "{body}");
    assert!(
        body.contains("overloaded_error") && body.contains("capacity"),
        "{body}"
    );
    // An OpenAI client, whose answers otherwise go verbatim: 503, not the cut answer.
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("capacity"), "{body}");

    let finish = r#"{"index":0,"delta":{},"finish_reason":"insufficient_system_resource"}"#;
    let body = stream_cut_short("deepseek", finish, "capacity").await;
    assert!(body.contains("overloaded_error"), "{body}");
    assert!(
        !body.contains("max_tokens\"") && !body.contains("message_stop"),
        "{body}"
    );
}

/// A stream whose finish chunk (`finish`, the choice object) says the answer was cut
/// short, through the `preset`: an Anthropic client gets the text so far and then an error
/// event naming `needle`, with nothing after it; an OpenAI client's stream ends with the
/// error, not the finish chunk nor `[DONE]`. The Anthropic client's body, for more checks.
async fn stream_cut_short(preset: &str, finish: &str, needle: &str) -> String {
    let stream = [
        chunk(r#"{"role":"assistant","content":"part"}"#, ""),
        format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{finish}]}}\n\n"),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let up = FaultyUpstream::start(sse(200, &stream)).await;
    let url = preset_gateway(&up, preset).await;
    let (status, anthropic) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(anthropic.contains(r#""text":"part""#), "{anthropic}");
    // Nothing follows the error (the decoder's closing message_delta is not passed on).
    let last = anthropic
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default();
    assert!(
        last.starts_with("event: error") && last.contains(needle),
        "{anthropic}"
    );
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let last = body.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("\"error\"") && last.contains(needle),
        "{body}"
    );
    assert!(!body.contains("[DONE]"), "{body}");
    anthropic
}

/// OpenRouter's `finish_reason: "error"` (its provider failed mid-answer; the choice
/// carries an `error`) is the upstream's failure, not an answer that ended: a whole one
/// fails over to the next target, a stream ends with an error event in either dialect.
#[tokio::test]
async fn openrouters_error_finish_is_a_failure_not_an_end_of_turn() {
    let whole = json!({"id": "gen-1", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "part"},
            "finish_reason": "error", "error": {"code": 502, "message": "Provider disconnected"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
    let bad = FaultyUpstream::start(Behaviour::json(200, &whole)).await;
    let good = FaultyUpstream::start(Behaviour::ok("served")).await;
    let url = weir(&format!(
        "[providers.or]\nkind = \"openai\"\npreset = \"openrouter\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-or\"]\n\
         [providers.b]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-b\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"or\" }}, {{ provider = \"b\" }}]\n\
         [[models]]\nname = \"only\"\ntargets = [{{ provider = \"or\" }}]\n",
        bad.url(),
        good.url()
    ))
    .await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let (status, body) = post(
            &url,
            path,
            &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("served"), "{path}: {body}");
        let (status, body) = post(
            &url,
            path,
            &json!({"model": "only", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 502, "{path}: {body}");
        assert!(
            body.contains("failed mid-answer") && body.contains("Provider disconnected"),
            "{path}: {body}"
        );
        assert!(!body.contains("\"part\""), "{path}: {body}");
    }

    let finish = r#"{"index":0,"delta":{},"finish_reason":"error","error":{"code":502,"message":"Provider disconnected"}}"#;
    let body = stream_cut_short("openrouter", finish, "Provider disconnected").await;
    assert!(!body.contains("end_turn"), "{body}");
}

/// Z.AI's `network_error` (the answer cut by a failure on its side) is a failure too.
#[tokio::test]
async fn zais_network_error_finish_is_a_failure() {
    let whole = json!({"id": "z-1", "object": "chat.completion", "created": 1, "model": "glm",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "part"},
            "finish_reason": "network_error"}]});
    let up = FaultyUpstream::start(Behaviour::json(200, &whole)).await;
    let url = preset_gateway(&up, "zai").await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let (status, body) = post(
            &url,
            path,
            &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 502, "{path}: {body}");
        assert!(body.contains("network_error"), "{path}: {body}");
    }
}

/// DeepSeek's thinking mode wants a tool-call turn's reasoning back (else 400): an
/// Anthropic client's thinking block goes back as `reasoning_content` with the preset.
#[tokio::test]
async fn deepseek_gets_a_tool_call_turns_reasoning_back() {
    let up = FaultyUpstream::start(Behaviour::ok("done")).await;
    let url = preset_gateway(&up, "deepseek").await;
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should call the tool", "signature": ""},
                    {"type": "tool_use", "id": "call_00_abc", "name": "get_weather", "input": {"city": "P"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_00_abc", "content": "18C"}]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = up.requests()[0].json().unwrap();
    let turn = &sent["messages"][1];
    assert_eq!(
        turn["reasoning_content"], "I should call the tool",
        "{sent}"
    );
    assert_eq!(turn["tool_calls"][0]["id"], "call_00_abc", "{sent}");
    // The tool turn carries reasoning, and the client's thinking is on: so is DeepSeek's.
    assert!(sent.get("thinking").is_none(), "{sent}");

    // A tool turn without reasoning (another upstream served it, or thinking was off):
    // DeepSeek's thinking mode would refuse it, so thinking goes off for this request.
    // The client's own thinking on or off goes as DeepSeek's `thinking`.
    for (thinking, tool_turn_reasoned, want) in [
        (json!(null), false, json!({"type": "disabled"})),
        (
            json!({"type": "enabled", "budget_tokens": 2048}),
            false,
            json!({"type": "disabled"}),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 2048}),
            true,
            json!({"type": "enabled"}),
        ),
        (
            json!({"type": "disabled"}),
            true,
            json!({"type": "disabled"}),
        ),
    ] {
        let mut assistant = vec![
            json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}),
        ];
        if tool_turn_reasoned {
            assistant.insert(
                0,
                json!({"type": "thinking", "thinking": "call it", "signature": ""}),
            );
        }
        let mut body = json!({"model": "m", "max_tokens": 4000,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}]});
        if !thinking.is_null() {
            body["thinking"] = thinking.clone();
        }
        let (status, answer) = post(&url, "/v1/messages", &body).await;
        assert_eq!(status, 200, "{answer}");
        let sent = up.requests().last().unwrap().json().unwrap();
        assert_eq!(
            sent["thinking"], want,
            "{thinking} {tool_turn_reasoned}: {sent}"
        );
    }
    // An earlier tool round of the same exchange without reasoning counts too.
    let call = |id: &str| json!({"type": "tool_use", "id": id, "name": "get_weather", "input": {}});
    let result = |id: &str| json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "r"}]});
    let body = json!({"model": "m", "max_tokens": 4000,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [call("toolu_1")]},
            result("toolu_1"),
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "again", "signature": ""}, call("toolu_2")]},
            result("toolu_2")]});
    let (status, answer) = post(&url, "/v1/messages", &body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = up.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["thinking"], json!({"type": "disabled"}), "{sent}");
    // An OpenAI client that did not send reasoning_content back (the SDKs keep none): the
    // same, unless it set `thinking` itself.
    let messages = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}]);
    for (extra, want) in [
        (json!({}), json!({"type": "disabled"})),
        (
            json!({"thinking": {"type": "enabled"}}),
            json!({"type": "enabled"}),
        ),
    ] {
        let mut body = json!({"model": "m", "messages": messages});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = post(&url, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{answer}");
        let sent = up.requests().last().unwrap().json().unwrap();
        assert_eq!(sent["thinking"], want, "{extra}: {sent}");
    }
    // A conversation without tool calls is left as it came.
    let (status, _) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = up.requests().last().unwrap().json().unwrap();
    assert!(sent.get("thinking").is_none(), "{sent}");
}

#[tokio::test]
async fn reasoning_effort_from_thinking_is_a_provider_setting() {
    let up = FaultyUpstream::start(Behaviour::ok("done")).await;
    let url = weir(&format!(
        "[providers.reasoner]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"k\"]\n\
         reasoning_effort_from_thinking = true\n\
         [providers.plain]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"r\"\ntargets = [{{ provider = \"reasoner\" }}]\n\
         [[models]]\nname = \"p\"\ntargets = [{{ provider = \"plain\" }}]\n",
        up.url()
    ))
    .await;
    for model in ["r", "p"] {
        let (status, body) = post(
            &url,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 10, "thinking": {"type": "adaptive"},
                "output_config": {"effort": "low"},
                "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let reqs = up.requests();
    assert_eq!(reqs[0].json().unwrap()["reasoning_effort"], "low");
    assert!(reqs[1].json().unwrap().get("reasoning_effort").is_none());
}

/// An Anthropic stream up to its first text delta.
const ANTHROPIC_OPENING: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Partial\"}}\n\n",
);

#[tokio::test]
async fn an_anthropic_stream_that_ends_early_is_an_error_not_a_whole_answer() {
    // The body ends cleanly (its length was declared) but without message_stop.
    let up = FaultyUpstream::start(sse(200, ANTHROPIC_OPENING)).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"a\" }}]\n",
        up.url()
    ))
    .await;
    let (status, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Partial"), "{body}");
    assert!(!body.contains("event: message_stop"), "{body}");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\n"), "{body}");
    assert!(last.contains("no message_stop"), "{body}");
    let (status, body) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Partial"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    assert!(body.trim_end().ends_with("}"), "{body}");
    assert!(body.contains("\"error\""), "{body}");

    // Stopped (message_delta came) but message_stop lost: completed, not an error.
    let stopped = format!(
        "{ANTHROPIC_OPENING}event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":2}}}}\n\n"
    );
    up.set(sse(200, &stopped));
    let (_, body) = post(
        &url,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(
        body.trim_end()
            .ends_with("data: {\"type\":\"message_stop\"}"),
        "{body}"
    );
    assert!(!body.contains("event: error"), "{body}");
}

#[tokio::test]
async fn an_empty_stream_is_an_upstream_failure_not_an_empty_answer() {
    let up = FaultyUpstream::start(sse(200, "")).await;
    let url = weir(&format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{0}\"\nkeys = [\"k\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"a\"\ntargets = [{{ provider = \"a\" }}]\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\" }}]\n",
        up.url()
    ))
    .await;
    for model in ["a", "o"] {
        let (status, body) = post(
            &url,
            "/v1/chat/completions",
            &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 502, "{model}: {body}");
        assert!(body.contains("could not be decoded"), "{model}: {body}");
    }
}

#[tokio::test]
async fn a_200_error_body_reaches_the_client_as_the_upstream_s_failure() {
    // Each dialect's error shape, answered with 200, streamed requests included.
    let openai = FaultyUpstream::start(Behaviour::json(
        200,
        &json!({"error": {"message": "model overloaded, try later", "type": "server_error", "code": null}}),
    ))
    .await;
    let anthropic = FaultyUpstream::start(Behaviour::json(
        200,
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "model overloaded, try later"}}),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"k\"]\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [\"k\"]\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\" }}]\n\
         [[models]]\nname = \"a\"\ntargets = [{{ provider = \"a\" }}]\n\
         [routing]\nbreaker_failures = 0\n",
        openai.url(),
        anthropic.url()
    ))
    .await;
    // Passed through and translated, whole and streamed.
    for model in ["o", "a"] {
        for stream in [false, true] {
            for (path, body) in [
                (
                    "/v1/chat/completions",
                    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
                ),
                (
                    "/v1/messages",
                    json!({"model": model, "stream": stream, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
                ),
            ] {
                let (status, answer) = post(&url, path, &body).await;
                assert!(
                    status == 502 || status == 529 || status == 503,
                    "{model} {path} {stream}: {status} {answer}"
                );
                assert!(
                    answer.contains("model overloaded, try later"),
                    "{model} {path} {stream}: {answer}"
                );
            }
        }
    }
    // The pass-through APIs too.
    for (path, body) in [
        ("/v1/responses", json!({"model": "o", "input": "hi"})),
        (
            "/v1/responses",
            json!({"model": "o", "input": "hi", "stream": true}),
        ),
        ("/v1/embeddings", json!({"model": "o", "input": "hi"})),
    ] {
        let (status, answer) = post(&url, path, &body).await;
        assert_eq!(status, 502, "{path} {body}: {answer}");
        assert!(
            answer.contains("model overloaded, try later"),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_key_without_quota_rests_like_a_refused_one_and_the_next_key_serves() {
    let no_quota = Behaviour::json(
        429,
        &json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
    );
    key_without_credit_rests("openai", "/v1", no_quota).await;
}

#[tokio::test]
async fn an_anthropic_key_without_credit_rests_like_a_refused_one_and_the_next_key_serves() {
    // Anthropic's 402: it was taken for the client's own mistake, and no other key tried.
    let no_credit = Behaviour::json(
        402,
        &json!({"type": "error", "error": {"type": "billing_error", "message": "Your credit balance is too low to access the Anthropic API."}}),
    );
    key_without_credit_rests("anthropic", "", no_credit).await;
}

#[tokio::test]
async fn a_402_key_without_credit_rests_like_a_refused_one_and_the_next_key_serves() {
    // DeepSeek's "Insufficient Balance", OpenRouter's "Insufficient credits".
    let no_credit = Behaviour::json(
        402,
        &json!({"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": null, "code": "invalid_request_error"}}),
    );
    key_without_credit_rests("openai", "/v1", no_credit).await;
}

async fn key_without_credit_rests(kind: &str, path: &str, no_quota: Behaviour) {
    let up = FaultyUpstream::start(Behaviour::per_key(
        [("sk-empty", no_quota)],
        Behaviour::ok("served"),
    ))
    .await;
    let url = weir(&format!(
        "[providers.o]\nkind = \"{kind}\"\nbase_url = \"{}{path}\"\nkeys = [\"sk-empty\", \"sk-full\"]\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"o\" }}]\n\
         [[models]]\nname = \"m2\"\ntargets = [{{ provider = \"o\", model = \"other\" }}]\n\
         [routing]\ndefault_cooldown = \"10ms\"\n",
        up.url()
    ))
    .await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (status, body) = post(
            &url,
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // The empty key was tried once, then rested (a plain 429 without retry-after would
    // rest it for seconds only and be tried again).
    let tried: Vec<_> = up
        .requests()
        .iter()
        .map(|r| r.key().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        tried.iter().filter(|k| *k == "sk-empty").count(),
        1,
        "{tried:?}"
    );
    // No credit is no credit for any model: the key rests whole, not for `m` alone.
    for _ in 0..3 {
        let (status, body) = post(
            &url,
            "/v1/chat/completions",
            &json!({"model": "m2", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let empty = up
        .requests()
        .iter()
        .filter(|r| r.key() == Some("sk-empty"))
        .count();
    assert_eq!(empty, 1);
}

#[test]
fn reasoning_settings_on_other_kinds_are_config_errors() {
    // (Naming the keys set, no others.)
    for (text, said) in [
        ("[providers.p]\nkind = \"anthropic\"\nreasoning_effort_from_thinking = true\n", "reasoning_effort_from_thinking applies to OpenAI-dialect providers"),
        ("[providers.p]\nkind = \"azure\"\nbase_url = \"https://r.services.ai.azure.com/anthropic\"\nreasoning_content_in_history = true\n", "reasoning_content_in_history applies to OpenAI-dialect providers"),
        ("[providers.p]\nkind = \"gemini\"\nkeys = [\"k\"]\nmax_output_tokens = 8192\nsystem_as_user = true\n", "system_as_user, max_output_tokens apply to OpenAI-dialect providers"),
        // With another wrong key, all of them at once.
        ("[providers.b]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nkeys = [\"a\"]\nproject = \"p\"\n", "project applies to kind = \"vertex\", not `bedrock`; kind = \"bedrock\" takes no keys"),
    ] {
        let errs = config_errors(text);
        assert!(errs.iter().any(|e| e.contains(said)), "{errs:?}");
    }
}

#[test]
fn a_zero_max_output_tokens_is_a_config_error() {
    let text = "[providers.p]\nkind = \"openai\"\nkeys = [\"k\"]\nmax_output_tokens = 0\n";
    let errs = config_errors(text);
    assert!(
        errs.iter()
            .any(|e| e.contains("max_output_tokens must be at least 1")),
        "{errs:?}"
    );
}

#[test]
fn a_targets_zero_output_limits_are_config_errors() {
    let text = "[providers.p]\nkind = \"openai\"\nkeys = [\"k\"]\n\
                [[models]]\nname = \"m\"\n\
                targets = [{ provider = \"p\", default_max_tokens = 0, max_output_tokens = 0 }]\n";
    let errs = config_errors(text);
    for key in ["default_max_tokens", "max_output_tokens"] {
        let said = format!("{key} must be at least 1 (model `m`)");
        assert!(errs.iter().any(|e| e.contains(&said)), "{errs:?}");
    }
    // Where in the file: line 6, at each value.
    assert!(errs.iter().all(|e| e.starts_with("6:")), "{errs:?}");
    let text = "[providers.p]\nkind = \"openai\"\nkeys = [\"k\"]\n\
                [[models]]\nname = \"m\"\n\
                targets = [{ provider = \"p\", default_max_tokens = 9000, max_output_tokens = 4000 }]\n";
    let errs = config_errors(text);
    assert!(
        errs.iter()
            .any(|e| e.contains("default_max_tokens (9000) is above max_output_tokens (4000)")),
        "{errs:?}"
    );
}

#[test]
fn unknown_presets_and_presets_on_other_kinds_are_config_errors() {
    for (text, expect) in [
        (
            "[providers.p]\nkind = \"openai\"\npreset = \"grok\"\n",
            "unknown preset `grok`",
        ),
        (
            "[providers.p]\nkind = \"anthropic\"\npreset = \"groq\"\n",
            "preset applies to kind = \"openai\"",
        ),
        // Keys another kind reads are no settings of this one.
        (
            "[providers.p]\nkind = \"anthropic\"\nregion = \"us-east-1\"\n",
            "region applies to kind = \"bedrock\" | \"vertex\", not `anthropic`",
        ),
        (
            "[providers.p]\nkind = \"anthropic\"\nproject = \"p\"\n",
            "project applies to kind = \"vertex\", not `anthropic`",
        ),
        (
            "[providers.p]\nkind = \"openai\"\nstream_delay = \"10ms\"\n",
            "stream_delay applies to kind = \"mock\", not `openai`",
        ),
        (
            "[providers.p]\nkind = \"openai\"\ndefault_max_tokens = 100\n",
            "default_max_tokens applies to kind = \"anthropic\" | \"bedrock\" | \"vertex\" | \"azure\", not `openai`",
        ),
        (
            "[providers.p]\nkind = \"mock\"\nbase_url = \"http://x\"\n",
            "the built-in mock answers itself: it takes no base_url or keys",
        ),
        (
            "[providers.p]\nkind = \"mock\"\nkeys = [\"k\"]\n",
            "the built-in mock answers itself: it takes no base_url or keys",
        ),
        // Azure reads it only for Foundry's Anthropic endpoint.
        (
            "[providers.p]\nkind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\nkeys = [\"k\"]\ndefault_max_tokens = 100\n",
            "default_max_tokens applies to kind =",
        ),
        // Every key the kind does not read, at once.
        (
            "[providers.p]\nkind = \"gemini\"\nkeys = [\"k\"]\nregion = \"r\"\npreset = \"groq\"\nstream_delay = \"1s\"\n",
            "preset applies to kind = \"openai\", not `gemini`; region applies to kind = \"bedrock\" | \"vertex\", not `gemini`; stream_delay applies to kind = \"mock\", not `gemini`",
        ),
    ] {
        let errs = config_errors(text);
        assert!(errs.iter().any(|e| e.contains(expect)), "{errs:?}");
    }
}

#[test]
fn vertex_needs_project_and_region_and_builds_without_credentials_at_hand() {
    let text = "[providers.v]\nkind = \"vertex\"\nregion = \"us-east5\"\n";
    let errs = config_errors(text);
    assert!(errs[0].contains("needs project and region"), "{errs:?}");
    // Credentials are looked for at the first request, never while loading the config.
    let text = "[providers.v]\nkind = \"vertex\"\nproject = \"my-project\"\nregion = \"global\"\n\
                [[models]]\nname = \"claude-sonnet-4-5\"\ntargets = [{ provider = \"v\", model = \"claude-sonnet-4-5@20250929\" }]\n";
    let cfg = weir_server::config::parse(None, text).unwrap();
    assert!(weir_server::build(&cfg, None, text).is_ok());
}

#[test]
fn zero_config_enables_the_providers_whose_keys_are_in_the_environment() {
    let env = |name: &str| match name {
        "WEIR_API_KEY" => Some("sk-zero".to_owned()),
        "GEMINI_API_KEY" => Some("AIza-test".to_owned()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-test".to_owned()),
        "XAI_API_KEY" => Some("xai-test".to_owned()),
        "DEEPSEEK_API_KEY" => Some("sk-ds-test".to_owned()),
        "OPENROUTER_API_KEY" => Some("sk-or-test".to_owned()),
        "GOOGLE_CLOUD_PROJECT" => Some("my-project".to_owned()),
        // Groq's own name shapes only: its vendor/model names stay OpenRouter's.
        "GROQ_API_KEY" => Some("gsk-test".to_owned()),
        _ => None,
    };
    let (app, generated) = weir_server::zero_config(&env).unwrap();
    assert!(generated.is_none());
    let ids: Vec<&str> = app
        .provider_kinds
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "anthropic",
            "deepseek",
            "gemini",
            "groq",
            "mock",
            "openrouter",
            "vertex",
            "xai"
        ]
    );
    for (model, provider) in [
        ("grok-4", "xai"),
        ("deepseek-chat", "deepseek"),
        ("meta-llama/llama-3.3-70b-instruct", "openrouter"),
        ("llama-3.3-70b-versatile", "groq"),
        ("claude-sonnet-4-5@20250929", "vertex"),
    ] {
        assert_eq!(
            app.router.resolve(model).unwrap().targets[0].provider,
            provider,
            "{model}"
        );
    }
    assert_eq!(
        app.router.resolve("gemini-2.5-flash").unwrap().targets[0].provider,
        "gemini"
    );
    assert_eq!(
        app.router.resolve("claude-sonnet-4-5").unwrap().targets[0].provider,
        "anthropic"
    );
    assert!(app.router.resolve("llama-3.3-70b").is_none());
    // Without a Gemini API key, Gemini models go to Vertex.
    let env = |name: &str| match name {
        "WEIR_API_KEY" => Some("sk-zero".to_owned()),
        "GOOGLE_CLOUD_PROJECT" => Some("my-project".to_owned()),
        "CLOUD_ML_REGION" => Some("us-east5".to_owned()),
        _ => None,
    };
    let (app, _) = weir_server::zero_config(&env).unwrap();
    assert_eq!(
        app.router.resolve("gemini-2.5-pro").unwrap().targets[0].provider,
        "vertex"
    );
    for model in [
        "text-embedding-005",
        "text-multilingual-embedding-002",
        "gemini-embedding-001",
    ] {
        assert_eq!(
            app.router.resolve(model).unwrap().targets[0].provider,
            "vertex",
            "{model}"
        );
    }
    // OpenAI's embedding names stay OpenAI's, beside Vertex.
    let env = |name: &str| match name {
        "WEIR_API_KEY" => Some("sk-zero".to_owned()),
        "GOOGLE_CLOUD_PROJECT" => Some("my-project".to_owned()),
        "GOOGLE_CLOUD_REGION" => Some("europe-west4".to_owned()),
        "OPENAI_API_KEY" => Some("sk-test".to_owned()),
        _ => None,
    };
    let (app, _) = weir_server::zero_config(&env).unwrap();
    for (model, provider) in [
        ("text-embedding-3-small", "openai"),
        ("text-embedding-ada-002", "openai"),
        ("text-embedding-005", "vertex"),
    ] {
        assert_eq!(
            app.router.resolve(model).unwrap().targets[0].provider,
            provider,
            "{model}"
        );
    }
    // The global endpoint (no region set) does not serve them: not routed there.
    let env = |name: &str| match name {
        "WEIR_API_KEY" => Some("sk-zero".to_owned()),
        "GOOGLE_CLOUD_PROJECT" => Some("my-project".to_owned()),
        _ => None,
    };
    let (app, _) = weir_server::zero_config(&env).unwrap();
    assert!(app.router.resolve("text-embedding-005").is_none());
    // Bedrock reads its credentials when it is built: whether or not this machine has
    // them, zero-config starts (Bedrock is left out, with a warning, when it cannot).
    let env = |name: &str| match name {
        "WEIR_API_KEY" => Some("sk-zero".to_owned()),
        "AWS_REGION" => Some("us-west-2".to_owned()),
        "AWS_PROFILE" => Some("weir-test-no-such-profile".to_owned()),
        _ => None,
    };
    let (app, _) = weir_server::zero_config(&env).unwrap();
    assert!(app.router.resolve("mock").is_some());
}

#[tokio::test]
async fn azure_embeddings_go_to_the_deployment_with_its_api_key() {
    let answer = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0]}],"model":"text-embedding-3-large","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
    let up = FaultyUpstream::start(Behaviour::Status {
        status: 200,
        headers: vec![],
        content_type: "application/json".into(),
        body: answer.into(),
    })
    .await;
    let url = weir(&format!(
        "[providers.az]\nkind = \"azure\"\nbase_url = \"{}\"\nkeys = [\"az-secret-key\"]\n\
         [[models]]\nname = \"embed\"\ntargets = [{{ provider = \"az\", model = \"my-embedder\" }}]\n",
        up.url()
    ))
    .await;
    let (status, body) = post(
        &url,
        "/v1/embeddings",
        &json!({"model": "embed", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, answer);
    let r = &up.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/my-embedder/embeddings?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some("az-secret-key"));
}

/// A target declared without a feature a Responses API request uses is passed over, as for
/// chat completions (they were sent anyway; found by an audit).
#[tokio::test]
async fn responses_skip_a_target_lacking_a_feature_the_request_uses() {
    let up = FaultyUpstream::start(Behaviour::ok("served")).await;
    let url = weir(&format!(
        "[providers.capped]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"sk-capped\"]\n\
         capabilities = {{ images = false, tools = false }}\n\
         [providers.full]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"sk-full\"]\n\
         [[models]]\nname = \"fb\"\ntargets = [{{ provider = \"capped\" }}, {{ provider = \"full\" }}]\n\
         [[models]]\nname = \"only\"\ntargets = [{{ provider = \"capped\" }}]\n",
        up.url()
    ))
    .await;
    let image = json!([{"role": "user", "content": [
        {"type": "input_text", "text": "see"},
        {"type": "input_image", "image_url": "https://x/y.png"}
    ]}]);
    let tool = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    let call = json!([
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    ]);
    // An image a function call's output holds.
    let output_image = json!([{"role": "user", "content": "see"}, {
        "type": "function_call_output", "call_id": "c1",
        "output": [{"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]
    }]);
    // (The scripted upstream has no Responses API: its 404 comes back; what matters is
    // which key it was sent with.)
    for body in [
        json!({"model": "fb", "input": image}),
        json!({"model": "fb", "input": "x", "tools": tool}),
        json!({"model": "fb", "input": call}),
    ] {
        post(&url, "/v1/responses", &body).await;
        let key = up.requests().last().unwrap().key().map(str::to_owned);
        assert_eq!(key.as_deref(), Some("sk-full"), "{body}");
    }
    // Plain text still goes to the first target.
    post(
        &url,
        "/v1/responses",
        &json!({"model": "fb", "input": "x", "tools": []}),
    )
    .await;
    let key = up.requests().last().unwrap().key().map(str::to_owned);
    assert_eq!(key.as_deref(), Some("sk-capped"));
    // (A call's output is a tool use too: checked where tools are on.)
    let url2 = weir(&format!(
        "[providers.capped]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"sk-capped\"]\n\
         capabilities = {{ images = false }}\n\
         [providers.full]\nkind = \"openai\"\nbase_url = \"{0}/v1\"\nkeys = [\"sk-full\"]\n\
         [[models]]\nname = \"fb\"\ntargets = [{{ provider = \"capped\" }}, {{ provider = \"full\" }}]\n",
        up.url()
    ))
    .await;
    post(
        &url2,
        "/v1/responses",
        &json!({"model": "fb", "input": output_image}),
    )
    .await;
    let key = up.requests().last().unwrap().key().map(str::to_owned);
    assert_eq!(key.as_deref(), Some("sk-full"));
    // Its only target lacks it: a 400 saying so, nothing sent.
    let hits = up.hits();
    let (status, answer) = post(
        &url,
        "/v1/responses",
        &json!({"model": "only", "input": image}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("does not support images"), "{answer}");
    assert_eq!(up.hits(), hits);
}

/// A hosted `web_search` through the Responses bridge goes where the upstream has a search
/// of its own (Gemini's grounding, when no function tools come with it); elsewhere the
/// request goes without it, and the answer's `x-weir-warning` says which hosted tools
/// were left out: where the encoder cannot carry it (Gemini with function tools) and to an
/// OpenAI-compatible chat service, which would get the field verbatim.
#[tokio::test]
async fn a_hosted_web_search_the_upstream_cannot_run_is_left_out_and_said_so() {
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hello"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}
    });
    let gemini = gemini_answering(&answer).await;
    let chat = FaultyUpstream::start(Behaviour::ok("hello")).await;
    let url = weir(&format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\nkeys = [\"AIza-k\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-o\"]\nresponses_api = false\n\
         [[models]]\nname = \"g\"\ntargets = [{{ provider = \"g\", model = \"gemini-3-flash-preview\" }}]\n\
         [[models]]\nname = \"o\"\ntargets = [{{ provider = \"o\", model = \"deepseek-chat\" }}]\n",
        gemini.url(),
        chat.url()
    ))
    .await;
    let ask = |model: &str, tools: Value| {
        reqwest::Client::new()
            .post(format!("{url}/v1/responses"))
            .bearer_auth(KEY)
            .json(&json!({"model": model, "input": "news?", "tools": tools}))
            .send()
    };
    let search = json!({"type": "web_search"});
    let shell = json!({"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}});
    let last = |up: &FaultyUpstream| up.requests().last().unwrap().json().unwrap();

    // Gemini alone: grounding with Google Search.
    let r = ask("g", json!([search])).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-weir-warning").is_none());
    let sent = last(&gemini);
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]), "{sent}");

    // With a function tool (Gemini takes both only with server-side calls on): without.
    let r = ask("g", json!([shell, search, {"type": "code_interpreter"}]))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let warning = r.headers()["x-weir-warning"].to_str().unwrap().to_owned();
    assert!(
        warning.contains("g/gemini-3-flash-preview: hosted tools left out")
            && warning.contains("code_interpreter, web_search"),
        "{warning}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "hello");
    let sent = last(&gemini);
    assert!(!sent.to_string().contains("googleSearch"), "{sent}");
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"], "shell",
        "{sent}"
    );

    // An OpenAI-compatible chat service: without, and said so.
    let r = ask("o", json!([shell, search])).await.unwrap();
    assert_eq!(r.status(), 200);
    let warning = r.headers()["x-weir-warning"].to_str().unwrap().to_owned();
    assert!(
        warning.contains("o/deepseek-chat: hosted tools left out")
            && warning.ends_with("web_search"),
        "{warning}"
    );
    let sent = last(&chat);
    assert!(sent.get("web_search_options").is_none(), "{sent}");
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1, "{sent}");
}

/// A stand-in Gemini giving `answer` whole, or as a one-event stream when streamed.
async fn gemini_answering(answer: &Value) -> FaultyUpstream {
    FaultyUpstream::start(Behaviour::per_path(
        [(
            ":streamGenerateContent",
            sse(200, &format!("data: {answer}\r\n\r\n")),
        )],
        Behaviour::json(200, answer),
    ))
    .await
}

/// Claude Code asks up to 128000 output tokens of whatever its `claude-*` names are routed
/// to. Gemini refuses more than its model takes (65536), OpenAI's gpt-4o more than 16384,
/// each naming its ceiling in its own words: the request is sent again with the limit
/// lowered (the answer's `x-weir-warning` says so), and the next request for the model
/// goes lowered at once.
#[tokio::test]
async fn an_output_limit_the_upstream_refuses_is_lowered_to_the_ceiling_it_names() {
    let gemini_answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hello"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
        "modelVersion": "gemini-3-pro-preview"
    });
    let gemini = gemini_answering(&gemini_answer).await;
    gemini.queue(vec![Behaviour::json(400, &json!({"error": {"code": 400,
        "message": "Unable to submit request because it has a maxOutputTokens value of 128000 but the supported range is from 1 (inclusive) to 65537 (exclusive). Update the value and try again.",
        "status": "INVALID_ARGUMENT"}}))]);
    let openai = FaultyUpstream::start(Behaviour::ok("hello")).await;
    openai.queue(vec![Behaviour::json(400, &json!({"error": {
        "message": "max_completion_tokens is too large: 128000. This model supports at most 16384 completion tokens, whereas you provided 128000.",
        "type": "invalid_request_error", "param": "max_completion_tokens", "code": null}}))]);
    let url = weir(&format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\nkeys = [\"AIza-k\"]\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [\"sk-o\"]\n\
         [[models]]\nname = \"claude-opus-4-6\"\ntargets = [{{ provider = \"g\", model = \"gemini-3-pro-preview\" }}]\n\
         [[models]]\nname = \"claude-haiku-4-5\"\ntargets = [{{ provider = \"o\", model = \"gpt-4o\" }}]\n",
        gemini.url(),
        openai.url()
    ))
    .await;
    let ask = |model: &str, stream: bool| {
        let body = json!({"model": model, "max_tokens": 128000, "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        reqwest::Client::new()
            .post(format!("{url}/v1/messages?beta=true"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let limits = |up: &FaultyUpstream, field: &str| -> Vec<Value> {
        up.requests()
            .iter()
            .map(|r| {
                let v = r.json().unwrap();
                v.pointer(field).cloned().unwrap_or(Value::Null)
            })
            .collect()
    };
    for (model, up, field, ceiling) in [
        (
            "claude-opus-4-6",
            &gemini,
            "/generationConfig/maxOutputTokens",
            65536,
        ),
        ("claude-haiku-4-5", &openai, "/max_completion_tokens", 16384),
    ] {
        for stream in [false, true] {
            let r = ask(model, stream).await.unwrap();
            let status = r.status();
            if status != 200 {
                panic!("{model} {stream}: {status} {}", r.text().await.unwrap());
            }
            let warning = r.headers()["x-weir-warning"].to_str().unwrap().to_owned();
            assert!(
                warning.contains(&format!(
                    "output limit lowered to {ceiling}, the most the model takes"
                )),
                "{warning}"
            );
            let text = r.text().await.unwrap();
            assert!(text.contains("hello"), "{text}");
        }
        // Refused once, asked again lowered, then lowered at once.
        assert_eq!(
            limits(up, field),
            vec![json!(128000), json!(ceiling), json!(ceiling)],
            "{model}"
        );
    }
    // A Responses request (bridged to Gemini) goes lowered too, and says so.
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "claude-opus-4-6", "input": "hi", "max_output_tokens": 128000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let warning = r.headers()["x-weir-warning"].to_str().unwrap().to_owned();
    assert!(
        warning.contains("output limit lowered to 65536"),
        "{warning}"
    );
    assert_eq!(
        limits(&gemini, "/generationConfig/maxOutputTokens").last(),
        Some(&json!(65536))
    );
}

/// An OpenAI client that asked for one tool call per turn gets Gemini's first call only,
/// whole and streamed (Gemini has no switch for it); without the ask, both.
#[tokio::test]
async fn gemini_keeps_to_one_call_when_the_client_asked_for_one() {
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "responseId": "r1"
    });
    let up = gemini_answering(&answer).await;
    let url = weir(&format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\nkeys = [\"AIza-k\"]\n\
         [[models]]\nname = \"g\"\ntargets = [{{ provider = \"g\", model = \"gemini-2.5-flash\" }}]\n",
        up.url()
    ))
    .await;
    for (parallel, stream, calls) in [
        (Some(false), false, 1),
        (Some(false), true, 1),
        (None, false, 2),
        (Some(true), true, 2),
    ] {
        let mut body = json!({"model": "g", "stream": stream,
            "messages": [{"role": "user", "content": "weather in Paris and Rome?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
        if let Some(p) = parallel {
            body["parallel_tool_calls"] = json!(p);
        }
        let (status, text) = post(&url, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{text}");
        let n = if stream {
            text.lines()
                .filter(|l| l.contains("\"function\":{\"name\":\"get_weather\""))
                .count()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .len()
        };
        assert_eq!(n, calls, "parallel {parallel:?} stream {stream}: {text}");
    }
}
