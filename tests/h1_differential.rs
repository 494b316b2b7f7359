//! Differential test of our HTTP/1 server (`proxy::h1`) against hyper's `http1` server, which
//! it replaced: both serve the same handler on loopback, the same request bytes go to each,
//! and the response bytes must be identical but for the `Date` value (GET, HEAD, 304, 204,
//! chunked responses and request bodies, keep-alive, pipelining, HTTP/1.0, `Expect`, CONNECT
//! and `Upgrade` hand-overs through `proxy::switch`, and the automatic error replies).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cuttle::proxy::client_conn::{ClientIo, ConnActivity};
use cuttle::proxy::{h1, switch};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The head limit both servers get.
const MAX_HEAD: usize = 4096;
const WAIT: Duration = Duration::from_secs(10);

type Reply = Response<BoxBody<Bytes, Infallible>>;

/// One handler for both servers, by path.
async fn respond<B>(mut req: Request<B>) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let path = req.uri().path().to_owned();
    let full = |status: u16, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    };
    if req.method() == Method::CONNECT || path == "/upgrade" {
        // The switched connection (either server's, through `switch`) echoes in upper case.
        let on = switch::on(&mut req);
        tokio::spawn(async move {
            let Ok(mut io) = on.await else { return };
            let mut seen = Vec::new();
            let _ = io.read_to_end(&mut seen).await;
            let _ = io.write_all(&seen.to_ascii_uppercase()).await;
            let _ = io.shutdown().await;
        });
        if req.method() == Method::CONNECT {
            return full(200, "");
        }
        let mut response = full(101, "");
        response
            .headers_mut()
            .insert("upgrade", "shout".parse().unwrap());
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return response;
    }
    match path.as_str() {
        "/get" => {
            let mut response = full(200, "hello");
            response.headers_mut().insert("x-a", "1".parse().unwrap());
            response.headers_mut().append("x-a", "2".parse().unwrap());
            response
        }
        "/304" => {
            let mut response = full(304, "");
            response
                .headers_mut()
                .insert("etag", "\"v1\"".parse().unwrap());
            response
        }
        "/204" => full(204, ""),
        "/close" => {
            let mut response = full(200, "bye");
            response
                .headers_mut()
                .insert("connection", "close".parse().unwrap());
            response
        }
        "/chunked" => {
            let chunks = ["first ", "second"]
                .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c.as_bytes()))));
            let stream = futures_util::stream::iter(chunks);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/echo" => {
            let Ok(body) = req.into_body().collect().await else {
                return full(500, "broken body");
            };
            let mut response = Response::new(Full::new(body.to_bytes()).boxed());
            response
                .headers_mut()
                .insert("x-echo", "yes".parse().unwrap());
            response
        }
        _ => full(404, "no such path"),
    }
}

/// hyper's server, configured as the listener configured it.
async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .half_close(true)
                    .max_header_size(MAX_HEAD)
                    .max_buf_size(MAX_HEAD.max(8192) + 8192);
                let service =
                    service_fn(|req| async move { Ok::<_, Infallible>(respond(req).await) });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Our server.
async fn our_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let activity = ConnActivity::new(WAIT, WAIT, WAIT);
                let io = ClientIo::new(stream, activity);
                let settings = h1::Settings { max_head: MAX_HEAD };
                let stop = Arc::new(AtomicBool::new(false));
                let _ = h1::serve(io, settings, stop, respond).await;
            });
        }
    });
    addr
}

/// Sends `wire`, half-closes, and reads the whole answer (until the server closes).
async fn exchange(addr: SocketAddr, wire: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(wire).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the server did not close")
        .unwrap();
    masked(&String::from_utf8_lossy(&out))
}

/// The text with every `date:` value replaced (the two servers may answer a second apart).
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("date: ") {
        out.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        let end = rest.find("\r\n").unwrap_or(rest.len());
        out.push_str("<date>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn our_server_writes_what_hyper_wrote() {
    let theirs = hyper_server().await;
    let ours = our_server().await;
    let big_field = format!("x-big: {}\r\n", "b".repeat(MAX_HEAD));
    let cases: Vec<(&str, String)> = vec![
        ("get", "GET /get HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("head", "HEAD /get HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("304", "GET /304 HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("204", "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("404", "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("chunked response", "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        (
            "chunked request",
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
                .into(),
        ),
        (
            "length request",
            "PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody".into(),
        ),
        (
            "expect 100-continue",
            "PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"
                .into(),
        ),
        (
            "pipelined pair",
            "GET /get HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\n".into(),
        ),
        (
            "keep-alive after a body",
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /get HTTP/1.1\r\n\r\n"
                .into(),
        ),
        (
            "client close ends the pipeline",
            "GET /get HTTP/1.1\r\nConnection: close\r\n\r\nGET /get HTTP/1.1\r\n\r\n".into(),
        ),
        (
            "server close ends the pipeline",
            "GET /close HTTP/1.1\r\n\r\nGET /get HTTP/1.1\r\n\r\n".into(),
        ),
        ("http/1.0", "GET /get HTTP/1.0\r\n\r\n".into()),
        (
            "http/1.0 keep-alive",
            "GET /get HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /204 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                .into(),
        ),
        ("http/1.0 unknown length", "GET /chunked HTTP/1.0\r\n\r\n".into()),
        (
            "TE and CL",
            "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nok\r\n0\r\n\r\nGET /get HTTP/1.1\r\n\r\n"
                .into(),
        ),
        ("malformed", "GET /get HTTP/1.1\r\nbad field\r\n\r\n".into()),
        ("bad version", "GET /get HTTP/9.9\r\n\r\n".into()),
        (
            "two lengths",
            "POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(),
        ),
        (
            "gzip coding",
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
        ),
        (
            "head too large",
            format!("GET /get HTTP/1.1\r\n{big_field}\r\n"),
        ),
        (
            "connect",
            "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\nping".into(),
        ),
        (
            "upgrade",
            "GET /upgrade HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\nhello".into(),
        ),
        (
            "upgrade refused on HTTP/1.0",
            "GET /upgrade HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\nhello".into(),
        ),
        (
            "unread body, rest not sent",
            "POST /get HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".into(),
        ),
        (
            "unread body, all buffered",
            "POST /get HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /204 HTTP/1.1\r\n\r\n".into(),
        ),
        ("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into()),
        ("eof mid-head", "GET /get HTTP/1.1\r\nHost:".into()),
        (
            "eof mid-body",
            "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort".into(),
        ),
    ];
    let mut differences = Vec::new();
    for (name, wire) in &cases {
        let expected = exchange(theirs, wire.as_bytes()).await;
        let got = exchange(ours, wire.as_bytes()).await;
        if expected != got {
            differences.push(format!("{name}:\n  hyper: {expected:?}\n  ours:  {got:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
