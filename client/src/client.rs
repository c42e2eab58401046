//! [`Client`]: leader discovery, retries within a deadline, and request
//! coalescing.
//!
//! # Coalescing
//!
//! At most [`Config::max_in_flight`] requests are in flight at once, one
//! per request *slot*. A caller of [`Client::get_ts`] or
//! [`Client::get_range`] that finds a slot free *leads*: it takes every
//! caller queued, up to [`LOGICAL_PER_MS`] timestamps in all (what one
//! request may ask), asks for the sum in one request and splits the range
//! it gets back among them in arrival order, itself first: each caller's
//! part is consecutive, and no two parts overlap. A caller that finds no
//! slot free queues and waits to be woken, either with its part of a batch
//! or with a slot: a slot freed while callers are queued goes straight to
//! the first of them, who leads everyone queued by the time it runs.
//! Callers whose counts do not fit stay queued for the next slot. So a
//! slot is free only while nobody is queued, and no request leaves with
//! callers waiting behind a free slot.
//!
//! There is no flush delay: a lone caller finds a slot free and pays one
//! round trip, sending from its own task, which also drives the
//! connection's I/O (no dispatcher task and no connection task sit between
//! a caller and the socket, so its call crosses no threads; each crossing
//! costs a worker's wake-up, which made a batch call measurably slower
//! than a single-timestamp one). Under load, batches grow by
//! themselves while earlier requests are in flight, and each freed slot
//! costs one wake-up, of the caller who leads next. A leader whose call is
//! dropped mid-request (a timeout around it) puts its batch back at the
//! head of the queue and hands its slot on, so the others are served by
//! the next leader rather than failed.
//!
//! # Why real-time order survives coalescing
//!
//! If caller A's call returned before caller B's began, B is queued after
//! the answer that served A arrived, and joins only a request taken from
//! the queue after that, so sent after it; the server answers
//! such a request above everything it answered before, so all of B's
//! timestamps are greater than all of A's. Callers in the same batch
//! overlap in time and may be ordered either way.
//!
//! # Discovery and retries
//!
//! The client asks the leader it last heard of, else the nodes it was given
//! in turn. A follower answers 307 naming the leader, which the client
//! follows and remembers; a node that fails or does not serve is forgotten
//! and the next one tried, with exponential backoff, until the call's
//! deadline ([`Config::deadline`]).
//!
//! [`Client::status`] is not a timestamp call: it asks for one node's own
//! view, so it neither follows redirects nor prefers the leader.

use crate::connection::{self, Answer, Connection};
use crate::status::Status;
use crate::timestamp::{LOGICAL_PER_MS, RangeJson, Timestamp};
use crate::tls::TlsConfig;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The longest one call may take, retries included.
    pub deadline: Duration,
    /// Coalesced requests in flight at once. More buy throughput at a few
    /// dozen callers and cost tail latency: each request is more work for
    /// the client and the node, and on a busy machine more runnable threads
    /// wait more often for a scheduler slice. Measured on two cores against
    /// 4, 2 has 0.4-0.7x the p99 at 16-64 callers for 5-30 % fewer calls/s
    /// there, and no less at 256 (`docs/benchmarks.md`, side by side with
    /// tsoracle).
    pub max_in_flight: usize,
    /// The first wait between retries; it doubles up to [`Config::max_backoff`].
    pub backoff: Duration,
    /// The longest wait between retries: short enough that a call notices a
    /// new leader soon after an election.
    pub max_backoff: Duration,
    /// What to trust (and present) for `https://` nodes; `None` speaks
    /// plain HTTP only, and an `https://` URL is refused.
    pub tls: Option<TlsConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            deadline: Duration::from_secs(10),
            max_in_flight: 2,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            tls: None,
        }
    }
}

