//! Structural rules of the repository, checked by `cargo xtask tidy` and by `cargo test`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Which workspace crates each crate may depend on (normal and build dependencies; dev
/// dependencies are free). A crate missing from this table is an error, so a new crate
/// must state its place in the layering.
const ALLOWED: &[(&str, &[&str])] = &[
    // The bottom: bytes in, events out.
    ("weir-sse", &[]),
    // Data and contracts only.
    ("weir-model", &["weir-sse"]),
    // Dialects / providers: the model and SSE, never each other, the router or the server.
    (
        "weir-anthropic",
        &["weir-model", "weir-sse", "weir-upstream"],
    ),
    ("weir-openai", &["weir-model", "weir-sse", "weir-upstream"]),
    ("weir-mock", &["weir-model"]),
    // Vertex AI: Google auth, Claude through rawPredict, Gemini through generateContent.
    (
        "weir-vertex",
        &[
            "weir-model",
            "weir-sse",
            "weir-upstream",
            "weir-anthropic",
            "weir-gemini",
        ],
    ),
    // The request ledger (SQLite or PostgreSQL): rows in, reports out.
    ("weir-ledger", &[]),
    // Ollama's native /api/chat.
    ("weir-ollama", &["weir-model", "weir-upstream"]),
    // Gemini's dialect and provider (Vertex reuses the codec).
    ("weir-gemini", &["weir-model", "weir-sse", "weir-upstream"]),
    // Bedrock: SigV4, AWS event streams, InvokeModel (the Anthropic codec) and Converse.
    (
        "weir-bedrock",
        &["weir-model", "weir-sse", "weir-upstream", "weir-anthropic"],
    ),
    // The HTTP client side providers share; knows no dialect.
    ("weir-upstream", &["weir-model", "weir-sse"]),
    // Routing: knows providers only through the trait.
    ("weir-router", &["weir-model"]),
    // Shared state in Redis: limits and budgets, and the router's shared state changes.
    ("weir-redis", &["weir-model", "weir-router"]),
    // The config file, and the providers and router it builds.
    (
        "weir-config",
        &[
            "weir-gemini",
            "weir-bedrock",
            "weir-ollama",
            "weir-vertex",
            "weir-model",
            "weir-anthropic",
            "weir-openai",
            "weir-mock",
            "weir-upstream",
            "weir-router",
        ],
    ),
    // The server: everything below it.
    (
        "weir-server",
        &[
            "weir-ledger",
            "weir-config",
            "weir-model",
            "weir-sse",
            "weir-anthropic",
            "weir-openai",
            "weir-mock",
            "weir-upstream",
            "weir-router",
            "weir-redis",
        ],
    ),
    ("weir", &["weir-server", "weir-model", "weir-ledger"]),
    // The embedding example: the library crates a Rust service would use.
    (
        "weir-example-embedded",
        &["weir-config", "weir-mock", "weir-model", "weir-router"],
    ),
    // Test support is a dev-dependency only (checked separately), so it may use anything.
    (
        "weir-testkit",
        &["weir-model", "weir-sse", "weir-anthropic", "weir-openai"],
    ),
    ("xtask", &[]),
];

/// Crates that must never appear in the dependency graph: Weir uses rustls only.
const BANNED: &[&str] = &["openssl", "openssl-sys", "native-tls", "openssl-src"];

type Manifest = toml::Table;

fn manifests(root: &Path) -> Result<BTreeMap<String, Manifest>, String> {
    let mut out = BTreeMap::new();
    let mut dirs: Vec<_> = fs::read_dir(root.join("crates"))
        .map_err(|e| format!("crates/: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.push(root.join("xtask"));
    for dir in dirs {
        let path = dir.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let m: Manifest = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = m
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{}: no package name", path.display()))?
            .to_owned();
        let folder = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if folder != name {
            return Err(format!(
                "crate `{name}` lives in folder `{folder}`: folder must equal crate name"
            ));
        }
        out.insert(name, m);
    }
    Ok(out)
}

fn deps<'a>(m: &'a Manifest, table: &str) -> Vec<&'a str> {
    m.get(table)
        .and_then(|t| t.as_table())
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Crate dependencies follow the layering in `ALLOWED`.
pub fn check_layering(root: &Path) -> Result<(), String> {
    let crates = manifests(root)?;
    let mut errors = Vec::new();
    for (name, m) in &crates {
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| n == name) else {
            errors.push(format!(
                "crate `{name}` has no entry in xtask/src/tidy.rs ALLOWED: state its layer"
            ));
            continue;
        };
        for table in ["dependencies", "build-dependencies"] {
            for dep in deps(m, table) {
                if crates.contains_key(dep) && !allowed.contains(&dep) {
                    errors.push(format!("`{name}` must not depend on `{dep}` ({table})"));
                }
                if dep == "weir-testkit" {
                    errors.push(format!(
                        "`{name}` depends on weir-testkit outside dev-dependencies"
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// No OpenSSL anywhere in the lock file.
pub fn check_banned(root: &Path) -> Result<(), String> {
    let lock =
        fs::read_to_string(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let lock: toml::Table = toml::from_str(&lock).map_err(|e| format!("Cargo.lock: {e}"))?;
    let packages = lock
        .get("package")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let found: Vec<String> = packages
        .iter()
        .filter_map(|p| p.get("name").and_then(|n| n.as_str()))
        .filter(|n| BANNED.contains(n))
        .map(str::to_owned)
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "banned crates in Cargo.lock (rustls only): {}",
            found.join(", ")
        ))
    }
}

/// Every library crate opens with a `//!` paragraph and forbids unsafe code.
pub fn check_headers(root: &Path) -> Result<(), String> {
    let mut errors = Vec::new();
    for name in manifests(root)?.keys() {
        let lib = root.join("crates").join(name).join("src/lib.rs");
        let Ok(text) = fs::read_to_string(&lib) else {
            continue;
        };
        if !text.starts_with("//!") {
            errors.push(format!(
                "{}: must open with a `//!` paragraph (what it is, what it knows nothing about)",
                lib.display()
            ));
        }
        if !text.contains("#![forbid(unsafe_code)]") {
            errors.push(format!(
                "{}: missing #![forbid(unsafe_code)]",
                lib.display()
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    check_layering(root)?;
    check_banned(root)?;
    check_headers(root)?;
    println!("tidy: ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        crate::root()
    }

    #[test]
    fn crates_depend_only_on_their_lower_layers() {
        check_layering(&root()).unwrap();
    }

    #[test]
    fn no_openssl_in_the_dependency_graph() {
        check_banned(&root()).unwrap();
    }

    #[test]
    fn library_crates_have_headers_and_forbid_unsafe() {
        check_headers(&root()).unwrap();
    }

    #[test]
    fn the_layering_check_catches_a_provider_depending_on_another() {
        let dir = std::env::temp_dir().join(format!("weir-tidy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (name, deps) in [
            ("weir-model", ""),
            (
                "weir-openai",
                "weir-model = \"*\"\nweir-anthropic = \"*\"\n",
            ),
            ("weir-anthropic", ""),
        ] {
            let d = dir.join("crates").join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\n[dependencies]\n{deps}"),
            )
            .unwrap();
        }
        let err = check_layering(&dir).unwrap_err();
        assert_eq!(
            err,
            "`weir-openai` must not depend on `weir-anthropic` (dependencies)"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
