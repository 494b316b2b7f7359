//! The dependency rules of `src/lib.rs`'s architecture map, checked by reading the sources:
//! pure modules stay pure, `cache` and `upstream` never reach into `proxy`, and only `config`
//! knows the file format. A rule broken here fails the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn sources(under: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(under);
    if root.is_file() {
        return vec![root];
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {under}");
    out
}

/// Lines of `path` outside `#[cfg(test)]` modules and comments.
fn code_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let is_test_file = path
        .file_name()
        .is_some_and(|n| n == "tests.rs" || n == "test_util.rs");
    if is_test_file {
        return Vec::new();
    }
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .map(str::to_owned)
        .collect()
}

fn assert_none(under: &str, forbidden: &[&str], why: &str) {
    for path in sources(under) {
        for line in code_lines(&path) {
            for needle in forbidden {
                assert!(
                    !line.contains(needle),
                    "{}: `{needle}` is not allowed here ({why}): {line}",
                    path.display()
                );
            }
        }
    }
}

const IO: &[&str] = &[
    "tokio",
    "std::net::Tcp",
    "std::fs",
    "SystemTime::now",
    "crate::proxy",
];

#[test]
fn pure_modules_do_no_io_and_read_no_clock() {
    for module in [
        "cache/policy",
        "cache/key.rs",
        "cache/serve.rs",
        "cache/status.rs",
        "cache/invalidate/index.rs",
        "cache/invalidate/tags.rs",
        "cache/invalidate/soft.rs",
        "access",
        "proxy/headers.rs",
        "log/format",
        "log/record.rs",
        "upstream/select",
        "upstream/carp.rs",
        "upstream/hierarchy.rs",
    ] {
        assert_none(module, IO, "pure module: no I/O, no clock, no proxy");
    }
}

#[test]
fn cache_and_upstream_never_reach_into_the_proxy() {
    assert_none(
        "cache",
        &["crate::proxy"],
        "the cache answers, the proxy acts",
    );
    assert_none(
        "upstream",
        &["crate::proxy"],
        "upstream only sends what it is given",
    );
}

#[test]
fn admin_reads_through_narrow_handles_and_metrics_is_a_leaf() {
    assert_none(
        "admin",
        &["crate::proxy"],
        "admin reads metrics and the handles app gives it, never proxy::Shared",
    );
    assert_none(
        "metrics",
        &[
            "crate::proxy",
            "crate::admin",
            "crate::upstream",
            "tokio::sync",
            "std::sync::RwLock",
        ],
        "counters are a leaf the request path writes without locks",
    );
    assert_none(
        "cache/result.rs",
        IO,
        "pure module: no I/O, no clock, no proxy",
    );
}

#[test]
fn only_config_knows_the_file_format() {
    for module in [
        "proxy", "cache", "upstream", "access", "log", "app.rs", "main.rs", "admin", "metrics",
    ] {
        assert_none(module, &["config::file"], "modules own their Config types");
    }
}

#[test]
fn the_wall_clock_is_read_only_in_clock_rs() {
    for path in sources("") {
        if path.ends_with("clock.rs") {
            continue;
        }
        for line in code_lines(&path) {
            assert!(
                !line.contains("SystemTime::now"),
                "{}: read wall time through crate::clock: {line}",
                path.display()
            );
        }
    }
}
