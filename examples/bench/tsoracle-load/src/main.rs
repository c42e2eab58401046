//! `tsoracle-load`: the tsoracle counterpart of `tsohost bench`.
//!
//! N callers share ONE `tsoracle_client::Client` (tsoracle's own client,
//! which coalesces concurrent `get_ts` calls into one `GetTs` RPC) and ask
//! for timestamps back to back for a fixed time after a warm-up: the
//! counterpart of `tsohost bench --client`. With `--client-per-caller` each
//! caller has a client of its own instead (its own channel, so its own
//! HTTP/2 connection, and nothing to coalesce with: one RPC per call with
//! `--flush-us 0`), the counterpart of `tsohost bench` without `--client`
//! (one keep-alive connection per caller, one request per call).
//!
//! Prints the same JSON report as `tsohost bench`: calls and timestamps per
//! second, latency percentiles per call (p50, p99, p999 and max, client
//! side), errors, and how many answers were not above the previous answer
//! of the same caller, counted by `tsohost_client::stats` as `tsohost
//! bench` counts them (the tsohost client crate pulls neither wasmtime nor
//! RocksDB).
//!
//!   tsoracle-load --endpoints http://127.0.0.1:50551[,...] --callers 64 \
//!       --count 1 --duration 10s [--warmup 1s] [--flush-us 1000] \
//!       [--client-per-caller]
//!
//! `--flush-us` overrides the client's batch flush interval (its default,
//! 1 ms, is used when the flag is absent).

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsohost_client::stats::{Outcome, Summary, Tally};
use tsoracle_client::{Client, ClientBuilder};

struct Args {
    endpoints: Vec<String>,
    callers: usize,
    count: u32,
    duration: Duration,
    warmup: Duration,
    flush: Option<Duration>,
    /// One client per caller instead of one shared by all.
    client_per_caller: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        endpoints: vec!["http://127.0.0.1:50551".into()],
        callers: 16,
        count: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        flush: None,
        client_per_caller: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let dur = |s: String| humantime::parse_duration(&s).map_err(|e| e.to_string());
        match flag.as_str() {
            "--endpoints" => a.endpoints = value()?.split(',').map(str::to_string).collect(),
            "--callers" => a.callers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("{e}"))?,
            "--duration" => a.duration = dur(value()?)?,
            "--warmup" => a.warmup = dur(value()?)?,
            "--client-per-caller" => a.client_per_caller = true,
            "--flush-us" => {
                a.flush = Some(Duration::from_micros(
                    value()?.parse().map_err(|e| format!("{e}"))?,
                ))
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.callers == 0 || a.count == 0 {
        return Err("--callers and --count must be positive".into());
    }
    Ok(a)
}

/// The report, as `tsohost bench` writes it (plus `flush_us`); `mode` is
/// `client` (one shared client) or `client-per-caller`.
#[derive(Serialize)]
struct Report {
    url: String,
    mode: &'static str,
    flush_us: Option<u64>,
    connections: usize,
    count: u32,
    duration_s: f64,
    #[serde(flatten)]
    summary: Summary,
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tsoracle-load: {e}");
            std::process::exit(2);
        }
    };
    // Clients connect lazily: each caller's first call (in the warm-up)
    // opens its client's channel.
    let mut clients = Vec::with_capacity(args.callers);
    if args.client_per_caller {
        for _ in 0..args.callers {
            clients.push(build_client(&args).await);
        }
    } else {
        clients.resize(args.callers, build_client(&args).await);
    }
    let count = args.count;
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(Tally::measure(
                start,
                end,
                client,
                move |client| async move {
                    let first = if count == 1 {
                        client.get_ts().await.map(|t| t.0)
                    } else {
                        client
                            .get_ts_batch(count)
                            .await
                            .map(|v| v.first().map_or(0, |t| t.0))
                    };
                    (client, first.map_or(Outcome::Failed, Outcome::Answered))
                },
            ))
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        all.merge(task.await.expect("caller panicked"));
    }
    let report = Report {
        url: args.endpoints.join(","),
        mode: if args.client_per_caller {
            "client-per-caller"
        } else {
            "client"
        },
        flush_us: args.flush.map(|f| f.as_micros() as u64),
        connections: args.callers,
        count,
        duration_s: args.duration.as_secs_f64(),
        summary: all.summary(args.duration, count as u64),
    };
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}

/// A `tsoracle_client::Client` of `args.endpoints` with `args.flush`, or exit.
async fn build_client(args: &Args) -> Arc<Client> {
    let mut builder = ClientBuilder::endpoints(args.endpoints.clone());
    if let Some(f) = args.flush {
        builder = builder.batch_flush_interval(f);
    }
    match builder.build().await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tsoracle-load: connect: {e}");
            std::process::exit(1);
        }
    }
}
