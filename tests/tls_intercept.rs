//! TLS interception (`[tls_intercept]`) end to end over loopback: a TLS origin with its own
//! test CA (trusted by cuttle through `tls_ca_file`), cuttle's CA made by `cuttle ca init`, and
//! real clients (curl, Python `requests`, headless Chromium with the CA in an NSS database).
//!
//! Names: the bumped origin is `localhost` (it resolves from /etc/hosts; nothing leaves
//! 127.0.0.0/8), the spliced one the address `127.0.0.1` (no rule names it: splice is the
//! default), the denied one `127.0.0.2` (refused before any connection is made).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::certs::{Ca, TlsOrigin};
use support::{curl, run_cuttle, TestProxy, WAIT};
use tokio::net::TcpListener;

const BODY: &str = "registry index: bumped, cached and served";
const PAGE: &str = "<!doctype html><html><head><title>bumped</title></head>\
    <body><h1 id=\"greeting\">Hello through a bumped tunnel</h1></body></html>";

/// What the test origin serves: the file, the page, anything else uncached-looking.
fn answer(path: &str) -> Response<Full<Bytes>> {
    let (body, kind) = match path {
        "/file" => (BODY, "text/plain"),
        "/page.html" => (PAGE, "text/html"),
        _ => ("secret", "text/plain"),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert("cache-control", "max-age=300".parse().unwrap());
    r.headers_mut()
        .insert("content-type", kind.parse().unwrap());
    r
}

/// The pieces of one test: temp dir, cuttle's CA (by `cuttle ca init`), the origin CA.
struct Setup {
    dir: tempfile::TempDir,
    cuttle_ca: PathBuf,
    cuttle_key: PathBuf,
    origin_ca: Ca,
    origin_ca_file: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let out = run_cuttle(&["ca", "init", "--dir", ca_dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let origin_ca = Ca::new("origin test CA");
        let origin_ca_file = dir.path().join("origin-ca.pem");
        std::fs::write(&origin_ca_file, &origin_ca.pem).unwrap();
        Self {
            cuttle_ca: ca_dir.join("cuttle-ca.pem"),
            cuttle_key: ca_dir.join("cuttle-ca.key"),
            dir,
            origin_ca,
            origin_ca_file,
        }
    }

    /// An origin whose certificate (signed by the origin CA) names `names`.
    async fn origin(&self, names: &[&str]) -> TlsOrigin {
        let (cert, key) = self.origin_ca.leaf(names);
        TlsOrigin::spawn(&cert, &key, Arc::new(answer)).await
    }

    /// cuttle with `[tls_intercept]`: `localhost` bumped, `127.0.0.2` denied, the rest
    /// spliced; `http_access` refuses URLs under `/secret`; the access log in the temp dir.
    async fn proxy(&self) -> TestProxy {
        let access = "[[http_access]]\ndeny = [\"secret\"]\n\
                      [[http_access]]\nallow = [\"localhost\"]\n\
                      [[http_access]]\ndeny = [\"all\"]\n";
        let extra = format!(
            "[acl.bumped]\n\"ssl::server_name\" = [\"localhost\"]\n\
             [acl.refused]\n\"ssl::server_name\" = [\"127.0.0.2\"]\n\
             [acl.secret]\nurl_regex = [\"^https://localhost:[0-9]+/secret\"]\n\
             [forward]\nconnect_ports = [\"1-65535\"]\n\
             [log]\naccess_log = \"{log}\"\n\
             [tls_intercept]\nca_cert = \"{cert}\"\nca_key = \"{key}\"\ntls_ca_file = \"{roots}\"\n\
             [[tls_intercept.rule]]\ndeny = [\"refused\"]\n\
             [[tls_intercept.rule]]\nbump = [\"bumped\"]\n",
            log = self.access_log().display(),
            cert = self.cuttle_ca.display(),
            key = self.cuttle_key.display(),
            roots = self.origin_ca_file.display(),
        );
        let text = support::config_with_access(self.dir.path(), access, &extra);
        TestProxy::start_text(&text, None).await
    }

    fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

/// `curl -v --cacert CA -x proxy url`: (status line's code, headers + body on stdout, stderr).
async fn curl_through(
    proxy: &TestProxy,
    ca: &Path,
    url: &str,
    extra: &[&str],
) -> (String, String, i32) {
    let proxy_url = proxy.url();
    let mut args = vec![
        "-v",
        "--include",
        "--cacert",
        ca.to_str().unwrap(),
        "-x",
        &proxy_url,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await;
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// The status line of the last response in curl's `--include` output (after the CONNECT's).
fn last_status(out: &str) -> &str {
    out.lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .unwrap_or_else(|| panic!("no status line in:\n{out}"))
        .trim()
}

/// The value of header `name` in curl's `--include` output (the last response's).
fn header(out: &str, name: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
}

/// The issuer of the server certificate curl saw, from its `-v` output.
fn issuer(verbose: &str) -> String {
    verbose
        .lines()
        .find(|l| l.contains("issuer:"))
        .unwrap_or_else(|| panic!("no issuer line in:\n{verbose}"))
        .to_owned()
}

/// Waits (bounded) until the access log has a line containing every one of `needles`.
async fn logged(path: &Path, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access log line with {needles:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a counter's samples in the Prometheus text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn curl_gets_the_body_through_a_bumped_tunnel_and_then_a_hit() {
    let setup = Setup::new();
    let origin = setup.origin(&["localhost"]).await;
    let proxy = setup.proxy().await;
    let url = format!("https://localhost:{}/file", origin.addr.port());

    let (out, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(BODY), "{out}");
    // ALPN chose h2 with curl (which offers it first).
    assert_eq!(last_status(&out), "HTTP/2 200", "{out}");
    // The client saw cuttle's minted certificate, issued by cuttle's CA.
    assert!(issuer(&err).contains("cuttle interception CA"), "{err}");
    assert_eq!(origin.hits(), 1);

    // The second request, over HTTP/1.1 this time, is a hit.
    let (out, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &["--http1.1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(BODY), "{out}");
    assert_eq!(last_status(&out), "HTTP/1.1 200 OK", "{out}");
    assert_eq!(origin.hits(), 1, "the second request must be a hit");
    let status = header(&out, "cache-status").unwrap_or_default();
    assert!(status.contains("hit"), "Cache-Status: {status}\n{out}");

    // The access log has the full https URL of each request, and the CONNECT.
    let line = logged(&setup.access_log(), &["TCP_MISS/200", &url]).await;
    assert!(line.contains("GET"), "{line}");
    logged(&setup.access_log(), &["HIT/200", &url]).await;
    logged(
        &setup.access_log(),
        &["CONNECT", &format!("localhost:{}", origin.addr.port())],
    )
    .await;
    // And the metrics count the hit.
    let metrics = support::admin_metrics(proxy.admin.unwrap()).await;
    assert!(
        counter(&metrics, "cuttle_cache_hits_total") >= 1.0,
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_access_sees_the_full_url_inside_a_bumped_tunnel() {
    let setup = Setup::new();
    let origin = setup.origin(&["localhost"]).await;
    let proxy = setup.proxy().await;
    let url = format!("https://localhost:{}/secret/keys", origin.addr.port());
    let (out, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(last_status(&out), "HTTP/2 403", "{out}");
    assert!(!out.contains("\r\n\r\nsecret"), "{out}");
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_spliced_name_shows_the_origins_own_certificate() {
    let setup = Setup::new();
    let origin = setup.origin(&["127.0.0.1"]).await;
    let proxy = setup.proxy().await;
    let url = format!("https://127.0.0.1:{}/file", origin.addr.port());
    // Trusting only the origin's CA: the tunnel is untouched.
    let (out, err, code) = curl_through(&proxy, &setup.origin_ca_file, &url, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(BODY), "{out}");
    assert!(issuer(&err).contains("origin test CA"), "{err}");
    // Trusting only cuttle's CA, it fails: nothing was minted for this name.
    let (_, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &[]).await;
    assert_ne!(code, 0, "{err}");
    logged(&setup.access_log(), &["TCP_TUNNEL/200", "CONNECT"]).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_denied_name_is_refused_before_any_connection() {
    let setup = Setup::new();
    let proxy = setup.proxy().await;
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://127.0.0.2:{port}/file");
    let (_, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &[]).await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("403"), "{err}");
    // Nobody connected to the denied name.
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the denied origin was connected to");
    logged(&setup.access_log(), &["TCP_DENIED/403", "CONNECT"]).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_origin_with_a_bad_certificate_gets_the_client_an_error_page() {
    let setup = Setup::new();
    // Signed by the trusted origin CA, but for another name.
    let wrong_name = setup.origin(&["wrong.test"]).await;
    // For the right name, but signed by a CA cuttle does not trust.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.leaf(&["localhost"]);
    let untrusted = TlsOrigin::spawn(&cert, &key, Arc::new(answer)).await;
    let proxy = setup.proxy().await;
    for origin in [&wrong_name, &untrusted] {
        let url = format!("https://localhost:{}/file", origin.addr.port());
        let (out, err, code) = curl_through(&proxy, &setup.cuttle_ca, &url, &[]).await;
        assert_eq!(
            code, 0,
            "the client gets a page, not a broken handshake: {err}"
        );
        assert_eq!(last_status(&out), "HTTP/2 502", "{out}");
        let status = header(&out, "proxy-status").unwrap_or_default();
        assert!(status.contains("error=tls_certificate_error"), "{status}");
        assert!(!out.contains(BODY), "{out}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn python_requests_verifies_the_minted_certificate() {
    let setup = Setup::new();
    let origin = setup.origin(&["localhost"]).await;
    let proxy = setup.proxy().await;
    let url = format!("https://localhost:{}/file", origin.addr.port());
    let script = "import sys, requests\n\
                  p = {'https': sys.argv[2]}\n\
                  r = requests.get(sys.argv[1], proxies=p, verify=sys.argv[3], timeout=20)\n\
                  print(r.status_code)\n\
                  print(r.text)\n";
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args([
        "-c",
        script,
        &url,
        &proxy.url(),
        setup.cuttle_ca.to_str().unwrap(),
    ])
    .env_remove("HTTPS_PROXY")
    .env_remove("https_proxy")
    .env("NO_PROXY", "")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT + Duration::from_secs(5), cmd.output())
        .await
        .expect("python3 did not finish")
        .expect("python3 with requests is installed (.ci/run installs python3-requests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("200\n{BODY}"));
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// Longest a Chromium run may take before it is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs a command to its end within [`WAIT`], failing the test on a non-zero exit.
async fn run(program: &str, args: &[&str]) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} did not finish"))
    .unwrap_or_else(|e| panic!("{program} could not run ({e}); .ci/run installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Headless Chromium with `home` as HOME (its NSS database), through `proxy`, on `url`.
async fn chromium(home: &Path, proxy: &TestProxy, mode: &str, url: &str) -> String {
    let profile = home.join("profile");
    let mut cmd = tokio::process::Command::new(
        std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into()),
    );
    cmd.env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Loopback names go through the proxy too (Chromium bypasses them by default).
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--proxy-server={}", proxy.url()))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start chromium ({e}); .ci/run installs it"));
    let output = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER_TIMEOUT:?}"))
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn chromium_with_the_ca_in_its_nss_database_loads_a_bumped_page() {
    let setup = Setup::new();
    let origin = setup.origin(&["localhost"]).await;
    let proxy = setup.proxy().await;
    let home = setup.dir.path().join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run("certutil", &["-d", &db, "-N", "--empty-password"]).await;
    let ca = setup.cuttle_ca.to_str().unwrap();
    run(
        "certutil",
        &["-d", &db, "-A", "-t", "C,,", "-n", "cuttle-ca", "-i", ca],
    )
    .await;

    let url = format!("https://localhost:{}/page.html", origin.addr.port());
    let dom = chromium(&home, &proxy, "--dump-dom", &url).await;
    assert!(dom.contains("Hello through a bumped tunnel"), "{dom}");
    assert!(origin.hits() >= 1);
    logged(&setup.access_log(), &[&url, "/200"]).await;

    let shot = setup.dir.path().join("bumped-page.png");
    chromium(
        &home,
        &proxy,
        &format!("--screenshot={}", shot.display()),
        &url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG screenshot"
    );
    println!("bumped page screenshot: {}", shot.display());
    proxy.shutdown().await;
}

#[tokio::test]
async fn cuttle_check_names_the_broken_ca_file() {
    let setup = Setup::new();
    let config = setup.dir.path().join("cuttle.toml");
    let write = |cert: &Path, key: &Path| {
        std::fs::write(
            &config,
            format!(
                "[[http_port]]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = \"none\"\n\
                 [tls_intercept]\nca_cert = \"{}\"\nca_key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        let out = run_cuttle(&["check", "--config", config.to_str().unwrap()]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write(&setup.cuttle_ca, &setup.cuttle_key);
    let (ok, err) = check();
    assert!(ok, "{err}");
    // The origin CA's certificate with cuttle's key: the key is blamed, with its line.
    write(&setup.origin_ca_file, &setup.cuttle_key);
    let (ok, err) = check();
    assert!(!ok);
    assert!(
        err.contains("cuttle.toml:7: tls_intercept.ca_key:"),
        "{err}"
    );
    assert!(err.contains("not the private key"), "{err}");
    let missing = setup.dir.path().join("missing.pem");
    write(&missing, &setup.cuttle_key);
    let (ok, err) = check();
    assert!(!ok);
    assert!(
        err.contains("cuttle.toml:6: tls_intercept.ca_cert: cannot read"),
        "{err}"
    );
}
