//! Load on a cluster: concurrent clients that ask any node for timestamps,
//! follow redirects to the leader, move to the next node on an error or a
//! refusal, and hand every request's outcome, with its send and receive
//! times, to a [`Recorder`]. The chaos harness, the benchmark programs and
//! the black-box tests all load nodes with it.

use crate::client::{Answer, Connection};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How the clients ask.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Timestamps per request (1 sends an empty body).
    pub count: u64,
    /// A connection or request that takes longer than this fails.
    pub timeout: Duration,
    /// The pause after a failure, before the next node is tried.
    pub backoff: Duration,
}

/// What a client does with the outcome of each request.
pub trait Recorder: Send + 'static {
    /// A 200 answer to the request sent at `sent`, received at `received`.
    /// `false` if it carries no timestamp: the client then fails over as it
    /// does on an error.
    fn answered(&mut self, sent: Instant, received: Instant, answer: &Answer) -> bool;

    /// The request sent at `sent` got no timestamp: an error, a refusal, a
    /// timeout.
    fn failed(&mut self, _sent: Instant) {}
}

/// Start one client per recorder on `urls` (client `c` first asks node
/// `c % urls.len()`); each runs until `stop` is set and its task then
/// returns its recorder.
pub fn spawn<R: Recorder>(
    urls: &[String],
    spec: &LoadSpec,
    stop: &Arc<AtomicBool>,
    recorders: impl IntoIterator<Item = R>,
) -> Vec<JoinHandle<R>> {
    recorders
        .into_iter()
        .enumerate()
        .map(|(c, recorder)| {
            let first = c % urls.len();
            let (urls, spec, stop) = (urls.to_vec(), spec.clone(), stop.clone());
            tokio::spawn(client(urls, first, spec, stop, recorder))
        })
        .collect()
}

/// Clients running until [`Load::stop`].
pub struct Load<R> {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<R>>,
}

impl<R: Recorder> Load<R> {
    /// As [`spawn`], with a stop flag of its own.
    pub fn start(urls: &[String], spec: &LoadSpec, recorders: impl IntoIterator<Item = R>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = spawn(urls, spec, &stop, recorders);
        Load { stop, clients }
    }

    /// Stop the clients; their recorders (of those that did not panic).
    pub async fn stop(self) -> Vec<R> {
        self.stop.store(true, Ordering::Relaxed);
        let mut recorders = Vec::with_capacity(self.clients.len());
        for c in self.clients {
            if let Ok(r) = c.await {
                recorders.push(r);
            }
        }
        recorders
    }
}

async fn client<R: Recorder>(
    urls: Vec<String>,
    mut target: usize,
    spec: LoadSpec,
    stop: Arc<AtomicBool>,
    mut recorder: R,
) -> R {
    let body = if spec.count == 1 {
        Bytes::new()
    } else {
        Bytes::from(format!("{{\"count\":{}}}", spec.count))
    };
    let mut conn: Option<Connection> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match tokio::time::timeout(spec.timeout, Connection::open(&urls[target])).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(spec.backoff).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            spec.timeout,
            c.send(Method::POST, "/v1/timestamps", body.clone()),
        )
        .await;
        let received = Instant::now();
        match &answer {
            Ok(Ok(a)) if a.status == StatusCode::OK => {
                if recorder.answered(sent, received, a) {
                    continue;
                }
            }
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
            _ => recorder.failed(sent),
        }
        conn = None;
        target = (target + 1) % urls.len();
        tokio::time::sleep(spec.backoff).await;
    }
    recorder
}
