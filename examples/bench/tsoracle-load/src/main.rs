//! `tsoracle-load`: the tsoracle counterpart of `tsohost bench --client`.
//!
//! N callers share ONE `tsoracle_client::Client` (tsoracle's own client,
//! which coalesces concurrent `get_ts` calls into one `GetTs` RPC) and ask
//! for timestamps back to back for a fixed time after a warm-up. Prints the
//! same JSON report as `tsohost bench`: calls and timestamps per second,
//! latency percentiles per call (client side), errors, and how many answers
//! were not above the previous answer of the same caller.
//!
//!   tsoracle-load --endpoints http://127.0.0.1:50551[,...] --callers 64 \
//!       --count 1 --duration 10s [--warmup 1s] [--flush-us 1000]
//!
//! `--flush-us` overrides the client's batch flush interval (its default,
//! 1 ms, is used when the flag is absent).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tsoracle_client::{Client, ClientBuilder};

struct Args {
    endpoints: Vec<String>,
    callers: usize,
    count: u32,
    duration: Duration,
    warmup: Duration,
    flush: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        endpoints: vec!["http://127.0.0.1:50551".into()],
        callers: 16,
        count: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        flush: None,
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

struct Worker {
    latencies_us: Vec<u32>,
    errors: u64,
    order_violations: u64,
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
    let mut builder = ClientBuilder::endpoints(args.endpoints.clone());
    if let Some(f) = args.flush {
        builder = builder.batch_flush_interval(f);
    }
    let client: Arc<Client> = match builder.build().await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tsoracle-load: connect: {e}");
            std::process::exit(1);
        }
    };
    let count = args.count;
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let tasks: Vec<_> = (0..args.callers)
        .map(|_| {
            let client = client.clone();
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
                    let first = if count == 1 {
                        client.get_ts().await.map(|t| t.0)
                    } else {
                        client
                            .get_ts_batch(count)
                            .await
                            .map(|v| v.first().map_or(0, |t| t.0))
                    };
                    let took = sent.elapsed();
                    if sent < start {
                        continue;
                    }
                    match first {
                        Ok(ts) => {
                            if ts <= last {
                                w.order_violations += 1;
                            }
                            last = ts;
                            w.latencies_us
                                .push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(_) => w.errors += 1,
                    }
                }
                w
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut order_violations) = (0u64, 0u64);
    for task in tasks {
        let w = task.await.expect("caller panicked");
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
    let secs = args.duration.as_secs_f64();
    let requests = all.len() as u64;
    let report = serde_json::json!({
        "url": args.endpoints.join(","),
        "mode": "client",
        "flush_us": args.flush.map(|f| f.as_micros() as u64),
        "connections": args.callers,
        "count": count,
        "duration_s": secs,
        "requests": requests,
        "errors": errors,
        "order_violations": order_violations,
        "requests_per_s": requests as f64 / secs,
        "timestamps_per_s": (requests * count as u64) as f64 / secs,
        "latency": {
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "max_us": all.last().copied().unwrap_or(0) as u64,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
