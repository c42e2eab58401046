//! TLS with rustls (the `ring` provider, never OpenSSL): what a client
//! trusts and presents, and the PEM files both sides read.
//!
//! [`TlsConfig`] is what a [`crate::Client`], an [`crate::admin::Admin`]
//! or a [`crate::connection::Connection`] needs to speak `https://`: the CA
//! that signed the nodes' certificates and, for a node that requires mutual
//! TLS, a client certificate and its key. The reading functions
//! ([`read_certs`], [`read_key`], [`read_roots`], [`certified_key`]) are
//! shared with the server, so that both name a bad file the same way.
//!
//! The crypto provider is always [`provider`], passed explicitly: the
//! process-wide default of rustls is never installed or relied on.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS file or setting was refused. Every variant names the file and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not PEM text (or its PEM is broken).
    #[error("{path} is not a PEM file: {why}")]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The PEM file holds no `CERTIFICATE` block.
    #[error(
        "{path} holds no certificate: expected a PEM block \"-----BEGIN CERTIFICATE-----\" \
         (is it the key file?)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The PEM file holds no private key block.
    #[error(
        "{path} holds no private key: expected a PEM block \"-----BEGIN PRIVATE KEY-----\" \
         (or RSA PRIVATE KEY, EC PRIVATE KEY) (is it the certificate file?)"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key parses as PEM but is not a key rustls can sign with.
    #[error(
        "{path}: the private key is not usable ({why}); use an RSA, ECDSA P-256/P-384 or Ed25519 key"
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// The key belongs to another certificate.
    #[error(
        "{key} does not match the certificate in {cert}: pass the key that was made with that \
         certificate"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate of a CA file cannot be used as a trust anchor.
    #[error("{path}: not a usable CA certificate ({why})")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls or webpki said.
        why: String,
    },
}

/// The crypto provider of every TLS configuration in tsohost: `ring`,
/// which builds without cmake or a C++ toolchain.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Why `bytes` of `path` are not PEM, if they plainly are not: DER or
/// anything else without a `-----BEGIN` line.
fn not_pem(path: &Path, bytes: &[u8]) -> Option<TlsError> {
    if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return None;
    }
    let why = if bytes.first() == Some(&0x30) {
        "it looks like DER (binary); convert it with `openssl x509 -inform der -in FILE` \
         or `openssl pkey -inform der -in FILE`"
    } else {
        "no \"-----BEGIN ...-----\" line"
    };
    Some(TlsError::NotPem {
        path: path.to_path_buf(),
        why: why.to_string(),
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::NotPem {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// Every certificate of the PEM file `path`, in order (a chain: the
/// end-entity certificate first); at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read(path)?)
}

/// The certificates of PEM text read from `path`; at least one.
fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if let Some(e) = not_pem(path, bytes) {
        return Err(e);
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    if let Some(e) = not_pem(path, &bytes) {
        return Err(e);
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => pem_error(path, e),
    })
}

/// The certificates of the PEM file `path` as trust anchors.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots(path, read_certs(path)?)
}

fn roots(path: &Path, certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The chain of `cert` with the key of `key`, checked to belong together.
pub fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let der = read_key(key)?;
    CertifiedKey::from_der(chain, der, &provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            e => TlsError::BadKey {
                path: key.to_path_buf(),
                why: e.to_string(),
            },
        })
}

/// What a client trusts and presents over `https://`: a CA's certificates
/// and, optionally, a client certificate for nodes that require mutual TLS.
/// Cheap to clone.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tsohost_client::tls::TlsConfig;
/// let tls = TlsConfig::from_ca_file("certs/ca.pem".as_ref())?
///     .with_client_cert("certs/client.pem".as_ref(), "certs/client.key".as_ref())?;
/// let config = tsohost_client::Config { tls: Some(tls), ..Default::default() };
/// let client = tsohost_client::Client::with_config(["https://127.0.0.1:7373"], config)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    roots: Arc<RootCertStore>,
    identity: Option<Arc<CertifiedKey>>,
    config: Arc<ClientConfig>,
}

impl TlsConfig {
    /// Trust the CA certificates of the PEM file `ca` (and nothing else:
    /// the system's roots are not used).
    pub fn from_ca_file(ca: &Path) -> Result<TlsConfig, TlsError> {
        Ok(TlsConfig::from_roots(read_roots(ca)?))
    }

    /// Trust the CA certificates of PEM text (`ca` is only used to name
    /// the source in errors).
    pub fn from_ca_pem(pem: &[u8], ca: &Path) -> Result<TlsConfig, TlsError> {
        Ok(TlsConfig::from_roots(roots(ca, parse_certs(ca, pem)?)?))
    }

    fn from_roots(roots: RootCertStore) -> TlsConfig {
        let roots = Arc::new(roots);
        TlsConfig {
            config: build(&roots, None),
            roots,
            identity: None,
        }
    }

    /// Present the certificate (chain) of `cert` with the key of `key` to
    /// nodes that ask for one (mutual TLS).
    pub fn with_client_cert(self, cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let identity = certified_key(cert, key)?;
        Ok(TlsConfig {
            config: build(&self.roots, Some(identity.clone())),
            roots: self.roots,
            identity: Some(identity),
        })
    }

    /// Whether a client certificate is presented.
    pub fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    /// The rustls configuration (ALPN `http/1.1`: the client speaks HTTP/1.1).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.identity.is_some())
            .finish()
    }
}

fn build(roots: &Arc<RootCertStore>, identity: Option<Arc<CertifiedKey>>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity)))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
