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
    /// Print a spend report from the ledger (`[ledger] url` in the config).
    Usage {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only requests since: a duration ago (`24h`, `7d`) or a UTC date (`2026-11-01`).
        #[arg(long)]
        since: Option<String>,
        /// Group by: key, model, provider or day.
        #[arg(long, default_value = "key")]
        by: String,
    },
    /// Print the sha256 form of a client key, for `sha256 = ...` in [[auth.keys]].
    HashKey {
        /// The key, or `-` to read it from standard input (keeps it out of shell history
        /// and the process list).
        key: String,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // An empty WEIR_LOG is no filter at all, not one that turns everything off.
    let mut mistakes = Vec::new();
    let filter = env("WEIR_LOG")
        .filter(|f| !f.trim().is_empty())
        .and_then(|f| match EnvFilter::try_new(&f) {
            Ok(filter) => Some(filter),
            Err(e) => {
                mistakes.push(format!(
                    "WEIR_LOG={f:?} is not a filter ({e}); logging at info"
                ));
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match env("WEIR_LOG_FORMAT") {
        Some(f) if f.eq_ignore_ascii_case("json") => true,
        Some(f) if f.eq_ignore_ascii_case("text") => false,
        Some(f) if !f.trim().is_empty() => {
            mistakes.push(format!(
                "WEIR_LOG_FORMAT={f:?} is neither json nor text; writing {}",
                if terminal { "text" } else { "JSON lines" }
            ));
            !terminal
        }
        _ => !terminal,
    };
    weir_server::log::set_json(json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a terminal, not for a file or a pipe.
        .with_ansi(terminal)
        .with_writer(|| weir_server::log::Writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
    for m in mistakes {
        tracing::warn!("{m}");
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
    load_with(path, &env)
}

fn load_with(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(weir_server::App, Option<String>), Vec<String>> {
    let to_strings = |errs: Vec<weir_server::config::ConfigError>| {
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    match path {
        Some(p) => {
            let (cfg, text) = weir_server::config::load(p, env).map_err(to_strings)?;
            let mut app = weir_server::build(&cfg, Some(p), &text)
                .map_err(|e| to_strings(in_file(p, None, env, e)))?;
            // Zero-config's variables do nothing beside a config file (unless the file
            // uses them): said, not ignored.
            for (var, used) in [
                ("WEIR_LISTEN", Some(app.listen.as_str())),
                ("WEIR_ADMIN_LISTEN", app.admin_listen.as_deref()),
            ] {
                if env(var).is_some_and(|v| !v.trim().is_empty() && Some(v.trim()) != used) {
                    tracing::warn!(
                        "{var} is set, but it applies only without a config file: {} says where \
                         to listen ([server] listen / admin_listen)",
                        p.display()
                    );
                }
            }
            if !app.keys.is_empty()
                && env("WEIR_API_KEY")
                    .is_some_and(|k| !k.trim().is_empty() && !app.keys.holds(k.trim()))
            {
                tracing::warn!(
                    "WEIR_API_KEY is set, but {} has [[auth.keys]] and it is none of them, so it \
                     is no client key: add one with key = \"${{WEIR_API_KEY}}\"",
                    p.display()
                );
            }
            if app.admin_key.is_none() && env("WEIR_ADMIN_KEY").is_some_and(|k| !k.is_empty()) {
                tracing::warn!(
                    "WEIR_ADMIN_KEY is set, but {} has no [auth] admin_key, so there is no admin \
                     API (/status, /metrics, /reload): add admin_key = \"${{WEIR_ADMIN_KEY}}\" to [auth]",
                    p.display()
                );
            }
            if app.router.routes().next().is_none() {
                tracing::warn!(
                    "{} has no [[models]]: every request for a model gets 404 (zero-config's \
                     models, mock included, apply only without a config file)",
                    p.display()
                );
            }
            weir_server::check_env_key(&app, env)
                .map_err(|e| vec![format!("{}: {e}", p.display())])?;
            let generated = weir_server::ensure_client_key(&mut app, None, env);
            weir_server::check_admin_key(&app)
                .map_err(|e| vec![format!("{}: {e}", p.display())])?;
            Ok((app, generated))
        }
        None => {
            let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
            if set("WEIR_ADMIN_LISTEN") && !set("WEIR_ADMIN_KEY") {
                tracing::warn!(
                    "zero-config: WEIR_ADMIN_LISTEN is set, but WEIR_ADMIN_KEY is not, so there \
                     is no admin API (/status, /metrics, /reload): set WEIR_ADMIN_KEY too"
                );
            }
            weir_server::zero_config(env).map_err(to_strings)
        }
    }
}

/// Runs `f` with logging off on this thread: for the builds of the extra runtimes' apps,
/// which would repeat the first build's warnings once per runtime.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
}

/// How many runtimes serve the API: `WEIR_WORKER_THREADS`, else one per core.
fn runtime_count() -> usize {
    let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match env("WEIR_WORKER_THREADS").filter(|v| !v.trim().is_empty()) {
        None => cores(),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                let n = cores().clamp(1, 64);
                tracing::warn!(
                    "WEIR_WORKER_THREADS={} is not a number from 1 to 64; using {n} (one per core)",
                    weir_model::log_safe(&v)
                );
                n
            }
        },
    };
    n.clamp(1, 64)
}

/// A listener the runtimes of this process share (SO_REUSEPORT: the kernel spreads
/// connections among them).
fn shared_listener(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{addr}: no address"),
                )
            })?,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Every runtime's app cell, for reloads.
type Cells = Arc<std::sync::Mutex<Vec<Arc<weir_server::Live>>>>;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A list of cells stays valid after a panic elsewhere.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Errors of a config built from `path` (placed in its text as interpolated) moved to where
/// they are in the file (`raw`, its text as read, else read again).
fn in_file(
    path: &Path,
    raw: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: Vec<weir_server::config::ConfigError>,
) -> Vec<weir_server::config::ConfigError> {
    let read;
    let raw = match raw {
        Some(r) => r,
        None => match std::fs::read_to_string(path) {
            Ok(r) => {
                read = r;
                &read
            }
            Err(_) => return errors,
        },
    };
    weir_server::config::placed_in_file(raw, env, errors)
}

/// Why a reload from `old` to `new` cannot be made for the listeners it would move: the
/// ports are bound once, at startup.
fn moved_listeners(old: &weir_server::App, new: &weir_server::App) -> Option<String> {
    if new.listen != old.listen {
        return Some(format!(
            "server.listen cannot change on reload (`{}` is in force); restart to move it",
            old.listen
        ));
    }
    match (&old.admin_listen, &new.admin_listen) {
        (a, b) if a == b => None,
        (None, Some(_)) => Some(
            "the admin API starts only with the process: the new config serves it ([auth] \
             admin_key is set), the running one does not; restart to serve it"
                .to_owned(),
        ),
        (Some(_), None) => Some(
            "the admin API stops only with the process: the new config has no [auth] \
             admin_key, the running one serves it; restart to stop it"
                .to_owned(),
        ),
        (Some(a), Some(_)) => Some(format!(
            "server.admin_listen cannot change on reload (`{a}` is in force); restart to move it"
        )),
        (None, None) => None,
    }
}

/// Rebuilds every runtime's app from the config file and swaps them in, or returns the
/// new config's errors (the running config stays).
fn reload_all(path: &Path, key: Option<&str>, cells: &Cells) -> Result<(), Vec<String>> {
    let env_with_key = |name: &str| match (name, key) {
        ("WEIR_API_KEY", Some(k)) => Some(k.to_owned()),
        _ => env(name),
    };
    let to_strings = |errs: Vec<weir_server::config::ConfigError>| {
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    // The file as read for this reload, for the file watcher (see LOADED_TEXT; `text` has
    // the environment's values in it).
    let raw = std::fs::read_to_string(path).ok();
    let (cfg, text) = weir_server::config::load(path, &env_with_key).map_err(to_strings)?;
    let cells: Vec<Arc<weir_server::Live>> = lock(cells).clone();
    let Some(first_cell) = cells.first() else {
        return Ok(());
    };
    let old = first_cell.get();
    let mut first = weir_server::rebuild(&cfg, Some(path), &text, &old)
        .map_err(|e| to_strings(in_file(path, raw.as_deref(), &env_with_key, e)))?;
    // The addresses as resolved (admin_listen has a default once admin_key is set).
    if let Some(e) = moved_listeners(&old, &first) {
        return Err(vec![format!("{}: {e}", path.display())]);
    }
    // A config without client keys keeps this run's key (as printed at startup), or
    // takes WEIR_API_KEY. With neither, the key would be a new random one no client knows:
    // every request would be refused, so the reload is.
    weir_server::check_env_key(&first, &env_with_key)
        .map_err(|e| vec![format!("{}: {e}", path.display())])?;
    if weir_server::ensure_client_key(&mut first, key, &env_with_key).is_some() {
        return Err(vec![format!(
            "{}: the new config has no [[auth.keys]] and WEIR_API_KEY is not set, so no client \
             would hold a valid key; add [[auth.keys]] (or set WEIR_API_KEY and restart)",
            path.display()
        )]);
    }
    weir_server::check_admin_key(&first).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    // A key that gains a budget (new, or without limits until now) starts from what the
    // ledger says it spent today, as it would after a restart. (This runs on a blocking
    // thread of the runtime that holds the ledger's writer.)
    let fresh = first.keys.fresh_budgets(&old.keys);
    if let (false, Some(writer), Ok(rt)) = (
        fresh.is_empty(),
        first.ledger.as_ref(),
        tokio::runtime::Handle::try_current(),
    ) {
        rt.block_on(async {
            // Rows still queued are part of today's spend.
            writer.settle(std::time::Duration::from_secs(1)).await;
            weir_server::app::restore_spend(&first.keys, writer.ledger(), Some(&fresh)).await;
        });
    }
    let first = Arc::new(first);
    let mut apps = vec![first.clone()];
    for _ in 1..cells.len() {
        // The first build logged what it had to say (warnings about the config).
        let mut app =
            quietly(|| weir_server::rebuild(&cfg, Some(path), &text, &old)).map_err(to_strings)?;
        app.keys = first.keys.clone();
        app.router = app
            .router
            .share_state_with(&first.router)
            .map_err(|e| vec![e])?;
        apps.push(Arc::new(app));
    }
    // Other instances' routing changes now go to the new routes.
    first.follow_state();
    for (cell, app) in cells.iter().zip(apps) {
        cell.set(app);
    }
    *lock(&LOADED_TEXT) = raw;
    tracing::info!("config reloaded from {}", path.display());
    Ok(())
}

/// The config file's text (before `${VAR}`s are filled in) as the last reload read it:
/// the file watcher passes over a file
/// whose text is what is in force (one that a SIGHUP or POST /reload already loaded, or
/// one only touched), so one edit is one reload.
static LOADED_TEXT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Reloads on SIGHUP and when the config file changes (checked every two seconds).
async fn reload_triggers(path: PathBuf, key: Option<String>, cells: Cells) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    // What the start read (near enough: the file as it is now).
    lock(&LOADED_TEXT).get_or_insert_with(|| std::fs::read_to_string(&path).unwrap_or_default());
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let why = tokio::select! {
            () = hangup => "SIGHUP",
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                let text = std::fs::read_to_string(&path).ok();
                if text.is_some() && text == *lock(&LOADED_TEXT) {
                    continue;
                }
                "the config file changed"
            }
        };
        let (p, k, c) = (path.clone(), key.clone(), cells.clone());
        let outcome = tokio::task::spawn_blocking(move || reload_all(&p, k.as_deref(), &c)).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(errors)) => {
                for e in &errors {
                    tracing::error!("reload ({why}) refused, the running config stays: {e}");
                }
            }
            Err(e) => tracing::error!("reload ({why}) failed: {e}"),
        }
    }
}

