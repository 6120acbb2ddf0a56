//! Closing HTTP/2 connections that carry no request for a while.
//!
//! hyper closes an HTTP/1 connection whose next request does not start within the header
//! read timeout, but keeps an HTTP/2 connection with no open stream for as long as its
//! peer answers pings: a client (or anyone, before any key is checked) could hold file
//! descriptors for good with idle connections. Each HTTP/2 connection counts its requests
//! in flight, answers included (a streamed answer is in flight until its body ends), and
//! is let go once it has had none for the idle period.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::http::Body;

/// One connection's requests in flight and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    active: AtomicUsize,
    /// Milliseconds since `epoch` when the connection was last busy.
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request begins; it is in flight until the guard (and the answer holding it) is
    /// dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// How long the connection has had no request in flight (zero while it has one).
    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    pub(crate) async fn idle(&self, idle: Duration) {
        loop {
            let quiet = self.idle_for();
            if quiet >= idle {
                return;
            }
            // Checked again when the period could first be over (at least a second on).
            tokio::time::sleep((idle - quiet).max(Duration::from_secs(1))).await;
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves an HTTP/2 connection with `handle` until it ends or has had no request in flight
/// for `idle` (then it is dropped).
pub(crate) async fn serve_h2<H, F>(
    io: hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    idle: Duration,
    handle: H,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<hyper::Response<Body>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let activity = Activity::new();
    let svc = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let in_flight = activity.begin();
            let answer = handle(req);
            async move {
                let r = answer.await?;
                Ok::<_, std::convert::Infallible>(r.map(|b| Tracked::wrap(b, in_flight)))
            }
        })
    };
    tokio::select! {
        r = watcher.watch(builder.serve_connection(io, svc)) => {
            if let Err(e) = r {
                tracing::debug!("connection ended with an error: {e}");
            }
        }
        () = activity.idle(idle) => {}
    }
}

/// An answer's body that keeps its request in flight until it ends or is dropped.
pub(crate) struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub(crate) fn wrap(inner: Body, in_flight: InFlight) -> Body {
        Body::new(Tracked {
            inner,
            _in_flight: in_flight,
        })
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_once_its_last_answer_has_ended() {
        let a = Activity::new();
        let first = a.begin();
        let second = a.begin();
        drop(first);
        // One answer still streams: never idle.
        let waited =
            tokio::time::timeout(Duration::from_secs(120), a.idle(Duration::from_secs(30)));
        assert!(waited.await.is_err());
        drop(second);
        let started = tokio::time::Instant::now();
        a.idle(Duration::from_secs(30)).await;
        assert!(started.elapsed() >= Duration::from_secs(29));
    }
}
