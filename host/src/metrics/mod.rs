//! The metrics of one node, served at `/metrics` in the Prometheus text
//! format (0.0.4) through prometheus-client.
//!
//! - **Names** follow Prometheus conventions: the `tsohost_` prefix, base
//!   units (`_seconds`), `_total` on counters, and labels rather than name
//!   variants (`requests_total{route, result}`, not `requests_ok_total`).
//! - **The request path takes no lock and allocates nothing here**: every
//!   labelled series it touches is resolved to a handle when the node
//!   starts ([`RouteMetrics`]), so a request costs relaxed atomic adds, as
//!   the hand-written counters before did. Families are looked up (under
//!   their lock) only at start and by scrapes.
//! - Values that are a view of the node's state (serving, leader, window
//!   headroom, build information) are set by the `/metrics` handler from
//!   that state just before it encodes ([`crate::node::Node::refresh_metrics`]),
//!   so they are never stale and cost the request path nothing.

pub mod driver;
pub mod histogram;

pub use driver::DriverStats;
pub use histogram::Histogram;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A gauge of a fractional value (seconds).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The timestamp routes, whose requests are counted and timed. The
/// declaration order is [`Route::ALL`]'s, so that a route indexes its
/// metrics.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/timestamps`.
    PostTimestamps,
    /// `GET /v1/timestamp`.
    GetTimestamp,
}

impl Route {
    const ALL: [Route; 2] = [Route::PostTimestamps, Route::GetTimestamp];

    fn label(self) -> &'static str {
        match self {
            Route::PostTimestamps => "/v1/timestamps",
            Route::GetTimestamp => "/v1/timestamp",
        }
    }
}

/// How a timestamp request ended, by its HTTP status. The declaration
/// order is [`Outcome::ALL`]'s, so that an outcome indexes its series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// 200: timestamps handed out.
    Ok,
    /// 307: sent to the leader.
    Redirect,
    /// 4xx: the client's mistake.
    Bad,
    /// 503: this node does not serve now.
    Unavailable,
    /// Any other status.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Redirect,
        Outcome::Bad,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn of(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            307 => Outcome::Redirect,
            503 => Outcome::Unavailable,
            400..=499 => Outcome::Bad,
            _ => Outcome::Error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Redirect => "redirect",
            Outcome::Bad => "bad",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

/// A label value written as given (the derive would write a Rust name).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Text(&'static str);

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Text,
    result: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: Text,
}

/// The labels of `tsohost_build_info`: what runs on this node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfo {
    /// The host's version.
    pub version: String,
    /// The WIT version the running driver was built against.
    pub wit_version: String,
    pub driver: String,
    pub driver_version: String,
    pub driver_digest: String,
}

/// The counter and histogram of each outcome of one route, resolved at
/// start.
#[derive(Debug)]
pub struct RouteMetrics {
    requests: [Counter; Outcome::ALL.len()],
    durations: [Histogram; Outcome::ALL.len()],
}

impl RouteMetrics {
    /// Count a request that ended with HTTP `status` after `elapsed`.
    #[inline]
    pub fn done(&self, status: u16, elapsed: Duration) {
        let i = Outcome::of(status) as usize;
        self.requests[i].inc();
        self.durations[i].observe(elapsed);
    }
}

/// The ok and error series of an operation, resolved at start.
#[derive(Debug)]
pub struct Timed {
    pub ok: Histogram,
    pub error: Histogram,
}

impl Timed {
    fn new(family: &Family<ResultLabel, Histogram>) -> Timed {
        let series = |result| {
            family.get_or_create_owned(&ResultLabel {
                result: Text(result),
            })
        };
        Timed {
            ok: series("ok"),
            error: series("error"),
        }
    }

    /// Count an operation that took `elapsed` and succeeded or not.
    pub fn observe(&self, ok: bool, elapsed: Duration) {
        if ok { &self.ok } else { &self.error }.observe(elapsed);
    }
}

