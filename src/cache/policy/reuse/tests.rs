use super::*;
use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL};

fn req(cc: &str) -> RequestDirectives {
    let mut h = HeaderMap::new();
    if !cc.is_empty() {
        h.insert(CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
    }
    RequestDirectives::from_headers(&h)
}

fn resp(cc: &str) -> ResponseDirectives {
    let mut h = HeaderMap::new();
    h.insert(CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
    ResponseDirectives::from_headers(&h)
}

fn decide(req_cc: &str, resp_cc: &str, lifetime: u64, age: u64) -> Reuse {
    let rq = req(req_cc);
    let rs = resp(resp_cc);
    evaluate_reuse(&ReuseInput {
        request: &rq,
        response: &rs,
        lifetime: Lifetime {
            secs: lifetime,
            heuristic: false,
        },
        current_age: age,
        strip_qualified_no_cache: true,
    })
}

fn must(reason: RevalidateReason) -> Reuse {
    Reuse::MustRevalidate { reason }
}

#[test]
fn fresh_response_is_reused_with_remaining_ttl() {
    assert_eq!(
        decide("", "max-age=100", 100, 40),
        Reuse::Fresh { ttl_secs: 60 }
    );
}

#[test]
fn response_at_exactly_its_lifetime_is_stale() {
    assert_eq!(
        decide("", "max-age=100", 100, 100),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn unqualified_response_no_cache_always_revalidates() {
    assert_eq!(
        decide("", "no-cache, max-age=100", 100, 0),
        must(RevalidateReason::ResponseNoCache)
    );
}

#[test]
fn qualified_no_cache_reusable_when_fields_are_stripped() {
    assert_eq!(
        decide("", r#"no-cache="set-cookie", max-age=100"#, 100, 0),
        Reuse::Fresh { ttl_secs: 100 }
    );
}

#[test]
fn qualified_no_cache_revalidates_when_caller_cannot_strip() {
    let rq = req("");
    let rs = resp(r#"no-cache="set-cookie", max-age=100"#);
    let r = evaluate_reuse(&ReuseInput {
        request: &rq,
        response: &rs,
        lifetime: Lifetime {
            secs: 100,
            heuristic: false,
        },
        current_age: 0,
        strip_qualified_no_cache: false,
    });
    assert_eq!(r, must(RevalidateReason::ResponseNoCache));
}

#[test]
fn request_no_cache_forces_validation_of_fresh_response() {
    assert_eq!(
        decide("no-cache", "max-age=100", 100, 1),
        must(RevalidateReason::RequestNoCache)
    );
}

#[test]
fn request_max_age_exceeded_forces_validation() {
    assert_eq!(
        decide("max-age=10", "max-age=100", 100, 11),
        must(RevalidateReason::RequestMaxAge)
    );
    assert_eq!(
        decide("max-age=10", "max-age=100", 100, 10),
        Reuse::Fresh { ttl_secs: 90 }
    );
}

#[test]
fn request_max_age_zero_revalidates_any_aged_response() {
    assert_eq!(
        decide("max-age=0", "max-age=100", 100, 1),
        must(RevalidateReason::RequestMaxAge)
    );
}

#[test]
fn min_fresh_not_met_forces_validation() {
    assert_eq!(
        decide("min-fresh=30", "max-age=100", 100, 80),
        must(RevalidateReason::MinFresh)
    );
    assert_eq!(
        decide("min-fresh=20", "max-age=100", 100, 80),
        Reuse::Fresh { ttl_secs: 20 }
    );
}

#[test]
fn stale_while_revalidate_window_serves_stale() {
    assert_eq!(
        decide("", "max-age=600, stale-while-revalidate=30", 600, 610),
        Reuse::StaleWhileRevalidate { staleness: 10 }
    );
}

#[test]
fn stale_while_revalidate_window_expires() {
    assert_eq!(
        decide("", "max-age=600, stale-while-revalidate=30", 600, 630),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn must_revalidate_forbids_stale_while_revalidate() {
    assert_eq!(
        decide(
            "",
            "max-age=1, must-revalidate, stale-while-revalidate=30",
            1,
            5
        ),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn proxy_revalidate_forbids_stale_in_shared_cache() {
    assert_eq!(
        decide("max-stale", "max-age=1, proxy-revalidate", 1, 5),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn s_maxage_forbids_serving_stale() {
    // §5.2.2.10: "A shared cache MUST NOT reuse a stale response with s-maxage".
    assert_eq!(
        decide("max-stale", "s-maxage=1, stale-while-revalidate=60", 1, 5),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn max_stale_any_allows_stale() {
    assert_eq!(
        decide("max-stale", "max-age=1", 1, 1000),
        Reuse::StaleAllowedByClient
    );
}

#[test]
fn max_stale_bounded_allows_only_within_limit() {
    assert_eq!(
        decide("max-stale=10", "max-age=5", 5, 15),
        Reuse::StaleAllowedByClient
    );
    assert_eq!(
        decide("max-stale=10", "max-age=5", 5, 16),
        must(RevalidateReason::Stale)
    );
}

#[test]
fn max_stale_does_not_override_request_no_cache() {
    assert_eq!(
        decide("max-stale, no-cache", "max-age=5", 5, 6),
        must(RevalidateReason::RequestNoCache)
    );
}

#[test]
fn stale_while_revalidate_preferred_over_max_stale() {
    assert_eq!(
        decide("max-stale", "max-age=5, stale-while-revalidate=10", 5, 6),
        Reuse::StaleWhileRevalidate { staleness: 1 }
    );
}

#[test]
fn zero_lifetime_is_immediately_stale() {
    assert_eq!(decide("", "max-age=0", 0, 0), must(RevalidateReason::Stale));
}

#[test]
fn stale_if_error_in_response_allows_within_window() {
    let r = resp("max-age=600, stale-if-error=1200");
    assert!(may_serve_stale_on_error(
        &req(""),
        &r,
        300,
        0,
        OriginFailure::Unreachable
    ));
    assert!(may_serve_stale_on_error(
        &req(""),
        &r,
        1200,
        0,
        OriginFailure::Unreachable
    ));
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        1201,
        0,
        OriginFailure::Unreachable
    ));
}

#[test]
fn stale_if_error_in_request_allows_within_window() {
    let r = resp("max-age=600");
    assert!(may_serve_stale_on_error(
        &req("stale-if-error=60"),
        &r,
        60,
        0,
        OriginFailure::Unreachable
    ));
    assert!(!may_serve_stale_on_error(
        &req("stale-if-error=60"),
        &r,
        61,
        0,
        OriginFailure::Unreachable
    ));
}

#[test]
fn stale_if_error_limit_overrides_config_max_stale() {
    let r = resp("max-age=1, stale-if-error=10");
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        100,
        604_800,
        OriginFailure::Unreachable
    ));
}

#[test]
fn must_revalidate_forbids_stale_if_error() {
    let r = resp("max-age=1, must-revalidate, stale-if-error=1000");
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        5,
        604_800,
        OriginFailure::Unreachable
    ));
}

#[test]
fn response_no_cache_forbids_stale_on_error() {
    let r = resp("no-cache, stale-if-error=1000");
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        5,
        604_800,
        OriginFailure::Unreachable
    ));
}

#[test]
fn request_no_cache_forbids_stale_on_error() {
    let r = resp("max-age=1");
    assert!(!may_serve_stale_on_error(
        &req("no-cache"),
        &r,
        5,
        604_800,
        OriginFailure::Unreachable
    ));
}

#[test]
fn config_max_stale_is_the_fallback_when_disconnected() {
    let r = resp("max-age=1");
    assert!(may_serve_stale_on_error(
        &req(""),
        &r,
        100,
        604_800,
        OriginFailure::Unreachable
    ));
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        604_801,
        604_800,
        OriginFailure::Unreachable
    ));
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        1,
        0,
        OriginFailure::Unreachable
    ));
}

#[test]
fn revalidate_reason_strings() {
    assert_eq!(
        RevalidateReason::RequestNoCache.as_str(),
        "request-no-cache"
    );
    assert_eq!(RevalidateReason::Stale.as_str(), "stale");
}

#[test]
fn config_max_stale_covers_an_unreachable_origin_not_a_server_error() {
    // RFC 9111 §4.2.4: only a disconnected cache may serve stale on its own authority; an
    // origin's 5xx is an answer, hidden only where stale-if-error permits it.
    let r = resp("max-age=1");
    assert!(may_serve_stale_on_error(
        &req(""),
        &r,
        100,
        86_400,
        OriginFailure::Unreachable
    ));
    assert!(!may_serve_stale_on_error(
        &req(""),
        &r,
        100,
        86_400,
        OriginFailure::ServerError
    ));
    let r = resp("max-age=1, stale-if-error=1000");
    assert!(may_serve_stale_on_error(
        &req(""),
        &r,
        100,
        0,
        OriginFailure::ServerError
    ));
    assert!(may_serve_stale_on_error(
        &req("stale-if-error=1000"),
        &resp("max-age=1"),
        100,
        0,
        OriginFailure::ServerError
    ));
}
