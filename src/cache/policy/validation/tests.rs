use super::*;
use crate::cache::policy::date::test_now;
use http::header::CONNECTION;

const T0: u64 = 1_700_000_000;

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn tag(s: &str) -> EntityTag {
    EntityTag::parse(s.as_bytes()).unwrap()
}

#[test]
fn etag_comparison_table_from_rfc9110() {
    // RFC 9110 §8.8.3.2, Table 3.
    assert!(!tag(r#"W/"1""#).strong_eq(&tag(r#"W/"1""#)));
    assert!(tag(r#"W/"1""#).weak_eq(&tag(r#"W/"1""#)));
    assert!(!tag(r#"W/"1""#).strong_eq(&tag(r#"W/"2""#)));
    assert!(!tag(r#"W/"1""#).weak_eq(&tag(r#"W/"2""#)));
    assert!(!tag(r#"W/"1""#).strong_eq(&tag(r#""1""#)));
    assert!(tag(r#"W/"1""#).weak_eq(&tag(r#""1""#)));
    assert!(tag(r#""1""#).strong_eq(&tag(r#""1""#)));
    assert!(tag(r#""1""#).weak_eq(&tag(r#""1""#)));
}

#[test]
fn etag_parse_rejects_unquoted_and_lowercase_weak_prefix() {
    assert_eq!(EntityTag::parse(b"abc"), None);
    assert_eq!(EntityTag::parse(br#"w/"abc""#), None);
    assert_eq!(EntityTag::parse(br#""abc"x"#), None);
    assert_eq!(EntityTag::parse(br#""a b""#), None);
    assert_eq!(tag(r#" "" "#).opaque, b"".to_vec());
}

#[test]
fn etag_list_parses_commas_inside_tags_and_multiple_lines() {
    let l = parse_etag_list([&br#""a,b", W/"c""#[..], &br#""d""#[..]]).unwrap();
    assert_eq!(
        l,
        EtagList::Tags(vec![tag(r#""a,b""#), tag(r#"W/"c""#), tag(r#""d""#)])
    );
}

#[test]
fn etag_list_star_and_invalid_mixes() {
    assert_eq!(parse_etag_list([&b" * "[..]]), Some(EtagList::Any));
    assert_eq!(parse_etag_list([&br#"*, "a""#[..]]), None);
    assert_eq!(parse_etag_list([&br#""a" "b""#[..]]), None);
    assert_eq!(parse_etag_list([&b""[..]]), None);
}

#[test]
fn obs_text_etags_are_compared_bytewise() {
    let a = EntityTag::parse(b"\"\xfe\"").unwrap();
    let b = EntityTag::parse(b"\"\xff\"").unwrap();
    assert!(!a.strong_eq(&b));
}

#[test]
fn conditional_request_sends_both_validators() {
    let lm = date(T0 - 1000);
    let stored = hm(&[("etag", r#""v1""#), ("last-modified", &lm)]);
    let c = conditional_request_headers(&stored, test_now());
    assert_eq!(c.get(IF_NONE_MATCH).unwrap(), r#""v1""#);
    assert_eq!(c.get(IF_MODIFIED_SINCE).unwrap().to_str().unwrap(), lm);
}

#[test]
fn conditional_request_without_validators_is_empty() {
    assert!(conditional_request_headers(&hm(&[("etag", "garbage")]), test_now()).is_empty());
    assert!(
        conditional_request_headers(&hm(&[("last-modified", "yesterday")]), test_now()).is_empty()
    );
}

#[test]
fn freshen_replaces_fields_from_304() {
    let d_old = date(T0);
    let d_new = date(T0 + 100);
    let stored = hm(&[
        ("date", &d_old),
        ("cache-control", "max-age=10"),
        ("x-keep", "1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]);
    let r304 = hm(&[
        ("date", &d_new),
        ("cache-control", "max-age=60"),
        ("set-cookie", "c=3"),
    ]);
    let f = freshen_headers(&stored, &r304);
    assert_eq!(f.get(DATE).unwrap().to_str().unwrap(), d_new);
    assert_eq!(f.get("cache-control").unwrap(), "max-age=60");
    assert_eq!(f.get("x-keep").unwrap(), "1");
    let cookies: Vec<_> = f.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, vec!["c=3"]);
}

#[test]
fn freshen_never_updates_content_length() {
    // §3.2 exception: "The Content-Length header field".
    let stored = hm(&[("content-length", "1234")]);
    let r304 = hm(&[("content-length", "0"), ("content-range", "bytes */9")]);
    let f = freshen_headers(&stored, &r304);
    assert_eq!(f.get(CONTENT_LENGTH).unwrap(), "1234");
    assert!(!f.contains_key(CONTENT_RANGE));
}

#[test]
fn freshen_skips_hop_by_hop_and_connection_listed_fields() {
    let stored = hm(&[("etag", r#""1""#)]);
    let r304 = hm(&[
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("proxy-authenticate", "Basic"),
        ("x-e2e", "ok"),
    ]);
    let f = freshen_headers(&stored, &r304);
    for n in [
        "x-hop",
        "keep-alive",
        "transfer-encoding",
        "proxy-authenticate",
    ] {
        assert!(!f.contains_key(n), "{n}");
    }
    assert!(!f.contains_key(CONNECTION));
    assert_eq!(f.get("x-e2e").unwrap(), "ok");
}

#[test]
fn freshen_does_not_store_qualified_private_fields() {
    let stored = hm(&[]);
    let r304 = hm(&[("cache-control", r#"private="x-user""#), ("x-user", "bob")]);
    assert!(!freshen_headers(&stored, &r304).contains_key("x-user"));
}

#[test]
fn select_304_strong_etag_updates_all_matches() {
    let a = hm(&[("etag", r#""v1""#)]);
    let b = hm(&[("etag", r#""v2""#)]);
    let c = hm(&[("etag", r#""v1""#)]);
    let r = hm(&[("etag", r#""v1""#)]);
    assert_eq!(
        select_stored_for_304(&r, &[&a, &b, &c], test_now()),
        vec![0, 2]
    );
}

#[test]
fn select_304_strong_etag_without_match_updates_nothing() {
    let a = hm(&[("etag", r#""v1""#)]);
    let r = hm(&[("etag", r#""v9""#)]);
    assert!(select_stored_for_304(&r, &[&a], test_now()).is_empty());
    // A weak stored tag never strong-matches.
    let w = hm(&[("etag", r#"W/"v9""#)]);
    assert!(select_stored_for_304(&r, &[&w], test_now()).is_empty());
}

#[test]
fn select_304_weak_etag_picks_most_recent_match() {
    let d1 = date(T0);
    let d2 = date(T0 + 50);
    let a = hm(&[("etag", r#"W/"x""#), ("date", &d2)]);
    let b = hm(&[("etag", r#"W/"x""#), ("date", &d1)]);
    let c = hm(&[("etag", r#"W/"y""#), ("date", &d2)]);
    let r = hm(&[("etag", r#"W/"x""#)]);
    assert_eq!(
        select_stored_for_304(&r, &[&a, &b, &c], test_now()),
        vec![0]
    );
}

#[test]
fn select_304_strong_last_modified_updates_exact_matches() {
    let lm = date(T0 - 100);
    let d = date(T0);
    let other = date(T0 - 500);
    let a = hm(&[("last-modified", &lm)]);
    let b = hm(&[("last-modified", &other)]);
    let r = hm(&[("last-modified", &lm), ("date", &d)]);
    assert_eq!(select_stored_for_304(&r, &[&a, &b], test_now()), vec![0]);
}

#[test]
fn select_304_without_validators_updates_lone_validatorless_entry() {
    let r = hm(&[]);
    let a = hm(&[("x", "1")]);
    assert_eq!(select_stored_for_304(&r, &[&a], test_now()), vec![0]);
    let b = hm(&[("etag", r#""1""#)]);
    assert!(select_stored_for_304(&r, &[&b], test_now()).is_empty());
    assert!(select_stored_for_304(&r, &[&a, &a], test_now()).is_empty());
}

#[test]
fn head_freshens_when_validators_and_length_match() {
    let lm = date(T0);
    let stored = hm(&[
        ("etag", r#""1""#),
        ("last-modified", &lm),
        ("content-length", "10"),
    ]);
    let head = hm(&[
        ("etag", r#""1""#),
        ("last-modified", &lm),
        ("content-length", "10"),
    ]);
    assert!(head_may_freshen(&stored, &head, test_now()));
}

#[test]
fn head_with_different_etag_or_length_marks_stale() {
    let stored = hm(&[("etag", r#""1""#), ("content-length", "10")]);
    assert!(!head_may_freshen(
        &stored,
        &hm(&[("etag", r#""2""#)]),
        test_now()
    ));
    assert!(!head_may_freshen(
        &stored,
        &hm(&[("content-length", "11")]),
        test_now()
    ));
    assert!(!head_may_freshen(
        &hm(&[]),
        &hm(&[("content-length", "11")]),
        test_now()
    ));
}

#[test]
fn head_with_different_last_modified_marks_stale() {
    let a = date(T0);
    let b = date(T0 + 1);
    let stored = hm(&[("last-modified", &a)]);
    assert!(!head_may_freshen(
        &stored,
        &hm(&[("last-modified", &b)]),
        test_now()
    ));
}

fn cond(method: Method, req: &HeaderMap, stored: &HeaderMap) -> ConditionalOutcome {
    evaluate_client_conditional(&method, req, StatusCode::OK, stored, test_now())
}

#[test]
fn if_none_match_uses_weak_comparison() {
    let stored = hm(&[("etag", r#""abc""#)]);
    let req = hm(&[("if-none-match", r#"W/"abc""#)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::NotModified
    );
}

#[test]
fn if_none_match_list_without_match_proceeds() {
    let stored = hm(&[("etag", r#""abc""#)]);
    let req = hm(&[("if-none-match", r#""x", "y""#)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_none_match_star_matches_any_stored_response() {
    let req = hm(&[("if-none-match", "*")]);
    assert_eq!(
        cond(Method::HEAD, &req, &hm(&[])),
        ConditionalOutcome::NotModified
    );
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    // §13.1.3: "A recipient MUST ignore If-Modified-Since if the request
    // contains an If-None-Match header field".
    let lm = date(T0);
    let later = date(T0 + 100);
    let stored = hm(&[("etag", r#""abc""#), ("last-modified", &lm)]);
    let req = hm(&[
        ("if-none-match", r#""other""#),
        ("if-modified-since", &later),
    ]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_modified_since_not_modified_when_last_modified_not_newer() {
    let lm = date(T0);
    let stored = hm(&[("last-modified", &lm)]);
    let same = hm(&[("if-modified-since", &lm)]);
    assert_eq!(
        cond(Method::GET, &same, &stored),
        ConditionalOutcome::NotModified
    );
    let earlier = date(T0 - 1);
    let req = hm(&[("if-modified-since", &earlier)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_modified_since_falls_back_to_stored_date() {
    // RFC 9111 §4.3.2: without Last-Modified use the stored Date.
    let d = date(T0);
    let stored = hm(&[("date", &d)]);
    let req = hm(&[("if-modified-since", &date(T0 + 5))]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::NotModified
    );
}

#[test]
fn invalid_if_modified_since_is_ignored() {
    let lm = date(T0);
    let stored = hm(&[("last-modified", &lm)]);
    let req = hm(&[("if-modified-since", "next tuesday")]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
    let two = format!("{lm}, {lm}");
    let req = hm(&[("if-modified-since", &two)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn conditionals_not_evaluated_for_other_methods_or_error_status() {
    let stored = hm(&[("etag", r#""abc""#)]);
    let req = hm(&[("if-none-match", r#""abc""#)]);
    assert_eq!(
        cond(Method::POST, &req, &stored),
        ConditionalOutcome::Proceed
    );
    assert_eq!(
        evaluate_client_conditional(
            &Method::GET,
            &req,
            StatusCode::NOT_FOUND,
            &stored,
            test_now()
        ),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_match_uses_strong_comparison() {
    let stored = hm(&[("etag", r#"W/"abc""#)]);
    let req = hm(&[("if-match", r#"W/"abc""#)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::PreconditionFailed
    );
    let stored = hm(&[("etag", r#""abc""#)]);
    let req = hm(&[("if-match", r#""zzz", "abc""#)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_match_star_passes_and_garbage_fails() {
    let stored = hm(&[("etag", r#""abc""#)]);
    assert_eq!(
        cond(Method::GET, &hm(&[("if-match", "*")]), &stored),
        ConditionalOutcome::Proceed
    );
    assert_eq!(
        cond(Method::GET, &hm(&[("if-match", "abc")]), &stored),
        ConditionalOutcome::PreconditionFailed
    );
}

#[test]
fn if_unmodified_since_fails_when_modified_later() {
    let lm = date(T0);
    let stored = hm(&[("last-modified", &lm)]);
    let req = hm(&[("if-unmodified-since", &date(T0 - 1))]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::PreconditionFailed
    );
    let req = hm(&[("if-unmodified-since", &lm)]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn if_unmodified_since_ignored_when_if_match_present() {
    let lm = date(T0);
    let stored = hm(&[("last-modified", &lm), ("etag", r#""a""#)]);
    let req = hm(&[
        ("if-match", r#""a""#),
        ("if-unmodified-since", &date(T0 - 100)),
    ]);
    assert_eq!(
        cond(Method::GET, &req, &stored),
        ConditionalOutcome::Proceed
    );
}

#[test]
fn last_modified_strength_needs_date_one_second_later() {
    let lm = date(T0);
    assert!(!last_modified_is_strong(
        &hm(&[("last-modified", &lm), ("date", &lm)]),
        test_now()
    ));
    let d = date(T0 + 1);
    assert!(last_modified_is_strong(
        &hm(&[("last-modified", &lm), ("date", &d)]),
        test_now()
    ));
    assert!(!last_modified_is_strong(
        &hm(&[("last-modified", &lm)]),
        test_now()
    ));
}
