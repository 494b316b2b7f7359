//! The cache-policy knobs Squid admins reach for, over real HTTP: `cache deny` rules
//! (`[[cache.access]]`), and their config errors; `store_id`, `negative_ttl` and the
//! `refresh_pattern` options are cache-spec cases (cache-spec/rfc9111-4.2-freshness.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{reply_with, Origin, TestProxy};

#[tokio::test]
async fn cache_deny_rules_bypass_the_cache_for_matching_requests_only() {
    let origin = Origin::builder()
        .route("/x", |_| {
            reply_with(200, "body", &[("cache-control", "max-age=100")])
        })
        .spawn()
        .await;
    let proxy = TestProxy::start(
        "[acl.uncached]\ndstdomain = [\"localhost\"]\n\
         [[cache.access]]\ndeny = [\"uncached\"]\n",
    )
    .await;
    let client = support::http_client(&proxy);
    let port = origin.addr.port();
    let denied = format!("http://localhost:{port}/x");
    for round in 1..=2 {
        let resp = client.get(&denied).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let status = resp.headers()["cache-status"].to_str().unwrap().to_owned();
        assert!(status.contains("fwd=bypass"), "{status}");
        assert!(!status.contains("stored"), "{status}");
        assert_eq!(resp.text().await.unwrap(), "body");
        assert_eq!(
            origin.hits(),
            round,
            "cache deny: every request goes upstream"
        );
    }
    let allowed = origin.url("/x");
    for _ in 0..2 {
        let resp = client.get(&allowed).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "body");
    }
    assert_eq!(origin.hits(), 3, "other requests are cached as usual");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_allow_rule_makes_everything_else_uncached() {
    // Squid's implicit default: no rule matched, so the opposite of the last rule applies.
    let origin = Origin::builder()
        .route("/x", |_| {
            reply_with(200, "body", &[("cache-control", "max-age=100")])
        })
        .spawn()
        .await;
    let proxy = TestProxy::start(
        "[acl.cached]\ndstdomain = [\"localhost\"]\n[[cache.access]]\nallow = [\"cached\"]\n",
    )
    .await;
    let client = support::http_client(&proxy);
    for _ in 0..2 {
        client.get(origin.url("/x")).send().await.unwrap();
    }
    assert_eq!(origin.hits(), 2, "127.0.0.1 is not `cached`: never stored");
    let port = origin.addr.port();
    for _ in 0..2 {
        client
            .get(format!("http://localhost:{port}/x"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(origin.hits(), 3);
    proxy.shutdown().await;
}

fn error_for(src: &str) -> String {
    cuttle::config::load_str("broken.toml", src)
        .unwrap_err()
        .to_string()
}

#[test]
fn policy_knob_errors_name_file_line_and_key() {
    let e = error_for("[[cache.access]]\ndeny = [\"nosuch\"]\n");
    assert!(
        e.starts_with("broken.toml:2: cache.access[0].deny[0]: unknown ACL `nosuch`"),
        "{e}"
    );
    let e = error_for("[[store_id]]\nregex = \"^http://a/(.*)$\"\nreplace = \"http://b/$2\"\n");
    assert!(e.starts_with("broken.toml:3: store_id[0].replace: "), "{e}");
    assert!(e.contains("expected e.g."), "{e}");
    let e = error_for("[[store_id]]\nregex = \"(\"\nreplace = \"x\"\n");
    assert!(
        e.starts_with("broken.toml:2: store_id[0].regex: invalid regex"),
        "{e}"
    );
    let e = error_for("[cache]\nnegative_ttl = \"soon\"\n");
    assert!(e.starts_with("broken.toml:2: cache.negative_ttl: "), "{e}");
    let e = error_for(
        "[[refresh_pattern]]\nregex = \".\"\nmin = \"0s\"\npercent = 1\nmax = \"1d\"\noverride-expires = true\n",
    );
    assert!(
        e.starts_with("broken.toml:6: refresh_pattern[0].override-expires: unknown field"),
        "{e}"
    );
}
