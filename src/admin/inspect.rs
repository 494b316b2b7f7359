//! `GET /cache?url=URL`: what is stored for a URL and what the cache would do with it now.
//!
//! For every stored variant (one, or one per `Vary` combination) it shows the tier(s), the
//! stored status and fields, the age and freshness lifetime, and the verdict for a plain
//! request arriving now, worked out by the cache's own policy functions
//! (`Cache::evaluate`, RFC 9111 §4.2 and §4, RFC 5861): `serve` (fresh), `serve-stale`
//! (stale-while-revalidate), or `revalidate` with the reason. Nothing stored means `fetch`.
//! JSON by default; `?format=text` or `Accept: text/plain` gives a readable text form.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{header, Response, StatusCode};
use serde_json::{json, Value};

use super::routes::{json as json_response, text, AdminBody};
use super::State;
use crate::cache::lookup::VARY_RECORD;
use crate::cache::meta::StoredHead;
use crate::cache::policy::{RequestDirectives, Reuse};
use crate::cache::store::Tier;

/// Answers `/cache?url=...`.
pub async fn handle(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    state: &State,
) -> Response<AdminBody> {
    let query = uri.query().unwrap_or("");
    let mut url = None;
    let mut as_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/plain"));
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "url" => url = Some(percent_decode(value)),
            "format" => as_text = value == "text",
            _ => {}
        }
    }
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: /cache?url=http://host/path (URL-encoded), optionally &format=text\n",
        );
    };
    let Some(sources) = state.sources() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not running\n");
    };
    let cache = &sources.cache;
    let Some(primary) = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| cache.primary_key(&uri))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("`{url}` is not an absolute http(s) URL\n"),
        );
    };
    let now = sources.clock.now();
    let mut variants = Vec::new();
    let top = cache.store.peek(&primary);
    let vary = top.iter().find_map(|(_, head)| {
        head.headers
            .get(VARY_RECORD)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    });
    let keys: Vec<String> = if vary.is_some() {
        cache.store.keys_with_prefix(&format!("{primary}\n"))
    } else {
        vec![primary.clone()]
    };
    for key in keys {
        let found = if key == primary {
            top.clone()
        } else {
            cache.store.peek(&key)
        };
        let Some((_, head)) = found.first() else {
            continue;
        };
        let tiers: Vec<&str> = found.iter().map(|(t, _)| t.as_str()).collect();
        variants.push(variant(&key, &primary, head, &tiers, cache, &url, now));
    }
    let verdict = if variants.is_empty() {
        "fetch: nothing is stored for this URL (a request now is a miss)"
    } else {
        "see each variant"
    };
    let doc = json!({
        "url": url,
        "key": primary,
        "vary": vary,
        "variants": variants,
        "verdict": verdict,
    });
    if as_text {
        text(StatusCode::OK, render_text(&doc))
    } else {
        json_response(StatusCode::OK, &doc)
    }
}

/// One stored variant with its verdict for a plain request now.
fn variant(
    key: &str,
    primary: &str,
    head: &Arc<StoredHead>,
    tiers: &[&str],
    cache: &crate::cache::lookup::Cache,
    url: &str,
    now: std::time::SystemTime,
) -> Value {
    let eval = cache.evaluate(head, &RequestDirectives::default(), url, now);
    let (action, reason) = match eval.reuse {
        Reuse::Fresh { ttl_secs } => ("serve", format!("fresh for {ttl_secs} more seconds")),
        Reuse::StaleWhileRevalidate { staleness } => (
            "serve-stale",
            format!("stale by {staleness}s; stale-while-revalidate allows serving it while one request refreshes it"),
        ),
        Reuse::StaleAllowedByClient => ("serve-stale", "the request's max-stale allows it".to_owned()),
        Reuse::MustRevalidate { reason } => {
            let has_validator = head.headers.contains_key(&header::ETAG)
                || head.headers.contains_key(&header::LAST_MODIFIED);
            let how = if has_validator {
                "a conditional request (304 keeps it)"
            } else {
                "a full request (no validator is stored)"
            };
            ("revalidate", format!("{}: needs {how}", reason.as_str()))
        }
    };
    let fields: Vec<Value> = head
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != VARY_RECORD)
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let secondary = key
        .strip_prefix(primary)
        .map(|s| s.trim_start_matches('\n'))
        .filter(|s| !s.is_empty());
    json!({
        "key": key,
        "secondary_key": secondary,
        "tiers": tiers,
        "tier": tiers.first().copied().unwrap_or(Tier::Memory.as_str()),
        "status": head.status.as_u16(),
        "headers": fields,
        "body_bytes": head.body_len,
        "age_seconds": eval.age,
        "freshness_lifetime_seconds": eval.lifetime.secs,
        "heuristic_lifetime": eval.lifetime.heuristic,
        "ttl_seconds": eval.ttl(),
        "stale_while_revalidate": eval.response.stale_while_revalidate,
        "stale_if_error": eval.response.stale_if_error,
        "verdict": action,
        "phase": crate::cache::phase::Phase::for_reuse(&eval.reuse).as_str(),
        "reason": reason,
    })
}

/// The JSON document as aligned text lines.
fn render_text(doc: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let _ = writeln!(out, "url:      {}", s(&doc["url"]));
    let _ = writeln!(out, "key:      {}", s(&doc["key"]));
    if !doc["vary"].is_null() {
        let _ = writeln!(out, "vary:     {}", s(&doc["vary"]));
    }
    let variants = doc["variants"].as_array().cloned().unwrap_or_default();
    if variants.is_empty() {
        let _ = writeln!(out, "verdict:  {}", s(&doc["verdict"]));
    }
    for (i, v) in variants.iter().enumerate() {
        let _ = writeln!(out, "\nvariant {}:", i + 1);
        if !v["secondary_key"].is_null() {
            let _ = writeln!(out, "  vary key:  {}", s(&v["secondary_key"]));
        }
        let tiers: Vec<String> = v["tiers"]
            .as_array()
            .map(|t| t.iter().map(s).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "  tier:      {}", tiers.join(", "));
        let _ = writeln!(out, "  status:    {}", v["status"]);
        let _ = writeln!(out, "  age:       {}s", v["age_seconds"]);
        let heuristic = if v["heuristic_lifetime"].as_bool() == Some(true) {
            " (heuristic)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  lifetime:  {}s{heuristic}",
            v["freshness_lifetime_seconds"]
        );
        let _ = writeln!(
            out,
            "  verdict:   {} ({})",
            s(&v["verdict"]),
            s(&v["reason"])
        );
        let _ = writeln!(out, "  head:");
        for field in v["headers"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    {}: {}", s(&field[0]), s(&field[1]));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (as a space) in a query value.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            percent_decode("http%3A%2F%2Fa%2Fb%3Fc%3Dd"),
            "http://a/b?c=d"
        );
        assert_eq!(percent_decode("a+b%zz"), "a b%zz");
    }
}
