//! `Upgrade` through cuttle (RFC 9110 §7.8) with a real WebSocket server and client
//! (tokio-tungstenite) on loopback: an echo through a reverse port and through an absolute-form
//! request on a forward port, a protocol outside `http_upgrade_request_protocols` ignored
//! (the origin never sees `Upgrade`), the idle timeout, and the access-log line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket server that echoes every data message until the client closes.
async fn ws_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A reverse port for `www.example.test` served by `upstream`, logging JSON to `log`.
fn reverse_config(dir: &Path, upstream: SocketAddr, log: &Path, extra: &str) -> String {
    format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{upstream}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n\
         [log]\naccess_log = \"{}\"\naccess_log_format = \"json\"\n{extra}",
        dir.join("cache").display(),
        log.display()
    )
}

/// Sends text and a 100 KiB binary message and expects both back unchanged; returns the
/// bytes of content echoed.
async fn echo<S>(ws: &mut WebSocketStream<S>) -> usize
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let binary = pattern(100 * 1024);
    let messages = [
        Message::text("hello through cuttle"),
        Message::binary(binary.clone()),
    ];
    let mut total = 0;
    for message in messages {
        total += message.len();
        ws.send(message.clone()).await.unwrap();
        let back = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("a message");
        assert_eq!(back, message);
    }
    total
}

/// The access log's JSON lines.
fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded) until the relay has ended and its line is flushed (`access_log_flush`).
async fn wait_for_101_line(log: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log_lines(log).iter().any(|l| l["status"] == 101) {
        assert!(tokio::time::Instant::now() < deadline, "no 101 line logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the one line of a switched connection: 101, TCP_TUNNEL, the echoed bytes, the
/// whole session's duration.
fn assert_switch_logged(log: &Path, echoed: usize, held: Duration) {
    let lines = log_lines(log);
    let line = lines
        .iter()
        .find(|l| l["status"] == 101)
        .unwrap_or_else(|| panic!("no 101 line in {lines:?}"));
    assert_eq!(line["result_code"], "TCP_TUNNEL", "{line}");
    let body_bytes = line["body_bytes"].as_u64().unwrap();
    assert!(
        body_bytes >= echoed as u64,
        "{body_bytes} bytes logged, {echoed} echoed: {line}"
    );
    let elapsed = line["elapsed_ms"].as_f64().unwrap();
    assert!(
        elapsed >= held.as_secs_f64() * 1000.0,
        "elapsed {elapsed} ms covers the session ({held:?}): {line}"
    );
}

#[tokio::test]
async fn websocket_echo_through_a_reverse_port() {
    let upstream = ws_echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let proxy = TestProxy::start_text(&reverse_config(dir.path(), upstream, &log, ""), None).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async("ws://www.example.test/chat", stream),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().get("via").is_some(),
        "the 101 passed through"
    );
    let echoed = echo(&mut ws).await;
    let held = Duration::from_millis(200);
    tokio::time::sleep(held).await;
    ws.close(None).await.unwrap();
    // The server answers the close; the stream then ends.
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
    drop(ws);
    wait_for_101_line(&log).await;
    proxy.shutdown().await;
    assert_switch_logged(&log, echoed, held);
}

/// Writes an absolute-form WebSocket handshake for `url` and reads the response head (byte by
/// byte, so no frame is consumed); returns the head.
async fn absolute_form_handshake(stream: &mut TcpStream, url: &str, host: &str) -> String {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8())
            .await
            .expect("head in time")
            .expect("head before close");
        head.push(byte);
        assert!(head.len() < 16 * 1024, "head too long");
    }
    String::from_utf8(head).unwrap()
}

fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn websocket_echo_through_an_absolute_form_forward_request() {
    let upstream = ws_echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = config(
        dir.path(),
        &format!(
            "[forward]\nhttp_upgrade_request_protocols = [\"websocket\"]\n\
             [log]\naccess_log = \"{}\"\naccess_log_format = \"json\"\n",
            log.display()
        ),
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let url = format!("http://{upstream}/chat");
    let head = absolute_form_handshake(&mut stream, &url, &upstream.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        field(&head, "sec-websocket-accept"),
        Some(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_str()),
        "{head}"
    );
    assert!(
        field(&head, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "{head}"
    );
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    let echoed = echo(&mut ws).await;
    ws.close(None).await.unwrap();
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
    drop(ws);
    wait_for_101_line(&log).await;
    proxy.shutdown().await;
    assert_switch_logged(&log, echoed, Duration::ZERO);
}

/// An origin that records requests and answers 200 (it never switches).
async fn plain_origin() -> Origin {
    Origin::builder()
        .route("/chat", |_| reply(200, "plain http"))
        .spawn()
        .await
}

#[tokio::test]
async fn a_protocol_outside_the_allow_list_is_not_passed_on() {
    // Forward ports allow no protocol by default (as Squid).
    let origin = plain_origin().await;
    let proxy = TestProxy::start("").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head =
        absolute_form_handshake(&mut stream, &origin.url("/chat"), &origin.addr.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(field(&head, "upgrade").is_none(), "{head}");
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("upgrade").is_none(), "{:?}", seen[0]);
    drop(stream);
    proxy.shutdown().await;

    // A reverse port allows websocket only: an `h2c` upgrade is ignored.
    let origin = plain_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let proxy =
        TestProxy::start_text(&reverse_config(dir.path(), origin.addr, &log, ""), None).await;
    let response = raw(
        proxy.addr,
        b"GET /chat HTTP/1.1\r\nHost: www.example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("upgrade").is_none(), "{:?}", seen[0]);
    assert!(seen[0].headers.get("http2-settings").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_switched_connection_is_closed_after_tunnel_idle() {
    let upstream = ws_echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = reverse_config(
        dir.path(),
        upstream,
        &log,
        "[timeouts]\ntunnel_idle = \"1s\"\n",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://www.example.test/chat", stream)
        .await
        .unwrap();
    echo(&mut ws).await;
    let started = tokio::time::Instant::now();
    // Nothing is sent: the relay gives up after tunnel_idle and the stream ends.
    let next = tokio::time::timeout(WAIT, ws.next()).await;
    assert!(next.is_ok(), "the idle connection was not closed");
    assert!(
        !matches!(next, Ok(Some(Ok(Message::Text(_) | Message::Binary(_))))),
        "{next:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    proxy.shutdown().await;
}