/// Why a call of a [`Client`] failed. Only [`Error::Deadline`] and
/// [`Error::Closed`] depend on the cluster's state; the others are the
/// caller's mistake and retrying cannot help. Cloneable because one failed
/// coalesced request fails every caller in its batch.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A node URL given to [`Client::new`] is not `http://HOST:PORT` or
    /// `https://HOST:PORT`.
    #[error("bad node URL {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// An `https://` node URL, but [`Config::tls`] is `None`.
    #[error(
        "node URL {0:?} is https:// but the client trusts no CA: set Config::tls (the CLI: \
         --ca-file FILE or TSOHOST_CA_FILE)"
    )]
    NoCa(String),
    /// [`Client::new`] was given no URL at all.
    #[error("a client needs at least one node URL")]
    NoNodes,
    /// [`Client::get_range`] was asked for 0 or more than 2^18 timestamps
    /// (one request grants at most one millisecond's worth).
    #[error("count {0} is out of range: ask for 1 to {LOGICAL_PER_MS} timestamps")]
    BadCount(u64),
    /// A node answered 4xx: the request itself is wrong (or this client
    /// does not speak that server's API), so it was not retried.
    #[error("{url} refused the request ({status}): {message}")]
    Refused {
        /// The node that refused.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// Its answer's body (a JSON error naming the problem).
        message: String,
    },
    /// No node served the call before [`Config::deadline`]: no leader, no
    /// quorum, or no node reachable.
    #[error(
        "no timestamp within {deadline:?}; last failure: {last}. Is a majority of the cluster up?"
    )]
    Deadline {
        /// The deadline that passed.
        deadline: Duration,
        /// The last attempt's failure, to tell an unreachable cluster from
        /// one without a leader.
        last: String,
    },
    /// None of the nodes answered [`Client::status`] within
    /// [`Config::deadline`].
    #[error("no node answered (each asked once, within {deadline:?} in all); last failure: {last}")]
    NoAnswer {
        /// The deadline that passed.
        deadline: Duration,
        /// The last node's failure.
        last: String,
    },
    /// The call was dropped from the queue unanswered, which happens only
    /// when the Tokio runtime running its request shut down.
    #[error("the call was dropped unanswered (was the runtime shut down?)")]
    Closed,
}

/// `count` consecutive timestamps from `first`: every value in
/// `[first, first + count)` is the caller's alone. The range may cross a
/// millisecond boundary, so the values need not share a physical part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampRange {
    /// The smallest timestamp of the range.
    pub first: Timestamp,
    /// How many values it holds; at least 1.
    pub count: u64,
}

impl TimestampRange {
    /// The largest timestamp of the range.
    pub fn last(&self) -> Timestamp {
        Timestamp(self.first.0 + self.count - 1)
    }

    /// Every timestamp of the range, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = Timestamp> + use<> {
        let first = self.first.0;
        (first..first + self.count).map(Timestamp)
    }
}

/// A client of a tsohost cluster; cheap to clone, shared by all callers.
/// Needs a Tokio runtime.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

/// A queued caller waiting for `count` timestamps.
struct Waiter {
    count: u64,
    turn: oneshot::Sender<Turn>,
}

/// What a queued caller is woken with.
enum Turn {
    /// Its part of a batch another caller led (or that batch's error).
    Part(Result<TimestampRange, Error>),
    /// A request slot: lead the callers queued.
    Lead(Slot),
}

/// Queued callers and free request slots.
///
/// Invariant: a caller queues only when no slot is free, and a slot is
/// counted free again only when nobody is queued to take it
/// ([`Shared::hand_on`]). So `free > 0` only while `waiters` is empty, but
/// for one case that costs no progress: a leader dropped mid-request puts
/// its callers back and hands its slot to the first, and callers past one
/// request's worth then wait for the next slot to come back.
struct Queue {
    /// Callers waiting to be taken into a request, in arrival order.
    waiters: VecDeque<Waiter>,
    /// Request slots nobody holds.
    free: usize,
}

impl Queue {
    /// Hand `slot` to the first caller still waiting (one whose call was
    /// dropped is skipped and forgotten); `slot` comes back if nobody is.
    fn give(&mut self, mut slot: Slot) -> Option<Slot> {
        while let Some(waiter) = self.waiters.pop_front() {
            let Err(Turn::Lead(back)) = waiter.turn.send(Turn::Lead(slot)) else {
                return None;
            };
            slot = back;
        }
        Some(slot)
    }
}

