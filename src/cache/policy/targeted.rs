//! RFC 9213 targeted cache-control fields (`CDN-Cache-Control` and friends).
//!
//! A targeted field overrides `Cache-Control` *and* `Expires` for the caches it
//! targets, but uses Structured Fields (RFC 9651) syntax with stricter error
//! handling, so it gets its own parser that maps dictionary members onto the
//! same [`ResponseDirectives`] the rest of the policy code consumes.

use super::cache_control::{Delta, FieldNames, ResponseDirectives};
use super::fields::{field_lines, DELTA_SECONDS_CAP};
use http::header::{HeaderMap, HeaderName};
use sfv::{BareItem, Dictionary, ListEntry, Parser};

/// Parses one targeted field's value lines; None when empty or not a valid Dictionary.
///
/// RFC 9213 §2.1: "If a targeted field in a given response is empty, or a
/// parsing error is encountered, that field MUST be ignored by the cache".
/// Multiple lines are combined with "," before parsing (RFC 9651 §4.2).
pub fn parse_targeted_lines(lines: &[String]) -> Option<ResponseDirectives> {
    if lines.is_empty() {
        return None;
    }
    let combined = lines.join(", ");
    let dict: Dictionary = Parser::new(combined.as_str()).parse().ok()?;
    if dict.is_empty() {
        return None;
    }
    let mut d = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    for (key, entry) in &dict {
        // §2.1: "Parameters received on cache directives are to be ignored".
        let item = match entry {
            ListEntry::Item(item) => Some(&item.bare_item),
            ListEntry::InnerList(_) => None,
        };
        apply_member(&mut d, key.as_str(), item);
    }
    Some(d)
}

/// Boolean member value: Some(true/false) only for sf-boolean items.
fn as_bool(item: Option<&BareItem>) -> Option<bool> {
    item.and_then(BareItem::as_boolean)
}

/// Non-negative integer member value, capped per RFC 9111 §1.2.2.
fn as_delta(item: Option<&BareItem>) -> Option<u32> {
    let i = i64::from(item.and_then(BareItem::as_integer)?);
    if i < 0 {
        return None;
    }
    Some(u32::try_from(i).map_or(DELTA_SECONDS_CAP, |v| v.min(DELTA_SECONDS_CAP)))
}

/// no-cache / private: `true` → unqualified, String → field list, `?0` → absent.
///
/// Other types violate RFC 9213 §2.1's inferred constraints; since these
/// directives only ever restrict, an odd value is read as the unqualified form.
fn as_field_names(item: Option<&BareItem>) -> Option<FieldNames> {
    match item {
        Some(BareItem::Boolean(false)) => None,
        Some(BareItem::String(s)) => {
            Some(FieldNames::parse(s.as_str()).unwrap_or_else(FieldNames::unqualified))
        }
        _ => Some(FieldNames::unqualified()),
    }
}

fn apply_member(d: &mut ResponseDirectives, key: &str, item: Option<&BareItem>) {
    let flag = as_bool(item) == Some(true);
    match key {
        "no-store" => d.no_store = flag,
        "public" => d.public = flag,
        "must-revalidate" => d.must_revalidate = flag,
        "proxy-revalidate" => d.proxy_revalidate = flag,
        "must-understand" => d.must_understand = flag,
        "immutable" => d.immutable = flag,
        "no-transform" => d.no_transform = flag,
        "no-cache" => d.no_cache = as_field_names(item),
        "private" => d.private = as_field_names(item),
        // §2.1: "Implementations SHOULD NOT consume values that violate these
        // inferred constraints" (e.g. max-age=1.5) — we do not coerce them, we
        // treat the response as stale, as RFC 9111 §4.2.1 encourages for
        // invalid freshness information.
        "max-age" => d.max_age = Some(as_delta(item).map_or(Delta::Invalid, Delta::Secs)),
        "s-maxage" => d.s_maxage = Some(as_delta(item).map_or(Delta::Invalid, Delta::Secs)),
        "stale-while-revalidate" => d.stale_while_revalidate = as_delta(item),
        "stale-if-error" => d.stale_if_error = as_delta(item),
        // Unrecognised extension directives are ignored (§2.2, RFC 9111 §5.2.3).
        _ => {}
    }
}

/// Directives from the first field of `targeted` that is present, valid and non-empty.
///
/// RFC 9213 §2.2: "the cache MUST select the first (in target-list order) field
/// with a valid, non-empty value and use its value to determine the caching policy".
pub fn targeted_directives(
    headers: &HeaderMap,
    targeted: &[HeaderName],
) -> Option<ResponseDirectives> {
    // Most responses carry none of them: one pass over the names they do carry (an enum
    // compare for each standard name) settles that without hashing each targeted name.
    if !headers.keys().any(|name| targeted.contains(name)) {
        return None;
    }
    targeted
        .iter()
        .find_map(|name| parse_targeted_lines(&field_lines(headers, name)))
}

