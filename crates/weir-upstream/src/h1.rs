//! Keep-alive HTTP/1.1 connections to a plain-HTTP upstream (a local model server, a
//! sidecar, a private gateway), kept per endpoint origin and handed out with no lookup:
//! an [`Endpoint`](crate::Endpoint) made by [`Upstream::endpoint`](crate::Upstream::endpoint)
//! holds its origin's pool. HTTPS, proxied and one-off URLs go through hyper-util's pooled
//! client instead.
//!
//! A connection goes back to its pool only once its response was read to the end and it
//! can take another request; one whose response was dropped part-way is closed (that is
//! how a cancelled call reaches the upstream). Idle connections expire. A request that
//! never left because its idle connection turned out closed is sent on the next one, or
//! on a new connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;
use weir_model::ProviderError;

/// An idle connection is dropped after this long (as hyper-util's pool does).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many idle connections are kept per origin; more are closed after use.
const MAX_IDLE: usize = 1024;
/// How long a connection whose response ended may take to be ready for another request
/// before it is closed instead of pooled.
const READY_WAIT: Duration = Duration::from_secs(5);

type Sender = SendRequest<Full<Bytes>>;

/// The idle connections to one origin, oldest first.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
    /// How long a connection may stay idle.
    timeout: Duration,
    /// Whether a task sweeps expired connections (started with the first idle one).
    reaper: AtomicBool,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(IDLE_TIMEOUT)
    }
}

impl Pool {
    /// A pool whose connections stay idle at most `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        Pool {
            idle: Mutex::default(),
            timeout,
            reaper: AtomicBool::new(false),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(Sender, Instant)>> {
        // The list stays consistent whatever panicked while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used live connection, dropping expired and closed ones.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some((tx, since)) = idle.pop() {
            if !tx.is_closed() && since.elapsed() < self.timeout {
                return Some(tx);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        {
            let mut idle = self.idle();
            sweep(&mut idle, self.timeout);
            if idle.len() < MAX_IDLE {
                idle.push((tx, Instant::now()));
            }
        }
        if !self.reaper.swap(true, Ordering::Relaxed) {
            // Idle connections of a pool that gets no more calls are closed on time too;
            // the task ends with the pool.
            let (pool, every) = (Arc::downgrade(self), self.timeout / 3);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(pool) = pool.upgrade() else { return };
                    sweep(&mut pool.idle(), pool.timeout);
                }
            });
        }
    }

    /// How many connections are idle (for tests).
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// Drops the expired and closed connections at the front (the oldest).
fn sweep(idle: &mut Vec<(Sender, Instant)>, timeout: Duration) {
    let stale = idle
        .iter()
        .take_while(|(tx, since)| tx.is_closed() || since.elapsed() >= timeout)
        .count();
    idle.drain(..stale);
}

/// A connection lent to one response, returned when the response was read to its end.
#[derive(Debug)]
pub(crate) struct Lease {
    tx: Sender,
    pool: Arc<Pool>,
}

impl Lease {
    /// The response was read to its end: the connection may serve another once it can
    /// take a request (at once, normally; not while a request body it did not read is
    /// still queued, say after an early 413).
    pub(crate) fn release(self) {
        let Lease { mut tx, pool } = self;
        if tx.is_ready() {
            pool.put(tx);
            return;
        }
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, tx.ready()).await {
                pool.put(tx);
            }
        });
    }
}

