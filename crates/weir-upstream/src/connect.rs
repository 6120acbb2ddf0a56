//! How upstream connections are made: directly, or through the proxy the environment
//! names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl reads them). An
//! `https://` upstream behind a proxy is reached through a CONNECT tunnel (TLS stays end
//! to end); an `http://` one is sent to the proxy in absolute form.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Proxy rules; `None` when the environment names no proxy (the common case: no
/// per-connection matching).
#[derive(Clone)]
pub(crate) struct Proxies(Option<Arc<Matcher>>);

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Proxy URLs may carry credentials.
        f.write_str(if self.0.is_some() {
            "Proxies(..)"
        } else {
            "Proxies(none)"
        })
    }
}

/// The environment variables that name a proxy.
pub(crate) const PROXY_VARS: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

impl Proxies {
    /// No proxy.
    #[cfg(test)]
    pub(crate) fn none() -> Proxies {
        Proxies(None)
    }

    /// Whether requests to `dst` go through a proxy (`NO_PROXY` exempts some).
    pub(crate) fn intercepts(&self, dst: &Uri) -> bool {
        self.0.as_ref().is_some_and(|m| m.intercept(dst).is_some())
    }

    /// What the environment says.
    pub(crate) fn from_env() -> Proxies {
        let named = PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        Proxies(named.then(|| Arc::new(Matcher::from_env())))
    }

    /// Explicit rules (tests, embedders).
    pub(crate) fn from_matcher(m: Matcher) -> Proxies {
        Proxies(Some(Arc::new(m)))
    }

    /// The proxy's `Proxy-Authorization` for a plain-HTTP request to `dst`, if it goes
    /// through a proxy with credentials.
    pub(crate) fn http_auth(&self, dst: &Uri) -> Option<http::HeaderValue> {
        if dst.scheme() != Some(&http::uri::Scheme::HTTP) {
            return None;
        }
        let auth = self
            .0
            .as_ref()?
            .intercept(dst)
            .and_then(|i| i.basic_auth().cloned())?;
        crate::note_proxy_auth(&auth);
        Some(auth)
    }
}

/// The connector under TLS: direct TCP, a CONNECT tunnel, or TCP to an HTTP proxy.
#[derive(Clone, Debug)]
pub(crate) struct Connect {
    pub http: HttpConnector,
    pub proxies: Proxies,
}

impl Service<Uri> for Connect {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = self.proxies.0.as_ref().and_then(|m| m.intercept(&dst));
        let mut http = self.http.clone();
        Box::pin(async move {
            match intercept {
                None => Ok(Conn {
                    io: http.call(dst).await?,
                    proxied: false,
                }),
                Some(i) if dst.scheme() == Some(&http::uri::Scheme::HTTPS) => {
                    let mut tunnel = Tunnel::new(i.uri().clone(), http);
                    if let Some(auth) = i.basic_auth() {
                        crate::note_proxy_auth(auth);
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    Ok(Conn {
                        io: tunnel.call(dst).await?,
                        proxied: false,
                    })
                }
                Some(i) => Ok(Conn {
                    io: http.call(i.uri().clone()).await?,
                    proxied: true,
                }),
            }
        })
    }
}

/// A TCP connection, saying whether it goes to an HTTP proxy (requests are then sent in
/// absolute form).
#[derive(Debug)]
pub(crate) struct Conn {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
