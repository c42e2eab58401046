//! `tsohost bench`: a load generator for a running node.
//!
//! N HTTP/1.1 keep-alive connections each send `POST /v1/timestamps` back to
//! back for a fixed time. The report is JSON: requests and timestamps per
//! second, latency percentiles, errors, and how many answers were not above
//! the previous answer on the same connection (always 0 for a correct node).

use crate::client::{ClientError, Connection};
use crate::timestamp::RangeJson;
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
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
    let mut connections = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        connections.push(Connection::open(&cfg.url).await?);
    }
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|mut conn| {
            let body = body.clone();
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
                    let answer = conn
                        .send(Method::POST, "/v1/timestamps", body.clone())
                        .await;
                    let took = sent.elapsed();
                    let first = match &answer {
                        Ok(a) if a.status.is_success() => {
                            serde_json::from_slice::<RangeJson>(&a.body)
                                .ok()
                                .and_then(|r| r.first())
                        }
                        _ => None,
                    };
                    if sent < start {
                        continue;
                    }
                    match first {
                        Some(ts) => {
                            if ts.0 <= last {
                                w.order_violations += 1;
                            }
                            last = ts.0;
                            w.latencies_us
                                .push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        None => {
                            w.errors += 1;
                            if answer.is_err() {
                                break;
                            }
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