/// The right to have one request in flight. Dropped (its request answered,
/// or its leader's call dropped), it goes to the first caller queued, who
/// leads next, or back to the free slots.
struct Slot {
    /// `None` once counted free again (dropping it then does nothing).
    shared: Option<Arc<Shared>>,
}

impl Slot {
    fn new(shared: &Arc<Shared>) -> Slot {
        Slot {
            shared: Some(shared.clone()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.hand_on();
        }
    }
}

struct Shared {
    urls: Vec<String>,
    config: Config,
    /// The node that served last, tried first.
    leader: Mutex<Option<String>>,
    /// Idle keep-alive connections, by node URL.
    idle: Mutex<Vec<(String, Connection)>>,
    /// Callers waiting and slots free.
    queue: Mutex<Queue>,
}

impl Client {
    /// A client of the cluster whose nodes include `urls` (any of them:
    /// the leader is found).
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Result<Client, Error> {
        Client::with_config(urls, Config::default())
    }

    /// As [`Client::new`], with [`Config`] other than the default. Fails on
    /// a URL that is not `http(s)://HOST:PORT[/...]`, an `https://` URL
    /// without [`Config::tls`], or an empty list; nothing
    /// is contacted until the first call. Calls need a Tokio runtime.
    pub fn with_config<S: Into<String>>(
        urls: impl IntoIterator<Item = S>,
        config: Config,
    ) -> Result<Client, Error> {
        let urls = urls
            .into_iter()
            .map(|u| base_url(&u.into()))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::NoNodes);
        }
        if config.tls.is_none()
            && let Some(url) = urls.iter().find(|u| u.starts_with("https://"))
        {
            return Err(Error::NoCa(url.clone()));
        }
        let queue = Queue {
            waiters: VecDeque::new(),
            free: config.max_in_flight.max(1),
        };
        let shared = Arc::new(Shared {
            urls,
            config,
            leader: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            queue: Mutex::new(queue),
        });
        Ok(Client { shared })
    }

    /// One timestamp, greater than every timestamp any caller received
    /// before this call began. Concurrent calls share requests.
    pub async fn get_ts(&self) -> Result<Timestamp, Error> {
        Ok(self.queue(1).await?.first)
    }

    /// `count` consecutive timestamps (1 to 262144), all greater than
    /// everything any caller received before this call began. Concurrent
    /// calls (of either kind) share requests while their counts fit in one.
    pub async fn get_range(&self, count: u64) -> Result<TimestampRange, Error> {
        if !(1..=LOGICAL_PER_MS).contains(&count) {
            return Err(Error::BadCount(count));
        }
        self.queue(count).await
    }

    /// Lead a request if a slot is free; else queue for `count`
    /// timestamps and wait for this caller's part, or for a slot to lead
    /// with (see the module docs).
    async fn queue(&self, count: u64) -> Result<TimestampRange, Error> {
        let shared = &self.shared;
        let (turn, woken) = oneshot::channel();
        let slot = {
            let mut queue = shared.queue.lock().unwrap();
            if queue.free > 0 {
                queue.free -= 1;
                Some(Slot::new(shared))
            } else {
                queue.waiters.push_back(Waiter { count, turn });
                None
            }
        };
        let slot = match slot {
            Some(slot) => slot,
            None => match woken.await {
                Ok(Turn::Part(part)) => return part,
                Ok(Turn::Lead(slot)) => slot,
                Err(_) => return Err(Error::Closed),
            },
        };
        shared.lead(slot, count).await
    }

    /// One node's status (`GET /v1/status`): that of the first node given
    /// to [`Client::new`] that answers, asking each once, in order, with an
    /// equal share of what is left of [`Config::deadline`] (so one hung node
    /// cannot use up the whole call). Status is a node's own view, so
    /// redirects are not followed and the leader is not preferred;
    /// [`Status::node_id`] names the node that answered. A 4xx fails at
    /// once ([`Error::Refused`]); no answer from any node is
    /// [`Error::NoAnswer`].
    pub async fn status(&self) -> Result<Status, Error> {
        let deadline = Instant::now() + self.shared.config.deadline;
        let urls = &self.shared.urls;
        let mut last = String::new();
        for (i, url) in urls.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / (urls.len() - i) as u32;
            let tls = self.shared.config.tls.as_ref();
            last = match tokio::time::timeout(share, fetch_status(url, tls)).await {
                Ok(Ok(status)) => return Ok(status),
                Ok(Err(Failure::Refused(status, message))) => {
                    return Err(Error::Refused {
                        url: url.clone(),
                        status,
                        message,
                    });
                }
                Ok(Err(Failure::Unavailable(why))) => why,
                Err(_) => format!("{url} did not answer in time"),
            };
        }
        Err(Error::NoAnswer {
            deadline: self.shared.config.deadline,
            last,
        })
    }

    /// The node this client currently asks first.
    pub fn leader(&self) -> Option<String> {
        self.shared.leader.lock().unwrap().clone()
    }
}

