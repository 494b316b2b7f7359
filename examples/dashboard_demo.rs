//! A running cuttle with realistic traffic, to look at the dashboard (and to take
//! `docs/dashboard.png`): `cargo run --example dashboard_demo -- [SECONDS]`, then open the
//! admin URL it prints.
//!
//! Everything stays on loopback: three origin sites behind a reverse port (one upstream group
//! has a server that refuses connections, so it shows as down), a forward port whose requests
//! all go to a parent `cache_peer`, and a traffic loop whose rate swings over a few minutes
//! with Zipf-like URL popularity, uncacheable API calls, short-lived objects (some with an
//! ETag, so they revalidate), large downloads through the parent, some 404s.
//! After SECONDS (default 300) of traffic it keeps serving `/status` until killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A small deterministic generator (xorshift64*); no crate needed for demo traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly Zipf(1) over 0..n.
    fn zipf(&mut self, n: u64) -> u64 {
        let x = (n as f64 + 1.0).powf(self.unit());
        (x as u64).saturating_sub(1).min(n - 1)
    }
}

/// An origin: the path decides the size and the caching headers.
fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let number: usize = path
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(1);
    let etag = format!("\"v{number}\"");
    if path.starts_with("/news/")
        && req
            .headers()
            .get("if-none-match")
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return response;
    }
    let (status, size, cache_control) = if path.starts_with("/missing") {
        (404, 300, "max-age=10")
    } else if path.starts_with("/img/") {
        (200, 30_000 + (number * 7919) % 180_000, "max-age=3600")
    } else if path.starts_with("/js/") || path.starts_with("/css/") {
        (200, 8_000 + (number * 4099) % 60_000, "max-age=86400")
    } else if path.starts_with("/api/") {
        (200, 800 + (number * 31) % 3000, "no-store")
    } else if path.starts_with("/pkg/") {
        (
            200,
            300_000 + (number * 104_729) % 1_200_000,
            "max-age=86400",
        )
    } else if path.starts_with("/news/") {
        (200, 15_000 + (number * 211) % 20_000, "max-age=20")
    } else {
        (200, 2_000 + (number * 97) % 30_000, "max-age=120")
    };
    let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; size])));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("cache-control", cache_control.parse().unwrap());
    if path.starts_with("/news/") {
        response.headers_mut().insert("etag", etag.parse().unwrap());
    }
    response
}

async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    // Some think time, so latency figures mean something.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    Ok::<_, Infallible>(answer(&req))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A loopback address where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (www, www2, media, api, parent) = (
        origin().await,
        origin().await,
        origin().await,
        origin().await,
        origin().await,
    );
    let dead = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "visible_hostname = \"edge-demo\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n[[http_access]]\ndeny = [\"all\"]\n\
         [[never_direct]]\nallow = [\"all\"]\n\
         [[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\nname = \"parent-proxy\"\n\
         [[site]]\nhosts = [\"www.example.com\"]\nupstream = \"www\"\n\
         [[site]]\nhosts = [\"media.example.com\"]\nupstream = \"media\"\n\
         [[site]]\nhosts = [\"api.example.com\"]\nupstream = \"api\"\n\
         [upstream.www]\nservers = [{{ address = \"{www}\" }}, {{ address = \"{www2}\" }}, {{ address = \"{dead}\" }}]\n\
         [upstream.www.health_check]\npath = \"/health\"\ninterval = \"2s\"\n\
         [upstream.media]\nservers = [{{ address = \"{media}\" }}]\n\
         [upstream.api]\nservers = [{{ address = \"{api}\" }}]\n\
         [cache.memory]\nmax_size = \"48 MiB\"\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"1 GiB\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [log]\naccess_log = \"none\"\n",
        parent.port(),
        dir.path().join("cache").display()
    );
    let config = cuttle::config::load_str("dashboard-demo.toml", &config).unwrap();
    let server = cuttle::app::start(config).await.unwrap();
    let reverse = server.addrs()[0].0;
    let forward = server.addrs()[1].0;
    let admin = server.admin_addr().expect("admin listener");
    println!("dashboard: http://{admin}/");

    let direct = reqwest::Client::builder().no_proxy().build().unwrap();
    let proxied = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{forward}")).unwrap())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (direct, proxied) = (direct.clone(), proxied.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
                while start.elapsed() < Duration::from_secs(seconds) {
                    let t = start.elapsed().as_secs_f64();
                    // Per worker: 10 to 50 requests a second, swinging over 3 minutes.
                    let rate = 30.0 + 20.0 * (t * std::f64::consts::TAU / 180.0).sin();
                    let pick = rng.unit();
                    let request = if pick < 0.04 {
                        let url = format!("http://downloads.example.net/pkg/{}.deb", rng.zipf(60));
                        proxied.get(url)
                    } else {
                        let (host, path) = if pick < 0.45 {
                            ("media.example.com", format!("/img/{}.jpg", rng.zipf(400)))
                        } else if pick < 0.60 {
                            ("www.example.com", format!("/js/app.{}.js", rng.zipf(30)))
                        } else if pick < 0.70 {
                            ("www.example.com", format!("/news/{}", rng.zipf(50)))
                        } else if pick < 0.88 {
                            ("www.example.com", format!("/page/{}", rng.zipf(500)))
                        } else if pick < 0.985 {
                            (
                                "api.example.com",
                                format!("/api/v1/items/{}", rng.next() % 1000),
                            )
                        } else {
                            ("www.example.com", format!("/missing/{}", rng.zipf(20)))
                        };
                        direct
                            .get(format!("http://{reverse}{path}"))
                            .header("host", host)
                    };
                    if let Ok(response) = request.send().await {
                        let _ = response.bytes().await;
                    }
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / rate.max(1.0))).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    println!("traffic done; serving the dashboard until killed");
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
}
