//! A bare reverse proxy on hyper, the least a gateway built on hyper's HTTP/1 server and
//! client can cost: `cargo xtask bench` measures it beside Weir, in the same run, so the
//! report tells what hyper and tokio cost on the machine from what Weir's own work costs.
//!
//! It is built the way Weir's server is (one single-threaded runtime per core sharing a
//! SO_REUSEPORT listener, mimalloc, keep-alive connections to the upstream kept per
//! runtime, TCP_NODELAY) and does the least a gateway must: read the request body whole,
//! forward the request with its headers, stream the answer back as it comes. No auth,
//! routing, JSON, usage, metrics or logs.
//!
//! Usage: `hyper-floor LISTEN UPSTREAM`, e.g. `hyper-floor 127.0.0.1:18096 127.0.0.1:18081`.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Sender = SendRequest<Full<Bytes>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

thread_local! {
    /// This runtime's idle upstream connections.
    static POOL: RefCell<Vec<Sender>> = const { RefCell::new(Vec::new()) };
}

/// An upstream response body that gives its connection back once read to the end.
struct Pooled {
    inner: Incoming,
    tx: Option<Sender>,
}

impl Pooled {
    fn release(&mut self) {
        if let Some(tx) = self.tx.take() {
            POOL.with(|p| p.borrow_mut().push(tx));
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Answer = http::Response<http_body_util::Either<Pooled, Full<Bytes>>>;

async fn connection(upstream: SocketAddr) -> Result<Sender, Error> {
    if let Some(tx) = POOL.with(|p| {
        let mut p = p.borrow_mut();
        while let Some(tx) = p.pop() {
            if !tx.is_closed() && tx.is_ready() {
                return Some(tx);
            }
        }
        None
    }) {
        return Ok(tx);
    }
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn forward(upstream: SocketAddr, req: http::Request<Incoming>) -> Result<Answer, Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(path)
        .body(Full::new(body))?;
    for (name, value) in &parts.headers {
        if name != http::header::CONNECTION {
            out.headers_mut().append(name, value.clone());
        }
    }
    let mut tx = connection(upstream).await?;
    let resp = tx.send_request(out).await?;
    let (mut parts, inner) = resp.into_parts();
    parts.headers.remove(http::header::CONNECTION);
    let body = Pooled {
        inner,
        tx: Some(tx),
    };
    Ok(http::Response::from_parts(
        parts,
        http_body_util::Either::Left(body),
    ))
}

async fn handle(upstream: SocketAddr, req: http::Request<Incoming>) -> Result<Answer, Infallible> {
    Ok(forward(upstream, req).await.unwrap_or_else(|e| {
        let mut r = http::Response::new(http_body_util::Either::Right(Full::new(Bytes::from(
            format!("hyper-floor: {e}\n"),
        ))));
        *r.status_mut() = http::StatusCode::BAD_GATEWAY;
        r
    }))
}

fn serve(listen: SocketAddr, upstream: SocketAddr) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let socket = if listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        loop {
            let (conn, _) = listener.accept().await?;
            conn.set_nodelay(true)?;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(upstream, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    })
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err(
            "usage: hyper-floor LISTEN UPSTREAM (e.g. 127.0.0.1:18096 127.0.0.1:18081)".into(),
        );
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtimes: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || serve(listen, upstream).map_err(|e| e.to_string())))
        .collect();
    for r in runtimes {
        r.join().map_err(|_| "a runtime panicked")??;
    }
    Ok(())
}
