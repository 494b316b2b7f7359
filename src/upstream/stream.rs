//! The connection the pooled client and health checks talk over: plain TCP or TLS over TCP.
//!
//! One enum rather than a boxed trait object keeps the hot path free of dynamic dispatch and lets
//! hyper-util ask the TCP socket underneath for its `Connected` metadata either way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::early_response::WriteSide;

/// A connection to an upstream server.
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    /// Plain TCP to a parent or sibling cache: requests on it go in absolute-form.
    Peer(TcpStream),
    /// Boxed: a TLS session is far larger than a socket.
    Tls(Box<TlsStream<TcpStream>>),
    /// TLS to a parent or sibling cache (`[[peer]] tls = true`): absolute-form, like `Peer`.
    PeerTls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(tcp) => tcp.connected(),
            // hyper-util sends absolute-form URIs on connections marked as proxied.
            Self::Peer(tcp) => tcp.connected().proxy(true),
            Self::Tls(tls) => tls.get_ref().0.connected(),
            Self::PeerTls(tls) => tls.get_ref().0.connected().proxy(true),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) | Self::Peer(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) | Self::PeerTls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) | Self::Peer(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) | Self::PeerTls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) | Self::Peer(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) | Self::PeerTls(tls) => {
                Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) | Self::Peer(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) | Self::PeerTls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) | Self::Peer(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) | Self::PeerTls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) | Self::Peer(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) | Self::PeerTls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Upstream connections open now, across the process (for metrics). Changed only when a
/// connection opens or closes, never per request.
static OPEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Upstream connections (pooled or in use) open now.
pub fn open_connections() -> u64 {
    OPEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// An [`UpstreamStream`] counted in [`open_connections`] while it exists; its response stays
/// readable after the peer stopped reading our request (`early_response`).
#[derive(Debug)]
pub struct Counted(UpstreamStream, WriteSide);

impl Counted {
    pub fn new(stream: UpstreamStream) -> Self {
        OPEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(stream, WriteSide::default())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.1.gone() {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut this.0).poll_write(cx, buf);
        this.1.filter(buf.len(), result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.1.gone() {
            return Poll::Ready(Ok(len));
        }
        let result = Pin::new(&mut this.0).poll_write_vectored(cx, bufs);
        this.1.filter(len, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.1.gone() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.1.gone() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
