//! An error answer's body is read only as far as its message needs: an upstream that
//! answers an error with an endless body costs the gateway 64 KiB, not megabytes, and the
//! error is described from what came.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_upstream::{read_error_body, Timeouts, Upstream, Url, ERROR_BODY_BYTES};

/// An upstream answering 500 with a body that never ends (its length says 2 GiB).
async fn endless_error() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 2147483648\r\n\r\nthe upstream broke";
                if c.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let filler = vec![b' '; 64 * 1024];
                while c.write_all(&filler).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_endless_error_body_is_read_to_its_first_64_kib() {
    let addr = endless_error().await;
    let up = Upstream::new(Duration::from_secs(2)).unwrap();
    let url = Url::parse(&format!("http://{addr}/v1/messages")).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(2),
        idle: Duration::from_secs(2),
        total: Duration::from_secs(30),
    };
    let mut resp = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts)
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let started = Instant::now();
    let body = read_error_body(&mut resp).await;
    assert_eq!(body.len(), ERROR_BODY_BYTES);
    assert!(body.starts_with(b"the upstream broke"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
