//! A byte range of another body: what a client that asked for a range of an object being
//! filled receives (issue 14: "a 206 with the requested bytes as soon as they arrive").
//!
//! The bytes before the range are read and dropped, the range is relayed, and once it is
//! complete the rest of the inner body (which carries the cache fill) is read to its end by a
//! task of its own: the client's response ends with its range, the fill ends with the object.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::ProxyBody;
use crate::error::BoxError;

/// The window over `inner`.
#[derive(Debug)]
pub(super) struct Window {
    /// `None` once handed to the task reading the rest.
    inner: Option<ProxyBody>,
    /// Bytes still to drop before the range.
    skip: u64,
    /// Bytes of the range still to send.
    remaining: u64,
}

impl Window {
    pub(super) fn new(inner: ProxyBody, skip: u64, len: u64) -> Self {
        Self {
            inner: Some(inner),
            skip,
            remaining: len,
        }
    }

    pub(super) fn remaining(&self) -> u64 {
        self.remaining
    }

    pub(super) fn is_end(&self) -> bool {
        self.remaining == 0
    }

    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.remaining == 0 {
                self.release();
                return Poll::Ready(None);
            }
            let Some(inner) = self.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err("the body ended before the range".into())))
                }
                Poll::Pending => return Poll::Pending,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if self.skip >= len {
                self.skip -= len;
                continue;
            }
            if self.skip > 0 {
                data = data.slice(usize::try_from(self.skip).unwrap_or(0)..);
                self.skip = 0;
            }
            if data.len() as u64 > self.remaining {
                data.truncate(usize::try_from(self.remaining).unwrap_or(data.len()));
            }
            self.remaining -= data.len() as u64;
            if self.remaining == 0 {
                self.release();
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    /// Hands the rest of the inner body to a task that reads it to its end.
    fn release(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            if !inner.is_end_stream() {
                tokio::spawn(async move { while let Some(Ok(_)) = inner.frame().await {} });
            }
        }
    }
}
