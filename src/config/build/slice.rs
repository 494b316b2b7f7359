//! `[[cache.slice]]` rules into `cache::slice::SliceRule`s: a match (URL regex and/or site)
//! and a block size the stores can hold.

use super::{Ctx, Seg};
use crate::cache::slice::{SiteMatch, SliceRule, MAX_BLOCK, MIN_BLOCK};
use crate::config::file::SliceRule as RawRule;

/// Builds the slice rules; `max_object` is the largest object either tier takes.
pub(super) fn build_slices(
    cx: &Ctx<'_>,
    raw: &[RawRule],
    max_object: u64,
) -> Result<Vec<SliceRule>, super::ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, rule) in raw.iter().enumerate() {
        let at = |key| {
            [
                Seg::Key("cache"),
                Seg::Key("slice"),
                Seg::Index(i),
                Seg::Key(key),
            ]
        };
        let size = rule.size.as_u64();
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&size) {
            return Err(cx.err(
                &at("size"),
                format!(
                    "must be between {} KiB and {} MiB (expected e.g. size = \"1 MiB\")",
                    MIN_BLOCK >> 10,
                    MAX_BLOCK >> 20
                ),
            ));
        }
        if size > max_object {
            return Err(cx.err(
                &at("size"),
                "is larger than the max_object_size of both cache tiers: no block could be \
                 stored (expected e.g. size = \"1 MiB\")",
            ));
        }
        let url_regex = match &rule.url_regex {
            Some(text) => Some(
                regex::RegexBuilder::new(text)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        cx.err(
                            &at("url_regex"),
                            format!("invalid regex: {e}; expected e.g. \"\\\\.iso$\""),
                        )
                    })?,
            ),
            None => None,
        };
        let site = match &rule.site {
            Some(text) => Some(SiteMatch::parse(text).ok_or_else(|| {
                cx.err(
                    &at("site"),
                    format!(
                        "`{text}` is not a host name (expected e.g. \"dl.example.com\" or \
                         \"*.example.com\")"
                    ),
                )
            })?),
            None => None,
        };
        if url_regex.is_none() && site.is_none() {
            return Err(cx.err(
                &[Seg::Key("cache"), Seg::Key("slice"), Seg::Index(i)],
                "the rule matches nothing: give url_regex and/or site (expected e.g. \
                 site = \"dl.example.com\")",
            ));
        }
        rules.push(SliceRule {
            url_regex,
            site,
            size,
        });
    }
    Ok(rules)
}
