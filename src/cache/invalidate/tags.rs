//! Surrogate keys (tags): the origin names groups of responses in a response field, and one
//! purge by tag removes the whole group.
//!
//! Fastly and Varnish (xkey) read `Surrogate-Key`, space-separated; Cloudflare reads
//! `Cache-Tag`, comma-separated; Drupal sends `Cache-Tags` (space-separated), Symfony's
//! FOSHttpCache `X-Cache-Tags` and Magento `X-Magento-Tags` (comma-separated). A tag contains
//! neither, so every configured field is split on both. The fields stay in the stored head (so
//! the tag index is rebuilt from the disk tier at start) and are removed from what clients
//! receive unless configured otherwise.

use http::{HeaderMap, HeaderName};

use crate::cache::meta::StoredFields;

/// The fields read by default: `Surrogate-Key` (Fastly, Varnish) and `Cache-Tag` (Cloudflare).
pub fn default_fields() -> Vec<HeaderName> {
    vec![
        HeaderName::from_static("surrogate-key"),
        HeaderName::from_static("cache-tag"),
    ]
}

/// Longest tag kept; longer ones are ignored (a tag is an identifier, not content).
const MAX_TAG: usize = 256;
/// Most tags kept per response.
const MAX_TAGS: usize = 1024;

/// Splits one field value into tags.
pub fn split(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty() && t.len() <= MAX_TAG)
}

/// The tags a stored head carries in `fields`, deduplicated.
pub fn of_head(headers: &StoredFields, fields: &[HeaderName]) -> Vec<Box<str>> {
    let mut tags: Vec<Box<str>> = Vec::new();
    if fields.is_empty() {
        return tags;
    }
    // Read in place: a commit reads its tags twice and keeps none of the head's bytes.
    for (name, value) in headers.iter_bytes() {
        if !fields.iter().any(|f| f.as_str().as_bytes() == name) {
            continue;
        }
        for tag in split(value) {
            if tags.len() < MAX_TAGS && !tags.iter().any(|t| &**t == tag) {
                tags.push(Box::from(tag));
            }
        }
    }
    tags
}

/// The tags named by a PURGE request's tag fields (`Surrogate-Key: a b`, `Cache-Tag: a,b`).
pub fn of_request(headers: &HeaderMap, fields: &[HeaderName]) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in fields {
        for value in headers.get_all(name) {
            for tag in split(value.as_bytes()) {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_spaces_and_commas() {
        let tags: Vec<&str> = split(b" a b,c ,, d\te").collect();
        assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn reads_only_the_configured_fields() {
        let mut map = HeaderMap::new();
        map.append("surrogate-key", "p1 p2".parse().unwrap());
        map.append("cache-tag", "p2,p3".parse().unwrap());
        map.append("x-other", "nope".parse().unwrap());
        let head = StoredFields::from_map(&map);
        let tags = of_head(&head, &default_fields());
        let tags: Vec<&str> = tags.iter().map(|t| &**t).collect();
        assert_eq!(tags, ["p1", "p2", "p3"]);
        assert_eq!(of_request(&map, &default_fields()), ["p1", "p2", "p3"]);
        assert!(of_head(&head, &[]).is_empty());
    }
}
