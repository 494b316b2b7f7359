//! The dependency rules of `src/lib.rs`'s architecture map, checked by reading the sources:
//! pure modules stay pure, `cache` and `upstream` never reach into `proxy`, only `config`
//! knows the file format, and no modules inside `proxy` or `cache` import each other in a
//! circle. A rule broken here fails the suite.
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
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // The test module starts at a `#[cfg(test)]` on a `mod` (a test-only field or function
    // elsewhere does not end the code).
    let end = lines
        .windows(2)
        .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .filter(|l| !l.starts_with("//"))
        .map(|l| (*l).to_owned())
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
        "cache/serve.rs",
        "cache/phase.rs",
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
        "chunked.rs",
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

// === import circles ===

/// The module path of a source file: `proxy/caching/mod.rs` is `proxy::caching`,
/// `proxy/body.rs` is `proxy::body`.
fn module_path(file: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = file.strip_prefix(&src).unwrap();
    let mut path: Vec<String> = rel
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = path.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        path.push(stem.to_owned());
    }
    path
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level items of a `{a, b::c, d::{e, f}}` group (without the braces).
fn group_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(group[start..].trim().to_owned());
    items.retain(|i| !i.is_empty());
    items
}

/// The `::`-separated identifiers at the start of `text` (a path), and what follows them.
fn leading_path(text: &str) -> (Vec<String>, &str) {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) if next.starts_with(is_ident_char) => rest = next,
            _ => break,
        }
    }
    (segments, rest)
}

/// Every module path `file` names through `crate::`, `super::` or `self::` (groups expanded),
/// made absolute.
fn references(file: &Path) -> Vec<Vec<String>> {
    let here = module_path(file);
    // `self` is the file's module; `super` is its parent.
    let code = code_lines(file).join(" ");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..]
        .find("crate::")
        .into_iter()
        .chain(code[at..].find("super::"))
        .chain(code[at..].find("self::"))
        .min()
    {
        let start = at + found;
        at = start + 1;
        if code[..start].ends_with(|c: char| is_ident_char(c) || c == ':') {
            continue;
        }
        let mut base: Vec<String> = Vec::new();
        let mut rest = &code[start..];
        if let Some(r) = rest.strip_prefix("crate::") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("self::") {
            base.clone_from(&here);
            rest = r;
        } else {
            base.clone_from(&here);
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
        }
        let (segments, after) = leading_path(rest);
        let mut prefix = base.clone();
        prefix.extend(segments);
        if let Some(group) = after
            .strip_prefix("::{")
            .or_else(|| after.strip_prefix('{'))
        {
            let mut depth = 1;
            let close = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            for item in group_items(&group[..close]) {
                let (segments, _) = leading_path(&item);
                let mut path = prefix.clone();
                path.extend(segments);
                out.push(path);
            }
        } else {
            out.push(prefix);
        }
    }
    out
}

/// Fails if the modules directly inside `dir` (files and folders, each folder counted with
/// everything in it) import each other in a circle, directly or through others.
fn assert_no_circles(dir: &str) {
    let root: Vec<String> = dir.split('/').map(str::to_owned).collect();
    let mut edges = Edges::default();
    let files = sources(dir);
    let children: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| module_path(f))
        .filter(|m| m.len() > root.len() && m[..root.len()] == root[..])
        .map(|m| m[root.len()].clone())
        .collect();
    for file in &files {
        let module = module_path(file);
        if module.len() <= root.len() {
            // The folder's own mod.rs declares its children; it is their parent, not a sibling.
            continue;
        }
        let node = module[root.len()].clone();
        for reference in references(file) {
            if reference.len() > root.len() && reference[..root.len()] == root[..] {
                let target = &reference[root.len()];
                if *target != node && children.contains(target) {
                    edges
                        .entry(node.clone())
                        .or_default()
                        .insert(target.clone());
                }
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        panic!(
            "src/{dir}: modules import each other in a circle: {}",
            circle.join(" -> ")
        );
    }
}

type Edges = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// A path through `edges` that comes back to where it started, if any (depth-first).
fn find_circle(edges: &Edges) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &Edges,
        stack: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut circle = stack[i..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// Every folder under `under` (itself included), as paths relative to `src`.
fn folders(under: &str) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.join(under)];
    while let Some(dir) = stack.pop() {
        out.push(
            dir.strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/"),
        );
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn no_import_circles_inside_proxy_or_cache() {
    for root in ["proxy", "cache"] {
        for dir in folders(root) {
            assert_no_circles(&dir);
        }
    }
}

#[test]
fn the_circle_check_sees_grouped_nested_and_relative_imports() {
    let (segments, rest) = leading_path("proxy::caching::{D, e}");
    assert_eq!(segments, ["proxy", "caching"]);
    assert_eq!(rest, "::{D, e}");
    assert_eq!(
        group_items("a, b::C, d::{e, f}"),
        ["a", "b::C", "d::{e, f}"]
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("proxy")
        .join("caching")
        .join("miss.rs");
    let found = references(&here);
    assert!(
        found
            .iter()
            .any(|r| r == &["proxy", "caching", "exchange", "Exchange"]),
        "{found:?}"
    );
    assert!(
        found.iter().any(|r| r[..2] == ["proxy", "transaction"]),
        "{found:?}"
    );
    // A circle through a third module is found; a chain is not a circle.
    let edges = |pairs: &[(&str, &str)]| {
        let mut edges = Edges::default();
        for (from, to) in pairs {
            edges
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        edges
    };
    let circle = find_circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4);
    assert!(find_circle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
}

/// Issue 15's "one upstream layer": whether a failed next hop may be retried is decided once
/// (`upstream::retry`, from `Error::nothing_sent`, which only the places that make connection
/// errors set), never by a walk reading connection error kinds, and each liveness knob lives in
/// `upstream::liveness` alone.
#[test]
fn the_retry_safety_rule_and_the_liveness_tracker_exist_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = |path: &Path| {
        path.strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/")
    };
    // Where naming these kinds is no retry decision: where they are made, mapped to a status,
    // or told apart for the access log.
    let kinds_allowed = [
        "error.rs",
        "upstream/connect.rs",
        "upstream/h2.rs",
        "proxy/respond.rs",
        "proxy/forward.rs",
    ];
    let mut may_try_next = 0;
    for path in sources("") {
        let name = rel(&path);
        for line in code_lines(&path) {
            if !kinds_allowed.contains(&name.as_str()) {
                for kind in ["ErrorKind::ConnectFailed", "ErrorKind::TlsProtocol"] {
                    assert!(
                        !line.contains(kind),
                        "{name}: `{kind}` outside where errors are made (retry decisions go \
                         through upstream::retry): {line}"
                    );
                }
            }
            if line.contains("fn may_try_next") {
                may_try_next += 1;
            }
            if line.contains("Sent::Nothing") {
                assert_eq!(name, "error.rs", "only error.rs sets Sent::Nothing: {line}");
            }
            if line.contains(".before_sending()") {
                assert!(
                    ["upstream/connect.rs", "upstream/h2.rs"].contains(&name.as_str()),
                    "{name}: only the connector and HTTP/2 setup know nothing was sent: {line}"
                );
            }
            // The tracker's state is nowhere else: no other dead-until or ban timestamps.
            if name != "upstream/liveness.rs" {
                for state in ["dead_until", "banned_until", "probe_failed", "check_ok"] {
                    assert!(
                        !line.contains(state),
                        "{name}: liveness state `{state}` outside upstream::liveness: {line}"
                    );
                }
            }
        }
    }
    assert_eq!(may_try_next, 1, "one retry decision");
}
