//! Leaf certificates for bumped connections: one per server name, signed by the local CA, kept
//! in memory and on disk, and served with ALPN `h2` and `http/1.1`.
//!
//! A leaf names exactly the server name it is for (a DNS name, or an IP address for a CONNECT
//! to an address) in its subjectAltName, is valid for [`LEAF_DAYS`] days (never past the CA's
//! own end) and carries serverAuth only. Minting costs a P-256 key and a signature, so a
//! connection to a name seen before reuses its leaf: the memory tier is a bounded moka cache,
//! the disk tier (`cert_cache_dir`) one `0600` PEM file per name under a directory named by
//! the CA's fingerprint, reused while it has more than a day to run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use super::ca::Ca;

/// How long a minted leaf is valid.
pub const LEAF_DAYS: u64 = 30;
/// A leaf on disk with less than this left is minted again.
const RENEW_BEFORE: Duration = Duration::from_secs(86_400);
/// Leaves kept in memory.
const MEMORY_ENTRIES: u64 = 10_000;

/// Why no leaf could be made for a name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot mint a certificate for `{name}`: {reason}")]
pub struct MintError {
    name: String,
    reason: String,
}

/// Mints and caches leaves signed by one CA.
pub struct Minter {
    issuer: Issuer<'static, KeyPair>,
    ca: Ca,
    memory: moka::sync::Cache<String, Arc<ServerConfig>>,
    /// `cert_cache_dir/<CA fingerprint>`, when a disk tier is configured.
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("ca", &self.ca)
            .field("dir", &self.dir)
            .field("cached", &self.memory.entry_count())
            .finish()
    }
}

impl Minter {
    /// A minter for `ca`, keeping leaves on disk under `cache_dir` if given.
    pub fn new(ca: Ca, cache_dir: Option<&Path>) -> Result<Self, String> {
        let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::from_ca_cert_der(&ca.cert_der, key).map_err(|e| e.to_string())?;
        let dir = cache_dir.map(|d| d.join(&ca.fingerprint));
        Ok(Self {
            issuer,
            dir,
            ca,
            memory: moka::sync::Cache::new(MEMORY_ENTRIES),
        })
    }

    /// The CA certificate (PEM), for `cuttle check` and the start-up lines.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The TLS server config for `name` at `now`: from memory, else from disk, else minted
    /// (and stored in both). Blocking (file I/O and signing): run it off the async threads.
    pub fn server_config(
        &self,
        name: &str,
        now: SystemTime,
    ) -> Result<Arc<ServerConfig>, MintError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let fail = |reason: String| MintError {
            name: name.clone(),
            reason,
        };
        if let Some(config) = self.memory.get(&name) {
            return Ok(config);
        }
        let file = self
            .dir
            .as_ref()
            .filter(|_| safe_file_name(&name))
            .map(|d| d.join(format!("{name}.pem")));
        let pem = match file.as_deref().and_then(|f| read_fresh(f, now)) {
            Some(pem) => pem,
            None => {
                let pem = self.mint(&name, now).map_err(fail)?;
                if let Some(file) = &file {
                    if let Err(e) = write_leaf(file, &pem) {
                        tracing::warn!(file = %file.display(), error = %e, "cannot keep a minted certificate on disk");
                    }
                }
                pem
            }
        };
        let config = Arc::new(server_config(&pem).map_err(fail)?);
        self.memory.insert(name, Arc::clone(&config));
        Ok(config)
    }

    /// A new leaf for `name`: certificate PEM then key PEM.
    fn mint(&self, name: &str, now: SystemTime) -> Result<String, String> {
        let mut params =
            CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // A little back-dating covers clients whose clocks run behind.
        params.not_before = (now - Duration::from_secs(3600)).into();
        let end = (now + Duration::from_secs(LEAF_DAYS * 86_400)).min(self.ca.not_after);
        params.not_after = end.into();
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
    }
}

/// Whether `name` can be a file name as is (SNI names and address literals can; anything else
/// is minted but kept in memory only).
fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

/// The PEM in `file` if its certificate is valid at `now` for more than [`RENEW_BEFORE`].
fn read_fresh(file: &Path, now: SystemTime) -> Option<String> {
    let pem = std::fs::read_to_string(file).ok()?;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let left = cert.validity().not_after.timestamp()
        - now
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())?;
    (left > i64::try_from(RENEW_BEFORE.as_secs()).ok()?).then_some(pem)
}

/// Writes a leaf (with its key) readable by its owner only.
fn write_leaf(file: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = file.with_extension("pem.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    out.write_all(pem.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(temp, file)
}

/// A rustls server config serving the leaf in `pem`, offering `h2` and `http/1.1`.
fn server_config(pem: &str) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    // RFC 7301 ids; RFC 9113 §3.2: HTTP/2 over TLS is chosen by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_intercept::ca::{init, load, InitOptions};
    use tokio_rustls::rustls::client::danger::ServerCertVerifier;

    fn minter(dir: &Path, cache: Option<&Path>) -> (Minter, SystemTime) {
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let opts = InitOptions {
            dir: dir.to_owned(),
            common_name: "mint test CA".to_owned(),
            name_constraints: Vec::new(),
            days: 365,
            force: false,
        };
        let (cert, key) = init(&opts, now).unwrap();
        (
            Minter::new(load(&cert, &key, now).unwrap(), cache).unwrap(),
            now,
        )
    }

    #[test]
    fn a_leaf_verifies_against_the_ca_for_its_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let (minter, now) = minter(dir.path(), None);
        let config = minter.server_config("Registry.Test.", now).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let pem = minter.mint("registry.test", now).unwrap();
        let leaf = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(minter.ca().cert_der.clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let at = rustls::pki_types::UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
        );
        let name = rustls::pki_types::ServerName::try_from("registry.test").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], at)
            .unwrap();
        let other = rustls::pki_types::ServerName::try_from("other.test").unwrap();
        assert!(verifier
            .verify_server_cert(&leaf, &[], &other, &[], at)
            .is_err());
        // An address gets an IP subjectAltName.
        minter.server_config("127.0.0.1", now).unwrap();
    }

    #[test]
    fn leaves_are_reused_from_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("minted");
        let (minter, now) = minter(dir.path(), Some(&cache));
        let first = minter.server_config("a.test", now).unwrap();
        let again = minter.server_config("a.test", now).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "memory tier");
        let file = cache.join(&minter.ca().fingerprint).join("a.test.pem");
        let on_disk = std::fs::read_to_string(&file).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A new minter (a restart) reads the same leaf back.
        let restarted = Minter::new(minter.ca().clone(), Some(&cache)).unwrap();
        restarted.server_config("a.test", now).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), on_disk);
        // Near its end it is minted again.
        let late = now + Duration::from_secs(LEAF_DAYS * 86_400);
        let renewed = Minter::new(minter.ca().clone(), Some(&cache)).unwrap();
        renewed.server_config("a.test", late).unwrap();
        assert_ne!(std::fs::read_to_string(&file).unwrap(), on_disk);
        assert!(!safe_file_name("../x"));
        assert!(!safe_file_name("a/b"));
    }
}
