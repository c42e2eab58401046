//! HTTPS on the client API (`serve --tls-cert --tls-key [--tls-client-ca]`):
//! the server's TLS configuration, its reload for certificate rotation,
//! and the handshake of each connection.
//!
//! - The files are read and checked before the node starts; a bad one
//!   stops it with an error naming the file and the problem
//!   ([`TlsError`]).
//! - [`Tls::reload`] reads them again (on SIGHUP, and when one of them
//!   changes: [`Tls::watch`]). A new configuration replaces the old one
//!   only once every file of it loaded and the key matched the
//!   certificate: a half-written or wrong file keeps the old certificate
//!   serving, with an error naming the file. Connections already open keep
//!   the configuration they were accepted with.
//! - A failed handshake (plaintext spoken to the TLS port, an unknown or
//!   missing client certificate, garbage, no handshake in time) closes that
//!   connection only; it is counted in `tls_handshake_failures_total` and
//!   logged with the peer's address and the reason (at most
//!   [`LOG_BURST`] lines per [`LOG_WINDOW`], the rest summed up).
//! - ALPN offers `h2` and `http/1.1`; the HTTP listener serves whichever
//!   the client picked.

use crate::metrics::Metrics;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tsohost_client::tls::{certified_key, provider, read_roots};

pub use tsohost_client::tls::TlsError;

/// How often the files are checked for a change (SIGHUP reloads at once).
pub const POLL: Duration = Duration::from_secs(2);

/// Handshake failures logged per [`LOG_WINDOW`] at most; every one is counted.
pub const LOG_BURST: u32 = 20;

/// See [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

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

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// The server configuration these files describe, every file checked.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let identity = certified_key(&self.cert, &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(read_roots(ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::BadCa {
                    path: ca.clone(),
                    why: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(identity)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// What identifies a version of a file without reading it: a replaced or
/// rewritten file changes at least one of these.
type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint(files: &TlsFiles) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .paths()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

/// The TLS side of the HTTP listener: the current configuration, swapped
/// whole on reload.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as they were at the last load attempt, good or bad: a bad
    /// file is reported once, not at every poll.
    seen: Mutex<Fingerprint>,
    metrics: Arc<Metrics>,
    log: Mutex<LogBudget>,
}

impl Tls {
    /// Load `files`; an error names the file and what is wrong with it.
    pub fn new(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Arc<Tls>, TlsError> {
        let seen = fingerprint(&files);
        let config = files.load()?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(config),
            seen: Mutex::new(seen),
            metrics,
            log: Mutex::new(LogBudget::default()),
        }))
    }

    /// The files served.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Read the files again and serve them to new connections; on an error
    /// the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap() = fingerprint(&self.files);
        match self.files.load() {
            Ok(config) => {
                *self.current.write().unwrap() = config;
                Metrics::inc(&self.metrics.tls_reloads_total);
                Ok(())
            }
            Err(e) => {
                Metrics::inc(&self.metrics.tls_reload_failures_total);
                Err(e)
            }
        }
    }

    /// Reload, logging the outcome; `why` says what triggered it.
    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                "{why}: reloaded the TLS certificate {} and key {}",
                self.files.cert.display(),
                self.files.key.display()
            ),
            Err(e) => tracing::error!(
                "{why}: the TLS files were NOT reloaded, the previous certificate keeps \
                 serving: {e}. Fix the file and send SIGHUP (or save it again)"
            ),
        }
    }

    /// Reload on SIGHUP, and when a file's size, time or inode changes
    /// (checked every [`POLL`]), for as long as the process runs.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let signalled = tokio::select! {
                    s = hangup.recv() => s.is_some(),
                    _ = tokio::time::sleep(POLL) => false,
                };
                let Some(tls) = tls.upgrade() else { return };
                if signalled {
                    tls.reload_logged("SIGHUP");
                } else if fingerprint(&tls.files) != *tls.seen.lock().unwrap() {
                    tls.reload_logged("a TLS file changed");
                }
            }
        });
        Ok(())
    }

    /// The TLS handshake of an accepted connection, within `timeout`; `None`
    /// (counted and logged) if it failed.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let config = self.current.read().unwrap().clone();
        let outcome = tokio::time::timeout(timeout, async {
            // A TLS connection opens with a handshake record (0x16); say
            // so plainly when a client speaks HTTP instead.
            let mut first = [0u8; 1];
            if let Ok(1) = stream.peek(&mut first).await
                && first[0] != 0x16
            {
                return Err(if first[0].is_ascii_uppercase() {
                    "plaintext HTTP spoken to the TLS port (use https://)".to_string()
                } else {
                    format!("not a TLS handshake (first byte {:#04x})", first[0])
                });
            }
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
        Metrics::inc(&self.metrics.tls_handshake_failures_total);
        let mut log = self.log.lock().unwrap();
        if let Some(suppressed) = log.admit(Instant::now()) {
            if suppressed > 0 {
                tracing::warn!(
                    "{suppressed} more TLS handshake failures were not logged \
                     (tsohost_tls_handshake_failures_total counts all)"
                );
            }
            tracing::warn!("TLS handshake with {remote} failed: {why}");
        }
        None
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
