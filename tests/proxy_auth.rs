//! Proxy authentication through the real proxy with the real curl: `[auth.basic]` with an
//! htpasswd file (bcrypt, SHA and apr1 entries made here with the crates), a `proxy_auth` ACL
//! in `http_access`, 407 with the realm, credentials never reaching the origin, the user in the
//! access log, failures counted and rate limited, CONNECT authenticated the same way, and the
//! password file read again by a reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use support::{admin_metrics, curl, reply, Origin, TestProxy};

/// The apr1 example of Apache's documentation, for the password `myPassword`.
const CAROL_APR1: &str = "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/";

/// `alice` (bcrypt) and `bob` (SHA) with the given passwords, and `carol` (apr1, myPassword).
fn htpasswd(alice: &str, bob: &str) -> String {
    let bc = bcrypt::hash(alice, 4).unwrap();
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(bob.as_bytes()));
    format!("# made by the test\nalice:{bc}\nbob:{{SHA}}{sha}\ncarol:{CAROL_APR1}\n")
}

/// A forward proxy whose rules are `allow localhost <acl>`, `deny all`, with `acls` defined and
/// `[auth.basic]` on `password_file`, logging in the squid format to `log`.
fn auth_config(dir: &Path, acls: &str, rule: &str, auth_extra: &str) -> String {
    format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n{acls}\n\
         [[http_access]]\nallow = [\"localhost\", {rule}]\n\
         [[http_access]]\ndeny = [\"all\"]\n\
         [auth.basic]\npassword_file = \"{}\"\nrealm = \"cuttle test realm\"\n{auth_extra}\n\
         [forward]\nconnect_ports = [\"1-65535\"]\n\
         [log]\naccess_log = \"{}\"\naccess_log_format = \"squid\"\n",
        dir.join("htpasswd").display(),
        dir.join("access.log").display(),
    )
}

async fn origin() -> Origin {
    Origin::builder()
        .route("/obj", |_| reply(200, "object"))
        .spawn()
        .await
}

