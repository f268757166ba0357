//! Client-side probes of the connection deadlines [`crate::serve`] keeps, for the
//! tests of every server built on it (the API, the front proxy, the console). Behind
//! the `probe` feature: they panic on what a test must not see.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes `stream` (end of stream or a reset); panics, naming
/// `what`, when it is still open after five seconds or sends anything. Returns how
/// long it took.
pub async fn until_closed(stream: &mut TcpStream, what: &str) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Err(_) => panic!("{what}: still open after 5 s"),
        Ok(Ok(0)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Ok(n)) => panic!("{what}: sent {:?}", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => panic!("{what}: read failed: {e}"),
    }
    started.elapsed()
}

/// Sends `GET path` on `stream` (kept alive) and reads the whole response, whose
/// length must be given by `Content-Length`; returns it as text.
pub async fn get_on(stream: &mut TcpStream, path: &str, what: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("{what}: read failed: {e}"),
            Err(_) => panic!("{what}: no whole response within 10 s"),
        };
        assert!(n > 0, "{what}: closed mid-response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or_else(|| panic!("{what}: no content-length in {head}"));
            if body.len() >= length {
                return text;
            }
        }
    }
}
