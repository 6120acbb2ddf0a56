//! The recorded-traffic corpus (`$WEIR_CORPUS/bedrock`, read at test time, never copied
//! here): every streamed Bedrock answer decodes (InvokeModel or Converse, by the request
//! URL) into a well-formed canonical sequence, split at every byte offset too; every
//! non-streamed answer with a body decodes as a response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{split_everywhere, well_formed};
use weir_bedrock::{decode_converse_response, decode_error, ConverseStream, InvokeStream};

/// The model id and action of a Bedrock runtime URL
/// (`https://bedrock-runtime.<region>.amazonaws.com/model/<id>/<action>`).
fn model_and_action(url: &str) -> Option<(String, String)> {
    if !url.contains("://bedrock-runtime.") {
        return None;
    }
    let rest = url.split_once("/model/")?.1;
    let (id, action) = rest.rsplit_once('/')?;
    let mut decoded = Vec::new();
    let bytes = id.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            decoded.push(u8::from_str_radix(&id[i + 1..i + 3], 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some((String::from_utf8(decoded).ok()?, action.to_owned()))
}

#[test]
fn recorded_bedrock_answers_decode() {
    let Some(root) = weir_testkit::corpus_dir() else {
        return;
    };
    let (mut streams, mut responses, mut skipped) = (0, 0, Vec::new());
    for ex in weir_testkit::exchanges(&root, "bedrock") {
        let Some((model, action)) = ex.url.as_deref().and_then(model_and_action) else {
            skipped.push(format!("{} (not a Bedrock runtime call)", ex.name));
            continue;
        };
        if ex.body.is_empty() {
            skipped.push(format!("{} (recorded without a body)", ex.name));
            continue;
        }
        if ex.status >= 400 {
            let e = decode_error(ex.status, None, &ex.body);
            assert!(!e.message.is_empty(), "{}", ex.name);
            responses += 1;
            continue;
        }
        match (ex.streaming, action.as_str()) {
            (true, "converse-stream") => {
                let frames =
                    split_everywhere(|| ConverseStream::new("id", model.clone()), &ex.body);
                well_formed(&frames).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                let c = weir_testkit::collect(&frames);
                assert!(
                    !c.text.is_empty() || !c.tool_calls.is_empty(),
                    "{}: no content",
                    ex.name
                );
                assert!(c.usage.1 > 0, "{}: no usage", ex.name);
                // Both client dialects read the same text, thinking and tool calls.
                weir_testkit::reencode_both(&frames).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                streams += 1;
            }
            (true, "invoke-with-response-stream") => {
                let frames = split_everywhere(InvokeStream::new, &ex.body);
                well_formed(&frames).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                assert!(frames.iter().all(|f| f.source.is_some()), "{}", ex.name);
                weir_testkit::reencode_both(&frames).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                streams += 1;
            }
            (false, "converse") => {
                let r = decode_converse_response(&ex.body, "id", &model)
                    .unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                assert!(!r.content.is_empty(), "{}: no content", ex.name);
                assert!(r.stop_reason.is_some(), "{}: no stop reason", ex.name);
                responses += 1;
            }
            (false, "invoke") => {
                let r = weir_anthropic::decode_response(&ex.body)
                    .unwrap_or_else(|e| panic!("{}: {e}", ex.name));
                assert!(r.stop_reason.is_some(), "{}: no stop reason", ex.name);
                responses += 1;
            }
            (false, "count-tokens") => {
                let v: serde_json::Value = serde_json::from_slice(&ex.body).unwrap();
                assert!(v["inputTokens"].is_u64(), "{}", ex.name);
                responses += 1;
            }
            (streaming, other) => {
                panic!("{}: unexpected {other} (streaming: {streaming})", ex.name)
            }
        }
    }
    let no_body = skipped
        .iter()
        .filter(|s| s.ends_with("(recorded without a body)"))
        .count();
    println!(
        "bedrock corpus: {streams} streams and {responses} responses decoded; skipped {no_body} recorded without a body and {} others",
        skipped.len() - no_body
    );
    assert!(streams + responses > 0, "no Bedrock exchange was checked");
}

#[test]
fn corpus_urls_are_parsed() {
    assert_eq!(
        model_and_action("https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-micro-v1%3A0/converse-stream"),
        Some(("us.amazon.nova-micro-v1:0".to_owned(), "converse-stream".to_owned()))
    );
    assert_eq!(
        model_and_action("https://api.openai.com/v1/responses"),
        None
    );
}
