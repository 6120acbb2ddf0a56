//! The provider against a local HTTP server (weir-testkit's `FaultyUpstream`): paths,
//! signed headers, body shapes, streamed answers, error mapping, and no credentials in
//! errors or Debug output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use http::HeaderMap;
use serde_json::{json, Value};
use weir_bedrock::credentials::parse_expiry;
use weir_bedrock::sigv4::sign;
use weir_bedrock::{
    Auth, AwsCredentials, BedrockConfig, BedrockProvider, CredentialSource, CredentialsLoader,
};
use weir_model::{CallContext, ErrorKind, Frame, Provider, ProviderError, Reply, Secret};
use weir_testkit::upstream::{Behaviour, FaultyUpstream, Recorded};
use weir_upstream::Upstream;

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN/+=";
const CLAUDE: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const NOVA: &str = "us.amazon.nova-micro-v1:0";

fn creds() -> AwsCredentials {
    AwsCredentials::new(ACCESS_KEY, SECRET_KEY, Some(TOKEN))
}

fn provider(up: &FaultyUpstream, auth: Auth) -> BedrockProvider {
    let cfg = BedrockConfig {
        base_url: Some(up.url().to_owned()),
        credentials: CredentialSource::Fixed(auth),
        drop_betas: vec!["claude-code-20250219".to_owned()],
        ..BedrockConfig::new("bedrock", "us-east-1")
    };
    BedrockProvider::new(cfg, Upstream::new(Duration::from_secs(5)).unwrap()).unwrap()
}

fn answer(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: impl Into<String>,
) -> Behaviour {
    Behaviour::Status {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        content_type: content_type.to_owned(),
        body: body.into(),
    }
}

fn anthropic_request(model: &str, stream: bool) -> weir_model::ChatRequest {
    let body = json!({
        "model": model, "max_tokens": 256, "stream": stream,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}]
    });
    weir_anthropic::decode_request(body.to_string().as_bytes()).unwrap()
}

fn cx_with_betas() -> CallContext {
    let mut cx = CallContext::new("req-1");
    cx.forward_headers.insert(
        "anthropic-beta",
        "interleaved-thinking-2025-05-14,claude-code-20250219"
            .parse()
            .unwrap(),
    );
    cx
}

const ANTHROPIC_RESPONSE: &str = r#"{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":3}}"#;

/// Signs the request the server received again, from what it received, and checks the
/// signature is the one sent: the host, path encoding, headers and body that went over
/// the wire are the ones signed.
fn assert_signed_as_received(up: &FaultyUpstream, r: &Recorded) {
    let date = r.header("x-amz-date").unwrap();
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    let mut h = HeaderMap::new();
    h.insert("content-type", r.headers["content-type"].clone());
    h.insert("accept", r.headers["accept"].clone());
    let url = format!("{}{}", up.url(), r.path);
    sign(
        "POST",
        &url,
        &mut h,
        &r.body,
        &creds(),
        "us-east-1",
        parse_expiry(&rfc3339).unwrap(),
    )
    .unwrap();
    assert_eq!(r.header("authorization"), h["authorization"].to_str().ok());
}

#[tokio::test]
async fn invoke_request_is_signed_and_shaped() {
    let up = FaultyUpstream::start(answer(200, &[], "application/json", ANTHROPIC_RESPONSE)).await;
    let p = provider(&up, Auth::SigV4(creds()));
    let reply = p
        .send(&anthropic_request(CLAUDE, false), cx_with_betas())
        .await
        .unwrap();
    let Reply::Complete(r) = reply else {
        panic!("expected a complete answer")
    };
    assert_eq!(r.id, "msg_bdrk_01");
    assert_eq!(r.usage.output_tokens, Some(3));

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(
        r.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("x-amz-security-token"), Some(TOKEN));
    let auth = r.header("authorization").unwrap();
    let date = r.header("x-amz-date").unwrap();
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token, Signature=",
        &date[..8]
    );
    assert!(auth.starts_with(&prefix), "{auth}");
    assert_eq!(auth.len(), prefix.len() + 64);
    assert_signed_as_received(&up, r);
    assert_eq!(
        r.json().unwrap(),
        json!({
            "anthropic_version": "bedrock-2023-05-31",
            "anthropic_beta": ["interleaved-thinking-2025-05-14"],
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 256
        })
    );
}

