//! Upstream calls through an HTTP proxy: plain HTTP in absolute form with the proxy's
//! credentials, HTTPS through a CONNECT tunnel; the proxy's password never reaches an
//! error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_model::ErrorKind;
use weir_upstream::{read_body, Timeouts, Upstream, Url};

/// A proxy that records each request head and answers `answer`.
async fn proxy(answer: &'static [u8]) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = c.write_all(answer).await;
            });
        }
    });
    (addr, seen)
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(2),
        idle: Duration::from_secs(2),
        total: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
    let (addr, seen) = proxy(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
    )
    .await;
    let up = Upstream::with_proxy(
        Duration::from_secs(2),
        &format!("http://user:pw-secret@{addr}"),
    );
    let url = Url::parse("http://upstream.example:8080/v1/chat/completions").unwrap();
    let mut resp = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(read_body(&mut resp).await.unwrap(), b"{\"ok\":true}");
    let head = seen.lock().unwrap()[0].to_lowercase();
    assert!(
        head.starts_with("post http://upstream.example:8080/v1/chat/completions http/1.1\r\n"),
        "{head}"
    );
    // base64("user:pw-secret")
    assert!(
        head.contains("proxy-authorization: basic dxnlcjpwdy1zzwnyzxq="),
        "{head}"
    );
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel_and_a_refusal_is_a_clean_error() {
    let (addr, seen) = proxy(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
    let up = Upstream::with_proxy(
        Duration::from_secs(2),
        &format!("http://user:pw-secret@{addr}"),
    );
    let url = Url::parse("https://api.example.com/v1/messages").unwrap();
    let e = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect, "{e:?}");
    assert!(!e.message.contains("pw-secret"), "{}", e.message);
    let head = seen.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("CONNECT api.example.com:443 HTTP/1.1\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // Bind, learn the port, close: nothing listens there.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let up = Upstream::new(Duration::from_secs(2)).unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/messages")).unwrap();
    let e = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect, "{e:?}");
    assert!(e.message.contains("cannot connect"), "{}", e.message);
}
