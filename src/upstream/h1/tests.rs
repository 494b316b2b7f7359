//! The codec against raw loopback origins that write exact bytes, through the pool (which is
//! where reuse is decided).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;

use super::test_origin::{answer, Act, Origin};
use crate::error::ErrorKind;
use crate::upstream::connect::Connector;
use crate::upstream::informational::OnInformational;
use crate::upstream::pool::{Pool, MAX_PER_SERVER};
use crate::upstream::{Progress, RequestBody, ResponseBody};

fn pool(max_head: usize) -> Pool {
    let connector = Connector {
        timeout: Duration::from_secs(5),
        tls: None,
        peer: None,
        sessions: None,
    };
    Pool::new(connector, Duration::from_secs(60), max_head, MAX_PER_SERVER)
}

fn request(method: Method, uri: &str) -> Request<RequestBody> {
    let mut req = Request::new(RequestBody::empty(Progress::new()));
    *req.method_mut() = method;
    *req.uri_mut() = uri.parse().unwrap();
    req
}

/// The whole body: its data, and its trailers if any.
async fn collect(body: ResponseBody) -> (Vec<u8>, Option<http::HeaderMap>) {
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

/// What the origin answers to a path: the exact bytes, and whether it closes afterwards.
fn responses(path: &str) -> Vec<Act> {
    let (bytes, close): (&[u8], bool) = match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5;name=value;other=\"quoted\"\r\nhello\r\n\
              6 ; ext\r\n world\r\n\
              0\r\nx-sum: 11\r\nx-more: yes\r\n\r\n",
            false,
        ),
        "/te-cl" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        "/two-lengths" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
            false,
        ),
        "/bad-length" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\nhello", false),
        "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\nall of it, then the close", true),
        // The answer to HEAD: the length of the body a GET would get, and no body.
        "/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        "/no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "/not-modified" => (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 20\r\netag: \"a\"\r\n\r\n",
            false,
        ),
        "/interim" => (
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            false,
        ),
        "/big-head" => return answer(&big_head(), false),
        "/large" => {
            let mut body = b"HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n".to_vec();
            body.extend((0..300_000u32).map(|i| (i % 251) as u8));
            return answer(&body, false);
        }
        "/folded" => (
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        "/partial" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nonly the start",
            false,
        ),
        "/close-after" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            false,
        ),
        "/http10" => (b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
    };
    answer(bytes, close)
}

/// A head of ~20 KiB (40 fields of ~500 bytes), over a 16 KiB limit.
fn big_head() -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..40 {
        head.extend_from_slice(b"x-big: ");
        head.extend_from_slice(&[b'0'; 500]);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"content-length: 0\r\n\r\n");
    head
}

#[tokio::test]
async fn chunked_bodies_skip_extensions_and_keep_trailers() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let response = pool
        .send(request(Method::GET, &origin.uri("/chunked")))
        .await
        .unwrap();
    let (data, trailers) = collect(response.into_body()).await;
    assert_eq!(data, b"hello world");
    let trailers = trailers.expect("the trailer section is kept");
    assert_eq!(trailers["x-sum"], "11");
    assert_eq!(trailers["x-more"], "yes");
    // The body ended cleanly: the connection is reused.
    let (data, _) = collect(
        pool.send(request(Method::GET, &origin.uri("/ok")))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    assert_eq!(data, b"hello");
    assert_eq!(origin.accepted(), 1);
    // The head went as written, in origin-form with Host.
    let heads = origin.heads.lock().unwrap().clone();
    assert_eq!(
        heads[0],
        format!("GET /chunked HTTP/1.1\r\nhost: {}\r\n\r\n", origin.addr)
    );
}

#[tokio::test]
async fn transfer_encoding_overrides_content_length_and_the_connection_is_not_reused() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let response = pool
        .send(request(Method::GET, &origin.uri("/te-cl")))
        .await
        .unwrap();
    assert!(!response
        .headers()
        .contains_key(http::header::CONTENT_LENGTH));
    let (data, _) = collect(response.into_body()).await;
    assert_eq!(data, b"hello");
    assert!(origin.closed(1).await, "the connection was kept");
    assert_eq!(pool.open(), 0);
}

