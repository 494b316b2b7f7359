//! `Expect: 100-continue` end to end (RFC 9110 §10.1.1, §15.2) with the real curl: the client
//! sees `100 Continue` only when the origin sends one, and an origin's early final response
//! (413 after reading part of a 20 MiB upload, or at once) reaches the client every time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REJECTION: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";

/// How an origin treats an upload that carries `Expect: 100-continue`.
#[derive(Clone, Copy)]
enum Upload {
    /// Sends 100, reads 64 KiB of the body, answers 413 and closes with the rest unread (the
    /// upload gets a reset).
    ContinueThenReject,
    /// Answers 413 at once without reading any of the body.
    RejectAtOnce,
}

/// Reads a request head; returns it and whatever body bytes came with it.
async fn read_head(stream: &mut TcpStream) -> (String, usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return (head, buf.len() - end - 4);
        }
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 || buf.len() > 1 << 20 {
            return (String::from_utf8_lossy(&buf).into_owned(), 0);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An origin behaving as `upload` says; counts requests that carried the expectation.
async fn origin(upload: Upload) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&expected);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let (head, mut read) = read_head(&mut stream).await;
                if head.to_ascii_lowercase().contains("expect: 100-continue") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                if let Upload::ContinueThenReject = upload {
                    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                    let mut chunk = [0u8; 8192];
                    while read < 64 * 1024 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n,
                        }
                    }
                }
                let _ = stream.write_all(REJECTION).await;
                // Dropped with the rest of the upload unread: the kernel answers it with RST.
            });
        }
    });
    (addr, expected)
}

/// curl uploading `file` with the expectation through `proxy`; returns (status, stderr and
/// the verbose trace).
async fn upload(proxy: &TestProxy, url: &str, file: &Path) -> (String, String) {
    let data = format!("@{}", file.display());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ])
    .await;
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn twenty_mib(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("upload.bin");
    std::fs::write(&file, pattern(20 << 20)).unwrap();
    file
}

#[tokio::test]
async fn a_413_after_part_of_the_upload_reaches_the_client_every_time() {
    let (origin, expected) = origin(Upload::ContinueThenReject).await;
    let dir = tempfile::tempdir().unwrap();
    let file = twenty_mib(dir.path());
    let proxy = TestProxy::start("").await;
    let url = format!("http://{origin}/upload");
    for attempt in 0..20 {
        let (status, trace) = upload(&proxy, &url, &file).await;
        assert_eq!(status, "413", "attempt {attempt}: {trace}");
        assert!(
            trace.contains("< HTTP/1.1 100 Continue"),
            "the origin's 100 reaches the client (attempt {attempt}): {trace}"
        );
    }
    assert_eq!(
        expected.load(Ordering::SeqCst),
        20,
        "the expectation went on"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_immediate_413_is_passed_on_without_a_100_or_the_upload() {
    let (origin, _) = origin(Upload::RejectAtOnce).await;
    let dir = tempfile::tempdir().unwrap();
    let file = twenty_mib(dir.path());
    let proxy = TestProxy::start("").await;
    let url = format!("http://{origin}/upload");
    for attempt in 0..5 {
        let (status, trace) = upload(&proxy, &url, &file).await;
        assert_eq!(status, "413", "attempt {attempt}: {trace}");
        assert!(
            !trace.contains("100 Continue"),
            "no 100 the origin did not send (attempt {attempt}): {trace}"
        );
        // curl reports how much it sent; with no 100 it sends nothing.
        assert!(
            !trace.contains("upload completely sent off"),
            "the body stayed with the client (attempt {attempt}): {trace}"
        );
    }
    proxy.shutdown().await;
}
