use super::*;
use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn resp(cc: &str) -> ResponseDirectives {
    ResponseDirectives::from_headers(&hm(&[("cache-control", cc)]))
}

fn req(cc: &str) -> RequestDirectives {
    RequestDirectives::from_headers(&hm(&[("cache-control", cc)]))
}

#[test]
fn directive_names_are_case_insensitive() {
    let d = resp("Max-Age=60, NO-STORE, Public");
    assert_eq!(d.max_age, Some(Delta::Secs(60)));
    assert!(d.no_store);
    assert!(d.public);
}

#[test]
fn directives_are_collected_from_all_field_lines() {
    let d = ResponseDirectives::from_headers(&hm(&[
        ("cache-control", "max-age=10"),
        ("cache-control", "must-revalidate"),
    ]));
    assert_eq!(d.max_age, Some(Delta::Secs(10)));
    assert!(d.must_revalidate);
}

#[test]
fn quoted_argument_with_commas_is_one_directive() {
    let d = resp(r#"no-cache="Set-Cookie, X-Secret", max-age=5"#);
    assert_eq!(
        d.no_cache,
        Some(FieldNames(vec!["set-cookie".into(), "x-secret".into()]))
    );
    assert_eq!(d.max_age, Some(Delta::Secs(5)));
}

#[test]
fn quoted_max_age_is_accepted() {
    // §5.2: "recipients ought to accept both forms".
    assert_eq!(resp(r#"max-age="30""#).max_age, Some(Delta::Secs(30)));
}

#[test]
fn conflicting_duplicate_max_age_means_stale() {
    assert_eq!(resp("max-age=10, max-age=20").max_age, Some(Delta::Invalid));
    assert_eq!(
        resp("s-maxage=1, s-maxage=2").s_maxage,
        Some(Delta::Invalid)
    );
}

#[test]
fn identical_duplicate_max_age_is_kept() {
    assert_eq!(
        resp("max-age=10, max-age=10").max_age,
        Some(Delta::Secs(10))
    );
}

#[test]
fn invalid_max_age_value_means_stale() {
    for v in [
        "max-age=abc",
        "max-age=-1",
        "max-age=1.5",
        "max-age",
        "max-age=",
    ] {
        let d = resp(v);
        assert_eq!(d.max_age, Some(Delta::Invalid), "{v}");
        assert_eq!(d.max_age.map(Delta::secs), Some(0));
    }
}

#[test]
fn max_age_overflow_is_capped_at_2_pow_31() {
    assert_eq!(
        resp("max-age=99999999999999").max_age,
        Some(Delta::Secs(2_147_483_648))
    );
}

#[test]
fn unqualified_no_cache_and_private() {
    let d = resp("no-cache, private");
    assert!(d.has_unqualified_no_cache());
    assert_eq!(d.private, Some(FieldNames::unqualified()));
}

#[test]
fn unqualified_no_cache_absorbs_qualified_occurrence() {
    let d = resp(r#"no-cache="set-cookie", no-cache"#);
    assert!(d.has_unqualified_no_cache());
    let d = resp(r#"no-cache, no-cache="set-cookie""#);
    assert!(d.has_unqualified_no_cache());
}

#[test]
fn qualified_private_lists_are_merged_and_lowercased() {
    let d = resp(r#"private="Set-Cookie", private="X-A, set-cookie""#);
    assert_eq!(
        d.private,
        Some(FieldNames(vec!["set-cookie".into(), "x-a".into()]))
    );
}

#[test]
fn empty_qualified_no_cache_is_treated_as_unqualified() {
    assert!(resp(r#"no-cache="""#).has_unqualified_no_cache());
}

#[test]
fn token_form_field_name_is_accepted() {
    let d = resp("private=set-cookie");
    assert_eq!(d.private, Some(FieldNames(vec!["set-cookie".into()])));
}

#[test]
fn unknown_directives_are_ignored() {
    // §5.2.3: "A cache MUST ignore unrecognized cache directives."
    let d = resp(r#"community="UCI", max-age=3"#);
    assert_eq!(d.max_age, Some(Delta::Secs(3)));
    assert!(!d.no_store && !d.public);
}

#[test]
fn garbage_items_do_not_break_later_directives() {
    let d = resp(r#"{{bad}}, =x, "quoted", max-age=9"#);
    assert_eq!(d.max_age, Some(Delta::Secs(9)));
}

#[test]
fn stale_extensions_parse_and_conflicts_take_the_smaller() {
    let d = resp("stale-while-revalidate=30, stale-if-error=600, stale-if-error=60");
    assert_eq!(d.stale_while_revalidate, Some(30));
    assert_eq!(d.stale_if_error, Some(60));
}

#[test]
fn invalid_stale_extension_is_ignored() {
    let d = resp("stale-while-revalidate=soon, stale-if-error");
    assert_eq!(d.stale_while_revalidate, None);
    assert_eq!(d.stale_if_error, None);
}

#[test]
fn response_boolean_directives() {
    let d = resp("must-understand, no-store, immutable, no-transform, proxy-revalidate");
    assert!(d.must_understand && d.no_store && d.immutable && d.no_transform);
    assert!(d.proxy_revalidate);
    assert!(!d.targeted);
}

#[test]
fn s_maxage_makes_stale_forbidden() {
    // §5.2.2.10: s-maxage "incorporates the semantics of the proxy-revalidate".
    assert!(resp("s-maxage=5").forbids_stale());
    assert!(resp("must-revalidate").forbids_stale());
    assert!(!resp("max-age=5").forbids_stale());
}

#[test]
fn request_max_stale_without_value_is_any() {
    assert_eq!(req("max-stale").max_stale, Some(MaxStale::Any));
    assert_eq!(req("max-stale=20").max_stale, Some(MaxStale::Secs(20)));
}

#[test]
fn request_max_stale_bounded_wins_over_any() {
    assert_eq!(
        req("max-stale=5, max-stale").max_stale,
        Some(MaxStale::Secs(5))
    );
    assert_eq!(
        req("max-stale, max-stale=5").max_stale,
        Some(MaxStale::Secs(5))
    );
}

#[test]
fn request_invalid_max_stale_is_ignored() {
    assert_eq!(req("max-stale=abc").max_stale, None);
}

#[test]
fn request_invalid_max_age_is_zero() {
    assert_eq!(req("max-age=abc").max_age, Some(0));
    assert_eq!(req("max-age=30, max-age=10").max_age, Some(10));
}

#[test]
fn request_min_fresh_and_flags() {
    let d = req("min-fresh=10, min-fresh=20, no-cache, no-store, only-if-cached, no-transform");
    assert_eq!(d.min_fresh, Some(20));
    assert!(d.no_cache && d.no_store && d.only_if_cached && d.no_transform);
}

#[test]
fn request_stale_if_error() {
    assert_eq!(req("stale-if-error=300").stale_if_error, Some(300));
}

#[test]
fn pragma_no_cache_honoured_without_cache_control() {
    let d = RequestDirectives::from_headers(&hm(&[("pragma", "No-Cache")]));
    assert!(d.no_cache);
}

#[test]
fn pragma_no_cache_ignored_when_cache_control_present() {
    let mut h = hm(&[("pragma", "no-cache")]);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    let d = RequestDirectives::from_headers(&h);
    assert!(!d.no_cache);
    assert_eq!(d.max_age, Some(60));
}

#[test]
fn pragma_other_values_do_not_mean_no_cache() {
    let mut h = HeaderMap::new();
    h.insert(PRAGMA, HeaderValue::from_static("x-foo"));
    assert!(!RequestDirectives::from_headers(&h).no_cache);
}

#[test]
fn non_utf8_cache_control_does_not_panic() {
    let mut h = HeaderMap::new();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_bytes(b"max-age=\xff\xfe, no-store").unwrap(),
    );
    let d = ResponseDirectives::from_headers(&h);
    assert_eq!(d.max_age, Some(Delta::Invalid));
    assert!(d.no_store);
}
