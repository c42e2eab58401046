//! TLS with rustls: the HTTP listener's HTTPS (`serve --tls-cert --tls-key
//! [--tls-client-ca]`, this module) and the peers' mutual TLS
//! (`--peer-tls-cert --peer-tls-key --peer-ca`, [`peer`]), both reloaded
//! for certificate rotation ([`Reloading`]).
//!
//! - The files are read and checked before the node starts; a bad one
//!   stops it with an error naming the file and the problem
//!   ([`TlsError`]). An expired or not yet valid certificate of the node's
//!   own stops it too ([`cert::check_validity`]).
//! - [`Reloading::reload`] reads them again (on SIGHUP, and when one of
//!   them changes: [`Reloading::watch`]). A new configuration replaces the
//!   old one only once every file of it loaded and checked: a half-written
//!   or wrong file keeps the old certificate in use, with an error naming
//!   the file. Connections already open keep the configuration they were
//!   made with.
//! - A failed HTTPS handshake (plaintext spoken to the TLS port, an
//!   unknown or missing client certificate, garbage, no handshake in time)
//!   closes that connection only; it is counted in
//!   `tls_handshake_failures_total` and logged with the peer's address and
//!   the reason (at most [`LOG_BURST`] lines per [`LOG_WINDOW`], the rest
//!   summed up).
//! - ALPN offers `h2` and `http/1.1`; the HTTP listener serves whichever
//!   the client picked.

pub mod cert;
pub mod peer;

use crate::metrics::Metrics;
pub use cert::{CertError, CertInfo, url_host};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
pub use tsohost_client::tls::TlsError;
use tsohost_client::tls::{certified_key, provider, read_roots};

/// How often the files are checked for a change (SIGHUP reloads at once).
pub const POLL: Duration = Duration::from_secs(2);

/// Handshake failures logged per [`LOG_WINDOW`] at most; every one is counted.
pub const LOG_BURST: u32 = 20;

/// See [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Why a set of TLS files was refused: the error names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file is missing, unreadable, not PEM, or a key does not match.
    #[error(transparent)]
    Files(#[from] TlsError),
    /// A peer certificate that does not name this node, and only it
    /// ([`peer`]).
    #[error(
        "{} (--peer-tls-cert) is not node {node}'s peer certificate: {found}. A peer \
         certificate names its node, and only it, as the DNS name {expected} (for a test \
         setup: `tsohost certs init DIR --peer-ids 1,2,3`)",
        path.display()
    )]
    NotThisNode {
        path: PathBuf,
        node: u64,
        expected: String,
        /// What the certificate names instead.
        found: String,
    },
}

/// Files that together make one TLS configuration, loaded whole.
pub trait Source: Send + Sync + 'static {
    /// What the files make; cheap to clone (`Arc`s).
    type Config: Clone + Send + Sync + 'static;

    /// Every file read, watched for changes.
    fn paths(&self) -> Vec<&Path>;

    /// Read and check every file.
    fn load(&self) -> Result<Self::Config, LoadError>;

    /// The files, for a log line: "the TLS certificate X and key Y".
    fn describe(&self) -> String;
}

/// The files of `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the node's certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (RSA, ECDSA or Ed25519).
    pub key: PathBuf,
    /// PEM certificates of the CA(s) that sign client certificates; when
    /// set, a client without such a certificate is refused (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl Source for TlsFiles {
    type Config = Arc<ServerConfig>;

    fn paths(&self) -> Vec<&Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }

    /// The server configuration these files describe, every file checked.
    fn load(&self) -> Result<Arc<ServerConfig>, LoadError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
        };
        let identity = certified_key(&self.cert, &self.key)?;
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(identity)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn describe(&self) -> String {
        format!(
            "the TLS certificate {} and key {}",
            self.cert.display(),
            self.key.display()
        )
    }
}

impl TlsFiles {
    /// See [`cert::check_validity`].
    pub fn check_at_start(&self, now: OffsetDateTime) -> Result<Option<CertInfo>, CertError> {
        cert::check_validity(&self.cert, "--tls-cert", now)
    }
}

/// A verifier that requires a client certificate signed by a CA of the PEM
/// file `ca`.
fn client_verifier(
    ca: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider())
        .build()
        .map_err(|e| TlsError::BadCa {
            path: ca.to_path_buf(),
            why: e.to_string(),
        })
}

/// What identifies a version of a file without reading it: a replaced or
/// rewritten file changes at least one of these.
type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint<S: Source>(files: &S) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .paths()
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

/// A TLS configuration in use, swapped whole when its files change.
pub struct Reloading<S: Source> {
    files: S,
    current: RwLock<S::Config>,
    /// The files as they were at the last load attempt, good or bad: a bad
    /// file is reported once, not at every poll.
    seen: Mutex<Fingerprint>,
    metrics: Arc<Metrics>,
    log: RateLimitedLog,
}

impl<S: Source + std::fmt::Debug> std::fmt::Debug for Reloading<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The TLS side of the HTTP listener.
pub type Tls = Reloading<TlsFiles>;

