//! `cargo xtask <command>`: Weir's automation, in Rust so it runs wherever cargo does.
//!
//! - `tidy`: the repository's structural rules (crate dependency direction, no OpenSSL,
//!   crate headers). Also run as tests by `cargo test`.
//! - `bench`: runs the criterion benchmarks and writes `docs/benchmarks.md`.
//! - `conformance <provider>|all`: the provider conformance suite; prints the matrix and
//!   writes `docs/providers.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod conformance;
mod gateway_bench;
mod tidy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tidy") => tidy::run(&root()),
        Some("bench") => bench::run(&root(), &args[1..]),
        Some("conformance") => conformance::run(&root(), &args[1..]),
        _ => Err(
            "usage: cargo xtask <tidy | bench [--quick] [--codec-only | --gateway-only | --report-only] | conformance <provider>|all>".to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, failing with its name if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}