/// Serves on an extra runtime of its own: its own app (so its upstream connections live
/// on this thread), but the process's metrics, the same client key, and the first app's
/// routing state (key cooldowns, breakers, latency, sessions), so the runtimes act as one
/// gateway.
fn spawn_runtime(
    path: Option<PathBuf>,
    key: Option<String>,
    first: Arc<weir_server::App>,
    cells: Cells,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let env_with_key = |name: &str| match (name, &key) {
            ("WEIR_API_KEY", Some(k)) => Some(k.clone()),
            _ => env(name),
        };
        // The first runtime's build logged what it had to say (zero-config's and the
        // config's warnings): not again per runtime.
        let Ok((mut app, _)) = quietly(|| load_with(path.as_deref(), &env_with_key)) else {
            return;
        };
        app.metrics = first.metrics.clone();
        app.buffered = first.buffered.clone();
        app.connections = first.connections.clone();
        app.ledger.clone_from(&first.ledger);
        // The same shared store (its router sink comes with the shared routing state).
        app.state.clone_from(&first.state);
        // The same client keys, so their limits are counted once for the process.
        app.keys = first.keys.clone();
        app.router = match app.router.share_state_with(&first.router) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("an extra runtime cannot share the routing state: {e}");
                return;
            }
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(weir_server::log::flush)
            .build()
        else {
            return;
        };
        weir_server::log::gather_on_this_thread();
        rt.block_on(async move {
            match shared_listener(&app.listen) {
                Ok(listener) => {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    let live = weir_server::Live::new(Arc::new(app));
                    lock(&cells).push(live.clone());
                    let _ = weir_server::run_live(live, listener, None, stopped).await;
                }
                Err(e) => tracing::warn!("an extra runtime cannot listen on {}: {e}", app.listen),
            }
        });
        weir_server::log::stop_gathering();
    })
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

