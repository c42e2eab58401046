//! `tsohost bench`: a load generator for a running node.
//!
//! N workers ask for timestamps back to back for a fixed time, either each
//! on its own HTTP/1.1 keep-alive connection (`raw`: what the server alone
//! can do) or as callers of one [`tsohost_client::Client`] (`client`: what
//! an application gets, with requests coalesced). The report is JSON:
//! calls and timestamps per second, latency percentiles, errors, and how
//! many answers were not above the previous answer of the same worker
//! (always 0 for a correct node).

use crate::client::{ClientError, Connection};
use crate::timestamp::RangeJson;
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
    /// Callers of one coalescing client instead of raw connections.
    pub client: bool,
    pub connections: usize,
    pub count: u64,
    pub duration: Duration,
    pub warmup: Duration,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    /// `raw` connections or `client` callers.
    pub mode: &'static str,
    pub connections: usize,
    pub count: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub order_violations: u64,
    pub requests_per_s: f64,
    pub timestamps_per_s: f64,
    pub latency: Latency,
}

/// Where a worker gets its timestamps.
enum Source {
    Raw { conn: Connection, body: Bytes },
    Client(tsohost_client::Client),
}

impl Source {
    /// The first timestamp of one call; `Ok(None)` for a refused call,
    /// `Err` when the connection is gone.
    async fn call(&mut self, count: u64) -> Result<Option<u64>, ()> {
        match self {
            Source::Raw { conn, body } => {
                let answer = conn
                    .send(Method::POST, "/v1/timestamps", body.clone())
                    .await
                    .map_err(|_| ())?;
                Ok(answer
                    .status
                    .is_success()
                    .then(|| serde_json::from_slice::<RangeJson>(&answer.body).ok())
                    .flatten()
                    .and_then(|r| r.first())
                    .map(|t| t.0))
            }
            Source::Client(client) if count == 1 => Ok(client.get_ts().await.ok().map(|t| t.0)),
            Source::Client(client) => Ok(client.get_range(count).await.ok().map(|r| r.first.0)),
        }
    }
}

struct Worker {
    latencies_us: Vec<u32>,
    errors: u64,
    order_violations: u64,
}

pub async fn run(cfg: BenchConfig) -> Result<Report, ClientError> {
    let body = if cfg.count == 1 {
        Bytes::new()
    } else {
        Bytes::from(format!("{{\"count\":{}}}", cfg.count))
    };
    let mut sources = Vec::with_capacity(cfg.connections);
    let client = tsohost_client::Client::new([cfg.url.as_str()])
        .map_err(|_| ClientError::BadUrl(cfg.url.clone()))?;
    for _ in 0..cfg.connections {
        sources.push(if cfg.client {
            Source::Client(client.clone())
        } else {
            Source::Raw {
                conn: Connection::open(&cfg.url).await?,
                body: body.clone(),
            }
        });
    }
    let count = cfg.count;
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let tasks: Vec<_> = sources
        .into_iter()
        .map(|mut source| {
            tokio::spawn(async move {
                let mut w = Worker {
                    latencies_us: Vec::with_capacity(1 << 16),
                    errors: 0,
                    order_violations: 0,
                };
                let mut last = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let first = source.call(count).await;
                    let took = sent.elapsed();
                    if sent < start {
                        continue;
                    }
                    match first {
                        Ok(Some(ts)) => {
                            if ts <= last {
                                w.order_violations += 1;
                            }
                            last = ts;
                            w.latencies_us
                                .push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Ok(None) => w.errors += 1,
                        Err(()) => {
                            w.errors += 1;
                            break;
                        }
                    }
                }
                w
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut order_violations) = (0, 0);
    for task in tasks {
        let w = task.await.expect("bench worker panicked");
        all.extend(w.latencies_us);
        errors += w.errors;
        order_violations += w.order_violations;
    }
    all.sort_unstable();
    let pct = |p: f64| -> u64 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as u64
        }
    };
    let secs = cfg.duration.as_secs_f64();
    let requests = all.len() as u64;
    Ok(Report {
        url: cfg.url,
        mode: if cfg.client { "client" } else { "raw" },
        connections: cfg.connections,
        count: cfg.count,
        duration_s: secs,
        requests,
        errors,
        order_violations,
        requests_per_s: requests as f64 / secs,
        timestamps_per_s: (requests * cfg.count) as f64 / secs,
        latency: Latency {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: all.last().copied().unwrap_or(0) as u64,
        },
    })
}
