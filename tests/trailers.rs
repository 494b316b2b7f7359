//! Response trailer fields (RFC 9110 §6.5) through the proxy, end to end.
//!
//! An origin answers with a chunked body and a trailer section announced by `Trailer`
//! (RFC 9110 §6.6.2). cuttle, like Squid, nginx and Varnish, discards the trailer section in
//! transit (RFC 9110 §6.5.1: "in most cases, the trailers are simply discarded") and removes the
//! `Trailer` announcement with the other framing fields (`proxy::headers`), so a client is never
//! promised fields it will not get. What these tests pin is that discarding is clean: the body
//! arrives whole and correctly framed, relayed or stored, and no trailer byte leaks into it;
//! and a stored response is served with an exact `Content-Length` (RFC 9111 §3.1: a cache MAY
//! discard trailer fields and MUST NOT combine them with the header fields).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{RawBehaviour, RawOrigin, TestProxy, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A chunked response with two chunks and a trailer section of one announced field.
fn chunked_with_trailer(cache_control: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain\r\n\
         Cache-Control: {cache_control}\r\n\
         Trailer: X-Checksum\r\n\
         Transfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `request` on a new connection and reads until the final chunk's trailer section
/// ends (a chunked answer) or the `Content-Length` body is complete; returns the raw bytes.
async fn fetch(proxy: &TestProxy, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        if complete(&buf) {
            return buf;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("response never ended: {}", String::from_utf8_lossy(&buf));
}

/// Whether `buf` holds a whole response: a chunked one up to the blank line after its last
/// chunk, or a sized one with all of its body.
fn complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body = &buf[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        let text = String::from_utf8_lossy(body);
        return text.contains("0\r\n") && text.ends_with("\r\n\r\n");
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    body.len() >= len
}

fn head_and_body(response: &[u8]) -> (String, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    (
        String::from_utf8_lossy(&response[..end]).to_ascii_lowercase(),
        response[end..].to_vec(),
    )
}

#[tokio::test]
async fn a_relayed_response_arrives_whole_without_its_trailer_section() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(chunked_with_trailer("no-store"))).await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        origin.url("/t"),
        origin.addr
    );
    let response = fetch(&proxy, &request).await;
    let (head, body) = head_and_body(&response);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        !head.contains("trailer:"),
        "no announcement of a discarded field: {head}"
    );
    assert!(
        !head.contains("x-checksum"),
        "no trailer merged into the head: {head}"
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        body.ends_with("0\r\n\r\n"),
        "an empty trailer section after the last chunk: {body:?}"
    );
    assert!(
        !body.to_ascii_lowercase().contains("x-checksum"),
        "{body:?}"
    );
    assert_eq!(decode_chunks(&body), "hello world");
}

#[tokio::test]
async fn a_stored_response_with_a_trailer_is_served_whole_without_it() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(chunked_with_trailer("max-age=300"))).await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/stored"),
        origin.addr
    );
    let first = fetch(&proxy, &request).await;
    let (first_head, first_body) = head_and_body(&first);
    assert!(first_head.starts_with("http/1.1 200"), "{first_head}");
    let first_data = if first_head.contains("transfer-encoding: chunked") {
        decode_chunks(&String::from_utf8_lossy(&first_body))
    } else {
        String::from_utf8_lossy(&first_body).into_owned()
    };
    assert_eq!(first_data, "hello world");

    // The write becomes visible once complete; wait (bounded) for the hit.
    let mut hit = None;
    for _ in 0..100 {
        let response = fetch(&proxy, &request).await;
        let (head, body) = head_and_body(&response);
        if head.contains("cache-status: ") && head.contains(";hit") {
            hit = Some((head, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (head, body) = hit.expect("the second request is a hit");
    assert_eq!(origin.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(head.contains("content-length: 11\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(
        !head.contains("trailer:") && !head.contains("x-checksum"),
        "{head}"
    );
    assert_eq!(body, b"hello world", "no trailer bytes in the body");
}

/// The data of a chunked body (extensions and trailers ignored).
fn decode_chunks(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    for _ in 0..100 {
        let (size_line, after) = rest.split_once("\r\n").expect("a chunk-size line");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after chunk data");
    }
    panic!("too many chunks");
}
