//! Closing HTTP/2 connections that carry no request for a while.
//!
//! hyper closes an HTTP/1 connection whose next request does not start within the header
//! read timeout, but keeps an HTTP/2 connection with no open stream for as long as its
//! peer answers pings: a client (or anyone, before any key is checked) could hold file
//! descriptors for good with idle connections. Each HTTP/2 connection counts its requests
//! in flight, answers included (a streamed answer is in flight until its body ends), and
//! is let go once it has had none for the idle period.
//!
//! HTTP/2 also has flow control of its own, out of the kernel's sight: a client that opens
//! a stream with a receive window of zero and never widens it is sent no byte of the
//! answer, so hyper waits for window for ever and the stream stays in flight (TCP, and so
//! `TCP_USER_TIMEOUT`, sees nothing wrong). Before any key is checked, a 401 held that way
//! kept its connection open for good. A connection whose answers all wait for the client
//! to take data, with none taken for the stall period (`timeouts.idle`, as for a blocked
//! TCP window), is closed too. An answer waiting on its upstream is not waiting on the
//! client, so a long silence from a model cuts nothing here.
//!
//! One answer the client stops taking while it takes the others (a response body it
//! leaked, say) would hold its upstream call and its key's `max_concurrent` slot for as
//! long as the others keep the connection busy: hyper polls an answer only when its
//! stream has window, so no timer inside the answer runs. Such an answer is ended on its
//! own once it has waited for the client for the stall period: its body (the upstream
//! call with it) is dropped, and the stream is reset (an error, not an end that would pass
//! for the whole answer) when hyper next polls it, once the client gives it window:
//! hyper sends nothing on a stream without window, and the gateway has no handle on it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::http::Body;

/// One connection's requests in flight, how many of their answers wait for the client,
/// and when the connection last moved.
#[derive(Debug)]
pub(crate) struct Activity {
    active: AtomicUsize,
    /// Answers whose next frame waits for the client to take data: made or last polled
    /// with a frame, and not polled since.
    blocked: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last moved: a request began or
    /// ended, or an answer's body was polled.
    last_ms: AtomicU64,
    /// Milliseconds since `epoch` when its answers last moved (a body polled), or when
    /// one first waited for the client after none did. A request beginning does not
    /// count: a client that keeps opening streams it never reads (a 401 needs no key)
    /// must not keep a stalled connection.
    moved_ms: AtomicU64,
    epoch: Instant,
    /// The answers made on the connection, to end one that waits for the client too long.
    answers: Mutex<Vec<Weak<Answer>>>,
}

/// An answer's body, shared with its connection's watch so that one the client stops
/// taking can be ended (dropped) from there.
struct Answer {
    body: Mutex<Option<Body>>,
    /// Milliseconds since the connection's epoch when it began to wait for the client;
    /// `u64::MAX` while it does not.
    waits_since: AtomicU64,
}

