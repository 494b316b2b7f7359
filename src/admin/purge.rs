//! `POST /purge`: purges by URL, tag, prefix or regex, hard or soft, from the admin listener
//! (guarded by `[admin] access` like every admin route), answering with the entries affected.
//!
//! ```text
//! POST /purge?url=http://site/page            every variant of one URL
//! POST /purge?tag=product-42&tag=home         every entry tagged with any of these
//! POST /purge?prefix=http://site/img/         a ban: every entry whose URL starts so
//! POST /purge?regex=^http://site/.*\.css$     a ban: every entry whose URL matches
//!      ...&soft=1                             mark stale (revalidate) instead of removing
//! ```
//! A purge is forwarded to `cache.purge_propagate` (see `cache::invalidate::propagate`). In a
//! cluster it is also sent, once, to the admin listener of every other member (`[[cluster.
//! member]] admin`, by default the member's host with our admin port), marked with the
//! cluster hop (`Cuttle-Cluster-Hop`) so that they apply it without sending it round the
//! cluster again: one purge at any member reaches the owner and every hot copy.

use http::{Method, StatusCode};
use serde_json::json;

use super::inspect::percent_decode;
use super::routes::{json, text, AdminBody};
use super::State;
use crate::cache::invalidate::{propagate, Purge, Target};
use crate::cache::key::primary_key;

const USAGE: &str = "usage: POST /purge?url=URL | tag=TAG[&tag=TAG...] | prefix=URL-PREFIX | regex=REGEX, optionally &soft=1 (values URL-encoded)\n";

/// Longest regex source accepted (the compiled size is bounded by the regex crate).
const MAX_REGEX: usize = 4096;

/// Answers `/purge`.
pub async fn handle(
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    state: &State,
) -> http::Response<AdminBody> {
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, USAGE);
        response.headers_mut().insert(
            http::header::ALLOW,
            http::header::HeaderValue::from_static("POST"),
        );
        return response;
    }
    let purge = match parse(uri.query().unwrap_or("")) {
        Ok(purge) => purge,
        Err(reason) => return text(StatusCode::BAD_REQUEST, format!("{reason}\n{USAGE}")),
    };
    let Some(sources) = state.sources() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not running\n");
    };
    let hops = propagate::hops(headers);
    let from_member = headers.contains_key(crate::upstream::cluster::HOP);
    // Members sharing one file share `status_name`: in a cluster the member name marks the
    // purge as applied here too.
    let member = sources.cluster.as_ref().map(|c| c.self_name());
    let seen = member.is_some_and(|me| hops.iter().any(|h| h == me));
    let applied = if seen {
        None
    } else {
        sources
            .cache
            .purge_and_propagate(&purge, hops.clone())
            .await
    };
    let Some((purged, forwarded)) = applied else {
        return json(
            StatusCode::OK,
            &json!({ "purged": 0, "already_applied": true }),
        );
    };
    let members = match (&sources.cluster, from_member) {
        (Some(cluster), false) => to_members(cluster, state.local_addr(), &purge, hops).await,
        _ => Vec::new(),
    };
    let members: Vec<_> = members
        .iter()
        .map(|f| match &f.result {
            Ok(status) => json!({ "member": f.peer, "status": status }),
            Err(e) => json!({ "member": f.peer, "error": e }),
        })
        .collect();
    let peers: Vec<_> = forwarded
        .iter()
        .map(|f| match &f.result {
            Ok(status) => json!({ "peer": f.peer, "status": status }),
            Err(e) => json!({ "peer": f.peer, "error": e }),
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "purged": purged.entries,
            "ban": purged.banned,
            "soft": purge.soft,
            "target": purge.target.describe(),
            "propagated": peers,
            "cluster": members,
        }),
    )
}

