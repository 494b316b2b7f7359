//! Handing a client connection over after a `101` or a `2xx` to CONNECT (RFC 9110 §7.8,
//! §9.3.6): the service finds an [`OnUpgrade`] in its request's extensions, and once the
//! response head is on the wire the connection loop sends it the socket, with any bytes the
//! client already sent past the head.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::super::request::InnerStream;

/// The client's connection after the switch.
pub struct Upgraded {
    io: Box<dyn InnerStream>,
    /// Read past the request head before the switch; served before the socket.
    rest: Bytes,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("buffered", &self.rest.len())
            .finish_non_exhaustive()
    }
}

/// The promise of a request's connection, in its extensions (cloneable, as extensions must
/// be; the first taker gets it).
#[derive(Debug, Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The receiver the connection will send the socket on; `None` once taken.
    pub fn take(&self) -> Option<oneshot::Receiver<Upgraded>> {
        self.0.lock().ok().and_then(|mut r| r.take())
    }
}

/// The connection loop's end of an [`OnUpgrade`].
pub(super) struct Handover(oneshot::Sender<Upgraded>);

impl Handover {
    /// Sends the socket; when nobody waits for it any more, it is dropped (closed).
    pub(super) fn send(self, io: Box<dyn InnerStream>, rest: Bytes) {
        let _ = self.0.send(Upgraded { io, rest });
    }
}

/// A handover and the promise it fulfils.
pub(super) fn pair() -> (Handover, OnUpgrade) {
    let (tx, rx) = oneshot::channel();
    (Handover(tx), OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(buf.remaining());
            buf.put_slice(&self.rest[..n]);
            self.rest.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
