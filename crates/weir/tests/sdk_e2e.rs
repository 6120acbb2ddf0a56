//! Runs the end-to-end suite (`tests/e2e`, pytest with the official OpenAI and Anthropic
//! SDKs) against this crate's binary. It needs a Python with those SDKs: `.ci/run` makes a
//! venv and sets `WEIR_E2E_PYTHON`; without it the test says so and skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn official_sdks_end_to_end() {
    let Some(python) = std::env::var_os("WEIR_E2E_PYTHON") else {
        println!(
            "skipping: WEIR_E2E_PYTHON is unset (point it at a python with the packages of \
             tests/e2e/requirements.txt; .ci/run does)"
        );
        return;
    };
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    let out = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::DeprecationWarning",
        ])
        .arg(&suite)
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
        .output()
        .expect("run pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "the SDK end-to-end suite failed:\n{report}"
    );
}
