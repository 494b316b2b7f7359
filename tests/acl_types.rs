//! Squid's ACL types `url_regex`, `urlpath_regex`, `dstdom_regex`, `browser`, `time` and
//! `maxconn` in `http_access`, each over real HTTP through the real proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cuttle::access::time::LocalTime;
use cuttle::clock::ManualClock;
use support::{curl, reply, Origin, TestProxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn origin() -> Origin {
    let mut builder = Origin::builder();
    for path in [
        "/file.exe",
        "/file.txt",
        "/private/x",
        "/PRIVATE/x",
        "/public",
    ] {
        builder = builder.route(path, |_| reply(200, "ok"));
    }
    builder.spawn().await
}

/// A proxy whose rules deny `deny` (ACLs from `acls`), then allow localhost.
async fn proxy(acls: &str, deny: &str, extra: &str) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n{acls}\n\
         [[http_access]]\ndeny = [{deny}]\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [cache.disk]\npath = \"{}\"\n{extra}\n",
        dir.path().join("cache").display()
    );
    TestProxy::start_text(&text, Some(dir)).await
}

/// The status curl gets for `url` through `proxy`, with `args` added.
async fn status(proxy: &TestProxy, url: &str, args: &[&str]) -> String {
    let proxy_url = proxy.url();
    let mut all = vec![
        "-x",
        proxy_url.as_str(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    all.push(url);
    String::from_utf8(curl(&all).await.stdout).unwrap()
}

#[tokio::test]
async fn url_regex_with_dash_i_matches_any_case_of_the_whole_url() {
    let origin = origin().await;
    let proxy = proxy(
        "exe = { url_regex = [\"-i\", \"\\\\.EXE$\"] }",
        "\"exe\"",
        "",
    )
    .await;
    assert_eq!(status(&proxy, &origin.url("/file.exe"), &[]).await, "403");
    assert_eq!(status(&proxy, &origin.url("/file.txt"), &[]).await, "200");
    proxy.shutdown().await;
}

#[tokio::test]
async fn urlpath_regex_sees_the_path_only_and_is_case_sensitive_by_default() {
    let origin = origin().await;
    let proxy = proxy(
        "private = { urlpath_regex = [\"^/private/\"] }",
        "\"private\"",
        "",
    )
    .await;
    assert_eq!(status(&proxy, &origin.url("/private/x"), &[]).await, "403");
    assert_eq!(status(&proxy, &origin.url("/PRIVATE/x"), &[]).await, "200");
    assert_eq!(status(&proxy, &origin.url("/public"), &[]).await, "200");
    proxy.shutdown().await;
}

#[tokio::test]
async fn dstdom_regex_matches_the_destination_host() {
    let origin = origin().await;
    let port = origin.addr.port();
    let proxy = proxy(
        "local_names = { dstdom_regex = [\"-i\", \"^LOCALHOST$\"] }",
        "\"local_names\"",
        "",
    )
    .await;
    let by_name = format!("http://localhost:{port}/public");
    let by_address = format!("http://127.0.0.1:{port}/public");
    assert_eq!(status(&proxy, &by_name, &[]).await, "403");
    assert_eq!(status(&proxy, &by_address, &[]).await, "200");
    proxy.shutdown().await;
}

#[tokio::test]
async fn browser_matches_the_user_agent() {
    let origin = origin().await;
    let proxy = proxy("bots = { browser = [\"^BadBot/\"] }", "\"bots\"", "").await;
    let url = origin.url("/public");
    assert_eq!(status(&proxy, &url, &["-A", "BadBot/2.0"]).await, "403");
    assert_eq!(
        status(&proxy, &url, &["-A", "GoodBrowser BadBot/2.0"]).await,
        "200"
    );
    assert_eq!(status(&proxy, &url, &[]).await, "200");
    proxy.shutdown().await;
}

#[tokio::test]
async fn time_follows_the_proxys_clock_in_local_time() {
    let origin = origin().await;
    // A Wednesday noon UTC; whatever the local zone, a window of a few minutes around the
    // local time it shows (kept away from midnight) on that local weekday.
    let mut start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_283_200);
    let mut local = LocalTime::at(start).unwrap();
    if !(10..1430).contains(&local.minute) {
        start += Duration::from_secs(3 * 3600);
        local = LocalTime::at(start).unwrap();
    }
    let day = ["S", "M", "T", "W", "H", "F", "A"][usize::from(local.weekday)];
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let window = format!("{}-{}", hm(local.minute - 5), hm(local.minute + 5));
    let acls = format!("lunch = {{ time = [\"{day}\", \"{window}\"] }}");
    let clock = Arc::new(ManualClock::new(start));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n{acls}\n\
         [[http_access]]\ndeny = [\"lunch\"]\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [cache.disk]\npath = \"{}\"\n",
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_with_clock(&text, Some(dir), clock.clone()).await;
    let url = origin.url("/public");
    assert_eq!(status(&proxy, &url, &[]).await, "403", "{acls}");
    // Ten minutes later: outside the window.
    clock.advance(Duration::from_secs(600));
    assert_eq!(status(&proxy, &url, &[]).await, "200", "{acls}");
    // A week later, back inside it.
    clock.advance(Duration::from_secs(7 * 86_400 - 600));
    assert_eq!(status(&proxy, &url, &[]).await, "403", "{acls}");
    // The next day at the same time: the wrong weekday.
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(status(&proxy, &url, &[]).await, "200", "{acls}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn maxconn_matches_a_client_holding_more_than_n_connections() {
    let origin = origin().await;
    // Loopback is exempt from client_ip_max_connections but still counted for maxconn.
    let proxy = proxy("crowd = { maxconn = 2 }", "\"crowd\"", "").await;
    let url = origin.url("/public");
    // curl's own connection is one.
    assert_eq!(status(&proxy, &url, &[]).await, "200");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        // Sending a byte makes sure the proxy has accepted it (the slot is taken at accept).
        stream.write_all(b"G").await.unwrap();
        held.push(stream);
    }
    // Three now: more than two.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let mut got = status(&proxy, &url, &[]).await;
    while got != "403" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = status(&proxy, &url, &[]).await;
    }
    assert_eq!(got, "403");
    drop(held);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while got != "200" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = status(&proxy, &url, &[]).await;
    }
    assert_eq!(got, "200", "the count falls as connections close");
    proxy.shutdown().await;
}

#[tokio::test]
async fn on_a_reverse_port_url_regex_sees_the_absolute_url_and_proxy_auth_never_challenges() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("htpasswd");
    std::fs::write(&passwords, "bob:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=\n").unwrap();
    let text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         exe = {{ url_regex = [\"^http://www\\\\.example\\\\.test/file\\\\.exe$\"] }}\n\
         authed = {{ proxy_auth = [\"REQUIRED\"] }}\n\
         [[http_access]]\ndeny = [\"exe\"]\n\
         [[http_access]]\ndeny = [\"authed\"]\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [auth.basic]\npassword_file = \"{}\"\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        passwords.display(),
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(support::WAIT)
        .build()
        .unwrap();
    let get = |path: &'static str| {
        client
            .get(format!("http://{}{path}", proxy.addr))
            .header("host", "www.example.test")
            // myPassword, and valid: still no proxy_auth match on an accelerator.
            .header("proxy-authorization", "Basic Ym9iOm15UGFzc3dvcmQ=")
            .send()
    };
    assert_eq!(get("/file.exe").await.unwrap().status(), 403);
    let page = get("/file.txt").await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "proxy_auth neither matches nor asks here"
    );
    assert!(!page.headers().contains_key("proxy-authenticate"));
    proxy.shutdown().await;
}
