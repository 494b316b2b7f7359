use super::*;
use crate::cache::policy::date::test_now;
use std::time::{Duration, UNIX_EPOCH};

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

fn plan(range: &str, len: u64) -> RangePlan {
    plan_range(
        &Method::GET,
        &hm(&[("range", range)]),
        &hm(&[]),
        len,
        test_now(),
    )
}

#[test]
fn parse_int_suffix_and_open_ranges() {
    assert_eq!(
        parse_range("bytes= 0-999, 4500-5499, -1000, 9500-"),
        Some(vec![
            RangeSpec::FromTo(0, 999),
            RangeSpec::FromTo(4500, 5499),
            RangeSpec::Suffix(1000),
            RangeSpec::From(9500),
        ])
    );
}

#[test]
fn range_unit_is_case_insensitive() {
    assert_eq!(
        parse_range("Bytes=0-0"),
        Some(vec![RangeSpec::FromTo(0, 0)])
    );
}

#[test]
fn last_before_first_makes_whole_header_invalid() {
    assert_eq!(parse_range("bytes=5-1"), None);
    assert_eq!(parse_range("bytes=0-1,5-1"), None);
}

#[test]
fn malformed_specs_are_invalid() {
    for bad in [
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=+1-2",
        "items=0-1",
        "bytes 0-1",
    ] {
        assert_eq!(parse_range(bad), None, "{bad}");
    }
}

#[test]
fn huge_positions_do_not_overflow() {
    assert_eq!(
        parse_range("bytes=99999999999999999999999-"),
        Some(vec![RangeSpec::From(u64::MAX)])
    );
    assert_eq!(
        plan("bytes=99999999999999999999999-", 100),
        RangePlan::Unsatisfiable
    );
}

#[test]
fn single_range_is_single_part() {
    assert_eq!(
        plan("bytes=0-499", 10_000),
        RangePlan::Single { start: 0, end: 499 }
    );
}

#[test]
fn last_pos_beyond_length_is_clamped() {
    assert_eq!(
        plan("bytes=500-99999", 1000),
        RangePlan::Single {
            start: 500,
            end: 999
        }
    );
}

#[test]
fn suffix_range_takes_last_bytes() {
    assert_eq!(
        plan("bytes=-500", 10_000),
        RangePlan::Single {
            start: 9500,
            end: 9999
        }
    );
    // "If the selected representation is shorter than the specified
    // suffix-length, the entire representation is used."
    assert_eq!(
        plan("bytes=-500", 100),
        RangePlan::Single { start: 0, end: 99 }
    );
}

#[test]
fn first_and_last_byte_is_multipart() {
    assert_eq!(
        plan("bytes=0-0,-1", 10_000),
        RangePlan::Multi(vec![(0, 0), (9999, 9999)])
    );
}

#[test]
fn unsatisfiable_when_every_first_pos_beyond_length() {
    assert_eq!(plan("bytes=1000-2000", 1000), RangePlan::Unsatisfiable);
    assert_eq!(plan("bytes=-0", 1000), RangePlan::Unsatisfiable);
}

#[test]
fn unsatisfiable_parts_are_dropped_from_satisfiable_set() {
    assert_eq!(
        plan("bytes=5000-,0-9", 100),
        RangePlan::Single { start: 0, end: 9 }
    );
}

#[test]
fn zero_length_representation_ignores_range() {
    assert_eq!(plan("bytes=-5", 0), RangePlan::Full);
}

#[test]
fn overlapping_ranges_are_coalesced() {
    assert_eq!(
        plan("bytes=500-700,601-999", 10_000),
        RangePlan::Single {
            start: 500,
            end: 999
        }
    );
    assert_eq!(
        plan("bytes=500-600,601-999", 10_000),
        RangePlan::Single {
            start: 500,
            end: 999
        }
    );
}

#[test]
fn distant_ranges_keep_request_order() {
    assert_eq!(
        plan("bytes=5000-5999,0-99", 10_000),
        RangePlan::Multi(vec![(5000, 5999), (0, 99)])
    );
}

#[test]
fn more_than_two_overlapping_ranges_are_ignored() {
    assert_eq!(
        plan("bytes=0-100,0-100,0-100,0-100", 10_000),
        RangePlan::Full
    );
}

#[test]
fn too_many_ranges_are_ignored() {
    let spec: Vec<String> = (0..=MAX_RANGES)
        .map(|i| format!("{}-{}", i * 1000, i * 1000))
        .collect();
    let v = format!("bytes={}", spec.join(","));
    assert_eq!(plan(&v, 10_000_000), RangePlan::Full);
}

#[test]
fn many_small_descending_ranges_are_ignored() {
    let spec: Vec<String> = (0..20u64)
        .rev()
        .map(|i| format!("{}-{}", i * 1000, i * 1000))
        .collect();
    let v = format!("bytes={}", spec.join(","));
    assert_eq!(plan(&v, 100_000), RangePlan::Full);
}