impl Answer {
    fn body(&self) -> std::sync::MutexGuard<'_, Option<Body>> {
        self.body.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a connection is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// No request in flight for the idle period.
    Idle,
    /// Every answer in flight has waited for the client to take data for the stall period.
    Stalled,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            moved_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            answers: Mutex::new(Vec::new()),
        })
    }

    /// Ends the answers that have waited for the client for `stall` (their bodies, and
    /// the upstream calls in them, are dropped); returns how long until the next one
    /// waiting would be due, if one waits.
    fn end_stalled_answers(&self, stall: Duration) -> Option<Duration> {
        let now = self.now_ms();
        let stall_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        let mut ended: Vec<Body> = Vec::new();
        let mut next: Option<u64> = None;
        {
            let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
            answers.retain(|a| {
                let Some(a) = a.upgrade() else {
                    return false;
                };
                let since = a.waits_since.load(Ordering::Relaxed);
                if since == u64::MAX {
                    return true;
                }
                let waited = now.saturating_sub(since);
                if waited >= stall_ms {
                    ended.extend(a.body().take());
                    return false;
                }
                let left = stall_ms - waited;
                next = Some(next.map_or(left, |n| n.min(left)));
                true
            });
        }
        if !ended.is_empty() {
            tracing::debug!(
                "ending {} HTTP/2 answer(s) whose client took no data for {stall:?}",
                ended.len()
            );
        }
        drop(ended);
        next.map(Duration::from_millis)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// An answer moved (its body was polled): the stall clock starts over.
    fn moved(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        self.moved_ms.store(now, Ordering::Relaxed);
    }

    /// One more answer waits for the client; the first of them starts the stall clock.
    fn block(&self) {
        if self.blocked.fetch_add(1, Ordering::Relaxed) == 0 {
            self.moved_ms.store(self.now_ms(), Ordering::Relaxed);
        }
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

    /// How long every answer in flight has waited for the client with nothing taken (zero
    /// while there is none, or while one is still being made or waits on its upstream).
    fn stalled_for(&self) -> Duration {
        let active = self.active.load(Ordering::Relaxed);
        if active == 0 || self.blocked.load(Ordering::Relaxed) < active {
            return Duration::ZERO;
        }
        let moved = Duration::from_millis(self.moved_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(moved)
    }

    /// Resolves once the connection has had no request in flight for `idle`, or its
    /// answers have all waited for the client for `stall`.
    pub(crate) async fn quiet(&self, idle: Duration, stall: Duration) -> Quiet {
        loop {
            let (quiet, stalled) = (self.idle_for(), self.stalled_for());
            if quiet >= idle {
                return Quiet::Idle;
            }
            if stalled >= stall {
                return Quiet::Stalled;
            }
            let one_due = self.end_stalled_answers(stall).unwrap_or(stall);
            // Checked again when either period could first be over: a request may begin
            // and stall, or end and leave the connection idle, meanwhile (so a stall is
            // seen within twice its period, an idle connection within the idle period
            // after its last request).
            let next = (idle - quiet).min(stall - stalled).min(one_due);
            tokio::time::sleep(next.max(Duration::from_millis(100))).await;
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

/// Serves an HTTP/2 connection with `handle` until it ends, has had no request in flight
/// for `idle`, or its answers have all waited for the client for `stall` (then it is
/// dropped).
pub(crate) async fn serve_h2<H, F>(
    io: hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    (idle, stall): (Duration, Duration),
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
        why = activity.quiet(idle, stall) => {
            if why == Quiet::Stalled {
                tracing::debug!("closing an HTTP/2 connection whose client took no data for {stall:?}");
            }
        }
    }
}

/// An answer's body that keeps its request in flight until it ends or is dropped, and
/// tells its connection whether it waits for the client.
pub(crate) struct Tracked {
    /// Counted in `Activity::blocked` while it waits for the client (not polled since it
    /// was made or gave a frame: `Answer::waits_since` says since when).
    answer: Arc<Answer>,
    in_flight: InFlight,
}

impl Answer {
    fn waits(&self) -> bool {
        self.waits_since.load(Ordering::Relaxed) != u64::MAX
    }
}

impl Tracked {
    pub(crate) fn wrap(inner: Body, in_flight: InFlight) -> Tracked {
        let activity = &in_flight.0;
        activity.block();
        let answer = Arc::new(Answer {
            body: Mutex::new(Some(inner)),
            waits_since: AtomicU64::new(activity.now_ms()),
        });
        let mut answers = activity
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Answers that ended are let go as the list doubles (and at each watch).
        if answers.len() >= 64 && answers.len().is_power_of_two() {
            answers.retain(|a| a.strong_count() > 0);
        }
        answers.push(Arc::downgrade(&answer));
        drop(answers);
        Tracked { answer, in_flight }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.answer.waits() {
            self.in_flight.0.blocked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// An answer ended by its connection's watch: its stream is reset (hyper resets a
/// stream whose body fails), so the client sees it cut, not a clean end that would pass
/// for the whole answer.
#[derive(Debug)]
pub(crate) struct Ended;

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the answer was ended: its client took no data for the stall period")
    }
}

impl std::error::Error for Ended {}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Ended;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // hyper polls an answer when the client has room for more of it.
        let this = &mut *self;
        let activity = &this.in_flight.0;
        if this.answer.waits() {
            activity.blocked.fetch_sub(1, Ordering::Relaxed);
            this.answer.waits_since.store(u64::MAX, Ordering::Relaxed);
        }
        activity.moved();
        let polled = match this.answer.body().as_mut() {
            Some(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            // Ended by the connection's watch: the client had stopped taking it.
            None => Poll::Ready(Some(Err(Ended))),
        };
        if let Poll::Ready(Some(Ok(_))) = polled {
            activity.block();
            this.answer
                .waits_since
                .store(activity.now_ms(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // (An ended answer is not at its end: polled, it fails, and its stream is reset.)
        self.answer
            .body()
            .as_ref()
            .is_some_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.answer
            .body()
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
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
        let waited = tokio::time::timeout(Duration::from_secs(120), a.quiet(THIRTY, NINETY));
        assert!(waited.await.is_err());
        drop(second);
        let started = tokio::time::Instant::now();
        assert_eq!(a.quiet(THIRTY, NINETY).await, Quiet::Idle);
        assert!(started.elapsed() >= Duration::from_secs(29));
    }

    const THIRTY: Duration = Duration::from_secs(30);

    /// An answer made on `a` and never polled (its client's window kept shut).
    fn held(a: &Arc<Activity>) -> Tracked {
        Tracked::wrap(
            Body::new(http_body_util::Full::new(Bytes::from("{}"))),
            a.begin(),
        )
    }
    const NINETY: Duration = Duration::from_secs(90);

    /// A body that gives `frames` frames, waiting `gap` before each (as an answer waits
    /// on its upstream).
    struct Slow {
        frames: usize,
        gap: Duration,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl hyper::body::Body for Slow {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.frames == 0 {
                return Poll::Ready(None);
            }
            let gap = self.gap;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            std::task::ready!(std::future::Future::poll(sleep.as_mut(), cx));
            self.sleep = None;
            self.frames -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    fn poll_once(body: &mut Tracked) -> Poll<Option<Result<Frame<Bytes>, Ended>>> {
        use hyper::body::Body as _;
        let waker = std::task::Waker::noop();
        Pin::new(body).poll_frame(&mut Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_answers_all_wait_for_the_client_is_stalled() {
        // Never polled (an HTTP/2 window kept at zero): stalled after the period, though
        // far from idle.
        let a = Activity::new();
        let held = held(&a);
        let started = tokio::time::Instant::now();
        assert_eq!(a.quiet(NINETY, THIRTY).await, Quiet::Stalled);
        assert!(started.elapsed() >= Duration::from_secs(29));
        drop(held);

        // Polled, given a frame, then not polled again: stalled too.
        let a = Activity::new();
        let mut taken = Tracked::wrap(
            Body::new(Slow {
                frames: 3,
                gap: Duration::ZERO,
                sleep: None,
            }),
            a.begin(),
        );
        assert!(matches!(poll_once(&mut taken), Poll::Ready(Some(_))));
        assert_eq!(a.quiet(NINETY, THIRTY).await, Quiet::Stalled);
    }

    /// A body that says when it is dropped (its upstream call with it).
    struct Watched(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Watched {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl hyper::body::Body for Watched {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_answer_the_client_stops_taking_is_ended_while_the_others_move() {
        let a = Activity::new();
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut left = Tracked::wrap(Body::new(Watched(dropped.clone())), a.begin());
        // Taken once, then never again (its stream's window stays shut).
        assert!(matches!(poll_once(&mut left), Poll::Ready(Some(_))));
        let mut read = Tracked::wrap(
            Body::new(Slow {
                frames: 1000,
                gap: Duration::ZERO,
                sleep: None,
            }),
            a.begin(),
        );
        let quiet = tokio::spawn({
            let a = a.clone();
            async move { a.quiet(NINETY, THIRTY).await }
        });
        let started = tokio::time::Instant::now();
        while !dropped.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(70), "never ended");
            assert!(matches!(poll_once(&mut read), Poll::Ready(Some(_))));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(started.elapsed() >= Duration::from_secs(29));
        // The connection itself serves on, and the ended answer ends its stream.
        assert!(!quiet.is_finished());
        assert!(matches!(
            poll_once(&mut left),
            Poll::Ready(Some(Err(Ended)))
        ));
        assert!(matches!(poll_once(&mut read), Poll::Ready(Some(Ok(_)))));
        quiet.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn new_requests_do_not_keep_a_stalled_connection() {
        // One answer never taken; every 2 s another request whose answer is never taken
        // either (a 401 needs no key): stalled all the same, 30 s after the first.
        let a = Activity::new();
        let started = tokio::time::Instant::now();
        let mut answers = vec![held(&a)];
        let quiet = tokio::spawn({
            let a = a.clone();
            async move { a.quiet(NINETY, THIRTY).await }
        });
        while !quiet.is_finished() && started.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            answers.push(held(&a));
        }
        let quiet = tokio::time::timeout(Duration::from_secs(1), quiet).await;
        assert_eq!(quiet.expect("never stalled").unwrap(), Quiet::Stalled);
        assert!(
            started.elapsed() < Duration::from_secs(65),
            "{:?}",
            started.elapsed()
        );
        // A request after a long quiet spell is not stalled the moment it begins.
        let a = Activity::new();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let _fresh = held(&a);
        assert_eq!(a.stalled_for(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_waiting_on_their_upstream_or_still_being_made_never_stall() {
        let a = Activity::new();
        // A body polled and waiting on its upstream, far longer than the stall period.
        let mut waiting = Tracked::wrap(
            Body::new(Slow {
                frames: 1,
                gap: Duration::from_secs(600),
                sleep: None,
            }),
            a.begin(),
        );
        assert!(poll_once(&mut waiting).is_pending());
        let quiet = tokio::time::timeout(Duration::from_secs(300), a.quiet(NINETY, THIRTY));
        assert!(quiet.await.is_err(), "cut while its upstream was silent");
        drop(waiting);
        // An answer waiting on the client beside a request still being answered (no body
        // yet): not stalled either.
        let _making = a.begin();
        let _held = held(&a);
        let quiet = tokio::time::timeout(Duration::from_secs(300), a.quiet(NINETY, THIRTY));
        assert!(
            quiet.await.is_err(),
            "cut while another answer was being made"
        );
    }
}
