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
