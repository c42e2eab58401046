//! The HTTP listener: the API router served over hyper with the limits a
//! public endpoint needs and `axum::serve` does not set.
//!
//! - At most [`Limits::max_connections`] connections are open at once. A
//!   connection over the limit is closed as soon as it is accepted (counted
//!   in `http_connections_refused_total`), so a flood costs bounded memory
//!   and file descriptors, and the storage engine keeps the descriptors it
//!   needs.
//! - A client has [`Limits::header_timeout`] to send a request's head, and
//!   an idle keep-alive connection is closed after as long (hyper's header
//!   read timer covers both): a slow or silent client cannot hold a slot.
//! - A request head is at most [`MAX_HEAD`] bytes; bodies are bounded by
//!   the API's extractors.
//! - On shutdown the listener closes, requests in flight are answered, and
//!   idle connections are closed; after [`DRAIN`] the rest are dropped.
//! - With TLS ([`serve_tls`]) the handshake runs in the connection's task
//!   within the header timeout, holding a connection slot; a failed one
//!   closes that connection only (see [`crate::tls`]). HTTP/2 is served to
//!   clients that chose `h2` in ALPN, HTTP/1.1 to the others; plaintext
//!   stays HTTP/1.1 only.
//! - Without TLS, a connection that opens with a TLS handshake (a client
//!   using `https://` against a plaintext node) is closed with a log line
//!   that says so and counted in `http_tls_on_plaintext_port_total`,
//!   rather than answered with a 400 the client reports as a corrupt TLS
//!   message.

use crate::metrics::Metrics;
use crate::tls::Tls;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request head (request line and headers) read into memory.
pub const MAX_HEAD: usize = 64 * 1024;

/// Descriptors kept out of the connection budget: RocksDB's files, the peer
/// network, the component cache.
pub const RESERVED_FDS: u64 = 256;

/// How long shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// How often a refusal or accept failure is logged at most (they come in
/// floods; the metrics count every one).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// These limits, with `max_connections` lowered to what the process's
    /// open-file limit (`soft`) leaves after [`RESERVED_FDS`]; `None` when
    /// nothing had to change.
    pub fn fitted_to(self, soft: u64) -> Option<Limits> {
        let room = soft.saturating_sub(RESERVED_FDS).max(1);
        (self.max_connections as u64 > room).then_some(Limits {
            max_connections: room as usize,
            ..self
        })
    }
}

/// Raise the soft open-file limit towards the hard one so that
/// `limits.max_connections` fit, and lower the connection limit (with a
/// warning naming the flag and `ulimit -n`) if they still do not.
pub fn fit_to_open_file_limit(limits: Limits) -> Limits {
    let want = limits.max_connections as u64 + RESERVED_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return limits;
    }
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    match limits.fitted_to(lim.rlim_cur) {
        None => limits,
        Some(fitted) => {
            tracing::warn!(
                "the open-file limit is {} (ulimit -n): serving at most {} HTTP connections \
                 instead of --max-connections {}; raise the hard limit to serve more",
                lim.rlim_cur,
                fitted.max_connections,
                limits.max_connections
            );
            fitted
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    serve_tls(listener, app, limits, metrics, None, shutdown).await
}

/// As [`serve`]; with `tls`, every connection is HTTPS.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    // Handshakes still under way when shutdown begins are abandoned.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let refusals = Arc::new(crate::tls::RateLimitedLog::default());
    let mut last_log: Option<Instant> = None;
    let mut should_log = move || {
        let now = Instant::now();
        let due = last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if due {
            last_log = Some(now);
        }
        due
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: wait rather than spin;
                    // the connections already open keep being served.
                    metrics.http_accept_errors_total.inc();
                    if should_log() {
                        tracing::warn!("accepting an HTTP connection failed: {e}; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.http_connections_refused_total.inc();
            if should_log() {
                tracing::warn!(
                    "refused an HTTP connection from {remote}: {} connections are open \
                     (--max-connections)",
                    limits.max_connections
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &tls {
            let (tls, app, metrics, mut closed) =
                (tls.clone(), app.clone(), metrics.clone(), closed.clone());
            let (h1, h2, watcher) = (http.clone(), h2.clone(), graceful.watcher());
            metrics.http_connections_open.inc();
            tokio::spawn(async move {
                let stream = tokio::select! {
                    s = tls.handshake(stream, remote, limits.header_timeout) => s,
                    _ = closed.wait_for(|c| *c) => None,
                };
                if let Some(stream) = stream {
                    let h2_chosen = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let (io, app) = (TokioIo::new(stream), TowerToHyperService::new(app));
                    let _ = if h2_chosen {
                        watcher.watch(h2.serve_connection(io, app)).await
                    } else {
                        watcher.watch(h1.serve_connection(io, app)).await
                    };
                }
                metrics.http_connections_open.dec();
                drop(slot);
            });
            continue;
        }
        let (app, metrics, mut closed) = (app.clone(), metrics.clone(), closed.clone());
        let (h1, watcher, refusals) = (http.clone(), graceful.watcher(), refusals.clone());
        metrics.http_connections_open.inc();
        tokio::spawn(async move {
            let speaks_tls = tokio::select! {
                tls = opens_with_tls(&stream, limits.header_timeout) => tls,
                _ = closed.wait_for(|c| *c) => true,
            };
            if speaks_tls {
                if !*closed.borrow() {
                    metrics.http_tls_on_plaintext_port_total.inc();
                    refusals.log(
                        remote,
                        "a TLS handshake spoken to the plaintext HTTP port (use http://, or \
                         start the node with --tls-cert and --tls-key)",
                    );
                }
            } else {
                // Errors here are the client's (reset, timeout, bad head);
                // hyper has already answered what it could.
                let io = TokioIo::new(stream);
                let _ = watcher
                    .watch(h1.serve_connection(io, TowerToHyperService::new(app)))
                    .await;
            }
            metrics.http_connections_open.dec();
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP connections still open {} s after shutdown began; closing them",
            DRAIN.as_secs()
        );
    }
}

/// Whether a plaintext connection opens with a TLS handshake record; a
/// client silent for `timeout` is left to hyper's header timer.
async fn opens_with_tls(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    let first = tokio::time::timeout(timeout, crate::tls::first_byte(stream)).await;
    first == Ok(Some(crate::tls::HANDSHAKE_RECORD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_for_reserved_descriptors() {
        let l = Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
        };
        assert_eq!(l.fitted_to(20_000), None);
        assert_eq!(l.fitted_to(1024 + RESERVED_FDS), None);
        assert_eq!(l.fitted_to(1024).unwrap().max_connections, 768);
        assert_eq!(l.fitted_to(10).unwrap().max_connections, 1);
    }
}
