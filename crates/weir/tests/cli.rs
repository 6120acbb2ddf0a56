//! The binary's commands: `check`, `hash-key`, `--version`, and `serve` refusing to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

#[test]
fn check_prints_every_error_with_file_line_and_column_and_fails() {
    let dir = std::env::temp_dir().join(format!("weir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[providers.a]\nkind = \"anthropic\"\nkeys = [\"${WEIR_CLI_TEST_UNSET_A}\", \"${WEIR_CLI_TEST_UNSET_B}\"]\n").unwrap();
    let out = weir()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let b = bad.display();
    assert_eq!(
        text,
        format!(
            "{b}:3:10: environment variable `WEIR_CLI_TEST_UNSET_A` is not set (referenced as `${{WEIR_CLI_TEST_UNSET_A}}`)\n\
             {b}:3:38: environment variable `WEIR_CLI_TEST_UNSET_B` is not set (referenced as `${{WEIR_CLI_TEST_UNSET_B}}`)\n"
        )
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, "[providers.demo]\nkind = \"mock\"\n").unwrap();
    let out = weir()
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}: ok\n", good.display())
    );

    // serve refuses the same bad file, with a one-line reason per error.
    let out = weir()
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot start: the config has 2 error(s)")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hash_key_and_version() {
    let out = weir().args(["hash-key", "abc"]).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    let out = weir().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("weir {}\n", env!("CARGO_PKG_VERSION"))
    );
}
