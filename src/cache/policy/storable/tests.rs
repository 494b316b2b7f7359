use super::*;
use http::header::HeaderValue;

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

struct Case {
    method: Method,
    req: HeaderMap,
    status: u16,
    resp: HeaderMap,
    content_length: Option<u64>,
    complete: bool,
    allow_partial: bool,
}

impl Case {
    fn new(status: u16, resp: &[(&'static str, &str)]) -> Self {
        Case {
            method: Method::GET,
            req: HeaderMap::new(),
            status,
            resp: hm(resp),
            content_length: None,
            complete: true,
            allow_partial: false,
        }
    }

    fn check(&self) -> Result<(), NotStorable> {
        let rq = RequestDirectives::from_headers(&self.req);
        let rs = ResponseDirectives::from_headers(&self.resp);
        check_storable(&StoreInput {
            method: &self.method,
            request_headers: &self.req,
            request: &rq,
            status: StatusCode::from_u16(self.status).unwrap(),
            response_headers: &self.resp,
            response: &rs,
            content_length: self.content_length,
            max_object_size: 1000,
            complete: self.complete,
            allow_partial: self.allow_partial,
            extra_permission: false,
        })
    }
}

#[test]
fn plain_200_is_storable_heuristically() {
    assert_eq!(Case::new(200, &[]).check(), Ok(()));
}

#[test]
fn only_get_and_head_are_stored() {
    let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
    c.method = Method::POST;
    assert_eq!(c.check(), Err(NotStorable::Method));
    c.method = Method::HEAD;
    assert_eq!(c.check(), Ok(()));
}

#[test]
fn non_final_and_304_statuses_are_not_stored() {
    assert_eq!(Case::new(103, &[]).check(), Err(NotStorable::Status));
    assert_eq!(
        Case::new(304, &[("cache-control", "max-age=60")]).check(),
        Err(NotStorable::Status)
    );
}

#[test]
fn partial_content_needs_partial_support() {
    let mut c = Case::new(206, &[]);
    assert_eq!(c.check(), Err(NotStorable::Partial));
    c.allow_partial = true;
    assert_eq!(c.check(), Ok(()));
}

#[test]
fn incomplete_response_needs_partial_support_and_get_200() {
    let mut c = Case::new(200, &[]);
    c.complete = false;
    assert_eq!(c.check(), Err(NotStorable::Incomplete));
    c.allow_partial = true;
    assert_eq!(c.check(), Ok(()));
    let mut c = Case::new(404, &[]);
    c.complete = false;
    c.allow_partial = true;
    assert_eq!(c.check(), Err(NotStorable::Incomplete));
}

#[test]
fn response_no_store_prevents_storage() {
    assert_eq!(
        Case::new(200, &[("cache-control", "no-store, max-age=60")]).check(),
        Err(NotStorable::NoStore)
    );
}

#[test]
fn request_no_store_prevents_storage() {
    let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
    c.req = hm(&[("cache-control", "no-store")]);
    assert_eq!(c.check(), Err(NotStorable::NoStore));
}

#[test]
fn must_understand_overrides_no_store_for_understood_status() {
    // §5.2.2.3: "SHOULD ignore the no-store directive if it understands ...".
    let c = Case::new(
        200,
        &[("cache-control", "must-understand, no-store, max-age=60")],
    );
    assert_eq!(c.check(), Ok(()));
}

#[test]
fn must_understand_with_unknown_status_is_not_stored() {
    let c = Case::new(
        299,
        &[("cache-control", "must-understand, no-store, max-age=60")],
    );
    assert_eq!(c.check(), Err(NotStorable::Status));
}

#[test]
fn unknown_status_with_explicit_freshness_is_storable() {
    assert_eq!(
        Case::new(299, &[("cache-control", "max-age=60")]).check(),
        Ok(())
    );
}

#[test]
fn unqualified_private_not_stored_by_shared_cache() {
    assert_eq!(
        Case::new(200, &[("cache-control", "private, max-age=60")]).check(),
        Err(NotStorable::Private)
    );
}

#[test]
fn qualified_private_is_storable_with_fields_stripped() {
    let c = Case::new(
        200,
        &[("cache-control", r#"private="Set-Cookie", max-age=60"#)],
    );
    assert_eq!(c.check(), Ok(()));
    let d = ResponseDirectives::from_headers(&c.resp);
    assert_eq!(
        fields_to_strip(&d),
        vec![HeaderName::from_static("set-cookie")]
    );
}

#[test]
fn qualified_no_cache_fields_are_not_stripped() {
    let d = ResponseDirectives::from_headers(&hm(&[("cache-control", r#"no-cache="x-a""#)]));
    assert!(fields_to_strip(&d).is_empty());
}

#[test]
fn authorization_requires_explicit_shared_permission() {
    let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
    c.req = hm(&[("authorization", "Basic Zm9vOmJhcg==")]);
    assert_eq!(c.check(), Err(NotStorable::Authorization));
    for allow in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
        c.resp = hm(&[("cache-control", allow)]);
        assert_eq!(c.check(), Ok(()), "{allow}");
    }
}

#[test]
fn vary_star_is_refused() {
    assert_eq!(
        Case::new(200, &[("vary", "*")]).check(),
        Err(NotStorable::VaryStar)
    );
}

#[test]
fn non_heuristic_status_without_freshness_is_not_stored() {
    assert_eq!(
        Case::new(302, &[]).check(),
        Err(NotStorable::NoFreshnessInfo)
    );
    assert_eq!(
        Case::new(500, &[]).check(),
        Err(NotStorable::NoFreshnessInfo)
    );
}

#[test]
fn expires_or_public_or_s_maxage_make_other_statuses_storable() {
    assert_eq!(Case::new(302, &[("expires", "0")]).check(), Ok(()));
    assert_eq!(
        Case::new(307, &[("cache-control", "public")]).check(),
        Ok(())
    );
    assert_eq!(
        Case::new(303, &[("cache-control", "s-maxage=5")]).check(),
        Ok(())
    );
}

#[test]
fn targeted_directives_ignore_expires_for_storage() {
    let resp = hm(&[("expires", "Thu, 01 Dec 2094 16:00:00 GMT")]);
    let rs = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    let req = HeaderMap::new();
    let rq = RequestDirectives::default();
    let r = check_storable(&StoreInput {
        method: &Method::GET,
        request_headers: &req,
        request: &rq,
        status: StatusCode::FOUND,
        response_headers: &resp,
        response: &rs,
        content_length: None,
        max_object_size: 10,
        complete: true,
        allow_partial: false,
        extra_permission: false,
    });
    assert_eq!(r, Err(NotStorable::NoFreshnessInfo));
}

#[test]
fn oversized_object_is_too_large() {
    let mut c = Case::new(200, &[]);
    c.content_length = Some(1001);
    assert_eq!(c.check(), Err(NotStorable::TooLarge));
    c.content_length = Some(1000);
    assert_eq!(c.check(), Ok(()));
}

#[test]
fn reasons_are_kebab_case() {
    assert_eq!(NotStorable::NoFreshnessInfo.as_str(), "no-freshness-info");
    assert_eq!(NotStorable::VaryStar.to_string(), "vary-star");
    assert_eq!(NotStorable::TooLarge.as_str(), "too-large");
}

#[test]
fn storage_excludes_hop_by_hop_and_proxy_auth_fields() {
    let h = hm(&[("connection", "close, X-Conn-Opt")]);
    let ex = storage_excluded_fields(&h, &ResponseDirectives::default());
    for n in [
        "connection",
        "x-conn-opt",
        "keep-alive",
        "transfer-encoding",
        "proxy-authenticate",
        "proxy-authentication-info",
    ] {
        assert!(ex.iter().any(|e| e.as_str() == n), "{n}");
    }
    assert!(!ex.iter().any(|e| e.as_str() == "content-type"));
}