/// The parts of a batch's `outcome` for callers asking `counts`, in
/// arrival order: consecutive ranges from the first timestamp up, each of
/// its caller's count (or the error, to every caller). The request asked
/// for the sum of `counts`, so the parts tile the range exactly.
fn split(
    outcome: &Result<TimestampRange, Error>,
    counts: &[u64],
) -> Vec<Result<TimestampRange, Error>> {
    let mut next = outcome.as_ref().map(|r| r.first.0);
    counts
        .iter()
        .map(|&count| {
            let first = next.as_mut().map_err(|e| (*e).clone())?;
            let part = TimestampRange {
                first: Timestamp(*first),
                count,
            };
            *first += count;
            Ok(part)
        })
        .collect()
}

/// The callers a leader took into its request, and its slot. Dropped
/// unanswered (the leader's call was dropped mid-request), the callers go
/// back to the head of the queue, in order, and then the slot is handed on
/// to the first of them.
struct Batch {
    waiters: Vec<Waiter>,
    slot: Slot,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let shared = self.slot.shared.as_ref().expect("a held slot");
        let mut queue = shared.queue.lock().unwrap();
        for w in self.waiters.drain(..).rev() {
            queue.waiters.push_front(w);
        }
        // `self.slot` is dropped after this, and leads them.
    }
}

/// What one attempt against one node came to.
enum Attempt {
    Served(TimestampRange),
    /// A follower named the leader.
    Redirect(String),
    /// Worth retrying elsewhere or later.
    Unavailable(String),
    /// The request itself was refused; retrying cannot help.
    Refused(u16, String),
}

impl Shared {
    /// With `slot`, ask for `own` timestamps and for those of the callers
    /// queued that fit in one request; answer them and return this
    /// caller's part, the first.
    async fn lead(&self, slot: Slot, own: u64) -> Result<TimestampRange, Error> {
        let mut batch = Batch {
            waiters: Vec::new(),
            slot,
        };
        let mut counts = vec![own];
        let mut total = own;
        {
            let mut queue = self.queue.lock().unwrap();
            while let Some(w) = queue.waiters.front()
                && total + w.count <= LOGICAL_PER_MS
            {
                total += w.count;
                counts.push(w.count);
                batch
                    .waiters
                    .push(queue.waiters.pop_front().expect("a front"));
            }
        }
        let outcome = self.request(total).await;
        let mut parts = split(&outcome, &counts).into_iter();
        let own = parts.next().expect("the leader's part");
        for (waiter, part) in std::mem::take(&mut batch.waiters).into_iter().zip(parts) {
            let _ = waiter.turn.send(Turn::Part(part));
        }
        own
    }

    /// A slot was let go: give it to the first caller queued, or count it
    /// free if nobody is (keeping [`Queue`]'s invariant).
    fn hand_on(self: Arc<Self>) {
        let mut queue = self.queue.lock().unwrap();
        if let Some(mut unused) = queue.give(Slot::new(&self)) {
            // Counted free instead: dropping it must not hand it on again.
            unused.shared = None;
            queue.free += 1;
        }
    }

