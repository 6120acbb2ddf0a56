//! The shared conversation scenarios of `fixtures/cases/`, each written in both dialects:
//! every request, response, stream and error is translated to the other dialect and the
//! result is pinned with an insta snapshot; every file also round-trips through its own
//! dialect unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use serde_json::Value;
use weir_model::Frame;
use weir_testkit::{assert_json_eq, fixtures_dir, sse_events};

fn pretty(bytes: &[u8]) -> String {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    // Translated OpenAI responses are stamped with the current time.
    if let Some(c) = v.get_mut("created") {
        *c = Value::from(0);
    }
    serde_json::to_string_pretty(&weir_testkit::sorted(v)).unwrap()
}

fn request(case: &str, dir: &Path, dialect: &str) -> Option<String> {
    let body = fs::read(dir.join(format!("{dialect}.request.json"))).ok()?;
    Some(if dialect == "anthropic" {
        let canon = weir_anthropic::decode_request(&body).unwrap();
        let same = weir_anthropic::encode_request(&canon, &Default::default()).unwrap();
        assert_json_eq(&format!("{case} anthropic request"), &body, &same);
        pretty(&weir_openai::encode_request(&canon, &Default::default()).unwrap())
    } else {
        let canon = weir_openai::decode_request(&body).unwrap();
        let same = weir_openai::encode_request(&canon, &Default::default()).unwrap();
        assert_json_eq(&format!("{case} openai request"), &body, &same);
        pretty(&weir_anthropic::encode_request(&canon, &Default::default()).unwrap())
    })
}

fn response(case: &str, dir: &Path, dialect: &str) -> Option<String> {
    let body = fs::read(dir.join(format!("{dialect}.response.json"))).ok()?;
    Some(if dialect == "anthropic" {
        let canon = weir_anthropic::decode_response(&body).unwrap();
        assert_json_eq(
            &format!("{case} anthropic response"),
            &body,
            &weir_anthropic::encode_response(&canon).unwrap(),
        );
        pretty(&weir_openai::encode_response(&canon).unwrap())
    } else {
        let canon = weir_openai::decode_response(&body).unwrap();
        assert_json_eq(
            &format!("{case} openai response"),
            &body,
            &weir_openai::encode_response(&canon).unwrap(),
        );
        pretty(&weir_anthropic::encode_response(&canon).unwrap())
    })
}

fn stream(dir: &Path, dialect: &str) -> Option<String> {
    let body = fs::read(dir.join(format!("{dialect}.stream.sse"))).ok()?;
    let events = sse_events(&body);
    let mut out = Vec::new();
    if dialect == "anthropic" {
        let mut dec = weir_anthropic::StreamDecoder::new();
        let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
            include_usage: true,
            created: Some(0),
        });
        for ev in &events {
            enc.encode(&dec.decode(ev.clone()).unwrap(), &mut out)
                .unwrap();
        }
    } else {
        let mut dec = weir_openai::StreamDecoder::new();
        let mut enc = weir_anthropic::StreamEncoder::new();
        let mut frames: Vec<Frame> = events.into_iter().map(|e| dec.decode(e).unwrap()).collect();
        frames.push(dec.finish().unwrap());
        for f in &frames {
            enc.encode(f, &mut out).unwrap();
        }
    }
    Some(String::from_utf8(out).unwrap())
}

fn error(dir: &Path, dialect: &str) -> Option<String> {
    let file: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{dialect}.error.json"))).ok()?).unwrap();
    let status = u16::try_from(file["status"].as_u64().unwrap()).unwrap();
    let body = file["body"].to_string();
    let (status, out) = if dialect == "anthropic" {
        weir_openai::encode_error(&weir_anthropic::decode_error(status, body.as_bytes()))
    } else {
        weir_anthropic::encode_error(
            &weir_openai::decode_error(status, body.as_bytes()),
            Some("req_weir"),
        )
    };
    Some(format!("HTTP {status}\n{}", pretty(&out)))
}

#[test]
fn every_case_translates_both_ways() {
    let root = fixtures_dir().join("cases");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut snapshots = 0;
    for dir in &cases {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (from, to) in [("anthropic", "openai"), ("openai", "anthropic")] {
            let outputs = [
                ("request", request(&case, dir, from)),
                ("response", response(&case, dir, from)),
                ("stream", stream(dir, from)),
                ("error", error(dir, from)),
            ];
            for (what, out) in outputs {
                if let Some(out) = out {
                    insta::assert_snapshot!(format!("{case}__{what}__{from}_to_{to}"), out);
                    snapshots += 1;
                }
            }
        }
    }
    assert!(
        cases.len() >= 7 && snapshots >= 30,
        "{} cases, {snapshots} snapshots",
        cases.len()
    );
}
