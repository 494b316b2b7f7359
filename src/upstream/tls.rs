//! TLS to upstream servers and cache peers: whom to trust, which name to check, what ALPN offers,
//! and the client handshake.
//!
//! Verification is on by default, against the operating system's trust store as read by
//! `rustls-native-certs` (the files or keychain the OS's own TLS libraries use). `tls_ca_file`
//! *replaces* those roots: only the certificates in that file are trusted, so a group behind a
//! private CA is not also open to every public CA, and the file's CA is trusted for that group
//! alone. `tls_verify = false` accepts any certificate (for testing only; `app` warns at start)
//! but still checks the handshake signatures. The name sent in SNI and checked against the
//! certificate is the server's host unless `tls_server_name` says otherwise.
//!
//! ALPN (RFC 7301) offers what `protocols` allows: connections made for the HTTP/1.1 pool offer
//! `http/1.1` only; with `h2` allowed, [`super::h2`] opens its connections with
//! [`ClientTls::handshake_negotiating`], which offers `h2` first (RFC 9113 §3.2: HTTP/2 over TLS
//! is chosen by ALPN only) and `http/1.1` too when both are allowed.
//!
//! Everything here is built when the config is built, so a missing CA file or an impossible
//! server name is a config error, not a failed request.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_rustls::TlsConnector;

/// Which certificates a group trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's trust store.
    System,
    /// Only the certificates in this PEM file.
    File(PathBuf),
}

/// Which HTTP versions a group or peer may speak over TLS (`protocols`), as ALPN ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// `h2`: HTTP/2, one connection multiplexing concurrent requests.
    pub h2: bool,
    /// `http/1.1`.
    pub http1: bool,
}

impl Default for Protocols {
    /// HTTP/1.1 only, as nginx and Squid speak to their upstreams.
    fn default() -> Self {
        Self::HTTP1
    }
}

impl Protocols {
    /// HTTP/1.1 only.
    pub const HTTP1: Self = Self {
        h2: false,
        http1: true,
    };

    /// Parses a `protocols` list: `h2` and/or `http/1.1`, each at most once; the order does not
    /// matter (`h2` is offered first, and the server chooses).
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let mut out = Self {
            h2: false,
            http1: false,
        };
        for word in words {
            let seen = match word.as_str() {
                "h2" => std::mem::replace(&mut out.h2, true),
                "http/1.1" => std::mem::replace(&mut out.http1, true),
                other => {
                    return Err(format!(
                        "`{other}` is not h2 or http/1.1; write protocols = [\"h2\", \"http/1.1\"]"
                    ))
                }
            };
            if seen {
                return Err(format!("`{word}` is listed twice"));
            }
        }
        if !out.h2 && !out.http1 {
            return Err("is empty; write protocols = [\"h2\", \"http/1.1\"]".to_owned());
        }
        Ok(out)
    }

    /// The ALPN ids to offer, `h2` first.
    fn alpn(self) -> Vec<Vec<u8>> {
        let mut ids = Vec::with_capacity(2);
        if self.h2 {
            ids.push(b"h2".to_vec());
        }
        if self.http1 {
            ids.push(b"http/1.1".to_vec());
        }
        ids
    }

    /// As written in the config, for summaries and logs.
    pub fn as_str(self) -> &'static str {
        match (self.h2, self.http1) {
            (true, true) => "h2, http/1.1",
            (true, false) => "h2",
            _ => "http/1.1",
        }
    }
}

/// A group's or peer's TLS settings as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub roots: Roots,
    /// SNI and verification name for every server of the group.
    pub server_name: Option<String>,
    pub verify: bool,
    /// What ALPN may negotiate.
    pub protocols: Protocols,
}

/// Why a group's or peer's TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    CaFile(String),
    #[error("`{0}` is not a DNS name or IP address")]
    ServerName(String),
    #[error("{0}")]
    SystemRoots(String),
    #[error("{0}")]
    Unsupported(String),
}

/// A group's or peer's client TLS configuration, shared by all its connections.
#[derive(Clone)]
pub struct ClientTls {
    /// For the HTTP/1.1 pool and health checks: ALPN `http/1.1` only.
    config: Arc<ClientConfig>,
    /// With `h2` allowed: the same trust, offering what `protocols` allows.
    negotiating: Option<Arc<ClientConfig>>,
    /// Overrides each server's host as the SNI and verification name.
    server_name: Option<ServerName<'static>>,
    verify: bool,
    /// What it was built from: a reload keeps a group's pool when these did not change.
    settings: Settings,
}

