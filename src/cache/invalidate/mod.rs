//! Invalidation: purges by URL, by tag (surrogate key) and by ban, hard or soft.
//!
//! - `index`: which keys each URL and each tag has, and when each was stored (kept in step by
//!   the store), so a purge touches only its own entries;
//! - `tags`: reading surrogate keys from response and PURGE fields;
//! - `bans`: prefix and regex bans, checked lazily at lookup and applied by a background lurker;
//! - `ban_journal`: the bans still pending, kept beside the disk tier across a restart;
//! - `soft`: the stale mark a soft purge leaves, which makes the next request revalidate;
//! - `propagate`: forwarding a purge to other caches, once each;
//! - (`cache::purging` holds `lookup::Cache`'s purge methods, tying these together.)
//!
//! ```text
//! Purge { target: Url | Tags | Prefix | Regex, soft }
//!   ├ Url, Tags ─▶ index ─▶ keys ─▶ remove (or mark stale) in both tiers ─▶ count
//!   └ Prefix, Regex ─▶ ban list (returns at once) ─▶ lurker: index ─▶ older matching keys
//!                          └ lookup: an older matching entry is treated as purged meanwhile
//! ```

pub mod ban_journal;
pub mod bans;
pub mod index;
pub mod propagate;
pub mod soft;
pub mod tags;

use std::sync::Arc;

/// What a purge names.
#[derive(Debug, Clone)]
pub enum Target {
    /// One URL's primary key (every variant stored for it).
    Url(String),
    /// Every entry carrying any of these tags.
    Tags(Vec<String>),
    /// Every entry whose URL starts with this (a ban).
    Prefix(String),
    /// Every entry whose URL matches (a ban).
    Regex(regex::Regex),
}

impl Target {
    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            Target::Url(url) => format!("url {url}"),
            Target::Tags(tags) => format!("tag {}", tags.join(" ")),
            Target::Prefix(p) => format!("prefix {p}"),
            Target::Regex(r) => format!("regex {}", r.as_str()),
        }
    }
}

/// One purge request.
#[derive(Debug, Clone)]
pub struct Purge {
    pub target: Target,
    /// Mark stale (revalidate next time) instead of removing.
    pub soft: bool,
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Entries removed or marked stale now (for a ban: none yet, its lurker applies it).
    pub entries: usize,
    /// A ban was added; entries are purged lazily and by a background lurker.
    pub banned: bool,
}

/// The field a PURGE request asks for a soft purge with (`Cuttle-Purge: soft`).
pub const PURGE_MODE: &str = "cuttle-purge";

/// The purge a `PURGE` request asks for: the tags in its tag fields when it has any
/// (`Surrogate-Key: a b`), else every variant of its URL (`primary`); soft with
/// `Cuttle-Purge: soft`.
pub fn from_purge_request(
    primary: String,
    headers: &http::HeaderMap,
    tag_fields: &[http::HeaderName],
) -> Purge {
    let soft = headers.get_all(PURGE_MODE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("soft")))
    });
    let tags = tags::of_request(headers, tag_fields);
    let target = if tags.is_empty() {
        Target::Url(primary)
    } else {
        Target::Tags(tags)
    };
    Purge { target, soft }
}

/// Removes from a response about to be sent what only this cache should see: the soft-purge
/// mark and, unless `cache.strip_tag_fields = false`, the tag fields.
pub fn strip_for_client(headers: &mut http::HeaderMap, behaviour: &crate::cache::Behaviour) {
    // One pass over the names (comparisons, no hashing) finds whether there is anything to
    // remove; most responses carry none of these, and each removal by name hashes it.
    if !headers
        .keys()
        .any(|name| stripped_for_client(name, behaviour))
    {
        return;
    }
    soft::unmark(headers);
    if behaviour.strip_tag_fields {
        for name in &behaviour.tag_fields {
            headers.remove(name);
        }
    }
}

/// True for a stored field [`strip_for_client`] would remove, so a hit can leave it out of
/// the head it builds instead of removing it afterwards.
#[inline]
pub fn stripped_for_client(name: &http::HeaderName, behaviour: &crate::cache::Behaviour) -> bool {
    *name == soft::MARK_NAME
        || (behaviour.strip_tag_fields && behaviour.tag_fields.iter().any(|tag| tag == name))
}

/// The shared invalidation state a cache handle carries besides its store.
pub(crate) fn new_bans() -> Arc<bans::Bans> {
    Arc::new(bans::Bans::default())
}
