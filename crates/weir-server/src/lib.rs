//! Weir's HTTP server: the API endpoints on bare hyper (HTTP/1.1 and h2c), client
//! authentication, SSE streaming in the client's dialect, and loading the config.
//!
//! It knows sockets, HTTP and config files; routing and providers come from the crates
//! below it. [`run`] serves until a shutdown future resolves, then lets in-flight requests
//! finish within the grace period.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
mod dashboard;
pub mod http;
mod idle;
pub mod limits;
pub mod live;
pub mod log;
pub mod metrics;
pub mod pricing;
mod sse;

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use app::{
    build, check_admin_key, check_env_key, connect_state, ensure_client_key, rebuild, zero_config,
    App,
};
pub use auth::{generate_key, hash_key};
pub use live::{Live, Reload};
/// The config file (re-exported from `weir-config`).
pub use weir_config as config;

/// Set by [`hurry_shutdown`]: shutdowns under way stop waiting for their grace period.
static HURRY: tokio::sync::Notify = tokio::sync::Notify::const_new();
static HURRIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends the grace period of every shutdown under way (or to come) at once: the connections
/// still open are closed (an operator's second Ctrl-C or SIGTERM).
pub fn hurry_shutdown() {
    HURRIED.store(true, std::sync::atomic::Ordering::SeqCst);
    HURRY.notify_waiters();
}

