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
use tsohost_client::stats::{Outcome, Summary, Tally};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
    /// Callers of one coalescing client instead of raw connections.
    pub client: bool,
    /// The client's `Config::max_in_flight`; its default when `None`.
    pub max_in_flight: Option<usize>,
    pub connections: usize,
    pub count: u64,
    pub duration: Duration,
    pub warmup: Duration,
    /// For an `https://` URL: the CA to trust and an optional client certificate.
    pub tls: Option<tsohost_client::tls::TlsConfig>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    /// `raw` connections or `client` callers.
    pub mode: &'static str,
    pub connections: usize,
    pub count: u64,
    pub duration_s: f64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Where a worker gets its timestamps.
enum Source {
    Raw { conn: Connection, body: Bytes },
    Client(tsohost_client::Client),
}

impl Source {
    /// One call: its first timestamp, a refusal, or a connection gone.
    async fn call(&mut self, count: u64) -> Outcome {
        let first = match self {
            Source::Raw { conn, body } => {
                let Ok(answer) = conn
                    .send(Method::POST, "/v1/timestamps", body.clone())
                    .await
                else {
                    return Outcome::Gone;
                };
                answer
                    .status
                    .is_success()
                    .then(|| serde_json::from_slice::<RangeJson>(&answer.body).ok())
                    .flatten()
                    .and_then(|r| r.first())
                    .map(|t| t.0)
            }
            Source::Client(client) if count == 1 => client.get_ts().await.ok().map(|t| t.0),
            Source::Client(client) => client.get_range(count).await.ok().map(|r| r.first.0),
        };
        first.map_or(Outcome::Failed, Outcome::Answered)
    }
}

pub async fn run(cfg: BenchConfig) -> Result<Report, ClientError> {
    let body = if cfg.count == 1 {
        Bytes::new()
    } else {
        Bytes::from(format!("{{\"count\":{}}}", cfg.count))
    };
    let mut sources = Vec::with_capacity(cfg.connections);
    let mut config = tsohost_client::Config {
        tls: cfg.tls.clone(),
        ..Default::default()
    };
    if let Some(n) = cfg.max_in_flight {
        config.max_in_flight = n;
    }
    let client = tsohost_client::Client::with_config([cfg.url.as_str()], config)
        .map_err(|_| ClientError::BadUrl(cfg.url.clone()))?;
    for _ in 0..cfg.connections {
        sources.push(if cfg.client {
            Source::Client(client.clone())
        } else {
            Source::Raw {
                conn: Connection::open_with(&cfg.url, cfg.tls.as_ref()).await?,
                body: body.clone(),
            }
        });
    }
    let count = cfg.count;
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let tasks: Vec<_> = sources
        .into_iter()
        .map(|source| {
            tokio::spawn(Tally::measure(
                start,
                end,
                source,
                move |mut source| async move {
                    let outcome = source.call(count).await;
                    (source, outcome)
                },
            ))
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        all.merge(task.await.expect("bench worker panicked"));
    }
    Ok(Report {
        url: cfg.url,
        mode: if cfg.client { "client" } else { "raw" },
        connections: cfg.connections,
        count: cfg.count,
        duration_s: cfg.duration.as_secs_f64(),
        summary: all.summary(cfg.duration, cfg.count),
    })
}