/// Sends `req` (origin-form URI, `Host` set) to `dst` over an idle connection of `pool`,
/// or a new one.
pub(crate) async fn send(
    pool: &Arc<Pool>,
    connector: &HttpConnector,
    dst: &http::Uri,
    mut req: http::Request<Full<Bytes>>,
) -> Result<(http::Response<Incoming>, Lease), ProviderError> {
    let lease = |tx| Lease {
        tx,
        pool: pool.clone(),
    };
    while let Some(mut tx) = pool.take() {
        // Pooled connections were ready; an error here means it closed since.
        if tx.ready().await.is_err() {
            continue;
        }
        match tx.try_send_request(req).await {
            Ok(resp) => return Ok((resp, lease(tx))),
            Err(mut e) => match e.take_message() {
                // The connection closed before the request left: try the next.
                Some(r) => req = r,
                None => return Err(crate::transport_error(&e.into_error())),
            },
        }
    }
    let io = connector
        .clone()
        .call(dst.clone())
        .await
        .map_err(|e| crate::classify(&e, true))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| crate::classify(&e, true))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| crate::transport_error(&e))?;
    Ok((resp, lease(tx)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::HeaderMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::{Endpoint, Timeouts, Upstream, Url};

    /// How a test upstream answers each request on a connection.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `ok`, keeping the connection.
        KeepAlive,
        /// `ok`, then closes the connection (without saying so).
        ThenClose,
        /// `ok` with `connection: close`.
        SayClose,
        /// Headers promising ten bytes, five of them, then nothing; records when the
        /// client closed the connection.
        Partial,
    }

    struct Upstream1 {
        url: String,
        accepted: std::sync::Arc<AtomicUsize>,
        closed_by_client: std::sync::Arc<AtomicUsize>,
    }

    async fn read_request(s: &mut TcpStream) -> bool {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return false;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                return true;
            }
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn upstream(answer: Answer) -> Upstream1 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", l.local_addr().unwrap());
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let closed_by_client = std::sync::Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed_by_client.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    while read_request(&mut s).await {
                        let body = "ok";
                        let resp = match answer {
                            Answer::SayClose => format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            ),
                            Answer::Partial => {
                                "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello".to_owned()
                            }
                            _ => format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            ),
                        };
                        s.write_all(resp.as_bytes()).await.unwrap();
                        match answer {
                            Answer::ThenClose | Answer::SayClose => return,
                            Answer::Partial => {
                                let mut b = [0u8; 64];
                                while s.read(&mut b).await.unwrap_or(0) > 0 {}
                                c.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Answer::KeepAlive => {}
                        }
                    }
                });
            }
        });
        Upstream1 {
            url,
            accepted,
            closed_by_client,
        }
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: std::time::Duration::from_secs(2),
            first_byte: std::time::Duration::from_secs(2),
            idle: std::time::Duration::from_secs(2),
            total: std::time::Duration::from_secs(5),
        }
    }

    async fn call(up: &Upstream, ep: &Endpoint) -> Vec<u8> {
        let mut r = up
            .send(ep, HeaderMap::new(), b"{}".to_vec(), &timeouts())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        crate::read_body(&mut r).await.unwrap()
    }

    fn pooled(up: &Upstream, url: &str) -> Endpoint {
        let ep = up.endpoint(Url::parse(url).unwrap()).unwrap();
        assert!(ep.pooled.is_some(), "a plain-HTTP endpoint is pooled");
        ep
    }

    #[tokio::test]
    async fn calls_in_turn_share_one_connection_and_endpoints_share_their_origin_pool() {
        let srv = upstream(Answer::KeepAlive).await;
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let ep = pooled(&up, &srv.url);
        let other_path = pooled(&up, &srv.url.replace("/v1/x", "/v1/y"));
        for _ in 0..3 {
            assert_eq!(call(&up, &ep).await, b"ok");
        }
        assert_eq!(call(&up, &other_path).await, b"ok");
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(ep.pooled.as_ref().unwrap().0.idle_count(), 1);
        // Calls at once each get a connection, all kept for what follows.
        let (a, b) = tokio::join!(call(&up, &ep), call(&up, &ep));
        assert_eq!((a.as_slice(), b.as_slice()), (&b"ok"[..], &b"ok"[..]));
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(ep.pooled.as_ref().unwrap().0.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_reused() {
        for answer in [Answer::ThenClose, Answer::SayClose] {
            let srv = upstream(answer).await;
            let up = Upstream::direct(std::time::Duration::from_secs(2));
            let ep = pooled(&up, &srv.url);
            assert_eq!(call(&up, &ep).await, b"ok");
            // Time for the closing to reach the client.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(call(&up, &ep).await, b"ok");
            assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
        }
    }

    #[tokio::test]
    async fn a_response_dropped_part_way_closes_its_connection() {
        let srv = upstream(Answer::Partial).await;
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let ep = pooled(&up, &srv.url);
        let mut r = up
            .send(&ep, HeaderMap::new(), b"{}".to_vec(), &timeouts())
            .await
            .unwrap();
        assert_eq!(r.chunk().await.unwrap().as_deref(), Some(&b"hello"[..]));
        drop(r);
        for _ in 0..100 {
            if srv.closed_by_client.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(srv.closed_by_client.load(Ordering::SeqCst), 1);
        assert_eq!(ep.pooled.as_ref().unwrap().0.idle_count(), 0);
    }

    /// A whole body that stalls after its headers is a timeout after the idle period, not
    /// after the whole call's `total`: the next target can still be tried.
    #[tokio::test]
    async fn a_whole_body_that_stalls_times_out_after_the_idle_period() {
        let srv = upstream(Answer::Partial).await;
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let ep = pooled(&up, &srv.url);
        let t = Timeouts {
            idle: std::time::Duration::from_millis(200),
            total: std::time::Duration::from_secs(60),
            ..timeouts()
        };
        let mut r = up
            .send(&ep, HeaderMap::new(), b"{}".to_vec(), &t)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), crate::read_body(&mut r));
        let e = read.await.expect("read for the whole total").unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(e.kind, weir_model::ErrorKind::Timeout);
        assert_eq!(
            e.message,
            "the upstream's response body stalled: nothing arrived for 200ms"
        );
        assert!(e.retryable_elsewhere);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let ep = pooled(&up, &format!("http://{addr}/v1/x"));
        let e = up
            .send(&ep, HeaderMap::new(), b"{}".to_vec(), &timeouts())
            .await
            .unwrap_err();
        assert_eq!(e.kind, weir_model::ErrorKind::Connect);
        assert!(
            e.message.starts_with("cannot connect to the upstream"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed_when_they_expire_even_without_calls() {
        let srv = upstream(Answer::KeepAlive).await;
        let pool = std::sync::Arc::new(super::Pool::new(std::time::Duration::from_millis(150)));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let dst: http::Uri = srv.url.parse().unwrap();
        let req = || {
            let mut r = http::Request::new(http_body_util::Full::new(bytes::Bytes::from("{}")));
            *r.method_mut() = http::Method::POST;
            *r.uri_mut() = "/v1/x".parse().unwrap();
            r.headers_mut().insert(
                http::header::HOST,
                dst.authority().unwrap().as_str().parse().unwrap(),
            );
            r
        };
        // Two calls at once: two connections, both left idle.
        let (a, b) = tokio::join!(
            super::send(&pool, &connector, &dst, req()),
            super::send(&pool, &connector, &dst, req())
        );
        for (resp, lease) in [a.unwrap(), b.unwrap()] {
            use http_body_util::BodyExt;
            resp.into_body().collect().await.unwrap();
            lease.release();
        }
        assert_eq!(pool.idle_count(), 2);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(pool.idle_count(), 0, "the reaper closed both");
    }

    #[tokio::test]
    async fn an_early_answer_to_an_unread_body_does_not_leave_a_stuck_connection_pooled() {
        // The upstream answers 413 after the headers, never reads the body, keeps the
        // connection open; the next call must not wait on that connection.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", l.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let small = String::from_utf8_lossy(&buf[..n]).contains("content-length: 2\r\n");
                if small {
                    // A small request: answered as usual.
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                } else {
                    s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                }
                held.push(s);
            }
        });
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let ep = pooled(&up, &url);
        let mut r = up
            .send(&ep, HeaderMap::new(), vec![b' '; 16 << 20], &timeouts())
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        crate::read_body(&mut r).await.unwrap();
        // On the stuck connection, this would time out waiting for it to be ready.
        assert_eq!(call(&up, &ep).await, b"ok");
    }

    #[test]
    fn https_and_proxied_endpoints_are_left_to_the_pooled_client() {
        let up = Upstream::direct(std::time::Duration::from_secs(2));
        let tls = up
            .endpoint(Url::parse("https://api.example.com/v1").unwrap())
            .unwrap();
        assert!(tls.pooled.is_none());
        let proxied =
            Upstream::with_proxy(std::time::Duration::from_secs(2), "http://127.0.0.1:3128");
        let ep = proxied
            .endpoint(Url::parse("http://10.0.0.1:8000/v1").unwrap())
            .unwrap();
        assert!(ep.pooled.is_none());
        // An upstream NO_PROXY exempts is reached directly, so it is pooled.
        let m = hyper_util::client::proxy::matcher::Matcher::builder()
            .all("http://127.0.0.1:3128".to_owned())
            .no("10.0.0.2".to_owned())
            .build();
        let exempting = Upstream::build(
            std::time::Duration::from_secs(2),
            crate::connect::Proxies::from_matcher(m),
        );
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(exempting
            .endpoint(url("http://10.0.0.2:8000/v1"))
            .unwrap()
            .pooled
            .is_some());
        assert!(exempting
            .endpoint(url("http://10.0.0.1:8000/v1"))
            .unwrap()
            .pooled
            .is_none());
    }
}
