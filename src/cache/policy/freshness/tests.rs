use super::*;
use crate::cache::policy::cache_control::Delta;
use http::header::HeaderValue;
use std::time::{Duration, UNIX_EPOCH};

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn lifetime(status: u16, h: &HeaderMap) -> Lifetime {
    let d = ResponseDirectives::from_headers(h);
    freshness_lifetime(
        StatusCode::from_u16(status).unwrap(),
        h,
        &d,
        at(T0),
        &Heuristic::default(),
    )
}

#[test]
fn s_maxage_overrides_max_age() {
    let h = hm(&[("cache-control", "max-age=60, s-maxage=300")]);
    assert_eq!(lifetime(200, &h).secs, 300);
}

#[test]
fn max_age_overrides_expires() {
    let d = date(T0);
    let e = date(T0 + 1000);
    let h = hm(&[
        ("cache-control", "max-age=60"),
        ("date", &d),
        ("expires", &e),
    ]);
    let l = lifetime(200, &h);
    assert_eq!(
        l,
        Lifetime {
            secs: 60,
            heuristic: false
        }
    );
}

#[test]
fn expires_minus_date_gives_lifetime() {
    let d = date(T0 - 100);
    let e = date(T0 + 500);
    let h = hm(&[("date", &d), ("expires", &e)]);
    assert_eq!(lifetime(200, &h).secs, 600);
}

#[test]
fn expires_without_date_uses_response_time() {
    let e = date(T0 + 42);
    let h = hm(&[("expires", &e)]);
    assert_eq!(lifetime(200, &h).secs, 42);
}

#[test]
fn expires_before_date_is_zero_lifetime() {
    let d = date(T0);
    let e = date(T0 - 10);
    let h = hm(&[("date", &d), ("expires", &e)]);
    assert_eq!(lifetime(200, &h).secs, 0);
}

#[test]
fn invalid_expires_means_stale() {
    let lm = date(T0 - 100_000);
    for bad in ["0", "-1", "tomorrow", "Thu, 01 Dec 1994 16:00:00 PST"] {
        let h = hm(&[("expires", bad), ("last-modified", &lm)]);
        let l = lifetime(200, &h);
        assert_eq!(
            l,
            Lifetime {
                secs: 0,
                heuristic: false
            },
            "{bad}"
        );
    }
}

#[test]
fn conflicting_expires_lines_mean_stale() {
    let a = date(T0 + 100);
    let b = date(T0 + 200);
    let h = hm(&[("expires", &a), ("expires", &b)]);
    assert_eq!(lifetime(200, &h).secs, 0);
}

#[test]
fn invalid_max_age_means_zero_lifetime_even_with_expires() {
    let e = date(T0 + 1000);
    let h = hm(&[("cache-control", "max-age=abc"), ("expires", &e)]);
    assert_eq!(lifetime(200, &h).secs, 0);
}

#[test]
fn targeted_directives_ignore_expires() {
    // RFC 9213 §2.2: ignore Expires when a targeted field is used.
    let e = date(T0 + 1000);
    let h = hm(&[("expires", &e)]);
    let d = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    let l = freshness_lifetime(StatusCode::OK, &h, &d, at(T0), &Heuristic::default());
    assert!(l.heuristic);
    assert_eq!(l.secs, 0);
}

#[test]
fn heuristic_is_ten_percent_of_last_modified_age() {
    let d = date(T0);
    let lm = date(T0 - 10_000);
    let h = hm(&[("date", &d), ("last-modified", &lm)]);
    assert_eq!(
        lifetime(200, &h),
        Lifetime {
            secs: 1000,
            heuristic: true
        }
    );
}

#[test]
fn heuristic_is_capped_by_max() {
    let d = date(T0);
    let lm = date(T0 - 100 * 86_400);
    let h = hm(&[("date", &d), ("last-modified", &lm)]);
    assert_eq!(lifetime(200, &h).secs, 86_400);
}

#[test]
fn heuristic_without_last_modified_uses_min() {
    let h = hm(&[]);
    let hcfg = Heuristic {
        min_secs: 120,
        percent: 20,
        max_secs: 3600,
        override_lastmod: false,
    };
    let d = ResponseDirectives::default();
    let l = freshness_lifetime(StatusCode::OK, &h, &d, at(T0), &hcfg);
    assert_eq!(
        l,
        Lifetime {
            secs: 120,
            heuristic: true
        }
    );
}

#[test]
fn heuristic_min_raises_small_values_only_with_override_lastmod() {
    let d = date(T0);
    let lm = date(T0 - 100);
    let h = hm(&[("date", &d), ("last-modified", &lm)]);
    let mut hcfg = Heuristic {
        min_secs: 60,
        percent: 10,
        max_secs: 3600,
        override_lastmod: false,
    };
    let l = |hcfg: &Heuristic| {
        freshness_lifetime(
            StatusCode::OK,
            &h,
            &ResponseDirectives::default(),
            at(T0),
            hcfg,
        )
        .secs
    };
    // Squid: with a Last-Modified, the LM factor decides (10% of 100 s); `min` only applies
    // without one, unless `override-lastmod`.
    assert_eq!(l(&hcfg), 10);
    hcfg.override_lastmod = true;
    assert_eq!(l(&hcfg), 60);
}

