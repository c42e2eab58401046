//! HTTP request handling: arbitrary bytes written as one HTTP/1.1
//! connection into the node's API (`tsohost::api::router`), served with the
//! hyper settings of `tsohost::http::serve`, over an in-memory duplex
//! stream. The node is not serving (no driver ever reported leadership);
//! the admin API is on with the token `fuzz-admin-token`, and its
//! coordinator is gone (admin requests that need it are refused).
//!
//! The router must never panic and never answer a 5xx other than 503.
//! One difference from `http::serve`: `half_close(true)`, so that hyper
//! answers every request read before the input's end instead of dropping
//! the connection at the end of the input.
#![no_main]

use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsohost::clock::{Clock, SkewedClock, SystemClock};
use tsohost::driver::Runtime;
use tsohost::driver::fault::GuestFaults;
use tsohost::metrics::Metrics;
use tsohost::migration::DriverRecord;
use tsohost::node::{DriverStatus, Node};
use tsohost::storage::Failpoint;

/// The admin API's bearer token.
pub const TOKEN: &str = "fuzz-admin-token";

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// One wasmtime engine for the process (uploads are compiled with it).
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(None).expect("wasmtime engine"))
        .clone()
}

/// A node as `server::serve` builds one, before its driver reports: not
/// serving, no peer network.
fn app() -> axum::Router {
    let skewed = Arc::new(SkewedClock::new(Arc::new(SystemClock::new())));
    let clock: Arc<dyn Clock> = skewed.clone();
    let metrics = Arc::new(Metrics::default());
    let status = DriverStatus {
        name: "file".into(),
        version: "0.1.0".into(),
        source: "built-in:file".into(),
        digest: "0".repeat(64),
        wit_version: "0.1.0".into(),
        loaded_at_ms: 0,
        healthy: false,
        crashes: 0,
        last_crash: None,
        swaps: 0,
    };
    let node = Node::new(
        1,
        Duration::from_secs(3),
        clock,
        status,
        DriverRecord::first("file"),
        metrics,
        None,
    );
    // The coordinator is gone: control requests are refused.
    let (control, _) = tokio::sync::mpsc::unbounded_channel();
    let admin = tsohost::api::AdminConfig {
        token: Some(TOKEN.into()),
        runtime: runtime(),
        control,
        storage_faults: Arc::new(Failpoint::default()),
        clock: skewed,
        guest_faults: Arc::new(GuestFaults::default()),
        fault_injection: true,
    };
    tsohost::api::router(node, admin)
}

fuzz_target!(|data: &[u8]| {
    let statuses: Arc<Mutex<Vec<u16>>> = Arc::default();
    let seen = statuses.clone();
    let app = app().layer(axum::middleware::map_response(move |r: Response| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(r.status().as_u16());
            r
        }
    }));
    rt().block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(tsohost::http::MAX_HEAD)
            .half_close(true);
        let conn = http.serve_connection(TokioIo::new(server), TowerToHyperService::new(app));
        let input = data.to_vec();
        let exchange = async move {
            let (mut rd, mut wr) = tokio::io::split(&mut client);
            let write = async {
                let _ = wr.write_all(&input).await;
                let _ = wr.shutdown().await;
            };
            let mut out = Vec::new();
            let read = rd.read_to_end(&mut out);
            let (_, _) = tokio::join!(write, read);
            out
        };
        let serve = async {
            let _ = conn.await;
        };
        let (out, ()) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(exchange, serve)
        })
        .await
        .expect("the connection did not finish within 60 s");
        drop(out);
    });
    for s in statuses.lock().unwrap().iter() {
        assert!(
            *s < 500 || *s == 503,
            "the API answered {s} (a 5xx other than 503)"
        );
    }
});
