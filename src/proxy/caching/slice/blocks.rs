//! The blocks of a sliced object: fetching one with a range request, keeping it as a stored
//! part, and producing a client body block by block, each block collapsed on its own.
//!
//! A block is fetched whole (it is at most `cache::slice::MAX_BLOCK`), stored, then its bytes
//! go to the client; blocks already stored are read from the store without copying. A block
//! is used only when its strong validator is the object record's (RFC 9111 §3.4): a block of
//! another representation met mid-way ends the response as aborted, never spliced in.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::super::pieces::{emit, Piece};
use crate::cache::collapse::{Joined, Leader, Outcome, Role};
use crate::cache::meta::StoredHead;
use crate::cache::parts::object_key;
use crate::cache::policy::partial::{
    block_range, blocks_for, range_header, response_content_range, strong_validator, ContentRange,
};
use crate::cache::policy::RequestDirectives;
use crate::cache::store::Hit;
use crate::error::{BoxError, Error, ErrorKind};
use crate::proxy::body::Prefixed;
use crate::proxy::next_hop::{send, Outgoing, Target, Upstreamed};
use crate::proxy::Shared;

/// Everything a block fetch needs, owned, so the producer task can outlive the exchange.
#[derive(Clone)]
pub(super) struct Blocks {
    pub shared: Arc<Shared>,
    pub primary: String,
    pub url: String,
    /// Block size.
    pub size: u64,
    pub uri: Uri,
    pub version: Version,
    /// The client's fields without Range, If-Range or validators (each fetch adds its own).
    pub headers: HeaderMap,
    pub directives: RequestDirectives,
    pub client: IpAddr,
    pub target: Target,
}

/// One block as the origin sent it.
pub(super) struct Block {
    pub parts: http::response::Parts,
    pub range: ContentRange,
    pub body: Bytes,
}

impl Blocks {
    /// The collapsing key of block `index` (independent of the object's length, which a cold
    /// request does not know yet).
    pub fn collapse_key(&self, index: u64) -> String {
        format!("{}\n\u{1}block {} {index}", self.primary, self.size)
    }

    /// The request fields asking for `start..=end`, plus `extra` (validators).
    pub fn headers_for(&self, start: u64, end: u64, extra: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        if let Ok(value) = HeaderValue::from_str(&range_header(start, end)) {
            headers.insert(header::RANGE, value);
        }
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    /// The byte range block `index` asks for: to its end when `complete` is known, else a
    /// full block (the origin clips it at the end, RFC 9110 §14.1.2).
    pub fn wanted(&self, index: u64, complete: Option<u64>) -> Option<(u64, u64)> {
        match complete {
            Some(len) => block_range(index, self.size, len),
            None => {
                let start = index.checked_mul(self.size)?;
                Some((start, start.saturating_add(self.size - 1)))
            }
        }
    }

    /// Reads a 206 answering `wanted` whole; None (and the response dropped) for any other
    /// answer. `wanted.1` may be past the end when the length was unknown.
    pub async fn read_block(
        &self,
        up: Box<Upstreamed>,
        wanted: (u64, u64),
    ) -> Result<Block, Error> {
        let range = response_content_range(&up.parts.headers)
            .filter(|_| up.parts.status == StatusCode::PARTIAL_CONTENT)
            .filter(|r| r.start == wanted.0 && r.end == wanted.1.min(r.complete - 1));
        let Some(range) = range else {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                "the origin did not answer a block's range request with that range",
            ));
        };
        let Upstreamed {
            parts, first, body, ..
        } = *up;
        let body = read_all(
            Prefixed::new(first, body),
            range.len(),
            self.shared.upstream.read_timeout(),
        )
        .await?;
        Ok(Block { parts, range, body })
    }

    /// The head to store a block under, if it may be stored (see `partial::part_head`).
    pub fn part_head(
        &self,
        block: &Block,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Option<StoredHead> {
        super::super::pieces::part_head(
            &self.shared,
            &super::super::pieces::PartRequest {
                url: &self.url,
                headers: &self.headers,
                directives: &self.directives,
            },
            &block.parts,
            block.range.len(),
            (request_time, response_time),
        )
    }

    /// Block `index` of the representation with `validator`, `complete` bytes long: stored,
    /// or fetched (one fetch per block however many requests want it) and stored.
    pub async fn obtain(&self, index: u64, complete: u64, validator: &str) -> Result<Piece, Error> {
        let cache = &self.shared.cache;
        let (start, end) = block_range(index, self.size, complete).ok_or_else(|| {
            Error::new(ErrorKind::InvalidResponse, "a block past the object's end")
        })?;
        if let Some(hit) = self.stored(start, end, validator).await {
            return Ok(Piece::Stored(hit));
        }
        let behaviour = &cache.behaviour;
        let mut leader: Option<Leader> = None;
        if behaviour.collapsed_forwarding {
            match cache.collapser.join(&self.collapse_key(index)) {
                Role::Leader(l) => leader = Some(l),
                Role::Waiter(waiter) => {
                    if matches!(
                        waiter
                            .wait(behaviour.collapsed_forwarding_timeout, false)
                            .await,
                        Joined::Stored
                    ) {
                        if let Some(hit) = self.stored(start, end, validator).await {
                            return Ok(Piece::Stored(hit));
                        }
                    }
                }
            }
        }
        let ticket = cache.ticket(&self.primary);
        let request_time = self.shared.clock.now();
        let out = Box::new(Outgoing {
            method: Method::GET,
            uri: self.uri.clone(),
            version: self.version,
            headers: self.headers_for(start, end, &HeaderMap::new()),
            body: None,
            client: self.client,
            target: self.target.clone(),
        });
        let up = send(&self.shared, out).await?;
        let block = self.read_block(up, (start, end)).await?;
        let now = self.shared.clock.now();
        if block.range.complete != complete
            || strong_validator(&block.parts.headers, now).as_deref() != Some(validator)
        {
            // RFC 9111 §3.4: parts combine only under one strong validator. The object
            // changed under us: forget its record, so the next request starts afresh.
            cache.store.remove(&object_key(&self.primary)).await;
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                "the object changed while its blocks were fetched",
            ));
        }
        let stored = match self.part_head(&block, request_time, now) {
            Some(head) => {
                cache
                    .store_part(&self.primary, head, (start, end), &block.body, ticket)
                    .await
            }
            None => false,
        };
        if let Some(leader) = leader {
            leader.finish(if stored {
                Outcome::Stored
            } else {
                Outcome::NotStored
            });
        }
        Ok(Piece::Fetched(block.body))
    }

    /// The stored part `start..=end` when it has `validator`.
    async fn stored(&self, start: u64, end: u64, validator: &str) -> Option<Hit> {
        let cache = &self.shared.cache;
        let hit = cache.part(&self.primary, start, end).await?;
        let now = self.shared.clock.now();
        (strong_validator(&hit.head.headers.to_map(), now).as_deref() == Some(validator))
            .then_some(hit)
    }

    /// Whether every block of `start..=end` is stored with `validator` (for `Cache-Status`,
    /// before any body byte), and the tier of the first.
    pub fn all_stored(
        &self,
        start: u64,
        end: u64,
        complete: u64,
        validator: &str,
    ) -> Option<crate::cache::store::Tier> {
        let now = self.shared.clock.now();
        let (first, last) = blocks_for(start, end, self.size);
        let mut tier = None;
        for index in first..=last {
            let (s, e) = block_range(index, self.size, complete)?;
            let key = crate::cache::parts::part_key(&self.primary, s, e);
            let found = self
                .shared
                .cache
                .store
                .peek(&key)
                .into_iter()
                .find(|(_, head)| {
                    strong_validator(&head.headers.to_map(), now).as_deref() == Some(validator)
                })?;
            tier.get_or_insert(found.0);
        }
        tier
    }
}

