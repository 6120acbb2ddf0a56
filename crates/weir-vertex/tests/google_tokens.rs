//! Google tokens for a service account key, fetched from a local token endpoint (the key's
//! `token_uri`): cached, replaced near expiry and after a 401, failures held.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use weir_model::{ErrorKind, Secret};
use weir_testkit::upstream::{Behaviour, FaultyUpstream};
use weir_vertex::{GoogleTokens, TokenSource};

fn service_account(token_uri: &str) -> String {
    let text = include_str!("fixtures/test-service-account.json");
    let mut sa: Value = serde_json::from_str(text).unwrap();
    sa["token_uri"] = Value::String(token_uri.to_owned());
    sa.to_string()
}

fn token_answer(token: &str, expires_in: u64) -> Behaviour {
    status(
        200,
        &json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
    )
}

#[tokio::test]
async fn service_account_tokens_are_fetched_cached_and_replaced_after_a_401() {
    let token_server = FaultyUpstream::start(token_answer("ya29.second", 3600)).await;
    token_server.queue(vec![token_answer("ya29.first", 3600)]);
    let tokens = Arc::new(GoogleTokens::from_service_account_json(service_account(
        &format!("{}/token", token_server.url()),
    )));

    let up = FaultyUpstream::start(status(200, &message_json())).await;
    up.queue(vec![unauthenticated()]);
    let p = provider(&up, "us-east5", tokens.clone());
    complete(&p, claude_request(false)).await.unwrap();

    let reqs = up.requests();
    assert_eq!(bearer(&reqs[0]), Some("Bearer ya29.first"));
    assert_eq!(bearer(&reqs[1]), Some("Bearer ya29.second"));
    assert_eq!(token_server.hits(), 2);
    assert_eq!(tokens.fetches(), 2);

    // The token request is the JWT-bearer grant to the key's token_uri.
    let t = &token_server.requests()[0];
    assert_eq!(t.path, "/token");
    let form = String::from_utf8(t.body.clone()).unwrap();
    assert!(
        form.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{form}"
    );

    // Cached from now on; an invalidation of some other token changes nothing.
    tokens.invalidate(&Secret::new("ya29.first"));
    complete(&p, claude_request(false)).await.unwrap();
    assert_eq!(bearer(&up.requests()[2]), Some("Bearer ya29.second"));
    assert_eq!(token_server.hits(), 2);
    assert!(!format!("{tokens:?}").contains("ya29"));
}

#[tokio::test]
async fn a_token_near_expiry_is_replaced_before_use() {
    // The first token has 100 s left: inside the refresh margin, though gcp_auth (20 s
    // margin) would still hand it out.
    let token_server = FaultyUpstream::start(token_answer("ya29.later", 3600)).await;
    token_server.queue(vec![token_answer("ya29.short", 100)]);
    let tokens = GoogleTokens::from_service_account_json(service_account(&format!(
        "{}/token",
        token_server.url()
    )));
    // Just issued, it is the newest there is: used once.
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.short");
    // Next time it is inside the margin: replaced.
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.later");
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.later");
    assert_eq!(token_server.hits(), 2);
}

#[tokio::test]
async fn a_refused_token_request_is_an_authentication_error() {
    let token_server = FaultyUpstream::start(status(
        400,
        &json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    ))
    .await;
    let tokens = Arc::new(GoogleTokens::from_service_account_json(service_account(
        &format!("{}/token", token_server.url()),
    )));
    let up = FaultyUpstream::start(status(200, &message_json())).await;
    let p = provider(&up, "us-east5", tokens.clone());
    let e = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert!(e.message.contains("access token"), "{}", e.message);
    assert_eq!(up.hits(), 0);
    // Held: the next request does not hit the token endpoint again at once.
    let hits = token_server.hits();
    let e2 = complete(&p, claude_request(false)).await.unwrap_err();
    assert_eq!(e2.message, e.message);
    assert_eq!(token_server.hits(), hits);
}

#[tokio::test]
async fn a_failed_refresh_keeps_using_a_still_valid_token() {
    // 100 s left: inside the margin, so the next call refreshes; the refresh fails.
    let token_server =
        FaultyUpstream::start(status(503, &json!({"error": "temporarily_unavailable"}))).await;
    token_server.queue(vec![token_answer("ya29.short", 100)]);
    let tokens = GoogleTokens::from_service_account_json(service_account(&format!(
        "{}/token",
        token_server.url()
    )));
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.short");
    let before = token_server.hits();
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.short");
    let after_refresh = token_server.hits();
    assert!(after_refresh > before, "a refresh was attempted");
    // Within the hold, no new attempt; the valid token still serves.
    assert_eq!(tokens.token().await.unwrap().expose(), "ya29.short");
    assert_eq!(token_server.hits(), after_refresh);
    // Once Vertex refuses it, there is nothing left to use: the failure shows.
    tokens.invalidate(&Secret::new("ya29.short"));
    let e = tokens.token().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(token_server.hits(), after_refresh);
}
