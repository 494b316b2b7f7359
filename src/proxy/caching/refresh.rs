//! The background refresh behind stale-while-revalidate (RFC 5861 §3): one conditional
//! request per key while clients are served the stale copy. Its answer goes through the same
//! steps as a foreground revalidation's (`validation::answer`) and a new response through the
//! same storage pipeline (`admit`), so a `proxy_only` peer's answer, an unreusable response or
//! a 5xx never replaces the stored one here either.

use std::sync::Arc;

use http::Method;

use super::admit::{admit, Admission, StoreRequest};
use super::exchange::Exchange;
use super::validation::{answer, freshened, Answer};
use crate::cache::collapse::Outcome;
use crate::cache::decision::Found;
use crate::cache::fill;
use crate::cache::policy::conditional_request_headers;
use crate::proxy::body::Prefixed;
use crate::proxy::next_hop::{send, Outgoing, Upstreamed};

/// Starts one background revalidation of `found` (one per key: none if a fetch of `primary`
/// is already under way).
pub(super) fn spawn_refresh(ex: &Exchange<'_>, primary: &str, found: &Found) {
    let cache = &ex.shared.cache;
    let Some(leader) = cache.collapser.try_lead(primary) else {
        return;
    };
    let shared = Arc::clone(ex.shared);
    let stored = found.hit.head.headers.to_map();
    let mut headers = ex.headers_for_store();
    for (name, value) in &conditional_request_headers(&stored, found.hit.head.response_time) {
        headers.insert(name.clone(), value.clone());
    }
    let out = Box::new(Outgoing {
        method: Method::GET,
        uri: ex.parts.uri.clone(),
        version: ex.parts.version,
        headers,
        body: None,
        client: ex.conn.peer.ip(),
        target: ex.target.clone(),
    });
    let request_headers = ex.parts.headers.clone();
    let directives = ex.request.clone();
    let head = Arc::clone(&found.hit.head);
    let (primary, key, url) = (
        primary.to_owned(),
        found.key(primary).to_owned(),
        ex.url.clone(),
    );
    tokio::spawn(async move {
        let request_time = shared.clock.now();
        let ticket = shared.cache.ticket(&primary);
        // Dropping the leader (any early return) tells waiters nothing was stored.
        let Ok(up) = send(&shared, out).await else {
            return;
        };
        let cache = &shared.cache;
        match answer(&up, &stored, shared.clock.now()) {
            Answer::NotModified => {
                let fresh = freshened(&shared, &head, &up.parts.headers, request_time);
                cache.store.update_head(&key, fresh).await;
                leader.finish(Outcome::Stored);
                return;
            }
            // The stored response stays: it is what a foreground revalidation would serve.
            Answer::UnrelatedNotModified | Answer::ServerError => {
                tracing::debug!(
                    url,
                    status = up.parts.status.as_u16(),
                    "cache: background refresh kept the stored response"
                );
                return;
            }
            Answer::Modified => {}
        }
        let request = StoreRequest {
            method: &Method::GET,
            headers: &request_headers,
            directives: &directives,
            url: &url,
            primary: &primary,
            had_variants: key != primary,
            request_time,
        };
        let admitted = match admit(&shared, &request, &up).await {
            Admission::Store(admitted) => admitted,
            Admission::Pass(reason) => {
                tracing::debug!(url, reason, "cache: background refresh not stored");
                return;
            }
        };
        let (sink, task) = admitted.start_fill(Some(leader), ticket);
        let Upstreamed { first, body, .. } = *up;
        fill::drain(
            Prefixed::new(first, body),
            sink,
            task,
            shared.upstream.read_timeout(),
        )
        .await;
    });
}
