//! An answer the upstream cuts short (its connection closed before the body's end) is an
//! error that says so, not a failed connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_model::ErrorKind;
use weir_upstream::{read_body, Timeouts, Upstream, Url};

#[tokio::test]
async fn an_answer_cut_short_is_said_to_be_cut_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":";
            let _ = c.write_all(head.as_bytes()).await;
            // Closed with 94 bytes of the body still to come.
        }
    });
    let up = Upstream::new(Duration::from_secs(2)).unwrap();
    let url = Url::parse(&format!("http://{addr}/v1/chat/completions")).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(2),
        idle: Duration::from_secs(2),
        total: Duration::from_secs(5),
    };
    let mut resp = up
        .post(&url, HeaderMap::new(), b"{}".to_vec(), &timeouts)
        .await
        .unwrap();
    let e = read_body(&mut resp).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream, "{e:?}");
    assert!(
        e.message
            .starts_with("the upstream's answer was cut off: its connection closed before the end"),
        "{}",
        e.message
    );
    assert!(e.retryable_elsewhere);
}