#[tokio::test]
async fn differing_or_bad_content_lengths_are_invalid_responses() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    for path in ["/two-lengths", "/bad-length", "/folded"] {
        let err = pool
            .send(request(Method::GET, &origin.uri(path)))
            .await
            .unwrap_err();
        // InvalidResponse is answered 502 (`proxy::respond`).
        assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{path}: {err}");
        assert!(
            err.cause().contains("invalid HTTP response"),
            "{path}: {err}"
        );
    }
    assert_eq!(pool.open(), 0);
}

#[tokio::test]
async fn a_close_delimited_body_runs_to_the_close() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let response = pool
        .send(request(Method::GET, &origin.uri("/until-close")))
        .await
        .unwrap();
    let (data, _) = collect(response.into_body()).await;
    assert_eq!(data, b"all of it, then the close");
    assert_eq!(pool.open(), 0);
}

#[tokio::test]
async fn no_body_after_head_204_and_304_and_the_connection_stays() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let cases = [
        (Method::HEAD, "/head", StatusCode::OK),
        (Method::GET, "/no-content", StatusCode::NO_CONTENT),
        (Method::GET, "/not-modified", StatusCode::NOT_MODIFIED),
        (Method::GET, "/ok", StatusCode::OK),
    ];
    for (method, path, status) in cases {
        let bodiless = path != "/ok";
        let response = pool.send(request(method, &origin.uri(path))).await.unwrap();
        assert_eq!(response.status(), status);
        let body = response.into_body();
        assert_eq!(body.is_end_stream(), bodiless, "{path}");
        let (data, _) = collect(body).await;
        assert_eq!(data.is_empty(), bodiless, "{path}");
    }
    // A body-less answer gave its connection back at once: one connection for all.
    assert_eq!(origin.accepted(), 1);
    assert_eq!(pool.open(), 1);
}

#[tokio::test]
async fn interim_responses_reach_the_callback_before_the_final_one() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut req = request(Method::GET, &origin.uri("/interim"));
    let log = Arc::clone(&seen);
    OnInformational::register(&mut req, move |status, headers| {
        let link = headers.get("link").map(|v| v.to_str().unwrap().to_owned());
        log.lock().unwrap().push((status.as_u16(), link));
    });
    let response = pool.send(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (100, None),
            (103, Some("</style.css>; rel=preload".to_owned()))
        ]
    );
    assert_eq!(collect(response.into_body()).await.0, b"final");
}

#[tokio::test]
async fn a_head_over_the_limit_is_an_invalid_response() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let err = pool
        .send(request(Method::GET, &origin.uri("/big-head")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.cause().contains("too large"), "{err}");
    // Under a larger limit the same head is read.
    let pool = super::super::pool::Pool::new(
        Connector {
            timeout: Duration::from_secs(5),
            tls: None,
            peer: None,
            sessions: None,
        },
        Duration::from_secs(60),
        64 * 1024,
        MAX_PER_SERVER,
    );
    let response = pool
        .send(request(Method::GET, &origin.uri("/big-head")))
        .await
        .unwrap();
    assert_eq!(response.headers().get_all("x-big").iter().count(), 40);
}

#[tokio::test]
async fn reused_after_a_clean_body_never_after_a_dropped_one_or_a_close() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    for _ in 0..3 {
        let response = pool
            .send(request(Method::GET, &origin.uri("/ok")))
            .await
            .unwrap();
        assert_eq!(collect(response.into_body()).await.0, b"hello");
    }
    assert_eq!((origin.accepted(), pool.open()), (1, 1));
    // Dropped half-way: closed, not kept.
    let response = pool
        .send(request(Method::GET, &origin.uri("/partial")))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"only the start");
    drop(body);
    assert!(
        origin.closed(1).await,
        "the half-read connection stays open"
    );
    assert_eq!(pool.open(), 0);
    // `Connection: close` and an HTTP/1.0 answer without keep-alive: not kept either.
    for path in ["/close-after", "/http10"] {
        let response = pool
            .send(request(Method::GET, &origin.uri(path)))
            .await
            .unwrap();
        assert_eq!(collect(response.into_body()).await.0, b"hello");
        assert_eq!(pool.open(), 0, "{path}");
    }
    assert_eq!(origin.accepted(), 3);
    let response = pool
        .send(request(Method::GET, &origin.uri("/ok")))
        .await
        .unwrap();
    assert_eq!(collect(response.into_body()).await.0, b"hello");
    assert_eq!((origin.accepted(), pool.open()), (4, 1));
}

