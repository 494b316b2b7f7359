//! Every example config loads, the embedded default is the secure forward proxy the README
//! promises, and broken configs are reported as `file:line: key: reason`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cuttle::access::{AccessRequest, Verdict};
use cuttle::config;
use http::Method;

/// Files in conf/ that are not cuttle configs, each with the test that checks it.
const NOT_CONFIGS: &[(&str, &str)] = &[
    ("cuttle.service", "the_systemd_unit_is_valid_and_hardened"),
    (
        "auth.htpasswd",
        "the_auth_example_asks_the_office_for_credentials_and_knows_its_users",
    ),
];

#[test]
fn every_file_in_conf_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        } else {
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                NOT_CONFIGS.iter().any(|(file, _)| *file == name),
                "conf/{name} is checked by no test"
            );
        }
    }
    assert!(loaded >= 1, "no configs in {}", dir.display());
}

/// A systemd unit file: (section, key, value) in file order, comments and blank lines left out.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("cuttle.service:{}: not key=value: {line}", i + 1));
        assert!(
            !section.is_empty(),
            "cuttle.service:{}: outside a section",
            i + 1
        );
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

#[test]
fn the_systemd_unit_is_valid_and_hardened() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/cuttle.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let entries = parse_unit(&text);
    let values = |section: &str, key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |section: &str, key: &str| -> String {
        let found = values(section, key);
        assert_eq!(found.len(), 1, "[{section}] {key}: {found:?}");
        found[0].to_owned()
    };
    assert_eq!(
        one("Service", "ExecStart"),
        "/usr/local/bin/cuttle --config /etc/cuttle/cuttle.toml"
    );
    assert_eq!(
        one("Service", "ExecStartPre"),
        "/usr/local/bin/cuttle check --config /etc/cuttle/cuttle.toml"
    );
    assert_eq!(one("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Service", "User"), "cuttle");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("ReadWritePaths", "/var/cache/cuttle /var/log/cuttle"),
        ("CacheDirectory", "cuttle"),
        ("LogsDirectory", "cuttle"),
    ] {
        assert_eq!(one("Service", key), value, "[Service] {key}");
    }
    let nofile: u64 = one("Service", "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 65536, "LimitNOFILE={nofile}");
    // The drain (timeouts.shutdown, 30s by default) ends before systemd's SIGKILL.
    let stop = one("Service", "TimeoutStopSec").parse::<u64>().unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop}");
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");

    // systemd's own checker reads the unit too: every key known, every
    // value valid, the hardening scored. The ExecStart binary must exist, so the checked copy
    // runs the binary under test instead of /usr/local/bin/cuttle.
    let version = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by .ci/run) checks the unit");
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cuttle.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/cuttle", env!("CARGO_BIN_EXE_cuttle")),
    )
    .unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // Exposure 0.0 (locked down) to 10.0 (unprotected); the threshold is in tenths.
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{report}{}",
        String::from_utf8_lossy(&security.stderr)
    );
}

fn allowed(rules: &cuttle::access::Rules, src: &str, method: Method, port: u16) -> bool {
    rules.check(&AccessRequest {
        src: src.parse().unwrap(),
        host: "example.com",
        port,
        method: &method,
        dst: None,
        facts: Default::default(),
    }) == Verdict::Allow
}

#[test]
fn embedded_default_is_a_closed_forward_proxy_on_3128_with_both_cache_tiers() {
    let cfg = config::load_default().unwrap();
    assert_eq!(cfg.proxy.listeners.len(), 1);
    assert_eq!(cfg.proxy.listeners[0].addr.to_string(), "127.0.0.1:3128");
    assert!(cfg.cache.memory.max_size > 0);
    let disk = cfg.cache.disk.as_ref().expect("disk tier configured");
    assert!(
        disk.path.ends_with(".cache/cuttle"),
        "{}",
        disk.path.display()
    );
    assert_eq!(cfg.proxy.forward.connect_ports, vec![(443, 443)]);

    let rules = &cfg.access;
    for src in [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "fd12::1",
        "fe80::1",
        "169.254.1.1",
    ] {
        assert!(
            allowed(rules, src, Method::GET, 80),
            "{src} should be allowed"
        );
    }
    for src in ["8.8.8.8", "2001:db8::1", "172.32.0.1", "11.0.0.1"] {
        assert!(
            !allowed(rules, src, Method::GET, 80),
            "{src} must be denied: never an open proxy"
        );
    }
    assert!(allowed(rules, "127.0.0.1", Method::CONNECT, 443));
    assert!(!allowed(rules, "127.0.0.1", Method::CONNECT, 8443));
    assert!(!allowed(rules, "127.0.0.1", Method::GET, 25));
}