#[test]
fn range_ignored_for_non_get() {
    let req = hm(&[("range", "bytes=0-1")]);
    assert_eq!(
        plan_range(&Method::HEAD, &req, &hm(&[]), 100, test_now()),
        RangePlan::Full
    );
}

#[test]
fn invalid_range_header_is_ignored() {
    assert_eq!(plan("bytes=garbage", 100), RangePlan::Full);
}

#[test]
fn if_range_strong_etag_match_honours_range() {
    let stored = hm(&[("etag", r#""v1""#)]);
    let req = hm(&[("range", "bytes=0-1"), ("if-range", r#""v1""#)]);
    assert!(evaluate_if_range(&req, &stored, test_now()));
    assert_eq!(
        plan_range(&Method::GET, &req, &stored, 10, test_now()),
        RangePlan::Single { start: 0, end: 1 }
    );
}

#[test]
fn if_range_etag_mismatch_or_weak_sends_full() {
    let stored = hm(&[("etag", r#""v1""#)]);
    let req = hm(&[("range", "bytes=0-1"), ("if-range", r#""v2""#)]);
    assert_eq!(
        plan_range(&Method::GET, &req, &stored, 10, test_now()),
        RangePlan::Full
    );
    let weak = hm(&[("etag", r#"W/"v1""#)]);
    let req = hm(&[("range", "bytes=0-1"), ("if-range", r#"W/"v1""#)]);
    assert!(!evaluate_if_range(&req, &weak, test_now()));
}

#[test]
fn if_range_date_requires_exact_strong_last_modified() {
    let lm = date(T0);
    let d = date(T0 + 10);
    let stored = hm(&[("last-modified", &lm), ("date", &d)]);
    assert!(evaluate_if_range(
        &hm(&[("if-range", &lm)]),
        &stored,
        test_now()
    ));
    // Later date: If-Range is an exact match, not "earlier than or equal".
    assert!(!evaluate_if_range(
        &hm(&[("if-range", &d)]),
        &stored,
        test_now()
    ));
}

#[test]
fn if_range_date_with_weak_last_modified_is_false() {
    let lm = date(T0);
    let stored = hm(&[("last-modified", &lm), ("date", &lm)]);
    assert!(!evaluate_if_range(
        &hm(&[("if-range", &lm)]),
        &stored,
        test_now()
    ));
}

#[test]
fn if_range_garbage_is_false_and_absent_is_true() {
    let stored = hm(&[("etag", r#""v1""#)]);
    assert!(!evaluate_if_range(
        &hm(&[("if-range", "whenever")]),
        &stored,
        test_now()
    ));
    assert!(evaluate_if_range(&hm(&[]), &stored, test_now()));
}

#[test]
fn content_range_values() {
    assert_eq!(content_range(42, 1233, 1234), "bytes 42-1233/1234");
    assert_eq!(unsatisfied_content_range(1234), "bytes */1234");
}

#[test]
fn multipart_layout_matches_rfc_example_framing() {
    let ct = HeaderValue::from_static("application/pdf");
    let l = multipart_layout(
        &[(500, 999), (7000, 7999)],
        8000,
        Some(&ct),
        "THIS_STRING_SEPARATES",
    )
    .unwrap();
    assert_eq!(
        l.content_type,
        "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    );
    assert_eq!(
        &l.parts[0].header[..],
        b"--THIS_STRING_SEPARATES\r\nContent-Type: application/pdf\r\nContent-Range: bytes 500-999/8000\r\n\r\n"
    );
    assert!(l.parts[1]
        .header
        .starts_with(b"\r\n--THIS_STRING_SEPARATES\r\n"));
    assert_eq!(&l.closing[..], b"\r\n--THIS_STRING_SEPARATES--\r\n");
    let expected: u64 = l
        .parts
        .iter()
        .map(|p| p.header.len() as u64 + (p.end - p.start + 1))
        .sum::<u64>()
        + l.closing.len() as u64;
    assert_eq!(l.content_length, expected);
    assert_eq!((l.parts[1].start, l.parts[1].end), (7000, 7999));
}

#[test]
fn multipart_layout_rejects_bad_boundary_or_range() {
    assert!(multipart_layout(&[(0, 1)], 10, None, "").is_none());
    assert!(multipart_layout(&[(0, 1)], 10, None, "a\r\nb").is_none());
    assert!(multipart_layout(&[(0, 1)], 10, None, &"x".repeat(71)).is_none());
    assert!(multipart_layout(&[(5, 10)], 10, None, "b").is_none());
    assert!(multipart_layout(&[(5, 4)], 10, None, "b").is_none());
    let l = multipart_layout(&[(0, 1)], 10, None, "b").unwrap();
    assert!(!l.parts[0].header.windows(12).any(|w| w == b"Content-Type"));
}