/// Runs curl through `proxy` for `url` with `args`; returns (status, headers text, body).
async fn fetch(proxy: &TestProxy, url: &str, args: &[&str]) -> (u16, String, String) {
    let proxy_url = proxy.url();
    let mut all = vec!["-x", proxy_url.as_str(), "-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    all.push(url);
    let out = curl(&all).await;
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?} {:?}", out.stderr));
    (
        status,
        head,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_and_without_proxy_user_bcrypt_sha_apr1_and_a_wrong_password() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("htpasswd"), htpasswd("alice-pw", "bob-pw")).unwrap();
    let text = auth_config(
        dir.path(),
        "authed = { proxy_auth = [\"REQUIRED\"] }",
        "\"authed\"",
        "",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let url = origin.url("/obj");

    // No credentials: 407 with the realm, nothing reaches the origin.
    let (status, head, _) = fetch(&proxy, &url, &[]).await;
    assert_eq!(status, 407, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"cuttle test realm\""),
        "{head}"
    );
    assert_eq!(origin.hits(), 0);

    // bcrypt, SHA and apr1 entries, each with its right password.
    for user in ["alice:alice-pw", "bob:bob-pw", "carol:myPassword"] {
        let (status, head, _) = fetch(&proxy, &url, &["--proxy-user", user]).await;
        assert_eq!(status, 200, "{user}: {head}");
    }
    // A wrong password and an unknown user: 407 again.
    for user in ["alice:bob-pw", "bob:BOB-PW", "dave:alice-pw"] {
        let (status, head, _) = fetch(&proxy, &url, &["--proxy-user", user]).await;
        assert_eq!(status, 407, "{user}: {head}");
        assert!(head.contains("cuttle test realm"), "{head}");
    }
    // The origin saw three requests and never the credentials.
    let seen = origin.requests();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert!(
            !request.headers.contains_key("proxy-authorization"),
            "{:?}",
            request.headers
        );
    }

    // Failures are counted on /metrics.
    let metrics = admin_metrics(proxy.admin.unwrap()).await;
    assert!(
        metrics.contains("cuttle_proxy_auth_failures_total{reason=\"bad_credentials\"} 3"),
        "{metrics}"
    );

    // The squid log's user field names who was let in; the 407s have none.
    proxy.shutdown().await;
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 7, "{log}");
    let user_of = |line: &str| line.split_whitespace().nth(7).unwrap().to_owned();
    let users: Vec<String> = lines.iter().map(|l| user_of(l)).collect();
    assert_eq!(
        users,
        ["-", "alice", "bob", "carol", "-", "-", "-"],
        "{log}"
    );
    assert!(lines[0].contains("TCP_DENIED/407"), "{log}");
    assert!(
        !log.contains("alice-pw") && !log.contains("bob-pw"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_list_lets_in_only_its_users_and_connect_is_authenticated_too() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("htpasswd"), htpasswd("alice-pw", "bob-pw")).unwrap();
    let text = auth_config(
        dir.path(),
        "staff = { proxy_auth = [\"-i\", \"BOB\"] }",
        "\"staff\"",
        "",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let url = origin.url("/obj");
    let (status, _, _) = fetch(&proxy, &url, &["--proxy-user", "alice:alice-pw"]).await;
    assert_eq!(status, 403, "alice is verified but not staff");
    let (status, _, _) = fetch(&proxy, &url, &["--proxy-user", "bob:bob-pw"]).await;
    assert_eq!(status, 200);

    // curl -p: CONNECT to the origin's port, then HTTP inside the tunnel.
    let (status, head, _) = fetch(&proxy, &url, &["-p"]).await;
    assert_eq!(status, 407, "{head}");
    assert!(head.contains("cuttle test realm"), "{head}");
    let before = origin.hits();
    let (status, head, _) = fetch(&proxy, &url, &["-p", "--proxy-user", "bob:bob-pw"]).await;
    // curl prints the CONNECT's 200 head, then the origin's.
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection established"),
        "{head}"
    );
    assert_eq!(origin.hits(), before + 1);
    let tunnelled = origin.requests().pop().unwrap();
    assert!(!tunnelled.headers.contains_key("proxy-authorization"));
    // The tunnel is logged when it closes, after curl has gone: wait for its line.
    let path = dir.path().join("access.log");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let mut log = String::new();
    while !log.contains("TCP_TUNNEL") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = std::fs::read_to_string(&path).unwrap_or_default();
    }
    proxy.shutdown().await;
    let tunnel = log
        .lines()
        .find(|l| l.contains("TCP_TUNNEL"))
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(tunnel.split_whitespace().nth(7), Some("bob"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_failures_an_address_gets_407_unchecked_until_the_window_ends() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("htpasswd"), htpasswd("alice-pw", "bob-pw")).unwrap();
    let text = auth_config(
        dir.path(),
        "authed = { proxy_auth = [\"REQUIRED\"] }",
        "\"authed\"",
        "max_failures = 3\nfailure_window = \"1h\"\n",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let url = origin.url("/obj");
    for _ in 0..3 {
        let (status, _, _) = fetch(&proxy, &url, &["--proxy-user", "alice:guess"]).await;
        assert_eq!(status, 407);
    }
    // Now even the right password is refused without a check.
    let (status, head, _) = fetch(&proxy, &url, &["--proxy-user", "alice:alice-pw"]).await;
    assert_eq!(status, 407, "{head}");
    assert_eq!(origin.hits(), 0);
    let metrics = admin_metrics(proxy.admin.unwrap()).await;
    assert!(
        metrics.contains("cuttle_proxy_auth_failures_total{reason=\"bad_credentials\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cuttle_proxy_auth_failures_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_the_password_file_again() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("htpasswd");
    std::fs::write(&passwords, htpasswd("old-pw", "bob-pw")).unwrap();
    let file = dir.path().join("cuttle.toml");
    let text = auth_config(
        dir.path(),
        "authed = { proxy_auth = [\"REQUIRED\"] }",
        "\"authed\"",
        "",
    )
    .replace("[log]\n", "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\n");
    std::fs::write(&file, &text).unwrap();
    let source = cuttle::config::Source {
        path: Some(file.clone()),
        overrides: cuttle::config::Overrides::default(),
    };
    let config = source.load().unwrap();
    let server = cuttle::app::start_with(config, cuttle::clock::system(), Some(source))
        .await
        .unwrap();
    let proxy_url = format!("http://{}", server.addr().unwrap());
    let url = origin.url("/obj");
    let status = |user: &'static str| {
        let (proxy_url, url) = (proxy_url.clone(), url.clone());
        async move {
            let out = curl(&[
                "-x",
                &proxy_url,
                "--proxy-user",
                user,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ])
            .await;
            String::from_utf8(out.stdout).unwrap()
        }
    };
    assert_eq!(status("alice:old-pw").await, "200");
    std::fs::write(&passwords, htpasswd("new-pw", "bob-pw")).unwrap();
    server.control().reload().await.unwrap();
    // The verified-credentials cache went with the old generation.
    assert_eq!(status("alice:old-pw").await, "407");
    assert_eq!(status("alice:new-pw").await, "200");

    // A broken password file is refused with its line, and the old one keeps working.
    std::fs::write(&passwords, "alice:plaintext\n").unwrap();
    let err = server.control().reload().await.unwrap_err().to_string();
    assert!(
        err.contains("auth.basic.password_file") && err.contains("htpasswd:1: unsupported hash"),
        "{err}"
    );
    assert_eq!(status("alice:new-pw").await, "200");
    server.shutdown().await;
}
