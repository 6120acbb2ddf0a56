//! SigV4 signatures checked against an independent implementation: botocore.
//!
//! The expected values below were produced by `tests/fixtures/botocore_sigv4.py` with
//! botocore 1.44.5 (`pip install botocore==1.44.5`; Python 3.11): for each case it
//! prints the URL botocore's own `bedrock-runtime` client builds for the model id and
//! the `Authorization` header botocore's `SigV4Auth` computes for a POST with the same
//! body and headers (`content-type`, `accept`, plus the `host`, `x-amz-date` and
//! `x-amz-security-token` signing adds) at 2025-01-02T03:04:05Z with the example
//! credentials. Re-run the script to check them; nothing here is derived from aws-sigv4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use weir_bedrock::sigv4::{encode_model_id, sign};
use weir_bedrock::AwsCredentials;

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN/+=";
const BODY: &[u8] = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"Hi"}]}"#;
const BASE: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";

/// 2025-01-02T03:04:05Z.
fn time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_787_045)
}

struct Case {
    model: &'static str,
    action: &'static str,
    accept: &'static str,
    token: bool,
    /// botocore's URL.
    url: &'static str,
    /// botocore's Authorization header.
    authorization: &'static str,
}

const CASES: &[Case] = &[
    Case {
        model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        action: "invoke-with-response-stream",
        accept: "application/vnd.amazon.eventstream",
        token: false,
        url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date, Signature=ac7742da7fd4836329da62f7a75d6feb8386fb389763816f54be81a5895cc03d",
    },
    Case {
        model: "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5",
        action: "converse",
        accept: "application/json",
        token: true,
        url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5/converse",
        authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token, Signature=78a579e2740276e53f8af96e756a3533a7881d720701bce5f7059520c95ca812",
    },
];

fn signed(case: &Case, body: &[u8]) -> (String, HeaderMap) {
    // The URL as the provider builds it (parsed by the HTTP client's URL type).
    let url = weir_upstream::endpoint(
        BASE,
        &format!("/model/{}/{}", encode_model_id(case.model), case.action),
    )
    .unwrap();
    let creds = AwsCredentials::new(ACCESS_KEY, SECRET_KEY, case.token.then_some(TOKEN));
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("accept", case.accept.parse().unwrap());
    sign(
        "POST",
        url.as_str(),
        &mut h,
        body,
        &creds,
        "us-east-1",
        time(),
    )
    .unwrap();
    (url.as_str().to_owned(), h)
}

#[test]
fn signatures_match_botocore() {
    for case in CASES {
        let (url, h) = signed(case, BODY);
        assert_eq!(url, case.url, "{}", case.model);
        assert_eq!(
            h["authorization"].to_str().unwrap(),
            case.authorization,
            "{}",
            case.model
        );
        assert_eq!(h["x-amz-date"], "20250102T030405Z");
        assert!(h["authorization"].is_sensitive());
        match h.get("x-amz-security-token") {
            Some(t) => {
                assert!(case.token);
                assert_eq!(t, TOKEN);
                assert!(t.is_sensitive());
            }
            None => assert!(!case.token),
        }
        assert!(!h.contains_key("x-amz-content-sha256"));
    }
}

#[test]
fn the_payload_is_signed() {
    let (_, a) = signed(&CASES[0], BODY);
    let (_, b) = signed(&CASES[0], b"{}");
    assert_ne!(a["authorization"], b["authorization"]);
}

#[test]
fn signing_errors_and_debug_never_show_credentials() {
    let creds = AwsCredentials::new(ACCESS_KEY, SECRET_KEY, Some(TOKEN));
    let dbg = format!("{creds:?}");
    for s in [ACCESS_KEY, SECRET_KEY, TOKEN] {
        assert!(!dbg.contains(s), "{dbg}");
    }
    let mut h = HeaderMap::new();
    h.insert(
        "x-odd",
        http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    );
    let e = sign(
        "POST",
        CASES[0].url,
        &mut h,
        BODY,
        &creds,
        "us-east-1",
        time(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "header `x-odd` is not visible ASCII and cannot be signed"
    );
}
