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
//! - At start ([`TlsFiles::check_at_start`]) an expired or not yet valid
//!   certificate stops the node ([`CertError`]); one that does not cover
//!   the host the node is reached at only draws a warning
//!   ([`CertInfo::covers`]): a load balancer may present another name.

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

use std::net::IpAddr;
use time::OffsetDateTime;
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

/// A served certificate that must not be served, found at start.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "the certificate {} (--tls-cert) expired: it was valid from {} to {}, and it is now {}. \
         Renew it (for a test setup: `tsohost certs init DIR`) and start the node again",
        path.display(), date(not_before), date(not_after), date(now)
    )]
    Expired {
        path: PathBuf,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error(
        "the certificate {} (--tls-cert) is not valid yet: it is valid from {} to {}, and it is \
         now {}. Check this machine's clock, or use a certificate valid now (for a test setup: \
         `tsohost certs init DIR`)",
        path.display(), date(not_before), date(not_after), date(now)
    )]
    NotYetValid {
        path: PathBuf,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
}

/// `2026-12-02 07:12:52 UTC`.
fn date(t: &OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// What the start-up checks read from the node's certificate: its validity
/// and its subject alternative names (what clients check the host against;
/// the common name is not looked at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    /// Parse a DER X.509 certificate (only what is needed: validity and the
    /// subjectAltName extension).
    pub fn parse(der: &[u8]) -> Result<CertInfo, yasna::ASN1Error> {
        use yasna::Tag;
        let read_time = |r: yasna::BERReader| -> yasna::ASN1Result<OffsetDateTime> {
            if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
                Ok(*r.read_utctime()?.datetime())
            } else {
                Ok(*r.read_generalized_time()?.datetime())
            }
        };
        yasna::parse_ber(der, |r| {
            r.read_sequence(|r| {
                let info = r.next().read_sequence(|r| {
                    r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                    r.next().read_der()?; // serialNumber
                    r.next().read_der()?; // signature
                    r.next().read_der()?; // issuer
                    let (not_before, not_after) = r
                        .next()
                        .read_sequence(|r| Ok((read_time(r.next())?, read_time(r.next())?)))?;
                    r.next().read_der()?; // subject
                    r.next().read_der()?; // subjectPublicKeyInfo
                    let mut info = CertInfo {
                        not_before,
                        not_after,
                        dns_names: Vec::new(),
                        ips: Vec::new(),
                    };
                    // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
                    while let Some(field) = r.read_optional(|r| r.read_tagged_der())? {
                        if field.tag() == Tag::context(3) {
                            info.read_extensions(field.value())?;
                        }
                    }
                    Ok(info)
                })?;
                r.next().read_der()?; // signatureAlgorithm
                r.next().read_der()?; // signatureValue
                Ok(info)
            })
        })
    }

    fn read_extensions(&mut self, der: &[u8]) -> yasna::ASN1Result<()> {
        let san = yasna::models::ObjectIdentifier::from_slice(&[2, 5, 29, 17]);
        let mut names = Vec::new();
        yasna::parse_ber(der, |r| {
            r.read_sequence_of(|r| {
                r.read_sequence(|r| {
                    let id = r.next().read_oid()?;
                    r.read_optional(|r| r.read_bool())?;
                    let value = r.next().read_bytes()?;
                    if id == san {
                        names = value;
                    }
                    Ok(())
                })
            })
        })?;
        if names.is_empty() {
            return Ok(());
        }
        yasna::parse_ber(&names, |r| {
            r.read_sequence_of(|r| {
                let name = r.read_tagged_der()?;
                let (tag, value) = (name.tag(), name.value());
                if tag == yasna::Tag::context(2) {
                    self.dns_names
                        .push(String::from_utf8_lossy(value).into_owned());
                } else if tag == yasna::Tag::context(7) {
                    if let Ok(v4) = <[u8; 4]>::try_from(value) {
                        self.ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(value) {
                        self.ips.push(IpAddr::from(v6));
                    }
                }
                Ok(())
            })
        })
    }

    /// Whether a client reaching the node at `host` (a DNS name or an IP
    /// address, as in a URL) accepts this certificate's names: an IP must
    /// be among the IP addresses, a name among the DNS names, where
    /// `*.example.com` stands for one label.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => name == host,
            }
        })
    }

    /// The names covered, for a log line: `localhost, 127.0.0.1`.
    pub fn names(&self) -> String {
        let names: Vec<String> = self
            .dns_names
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect();
        if names.is_empty() {
            "no names at all (no subject alternative names; clients do not look at the common \
             name)"
                .to_string()
        } else {
            names.join(", ")
        }
    }
}

/// The host of a URL (`https://host:port/...`): a name, an IPv4 address or
/// a bracketed IPv6 address (brackets kept).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl TlsFiles {
    /// The checks of the node's certificate (the first of `cert`) that a
    /// TLS library does not make on its own certificate: refuse one outside
    /// its validity at `now`. Returns what was read of it (`None`, with a
    /// warning, when it could not be parsed for this: rustls accepted it,
    /// so it is served).
    pub fn check_at_start(&self, now: OffsetDateTime) -> Result<Option<CertInfo>, CertError> {
        let Some(der) = tsohost_client::tls::read_certs(&self.cert)
            .ok()
            .and_then(|chain| chain.into_iter().next())
        else {
            return Ok(None);
        };
        let info = match CertInfo::parse(&der) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(
                    "cannot read the validity dates and names of {} ({e}); not checking them",
                    self.cert.display()
                );
                return Ok(None);
            }
        };
        let (path, not_before, not_after) = (self.cert.clone(), info.not_before, info.not_after);
        if now > info.not_after {
            return Err(CertError::Expired {
                path,
                not_before,
                not_after,
                now,
            });
        }
        if now < info.not_before {
            return Err(CertError::NotYetValid {
                path,
                not_before,
                not_after,
                now,
            });
        }
        Ok(Some(info))
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
    fn url_host_takes_the_host_of_a_url() {
        assert_eq!(
            url_host("https://tso.example.com:7373/x"),
            Some("tso.example.com")
        );
        assert_eq!(url_host("https://10.0.0.1"), Some("10.0.0.1"));
        assert_eq!(url_host("https://[::1]:7373"), Some("[::1]"));
        assert_eq!(url_host("https://"), None);
    }

    #[test]
    fn a_certificate_covers_its_names_its_ips_and_one_label_under_a_wildcard() {
        let info = CertInfo {
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            dns_names: vec!["localhost".into(), "*.Example.com".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        };
        for host in [
            "localhost",
            "LOCALHOST.",
            "tso.example.com",
            "127.0.0.1",
            "[::1]",
        ] {
            assert!(info.covers(host), "{host}");
        }
        for host in ["example.com", "a.b.example.com", "10.0.0.1", "other"] {
            assert!(!info.covers(host), "{host}");
        }
        assert_eq!(info.names(), "localhost, *.Example.com, 127.0.0.1, ::1");
    }

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