/// The directives that govern this cache: a targeted field if usable, else Cache-Control.
///
/// RFC 9213 §2.2: the cache "MUST ignore the Cache-Control and Expires header
/// fields in that response, unless no valid, non-empty value is available from
/// the listed header fields". Expires is ignored downstream via `targeted`.
pub fn effective_response_directives(
    headers: &HeaderMap,
    targeted: &[HeaderName],
) -> ResponseDirectives {
    targeted_directives(headers, targeted)
        .unwrap_or_else(|| ResponseDirectives::from_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    const CDN: HeaderName = HeaderName::from_static("cdn-cache-control");
    const OURS: HeaderName = HeaderName::from_static("cuttle-cache-control");

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn targets() -> Vec<HeaderName> {
        vec![OURS, CDN]
    }

    #[test]
    fn targeted_field_overrides_cache_control() {
        let h = hm(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        let d = effective_response_directives(&h, &targets());
        assert!(!d.no_store);
        assert_eq!(d.max_age, Some(Delta::Secs(600)));
        assert!(d.targeted);
    }

    #[test]
    fn first_field_in_target_list_wins() {
        let h = hm(&[
            ("cdn-cache-control", "max-age=600"),
            ("cuttle-cache-control", "max-age=5"),
        ]);
        let d = effective_response_directives(&h, &targets());
        assert_eq!(d.max_age, Some(Delta::Secs(5)));
    }

    #[test]
    fn unparseable_targeted_field_falls_through_to_next() {
        let h = hm(&[
            ("cuttle-cache-control", "max-age=\"unterminated"),
            ("cdn-cache-control", "max-age=77"),
        ]);
        let d = effective_response_directives(&h, &targets());
        assert_eq!(d.max_age, Some(Delta::Secs(77)));
    }

    #[test]
    fn invalid_targeted_field_falls_back_to_cache_control() {
        // Upper-case keys are not valid sf-dictionary keys.
        let h = hm(&[
            ("cache-control", "max-age=9"),
            ("cdn-cache-control", "Max-Age=60"),
        ]);
        let d = effective_response_directives(&h, &targets());
        assert_eq!(d.max_age, Some(Delta::Secs(9)));
        assert!(!d.targeted);
    }

    #[test]
    fn empty_targeted_field_is_ignored() {
        let h = hm(&[("cache-control", "max-age=9"), ("cdn-cache-control", "")]);
        assert_eq!(targeted_directives(&h, &targets()), None);
        assert_eq!(
            effective_response_directives(&h, &targets()).max_age,
            Some(Delta::Secs(9))
        );
    }

    #[test]
    fn untargeted_fields_do_not_change_behaviour() {
        // §2.2: "Targeted fields that are not on a cache's target list MUST NOT
        // change that cache's behavior".
        let h = hm(&[
            ("cache-control", "no-store"),
            ("othercdn-cache-control", "max-age=60"),
        ]);
        assert!(effective_response_directives(&h, &targets()).no_store);
    }

    #[test]
    fn none_directive_only_unlocks_storage() {
        // §3.1 example: "Cache-Control: no-store" + "CDN-Cache-Control: none".
        let h = hm(&[("cache-control", "no-store"), ("cdn-cache-control", "none")]);
        let d = effective_response_directives(&h, &targets());
        assert!(!d.no_store);
        assert_eq!(d.max_age, None);
    }

    #[test]
    fn decimal_max_age_is_not_coerced() {
        let h = hm(&[("cdn-cache-control", "max-age=1.5")]);
        let d = targeted_directives(&h, &targets()).unwrap();
        assert_eq!(d.max_age, Some(Delta::Invalid));
    }

    #[test]
    fn negative_max_age_is_invalid() {
        let h = hm(&[("cdn-cache-control", "max-age=-1")]);
        assert_eq!(
            targeted_directives(&h, &targets()).unwrap().max_age,
            Some(Delta::Invalid)
        );
    }

    #[test]
    fn boolean_directives_and_false_values() {
        let h = hm(&[(
            "cdn-cache-control",
            "no-store, must-revalidate=?0, public=?1",
        )]);
        let d = targeted_directives(&h, &targets()).unwrap();
        assert!(d.no_store);
        assert!(!d.must_revalidate);
        assert!(d.public);
    }

    #[test]
    fn no_cache_string_is_field_list_and_boolean_is_unqualified() {
        let h = hm(&[(
            "cdn-cache-control",
            r#"no-cache="Set-Cookie, X-Y", private"#,
        )]);
        let d = targeted_directives(&h, &targets()).unwrap();
        assert_eq!(
            d.no_cache,
            Some(FieldNames(vec!["set-cookie".into(), "x-y".into()]))
        );
        assert_eq!(d.private, Some(FieldNames::unqualified()));
    }

    #[test]
    fn parameters_are_ignored_and_lines_combined() {
        let h = hm(&[
            ("cdn-cache-control", "max-age=60;foo=bar"),
            (
                "cdn-cache-control",
                "stale-while-revalidate=30, stale-if-error=99999999999",
            ),
        ]);
        let d = targeted_directives(&h, &targets()).unwrap();
        assert_eq!(d.max_age, Some(Delta::Secs(60)));
        assert_eq!(d.stale_while_revalidate, Some(30));
        assert_eq!(d.stale_if_error, Some(DELTA_SECONDS_CAP));
    }

    #[test]
    fn empty_target_list_uses_cache_control() {
        let h = hm(&[
            ("cache-control", "s-maxage=4"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        let d = effective_response_directives(&h, &[]);
        assert_eq!(d.s_maxage, Some(Delta::Secs(4)));
        assert_eq!(d.max_age, None);
    }
}