/// Every metric of a node. Cheap to share (`Arc`); handles are cloned out
/// of it freely.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    routes: [RouteMetrics; Route::ALL.len()],
    /// Timestamps handed out (a batch of N counts N).
    pub timestamps_issued_total: Counter,
    /// Requests that found the window exhausted and waited for an extension.
    pub window_exhausted_total: Counter,
    /// 1 while this node serves timestamps (set at scrape).
    pub serving: Gauge,
    /// 1 while the driver reports this node as the leader (set at scrape).
    pub leader: Gauge,
    /// The leadership epoch's high part (Raft term, Paxos ballot) last reported.
    pub epoch: Gauge,
    /// New epochs this node saw reported: elections, won here or elsewhere.
    pub elections_total: Counter,
    /// The durable high water of the last term served, seconds since the epoch.
    pub high_water_seconds: FloatGauge,
    /// Seconds of timestamps left below the durable high water (set at scrape).
    pub window_headroom_seconds: FloatGauge,
    pub terms_started_total: Counter,
    /// High-water persists (start of term and extensions), by result.
    pub persist: Timed,
    /// High-water loads (start of term), by result.
    pub load: Timed,
    pub driver_crashes_total: Counter,
    pub driver_starts_total: Counter,
    pub driver_swaps_total: Counter,
    pub driver_migrations_total: Counter,
    pub peer_messages_dropped_total: Counter,
    pub peer_frames_sent_total: Counter,
    pub peer_frames_received_total: Counter,
    pub peer_auth_failures_total: Counter,
    pub http_connections_open: Gauge,
    pub http_connections_refused_total: Counter,
    pub http_accept_errors_total: Counter,
    pub tls_handshake_failures_total: Counter,
    pub http_tls_on_plaintext_port_total: Counter,
    pub tls_reloads_total: Counter,
    pub tls_reload_failures_total: Counter,
    pub admin_refusals_total: Counter,
    /// The running driver's own statistics (set at scrape).
    pub driver_stats: std::sync::Arc<DriverStats>,
    build_info: Family<BuildInfo, Gauge>,
    /// The labels `build_info` carries now; scrapes replace them under
    /// this lock, so a scrape never sees none or two.
    build: Mutex<Option<BuildInfo>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("tsohost");
        // prometheus-client appends `_total` to counters and the unit.
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        }
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        }
        fn seconds(r: &mut Registry, name: &str, help: &str) -> FloatGauge {
            let g = FloatGauge::default();
            r.register_with_unit(name, help, Unit::Seconds, g.clone());
            g
        }
        fn timed(r: &mut Registry, name: &str, help: &str) -> Timed {
            let family = Family::<ResultLabel, Histogram>::default();
            r.register_with_unit(name, help, Unit::Seconds, family.clone());
            Timed::new(&family)
        }

        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "Timestamp requests, by route and result (ok, redirect, bad, unavailable, error)",
            requests.clone(),
        );
        let durations = Family::<RequestLabels, Histogram>::default();
        r.register_with_unit(
            "request_duration",
            "Time to answer a timestamp request, by route and result",
            Unit::Seconds,
            durations.clone(),
        );
        let routes = Route::ALL.map(|route| {
            let labels = |o: Outcome| RequestLabels {
                route: Text(route.label()),
                result: Text(o.label()),
            };
            RouteMetrics {
                requests: Outcome::ALL.map(|o| requests.get_or_create_owned(&labels(o))),
                durations: Outcome::ALL.map(|o| durations.get_or_create_owned(&labels(o))),
            }
        });
        let frames = Family::<DirectionLabel, Counter>::default();
        r.register(
            "peer_frames",
            "Authenticated frames exchanged with peers, by direction",
            frames.clone(),
        );
        let frames = |d| frames.get_or_create_owned(&DirectionLabel { direction: Text(d) });
        let reloads = Family::<ResultLabel, Counter>::default();
        r.register(
            "tls_reloads",
            "Reloads of TLS certificate files (SIGHUP or a changed file), by result (error: \
             the previous certificate stayed in use)",
            reloads.clone(),
        );
        let reloads = |result| {
            reloads.get_or_create_owned(&ResultLabel {
                result: Text(result),
            })
        };
        let build_info = Family::<BuildInfo, Gauge>::default();
        let driver_stats = std::sync::Arc::new(DriverStats::default());
        r.register_collector(Box::new(driver_stats.clone()));
        r.register(
            "build_info",
            "Always 1; the labels say which host and driver this node runs",
            build_info.clone(),
        );
        Metrics {
            routes,
            timestamps_issued_total: counter(
                &mut r,
                "timestamps_issued",
                "Timestamps handed out (a batch of N counts N)",
            ),
            window_exhausted_total: counter(
                &mut r,
                "window_exhausted",
                "Requests that found the window exhausted and waited for an extension",
            ),
            serving: gauge(&mut r, "serving", "1 while this node serves timestamps"),
            leader: gauge(
                &mut r,
                "leader",
                "1 while the driver reports this node as the leader",
            ),
            epoch: gauge(
                &mut r,
                "epoch",
                "High part of the leadership epoch last reported (Raft term, Paxos ballot)",
            ),
            elections_total: counter(
                &mut r,
                "elections",
                "New leadership epochs this node saw reported (elections here or elsewhere)",
            ),
            high_water_seconds: seconds(
                &mut r,
                "high_water",
                "Durable high water of the last term this node served, Unix time",
            ),
            window_headroom_seconds: seconds(
                &mut r,
                "window_headroom",
                "Time left before timestamps reach the durable high water (0 when not serving)",
            ),
            terms_started_total: counter(
                &mut r,
                "terms_started",
                "Terms this node started serving",
            ),
            persist: timed(
                &mut r,
                "persist_duration",
                "Time to persist the high water through the driver (start of term and \
                 extensions), by result",
            ),
            load: timed(
                &mut r,
                "load_duration",
                "Time to load the high water through the driver (start of term), by result",
            ),
            driver_crashes_total: counter(
                &mut r,
                "driver_crashes",
                "Driver instances lost to a trap, a time or memory limit",
            ),
            driver_starts_total: counter(
                &mut r,
                "driver_starts",
                "Driver instances started (the first and every rebuild)",
            ),
            driver_swaps_total: counter(
                &mut r,
                "driver_swaps",
                "Hot swaps of the driver that completed",
            ),
            driver_migrations_total: counter(
                &mut r,
                "driver_migrations",
                "Migrations of this node to another driver that completed",
            ),
            peer_messages_dropped_total: counter(
                &mut r,
                "peer_messages_dropped",
                "Peer messages dropped (no peer network, unknown or blocked peer, a full queue)",
            ),
            peer_frames_sent_total: frames("sent"),
            peer_frames_received_total: frames("received"),
            peer_auth_failures_total: counter(
                &mut r,
                "peer_auth_failures",
                "Peer connections refused or cut: failed TLS or secret handshakes, bad or \
                 oversized frames",
            ),
            http_connections_open: gauge(&mut r, "http_connections_open", "HTTP connections open"),
            http_connections_refused_total: counter(
                &mut r,
                "http_connections_refused",
                "HTTP connections closed at once because --max-connections were open",
            ),
            http_accept_errors_total: counter(
                &mut r,
                "http_accept_errors",
                "Failed accepts on the HTTP listener (e.g. out of file descriptors)",
            ),
            tls_handshake_failures_total: counter(
                &mut r,
                "tls_handshake_failures",
                "TLS handshakes on the HTTP listener that failed (plaintext, garbage, a refused \
                 or missing client certificate, a timeout)",
            ),
            http_tls_on_plaintext_port_total: counter(
                &mut r,
                "http_tls_on_plaintext_port",
                "Connections to the plaintext HTTP port that opened with a TLS handshake",
            ),
            admin_refusals_total: counter(
                &mut r,
                "admin_refusals",
                "Admin API requests refused: the admin API is off, or no or a wrong token",
            ),
            tls_reloads_total: reloads("ok"),
            tls_reload_failures_total: reloads("error"),
            driver_stats,
            build_info,
            build: Mutex::new(None),
            registry: r,
        }
    }

    /// The counters and histogram of `route`.
    #[inline]
    pub fn route(&self, route: Route) -> &RouteMetrics {
        &self.routes[route as usize]
    }

    /// Make `tsohost_build_info` carry `info`.
    pub fn set_build_info(&self, info: BuildInfo) {
        let mut build = self.build.lock().unwrap();
        if build.as_ref() != Some(&info) {
            self.build_info.clear();
            self.build_info.get_or_create(&info).set(1);
            *build = Some(info);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // Under the build-info lock: a scrape never sees the series being
        // replaced.
        let _build = self.build.lock().unwrap();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_labels_units_and_totals() {
        let m = Metrics::default();
        m.timestamps_issued_total.inc_by(5);
        m.route(Route::PostTimestamps)
            .done(200, Duration::from_micros(70));
        m.route(Route::GetTimestamp)
            .done(503, Duration::from_millis(3));
        m.persist.observe(false, Duration::from_millis(2));
        m.high_water_seconds.set(1.5);
        m.set_build_info(BuildInfo {
            version: "1".into(),
            wit_version: "0.1.0".into(),
            driver: "raft".into(),
            driver_version: "2".into(),
            driver_digest: "sha256:ab".into(),
        });
        let text = m.render();
        for line in [
            "# TYPE tsohost_timestamps_issued_total counter",
            "tsohost_timestamps_issued_total 5",
            "tsohost_requests_total{route=\"/v1/timestamps\",result=\"ok\"} 1",
            "tsohost_requests_total{route=\"/v1/timestamp\",result=\"unavailable\"} 1",
            "tsohost_requests_total{route=\"/v1/timestamp\",result=\"ok\"} 0",
            "tsohost_request_duration_seconds_bucket{route=\"/v1/timestamps\",result=\"ok\",le=\"0.0001\"} 1",
            "tsohost_persist_duration_seconds_count{result=\"error\"} 1",
            "tsohost_high_water_seconds 1.5",
            "tsohost_peer_frames_total{direction=\"sent\"} 0",
            "tsohost_build_info{version=\"1\",wit_version=\"0.1.0\",driver=\"raft\",driver_version=\"2\",driver_digest=\"sha256:ab\"} 1",
            "# TYPE tsohost_serving gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        // The help texts end in one full stop, not two.
        assert!(!text.contains(".."), "{text}");
    }

    #[test]
    fn routes_and_outcomes_index_their_series_in_declaration_order() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i);
        }
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, i);
        }
        assert_eq!(Outcome::of(307), Outcome::Redirect);
        assert_eq!(Outcome::of(413), Outcome::Bad);
        assert_eq!(Outcome::of(500), Outcome::Error);
    }

    #[test]
    fn a_changed_build_replaces_the_series() {
        let m = Metrics::default();
        let info = |digest: &str| BuildInfo {
            version: "1".into(),
            wit_version: "0.1.0".into(),
            driver: "raft".into(),
            driver_version: "2".into(),
            driver_digest: digest.into(),
        };
        m.set_build_info(info("sha256:aa"));
        m.set_build_info(info("sha256:bb"));
        let text = m.render();
        assert_eq!(text.matches("tsohost_build_info{").count(), 1, "{text}");
        assert!(text.contains("driver_digest=\"sha256:bb\""), "{text}");
    }
}