    async fn request(&self, count: u64) -> Result<TimestampRange, Error> {
        let deadline = Instant::now() + self.config.deadline;
        let mut backoff = self.config.backoff;
        let mut next = 0usize;
        let mut redirects = 0;
        loop {
            let cached = self.leader.lock().unwrap().clone();
            let url = cached.unwrap_or_else(|| self.urls[next % self.urls.len()].clone());
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.attempt(&url, count)).await;
            let last = match attempt {
                Ok(Attempt::Served(range)) => {
                    *self.leader.lock().unwrap() = Some(url);
                    return Ok(range);
                }
                Ok(Attempt::Refused(status, message)) => {
                    return Err(Error::Refused {
                        url,
                        status,
                        message,
                    });
                }
                Ok(Attempt::Redirect(to)) if redirects < self.urls.len() + 1 => {
                    redirects += 1;
                    *self.leader.lock().unwrap() = Some(to);
                    continue;
                }
                Ok(Attempt::Redirect(to)) => format!("{url} redirects to {to} in a loop"),
                Ok(Attempt::Unavailable(why)) => why,
                Err(_) => format!("{url} did not answer in time"),
            };
            // Forget that node; try the next one after a pause.
            *self.leader.lock().unwrap() = None;
            next += 1;
            redirects = 0;
            if Instant::now() + backoff >= deadline {
                return Err(Error::Deadline {
                    deadline: self.config.deadline,
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// One request for `count` timestamps to `url`, on a kept-alive
    /// connection to it if there is one. A kept-alive connection that
    /// fails is not held against the node: the node closes connections
    /// left idle past its header timeout, and a client idle that long must
    /// not pay a backoff (and a redirect) for it, so the request is sent
    /// again at once on the next connection, a fresh one at the last. The
    /// answer lost with a failed request is a range nobody is given; the
    /// request sent again is answered above it, so nothing is reused.
    async fn attempt(&self, url: &str, count: u64) -> Attempt {
        let body = if count == 1 {
            Bytes::new()
        } else {
            Bytes::from(format!("{{\"count\":{count}}}"))
        };
        let (answer, conn) = loop {
            let (mut conn, fresh) = match self.idle_connection(url) {
                Some(conn) => (conn, false),
                None => match Connection::open_with(url, self.config.tls.as_ref()).await {
                    Ok(conn) => (conn, true),
                    Err(e) => return Attempt::Unavailable(e.to_string()),
                },
            };
            match conn
                .send(Method::POST, "/v1/timestamps", body.clone())
                .await
            {
                Ok(answer) => break (answer, conn),
                Err(e) if fresh => return Attempt::Unavailable(e.to_string()),
                Err(_) => continue,
            }
        };
        let attempt = judge(url, count, &answer);
        if matches!(attempt, Attempt::Served(_)) {
            self.idle.lock().unwrap().push((url.to_string(), conn));
        }
        attempt
    }

    /// A kept-alive connection to `url`, taken out of the idle ones.
    fn idle_connection(&self, url: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap();
        let i = idle.iter().position(|(u, _)| u == url)?;
        Some(idle.swap_remove(i).1)
    }
}

/// Why [`fetch_status`] failed.
enum Failure {
    /// Worth asking another node.
    Unavailable(String),
    /// A 4xx: this node does not speak the same API; asking others cannot help.
    Refused(u16, String),
}

/// `GET /v1/status` on a fresh connection.
async fn fetch_status(url: &str, tls: Option<&TlsConfig>) -> Result<Status, Failure> {
    let answer = connection::once_with(url, tls, Method::GET, "/v1/status", Bytes::new())
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let message = || String::from_utf8_lossy(&answer.body).into_owned();
    match answer.status {
        StatusCode::OK => serde_json::from_slice(&answer.body).map_err(|e| {
            Failure::Unavailable(format!(
                "{url} answered a status that does not parse ({e}): {}",
                message()
            ))
        }),
        s if s.is_client_error() => Err(Failure::Refused(s.as_u16(), message())),
        s => Err(Failure::Unavailable(format!(
            "{url} answered {s}: {}",
            message()
        ))),
    }
}

fn judge(url: &str, count: u64, answer: &Answer) -> Attempt {
    let message = || String::from_utf8_lossy(&answer.body).into_owned();
    match answer.status {
        StatusCode::OK => {
            let range = serde_json::from_slice::<RangeJson>(&answer.body)
                .ok()
                .and_then(|r| Some((r.first()?, r.count)));
            match range {
                Some((first, got)) if got == count => {
                    Attempt::Served(TimestampRange { first, count: got })
                }
                _ => Attempt::Unavailable(format!(
                    "{url} answered an unexpected body: {}",
                    message()
                )),
            }
        }
        StatusCode::TEMPORARY_REDIRECT => {
            let to = answer
                .headers
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| base_url(l).ok());
            match to {
                Some(to) => Attempt::Redirect(to),
                None => Attempt::Unavailable(format!("{url} redirected without a usable Location")),
            }
        }
        s if s.is_client_error() => Attempt::Refused(s.as_u16(), message()),
        s => Attempt::Unavailable(format!("{url} answered {s}: {}", message())),
    }
}

/// `http(s)://host:port[/...]` → `http(s)://host:port`.
fn base_url(url: &str) -> Result<String, Error> {
    connection::base_url(url).map_err(|_| Error::BadUrl(url.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_reduced_to_their_node() {
        assert_eq!(
            base_url("http://127.0.0.1:7402/v1/timestamps").unwrap(),
            "http://127.0.0.1:7402"
        );
        assert_eq!(base_url("https://x:1/v1").unwrap(), "https://x:1");
        assert_eq!(
            base_url("ftp://x").unwrap_err(),
            Error::BadUrl("ftp://x".into())
        );
        assert_eq!(
            Client::new(["https://x:1"]).err(),
            Some(Error::NoCa("https://x:1".into()))
        );
    }

    #[test]
    fn a_batch_is_split_in_arrival_order_into_consecutive_parts() {
        let outcome = Ok(TimestampRange {
            first: Timestamp(100),
            count: 1 + 1000 + 5,
        });
        let parts: Vec<_> = split(&outcome, &[1, 1000, 5])
            .into_iter()
            .map(|p| p.map(|r| (r.first.0, r.count)))
            .collect();
        assert_eq!(parts, vec![Ok((100, 1)), Ok((101, 1000)), Ok((1101, 5))]);
        let failed = split(&Err(Error::Closed), &[1, 2]);
        assert_eq!(failed, vec![Err(Error::Closed), Err(Error::Closed)]);
    }

    #[test]
    fn a_range_lists_its_timestamps() {
        let r = TimestampRange {
            first: Timestamp(10),
            count: 3,
        };
        assert_eq!(r.last(), Timestamp(12));
        assert_eq!(r.iter().map(|t| t.0).collect::<Vec<_>>(), vec![10, 11, 12]);
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_request() {
        assert_eq!(
            Client::new(Vec::<String>::new()).err(),
            Some(Error::NoNodes)
        );
        let c = Client::new(["http://127.0.0.1:1"]).unwrap();
        assert_eq!(c.get_range(0).await, Err(Error::BadCount(0)));
        assert_eq!(
            c.get_range(LOGICAL_PER_MS + 1).await,
            Err(Error::BadCount(LOGICAL_PER_MS + 1))
        );
    }

    /// A node that answers its `n`th request after `delays[n]`
    /// milliseconds (never if `None`), the requests past `delays` at once,
    /// each with the count asked for.
    async fn node_answering_after(delays: &'static [Option<u64>]) -> String {
        node(delays, None).await
    }

    /// As [`node_answering_after`]; with `idle`, a connection that sends
    /// no request for that long is closed, as tsohost's header timeout
    /// closes it.
    async fn node(delays: &'static [Option<u64>], idle: Option<Duration>) -> String {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let served = served.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let count = match body.is_empty() {
                            true => 1,
                            false => {
                                serde_json::from_slice::<serde_json::Value>(&body).unwrap()["count"]
                                    .as_u64()
                                    .unwrap()
                            }
                        };
                        match delays.get(served.fetch_add(1, Ordering::SeqCst)) {
                            Some(Some(ms)) => tokio::time::sleep(Duration::from_millis(*ms)).await,
                            Some(None) => std::future::pending().await,
                            None => {}
                        }
                        let range = RangeJson::new(Timestamp(1000), count);
                        let json = serde_json::to_vec(&range).unwrap();
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(json))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let mut http = hyper::server::conn::http1::Builder::new();
                if let Some(idle) = idle {
                    http.timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(idle);
                }
                tokio::spawn(http.serve_connection(io, service));
            }
        });
        url
    }

    /// A leader whose call is dropped mid-request (a timeout around it)
    /// puts its batch back: the caller it had taken along is served by the
    /// next leader, not failed, and the slot it held is free again.
    #[tokio::test]
    async fn a_leader_dropped_mid_request_hands_its_batch_on() {
        let config = Config {
            max_in_flight: 1,
            ..Config::default()
        };
        let node = node_answering_after(&[Some(200), None]).await;
        let c = Client::with_config([node], config).unwrap();
        // Request 1 holds the only slot for 200 ms while `dropped` and
        // `taken` queue; `dropped` then leads both into request 2, which
        // hangs, and gives up at 500 ms.
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.get_ts().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dropped = tokio::spawn({
            let c = c.clone();
            async move { tokio::time::timeout(Duration::from_millis(500), c.get_ts()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = tokio::spawn({
            let c = c.clone();
            async move { c.get_range(7).await }
        });
        assert!(first.await.unwrap().is_ok());
        assert!(dropped.await.unwrap().is_err(), "request 2 never answers");
        let part = tokio::time::timeout(Duration::from_secs(5), taken)
            .await
            .expect("the taken caller was left waiting")
            .unwrap();
        assert_eq!(part.map(|r| r.count), Ok(7));
        assert_eq!(c.get_ts().await.map(|t| t.0), Ok(1000), "the slot is free");
    }

    /// A queued caller whose call is dropped before a slot frees is
    /// skipped: the slot goes on to the next caller queued.
    #[tokio::test]
    async fn a_slot_freed_for_a_dropped_caller_goes_to_the_next() {
        let config = Config {
            max_in_flight: 1,
            ..Config::default()
        };
        let node = node_answering_after(&[Some(200)]).await;
        let c = Client::with_config([node], config).unwrap();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.get_ts().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let gone = tokio::time::timeout(Duration::from_millis(50), c.get_ts()).await;
        assert!(gone.is_err(), "no slot was free");
        let next = tokio::spawn({
            let c = c.clone();
            async move { c.get_range(3).await }
        });
        assert!(first.await.unwrap().is_ok());
        let part = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the slot went to the dropped caller and stopped there")
            .unwrap();
        assert_eq!(part.map(|r| r.count), Ok(3));
    }

    /// A kept-alive connection the node closed while it sat idle costs no
    /// backoff: the call is sent again at once on a fresh connection. (The
    /// backoff here is longer than the deadline, so a call that paid it
    /// would fail.)
    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_at_once() {
        let config = Config {
            deadline: Duration::from_secs(5),
            backoff: Duration::from_secs(60),
            ..Config::default()
        };
        let node = node(&[], Some(Duration::from_millis(50))).await;
        let c = Client::with_config([node.clone()], config).unwrap();
        for _ in 0..3 {
            assert_eq!(c.get_range(2).await.map(|r| r.count), Ok(2));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(c.leader(), Some(node), "the node was not held to blame");
    }

    #[tokio::test]
    async fn status_of_an_unreachable_node_fails_at_the_deadline() {
        let config = Config {
            deadline: Duration::from_millis(200),
            ..Config::default()
        };
        let c = Client::with_config(["http://127.0.0.1:1", "http://127.0.0.1:2"], config).unwrap();
        let started = Instant::now();
        match c.status().await {
            Err(Error::NoAnswer { last, .. }) => assert!(last.contains("127.0.0.1:2"), "{last}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_unreachable_cluster_fails_at_the_deadline_naming_the_cause() {
        let config = Config {
            deadline: Duration::from_millis(200),
            ..Config::default()
        };
        let c = Client::with_config(["http://127.0.0.1:1"], config).unwrap();
        match c.get_ts().await {
            Err(Error::Deadline { last, .. }) => assert!(last.contains("127.0.0.1:1"), "{last}"),
            other => panic!("{other:?}"),
        }
    }
}
