//! Certificates made here by rcgen for TLS tests: a test CA, leaves it signs, a rustls
//! server configuration serving a leaf with chosen ALPN protocols, and an HTTPS origin.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA and a leaf for `names` into `dir`: (ca.pem, cert.pem, key.pem) paths.
    pub fn files(&self, dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = self.leaf(names);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        (
            write("ca.pem", &self.pem),
            write("cert.pem", &cert),
            write("key.pem", &key),
        )
    }
}

/// A rustls server configuration serving `cert_pem` with `key_pem`, no ALPN.
pub fn server_config(cert_pem: &str, key_pem: &str) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap()
}

/// An HTTPS origin on loopback (HTTP/1.1 over TLS, serving `cert_pem` with `key_pem`) that
/// answers each request with `respond(path)` and counts the requests it answered.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

/// What a [`TlsOrigin`] answers for a request path.
pub type Respond = Arc<dyn Fn(&str) -> Response<Full<Bytes>> + Send + Sync>;

impl TlsOrigin {
    pub async fn spawn(cert_pem: &str, key_pem: &str, respond: Respond) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert_pem, key_pem)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, counter, respond) =
                    (acceptor.clone(), Arc::clone(&counter), Arc::clone(&respond));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let response = respond(req.uri().path());
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
