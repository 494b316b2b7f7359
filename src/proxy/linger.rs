//! Lingering close of a client connection: half-close, then read what the client still sends.
//!
//! RFC 9112 §9.6: "If a server performs an immediate close of a TCP connection, there is a
//! significant risk that the client will not be able to read the last HTTP response", because
//! data still arriving on a closed socket draws a reset, which "might erase the client's
//! unacknowledged input buffers". That happens whenever cuttle answers before a request body
//! has been read, e.g. an origin's 413 to an upload in progress: the client is still sending.
//! So, as §9.6 describes, cuttle "performs a half-close by closing only the write side ...
//! [and] then continues to read from the connection until it receives a corresponding close by
//! the client", discarding what it reads, for at most [`LINGER_IDLE`] without data and
//! [`LINGER_TOTAL`] in all (nginx's `lingering_timeout` and `lingering_time` defaults are 5 s
//! and 30 s; a client that has seen the response stops sending at once, so less is plenty).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest wait for the client's next bytes (or its close) after our half-close.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// Longest a closing connection is drained in all.
pub const LINGER_TOTAL: Duration = Duration::from_secs(10);
/// Reads per poll before yielding, so one fast client cannot hold a worker thread.
const READS_PER_POLL: usize = 16;

/// Where a connection's close stands.
#[derive(Debug, Default)]
pub struct Linger {
    /// Set once the write side is shut: (idle deadline timer, hard end).
    draining: Option<(Pin<Box<Sleep>>, Instant)>,
}

impl Linger {
    /// Shuts `io`'s write side, then drains it until the client closes or the time is up.
    pub fn poll_close<T>(&mut self, io: &mut T, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        if self.draining.is_none() {
            match Pin::new(&mut *io).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            let now = Instant::now();
            self.draining = Some((
                Box::pin(tokio::time::sleep(LINGER_IDLE)),
                now + LINGER_TOTAL,
            ));
        }
        let Some((timer, end)) = self.draining.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        for _ in 0..READS_PER_POLL {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                // The client's close (or a failure): done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let next = (Instant::now() + LINGER_IDLE).min(*end);
                    timer.as_mut().reset(next);
                }
                Poll::Pending => {
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        if Instant::now() >= *end {
            return Poll::Ready(Ok(()));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_client_reads_the_response_while_its_upload_is_drained() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        server.write_all(b"HTTP/1.1 413 x\r\n\r\n").await.unwrap();
        let mut linger = Linger::default();
        let closing = tokio::spawn(async move {
            std::future::poll_fn(|cx| linger.poll_close(&mut server, cx)).await
        });
        // The client is still uploading: its writes go through, then it reads and closes.
        client.write_all(&[7u8; 64 * 1024]).await.unwrap();
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"HTTP/1.1 413 x\r\n\r\n");
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_closes_is_let_go_after_the_idle_linger() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let mut linger = Linger::default();
        let started = Instant::now();
        std::future::poll_fn(|cx| linger.poll_close(&mut server, cx))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), LINGER_IDLE);
    }
}