impl<S: Source> Reloading<S> {
    /// Load `files`; an error names the file and what is wrong with it.
    pub fn new(files: S, metrics: Arc<Metrics>) -> Result<Arc<Self>, LoadError> {
        let seen = fingerprint(&files);
        let config = files.load()?;
        Ok(Arc::new(Reloading {
            files,
            current: RwLock::new(config),
            seen: Mutex::new(seen),
            metrics,
            log: RateLimitedLog::default(),
        }))
    }

    /// The files in use.
    pub fn files(&self) -> &S {
        &self.files
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> S::Config {
        self.current.read().unwrap().clone()
    }

    /// Read the files again and use them for new connections; on an error
    /// the current configuration stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        *self.seen.lock().unwrap() = fingerprint(&self.files);
        match self.files.load() {
            Ok(config) => {
                *self.current.write().unwrap() = config;
                self.metrics.tls_reloads_total.inc();
                Ok(())
            }
            Err(e) => {
                self.metrics.tls_reload_failures_total.inc();
                Err(e)
            }
        }
    }

    /// Reload, logging the outcome; `why` says what triggered it.
    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!("{why}: reloaded {}", self.files.describe()),
            Err(e) => tracing::error!(
                "{why}: {} were NOT reloaded, the previous certificate stays in use: {e}. \
                 Fix the file and send SIGHUP (or save it again)",
                self.files.describe()
            ),
        }
    }

    /// Reload on SIGHUP, and when a file's size, time or inode changes
    /// (checked every [`POLL`]), for as long as `self` lives.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let signalled = tokio::select! {
                    s = hangup.recv() => s.is_some(),
                    _ = tokio::time::sleep(POLL) => false,
                };
                let Some(this) = this.upgrade() else { return };
                if signalled {
                    this.reload_logged("SIGHUP");
                } else if fingerprint(&this.files) != *this.seen.lock().unwrap() {
                    this.reload_logged("a TLS file changed");
                }
            }
        });
        Ok(())
    }
}

impl Tls {
    /// The TLS handshake of an accepted connection, within `timeout`; `None`
    /// (counted and logged) if it failed.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let config = self.current();
        let outcome = tokio::time::timeout(timeout, async {
            expect_handshake(&stream, "HTTP", "use https://").await?;
            tokio_rustls::TlsAcceptor::from(config)
                .accept(stream)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        let why = match outcome {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(why)) => why,
            Err(_) => format!("no TLS handshake within {timeout:?}"),
        };
        self.metrics.tls_handshake_failures_total.inc();
        self.log
            .log(remote, &format!("TLS handshake failed: {why}"));
        None
    }
}

/// The first byte of a TLS connection: a handshake record.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// Whether `stream`, accepted on a TLS port, opens with a TLS handshake;
/// if not, why, plainly: `plaintext {protocol} spoken to the TLS port
/// ({fix})` rather than rustls's "corrupt message".
pub async fn expect_handshake(stream: &TcpStream, protocol: &str, fix: &str) -> Result<(), String> {
    match first_byte(stream).await {
        Some(HANDSHAKE_RECORD) => Ok(()),
        Some(b) if b.is_ascii_graphic() => Err(format!(
            "plaintext {protocol} spoken to the TLS port ({fix})"
        )),
        Some(b) => Err(format!("not a TLS handshake (first byte {b:#04x})")),
        // Closed or failed: the handshake reports it.
        None => Ok(()),
    }
}

/// The first byte the peer of `stream` sent, left in the stream (`None`:
/// closed or failed before one came).
pub async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}

/// Warnings about refused connections, at most [`LOG_BURST`] per
/// [`LOG_WINDOW`]: a scanner or a misconfigured fleet cannot flood the
/// log. The metrics count every refusal.
#[derive(Default)]
pub struct RateLimitedLog(Mutex<LogBudget>);

impl RateLimitedLog {
    /// Warn that the connection from `remote` was refused and `why`.
    pub fn log(&self, remote: SocketAddr, why: &str) {
        let mut budget = self.0.lock().unwrap();
        if let Some(suppressed) = budget.admit(Instant::now()) {
            if suppressed > 0 {
                tracing::warn!(
                    "{suppressed} more refused connections were not logged (the \
                     tsohost_*_total counters count all)"
                );
            }
            tracing::warn!("refused a connection from {remote}: {why}");
        }
    }
}

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]: a scanner or a
/// misconfigured fleet cannot flood the log.
#[derive(Default)]
struct LogBudget {
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    /// `Some(lines suppressed since the last one logged)` if this line may
    /// be logged.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|start| now.duration_since(start) >= LOG_WINDOW)
        {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged >= LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_admits_a_burst_per_window_and_counts_the_rest() {
        let mut budget = LogBudget::default();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(budget.admit(t0), Some(0));
        }
        assert_eq!(budget.admit(t0), None);
        assert_eq!(budget.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(budget.admit(t0 + LOG_WINDOW), Some(2));
        assert_eq!(budget.admit(t0 + LOG_WINDOW), Some(0));
    }
}
