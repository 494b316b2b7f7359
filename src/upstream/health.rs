//! Active health checks: a background task per group that asks each server for a path and
//! takes it out after `fall` consecutive failures, back in after `rise` successes.
//!
//! The verdict goes to each server's `liveness`, which logs the changes. Checks use their own short-lived connections (not the request pool)
//! so a check measures whether a fresh connection works; for a TLS group that includes the
//! handshake and certificate check, exactly as requests would make them (HTTP/2 too, when the
//! group allows it and the server chooses it).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use super::connect::{connect_stream, connect_tls, Offer};
use super::group::{Group, HealthCheckConfig};
use super::tls::{self, ClientTls};

/// Runs checks for `group` until `stop` turns true. Does nothing without a check configured.
pub async fn run(group: Arc<Group>, mut stop: watch::Receiver<bool>) {
    let Some(check) = group.config.health_check.clone() else {
        return;
    };
    let mut streaks = vec![(0u32, 0u32); group.servers.len()];
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for (i, server) in group.servers.iter().enumerate() {
            if server.config.down {
                continue;
            }
            let ok = probe(&server.config.address, group.config.tls.as_deref(), &check).await;
            let (successes, failures) = &mut streaks[i];
            if ok {
                *successes += 1;
                *failures = 0;
            } else {
                *failures += 1;
                *successes = 0;
            }
            // The verdict changes only after `fall` failures or `rise` successes in a row;
            // the server's liveness logs the change.
            let was_ok = !server.liveness.probe_failing();
            if was_ok && *failures >= check.fall {
                let why = format!("health check failed {} times", check.fall);
                server.liveness.probed(Err(why));
            } else if !was_ok && *successes >= check.rise {
                server.liveness.probed(Ok(()));
            }
        }
    }
}

/// One check: GET `path` on a fresh connection (TLS with `tls`) within `timeout`; true if the
/// status fits. A TLS group whose `protocols` allow `h2` is checked the way its requests go:
/// offering what it allows, and over HTTP/2 when the server chooses it.
pub async fn probe(address: &str, tls: Option<&ClientTls>, check: &HealthCheckConfig) -> bool {
    let attempt = async {
        let (host, port) = split_address(address)?;
        let user_agent = concat!("cuttle-health/", env!("CARGO_PKG_VERSION"));
        if let Some(tls) = tls.filter(|tls| tls.protocols().h2) {
            let stream = connect_tls(&host, port, tls, Offer::Negotiate, check.timeout)
                .await
                .ok()?;
            if tls::negotiated_h2(&stream) {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .ok()?;
                tokio::spawn(conn);
                // RFC 9113 §8.3.1: the authority travels as `:authority`, not Host.
                let request = Request::get(format!("https://{address}{}", check.path))
                    .header(http::header::USER_AGENT, user_agent)
                    .body(Empty::<Bytes>::new())
                    .ok()?;
                return Some(sender.send_request(request).await.ok()?.status());
            }
            return send_http1(TokioIo::new(stream), address, &check.path, user_agent).await;
        }
        let stream = connect_stream(&host, port, tls, check.timeout).await.ok()?;
        send_http1(TokioIo::new(stream), address, &check.path, user_agent).await
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(Some(status)) => in_range(status, check.expect),
        _ => false,
    }
}

/// GET `path` over HTTP/1.1 on `io`; the response status.
async fn send_http1<T>(
    io: TokioIo<T>,
    address: &str,
    path: &str,
    user_agent: &str,
) -> Option<StatusCode>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, address)
        .header(http::header::USER_AGENT, user_agent)
        .body(Empty::<Bytes>::new())
        .ok()?;
    Some(sender.send_request(request).await.ok()?.status())
}

fn in_range(status: StatusCode, (low, high): (u16, u16)) -> bool {
    (low..=high).contains(&status.as_u16())
}

/// `host:port` (IPv6 in brackets) into its parts.
pub fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}
