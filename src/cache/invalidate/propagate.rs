//! Purge propagation: a purge applied here is forwarded to the admin listeners of other caches
//! (parents, siblings, cluster members: `cache.purge_propagate`), each applying it once.
//!
//! Every forwarded purge carries `Cuttle-Purge-Hop`, the `Cache-Status` names (RFC 9211 §2,
//! `cache.status_name`) of the caches that have applied it so far. A cache finding its own name
//! there does nothing (the purge went round a loop); else it applies the purge, adds its name
//! and forwards it to its own peers. So a purge reaches each cache of a connected hierarchy at
//! most once per path and never loops, as long as each cache has its own name.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Purge, Target};

/// The hop marker: names of the caches that applied this purge, in order.
pub const HOP: &str = "cuttle-purge-hop";

/// How long one peer may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The names in a request's hop marker.
pub fn hops(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(HOP)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The admin query that asks a peer for `purge` (`url=`, `tag=`, `prefix=`, `regex=`, `soft=1`).
pub fn query(purge: &Purge) -> String {
    let mut q = String::new();
    let mut push = |name: &str, value: &str| {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(name);
        q.push('=');
        q.push_str(&encode(value));
    };
    match &purge.target {
        Target::Url(url) => push("url", url),
        Target::Tags(tags) => tags.iter().for_each(|t| push("tag", t)),
        Target::Prefix(p) => push("prefix", p),
        Target::Regex(r) => push("regex", r.as_str()),
    }
    if purge.soft {
        push("soft", "1");
    }
    q
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One peer's answer.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub peer: String,
    /// The HTTP status, or why there was none.
    pub result: Result<u16, String>,
}

/// Forwards `purge` to every peer with `hops` (which already ends with our name); waits for
/// their answers (each bounded by a timeout) and logs them.
pub async fn forward(peers: &[String], purge: &Purge, hops: &[String]) -> Vec<Forwarded> {
    forward_with(peers, purge, hops, None).await
}

/// [`forward`], each request also carrying the field `extra` (the cluster hop marker of a
/// purge sent to the other cluster members, so they do not send it on to the cluster).
pub async fn forward_with(
    peers: &[String],
    purge: &Purge,
    hops: &[String],
    extra: Option<(&'static str, String)>,
) -> Vec<Forwarded> {
    let path = format!("/purge?{}", query(purge));
    let marker = hops.join(", ");
    let mut tasks = tokio::task::JoinSet::new();
    for peer in peers {
        let (peer, path, marker, extra) =
            (peer.clone(), path.clone(), marker.clone(), extra.clone());
        tasks.spawn(async move {
            let result = tokio::time::timeout(TIMEOUT, send(&peer, &path, &marker, extra))
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            match &result {
                Ok(status) => tracing::info!(%peer, status, "purge forwarded"),
                Err(e) => tracing::warn!(%peer, error = %e, "purge not forwarded"),
            }
            Forwarded { peer, result }
        });
    }
    let mut out = Vec::with_capacity(peers.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(f) = done {
            out.push(f);
        }
    }
    out
}

/// `POST path` to `peer`'s admin listener.
async fn send(
    peer: &str,
    path: &str,
    marker: &str,
    extra: Option<(&'static str, String)>,
) -> Result<u16, String> {
    let stream = TcpStream::connect(peer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = Request::post(path)
        .header(http::header::HOST, peer)
        .header(HOP, marker);
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    // Read the (small) answer so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_every_target() {
        let purge = Purge {
            target: Target::Url("http://a/b?c=d e".into()),
            soft: true,
        };
        assert_eq!(query(&purge), "url=http%3A%2F%2Fa%2Fb%3Fc%3Dd%20e&soft=1");
        let purge = Purge {
            target: Target::Tags(vec!["x".into(), "y".into()]),
            soft: false,
        };
        assert_eq!(query(&purge), "tag=x&tag=y");
    }

    #[test]
    fn reads_the_hop_marker() {
        let mut headers = HeaderMap::new();
        headers.append(HOP, "child, parent".parse().unwrap());
        headers.append(HOP, "other".parse().unwrap());
        assert_eq!(hops(&headers), ["child", "parent", "other"]);
    }
}
