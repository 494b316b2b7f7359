//! Reading an upstream's response after it stopped reading our request.
//!
//! RFC 9112 §9.5: "A client sending a message body SHOULD monitor the network connection for
//! an error response while it is transmitting the request." An origin that rejects an upload
//! (413 after reading part of it) answers and closes with the rest unread; its kernel then
//! resets the connection, and our next body write fails with `ECONNRESET`/`EPIPE`. hyper's
//! client reports that write error for the request even when the origin's response is already
//! in the receive buffer (Linux keeps data received before the reset readable), so the client
//! would get a 502 instead of the 413, depending on which side of the connection hyper polled
//! first. [`WriteSide`] turns such a write failure into "the peer reads no more": later writes
//! are discarded and reported done, so hyper keeps reading and the response (or, if none came,
//! the read side's own error) decides the outcome.

use std::io;
use std::task::Poll;

/// Whether the peer still reads what we write.
#[derive(Debug, Default)]
pub struct WriteSide {
    /// The peer reset the connection or shut its reading side: writes are discarded.
    gone: bool,
}

impl WriteSide {
    /// Filters a write's result: once the peer stopped reading, `len` bytes are "written".
    pub fn filter(
        &mut self,
        len: usize,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Err(e)) if stopped_reading(&e) => {
                tracing::debug!(error = %e, "upstream stopped reading; keeping its response");
                self.gone = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }

    /// True once writes are being discarded (nothing is to be written, flushed or shut).
    pub fn gone(&self) -> bool {
        self.gone
    }
}

/// The errors that mean the peer will read nothing more.
fn stopped_reading(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_write_is_discarded_and_so_are_later_ones() {
        let mut side = WriteSide::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            side.filter(7, Poll::Ready(Err(reset))),
            Poll::Ready(Ok(7))
        ));
        assert!(side.gone());
        let other = io::Error::from(io::ErrorKind::TimedOut);
        assert!(matches!(
            side.filter(3, Poll::Ready(Err(other))),
            Poll::Ready(Err(_))
        ));
    }
}
