//! The `cuttle` command itself: --help, --print-default-config, `check`, overrides, and a real
//! run ended by SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

#[test]
fn help_lists_the_everyday_options() {
    let out = run_cuttle(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--config",
        "--listen",
        "--cache-dir",
        "--log-level",
        "--workers",
        "--origin",
        "--print-default-config",
        "check",
        "127.0.0.1:3128",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn print_default_config_round_trips_through_check() {
    let out = run_cuttle(&["--print-default-config"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout.clone()).unwrap(),
        cuttle::config::DEFAULT_CONFIG
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = run_cuttle(&["check", "--config", file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let check = run_cuttle(&["check"]);
    assert!(check.status.success());
}

#[test]
fn check_reports_file_line_and_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[http_port]]\nlisten = \"127.0.0.1:3128\"\n\n[timeouts]\nconect = \"5s\"\n",
    )
    .unwrap();
    let out = run_cuttle(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}:5: timeouts.conect: unknown field `conect`",
            file.display()
        )),
        "{stderr}"
    );
    let missing = run_cuttle(&["check", "--config", "/nonexistent/cuttle.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/cuttle.toml"));
}

#[tokio::test]
async fn binary_serves_with_overrides_and_exits_cleanly_on_sigterm() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "from origin"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("disk-cache");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[acl]\nlocalhost = {{ src = [\"127.0.0.1\"] }}\n[[http_access]]\nallow = [\"localhost\"]\n[cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n",
            dir.path().join("unused").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(cuttle_bin())
        .args([
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--cache-dir",
        ])
        .arg(&cache)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr = std::io::BufRead::lines(&mut stderr)
        .take(50)
        .map(Result::unwrap)
        .find_map(|line| {
            let rest = line.strip_prefix("cuttle: listening on ")?;
            Some(rest.split(' ').next()?.to_owned())
        })
        .expect("listening line");
    assert!(
        cache.is_dir(),
        "--cache-dir created the disk cache directory"
    );
    assert!(
        !dir.path().join("unused").exists(),
        "--cache-dir replaced the configured path"
    );
    let out = curl(&["-x", &format!("http://{addr}"), &origin.url("/")]).await;
    assert_eq!(out.stdout, b"from origin");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Names of the process's threads, from /proc.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect()
}

#[test]
fn workers_sets_the_runtime_threads() {
    let one = CuttleProcess::start(&["--workers", "1"]);
    assert_eq!(one.workers, 1, "--workers 1 runs one worker");
    let three = CuttleProcess::start(&["--workers", "3"]);
    assert_eq!(three.workers, 3);
    let names = thread_names(three.child.id());
    assert!(
        names.iter().filter(|n| *n == "cuttle-worker").count() >= 3,
        "three runtime threads: {names:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.toml");
    std::fs::write(&file, "workers = 2\n").unwrap();
    let from_file = CuttleProcess::start(&["--config", file.to_str().unwrap()]);
    assert_eq!(from_file.workers, 2, "the config's workers is used");
    let default = CuttleProcess::start(&[]);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(default.workers, cores, "workers = 0 means one per core");
}

/// `cuttle check --config FILE` on `text` written to FILE in `dir`: (exit code, stderr).
fn check_text(dir: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let file = dir.join("check.toml");
    std::fs::write(&file, text).unwrap();
    let out = run_cuttle(&["check", "--config", file.to_str().unwrap()]);
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

/// Asserts that `text` is refused with `cuttle: check.toml:LINE: KEY: ...` containing `reason`.
fn assert_refused(dir: &std::path::Path, text: &str, line_and_key: &str, reason: &str) {
    let (code, stderr) = check_text(dir, text);
    assert_eq!(code, Some(1), "{text}\n{stderr}");
    let expected = format!("{}:{line_and_key}: ", dir.join("check.toml").display());
    assert!(
        stderr.starts_with(&format!("cuttle: {expected}")) && stderr.contains(reason),
        "{text}\nwanted `{expected}...{reason}`, got: {stderr}"
    );
}

#[test]
fn check_refuses_a_log_level_that_would_silence_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let no_disk = "[cache.disk]\npath = \"\"\n";
    assert_refused(
        dir.path(),
        &format!("{no_disk}[log]\nlevel = \"verbose\"\n"),
        "4: log.level",
        "`verbose` is not a level: use one of off, error, warn, info, debug, trace",
    );
    let (code, stderr) = check_text(
        dir.path(),
        &format!("{no_disk}[log]\nlevel = \"warn,cuttle=debug\"\n"),
    );
    assert_eq!(code, Some(0), "EnvFilter directives are accepted: {stderr}");
    let out = run_cuttle(&["--log-level", "verbose", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`verbose` is not a level"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_opens_the_access_log_and_the_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let missing = dir.path().join("no-such-dir");
    let no_disk = "[cache.disk]\npath = \"\"\n";
    assert_refused(
        dir.path(),
        &format!(
            "{no_disk}[log]\naccess_log = \"{}\"\n",
            missing.join("access.log").display()
        ),
        "4: log.access_log",
        &format!("`{}` does not exist", missing.display()),
    );
    assert_refused(
        dir.path(),
        &format!(
            "{no_disk}[log]\naccess_log = \"{}\"\n",
            file.join("access.log").display()
        ),
        "4: log.access_log",
        "is not a directory",
    );
    assert_refused(
        dir.path(),
        &format!(
            "[cache.disk]\npath = \"{}\"\n",
            file.join("cache").display()
        ),
        "2: cache.disk.path",
        &format!("cannot create `{}`", file.join("cache").display()),
    );
    assert_refused(
        dir.path(),
        &format!("[cache.disk]\npath = \"{}\"\n", file.display()),
        "2: cache.disk.path",
        "is not a directory",
    );
    // What can be used passes, and check leaves nothing behind.
    let log = dir.path().join("logs/access.log");
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let (code, stderr) = check_text(
        dir.path(),
        &format!(
            "[cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"{}\"\n",
            missing.join("cache").display(),
            log.display()
        ),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!missing.exists() && !log.exists());
    // `--cache-dir` is checked the same way at start-up.
    let out = run_cuttle(&[
        "--config",
        dir.path().join("check.toml").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--cache-dir",
        file.join("cache").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cache-dir: cannot create"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reads_and_parses_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let port = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[cache.disk]\npath = \"\"\n[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        )
    };
    let (code, stderr) = check_text(dir.path(), &port(&cert_file, &key_file));
    assert_eq!(code, Some(0), "{stderr}");
    assert_refused(
        dir.path(),
        &port(&missing, &key_file),
        "5: http_port[0].tls.cert",
        "cannot read",
    );
    assert_refused(
        dir.path(),
        &port(&garbage, &key_file),
        "5: http_port[0].tls.cert",
        "holds no PEM certificate",
    );
    assert_refused(
        dir.path(),
        &port(&cert_file, &missing),
        "5: http_port[0].tls.key",
        "cannot read",
    );
    assert_refused(
        dir.path(),
        &port(&cert_file, &garbage),
        "5: http_port[0].tls.key",
        "no PEM private key",
    );
    let group = |ca: &std::path::Path| {
        format!(
            "[cache.disk]\npath = \"\"\n[upstream.app]\nservers = [{{ address = \"127.0.0.1:1\" }}]\n\
             tls = true\ntls_ca_file = \"{}\"\n",
            ca.display()
        )
    };
    let (code, stderr) = check_text(dir.path(), &group(&cert_file));
    assert_eq!(code, Some(0), "{stderr}");
    assert_refused(
        dir.path(),
        &group(&missing),
        "6: upstream.app.tls_ca_file",
        "cannot read",
    );
    assert_refused(
        dir.path(),
        &group(&garbage),
        "6: upstream.app.tls_ca_file",
        "holds no usable PEM certificate",
    );
}

#[test]
fn check_shows_the_expected_form_of_sizes_durations_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused(
        dir.path(),
        "[cache.memory]\nmax_size = \"big\"\n",
        "2: cache.memory.max_size",
        "`big` is not a size like \"256 MiB\"",
    );
    assert_refused(
        dir.path(),
        "[timeouts]\nread = \"a while\"\n",
        "2: timeouts.read",
        "is not a duration like \"30s\"",
    );
    assert_refused(
        dir.path(),
        "[[http_port]]\nlisten = \"proxy:3128\"\n",
        "2: http_port[0].listen",
        "`proxy:3128` is not an IP address and port like \"127.0.0.1:3128\"",
    );
    let out = run_cuttle(&["--listen", "proxy:3128", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`proxy:3128` is not an IP address and port like 127.0.0.1:3128"),
        "{stderr}"
    );
}

/// Starts `cuttle ARGS` and returns its stderr lines up to the worker-count line, then stops it.
fn startup_lines(args: &[&str], home: &std::path::Path) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(cuttle_bin())
        .args(args)
        .args(["--log-level", "warn"])
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().take(100) {
            let Ok(line) = line else { return };
            let last = line.contains(" worker thread");
            if tx.send(line).is_err() || last {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(WAIT) {
        let last = line.contains(" worker thread");
        lines.push(line);
        if last {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn startup_lines_name_the_config_ports_cache_log_peers_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let cache = dir.path().join("cache");
    let log = dir.path().join("access.log");
    let file = dir.path().join("cuttle.toml");
    std::fs::write(
        &file,
        format!(
            "[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
             [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n\
             [[site]]\nhosts = [\"*\"]\nupstream = \"app\"\n\
             [upstream.app]\nservers = [{{ address = \"127.0.0.1:1\" }}, {{ address = \"127.0.0.1:2\" }}]\n\
             [[peer]]\nhost = \"127.0.0.1\"\nport = 3\ntype = \"parent\"\nname = \"p1\"\n\
             [cache.memory]\nmax_size = \"32 MiB\"\n\
             [cache.disk]\npath = \"{}\"\nmax_size = \"2 GiB\"\n\
             [log]\naccess_log = \"{}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            cert_file.display(),
            key_file.display(),
            cache.display(),
            log.display()
        ),
    )
    .unwrap();
    let lines = startup_lines(&["--config", file.to_str().unwrap()], dir.path());
    let text = lines.join("\n");
    let listening: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("cuttle: listening on 127.0.0.1:"))
        .collect();
    assert_eq!(listening.len(), 2, "{text}");
    assert!(listening[0].ends_with(" (forward)"), "{text}");
    assert!(!listening[0].contains(":0 "), "bound port shown: {text}");
    assert!(
        listening[1].ends_with(&format!(" (reverse, tls with {}, h2)", cert_file.display())),
        "{text}"
    );
    for expected in [
        format!("cuttle: config {}", file.display()),
        "cuttle: memory cache 32 MiB, objects up to 1 MiB".to_owned(),
        format!(
            "cuttle: disk cache {}, 2 GiB, objects up to 128 MiB",
            cache.display()
        ),
        format!("cuttle: access log {}, squid format", log.display()),
        "cuttle: peer p1: parent at 127.0.0.1:3, weight 1".to_owned(),
        "cuttle: parent selection first_up".to_owned(),
        "cuttle: upstream app: round_robin over 127.0.0.1:1, 127.0.0.1:2".to_owned(),
        "cuttle: site * / -> upstream app".to_owned(),
    ] {
        assert!(
            lines.contains(&expected),
            "missing `{expected}` in:\n{text}"
        );
    }
    assert!(
        lines.iter().any(|l| l
            .strip_prefix("cuttle: admin listener on http://127.0.0.1:")
            .is_some_and(|rest| !rest.starts_with("0/") && rest.contains("/metrics"))),
        "the admin listener's bound address: {text}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with(" worker threads") || l.ends_with(" worker thread")),
        "{text}"
    );

    // The embedded default names itself; --cache-dir and no disk tier show up as such.
    let lines = startup_lines(&["--listen", "127.0.0.1:0"], dir.path());
    assert!(
        lines.contains(
            &"cuttle: config <embedded default> (cuttle --print-default-config shows it)"
                .to_owned()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "cuttle: disk cache {}, 1 GiB, objects up to 128 MiB",
            dir.path().join(".cache/cuttle").display()
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"cuttle: access log to stdout, squid format".to_owned()),
        "{lines:?}"
    );
    let off = dir.path().join("off.toml");
    std::fs::write(
        &off,
        "[cache.disk]\npath = \"\"\n[log]\naccess_log = \"none\"\n",
    )
    .unwrap();
    let lines = startup_lines(
        &["--config", off.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    for expected in ["cuttle: disk tier off", "cuttle: access log off"] {
        assert!(lines.contains(&expected.to_owned()), "{lines:?}");
    }
}
