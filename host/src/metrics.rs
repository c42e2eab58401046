//! Counters and gauges of one node, rendered in the Prometheus text format.
//!
//! Plain atomics: the hot path pays one relaxed add per request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $kind:ident $name:ident),* $(,)?) => {
        /// Every metric of a node. Field names are the metric names without
        /// the `tsohost_` prefix.
        #[derive(Default, Debug)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// The Prometheus text exposition of every metric.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let help = concat!($($doc),*).trim();
                    let _ = writeln!(out, "# HELP tsohost_{} {}", stringify!($name), help);
                    let _ = writeln!(out, "# TYPE tsohost_{} {}", stringify!($name), stringify!($kind));
                    let _ = writeln!(out, "tsohost_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
                out
            }
        }
    };
}

metrics! {
    /// Timestamp requests answered with timestamps.
    counter requests_ok_total,
    /// Timestamp requests refused for bad input (HTTP 400).
    counter requests_bad_total,
    /// Timestamp requests refused because this node was not serving (HTTP 503 or 307).
    counter requests_unavailable_total,
    /// Timestamps handed out (a batch of N counts N).
    counter timestamps_issued_total,
    /// Requests that found the window exhausted and waited for an extension.
    counter window_exhausted_total,
    /// 1 while this node serves timestamps.
    gauge serving,
    /// The durable high water of the current term, Unix ms (0 when not leading).
    gauge high_water_ms,
    /// Terms this node started serving.
    counter terms_started_total,
    /// High-water persists that completed (start of term and extensions).
    counter persists_total,
    /// High-water loads and persists that failed.
    counter persist_failures_total,
    /// Driver instances lost to a trap, a time or memory limit.
    counter driver_crashes_total,
    /// Driver instances started (the first and every rebuild).
    counter driver_starts_total,
    /// Hot swaps of the driver that completed.
    counter driver_swaps_total,
    /// Migrations of this node to another driver that completed.
    counter driver_migrations_total,
    /// Peer messages dropped (no peer network, unknown or blocked peer, a full queue).
    counter peer_messages_dropped_total,
    /// Frames sent to peers.
    counter peer_frames_sent_total,
    /// Authenticated frames received from peers.
    counter peer_frames_received_total,
    /// Peer connections refused or cut: failed handshakes, bad frames, oversized frames.
    counter peer_auth_failures_total,
    /// HTTP connections open now.
    gauge http_connections_open,
    /// HTTP connections closed at once because --max-connections were open.
    counter http_connections_refused_total,
    /// Failed accepts on the HTTP listener (e.g. out of file descriptors).
    counter http_accept_errors_total,
    /// TLS handshakes on the HTTP listener that failed (plaintext, garbage, a refused or missing client certificate, a timeout).
    counter tls_handshake_failures_total,
    /// Connections to the plaintext HTTP port that opened with a TLS handshake (clients using https:// against a node without TLS).
    counter http_tls_on_plaintext_port_total,
    /// Reloads of the TLS certificate files that took effect (SIGHUP or a changed file).
    counter tls_reloads_total,
    /// Reloads of the TLS certificate files refused (the previous certificate kept serving).
    counter tls_reload_failures_total,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::add(&m.timestamps_issued_total, 5);
        let text = m.render();
        assert!(text.contains("# TYPE tsohost_timestamps_issued_total counter\n"));
        assert!(text.contains("\ntsohost_timestamps_issued_total 5\n"));
        assert!(text.contains("# TYPE tsohost_serving gauge\n"));
    }
}
