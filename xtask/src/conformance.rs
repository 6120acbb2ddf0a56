//! `cargo xtask conformance <provider>|all`: runs the provider conformance suite
//! (`crates/weir-testkit/tests/conformance.rs`), prints the matrix, and (for `all`) writes
//! `docs/providers.md`, the compatibility matrix users read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Cases in matrix order, with the words users read.
const CASES: &[(&str, &str)] = &[
    ("text", "text"),
    ("streaming", "streaming"),
    ("parallel_tools", "parallel tool calls"),
    ("tool_results", "tool results"),
    ("images", "images"),
    ("thinking", "thinking"),
    ("error_400", "400"),
    ("error_401", "401"),
    ("error_429", "429"),
    ("error_5xx", "5xx"),
    ("mid_stream_error", "mid-stream error"),
];

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let which = args
        .first()
        .ok_or("usage: cargo xtask conformance <provider>|all")?
        .clone();
    if which != "all"
        && !root
            .join("fixtures")
            .join(&which)
            .join("conformance.toml")
            .is_file()
    {
        return Err(format!(
            "no suite for `{which}`: fixtures/{which}/conformance.toml does not exist"
        ));
    }
    let report = root.join("target/conformance.json");
    let _ = std::fs::remove_file(&report);
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "test",
            "-p",
            "weir-testkit",
            "--test",
            "conformance",
            "--",
            "--nocapture",
        ])
        .env("WEIR_CONFORMANCE_PROVIDER", &which)
        .env("WEIR_CONFORMANCE_REPORT", &report)
        .status()
        .map_err(|e| format!("cargo test: {e}"))?;
    let text = std::fs::read_to_string(&report)
        .map_err(|e| format!("the suite wrote no report ({e}); see the output above"))?;
    let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut matrix: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        matrix
            .entry(s("provider"))
            .or_default()
            .insert(s("case"), (s("result"), s("detail")));
    }
    let table = render(&matrix);
    println!("{table}");
    if which == "all" {
        let mut doc = String::from(
            "# Provider compatibility\n\nWritten by `cargo xtask conformance all`: every provider's \
             cassettes (`fixtures/<provider>/conformance.toml`) replayed through the gateway \
             against one shared list of cases, each sent by an Anthropic and an OpenAI client.\n\
             `pass`: both clients got what the case expects; `n/a`: the provider declares the \
             case unsupported (reasons below).\n\n",
        );
        doc.push_str(&table);
        let mut reasons = String::new();
        for (p, cases) in &matrix {
            for (c, (result, detail)) in cases {
                if result == "unsupported" {
                    let _ = writeln!(reasons, "- {p}, {c}: {detail}");
                }
            }
        }
        if !reasons.is_empty() {
            doc.push_str("\nUnsupported, and why:\n\n");
            doc.push_str(&reasons);
        }
        std::fs::write(root.join("docs/providers.md"), doc).map_err(|e| e.to_string())?;
        println!("wrote docs/providers.md");
    }
    if status.success() {
        Ok(())
    } else {
        Err("conformance failures (see above)".into())
    }
}

fn render(matrix: &BTreeMap<String, BTreeMap<String, (String, String)>>) -> String {
    let mut t = String::from("| provider |");
    for (_, title) in CASES {
        let _ = write!(t, " {title} |");
    }
    t.push_str("\n|---|");
    for _ in CASES {
        t.push_str("---|");
    }
    t.push('\n');
    for (p, cases) in matrix {
        let _ = write!(t, "| {p} |");
        for (c, _) in CASES {
            let cell = match cases.get(*c).map(|(r, _)| r.as_str()) {
                Some("pass") => "pass",
                Some("unsupported") => "n/a",
                Some("FAIL") => "**FAIL**",
                _ => "**missing**",
            };
            let _ = write!(t, " {cell} |");
        }
        t.push('\n');
    }
    t
}
