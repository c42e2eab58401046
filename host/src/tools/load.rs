//! The load: concurrent clients that ask any node for timestamps, follow
//! redirects to the leader, fail over to another node on an error, and
//! record every answer with its send and receive times.

use crate::checker::Op;
use crate::client::Connection;
use crate::timestamp::RangeJson;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A request that takes longer than this counts as failed (its answer, if
/// any, constrains nothing).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What one client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub ops: Vec<Op>,
    /// Requests that got no timestamp (error, refusal, timeout), by the
    /// time they were sent, in microseconds since the start.
    pub failed_at: Vec<u64>,
}

/// Clients running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Seen>>,
}

impl Load {
    pub fn start(urls: &[String], clients: usize, start: Instant) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|c| {
                let (urls, stop) = (urls.to_vec(), stop.clone());
                tokio::spawn(client(c as u32, urls, start, stop))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stop the clients; everything they saw.
    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for c in self.clients {
            if let Ok(seen) = c.await {
                all.ops.extend(seen.ops);
                all.failed_at.extend(seen.failed_at);
            }
        }
        all
    }
}

async fn client(id: u32, urls: Vec<String>, start: Instant, stop: Arc<AtomicBool>) -> Seen {
    let micros = |at: Instant| at.duration_since(start).as_micros() as u64;
    let mut seen = Seen::default();
    let mut target = id as usize % urls.len();
    let mut conn: Option<Connection> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match tokio::time::timeout(REQUEST_TIMEOUT, Connection::open(&urls[target])).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            c.send(Method::POST, "/v1/timestamps", Bytes::new()),
        )
        .await;
        let received = Instant::now();
        let range = match &answer {
            Ok(Ok(a)) if a.status == StatusCode::OK => serde_json::from_slice::<RangeJson>(&a.body)
                .ok()
                .and_then(|r| Some((r.first()?.0, r.count))),
            Ok(Ok(a)) if a.status == StatusCode::TEMPORARY_REDIRECT => {
                // Follow the leader: reconnect to the node it names.
                let location = a.headers.get(hyper::header::LOCATION);
                let to = location
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| urls.iter().position(|u| l.starts_with(u.as_str())));
                target = to.unwrap_or((target + 1) % urls.len());
                conn = None;
                continue;
            }
            _ => None,
        };
        match range {
            Some((first, count)) => seen.ops.push(Op {
                sent: micros(sent),
                received: micros(received),
                first,
                count,
                client: id,
            }),
            None => {
                seen.failed_at.push(micros(sent));
                conn = None;
                target = (target + 1) % urls.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    seen
}