/// Sends `purge` to the admin listener of every other cluster member, marked with the cluster
/// hop and the purge hops so far plus our member name (so that a member's `purge_propagate`
/// leading back here does not apply it twice); their answers, named by member.
async fn to_members(
    cluster: &crate::upstream::cluster::Cluster,
    local: Option<std::net::SocketAddr>,
    purge: &Purge,
    mut hops: Vec<String>,
) -> Vec<propagate::Forwarded> {
    let mut names = std::collections::HashMap::new();
    for (_, member) in cluster.others() {
        let address = match (&member.admin, local) {
            (Some(admin), _) => admin.clone(),
            (None, Some(local)) if member.host.contains(':') => {
                format!("[{}]:{}", member.host, local.port())
            }
            (None, Some(local)) => format!("{}:{}", member.host, local.port()),
            (None, None) => continue,
        };
        if local.is_some_and(|l| l.to_string() == address) {
            // A member on our host without its own `admin`: the default would be us.
            continue;
        }
        names.insert(address, member.name.clone());
    }
    if names.is_empty() {
        return Vec::new();
    }
    hops.push(cluster.self_name().to_owned());
    let addresses: Vec<String> = names.keys().cloned().collect();
    let marker = (
        crate::upstream::cluster::HOP,
        cluster.self_name().to_owned(),
    );
    let mut answers = propagate::forward_with(&addresses, purge, &hops, Some(marker)).await;
    for answer in &mut answers {
        if let Some(name) = names.get(&answer.peer) {
            answer.peer = name.clone();
        }
    }
    answers.sort_by(|a, b| a.peer.cmp(&b.peer));
    answers
}

/// The purge a query names: exactly one kind of target.
fn parse(query: &str) -> Result<Purge, String> {
    let mut url = None;
    let mut prefix = None;
    let mut regex = None;
    let mut tags = Vec::new();
    let mut soft = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "url" => url = Some(value),
            "prefix" => prefix = Some(value),
            "regex" => regex = Some(value),
            "tag" => tags
                .extend(crate::cache::invalidate::tags::split(value.as_bytes()).map(str::to_owned)),
            "soft" => soft = matches!(value.as_str(), "1" | "true" | "yes" | "on"),
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    let kinds = usize::from(url.is_some())
        + usize::from(prefix.is_some())
        + usize::from(regex.is_some())
        + usize::from(!tags.is_empty());
    if kinds != 1 {
        return Err("name exactly one of url=, tag=, prefix=, regex=".to_owned());
    }
    let target = if let Some(url) = url {
        let primary = url
            .parse::<http::Uri>()
            .ok()
            .as_ref()
            .and_then(primary_key)
            .ok_or_else(|| format!("url: `{url}` is not an absolute http(s) URL"))?;
        Target::Url(primary)
    } else if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix: empty (a ban of everything must say prefix=http)".to_owned());
        }
        Target::Prefix(prefix)
    } else if let Some(source) = regex {
        if source.len() > MAX_REGEX {
            return Err(format!("regex: longer than {MAX_REGEX} bytes"));
        }
        let regex = regex::Regex::new(&source).map_err(|e| format!("regex: {e}"))?;
        Target::Regex(regex)
    } else {
        Target::Tags(tags)
    };
    Ok(Purge { target, soft })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_target() {
        let p = parse("url=http%3A%2F%2Fa%2Fb&soft=1").unwrap();
        assert!(matches!(&p.target, Target::Url(u) if u.starts_with("http://a")));
        assert!(p.soft);
        let p = parse("tag=x&tag=y%20z").unwrap();
        assert!(matches!(&p.target, Target::Tags(t) if t == &["x", "y", "z"]));
        assert!(!p.soft);
        assert!(matches!(
            parse("prefix=http://a/").unwrap().target,
            Target::Prefix(_)
        ));
        assert!(matches!(
            parse("regex=%5Ehttp").unwrap().target,
            Target::Regex(_)
        ));
    }

    #[test]
    fn refuses_ambiguous_or_bad_queries() {
        assert!(parse("").is_err());
        assert!(parse("url=http://a/&tag=x").is_err());
        assert!(parse("url=/relative").is_err());
        assert!(parse("regex=(").is_err());
        assert!(parse("prefix=").is_err());
        assert!(parse("bogus=1").is_err());
    }
}
