//! The binary's commands: `check`, `hash-key`, `--version`, and `serve` refusing to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A fresh directory for one test's files.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `weir check --config cfg`: its exit code and standard output.
fn check(cfg: &std::path::Path) -> (Option<i32>, String) {
    let out = weir()
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn check_prints_every_error_with_file_line_and_column_and_fails() {
    let dir = scratch("weir-cli");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[providers.a]\nkind = \"anthropic\"\nkeys = [\"${WEIR_CLI_TEST_UNSET_A}\", \"${WEIR_CLI_TEST_UNSET_B}\"]\n[server]\nlistn = 1\nmax_request_bytes = -1\n").unwrap();
    let (code, text) = check(&bad);
    assert_eq!(code, Some(1));
    let b = bad.display();
    assert_eq!(
        text,
        format!(
            "{b}:3:10: environment variable `WEIR_CLI_TEST_UNSET_A` is not set (referenced as `${{WEIR_CLI_TEST_UNSET_A}}`)\n\
             {b}:3:38: environment variable `WEIR_CLI_TEST_UNSET_B` is not set (referenced as `${{WEIR_CLI_TEST_UNSET_B}}`)\n\
             {b}:5:1: unknown field `listn`, expected one of `listen`, `admin_listen`, `max_request_bytes`, `max_buffered_bytes`, `shutdown_grace`, `max_connections`, `max_connections_per_ip`, `cors_origins`\n\
             {b}:6:21: invalid value: integer `-1`, expected a whole number of 0 or more\n"
        )
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, "[providers.demo]\nkind = \"mock\"\n").unwrap();
    let (code, text) = check(&good);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text, format!("{}: ok\n", good.display()));

    // serve refuses the same bad file, with a one-line reason per error.
    let out = weir()
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start: the config has 4 errors"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line with a `${VAR}` has its errors at their columns in the file, not in the text
/// with the variable's value in it (which is longer or shorter).
#[test]
fn check_places_errors_after_a_variable_at_their_column_in_the_file() {
    let dir = scratch("weir-cli-columns");
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        "[providers.mock]\nkind = \"mock\"\n[[models]]\nname = \"m\"\n\
         targets = [{ provider = \"${WEIR_TEST_PROVIDER_NAME}\" }, { provider = \"nope\" }]\n\
         [providers.o]\nkind = \"openai\"\nkeys = [\"${WEIR_TEST_PROVIDER_NAME}\", 5]\n",
    )
    .unwrap();
    let check_with_var = || {
        let out = weir()
            .args(["check", "--config"])
            .arg(&cfg)
            .env("WEIR_TEST_PROVIDER_NAME", "mock")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = check_with_var();
    // A syntax-level (type) error, then fix it to see the one found when building.
    assert!(shown.contains("w.toml:8:39: invalid type"), "{shown}");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(", 5]", "]");
    std::fs::write(&cfg, text).unwrap();
    let shown = check_with_var();
    assert!(
        shown.contains("w.toml:5:70: model `m` targets provider `nope`"),
        "{shown}"
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
    // `-` reads the key from standard input (one line), so it stays out of shell history.
    let mut child = weir()
        .args(["hash-key", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    let out = weir().args(["hash-key", ""]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = weir().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("weir {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `weir check --config cfg` with only example AWS credentials in the environment (and
/// `home` as HOME, so no real ~/.aws is read).
fn check_with_aws(cfg: &std::path::Path, home: &std::path::Path) -> std::process::Output {
    weir()
        .args(["check", "--config"])
        .arg(cfg)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .env("HOME", home)
        .output()
        .unwrap()
}

#[test]
fn check_explains_a_bedrock_claude_id_without_its_inference_profile() {
    let dir = scratch("weir-cli-bedrock");
    let cfg = dir.join("bedrock.toml");
    std::fs::write(
        &cfg,
        "[providers.bedrock]\nkind = \"bedrock\"\nregion = \"us-west-2\"\n\
         [[models]]\nname = \"sonnet\"\ntargets = [{ provider = \"bedrock\", model = \"anthropic.claude-sonnet-4-5-20250929-v1:0\" }]\n",
    )
    .unwrap();
    let run = || check_with_aws(&cfg, &dir);
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("{}:6:", cfg.display())), "{text}");
    assert!(
        text.contains("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "{text}"
    );
    assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
    // With the profile prefix, the same config is fine.
    std::fs::write(
        &cfg,
        "[providers.bedrock]\nkind = \"bedrock\"\nregion = \"us-west-2\"\n\
         [[models]]\nname = \"sonnet\"\ntargets = [{ provider = \"bedrock\", model = \"us.anthropic.claude-sonnet-4-5-20250929-v1:0\" }]\n",
    )
    .unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `anthropic_models` names application inference profile ARNs served as Claude: a
/// Bedrock key, refused elsewhere.
#[test]
fn check_takes_anthropic_models_for_bedrock_only() {
    let dir = scratch("weir-cli-bedrock-arn");
    let cfg = dir.join("arn.toml");
    let arn = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/abc123";
    for (kind, expect) in [
        ("kind = \"bedrock\"\nregion = \"us-west-2\"", None),
        (
            "kind = \"openai\"\nkeys = [\"sk-o\"]",
            Some("anthropic_models applies to kind = \"bedrock\", not `openai`"),
        ),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[providers.p]\n{kind}\nanthropic_models = [\"{arn}\"]\n\
                 [[models]]\nname = \"claude\"\ntargets = [{{ provider = \"p\", model = \"{arn}\" }}]\n"
            ),
        )
        .unwrap();
        let out = check_with_aws(&cfg, &dir);
        let text = String::from_utf8(out.stdout).unwrap();
        match expect {
            None => assert!(out.status.success(), "{text}"),
            Some(e) => {
                assert_eq!(out.status.code(), Some(1), "{text}");
                assert!(text.contains(e), "{text}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `responses_api` is for kinds that may serve the Responses API themselves; Azure's
/// deployment URLs cannot be told they do.
#[test]
fn check_takes_responses_api_where_the_upstream_may_have_it() {
    let dir = scratch("weir-cli-responses-api");
    let cfg = dir.join("responses.toml");
    for (kind, expect) in [
        ("kind = \"openai\"\nkeys = [\"sk-o\"]\nresponses_api = false", None),
        ("kind = \"openai\"\nkeys = [\"sk-o\"]\nresponses_api = true", None),
        ("kind = \"mock\"\nresponses_api = false", None),
        (
            "kind = \"azure\"\nbase_url = \"https://r.openai.azure.com/openai/v1\"\nkeys = [\"k\"]\nresponses_api = true",
            None,
        ),
        (
            "kind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\nkeys = [\"k\"]\nresponses_api = true",
            Some("Azure's deployment URLs have no Responses API"),
        ),
        (
            "kind = \"anthropic\"\nkeys = [\"k\"]\nresponses_api = false",
            Some("responses_api applies to kinds openai, azure and mock, not `anthropic`"),
        ),
        (
            "kind = \"openai\"\nkeys = [\"sk-o\"]\nresponses_api = \"yes\"",
            Some("expected true or false"),
        ),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[providers.p]\n{kind}\n\
                 [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\", model = \"m\" }}]\n"
            ),
        )
        .unwrap();
        let (code, text) = check(&cfg);
        match expect {
            None => assert_eq!(code, Some(0), "{kind}: {text}"),
            Some(e) => {
                assert_eq!(code, Some(1), "{kind}: {text}");
                assert!(text.contains(e), "{kind}: {text}");
                assert!(text.starts_with(&format!("{}:", cfg.display())), "{text}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_the_admin_api_on_the_api_port() {
    let dir = scratch("weir-cli-admin");
    let cfg = dir.join("admin.toml");
    for (server, expect) in [
        (
            "listen = \"127.0.0.1:45220\"\nadmin_listen = \"127.0.0.1:45220\"\n",
            "must differ",
        ),
        (
            "listen = \"127.0.0.1:4001\"\n",
            "defaults to 127.0.0.1:4001",
        ),
    ] {
        std::fs::write(
            &cfg,
            format!("[server]\n{server}[auth]\nadmin_key = \"a\"\n[[auth.keys]]\nname = \"k\"\nkey = \"k\"\n"),
        )
        .unwrap();
        let (code, text) = check(&cfg);
        assert_eq!(code, Some(1));
        assert!(text.contains(expect), "{text}");
    }
}

#[test]
fn check_finds_what_serve_would_trip_on_and_says_where() {
    let dir = scratch("weir-cli-where");
    let cfg = dir.join("where.toml");
    let keys = "[[auth.keys]]\nname = \"k\"\nkey = \"k\"\n";
    for (body, expect) in [
        (
            format!("[server]\nlisten = \"not-an-addr\"\n{keys}"),
            "where.toml:2:1: server.listen = \"not-an-addr\" is not an address and port",
        ),
        (
            format!("[server]\nlisten = \"127.0.0.1:45221\"\nadmin_listen = \"127.0.0.1:45222\"\n{keys}"),
            "where.toml:3:1: server.admin_listen is set but auth.admin_key is not",
        ),
        (
            // An empty admin key (often an empty `${WEIR_ADMIN_KEY}`) would open the admin API.
            format!("[auth]\nadmin_key = \" \"\n{keys}"),
            "where.toml:2:1: auth.admin_key is empty",
        ),
        (
            format!("[auth]\nadmin_key = \"k\"\n{keys}"),
            "where.toml:2:1: auth.admin_key is also a client key",
        ),
        (
            "[[auth.keys]]\nname = \"s\"\nkey = \" k2\"\n".to_owned(),
            "where.toml:1:1: key `s` begins or ends with whitespace",
        ),
        (
            format!("{keys}[providers.o]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nkeys = [\"sk-1\", \" \"]\n"),
            "keys[1] is empty",
        ),
        (
            format!("{keys}[providers.o]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nkeys = [\"sk-1\", \"sk-1\"]\n"),
            "keys[1] repeats an earlier key",
        ),
        (
            format!("{keys}[providers.o]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nkeys = [\"sk-1\", \"sk-\\n2\"]\n"),
            "keys[1] holds a control character",
        ),
        (
            format!("{keys}[state]\nbackend = \"redis\"\nurl = \"redis://:SECRETPW@[bad/0\"\n"),
            "where.toml:6:7: state.url redis://***@[bad/0 is not a Redis URL",
        ),
        (
            // Not quoted back: without `://` its password cannot be told apart.
            format!("{keys}[state]\nbackend = \"redis\"\nurl = \"redis:/:TOPSECRET@127.0.0.1:6379\"\n"),
            "where.toml:6:7: state.url must start with redis://",
        ),
        (
            format!("{keys}[providers.m]\nkind = \"mock\"\n[[models]]\nname = \"a\"\ntargets = [{{ provider = \"m\" }}]\n\
                     [[models]]\nname = \"b\"\ntargets = []\n\
                     [[models]]\nname = \"a\"\ntargets = [{{ provider = \"m\" }}]\n"),
            "where.toml:10:1: model `b` has no targets",
        ),
        (
            format!("{keys}[providers.m]\nkind = \"mock\"\n[[models]]\nname = \"a\"\ntargets = [{{ provider = \"m\" }}]\n\
                     [[models]]\nname = \"a\"\ntargets = [{{ provider = \"m\" }}]\n"),
            "where.toml:10:1: model `a` is already routed by an earlier [[models]] entry (7:1)",
        ),
    ] {
        std::fs::write(&cfg, &body).unwrap();
        let (code, text) = check(&cfg);
        assert_eq!(code, Some(1), "{body}\n{text}");
        assert!(text.contains(expect), "{body}\n{text}");
        assert!(!text.contains("SECRET"), "{body}\n{text}");
    }
    // A host name and port is an address (resolved when the listener starts).
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = \"localhost:45223\"\n{keys}"),
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(0), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_warns_of_a_budget_that_cannot_see_an_unpriced_model() {
    let dir = scratch("weir-cli-price");
    let cfg = dir.join("price.toml");
    std::fs::write(
        &cfg,
        "[[auth.keys]]\nname = \"k\"\nkey = \"k\"\ndaily_budget_usd = 5.0\n[providers.m]\nkind = \"mock\"\n\
         [providers.o]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nkeys = [\"sk-o\"]\n\
         [[models]]\nname = \"a\"\ntargets = [{ provider = \"o\", model = \"no-price-here\" }]\n\
         [[models]]\nname = \"b\"\ntargets = [{ provider = \"m\", model = \"mock\" }]\n\
         [providers.or]\nkind = \"openai\"\npreset = \"openrouter\"\nkeys = [\"sk-or\"]\n\
         [[models]]\nname = \"c\"\ntargets = [{ provider = \"or\", model = \"meta-llama/unlisted\" }]\n",
    )
    .unwrap();
    let out = weir()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // (Warnings go to stderr, which `check` leaves out.)
    let warned = String::from_utf8(out.stderr).unwrap();
    assert!(
        warned.contains("model `no-price-here` (a target of `a`) has no price"),
        "{warned}"
    );
    // The built-in mock costs nothing, and OpenRouter says what it charged: nothing to
    // warn about.
    assert!(!warned.contains("`mock`"), "{warned}");
    assert!(!warned.contains("meta-llama/unlisted"), "{warned}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_a_negative_price() {
    let dir = scratch("weir-cli-neg");
    let cfg = dir.join("neg.toml");
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = -15.0\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("neg.toml:3:1: pricing.\"m-1\".output must be a price"),
        "{text}"
    );
    // The one-hour cache write price is a price like the others.
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = 15.0\ncache_write_1h = -6.0\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "neg.toml:4:1: pricing.\"m-1\".cache_write_1h must be a price in USD per million tokens"
        ),
        "{text}"
    );
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = 15.0\nweb_search = -10.0\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("pricing.\"m-1\".web_search must be a price in USD per 1,000 searches"),
        "{text}"
    );
    // Long prompts' prices too, pointed at where they are.
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = 15.0\n\n[pricing.\"m-1\".long_context]\n\
         above = 200000\ninput = 6.0\noutput = 22.5\ncache_read = -0.6\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "neg.toml:9:1: pricing.\"m-1\".long_context.cache_read must be a price in USD per million tokens"
        ),
        "{text}"
    );
    // A well-formed tier passes; an unknown key in it is refused like any other.
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = 15.0\nlong_context = { above = 200000, input = 6.0, output = 22.5 }\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(0), "{text}");
    std::fs::write(
        &cfg,
        "[pricing.\"m-1\"]\ninput = 3.0\noutput = 15.0\nlong_context = { above = 200000, input = 6.0, output = 22.5, outptu = 1.0 }\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("outptu"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `[[auth.keys]]`, WEIR_API_KEY is the client key: one no client can send in a
/// header is refused by `check` and by a zero-config `serve`.
#[test]
fn a_weir_api_key_no_client_can_send_is_refused() {
    let dir = scratch("weir-cli-env-key");
    let cfg = dir.join("nokeys.toml");
    std::fs::write(&cfg, "[providers.m]\nkind = \"mock\"\n").unwrap();
    let out = weir()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("WEIR_API_KEY", "sk-tab\tkey")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("WEIR_API_KEY has characters other than printable ASCII"),
        "{text}"
    );
    let out = weir()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("WEIR_API_KEY", "sk two words")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = weir()
        .arg("serve")
        .env("WEIR_API_KEY", "sk-caf\u{e9}")
        .env("WEIR_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("WEIR_API_KEY has characters other than printable ASCII"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_points_a_base_url_error_at_the_base_url() {
    let dir = scratch("weir-cli-base-url");
    let cfg = dir.join("bu.toml");
    std::fs::write(
        &cfg,
        "[providers.anth]\nkind = \"anthropic\"\nkeys = [\"k\"]\n\n# where it is\n\
         base_url = \"https://user:pass@example.com\"\n",
    )
    .unwrap();
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("bu.toml:6:12: base_url cannot carry credentials"),
        "{text}"
    );
    assert!(!text.contains("pass@"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no `[[auth.keys]]`, the client key is WEIR_API_KEY: an admin key equal to it
/// would make every client an admin, so the config is refused; a padded WEIR_API_KEY is
/// taken trimmed (header values arrive trimmed), not refused.
#[test]
fn check_refuses_an_admin_key_equal_to_weir_api_key() {
    let dir = scratch("weir-cli-admin-default");
    let cfg = dir.join("admin.toml");
    std::fs::write(
        &cfg,
        "[auth]\nadmin_key = \"${ADM}\"\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let run = |adm: &str, api: &str| {
        let out = weir()
            .args(["check", "--config"])
            .arg(&cfg)
            .env("ADM", adm)
            .env("WEIR_API_KEY", api)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = run("same-key", " same-key ");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("auth.admin_key is also a client key (WEIR_API_KEY)"),
        "{text}"
    );
    assert!(!text.contains("same-key"), "{text}");
    let (code, text) = run("admin-key", "client-key");
    assert_eq!(code, Some(0), "{text}");
}

/// `GET /health` on `addr`: the raw answer, or `None` if it cannot be asked.
fn health(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Sends SIGTERM to a gateway started with its stderr piped; its exit status and logs.
fn stop(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut logs = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut logs).unwrap();
    }
    (status, logs)
}

/// Waits (20 s at most) until a gateway answers `/health` on `addr`.
fn wait_for_health(addr: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while health(addr).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// SIGHUP's default action ends a process: with no config file to reload, the
/// zero-config gateway notes it and keeps serving.
#[cfg(unix)]
#[test]
fn zero_config_serve_survives_sighup() {
    if std::net::TcpListener::bind("127.0.0.1:4000").is_err() {
        println!("skipped: 127.0.0.1:4000 (the zero-config address) is in use");
        return;
    }
    let dir = scratch("weir-cli-zero-hup");
    let mut child = weir()
        .arg("serve")
        .current_dir(&dir)
        .env("WEIR_API_KEY", "sk-zero-hup")
        .env_remove("WEIR_ADMIN_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let health = || health("127.0.0.1:4000");
    wait_for_health("127.0.0.1:4000");
    let pid = child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    assert!(health().unwrap().starts_with("HTTP/1.1 200"));
    let (status, logs) = stop(child);
    assert!(logs.contains("SIGHUP: nothing to reload"), "{logs}");
    assert_eq!(status.code(), Some(0), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Zero-config opens the admin API only with `WEIR_ADMIN_KEY`: `WEIR_ADMIN_LISTEN` alone
/// says so rather than leaving the admin port silently absent.
#[cfg(unix)]
#[test]
fn zero_config_warns_of_an_admin_listener_without_an_admin_key() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let (api, admin) = (free(), free());
    let dir = scratch("weir-cli-zero-admin");
    let child = weir()
        .arg("serve")
        .current_dir(&dir)
        .env("WEIR_API_KEY", "sk-zero-admin")
        .env("WEIR_LISTEN", &api)
        .env("WEIR_ADMIN_LISTEN", &admin)
        .env_remove("WEIR_ADMIN_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health(&api);
    assert!(std::net::TcpStream::connect(&admin).is_err());
    let (_, logs) = stop(child);
    assert!(
        logs.contains("WEIR_ADMIN_LISTEN is set, but WEIR_ADMIN_KEY is not"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `WEIR_LISTEN` beside a config file that does not use it is said to do nothing.
#[cfg(unix)]
#[test]
fn weir_listen_beside_a_config_file_is_warned_of_unless_the_file_uses_it() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let dir = scratch("weir-cli-listen-var");
    let cfg = dir.join("weir.toml");
    for (listen, warned) in [(free(), true), ("${WEIR_LISTEN}".to_owned(), false)] {
        std::fs::write(
            &cfg,
            format!("[server]\nlisten = \"{listen}\"\n[providers.mock]\nkind = \"mock\"\n"),
        )
        .unwrap();
        let var = free();
        let child = weir()
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("WEIR_LISTEN", &var)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_health(if warned { &listen } else { &var });
        let (_, logs) = stop(child);
        assert_eq!(
            logs.contains("WEIR_LISTEN is set, but it applies only without a config file"),
            warned,
            "{logs}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A report reads only the ledger's url: the provider keys a file names need not be set.
#[test]
fn usage_needs_only_the_ledgers_variables() {
    let dir = scratch("weir-cli-usage-vars");
    let cfg = dir.join("weir.toml");
    std::fs::write(
        &cfg,
        "[ledger]\nurl = \"sqlite://${WEIR_CLI_TEST_LEDGER_DIR}/ledger.db\"\n\
         [providers.o]\nkind = \"openai\"\nkeys = [\"${WEIR_CLI_TEST_UNSET_KEY}\"]\n",
    )
    .unwrap();
    // The provider's key is not set: the report goes on to the ledger (not there).
    let out = weir()
        .args(["usage", "--config"])
        .arg(&cfg)
        .env("WEIR_CLI_TEST_LEDGER_DIR", &dir)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no ledger at"), "{err}");
    // The ledger's own variable unset: said so.
    let out = weir()
        .args(["usage", "--config"])
        .arg(&cfg)
        .env_remove("WEIR_CLI_TEST_LEDGER_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[ledger] url names an environment variable that is not set"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A report never creates a ledger: a relative SQLite path is from serve's directory, and
/// an empty report from elsewhere would look like no usage.
#[test]
fn usage_refuses_a_ledger_file_that_is_not_there() {
    let dir = scratch("weir-cli-usage-missing");
    let cfg = dir.join("weir.toml");
    std::fs::write(
        &cfg,
        "[ledger]\nurl = \"sqlite://data/ledger.db\"\n[providers.m]\nkind = \"mock\"\n",
    )
    .unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = weir()
        .args(["usage", "--config"])
        .arg(&cfg)
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("data/ledger.db: a relative path in [ledger] url is taken from"),
        "{err}"
    );
    assert!(!elsewhere.join("data").exists());
    // An impossible date is an error, not a report from some other day.
    let out = weir()
        .args(["usage", "--since", "2026-02-30", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--since `2026-02-30`: not a date"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /v1/chat/completions` to `addr` with client key `key`: the raw answer.
fn chat(addr: &str, key: &str) -> String {
    use std::io::{Read, Write};
    let body = r#"{"model":"m","messages":[{"role":"user","content":"Say hello to the ledger."}]}"#;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A restart does not give a key its day's budget back: what the ledger says the key
/// spent today counts.
#[cfg(unix)]
#[test]
fn a_restart_keeps_what_a_key_spent_today_from_the_ledger() {
    let dir = scratch("weir-cli-budget-restart");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cfg = dir.join("weir.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{addr}\"\n[ledger]\nurl = \"sqlite://{}/ledger.db\"\n\
             [[auth.keys]]\nname = \"spender\"\nkey = \"sk-spender\"\ndaily_budget_usd = 0.001\n\
             [[auth.keys]]\nname = \"other\"\nkey = \"sk-other\"\ndaily_budget_usd = 0.001\n\
             [providers.m]\nkind = \"mock\"\n[pricing.\"mock\"]\ninput = 1000.0\noutput = 1000.0\n\
             [[models]]\nname = \"m\"\ntargets = [{{ provider = \"m\", model = \"mock\" }}]\n",
            dir.display()
        ),
    )
    .unwrap();
    let start = || {
        let child = weir()
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("WEIR_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_health(&addr);
        child
    };
    let child = start();
    // A dozen tokens at $1000 per million spend the budget in one request.
    let first = chat(&addr, "sk-spender");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let spent = chat(&addr, "sk-spender");
    assert!(spent.starts_with("HTTP/1.1 429"), "{spent}");
    assert!(spent.contains("daily budget"), "{spent}");
    // (Stopping writes the ledger's last rows.)
    let (status, logs) = stop(child);
    assert_eq!(status.code(), Some(0), "{logs}");

    let child = start();
    let again = chat(&addr, "sk-spender");
    // The other key spent nothing: its budget is whole.
    let other = chat(&addr, "sk-other");
    let (_, logs) = stop(child);
    assert!(again.starts_with("HTTP/1.1 429"), "{again}\n{logs}");
    assert!(again.contains("daily budget"), "{again}");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    assert!(
        logs.contains("today's spend of 1 key(s) read from the ledger"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
