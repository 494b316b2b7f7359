//! What do the cache's per-request decisions cost?
//!
//! Measures the pure steps of a hit and of storing a miss: parsing `Cache-Control` (response and
//! request), the freshness lifetime and current age (RFC 9111 §4.2), the reuse decision (§4),
//! the primary key and the Vary secondary key (§2, §4.1), compacting a response head for storage
//! and rebuilding the served header map from it. Run with `cargo bench --bench cache_policy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use cuttle::cache::key::{primary_key, secondary_key, vary_fields};
use cuttle::cache::meta::{StoredFields, StoredHead};
use cuttle::cache::policy::{
    current_age, effective_response_directives, evaluate_reuse, freshness_lifetime, AgeInputs,
    Heuristic, RequestDirectives, ResponseDirectives, ReuseInput,
};
use cuttle::cache::serve::serve_stored;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in fields {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

/// The response fields nginx sends for a static file, plus the ones a CDN origin adds.
fn origin_response() -> HeaderMap {
    map(&[
        ("server", "nginx/1.22.1"),
        ("date", "Sat, 01 Aug 2026 10:00:00 GMT"),
        ("content-type", "text/css"),
        ("content-length", "1024"),
        ("last-modified", "Wed, 01 Jul 2026 08:00:00 GMT"),
        ("etag", "\"66a1f0c0-400\""),
        (
            "cache-control",
            "public, max-age=3600, stale-while-revalidate=60",
        ),
        ("vary", "Accept-Encoding"),
        ("accept-ranges", "bytes"),
    ])
}

fn browser_request() -> HeaderMap {
    map(&[
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/css,*/*;q=0.1"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cache-control", "max-age=0"),
    ])
}

fn bench_parsing(c: &mut Criterion) {
    let response = origin_response();
    let request = browser_request();
    c.bench_function("cache_control_response", |b| {
        b.iter(|| ResponseDirectives::from_headers(black_box(&response)))
    });
    c.bench_function("cache_control_response_targeted_absent", |b| {
        let targeted = [HeaderName::from_static("cdn-cache-control")];
        b.iter(|| effective_response_directives(black_box(&response), &targeted))
    });
    c.bench_function("cache_control_request", |b| {
        b.iter(|| RequestDirectives::from_headers(black_box(&request)))
    });
}

fn bench_freshness(c: &mut Criterion) {
    let response = origin_response();
    let directives = ResponseDirectives::from_headers(&response);
    let request_time = UNIX_EPOCH + Duration::from_secs(1_785_578_399);
    let response_time = request_time + Duration::from_secs(1);
    let now = response_time + Duration::from_secs(100);
    let heuristic = Heuristic::default();
    c.bench_function("freshness_lifetime", |b| {
        b.iter(|| {
            freshness_lifetime(
                StatusCode::OK,
                black_box(&response),
                &directives,
                response_time,
                &heuristic,
            )
        })
    });
    c.bench_function("age_inputs_from_headers", |b| {
        b.iter(|| AgeInputs::from_headers(black_box(&response), request_time, response_time))
    });
    let inputs = AgeInputs::from_headers(&response, request_time, response_time);
    let lifetime = freshness_lifetime(
        StatusCode::OK,
        &response,
        &directives,
        response_time,
        &heuristic,
    );
    let request = RequestDirectives::default();
    c.bench_function("current_age_and_reuse_decision", |b| {
        b.iter(|| {
            let age = current_age(black_box(&inputs), black_box(now));
            evaluate_reuse(&ReuseInput {
                request: &request,
                response: &directives,
                lifetime,
                current_age: age,
                strip_qualified_no_cache: false,
            })
        })
    });
}

fn bench_keys(c: &mut Criterion) {
    let uri: Uri = "http://www.example.com/static/css/site.css?v=20260801"
        .parse()
        .unwrap();
    let response = origin_response();
    let request = browser_request();
    c.bench_function("primary_key", |b| b.iter(|| primary_key(black_box(&uri))));
    c.bench_function("vary_spec_and_secondary_key", |b| {
        b.iter(|| {
            let spec = vary_fields(black_box(&response));
            secondary_key(&spec, black_box(&request))
        })
    });
}

fn bench_heads(c: &mut Criterion) {
    let response = origin_response();
    c.bench_function("store_head_compact_fields", |b| {
        b.iter(|| StoredFields::from_map(black_box(&response)))
    });
    c.bench_function("clone_response_map_baseline", |b| {
        b.iter(|| black_box(&response).clone())
    });
    let head = StoredHead {
        status: StatusCode::OK,
        headers: StoredFields::from_map(&response),
        request_time: SystemTime::UNIX_EPOCH,
        response_time: SystemTime::UNIX_EPOCH,
        url: "http://www.example.com/static/css/site.css".into(),
        body_len: 1024,
        derived: Default::default(),
    };
    let request = map(&[("host", "www.example.com"), ("accept", "*/*")]);
    c.bench_function("serve_stored_head", |b| {
        b.iter(|| {
            serve_stored(
                &Method::GET,
                black_box(&request),
                &head,
                100,
                true,
                head.response_time,
            )
        })
    });
}

criterion_group!(
    benches,
    bench_parsing,
    bench_freshness,
    bench_keys,
    bench_heads
);
criterion_main!(benches);
