//! The ICP server (Squid `icp_port`): answers each `ICP_OP_QUERY` datagram with the opcode its
//! [`Responder`] decides, to the address it came from (RFC 2186 §2: "the reply is sent to the
//! source address and port of the query"). Anything else that arrives (replies, other versions,
//! malformed datagrams) is dropped without an answer, as Squid drops it.
//!
//! Queries are answered concurrently (a disk-tier lookup must not hold up the others), at most
//! [`MAX_IN_FLIGHT`] at once; past that a query is dropped and the querier's timeout covers it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use super::wire::{self, Opcode};

/// Queries being answered at once, at most.
pub const MAX_IN_FLIGHT: usize = 256;

/// Decides the answer to a query: `ICP_OP_HIT`, `ICP_OP_MISS`, `ICP_OP_MISS_NOFETCH`,
/// `ICP_OP_DENIED` or `ICP_OP_ERR`.
pub trait Responder: Send + Sync + 'static {
    fn answer(&self, from: SocketAddr, url: &str) -> impl Future<Output = Opcode> + Send;
}

/// Binds the ICP socket.
pub async fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Answers queries on `socket` until `stop` turns true (or its sender is dropped).
pub async fn serve<R: Responder>(
    socket: UdpSocket,
    responder: Arc<R>,
    mut stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (len, from) = match received {
            Ok(got) => got,
            Err(error) => {
                // ICMP errors from earlier replies surface here; the socket is still good.
                tracing::debug!(%error, "ICP receive failed");
                continue;
            }
        };
        let query = match wire::decode(buf.get(..len).unwrap_or_default()) {
            Ok(message) if message.opcode == Opcode::Query => message,
            Ok(message) => {
                tracing::debug!(%from, opcode = message.opcode.as_str(), "ICP: not a query, ignored");
                continue;
            }
            Err(reason) => {
                tracing::debug!(%from, %reason, "ICP: malformed datagram ignored");
                continue;
            }
        };
        if from.port() == 0 {
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%from, "ICP: too many queries in flight, one dropped");
            continue;
        };
        let socket = Arc::clone(&socket);
        let responder = Arc::clone(&responder);
        tokio::spawn(async move {
            let opcode = responder.answer(from, &query.url).await;
            if let Some(reply) = wire::encode(&wire::reply(&query, opcode)) {
                if let Err(error) = socket.send_to(&reply, from).await {
                    tracing::debug!(%from, %error, "ICP reply not sent");
                }
            }
            tracing::debug!(%from, url = %query.url, opcode = opcode.as_str(), "ICP query answered");
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Answers HIT for URLs ending in `/hit`, DENIED for port-0 nonsense, MISS otherwise.
    struct ByUrl;

    impl Responder for ByUrl {
        async fn answer(&self, _from: SocketAddr, url: &str) -> Opcode {
            if url.ends_with("/hit") {
                Opcode::Hit
            } else {
                Opcode::Miss
            }
        }
    }

    #[tokio::test]
    async fn answers_queries_and_survives_garbage() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(socket, Arc::new(ByUrl), stop_rx));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Garbage first: no answer, no panic, the server goes on.
        for junk in [&b""[..], b"\x01\x02", &[0xff; 40], &[1, 2, 0, 200, 0, 0]] {
            client.send_to(junk, addr).await.unwrap();
        }
        let mut buf = vec![0u8; wire::MAX_MESSAGE];
        for (url, expected) in [("http://a/hit", Opcode::Hit), ("http://a/b", Opcode::Miss)] {
            let q = wire::encode(&wire::query(url, 42)).unwrap();
            client.send_to(&q, addr).await.unwrap();
            let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let reply = wire::decode(&buf[..len]).unwrap();
            assert_eq!((reply.opcode, reply.request_number), (expected, 42));
            assert_eq!(reply.url, url);
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
