//! The loopback origin of the upstream unit tests (this codec's and the pool's): it answers
//! each request head with what its script says for the path, counts the connections it
//! accepted and those the other side closed, and records the request heads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One thing the origin does for a request, in order.
#[derive(Debug)]
pub enum Act {
    /// Writes these bytes.
    Send(Vec<u8>),
    /// Waits this long.
    Pause(Duration),
    /// Closes the connection (not counted as a close by the other side).
    Close,
}

/// What the origin does for a request, by its path.
pub type Script = fn(&str) -> Vec<Act>;

/// Sends `bytes`, then closes if `close`.
pub fn answer(bytes: &[u8], close: bool) -> Vec<Act> {
    let mut acts = vec![Act::Send(bytes.to_vec())];
    if close {
        acts.push(Act::Close);
    }
    acts
}

/// A loopback origin on 127.0.0.1, serving until the test's runtime ends.
pub struct Origin {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Every request head, in the order they came.
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, c, h) = (
            Arc::clone(&accepted),
            Arc::clone(&closed),
            Arc::clone(&heads),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, script, Arc::clone(&c), Arc::clone(&h)));
            }
        });
        Self {
            addr,
            accepted,
            closed,
            heads,
        }
    }

    pub fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits (bounded, 2 s) until the other side has closed `n` connections.
    pub async fn closed(&self, n: usize) -> bool {
        for _ in 0..200 {
            if self.closed.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// Answers each request head on `stream` (pipelined ones in turn) until either side closes.
async fn serve(
    mut stream: TcpStream,
    script: Script,
    closed: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            heads.lock().unwrap().push(head);
            for act in script(&path) {
                match act {
                    Act::Send(bytes) => {
                        if stream.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Act::Pause(pause) => tokio::time::sleep(pause).await,
                    Act::Close => return,
                }
            }
        }
    }
}