/// Raises the soft limit on open files to the hard one, as servers do (nginx's
/// `worker_rlimit_nofile`, Go's runtime): each client connection, upstream connection and
/// stream holds a descriptor, and the usual soft limit of 1024 is reached by a thousand
/// clients.
#[cfg(unix)]
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("cannot raise the open files limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|n| n < 4096) {
        tracing::warn!(
            "the open files limit is {} (ulimit -n): each connection takes one; raise it to serve more clients",
            now.unwrap_or_default()
        );
    }
    // Half the descriptors for clients, the rest for upstream calls, the admin port, the
    // ledger and the config file: clients holding connections open cannot starve them.
    if let Some(n) = now {
        weir_server::set_default_max_connections(usize::try_from(n / 2).unwrap_or(usize::MAX));
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

fn serve(config: Option<PathBuf>) -> ExitCode {
    init_logging();
    raise_open_files_limit();
    let path = config_path(config);
    let (app, generated) = match load(path.as_deref()) {
        Ok(a) => a,
        Err(errors) => {
            for e in &errors {
                eprintln!("weir: {e}");
            }
            // (One error is its own one-line reason.)
            if errors.len() > 1 {
                eprintln!("weir: cannot start: the config has {} errors", errors.len());
            }
            return ExitCode::FAILURE;
        }
    };
    // One single-threaded runtime per core, each accepting on a shared (SO_REUSEPORT)
    // listener: a request and its upstream call stay on one thread, with no hand-offs.
    let runtimes = runtime_count();
    // SO_REUSEPORT would let a second gateway share the port silently: refuse a port in
    // use first, as a plain bind would.
    if let Err(e) = std::net::TcpListener::bind(&app.listen) {
        let hint = if path.is_some() {
            "server.listen"
        } else if env("WEIR_LISTEN").is_some_and(|l| !l.trim().is_empty()) {
            "WEIR_LISTEN"
        } else {
            "zero-config: set WEIR_LISTEN, e.g. WEIR_LISTEN=127.0.0.1:4010, or [server] listen in a config file"
        };
        eprintln!("weir: cannot listen on {} ({hint}): {e}", app.listen);
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(weir_server::log::flush)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The ledger's writer lives on this (the first) runtime; every runtime's requests
    // send their rows to it.
    let mut app = app;
    if let Some(url) = app.ledger_url.clone() {
        match runtime.block_on(weir_ledger::Ledger::open(&url)) {
            Ok(ledger) => {
                runtime.block_on(weir_server::app::restore_spend(&app.keys, &ledger, None));
                let writer = runtime.block_on(async { weir_ledger::Writer::spawn(ledger, 10_000) });
                app.ledger = Some(writer);
            }
            Err(e) => {
                eprintln!("weir: cannot open the ledger: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // So does the shared state store's background work (subscription, reconnection).
    if let Err(e) = runtime.block_on(weir_server::connect_state(&mut app)) {
        eprintln!("weir: {e}");
        return ExitCode::FAILURE;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let zero_config = path.is_none();
    let app = Arc::new(app);
    let live = weir_server::Live::new(app.clone());
    let cells: Cells = Arc::new(std::sync::Mutex::new(vec![live.clone()]));
    if let Some(p) = &path {
        let (p, k, c) = (p.clone(), generated.clone(), cells.clone());
        live.set_reload(Arc::new(move || reload_all(&p, k.as_deref(), &c)));
    }
    let extra: Vec<_> = (1..runtimes)
        .map(|_| {
            spawn_runtime(
                path.clone(),
                generated.clone(),
                app.clone(),
                cells.clone(),
                stop_rx.clone(),
            )
        })
        .collect();
    weir_server::log::gather_on_this_thread();
    let code = runtime.block_on(async move {
        let listener = match shared_listener(&app.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("weir: cannot listen on {}: {e}", app.listen);
                return ExitCode::FAILURE;
            }
        };
        // (The config check refused an admin listener on the API port.)
        let admin = match &app.admin_listen {
            Some(a) => match tokio::net::TcpListener::bind(a).await {
                Ok(l) => Some(l),
                Err(e) => {
                    let hint = if zero_config {
                        "zero-config: set WEIR_ADMIN_LISTEN"
                    } else {
                        "server.admin_listen"
                    };
                    eprintln!("weir: cannot listen on {a} ({hint}): {e}");
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
                app.router
                    .routes()
                    .map(|r| match r.targets.first() {
                        Some(t) if t.provider != r.name => format!("{} -> {}", r.name, t.provider),
                        _ => r.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        if let Some(key) = &generated {
            // Printed once, on stdout, so it can be captured; never logged.
            println!("weir: no WEIR_API_KEY set; this run's client key is: {key}");
        }
        if let Some(a) = admin.as_ref().and_then(|l| l.local_addr().ok()) {
            tracing::info!("admin API on http://{a} (dashboard at /, /status, /metrics, POST /reload)");
        }
        if let Some(p) = &path {
            tokio::spawn(reload_triggers(p.clone(), generated.clone(), cells.clone()));
        } else {
            // SIGHUP's default action ends the process (a `systemctl reload`, a closed
            // terminal): with no file to reload, it is noted and nothing else.
            #[cfg(unix)]
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::warn!(
                            "SIGHUP: nothing to reload (serving the zero-config defaults, no --config)"
                        );
                    }
                });
            }
        }
        let grace_of = live.clone();
        let shutdown = async move {
            shutdown_signal().await;
            // The grace in force now (a reload may have changed it).
            let grace = grace_of.get().shutdown_grace;
            // A second Ctrl-C or SIGTERM ends the grace period.
            tokio::spawn(async {
                shutdown_signal().await;
                weir_server::hurry_shutdown();
            });
            tracing::info!(
                "shutting down: no new connections; requests in flight have up to {grace:?} (signal again to stop now)"
            );
            let _ = stop_tx.send(true);
        };
        let ledger = app.ledger.clone();
        let state = app.state.clone();
        drop(app);
        let others_done = async move {
            for handle in extra {
                // The other runtimes drain within the same grace period. The ledger's
                // writer and the admin port live on this runtime, which keeps running them
                // meanwhile.
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
        };
        let served =
            weir_server::run_live_until(live, listener, admin, shutdown, others_done).await;
        if let Some(s) = state {
            // Every request has ended: give their in-flight slots (and spend) back to
            // Redis, or other instances would wait for the leases to expire.
            if !s.drain(std::time::Duration::from_secs(2)).await {
                tracing::warn!("shared state: not everything queued for Redis was written within 2 s of the shutdown");
            }
        }
        if let Some(w) = ledger {
            // Every request has ended: let the rows they queued land.
            let settled = w.settle(std::time::Duration::from_secs(5)).await;
            // What has not landed by now is lost with the process: counted and said.
            let lost = if settled { 0 } else { w.pending() };
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "ledger: {lost} row(s) not written within 5 s of the shutdown are lost"
                );
            }
            tracing::info!(
                written = w.written(),
                dropped = w.dropped() + lost,
                settled,
                "ledger closed"
            );
        }
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir: {e}");
                ExitCode::FAILURE
            }
        }
    });
    weir_server::log::stop_gathering();
    code
}

/// `--since`: `24h`, `7d`, `90m` ago, or a UTC date; milliseconds since the epoch.
fn parse_since(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.contains('-') {
        let bad = || format!("--since `{s}`: not a date (use YYYY-MM-DD, e.g. 2026-11-01)");
        let parts: Vec<&str> = s.split('-').collect();
        let num = |p: &str, len: usize| {
            (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<i64>().ok())
                .flatten()
        };
        let [y, m, d] = parts[..] else {
            return Err(bad());
        };
        let (Some(y), Some(m), Some(d)) = (num(y, 4), num(m, 2), num(d, 2)) else {
            return Err(bad());
        };
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if !(1..=days).contains(&d) {
            return Err(bad());
        }
        {
            // Days from the civil date (Howard Hinnant's algorithm).
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let mp = (m + 9) % 12;
            let doy = (153 * mp + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            return Ok((era * 146_097 + doe - 719_468) * 86_400_000);
        }
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("--since `{s}`: use a duration (24h, 7d) or a date (2026-11-01)"))?;
    let ms = match unit {
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(format!("--since `{s}`: units are m, h, d")),
    };
    Ok(now_ms - ms)
}

fn usage(config: Option<PathBuf>, since: Option<String>, by: &str) -> Result<String, String> {
    let path = config_path(config).ok_or("weir usage needs a config file with a [ledger] url")?;
    // Only the ledger's url matters here: variables the rest of the file names (provider
    // keys) need not be set to read a report.
    const UNSET: &str = "weir-usage-variable-not-set";
    let env_or_unset = |name: &str| env(name).or_else(|| Some(UNSET.to_owned()));
    let (cfg, _) = weir_server::config::load(&path, &env_or_unset).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let url = cfg
        .ledger
        .map(|l| l.url.into_inner())
        .ok_or_else(|| format!("{} has no [ledger] url", path.display()))?;
    if url.contains(UNSET) {
        return Err(format!(
            "{}: [ledger] url names an environment variable that is not set",
            path.display()
        ));
    }
    let by: weir_ledger::By = by.parse()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let since = since.map(|s| parse_since(&s, now_ms)).transpose()?;
    // A report never creates a ledger: a relative path is from the directory serve runs
    // in, and an empty report from another directory would look like no usage.
    if let Some(file) = weir_ledger::sqlite_path(&url) {
        let file = std::path::Path::new(&file);
        if !file.exists() {
            let shown = std::env::current_dir().map_or_else(|_| file.to_owned(), |d| d.join(file));
            return Err(format!(
                "no ledger at {}: a relative path in [ledger] url is taken from the directory \
                 `weir serve` runs in; run `weir usage` there or make the path absolute",
                shown.display()
            ));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let ledger = weir_ledger::Ledger::open(&url).await?;
        let rows = ledger.report(since, by).await?;
        Ok(weir_ledger::render(&rows, by))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Usage { config, since, by } => match usage(config, since, &by) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => serve(config),
        Command::Check { config } => {
            // Warnings found while building (e.g. a budget that cannot see an unpriced
            // model) go to stderr; the verdict, and errors, to stdout.
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_max_level(tracing::Level::WARN)
                .without_time()
                .with_target(false)
                .with_ansi(false)
                .init();
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
            let key = if key == "-" {
                let mut line = String::new();
                if let Err(e) = std::io::stdin().read_line(&mut line) {
                    eprintln!("weir: cannot read the key from standard input: {e}");
                    return ExitCode::from(1);
                }
                line.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                key
            };
            if key.is_empty() {
                eprintln!("weir: the key is empty");
                return ExitCode::from(1);
            }
            println!("{}", weir_server::hash_key(&key));
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_since;

    /// A reload of a config with an admin key and the default admin address is made (the
    /// file leaves `admin_listen` out; the running app has the default filled in), and one
    /// that would start or stop the admin API, or move a port, is refused saying so.
    #[test]
    fn a_reload_keeps_the_default_admin_address_and_refuses_to_move_a_listener() {
        let dir = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weir.toml");
        let keys = "[[auth.keys]]\nname = \"a\"\nkey = \"sk-reload-test-a\"\n\
                    [providers.demo]\nkind = \"mock\"\n";
        let with_admin = format!("[auth]\nadmin_key = \"adm-reload-test\"\n{keys}");
        let start = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let (cfg, text) = weir_server::config::load(&path, &|_| None).unwrap();
            let app = weir_server::build(&cfg, Some(&path), &text).unwrap();
            super::Cells::new(std::sync::Mutex::new(vec![weir_server::Live::new(
                std::sync::Arc::new(app),
            )]))
        };
        let reload = |cells: &super::Cells, text: &str| {
            std::fs::write(&path, text).unwrap();
            super::reload_all(&path, None, cells)
        };
        let cells = start(&with_admin);
        reload(&cells, &format!("{with_admin}# edited\n")).unwrap();
        let e = reload(&cells, keys).unwrap_err().join("\n");
        assert!(
            e.contains("the admin API stops only with the process"),
            "{e}"
        );
        let e = reload(
            &cells,
            &format!("[server]\nadmin_listen = \"127.0.0.1:4999\"\n{with_admin}"),
        )
        .unwrap_err()
        .join("\n");
        assert!(
            e.contains("server.admin_listen cannot change on reload (`127.0.0.1:4001`"),
            "{e}"
        );
        let e = reload(
            &cells,
            &format!("[server]\nlisten = \"127.0.0.1:4998\"\n{with_admin}"),
        )
        .unwrap_err()
        .join("\n");
        assert!(e.contains("server.listen cannot change on reload"), "{e}");
        let cells = start(keys);
        let e = reload(&cells, &with_admin).unwrap_err().join("\n");
        assert!(
            e.contains("the admin API starts only with the process"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn since_takes_real_dates_and_durations_only() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("2026-11-01", now), Ok(1_793_491_200_000));
        assert_eq!(parse_since("2024-02-29", now), Ok(1_709_164_800_000));
        assert_eq!(parse_since("1970-01-01", now), Ok(0));
        assert_eq!(parse_since("24h", now), Ok(now - 86_400_000));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-12-06-junk",
            "2026-1-1",
            "2026-00-10",
            "-5d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert!(parse_since("5 days", now).is_err());
    }
}