#[test]
fn future_last_modified_is_ignored_by_heuristic() {
    let d = date(T0);
    let lm = date(T0 + 10_000);
    let h = hm(&[("date", &d), ("last-modified", &lm)]);
    assert_eq!(lifetime(200, &h).secs, 0);
}

#[test]
fn no_heuristic_for_non_heuristically_cacheable_status() {
    let d = date(T0);
    let lm = date(T0 - 10_000);
    let h = hm(&[("date", &d), ("last-modified", &lm)]);
    assert_eq!(
        lifetime(302, &h),
        Lifetime {
            secs: 0,
            heuristic: false
        }
    );
    assert_eq!(lifetime(500, &h).secs, 0);
}

#[test]
fn public_allows_heuristic_for_any_status() {
    let d = date(T0);
    let lm = date(T0 - 10_000);
    let h = hm(&[
        ("date", &d),
        ("last-modified", &lm),
        ("cache-control", "public"),
    ]);
    assert_eq!(
        lifetime(302, &h),
        Lifetime {
            secs: 1000,
            heuristic: true
        }
    );
}

#[test]
fn heuristically_cacheable_status_list() {
    for s in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert!(
            is_heuristically_cacheable(StatusCode::from_u16(s).unwrap()),
            "{s}"
        );
    }
    for s in [201, 302, 303, 307, 400, 403, 500, 503] {
        assert!(
            !is_heuristically_cacheable(StatusCode::from_u16(s).unwrap()),
            "{s}"
        );
    }
}

#[test]
fn far_future_expires_is_capped() {
    let h = hm(&[
        ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ]);
    assert_eq!(lifetime(200, &h).secs, 2_147_483_648);
}

#[test]
fn delta_invalid_secs_is_zero() {
    assert_eq!(Delta::Invalid.secs(), 0);
}

fn inputs(date: Option<u64>, age: Option<u64>, req: u64, resp: u64) -> AgeInputs {
    AgeInputs {
        date: date.map(at),
        age_header: age,
        request_time: at(req),
        response_time: at(resp),
    }
}

#[test]
fn current_age_adds_resident_time() {
    let i = inputs(Some(T0), None, T0, T0);
    assert_eq!(current_age(&i, at(T0 + 30)), 30);
}

#[test]
fn apparent_age_uses_response_time_minus_date() {
    // Origin clock 50s behind: apparent_age = 50.
    let i = inputs(Some(T0 - 50), None, T0, T0);
    assert_eq!(current_age(&i, at(T0)), 50);
}

#[test]
fn apparent_age_is_never_negative() {
    // Date in the future (origin clock ahead) → apparent_age 0.
    let i = inputs(Some(T0 + 500), None, T0, T0);
    assert_eq!(current_age(&i, at(T0 + 5)), 5);
}

#[test]
fn corrected_age_adds_response_delay_to_age_header() {
    // age_value 100 + response_delay 3 = 103 > apparent_age 0.
    let i = inputs(Some(T0 + 3), Some(100), T0, T0 + 3);
    assert_eq!(current_age(&i, at(T0 + 3)), 103);
    assert_eq!(current_age(&i, at(T0 + 13)), 113);
}

#[test]
fn corrected_initial_age_takes_the_max() {
    // apparent_age 200 beats corrected_age_value 10 + 1.
    let i = inputs(Some(T0 - 199), Some(10), T0, T0 + 1);
    assert_eq!(current_age(&i, at(T0 + 1)), 200);
}

#[test]
fn now_before_response_time_gives_no_resident_time() {
    let i = inputs(Some(T0), None, T0, T0);
    assert_eq!(current_age(&i, at(T0 - 100)), 0);
}

#[test]
fn huge_age_header_saturates_at_cap() {
    let i = inputs(None, Some(u64::MAX), T0, T0 + 5);
    assert_eq!(current_age(&i, at(T0 + 10)), 2_147_483_648);
}

#[test]
fn age_header_list_uses_first_member() {
    assert_eq!(parse_age_header(&hm(&[("age", "30, 40")])), Some(30));
    assert_eq!(
        parse_age_header(&hm(&[("age", "7"), ("age", "9")])),
        Some(7)
    );
}

#[test]
fn invalid_age_header_is_ignored() {
    for bad in ["-5", "abc", "1.5", ""] {
        assert_eq!(parse_age_header(&hm(&[("age", bad)])), None, "{bad:?}");
    }
    assert_eq!(parse_age_header(&hm(&[])), None);
}

#[test]
fn age_inputs_from_headers_reads_date_and_age() {
    let d = date(T0);
    let h = hm(&[("date", &d), ("age", "12")]);
    let i = AgeInputs::from_headers(&h, at(T0), at(T0 + 1));
    assert_eq!(i.date, Some(at(T0)));
    assert_eq!(i.age_header, Some(12));
}

#[test]
fn fresh_means_lifetime_strictly_greater_than_age() {
    let l = Lifetime {
        secs: 60,
        heuristic: false,
    };
    assert!(is_fresh(&l, 59));
    assert!(!is_fresh(&l, 60));
    assert_eq!(staleness(&l, 75), 15);
    assert_eq!(staleness(&l, 10), 0);
}
