//! Upstreams are asked for uncompressed answers; one compressed all the same is an error
//! that says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_upstream::{Timeouts, Upstream, Url};

/// An upstream that records the request's head and answers 200 gzipped.
async fn gzipping() -> (String, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(String::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let into = into.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                *into.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\n\x1f\u{8b}\x08\x00";
                let _ = c.write_all(head.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn answers_are_asked_uncompressed_and_a_compressed_one_is_a_clear_error() {
    let (addr, seen) = gzipping().await;
    let up = Upstream::new(Duration::from_secs(2)).unwrap();
    let url = Url::parse(&format!("http://{addr}/v1/chat/completions")).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(2),
        idle: Duration::from_secs(2),
        total: Duration::from_secs(5),
    };
    let Err(e) = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts)
        .await
    else {
        panic!("a compressed answer was taken");
    };
    assert!(
        e.message.contains("compressed (content-encoding: gzip)"),
        "{}",
        e.message
    );
    // Another target may take the request; this one would answer the same way again.
    assert!(e.retryable_elsewhere && e.repeats, "{e:?}");
    let head = seen.lock().unwrap().to_ascii_lowercase();
    assert!(head.contains("accept-encoding: identity"), "{head}");
}
