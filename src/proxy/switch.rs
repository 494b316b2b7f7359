//! A client connection switched to another protocol after its response head (a CONNECT
//! tunnel, an `Upgrade`, a bumped TLS session), whichever server accepted it: hyper's HTTP/2
//! server (`hyper::upgrade`) or our HTTP/1 server (`h1::OnUpgrade`). `tunnel`, `upgrade` and
//! `bump` wait on [`on`] and relay over [`Switched`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::h1;
use crate::error::BoxError;

/// The promise of a request's connection after the switch.
#[derive(Debug)]
pub enum OnSwitch {
    Hyper(hyper::upgrade::OnUpgrade),
    H1(Option<oneshot::Receiver<h1::Upgraded>>),
}

/// Takes the switch promise out of `req` (the first call gets it).
pub fn on<B>(req: &mut Request<B>) -> OnSwitch {
    if let Some(ours) = req.extensions_mut().remove::<h1::OnUpgrade>() {
        return OnSwitch::H1(ours.take());
    }
    OnSwitch::Hyper(hyper::upgrade::on(req))
}

/// Takes the switch promise out of a request's `extensions`, if the server left one.
pub fn take(extensions: &mut http::Extensions) -> Option<OnSwitch> {
    if let Some(ours) = extensions.remove::<h1::OnUpgrade>() {
        return Some(OnSwitch::H1(ours.take()));
    }
    extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .map(OnSwitch::Hyper)
}

/// The switch did not happen (the connection closed first, or the response was not one that
/// switches).
#[derive(Debug, thiserror::Error)]
#[error("the client connection was not switched: {0}")]
pub struct NotSwitched(BoxError);

impl Future for OnSwitch {
    type Output = Result<Switched, NotSwitched>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Hyper(on) => Pin::new(on)
                .poll(cx)
                .map_ok(|upgraded| Switched::Hyper(TokioIo::new(upgraded)))
                .map_err(|e| NotSwitched(e.into())),
            Self::H1(None) => Poll::Ready(Err(NotSwitched("no connection to switch".into()))),
            Self::H1(Some(rx)) => Pin::new(rx)
                .poll(cx)
                .map_ok(Switched::H1)
                .map_err(|e| NotSwitched(e.into())),
        }
    }
}

/// A switched client connection.
#[derive(Debug)]
pub enum Switched {
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
    H1(h1::Upgraded),
}

impl AsyncRead for Switched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hyper(io) => Pin::new(io).poll_read(cx, buf),
            Self::H1(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Switched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Hyper(io) => Pin::new(io).poll_write(cx, buf),
            Self::H1(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Hyper(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::H1(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Hyper(io) => io.is_write_vectored(),
            Self::H1(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hyper(io) => Pin::new(io).poll_flush(cx),
            Self::H1(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hyper(io) => Pin::new(io).poll_shutdown(cx),
            Self::H1(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