/// The cap on client connections when the config sets none
/// ([`set_default_max_connections`]; 0: none).
static DEFAULT_MAX_CONNECTIONS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Client connections open on the API port, counted by every runtime of the process
/// together and across reloads ([`App::connections`]).
#[derive(Debug, Default)]
pub struct Connections {
    open: std::sync::atomic::AtomicUsize,
    /// Woken when one closes.
    closed: tokio::sync::Notify,
    /// How many are open from each client address (for `max_connections_per_ip`).
    by_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Connections {
    /// Counts a new connection from `ip`, unless that address holds `cap` already.
    fn admit(&self, ip: std::net::IpAddr, cap: usize) -> bool {
        // (A poisoned lock means a panic while it was held, which the code below cannot
        // do: the counts are still whole.)
        let mut by = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = by.entry(ip).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                by.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: std::net::IpAddr) {
        let mut by = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Occupied(mut e) = by.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// The cap on client connections when `server.max_connections` is not set (the binary
/// sets half the open-files limit; 0, the default here, is none).
pub fn set_default_max_connections(n: usize) {
    DEFAULT_MAX_CONNECTIONS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// Waits until the process has room for another client connection. (Runtimes that check
/// at the same moment may each take the last place: the cap is passed by at most the
/// number of runtimes.)
async fn room_for_a_connection(live: &Live) {
    use std::sync::atomic::Ordering;
    loop {
        let app = live.get();
        let closed = app.connections.closed.notified();
        let cap = app
            .max_connections
            .unwrap_or_else(|| DEFAULT_MAX_CONNECTIONS.load(Ordering::Relaxed));
        if cap == 0 || app.connections.open.load(Ordering::Relaxed) < cap {
            return;
        }
        closed.await;
    }
}

/// A client connection counted in [`Connections`] (in all, and by its address when a cap
/// per address is set) until dropped.
struct OpenConnection(Arc<Connections>, Option<std::net::IpAddr>);

impl OpenConnection {
    /// The connection counted, unless its address holds `per_ip` connections already.
    /// (Connections made while no cap was set are not counted by address: a reload that
    /// sets one counts those made after it.)
    fn new(
        connections: Arc<Connections>,
        ip: std::net::IpAddr,
        per_ip: Option<usize>,
    ) -> Option<Self> {
        let by_address = match per_ip {
            Some(cap) if !connections.admit(ip, cap) => return None,
            Some(_) => Some(ip),
            None => None,
        };
        connections
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(OpenConnection(connections, by_address))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(ip) = self.1 {
            self.0.release(ip);
        }
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.closed.notify_waiters();
    }
}

async fn hurried() {
    loop {
        let notified = HURRY.notified();
        if HURRIED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// How long a client has to send a request's headers (and an idle keep-alive connection
/// to begin its next request) before the connection is closed.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a request body may go without a byte arriving before it is answered 408.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a request body may take in all, from the request's arrival: a client that
/// trickles a byte at a time, never silent for BODY_IDLE_TIMEOUT, cannot hold a connection
/// for ever (a 10 MB body at 1 Mbit/s takes 80 s).
pub const BODY_TOTAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// At most one "accept failed" line per this period (per runtime thread).
const ACCEPT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long streams cut at the end of the shutdown grace period have to write their error
/// event before their connections are closed.
const CUT_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// Serves the API on `api` (and the admin API on `admin`, if given) until `shutdown`
/// resolves; then stops accepting and waits up to the app's grace period for in-flight
/// requests and streams.
pub async fn run(
    app: Arc<App>,
    api: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_live(Live::new(app), api, admin, shutdown).await
}

/// [`run`] with a swappable app: each request is served by the app in force when it
/// arrives (hot reload swaps it; see [`Live`]).
pub async fn run_live(
    live: Arc<Live>,
    api: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_live_until(live, api, admin, shutdown, std::future::ready(())).await
}

/// [`run_live`] for a process with other runtimes: once this one's connections are done,
/// it waits for `others_done` (their drains) before it returns, the admin port still
/// answering meanwhile, so the drain can be watched to its end whichever runtime holds
/// the streams.
pub async fn run_live_until(
    live: Arc<Live>,
    api: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    others_done: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client gets HEADER_READ_TIMEOUT to send a request's headers, and an idle
    // keep-alive connection as long to start its next request: a connection that trickles
    // its headers (or sits silent) cannot hold a socket, or shutdown, indefinitely.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(live.get().header_read_timeout);
    // HTTP/2: a ping every 30 s, and a connection whose peer does not answer within
    // 20 s is closed (an idle connection is otherwise kept for good).
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    // The connections' tasks: when the grace period is over, those still open are ended
    // (what they hold, such as a stream's log line and ledger row, is let go) before this
    // returns.
    let mut conns = tokio::task::JoinSet::new();
    // Set when shutdown begins: connections that have not sent a byte yet are let go.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    // Failed accepts (out of file descriptors, typically) are logged once per period with
    // how many there were, not one line each: a flood of connections must not flood the
    // log too.
    let mut accept_failures: u64 = 0;
    let mut accept_logged: Option<std::time::Instant> = None;
    // Connections closed for their address's cap, logged the same way.
    let mut refused_by_address: u64 = 0;
    let mut refused_logged: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // `accept` is cancel-safe, so a fresh future each turn loses nothing.
        let (stream, is_admin) = tokio::select! {
            // Past the cap on client connections, new ones wait in the kernel's queue
            // (the admin port is not counted and still answers).
            accepted = async {
                room_for_a_connection(&live).await;
                api.accept().await
            } => (accepted, false),
            accepted = accept_optional(admin.as_ref()) => (accepted, true),
            () = &mut shutdown => break,
        };
        let (stream, peer) = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                accept_failures += 1;
                if accept_logged.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::warn!(
                        failures = accept_failures,
                        "accept failed: {e} ({accept_failures} time(s) since the last such line)"
                    );
                    accept_failures = 0;
                    accept_logged = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let live = live.clone();
        // Forget the connections that ended.
        while conns.try_join_next().is_some() {}
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let mut stop = stop.clone();
        let first_bytes = live.get().header_read_timeout;
        let stall = live.get().client_stall_timeout;
        // A client that takes no bytes (its receive window stays shut) or acknowledges none
        // for this long has its connection closed by the kernel (TCP_USER_TIMEOUT): hyper
        // waits on a blocked write for ever, and the answer behind it would hold its
        // upstream call, its key's max_concurrent slot and what was buffered for it. A
        // client that reads, however slowly, keeps its window opening and is not cut.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(stall)) {
                tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
            }
        }
        let counted = if is_admin {
            None
        } else {
            let app = live.get();
            let ip = peer.ip().to_canonical();
            match OpenConnection::new(app.connections.clone(), ip, app.max_connections_per_ip) {
                Some(c) => Some(c),
                None => {
                    // Closed at once: this address holds its share of the connections.
                    refused_by_address += 1;
                    if refused_logged.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                        tracing::warn!(
                            client = %ip,
                            refused = refused_by_address,
                            "closed a new connection from {ip}: it holds \
                             server.max_connections_per_ip ({}) already \
                             ({refused_by_address} such time(s) since the last such line)",
                            app.max_connections_per_ip.unwrap_or_default()
                        );
                        refused_by_address = 0;
                        refused_logged = Some(std::time::Instant::now());
                    }
                    continue;
                }
            }
        };
        conns.spawn(async move {
            let _counted = counted;
            // Telling HTTP/1 from HTTP/2 waits for the first bytes with no timer of its own
            // (HTTP/1's header timeout starts after): a connection that never speaks is
            // closed here, and at once when shutdown begins.
            let mut first = [0u8; 3];
            let seen = tokio::select! {
                // (`readable` may wake before any byte is there; `peek` waits for one.)
                first = tokio::time::timeout(first_bytes, stream.peek(&mut first)) => {
                    match first {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    }
                }
                _ = stop.wait_for(|s| *s) => return,
            };
            // HTTP/2 with prior knowledge opens with `PRI * HTTP/2.0`; HTTP/1 methods
            // starting with P (POST, PUT, PATCH) differ by their third byte at the latest.
            let h2 = first[..seen] == b"PRI"[..seen];
            let io = TokioIo::new(stream);
            // HTTP/2 keeps a connection with no stream for as long as its peer answers
            // pings: one with no request in flight for the header timeout is let go, as
            // HTTP/1 keep-alive connections are, and one whose answers all wait on a shut
            // HTTP/2 window for the stall period (see `idle`).
            if is_admin && h2 {
                let handle = move |req| admin::handle(live.clone(), req);
                idle::serve_h2(io, &builder, watcher, (first_bytes, stall), handle).await;
            } else if is_admin {
                let svc = service_fn(move |req| admin::handle(live.clone(), req));
                let _ = watcher.watch(builder.serve_connection(io, svc)).await;
            } else if h2 {
                let handle = move |req| http::handle(live.get(), req);
                idle::serve_h2(io, &builder, watcher, (first_bytes, stall), handle).await;
            } else {
                let svc = service_fn(move |req| http::handle(live.get(), req));
                if let Err(e) = watcher
                    .watch(builder.serve_connection_with_upgrades(io, svc))
                    .await
                {
                    tracing::debug!("connection ended with an error: {e}");
                }
            }
        });
    }
    let _ = stopping.send(true);
    drop(api);
    // The admin port stays open while what is in flight drains, so `/status` and
    // `/metrics` can be watched through it; it closes when the drain is over.
    let admin = admin.map(|admin| tokio::spawn(serve_admin_draining(admin, live.clone(), builder)));
    let grace = live.get().shutdown_grace;
    // (Each runtime thread runs this loop over its own connections: only one that has
    // some says so.)
    while conns.try_join_next().is_some() {}
    if !conns.is_empty() {
        tracing::info!(
            "shutting down: waiting up to {grace:?} for {} open connection(s)",
            conns.len()
        );
        let all_closed = graceful.shutdown();
        tokio::pin!(all_closed);
        let cut = tokio::select! {
            () = &mut all_closed => {
                tracing::info!("all connections closed");
                false
            }
            () = tokio::time::sleep(grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                true
            }
            () = hurried() => {
                tracing::warn!("told again to stop; closing remaining connections");
                true
            }
        };
        if cut {
            // Streams end with an error event in their client's dialect rather than
            // mid-event; their connections then close. Whatever has not closed within
            // CUT_FLUSH (a client not reading, a request without a stream) is ended below.
            live.cut().fire();
            let _ = tokio::time::timeout(CUT_FLUSH, &mut all_closed).await;
        }
    }
    // Ends what is left (each task's future is dropped as it is aborted).
    conns.shutdown().await;
    others_done.await;
    if let Some(admin) = admin {
        admin.abort();
        let _ = admin.await;
    }
    Ok(())
}

/// The admin port during shutdown: each connection serves one request (a connection kept
/// alive would not end with the drain) and has the header timeout to send it. Runs until
/// aborted, which ends its connections too.
async fn serve_admin_draining(
    admin: TcpListener,
    live: Arc<Live>,
    mut builder: auto::Builder<TokioExecutor>,
) {
    builder.http1().keep_alive(false);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = admin.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let live = live.clone();
        let builder = builder.clone();
        let limit = live.get().header_read_timeout;
        conns.spawn(async move {
            let svc = service_fn(move |req| admin::handle(live.clone(), req));
            let _ =
                tokio::time::timeout(limit, builder.serve_connection(TokioIo::new(stream), svc))
                    .await;
        });
    }
}

async fn accept_optional(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