/// Built from the same settings (a reload re-reads a CA file only when its settings change).
impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Builds the client configuration for `settings`.
    pub fn new(settings: &Settings) -> Result<Self, SetupError> {
        let server_name = settings
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|_| SetupError::ServerName(name.to_owned()))
            })
            .transpose()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError::Unsupported(format!("no usable TLS version: {e}")))?;
        let mut config = if settings.verify {
            let roots = match &settings.roots {
                Roots::System => system_roots()?,
                Roots::File(path) => file_roots(path)?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        };
        let negotiating = settings.protocols.h2.then(|| {
            let mut negotiating = config.clone();
            negotiating.alpn_protocols = settings.protocols.alpn();
            Arc::new(negotiating)
        });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            negotiating,
            server_name,
            verify: settings.verify,
            settings: settings.clone(),
        })
    }

    /// Whether certificates are checked.
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The SNI and verification name for a server whose host is `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, SetupError> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_owned())
                    .map_err(|_| SetupError::ServerName(bare.to_owned()))
            }
        }
    }

    /// What ALPN may negotiate.
    pub fn protocols(&self) -> Protocols {
        self.settings.protocols
    }

    /// The client handshake with the server `host` over `tcp`, offering `http/1.1` only.
    pub async fn handshake(&self, host: &str, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connect_with(&self.config, host, tcp).await
    }

    /// The client handshake offering what `protocols` allows; the server's choice is in the
    /// stream's `alpn_protocol()` (see [`negotiated_h2`]).
    pub async fn handshake_negotiating(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        let config = self.negotiating.as_ref().unwrap_or(&self.config);
        self.connect_with(config, host, tcp).await
    }

    async fn connect_with(
        &self,
        config: &Arc<ClientConfig>,
        host: &str,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        let name = self
            .server_name(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

/// True when the server chose `h2` in ALPN.
pub fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// True when a failed handshake was about the server's certificate (untrusted issuer, wrong
/// name, expired, none sent) rather than the protocol.
pub fn is_certificate_error(err: &io::Error) -> bool {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        rustls_error,
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
                | rustls::Error::InvalidCertRevocationList(_)
        )
    )
}

/// The operating system's trust store; fails when it holds nothing usable.
fn system_roots() -> Result<RootCertStore, SetupError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "while reading the system's trusted certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(SetupError::SystemRoots(
            "the system trust store has no usable certificates (install ca-certificates, or set \
             tls_ca_file)"
                .to_owned(),
        ));
    }
    Ok(roots)
}

/// The certificates of a PEM file, as the only roots.
fn file_roots(path: &Path) -> Result<RootCertStore, SetupError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| SetupError::CaFile(format!("cannot read `{shown}`: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::CaFile(format!("`{shown}` is not valid PEM: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(SetupError::CaFile(format!(
            "`{shown}` holds no usable PEM certificate"
        )));
    }
    if ignored > 0 {
        tracing::warn!(file = %shown, ignored, "some CA certificates could not be parsed");
    }
    Ok(roots)
}

/// `tls_verify = false`: any certificate is accepted, but the handshake itself is still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(roots: Roots) -> Settings {
        Settings {
            roots,
            server_name: None,
            verify: true,
            protocols: Protocols::HTTP1,
        }
    }

    #[test]
    fn ca_file_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = ClientTls::new(&settings(Roots::File(missing))).unwrap_err();
        assert!(
            matches!(&err, SetupError::CaFile(m) if m.contains("cannot read")),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = ClientTls::new(&settings(Roots::File(empty))).unwrap_err();
        assert!(
            matches!(&err, SetupError::CaFile(m) if m.contains("no usable")),
            "{err}"
        );
    }

    #[test]
    fn server_name_defaults_to_the_host_and_can_be_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let certified = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        std::fs::write(&ca, certified.cert.pem()).unwrap();
        let tls = ClientTls::new(&settings(Roots::File(ca.clone()))).unwrap();
        assert_eq!(
            tls.server_name("origin.test").unwrap(),
            ServerName::try_from("origin.test").unwrap()
        );
        assert!(matches!(
            tls.server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        let fixed = ClientTls::new(&Settings {
            server_name: Some("internal.test".into()),
            ..settings(Roots::File(ca))
        })
        .unwrap();
        assert_eq!(
            fixed.server_name("10.0.0.1").unwrap(),
            ServerName::try_from("internal.test").unwrap()
        );
        let bad = ClientTls::new(&Settings {
            server_name: Some("not a name".into()),
            roots: Roots::System,
            verify: false,
            protocols: Protocols::HTTP1,
        })
        .unwrap_err();
        assert_eq!(bad, SetupError::ServerName("not a name".into()));
    }

    #[test]
    fn protocols_parse_as_a_set_and_refuse_typos_repeats_and_nothing() {
        let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        let both = Protocols::parse(&words(&["http/1.1", "h2"])).unwrap();
        assert_eq!(
            both,
            Protocols {
                h2: true,
                http1: true
            }
        );
        assert_eq!(both.alpn(), vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(
            Protocols::parse(&words(&["h2"])).unwrap().alpn(),
            vec![b"h2".to_vec()]
        );
        assert_eq!(Protocols::default(), Protocols::HTTP1);
        for bad in [&["h3"][..], &["h2", "h2"], &[], &["HTTP/1.1"]] {
            assert!(Protocols::parse(&words(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_negotiating_config_offers_h2() {
        let both = ClientTls::new(&Settings {
            verify: false,
            protocols: Protocols {
                h2: true,
                http1: true,
            },
            ..settings(Roots::System)
        })
        .unwrap();
        assert_eq!(both.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let offered = &both.negotiating.as_ref().unwrap().alpn_protocols;
        assert_eq!(offered, &vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let plain = ClientTls::new(&Settings {
            verify: false,
            ..settings(Roots::System)
        })
        .unwrap();
        assert!(plain.negotiating.is_none());
    }

    #[test]
    fn certificate_errors_are_told_from_protocol_errors() {
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_certificate_error(&cert));
        let protocol = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(!is_certificate_error(&protocol));
        assert!(!is_certificate_error(&io::Error::other("reset")));
    }
}
