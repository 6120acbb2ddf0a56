//! Test support shared by Weir's crates: walking the recorded-traffic corpus (read at test
//! time from `$WEIR_CORPUS`, never copied into the repository), the project's own
//! fixtures, SSE helpers, and a JSON comparison that names the first difference.
//!
//! A dev-dependency only: nothing in the gateway links it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

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

/// All SSE events of a complete stream.
pub fn sse_events(bytes: &[u8]) -> Vec<weir_sse::Event> {
    let mut d = weir_sse::Decoder::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out).expect("valid SSE");
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
