//! The `weir` binary: CLI, logging setup, signal handling. Everything else lives in the
//! library crates.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

// A fast general-purpose allocator: the gateway allocates per request and per event.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "weir", version, about = "A multi-provider LLM gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (default config: ./weir.toml if present, else zero-config).
    Serve {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config: exit 0 if valid, else print every error with file:line:column.
    Check {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the sha256 form of a client key, for `sha256 = ...` in [[auth.keys]].
    HashKey {
        /// The key.
        key: String,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match env("WEIR_LOG_FORMAT").as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

fn config_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        Path::new("weir.toml")
            .exists()
            .then(|| PathBuf::from("weir.toml"))
    })
}

fn load(path: Option<&Path>) -> Result<(weir_server::App, Option<String>), Vec<String>> {
    let to_strings = |errs: Vec<weir_server::config::ConfigError>| {
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    match path {
        Some(p) => {
            let (cfg, text) = weir_server::config::load(p, &env).map_err(to_strings)?;
            let app = weir_server::build(&cfg, Some(p), &text).map_err(to_strings)?;
            Ok((app, None))
        }
        None => weir_server::zero_config(&env).map_err(to_strings),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn serve(config: Option<PathBuf>) -> ExitCode {
    init_logging();
    let path = config_path(config);
    let (app, generated) = match load(path.as_deref()) {
        Ok(a) => a,
        Err(errors) => {
            for e in &errors {
                eprintln!("weir: {e}");
            }
            eprintln!(
                "weir: cannot start: the config has {} error(s)",
                errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime_builder().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&app.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("weir: cannot listen on {}: {e}", app.listen);
                return ExitCode::FAILURE;
            }
        };
        let admin = match &app.admin_listen {
            Some(a) if a == &app.listen => {
                eprintln!("weir: server.admin_listen must differ from server.listen");
                return ExitCode::FAILURE;
            }
            Some(a) => match tokio::net::TcpListener::bind(a).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("weir: cannot listen on {a} (server.admin_listen): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| app.listen.clone());
        match &path {
            Some(p) => tracing::info!(
                "weir {} listening on http://{addr} (config {})",
                env!("CARGO_PKG_VERSION"),
                p.display()
            ),
            None => tracing::info!(
                "weir {} listening on http://{addr} (zero-config; models: {})",
                env!("CARGO_PKG_VERSION"),
                app.listed_models.join(", ")
            ),
        }
        if let Some(key) = generated {
            // Printed once, on stdout, so it can be captured; never logged.
            println!("weir: no WEIR_API_KEY set; this run's client key is: {key}");
        }
        if let Some(a) = admin.as_ref().and_then(|l| l.local_addr().ok()) {
            tracing::info!("admin API on http://{a} (/status, /metrics)");
        }
        match weir_server::run(Arc::new(app), listener, admin, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("weir: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => {
            let path = config_path(config);
            match load(path.as_deref()) {
                Ok(_) => {
                    println!(
                        "{}: ok",
                        path.as_deref()
                            .map_or_else(|| "zero-config".into(), |p| p.display().to_string())
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::HashKey { key } => {
            println!("{}", weir_server::hash_key(&key));
            ExitCode::SUCCESS
        }
    }
}

/// The async runtime: `WEIR_WORKER_THREADS=1` gives a single-threaded runtime.
fn runtime_builder() -> tokio::runtime::Builder {
    match env("WEIR_WORKER_THREADS").and_then(|n| n.parse::<usize>().ok()) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    }
}
