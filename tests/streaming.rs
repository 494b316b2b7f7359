//! Bodies stream through the proxy with bounded memory: 256 MiB down and 256 MiB up through the
//! real `cuttle` binary, asserting its peak RSS (VmHWM from /proc) grows by less than 64 MiB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use support::*;

const SIZE: u64 = 256 << 20;
const MAX_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_download_and_upload_pass_with_bounded_proxy_memory() {
    let origin = Origin::builder()
        .route("/warm", |_| reply(200, "warm"))
        .route("/big", |_| reply_stream(SIZE, 64 * 1024))
        .route("/sink", |req| reply(200, &format!("{}", req.body_len)))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, config(dir.path(), "[log]\naccess_log = \"none\"\n")).unwrap();
    let proxy = CuttleProcess::spawn(&file);
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .build()
        .unwrap();
    client
        .get(origin.url("/warm"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (baseline, _) = proxy.memory_kib();

    let mut response = client.get(origin.url("/big")).send().await.unwrap();
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);

    let block = Bytes::from(pattern(64 * 1024));
    let chunks = (0..SIZE / (64 * 1024)).map(move |_| Ok::<_, std::io::Error>(block.clone()));
    let text = client
        .post(origin.url("/sink"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, SIZE.to_string());

    let (_, peak) = proxy.memory_kib();
    let growth = peak.saturating_sub(baseline);
    eprintln!("proxy RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(growth < MAX_GROWTH_KIB, "proxy memory grew by {growth} KiB");
}
