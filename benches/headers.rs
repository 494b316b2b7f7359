//! What does the per-request header work cost on the forward path?
//!
//! Measures the pure steps every forwarded request pays: hop-by-hop stripping, the `Via`
//! append and loop check, `X-Forwarded-For`, the `http_access` check against the default
//! rules, and formatting one access-log line in each format (in the writer task, not on
//! the request path, but it bounds how many lines per second one writer keeps up with). Run with `cargo bench --bench headers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use cuttle::access::AccessRequest;
use cuttle::log::access::{format_squid, AccessRecord};
use cuttle::log::{Format, LineFormat};
use cuttle::proxy::headers::{apply_forwarded_for, strip_request, ForwardedFor, ViaIdentity};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

/// A typical browser request's fields, as a forward proxy receives them.
fn browser_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("proxy-connection", "keep-alive"),
        ("connection", "keep-alive"),
        ("upgrade-insecure-requests", "1"),
        ("cookie", "session=abcdef0123456789; theme=dark"),
        ("if-modified-since", "Sat, 01 Jan 2026 00:00:00 GMT"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn bench_headers(c: &mut Criterion) {
    let via = ViaIdentity::new("proxy.example.net").unwrap();
    let template = browser_request();
    let client = "192.168.1.20".parse().unwrap();
    c.bench_function("rewrite_request_headers", |b| {
        b.iter(|| {
            let mut h = template.clone();
            strip_request(&mut h, false);
            assert!(!via.is_loop(&h));
            via.append(&mut h, Version::HTTP_11);
            apply_forwarded_for(&mut h, ForwardedFor::On, client);
            black_box(h)
        });
    });
    c.bench_function("clone_request_headers_baseline", |b| {
        b.iter(|| black_box(template.clone()));
    });
}

fn bench_access(c: &mut Criterion) {
    let config = cuttle::config::load_default().unwrap();
    let method = Method::GET;
    let req = AccessRequest {
        src: "192.168.1.20".parse().unwrap(),
        host: "www.example.com",
        port: 80,
        method: &method,
        dst: None,
        facts: Default::default(),
    };
    c.bench_function("http_access_default_rules", |b| {
        b.iter(|| black_box(config.access.check(black_box(&req))));
    });
}

fn bench_log(c: &mut Criterion) {
    let record = AccessRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        elapsed: Duration::from_millis(45),
        client: cuttle::log::access::client_text("192.168.1.20".parse().unwrap()),
        code: "TCP_MISS",
        status: 200,
        bytes: 12_345,
        body_bytes: 12_000,
        method: Method::GET,
        url: "http://www.example.com/index.html?q=1".into(),
        origin_form: false,
        version: Version::HTTP_11,
        user: None,
        hierarchy: "HIER_DIRECT",
        peer: Some("www.example.com".into()),
        upstream_addr: Some("192.0.2.10:80".parse().unwrap()),
        upstream_wait: Some(Duration::from_micros(1_234)),
        content_type: Some(HeaderValue::from_static("text/html")),
        cache_status: Some(HeaderValue::from_static("cuttle; fwd=miss; stored")),
        referer: Some(HeaderValue::from_static("http://www.example.com/")),
        user_agent: Some(HeaderValue::from_static(
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )),
    };
    let mut line = String::with_capacity(512);
    c.bench_function("format_squid_access_line", |b| {
        b.iter(|| {
            line.clear();
            format_squid(black_box(&record), &mut line);
            black_box(line.len())
        });
    });
    for format in [Format::Combined, Format::Json] {
        let format = LineFormat {
            format,
            strip_query_terms: true,
        };
        c.bench_function(&format!("format_{}_access_line", format.format), |b| {
            b.iter(|| {
                line.clear();
                format.write(black_box(&record), &mut line);
                black_box(line.len())
            });
        });
    }
}

criterion_group!(benches, bench_headers, bench_access, bench_log);
criterion_main!(benches);