#[tokio::test]
async fn a_body_cut_short_fails_and_never_looks_complete() {
    let origin = Origin::start(|_| {
        answer(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
            true,
        )
    })
    .await;
    let pool = pool(16 * 1024);
    let response = pool
        .send(request(Method::GET, &origin.uri("/")))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"only ten b");
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.cause().contains("before the end of the body"), "{err}");
    assert!(!body.is_end_stream());
    assert_eq!(pool.open(), 0);
}

#[tokio::test]
async fn a_large_body_arrives_whole_and_its_connection_is_reused() {
    let origin = Origin::start(responses).await;
    let pool = pool(16 * 1024);
    let response = pool
        .send(request(Method::GET, &origin.uri("/large")))
        .await
        .unwrap();
    assert_eq!(response.into_body().size_hint().exact(), Some(300_000));
    let response = pool
        .send(request(Method::GET, &origin.uri("/large")))
        .await
        .unwrap();
    let (data, _) = collect(response.into_body()).await;
    assert_eq!(data.len(), 300_000);
    assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    // The first body was dropped unread (its connection closed); the second ended cleanly
    // and its connection, its read buffer trimmed, carries the next exchange.
    let response = pool
        .send(request(Method::GET, &origin.uri("/ok")))
        .await
        .unwrap();
    assert_eq!(collect(response.into_body()).await.0, b"hello");
    assert_eq!((origin.accepted(), pool.open()), (2, 1));
}

#[tokio::test]
async fn the_request_is_written_at_the_end_of_the_runtimes_pass() {
    use std::io::{Read as _, Write as _};

    use super::{Connection, Exchange, Message};
    use crate::upstream::h1::write::Form;
    use crate::upstream::stream::{Counted, UpstreamStream};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri: http::Uri = format!("http://{}/pass", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let socket = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (mut origin, _) = listener.accept().unwrap();
    origin.set_nonblocking(true).unwrap();
    let info = Arc::new(hyper_util::client::legacy::connect::Connected::new());
    let conn = Connection::new(Counted::new(UpstreamStream::Plain(socket)), info);
    let msg = Message::new(
        request(Method::GET, &uri.to_string()),
        &uri,
        Form::Origin,
        None,
    );
    let mut exchange = Exchange::new(conn, msg);
    let deadline = crate::upstream::read_deadline::ReadDeadline {
        progress: Progress::new(),
        timeout: Duration::from_secs(30),
    };
    let (wakes, waker) = crate::pass::CountWakes::waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut buf = [0u8; 512];

    // First poll: nothing written; the task is queued again behind the others of this pass,
    // so it arms no read timeout yet.
    let max = 16 * 1024;
    assert!(exchange
        .poll_head(max, Some(&deadline), &mut cx)
        .is_pending());
    assert_eq!(wakes.count(), 1);
    assert!(exchange.conn.timer.is_none());
    let unread = origin.read(&mut buf).unwrap_err();
    assert_eq!(unread.kind(), std::io::ErrorKind::WouldBlock);

    // Second poll: the head goes out, and the exchange waits for the answer, within the
    // read timeout (on the connection's timer).
    assert!(exchange
        .poll_head(max, Some(&deadline), &mut cx)
        .is_pending());
    assert!(exchange.conn.timer.is_some());
    origin.set_nonblocking(false).unwrap();
    origin
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = origin.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"GET /pass HTTP/1.1\r\n"));
    origin
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
    let head = std::future::poll_fn(|cx| exchange.poll_head(max, Some(&deadline), cx))
        .await
        .unwrap();
    let response = exchange.into_response(head, None);
    assert_eq!(response.status(), StatusCode::OK);
    let body = crate::upstream::response_body::ResponseBody::H1(response.into_body());
    assert_eq!(collect(body).await.0, b"ok");
}
