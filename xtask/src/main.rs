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

/// Cargo, without the variables `cargo run` set for xtask itself: build scripts that
/// track them (ring's tracks `CARGO_MANIFEST_DIR`) would otherwise rebuild everything that
/// the same command run from a shell already built.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            c.env_remove(k.as_ref());
        }
    }
    c
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