async fn frames(reply: Reply) -> Vec<Result<Frame, ProviderError>> {
    let Reply::Stream(s) = reply else {
        panic!("expected a stream")
    };
    s.collect().await
}

#[tokio::test]
async fn streamed_invoke_gives_back_the_anthropic_events() {
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_bdrk_02","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":9,"outputTokenCount":2,"invocationLatency":300,"firstByteLatency":100}}"#,
    ];
    let body: String = events
        .iter()
        .map(|e| {
            common::ascii_event(
                "chunk",
                &format!(r#"{{"bytes":"{}"}}"#, aws_smithy_types::base64::encode(e)),
            )
        })
        .collect();
    let up =
        FaultyUpstream::start(answer(200, &[], "application/vnd.amazon.eventstream", body)).await;
    let p = provider(&up, Auth::SigV4(creds()));
    let got: Vec<Frame> = frames(
        p.send(&anthropic_request(CLAUDE, true), cx_with_betas())
            .await
            .unwrap(),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    common::well_formed(&got).unwrap();
    let data: Vec<&str> = got
        .iter()
        .map(|f| f.source.as_ref().unwrap().event.data())
        .collect();
    assert_eq!(data, events);
    let r = &up.requests()[0];
    assert_eq!(
        r.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );
    assert_eq!(
        r.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    let body = r.json().unwrap();
    assert_eq!(body.get("stream"), None);
    assert_eq!(body.get("model"), None);
    assert_signed_as_received(&up, r);
}

#[tokio::test]
async fn converse_answers_whole_and_streamed() {
    let whole = r#"{"metrics":{"latencyMs":436},"output":{"message":{"content":[{"text":"Bonjour"}],"role":"assistant"}},"stopReason":"end_turn","usage":{"inputTokens":5,"outputTokens":2,"totalTokens":7}}"#;
    let up = FaultyUpstream::start(answer(
        200,
        &[("x-amzn-requestid", "b6a5c1d2-0000-4000-8000-000000000001")],
        "application/json",
        whole,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let Reply::Complete(r) = p
        .send(&anthropic_request(NOVA, false), CallContext::new("r"))
        .await
        .unwrap()
    else {
        panic!("expected a complete answer")
    };
    assert_eq!(r.id, "b6a5c1d2-0000-4000-8000-000000000001");
    assert_eq!(r.model, NOVA);
    assert_eq!(r.usage.input_tokens, Some(5));
    let rec = &up.requests()[0];
    assert_eq!(rec.path, "/model/us.amazon.nova-micro-v1%3A0/converse");
    assert_eq!(
        rec.json().unwrap(),
        json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 256}
        })
    );
    assert_signed_as_received(&up, rec);

    let stream: String = [
        ("messageStart", r#"{"role":"assistant"}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Bon"}}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"jour"}}"#),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        ("messageStop", r#"{"stopReason":"end_turn"}"#),
        ("metadata", r#"{"usage":{"inputTokens":5,"outputTokens":2,"totalTokens":7},"metrics":{"latencyMs":100}}"#),
    ]
    .iter()
    .map(|(t, j)| common::ascii_event(t, j))
    .collect();
    up.set(answer(
        200,
        &[("x-amzn-requestid", "req-s")],
        "application/vnd.amazon.eventstream",
        stream,
    ));
    let got: Vec<Frame> = frames(
        p.send(&anthropic_request(NOVA, true), CallContext::new("r"))
            .await
            .unwrap(),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    common::well_formed(&got).unwrap();
    let c = weir_testkit::collect(&got);
    assert_eq!(
        (c.id.as_str(), c.text.clone(), c.usage),
        ("req-s", vec!["Bonjour".to_owned()], (5, 2, 0, 0))
    );
    assert_eq!(
        up.requests()[1].path,
        "/model/us.amazon.nova-micro-v1%3A0/converse-stream"
    );
}

#[tokio::test]
async fn throttling_is_rate_limited_with_a_wait() {
    let up = FaultyUpstream::start(answer(
        429,
        &[(
            "x-amzn-errortype",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        )],
        "application/json",
        r#"{"message":"Too many tokens, please wait before trying again."}"#,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let e = p
        .send(&anthropic_request(CLAUDE, true), CallContext::new("r"))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(e.retry_after, Some(weir_bedrock::THROTTLE_RETRY_AFTER));
    assert!(e.retryable_elsewhere);
    assert_eq!(
        e.message,
        "Too many tokens, please wait before trying again."
    );
    assert_eq!(
        e.api_error.unwrap().error_type.as_deref(),
        Some("ThrottlingException")
    );

    // A stream throttled after it opened gives what came before, then the same error.
    let body = [
        common::ascii_event("messageStart", r#"{"role":"assistant"}"#),
        common::ascii_event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ),
        common::ascii_exception("throttlingException", r#"{"message":"slow down"}"#),
    ]
    .concat();
    up.set(answer(200, &[], "application/vnd.amazon.eventstream", body));
    let got = frames(
        p.send(&anthropic_request(NOVA, true), CallContext::new("r"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].is_ok() && got[1].is_ok());
    let e = got[2].as_ref().unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.retry_after),
        (
            ErrorKind::RateLimited,
            Some(429),
            Some(weir_bedrock::THROTTLE_RETRY_AFTER)
        )
    );
    assert_eq!(e.message, "slow down");
}

#[tokio::test]
async fn credentials_never_appear_in_errors_or_debug_output() {
    let echo = format!(
        r#"{{"message":"The security token included in the request is invalid: {ACCESS_KEY} {SECRET_KEY} {TOKEN} bedrock-api-key-123456"}}"#
    );
    let up = FaultyUpstream::start(answer(
        403,
        &[("x-amzn-errortype", "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/")],
        "application/json",
        echo,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let e = p
        .send(&anthropic_request(CLAUDE, false), CallContext::new("r"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    let shown = format!("{e} {e:?} {p:?}");
    for secret in [ACCESS_KEY, SECRET_KEY, TOKEN] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(e.message.contains("*** *** ***"), "{}", e.message);

    // A Bedrock API key goes as a bearer token, unsigned, and is scrubbed the same way.
    let p = provider(&up, Auth::Bearer(Secret::new("bedrock-api-key-123456")));
    let e = p
        .send(&anthropic_request(NOVA, false), CallContext::new("r"))
        .await
        .unwrap_err();
    let r = up.requests().pop().unwrap();
    assert_eq!(
        r.header("authorization"),
        Some("Bearer bedrock-api-key-123456")
    );
    assert_eq!(r.header("x-amz-date"), None);
    let shown = format!("{e} {e:?} {p:?}");
    assert!(!shown.contains("bedrock-api-key-123456"), "{shown}");
}

#[tokio::test]
async fn count_tokens_uses_the_foundation_model() {
    let up = FaultyUpstream::start(answer(
        200,
        &[],
        "application/json",
        r#"{"inputTokens":42}"#,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let n = p
        .count_tokens(anthropic_request(CLAUDE, true), CallContext::new("r"))
        .await
        .unwrap();
    assert_eq!(n, Some(42));
    let r = &up.requests()[0];
    assert_eq!(
        r.path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens"
    );
    let body: Value = r.json().unwrap();
    let invoke =
        aws_smithy_types::base64::decode(body["input"]["invokeModel"]["body"].as_str().unwrap())
            .unwrap();
    let invoke: Value = serde_json::from_slice(&invoke).unwrap();
    assert_eq!(invoke["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(invoke.get("stream"), None);
    assert_eq!(
        p.count_tokens(anthropic_request(NOVA, false), CallContext::new("r"))
            .await
            .unwrap(),
        None
    );
}

/// CountTokens refuses some ids inference takes (inference profiles): the count is left
/// to the gateway's estimate rather than failing.
#[tokio::test]
async fn a_count_refused_as_invalid_is_left_to_the_estimate() {
    let up = FaultyUpstream::start(answer(
        400,
        &[("x-amzn-errortype", "ValidationException")],
        "application/json",
        r#"{"message":"The provided model identifier is invalid."}"#,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let n = p
        .count_tokens(anthropic_request(CLAUDE, false), CallContext::new("r"))
        .await
        .unwrap();
    assert_eq!(n, None);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn listed_arns_go_through_invoke_and_profile_errors_name_the_fix() {
    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3";
    let up = FaultyUpstream::start(answer(
        400,
        &[("x-amzn-errortype", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")],
        "application/json",
        r#"{"message":"Invocation of model ID anthropic.claude-sonnet-4-5-20250929-v1:0 with on-demand throughput isn’t supported. Retry your request with the ID or ARN of an inference profile that contains this model."}"#,
    ))
    .await;
    let cfg = BedrockConfig {
        base_url: Some(up.url().to_owned()),
        credentials: CredentialSource::Fixed(Auth::SigV4(creds())),
        anthropic_models: vec![ARN.to_owned()],
        ..BedrockConfig::new("bedrock", "us-east-1")
    };
    let p = BedrockProvider::new(cfg, Upstream::new(Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(
        p.capabilities(ARN).native_dialect,
        Some(weir_model::Dialect::Anthropic)
    );
    assert_eq!(
        p.capabilities("arn:aws:bedrock:us-east-1:1:application-inference-profile/x")
            .native_dialect,
        None
    );
    let _ = p
        .send(&anthropic_request(ARN, false), CallContext::new("r"))
        .await
        .unwrap_err();
    assert_eq!(
        up.requests()[0].path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3/invoke"
    );
    let e = p
        .send(
            &anthropic_request("anthropic.claude-sonnet-4-5-20250929-v1:0", false),
            CallContext::new("r"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(
        e.message
            .contains("use `us.anthropic.claude-sonnet-4-5-20250929-v1:0`"),
        "{}",
        e.message
    );
}

/// Missing credentials do not stop the provider (nor the gateway) from being built: its
/// requests fail saying what was looked at, until some appear. A bad region does.
#[tokio::test]
async fn without_credentials_requests_fail_clearly_until_some_appear_and_a_bad_region_fails_construction(
) {
    let upstream = Upstream::new(Duration::from_secs(1)).unwrap();
    let dir = std::env::temp_dir().join("weir-bedrock-no-such-dir");
    let cfg = BedrockConfig {
        credentials: CredentialSource::Chain(
            CredentialsLoader::with_env(|_| None)
                .with_files(dir.join("credentials"), dir.join("config")),
        ),
        ..BedrockConfig::new("bedrock", "us-east-1")
    };
    let p = BedrockProvider::new(cfg, upstream.clone()).unwrap();
    let e = match p
        .send(&anthropic_request(CLAUDE, false), CallContext::new("r"))
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("answered without credentials"),
    };
    assert!(e.message.starts_with("no AWS credentials found"), "{e:?}");
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(e.retryable_elsewhere);
    assert_eq!(e.status, None);
    let cfg = BedrockConfig {
        credentials: CredentialSource::Fixed(Auth::SigV4(creds())),
        ..BedrockConfig::new("bedrock", "us east 1")
    };
    assert_eq!(
        BedrockProvider::new(cfg, upstream).unwrap_err(),
        "`us east 1` is not an AWS region (e.g. us-east-1)"
    );
}

#[tokio::test]
async fn credentials_refused_as_expired_are_reloaded_and_the_request_sent_again_once() {
    let dir = std::env::temp_dir().join(format!("weir-bedrock-rotated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (creds_file, conf_file) = (dir.join("credentials"), dir.join("config"));
    let write = |token: &str| {
        std::fs::write(
            &creds_file,
            format!(
                "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\naws_session_token = {token}\n"
            ),
        )
        .unwrap();
    };
    write("OLD-TOKEN");
    std::fs::write(&conf_file, "").unwrap();
    let expired = || {
        answer(
            403,
            &[(
                "x-amzn-errortype",
                "ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            )],
            "application/json",
            r#"{"message":"The security token included in the request is expired"}"#,
        )
    };
    let up = FaultyUpstream::start(answer(200, &[], "application/json", ANTHROPIC_RESPONSE)).await;
    let cfg = BedrockConfig {
        base_url: Some(up.url().to_owned()),
        credentials: CredentialSource::Chain(
            CredentialsLoader::with_env(|_| None).with_files(&creds_file, &conf_file),
        ),
        ..BedrockConfig::new("bedrock", "us-east-1")
    };
    let p = BedrockProvider::new(cfg, Upstream::new(Duration::from_secs(5)).unwrap()).unwrap();
    let req = anthropic_request(CLAUDE, false);
    let send = || p.send(&req, CallContext::new("r"));

    // The file was rewritten with fresh credentials: the refused request goes again with
    // them, and the client never hears of it.
    write("NEW-TOKEN");
    up.queue(vec![expired()]);
    let reply = send().await;
    assert!(reply.is_ok(), "{:?}", reply.err());
    let tokens: Vec<Option<String>> = up
        .requests()
        .iter()
        .map(|r| r.header("x-amz-security-token").map(str::to_owned))
        .collect();
    assert_eq!(
        tokens,
        [Some("OLD-TOKEN".to_owned()), Some("NEW-TOKEN".to_owned())]
    );

    // Nothing fresher to be found: sent once, and the failure is the gateway's own
    // credentials' (no status: a 502 for the client), not a 403 a client would take for
    // its own key refused.
    up.queue(vec![expired()]);
    let Err(e) = send().await else {
        panic!("an expired token was served");
    };
    assert_eq!((e.kind, e.status), (ErrorKind::Authentication, None));
    assert!(e.message.contains("the gateway's AWS credentials"), "{e:?}");
    assert_eq!(up.hits(), 3);

    // Fresh ones written a moment later (well within the 10 s between ordinary reloads)
    // are read for the next request, the refused ones being due for a reload.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write("NEWER-TOKEN");
    let reply = send().await;
    assert!(reply.is_ok(), "{:?}", reply.err());
    let last = up
        .requests()
        .last()
        .unwrap()
        .header("x-amz-security-token")
        .map(str::to_owned);
    assert_eq!(last.as_deref(), Some("NEWER-TOKEN"));

    // Reloaded ones refused as expired too: still the gateway's failure, not a 403.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write("NEWEST-TOKEN");
    let before = up.hits();
    up.queue(vec![expired(), expired()]);
    let Err(e) = send().await else {
        panic!("an expired token was served");
    };
    assert_eq!((e.kind, e.status), (ErrorKind::Authentication, None));
    assert!(e.message.contains("the reloaded ones too"), "{e:?}");
    assert_eq!(up.hits(), before + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn providers_reading_the_same_sources_share_one_credentials_cache() {
    use weir_bedrock::credentials::CredentialsCache;
    let loader = |profile: &str| CredentialsLoader::from_process_env().with_profile(profile);
    let (a, _) = CredentialsCache::shared(&loader("weir-test-shared"));
    let (b, _) = CredentialsCache::shared(&loader("weir-test-shared"));
    let (c, _) = CredentialsCache::shared(&loader("weir-test-other"));
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    // A loader over an environment of its own is never shared.
    let own = || CredentialsLoader::with_env(|_| None).with_profile("weir-test-shared");
    let (d, _) = CredentialsCache::shared(&own());
    let (e, _) = CredentialsCache::shared(&own());
    assert!(!std::sync::Arc::ptr_eq(&d, &e));
}

fn embed_request(body: Value) -> weir_model::EmbedRequest {
    weir_model::EmbedRequest::decode(body.to_string().as_bytes()).unwrap()
}

/// Titan Text Embeddings: one signed InvokeModel call per text; the answer is OpenAI's list
/// with Titan's own token counts.
#[tokio::test]
async fn titan_embeddings_one_call_per_text() {
    let up = FaultyUpstream::start(answer(
        200,
        &[],
        "application/json",
        r#"{"embedding":[0.5,-1.0],"inputTextTokenCount":3}"#,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    assert!(p.serves_embeddings());
    let model = "amazon.titan-embed-text-v2:0";
    let req = embed_request(json!({"model": model, "input": ["a", "bb"], "dimensions": 256}));
    let r = p.embed(&req, CallContext::new("t")).await.unwrap();
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_signed_as_received(&up, &seen[1]);
    // (The calls go at once: in either order.)
    let mut bodies: Vec<Value> = seen
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["inputText"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies,
        [
            json!({"inputText": "a", "dimensions": 256}),
            json!({"inputText": "bb", "dimensions": 256})
        ]
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"], json!([0.5, -1.0]));
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(r.usage.input_tokens, Some(6));
}

/// Cohere Embed: the texts in one call, `input_type` as the client gave it (else
/// `search_document`), the count from Bedrock's header; a count of vectors that does not
/// match the texts is the upstream's failure, not a short answer.
#[tokio::test]
async fn cohere_embeddings_in_one_call() {
    let up = FaultyUpstream::start(answer(
        200,
        &[("x-amzn-bedrock-input-token-count", "5")],
        "application/json",
        r#"{"id":"e1","embeddings":{"float":[[1.0],[2.0]]},"texts":["a","b"],"response_type":"embeddings_by_type"}"#,
    ))
    .await;
    let p = provider(&up, Auth::SigV4(creds()));
    let req = embed_request(json!({
        "model": "m", "input": ["a", "b"], "input_type": "search_query", "encoding_format": "base64",
    }));
    let mut req2 = req.clone();
    req2.model = "cohere.embed-english-v3".into();
    let r = p.embed(&req2, CallContext::new("t")).await.unwrap();
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"]})
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    // 2.0 as a little-endian f32.
    assert_eq!(v["data"][1]["embedding"], "AAAAQA==");
    assert_eq!(v["usage"]["prompt_tokens"], 5);

    let three =
        embed_request(json!({"model": "cohere.embed-english-v3", "input": ["a", "b", "c"]}));
    let e = p.embed(&three, CallContext::new("t")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode, "{}", e.message);
    assert!(
        e.message
            .contains("3 texts were answered with 2 embeddings"),
        "{}",
        e.message
    );

    // A model that is not an embeddings model is passed over, before any call.
    let calls = up.requests().len();
    let other = embed_request(json!({"model": NOVA, "input": "a"}));
    let e = p.embed(&other, CallContext::new("t")).await.unwrap_err();
    assert!(e.is_unexpressible(), "{e:?}");
    assert!(
        e.message.contains("Titan Text Embeddings and Cohere Embed"),
        "{}",
        e.message
    );
    assert_eq!(up.requests().len(), calls);
}

/// Answers Titan with a vector holding the text's length, sooner for longer texts, so
/// calls made at once finish out of order.
struct TitanEcho;

impl wiremock::Respond for TitanEcho {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let n = body["inputText"].as_str().unwrap().len();
        wiremock::ResponseTemplate::new(200)
            .set_body_json(json!({"embedding": [n as f64], "inputTextTokenCount": 1}))
            .set_delay(Duration::from_millis(200u64.saturating_sub(n as u64 * 10)))
    }
}

/// Titan's calls go several at once and finish in any order; the answer keeps the inputs'
/// order. Past 2048 inputs (OpenAI's limit) the request is refused before any call, a 400
/// the client must fix, not a pass-over.
#[tokio::test]
async fn titan_calls_at_once_keep_the_inputs_order() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(TitanEcho)
        .mount(&server)
        .await;
    let cfg = BedrockConfig {
        base_url: Some(server.uri()),
        credentials: CredentialSource::Fixed(Auth::SigV4(creds())),
        ..BedrockConfig::new("bedrock", "us-east-1")
    };
    let p = BedrockProvider::new(cfg, Upstream::new(Duration::from_secs(5)).unwrap()).unwrap();
    let texts: Vec<String> = (1..=20).map(|n| "x".repeat(n)).collect();
    let req = embed_request(json!({"model": "amazon.titan-embed-text-v2:0", "input": texts}));
    let r = p.embed(&req, CallContext::new("t")).await.unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let lengths: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["embedding"][0].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(lengths, (1..=20).collect::<Vec<u64>>());
    assert_eq!(v["usage"]["prompt_tokens"], 20);

    let calls = server.received_requests().await.unwrap().len();
    let too_many =
        embed_request(json!({"model": "amazon.titan-embed-text-v2:0", "input": vec!["a"; 2049]}));
    let e = p.embed(&too_many, CallContext::new("t")).await.unwrap_err();
    assert!(!e.is_unexpressible(), "{e:?}");
    assert_eq!(e.status, Some(400));
    assert!(e.message.contains("at most 2048"), "{}", e.message);
    assert_eq!(server.received_requests().await.unwrap().len(), calls);
}
