//! A client's side of the connection closing: a half-close after the request still gets the
//! response (RFC 9112 §9.6), and a client that goes away mid-response is noticed, so the
//! upstream fetch and the cache fill it was feeding stop as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// RFC 9112 §9.6: "a TCP connection that is half-closed by the client does not delimit a
/// request message, nor does it imply that the client is no longer interested in a response".
/// A client that shuts down its sending side after its request (as `nc -N` does) gets the
/// whole response, on a miss (the proxy waits for the origin) and then on a hit.
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_response() {
    let origin = Origin::builder()
        .route("/page", |_| {
            reply_with(200, "the page", &[("cache-control", "max-age=600")])
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    for expect_hit in [false, true] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url("/page"),
            origin.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
            .await
            .expect("the proxy answers and closes in time")
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "got: {text}");
        assert!(text.ends_with("the page"), "got: {text}");
        let hit = text
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("cache-status") && l.contains("hit"));
        assert_eq!(hit, expect_hit, "got: {text}");
    }
    assert_eq!(origin.hits(), 1);
}

/// How many 16 KiB frames the endless origin body sends at most (64 MiB): a bound, never
/// reached while the proxy reads.
const MAX_FRAMES: usize = 4096;

/// A client reads the head and part of a cacheable body the origin keeps sending, then goes
/// away. The proxy notices: the upstream response is dropped (the origin's body stops being
/// read), the fill is abandoned (nothing is stored: the next request goes upstream again),
/// and the proxy keeps serving.
#[tokio::test]
async fn a_client_that_goes_away_mid_response_stops_the_upstream_and_the_fill() {
    let dropped = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(Notify::new());
    let (dropped2, ended2) = (Arc::clone(&dropped), Arc::clone(&ended));
    let origin = Origin::builder()
        .route("/endless", move |_| {
            // The frames go through a one-slot channel, so the origin learns when its reader
            // (the proxy's upstream connection) is gone: the send fails.
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            let (dropped, ended) = (Arc::clone(&dropped2), Arc::clone(&ended2));
            tokio::spawn(async move {
                let block = Bytes::from(pattern(16 << 10));
                for _ in 0..MAX_FRAMES {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if tx.send(block.clone()).await.is_err() {
                        dropped.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                ended.notify_one();
            });
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                let data = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(data)), rx))
            });
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            response
                .headers_mut()
                .insert("cache-control", "max-age=600".parse().unwrap());
            response
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/endless"),
        origin.addr
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    while got < 256 << 10 {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("body bytes in time")
            .unwrap();
        assert!(n > 0, "the proxy closed early");
        if got == 0 {
            assert!(buf.starts_with(b"HTTP/1.1 200"));
        }
        got += n;
    }
    drop(stream);
    tokio::time::timeout(WAIT, ended.notified())
        .await
        .expect("the origin's body ends in time");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the proxy stopped reading the origin once its client was gone"
    );
    // Nothing was stored: the same request goes upstream again (and this client reads only
    // the head before going away too).
    let mut again = TcpStream::connect(proxy.addr).await.unwrap();
    again.write_all(request.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(WAIT, again.read(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "got: {head}");
    assert!(!head.contains(";hit") && !head.contains("; hit"), "{head}");
    assert_eq!(origin.hits(), 2);
}
