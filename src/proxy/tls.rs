//! TLS termination on client ports: the certificate chain and key a port serves, and the
//! handshake that runs before any HTTP.
//!
//! The PEM files are read once, when the config is built, so `cuttle check` reports a missing
//! file, a file without a certificate or key, or a key that does not belong to the certificate,
//! naming the config key. The rustls `ServerConfig` names the ring provider explicitly instead of
//! relying on a process-wide default. ALPN (RFC 7301) offers `h2` and then `http/1.1` on reverse
//! ports: RFC 9113 §3.2 has HTTP/2 over TLS selected by ALPN, which is how browsers and curl
//! reach it. Forward ports offer only `http/1.1`, because CONNECT tunnels are HTTP/1.1 upgrades.
//! Which protocol was negotiated is left to `listener`, which serves the connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The ALPN identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN identifier of HTTP/1.1 (RFC 7301 §6).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// What a TLS port serves: its certificate chain and key, ready for handshakes.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// The certificate file, for logs.
    cert_path: PathBuf,
}

/// Why a port's certificate or key cannot be used; says which of the two files is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
}

impl ServerTls {
    /// Loads the chain in `cert` and the key in `key` (PEM). `offer_h2` adds `h2` to ALPN.
    pub fn load(cert: &Path, key: &Path, offer_h2: bool) -> Result<Self, LoadError> {
        let chain = load_chain(cert).map_err(LoadError::Cert)?;
        let private_key = load_key(key).map_err(LoadError::Key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        check_key(&provider, &private_key, key)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LoadError::Cert(format!("no usable TLS protocol version: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => LoadError::Key(format!(
                    "`{}` is not the private key of the certificate in `{}`",
                    key.display(),
                    cert.display()
                )),
                other => LoadError::Cert(format!("`{}` cannot be served: {other}", cert.display())),
            })?;
        config.alpn_protocols = if offer_h2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        } else {
            vec![ALPN_HTTP11.to_vec()]
        };
        Ok(Self {
            config: Arc::new(config),
            cert_path: cert.to_owned(),
        })
    }

    /// The certificate chain's file, as configured (for the start-up lines).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Whether ALPN offers `h2`.
    pub fn offers_h2(&self) -> bool {
        self.config.alpn_protocols.iter().any(|p| p == ALPN_H2)
    }

    /// Runs the server handshake on `stream`, giving up after `timeout`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> io::Result<TlsStream<TcpStream>> {
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {timeout:?}"),
            )),
        }
    }
}

/// Whether the client and we agreed on HTTP/2 during the handshake.
pub fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert_path)
            .field("h2", &self.offers_h2())
            .finish()
    }
}

/// Two ports are configured alike when they share one loaded config.
impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for ServerTls {}

/// Every certificate in `path`, leaf first.
fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e, "certificate"))?;
    if chain.is_empty() {
        return Err(pem_error(path, &pem::Error::NoItemsFound, "certificate"));
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, &e, "private key"))
}

/// Refuses a key the provider cannot sign with (an unsupported algorithm or a corrupt key).
fn check_key(
    provider: &CryptoProvider,
    key: &PrivateKeyDer<'static>,
    path: &Path,
) -> Result<(), LoadError> {
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map(drop)
        .map_err(|e| LoadError::Key(format!("`{}` is not a usable key: {e}", path.display())))
}

fn pem_error(path: &Path, err: &pem::Error, what: &str) -> String {
    let path = path.display();
    match err {
        pem::Error::Io(e) => format!("cannot read `{path}`: {e}"),
        pem::Error::NoItemsFound => format!("`{path}` holds no PEM {what}"),
        other => format!("`{path}` is not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (
            write(dir, "cert.pem", &certified.cert.pem()),
            write(dir, "key.pem", &certified.signing_key.serialize_pem()),
        )
    }

    #[test]
    fn a_matching_pair_loads_with_alpn_by_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path());
        let reverse = ServerTls::load(&cert, &key, true).unwrap();
        assert_eq!(
            reverse.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let forward = ServerTls::load(&cert, &key, false).unwrap();
        assert!(!forward.offers_h2());
    }

    #[test]
    fn each_broken_file_is_blamed_on_the_right_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = pair(other.path());
        let missing = dir.path().join("missing.pem");
        let garbage = write(dir.path(), "garbage.pem", "not pem at all\n");

        let err = ServerTls::load(&missing, &key, true).unwrap_err();
        assert!(
            matches!(&err, LoadError::Cert(m) if m.contains("cannot read")),
            "{err}"
        );
        let err = ServerTls::load(&garbage, &key, true).unwrap_err();
        assert!(
            matches!(&err, LoadError::Cert(m) if m.contains("holds no PEM certificate")),
            "{err}"
        );
        let err = ServerTls::load(&cert, &cert, true).unwrap_err();
        assert!(
            matches!(&err, LoadError::Key(m) if m.contains("holds no PEM private key")),
            "{err}"
        );
        let err = ServerTls::load(&cert, &missing, true).unwrap_err();
        assert!(matches!(err, LoadError::Key(_)), "{err}");
        let err = ServerTls::load(&cert, &other_key, true).unwrap_err();
        assert!(
            matches!(&err, LoadError::Key(m) if m.contains("is not the private key")),
            "{err}"
        );
    }
}