#[test]
fn the_office_example_keeps_clients_off_this_machine() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/forward.toml");
    let cfg = config::load_file(&dir).unwrap();
    let rules = &cfg.access;
    // Squid's `deny to_localhost`: no client reaches this machine or metadata addresses.
    for target in ["127.0.0.1", "[::1]", "169.254.169.254"] {
        let verdict = rules.check(&AccessRequest {
            src: "192.168.10.5".parse().unwrap(),
            host: target,
            port: 80,
            method: &Method::GET,
            dst: None,
            facts: Default::default(),
        });
        assert!(
            matches!(verdict, Verdict::Deny(_)),
            "{target} must be denied"
        );
    }
    assert!(allowed(rules, "192.168.10.5", Method::GET, 80));
}

fn error_for(src: &str) -> String {
    config::load_str("broken.toml", src)
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_file_line_and_key() {
    assert_eq!(
        error_for("[forward]\nvia = true\nbogus = 1\n"),
        "broken.toml:3: forward.bogus: unknown field `bogus`, expected one of `connect_ports`, `forwarded_for`, `via`, `pass_proxy_authorization`, `http_upgrade_request_protocols`"
    );
    let e = error_for("[acl]\nlocalnet = { src = [\"10.0.0.0/8\", \"10.0.0.0/99\"] }\n");
    assert!(e.starts_with("broken.toml:2: acl.localnet.src[1]: "), "{e}");
    assert!(e.contains("10.0.0.0/99"), "{e}");
    let e = error_for("[acl]\nlocalnet = { src = [\"10.0.0.0/8\"] }\n\n[[http_access]]\nallow = [\"localnet\"]\n\n[[http_access]]\ndeny = [\n  \"all\",\n  \"lcalnet\",\n]\n");
    assert_eq!(
        e,
        "broken.toml:10: http_access[1].deny[1]: unknown ACL `lcalnet` (define it under [acl])"
    );
    let e = error_for("[timeouts]\nread = \"forever\"\n");
    assert!(e.starts_with("broken.toml:2: timeouts.read: "), "{e}");
    let e = error_for("[[http_access]]\nallow = [\"all\"]\ndeny = [\"all\"]\n");
    assert!(
        e.starts_with("broken.toml:1: http_access[0]: each rule needs exactly one"),
        "{e}"
    );
    let e = error_for("[limits]\nmax_connections = \"many\"\n");
    assert!(
        e.starts_with("broken.toml:2: limits.max_connections: invalid type"),
        "{e}"
    );
    let e = error_for("[cache.memory]\nmax_size = \"1 MiB\"\nmax_object_size = \"2 MiB\"\n");
    assert!(
        e.starts_with("broken.toml:3: cache.memory.max_object_size: "),
        "{e}"
    );
    let e = error_for("visible_hostname = \"has space\"\n");
    assert!(e.starts_with("broken.toml:1: visible_hostname: "), "{e}");
    let e = error_for("[http_port\n");
    assert!(e.starts_with("broken.toml:1: "), "{e}");
}

#[test]
fn cdn_cache_control_is_a_default_targeted_field_only_for_accelerators() {
    let forward = config::load_default().unwrap();
    let names: Vec<&str> = forward
        .cache
        .behaviour
        .targeted_fields
        .iter()
        .map(|h| h.as_str())
        .collect();
    assert_eq!(names, ["cuttle-cache-control"]);
    let reverse = config::load_str(
        "r.toml",
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [[site]]\nhosts = [\"*\"]\nupstream = \"a\"\n\
         [upstream.a]\nservers = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap();
    let names: Vec<&str> = reverse
        .cache
        .behaviour
        .targeted_fields
        .iter()
        .map(|h| h.as_str())
        .collect();
    assert_eq!(names, ["cuttle-cache-control", "cdn-cache-control"]);
}

#[test]
fn reverse_config_errors_name_their_keys() {
    let e = config::load_str(
        "r.toml",
        "[[site]]\nhosts = [\"*\"]\nupstream = \"missing\"\n\
         [upstream.a]\nservers = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("r.toml:3: site[0].upstream: unknown upstream group `missing`"),
        "{e}"
    );
    let e = config::load_str(
        "r.toml",
        "[upstream.a]\nalgorithm = \"fastest\"\nservers = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("r.toml:2: upstream.a.algorithm: `fastest` is not one of"),
        "{e}"
    );
    let e = config::load_str(
        "r.toml",
        "[upstream.a]\nservers = [{ address = \"no-port\" }]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("upstream.a.servers[0]"), "{e}");
    // host:port in shape, but not an authority a request URI can carry.
    for bad in ["a b:80", "a/b:80"] {
        let e = config::load_str(
            "r.toml",
            &format!("[upstream.a]\nservers = [{{ address = \"{bad}\" }}]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("upstream.a.servers[0]") && e.contains(bad),
            "{e}"
        );
    }
    let e = config::load_str(
        "r.toml",
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a reverse port needs at least one [[site]]"),
        "{e}"
    );
}

#[test]
fn sizes_durations_and_addresses_show_the_expected_form() {
    let e = error_for("[cache.memory]\nmax_size = \"lots\"\n");
    assert_eq!(
        e,
        "broken.toml:2: cache.memory.max_size: `lots` is not a size like \"256 MiB\", \"64 KiB\" or a number of bytes"
    );
    let e = error_for("[cache.disk]\npath = \"\"\nmax_object_size = -1\n");
    assert!(
        e.starts_with(
            "broken.toml:3: cache.disk.max_object_size: `-1` is not a size like \"256 MiB\""
        ),
        "{e}"
    );
    let e = error_for("[limits]\nmax_request_header_size = true\n");
    assert!(
        e.starts_with("broken.toml:2: limits.max_request_header_size: invalid type")
            && e.contains("\"256 MiB\""),
        "{e}"
    );
    let e = error_for("[cache]\nrange_offset_limit = \"1 parsec\"\n");
    assert!(e.contains("\"256 MiB\""), "{e}");
    let e = error_for("[timeouts]\nconnect = \"soon\"\n");
    assert!(
        e.starts_with("broken.toml:2: timeouts.connect: `soon` is not a duration like \"30s\""),
        "{e}"
    );
    let e = error_for("[[http_port]]\nlisten = \"localhost:3128\"\n");
    assert_eq!(
        e,
        "broken.toml:2: http_port[0].listen: `localhost:3128` is not an IP address and port like \"127.0.0.1:3128\" or \"[::1]:3128\""
    );
    let e = error_for("[[http_port]]\nlisten = 3128\n");
    assert!(
        e.starts_with("broken.toml:2: http_port[0].listen: invalid type")
            && e.contains("\"127.0.0.1:3128\""),
        "{e}"
    );
    let e = error_for("[upstream.a]\nservers = [{ address = \"app\" }]\n");
    assert!(
        e.starts_with(
            "broken.toml:2: upstream.a.servers[0]: `app` is not host:port like \"127.0.0.1:8080\""
        ),
        "{e}"
    );
    // Sizes still take the forms they took before.
    let cfg = config::load_str(
        "ok.toml",
        "[cache.memory]\nmax_size = \"64 MiB\"\nmax_object_size = 1048576\n[cache.disk]\npath = \"\"\n",
    )
    .unwrap();
    assert_eq!(cfg.cache.memory.max_size, 64 << 20);
    assert_eq!(cfg.cache.memory.max_object_size, 1 << 20);
}

#[test]
fn log_level_must_name_a_level() {
    let e = error_for("[log]\nlevel = \"verbose\"\n");
    assert_eq!(
        e,
        "broken.toml:2: log.level: `verbose` is not a level: use one of off, error, warn, info, debug, trace, or directives like \"warn,cuttle=debug\""
    );
    let e = error_for("[log]\nlevel = \"info,cuttle=loud\"\n");
    assert!(
        e.starts_with("broken.toml:2: log.level: `loud` is not a level"),
        "{e}"
    );
    for ok in ["debug", "OFF", "warn,cuttle=debug", "cuttle::cache=trace"] {
        let text = format!("[log]\nlevel = \"{ok}\"\n");
        let cfg = config::load_str("ok.toml", &text).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(cfg.log.level, ok);
    }
}

#[test]
fn access_log_and_cache_dir_must_be_usable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let missing = dir.path().join("missing");

    let log = |path: &std::path::Path| {
        format!(
            "[cache.disk]\npath = \"\"\n\n[log]\naccess_log = \"{}\"\n",
            path.display()
        )
    };
    let e = error_for(&log(&missing.join("access.log")));
    assert_eq!(
        e,
        format!(
            "broken.toml:5: log.access_log: cannot open `{}`: `{}` does not exist",
            missing.join("access.log").display(),
            missing.display()
        )
    );
    let e = error_for(&log(&file.join("access.log")));
    assert!(
        e.starts_with("broken.toml:5: log.access_log: ") && e.contains("is not a directory"),
        "{e}"
    );
    let e = error_for(&log(dir.path()));
    assert!(e.contains("is a directory, not a file"), "{e}");
    // A usable log: an existing one is neither truncated nor replaced, a new one not left behind.
    let existing = dir.path().join("access.log");
    std::fs::write(&existing, "old line\n").unwrap();
    config::load_str("ok.toml", &log(&existing)).unwrap();
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "old line\n");
    let fresh = dir.path().join("fresh.log");
    config::load_str("ok.toml", &log(&fresh)).unwrap();
    assert!(!fresh.exists());

    let cache = |path: &std::path::Path| format!("[cache.disk]\npath = \"{}\"\n", path.display());
    let e = error_for(&cache(&file));
    assert!(
        e.starts_with("broken.toml:2: cache.disk.path: ") && e.contains("is not a directory"),
        "{e}"
    );
    let e = error_for(&cache(&file.join("cache")));
    assert!(
        e.starts_with(&format!(
            "broken.toml:2: cache.disk.path: cannot create `{}`",
            file.join("cache").display()
        )),
        "{e}"
    );
    // A directory that can be created passes, and the check does not leave it behind.
    config::load_str("ok.toml", &cache(&missing.join("cache"))).unwrap();
    assert!(!missing.exists());
}

#[test]
fn access_log_format_and_strip_query_terms() {
    let c = config::load_str(
        "l.toml",
        "[log]\naccess_log_format = \"json\"\nstrip_query_terms = false\n",
    )
    .unwrap();
    assert_eq!(c.log.access_log_format.format, cuttle::log::Format::Json);
    assert!(!c.log.access_log_format.strip_query_terms);
    let c = config::load_default().unwrap();
    assert_eq!(c.log.access_log_format, cuttle::log::LineFormat::default());
    assert!(
        c.log.access_log_format.strip_query_terms,
        "on by default, as in Squid"
    );
    assert_eq!(
        error_for("[log]\naccess_log = \"none\"\naccess_log_format = \"apache\"\n"),
        "broken.toml:3: log.access_log_format: unknown variant `apache`, expected one of `squid`, `combined`, `json`"
    );
}

#[test]
fn the_service_install_edits_of_the_readme_apply_to_the_default_config() {
    // README "Installing as a service" moves the cache and the access log with two `sed`
    // substitutions anchored at the start of these lines.
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let log = dir.path().join("access.log");
    let mut text = String::new();
    let mut replaced = 0;
    for line in config::DEFAULT_CONFIG.lines() {
        let (pattern, value) = if line.starts_with("path = \"~/.cache/cuttle\"") {
            (
                "s|^path = \"~/.cache/cuttle\"|path = \"/var/cache/cuttle\"|",
                &cache,
            )
        } else if line.starts_with("access_log = \"stdout\"") {
            (
                "s|^access_log = \"stdout\"|access_log = \"/var/log/cuttle/access.log\"|",
                &log,
            )
        } else {
            text.push_str(line);
            text.push('\n');
            continue;
        };
        assert!(readme.contains(pattern), "README lacks {pattern}");
        let key = line.split(" = ").next().unwrap();
        text.push_str(&format!("{key} = \"{}\"\n", value.display()));
        replaced += 1;
    }
    assert_eq!(replaced, 2, "each substitution matches one line");
    let cfg = config::load_str("cuttle.toml", &text).unwrap();
    assert_eq!(cfg.cache.disk.unwrap().path, cache);
    assert_eq!(cfg.log.access_log, cuttle::log::Target::File(log));
}

#[test]
fn the_mirror_example_stores_each_package_once_whichever_mirror() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/mirror.toml");
    let config = config::load_file(&path).unwrap();
    let behaviour = &config.cache.behaviour;
    let key = |url: &str| behaviour.store_id(url.to_owned());
    let file = "/debian/pool/main/c/curl/curl_8.5.0-2_amd64.deb";
    let canonical = key(&format!("http://deb.debian.org{file}"));
    assert_eq!(canonical, format!("http://debian.store-id.internal{file}"));
    assert_eq!(key(&format!("http://ftp.de.debian.org{file}")), canonical);
    assert_eq!(
        key("http://security.debian.org/debian-security/pool/x.deb"),
        "http://security.debian.org/debian-security/pool/x.deb",
        "other archives keep their own keys"
    );
    assert_eq!(
        key("http://de.archive.ubuntu.com/ubuntu/pool/a.deb"),
        key("http://archive.ubuntu.com/ubuntu/pool/a.deb")
    );
    // Package files are content-addressed: fresh for the pattern's 90 days even if the mirror
    // says max-age=0; Release files are not.
    let deb = behaviour
        .refresh_pattern_for(&format!("http://deb.debian.org{file}"))
        .unwrap();
    assert!(deb.override_expire && deb.heuristic.min_secs == 90 * 86_400);
    let release = behaviour
        .refresh_pattern_for("http://deb.debian.org/debian/dists/stable/InRelease")
        .unwrap();
    assert!(!release.override_expire);
}

#[test]
fn the_auth_example_asks_the_office_for_credentials_and_knows_its_users() {
    use cuttle::access::time::LocalTime;
    use cuttle::access::RequestFacts;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = config::load_file(&dir.join("conf/auth.toml")).unwrap();
    let auth = cfg.auth.as_ref().expect("[auth.basic] is configured");
    assert_eq!(auth.challenge(), "Basic realm=\"Office proxy\"");
    let users = &auth.config().users;
    assert_eq!(users.len(), 3);
    for user in ["alice", "bob", "carol"] {
        assert!(users.verify(user, "myPassword"), "{user}");
        assert!(!users.verify(user, "mypassword"), "{user}");
    }
    // Tuesday 10:00 and Sunday 10:00, local time.
    let tuesday = LocalTime {
        weekday: 2,
        minute: 600,
    };
    let sunday = LocalTime {
        weekday: 0,
        minute: 600,
    };
    let check = |src: &str, url: &str, user: Option<&str>, at: LocalTime| {
        let uri: http::Uri = url.parse().unwrap();
        cfg.access.check(&AccessRequest {
            src: src.parse().unwrap(),
            host: uri.host().unwrap(),
            port: 80,
            method: &Method::GET,
            dst: None,
            facts: RequestFacts {
                url,
                path: uri.path_and_query().map_or("", |p| p.as_str()),
                user_agent: Some(b"curl/8.5.0"),
                local_time: Some(at),
                client_connections: 1,
                user,
                can_challenge: true,
                server_name: None,
            },
        })
    };
    let office = "192.168.10.5";
    let page = "http://www.example.com/";
    let setup = "http://www.example.com/setup.EXE";
    assert!(matches!(
        check(office, page, None, tuesday),
        Verdict::AuthRequired(_)
    ));
    assert_eq!(check(office, page, Some("bob"), tuesday), Verdict::Allow);
    assert!(matches!(
        check(office, setup, Some("bob"), tuesday),
        Verdict::Deny(_)
    ));
    assert_eq!(check(office, setup, Some("alice"), tuesday), Verdict::Allow);
    assert!(matches!(
        check(office, setup, Some("alice"), sunday),
        Verdict::Deny(_)
    ));
    assert!(matches!(
        check("203.0.113.9", page, None, tuesday),
        Verdict::Deny(_)
    ));
    assert_eq!(check("127.0.0.1", page, None, sunday), Verdict::Allow);
    let tracker = "http://eu.tracking.example.net/p.gif";
    assert!(matches!(
        check("127.0.0.1", tracker, None, tuesday),
        Verdict::Deny(_)
    ));
}

#[test]
fn acl_and_auth_errors_name_file_line_and_key_with_an_example() {
    let e = error_for("[acl]\nexe = { url_regex = [\"-i\", \"(unclosed\"] }\n");
    assert!(e.starts_with("broken.toml:2: acl.exe: bad regex"), "{e}");
    assert!(e.contains("url_regex = [\"-i\""), "{e}");
    let e = error_for("[acl]\nflags = { browser = [\"-i\"] }\n");
    assert!(e.starts_with("broken.toml:2: acl.flags: no pattern"), "{e}");
    let e = error_for("[acl]\nwork = { time = [\"MTWXF\", \"08:00-17:00\"] }\n");
    assert!(
        e.starts_with("broken.toml:2: acl.work: `X` in `MTWXF`"),
        "{e}"
    );
    assert!(e.contains("time = [\"MTWHF\", \"08:00-17:00\"]"), "{e}");
    let e = error_for("[acl]\nwork = { time = [\"17:00-08:00\"] }\n");
    assert!(e.contains("the start must be before the end"), "{e}");
    let e = error_for("[acl]\nusers = { proxy_auth = [\"REQUIRED\"] }\n");
    assert!(
        e.starts_with("broken.toml:2: acl.users: proxy_auth needs [auth.basic]"),
        "{e}"
    );
    let e = error_for("[acl]\nc = { maxconn = -1 }\n");
    assert!(e.starts_with("broken.toml:2: acl.c.maxconn: "), "{e}");
    let e = error_for("[auth.basic]\npassword_file = \"/nonexistent/htpasswd\"\n");
    assert!(
        e.starts_with("broken.toml:2: auth.basic.password_file: cannot read /nonexistent/htpasswd"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, "# users\nalice:crypt.DES.x\n").unwrap();
    let e = error_for(&format!(
        "[auth.basic]\nrealm = \"x\"\npassword_file = \"{}\"\n",
        file.display()
    ));
    assert!(
        e.starts_with(&format!(
            "broken.toml:3: auth.basic.password_file: {}:2: unsupported hash",
            file.display()
        )),
        "{e}"
    );
    assert!(e.contains("htpasswd -B"), "{e}");
    std::fs::write(&file, "").unwrap();
    let e = error_for(&format!(
        "[auth.basic]\npassword_file = \"{}\"\nmax_failures = 0\n",
        file.display()
    ));
    assert!(
        e.starts_with("broken.toml:3: auth.basic.max_failures: must be at least 1"),
        "{e}"
    );
}

#[test]
fn an_upgrade_protocol_must_be_a_bare_token() {
    let e = error_for("[reverse]\nhttp_upgrade_request_protocols = [\"websocket\", \"IRC/6.9\"]\n");
    assert!(
        e.starts_with("broken.toml:2: reverse.http_upgrade_request_protocols[1]: `IRC/6.9`"),
        "{e}"
    );
    assert!(
        e.contains("http_upgrade_request_protocols = [\"websocket\"]"),
        "{e}"
    );
}

#[test]
fn peer_names_must_be_unique_and_monitors_well_formed() {
    let peer = |extra: &str| {
        format!("[[peer]]\nhost = \"127.0.0.1\"\nport = 3128\ntype = \"parent\"\n{extra}\n")
    };
    // Two peers on one host, neither named: both would be called `127.0.0.1`.
    let e = error_for(&format!("{}{}", peer(""), peer("").replace("3128", "3129")));
    assert!(e.starts_with("broken.toml:6: peer[1].name: "), "{e}");
    assert!(e.contains("add") || e.contains("give each"), "{e}");
    assert!(e.contains("name = \"127.0.0.1-3129\""), "{e}");
    // Two peers given one name.
    let e = error_for(&format!(
        "{}{}",
        peer("name = \"up\""),
        peer("name = \"up\"").replace("3128", "3129")
    ));
    assert!(e.starts_with("broken.toml:"), "{e}");
    assert!(
        e.contains("peer[1].name: `up` is already the name of peer 0"),
        "{e}"
    );
    // Named apart, they load.
    config::load_str(
        "ok.toml",
        &format!(
            "{}{}",
            peer("name = \"a\""),
            peer("name = \"b\"").replace("3128", "3129")
        ),
    )
    .unwrap();
    let e = error_for(&peer("monitorurl = \"/health\""));
    assert!(
        e.contains("peer[0].monitorurl: `/health` is not an absolute http:// URL"),
        "{e}"
    );
    let e = error_for(&peer("monitorinterval = \"30s\""));
    assert!(
        e.contains("peer[0].monitorurl: monitorinterval and monitortimeout need"),
        "{e}"
    );
    let e = error_for(&peer(
        "monitorurl = \"http://o.example/\"\nmonitorinterval = \"0s\"",
    ));
    assert!(
        e.contains("peer[0].monitorinterval: must be more than 0"),
        "{e}"
    );
    let e = error_for("unique_hostname = \"two words\"\n");
    assert!(e.starts_with("broken.toml:1: unique_hostname: "), "{e}");
    config::load_str("ok.toml", "unique_hostname = \"proxy.example:3129\"\n").unwrap();
}

#[test]
fn icp_keys_load_with_squid_defaults_and_bad_values_name_their_keys() {
    let default = config::load_default().unwrap();
    assert_eq!(default.proxy.icp.port, None, "ICP is off by default");
    let icp = &default.proxy.icp.access;
    assert!(allowed(icp, "127.0.0.1", Method::GET, 80));
    assert!(allowed(icp, "10.1.2.3", Method::GET, 80));
    assert!(
        !allowed(icp, "192.0.2.7", Method::GET, 80),
        "others are denied"
    );

    let cfg = config::load_str(
        "icp.toml",
        "icp_port = \"127.0.0.1:3130\"\nicp_query_timeout = \"300ms\"\n\
         [acl]\nlan = { src = [\"192.0.2.0/24\"] }\n\
         [[icp_access]]\nallow = [\"lan\"]\n[[icp_access]]\ndeny = [\"all\"]\n\
         [[peer]]\nhost = \"127.0.0.1\"\nport = 3128\nicp_port = 3130\ntype = \"sibling\"\n",
    )
    .unwrap();
    assert_eq!(cfg.proxy.icp.port, Some("127.0.0.1:3130".parse().unwrap()));
    assert_eq!(
        cfg.proxy.icp.query_timeout,
        std::time::Duration::from_millis(300)
    );
    assert!(allowed(&cfg.proxy.icp.access, "192.0.2.7", Method::GET, 80));
    assert!(!allowed(
        &cfg.proxy.icp.access,
        "127.0.0.1",
        Method::GET,
        80
    ));
    let peers = cfg.proxy.hierarchy.unwrap().peers;
    assert_eq!(peers[0].icp_port, Some(3130));

    let e = error_for("icp_port = \"3130\"\n");
    assert!(e.starts_with("broken.toml:1: icp_port: "), "{e}");
    assert!(e.contains("127.0.0.1:3128"), "shows the form: {e}");
    assert_eq!(
        error_for("icp_query_timeout = \"0s\"\n"),
        "broken.toml:1: icp_query_timeout: must be greater than zero, like icp_query_timeout = \"500ms\""
    );
    let e = error_for("[[icp_access]]\nallow = [\"nowhere\"]\n");
    assert!(
        e.starts_with("broken.toml:2: icp_access[0].allow[0]: unknown ACL `nowhere`"),
        "{e}"
    );
}