/// What the producer task sends: `start..=end` of an object of `complete` bytes.
pub(super) struct Produce {
    pub blocks: Blocks,
    pub validator: String,
    pub complete: u64,
    pub start: u64,
    pub end: u64,
    /// A block the foreground already fetched: its index and bytes.
    pub first: Option<(u64, Bytes)>,
}

/// Sends the bytes of `job` to `tx`, block by block; an error ends the response as aborted.
pub(super) async fn produce(job: Produce, tx: mpsc::Sender<Result<Bytes, BoxError>>) {
    let Produce {
        blocks,
        validator,
        complete,
        start,
        end,
        mut first,
    } = job;
    let (first_index, last_index) = blocks_for(start, end, blocks.size);
    for index in first_index..=last_index {
        let Some((block_start, block_end)) = block_range(index, blocks.size, complete) else {
            break;
        };
        let piece = match first.take() {
            Some((i, bytes)) if i == index => Piece::Fetched(bytes),
            other => {
                first = other;
                match blocks.obtain(index, complete, &validator).await {
                    Ok(piece) => piece,
                    Err(e) => {
                        tracing::debug!(url = %blocks.url, index, error = %e, "slice: block failed");
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        };
        let from = start.max(block_start) - block_start;
        let to = end.min(block_end) - block_start;
        if !emit(&tx, piece, from, to).await {
            return;
        }
    }
}

/// Reads a body of exactly `len` bytes, each frame within `read_timeout`.
async fn read_all(
    mut body: Prefixed,
    len: u64,
    read_timeout: std::time::Duration,
) -> Result<Bytes, Error> {
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    loop {
        let next = tokio::time::timeout(read_timeout, body.frame())
            .await
            .map_err(|_| Error::new(ErrorKind::ReadTimeout, "a block's body stalled"))?;
        match next {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if (buf.len() + data.len()) as u64 > len {
                        return Err(Error::new(
                            ErrorKind::InvalidResponse,
                            "a block is longer than its Content-Range",
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::InvalidResponse,
                    format!("a block's body failed: {e}"),
                ))
            }
            None => break,
        }
    }
    if buf.len() as u64 != len {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            "a block is shorter than its Content-Range",
        ));
    }
    Ok(buf.freeze())
}
