//! `/`: the live dashboard, a page that polls `/status` every 2 s and draws it.
//!
//! Plain HTML, CSS and JS compiled into the binary (no build step, no external assets), each a
//! separate same-origin file so a strict `Content-Security-Policy` (no inline script or style)
//! holds. The page renders everything with `textContent`, never markup, since URLs and names in
//! `/status` come from clients and origins.
//!
//! Key figures have stable element ids and exact forms, so a test (or a scraper) can compare
//! them with `/status` (see the top of `dashboard.js`): `#requests-total` is `requests.total` as
//! a decimal integer without separators; `#hit-ratio` is `cache.hits / cache.lookups` as a
//! percentage with one decimal, the permille rounded half up (`56.3%`), or `n/a` with no lookups.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The policy every dashboard file is served with: same-origin files only, nothing inline,
/// no framing, no forms.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the dashboard.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard.css"),
    },
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("favicon.svg"),
    },
];

/// The dashboard file at `path` (`/`, `/dashboard.css`, `/dashboard.js`, `/favicon.svg`), or
/// `None` when `path` is not one of them.
pub fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    // Typed and `no-store` like every admin answer: the page changes with the binary, so a
    // browser never keeps a stale one.
    let mut response = super::routes::respond(
        StatusCode::OK,
        asset.content_type,
        Bytes::from_static(asset.body.as_bytes()),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(path: &str) -> &'static str {
        ASSETS.iter().find(|a| a.path == path).unwrap().body
    }

    #[test]
    fn every_file_is_served_with_its_type_and_policy() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/dashboard.css", "text/css"),
            ("/dashboard.js", "text/javascript"),
            ("/favicon.svg", "image/svg+xml"),
        ] {
            let response = asset(path).unwrap();
            let h = response.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind));
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert!(asset("/index.html").is_none());
        assert!(asset("/status").is_none());
    }

    #[test]
    fn the_page_needs_nothing_inline_and_nothing_from_elsewhere() {
        let html = body("/");
        // CSP `default-src 'self'` would block these.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/dashboard.js\" defer></script>"));
        assert!(!html.contains("<style"));
        assert!(!html.contains("style="));
        let handler = html.split(" on").skip(1).any(|rest| {
            let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name > 0 && rest.as_bytes().get(name) == Some(&b'=')
        });
        assert!(!handler, "no inline event handlers");
        for file in ["/", "/dashboard.css"] {
            assert!(!body(file).contains("http:") && !body(file).contains("https:"));
            assert!(!body(file).contains("@import") && !body(file).contains("url("));
        }
        // The only URL in the script is the SVG namespace, which is never fetched.
        let js = body("/dashboard.js");
        assert_eq!(js.matches("http").count(), 1);
        assert!(js.contains("\"http://www.w3.org/2000/svg\""));
        assert!(!js.contains("innerHTML") && !js.contains("eval("));
    }

    #[test]
    fn the_key_figures_have_their_ids() {
        let html = body("/");
        for id in [
            "requests-total",
            "hit-ratio",
            "cache-hits",
            "cache-lookups",
            "bytes-saved",
            "bytes-saved-ratio",
            "log-dropped",
            "config-generation",
            "uptime",
            "version",
            "chart-rate",
            "chart-hits",
            "top-urls",
            "upstreams",
            "peers",
            "tiers",
        ] {
            assert_eq!(html.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
        }
    }
}
