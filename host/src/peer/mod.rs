//! The peer network: hosts exchange driver payloads over authenticated TCP
//! connections (docs/architecture.md §6). The host delivers bytes; the driver owns their
//! meaning.
//!
//! - Every node dials every other member and sends on that connection only;
//!   it receives on the connections others dial to it. Dialing reconnects
//!   with exponential backoff.
//! - With peer TLS ([`crate::tls::peer`]) every connection is mutual TLS
//!   with the node id bound to the certificate; without it, connections
//!   are plaintext, which the CLI allows on loopback addresses only
//!   (`--insecure-peers` otherwise).
//! - Either way, connections are authenticated with the cluster secret and
//!   every frame is MACed ([`auth`]); a peer that fails the TLS or secret
//!   handshake or sends a bad frame is disconnected and counted.
//! - Queues are bounded: a message that does not fit is dropped and counted,
//!   never buffered without limit.
//! - Fault injection ([`Faults`]) drops traffic to and from chosen peers, for
//!   tests; it is reachable only through the admin API.

pub mod auth;

use crate::driver::actor::Inbox;
use crate::metrics::Metrics;
use crate::tls::RateLimitedLog;
use crate::tls::peer::PeerTls;
use auth::{MAGIC, MAX_URL, NONCE, Nonce, Secret, TAG, Tag, Transcript};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest frame accepted: room for a snapshot chunk, bounded memory.
pub const MAX_FRAME: usize = 32 << 20;
/// Messages queued for one peer beyond this are dropped.
pub const QUEUE: usize = 4096;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections allowed to be in their handshake at once: a flood of
/// unauthenticated connections is closed on accept beyond it (and counted
/// as auth failures) instead of each holding a task for the timeout.
const MAX_PENDING_HANDSHAKES: usize = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a removed member stays connected.
pub const LINGER: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen for peers on {addr}: {source}; pass --peer-listen ADDR")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("peer handshake: {0}")]
    Handshake(String),
    #[error("peer TLS: {0}")]
    Tls(String),
    #[error("peer I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How this node joins the peer network.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    /// Every member's peer address, this node's included.
    pub members: BTreeMap<u64, String>,
    pub secret: Secret,
    /// This node's public HTTP URL, told to peers for redirects.
    pub advertise_url: String,
    /// Mutual TLS on every peer connection; `None`: plaintext.
    pub tls: Option<Arc<PeerTls>>,
}

/// A peer connection: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}
type BoxStream = Box<dyn Stream>;

/// Peer traffic dropped for fault injection: `blocked` peers in both
/// directions (a partition), `dropped_from` peers only on the way in (a
/// one-way partition: this node still sends to them).
#[derive(Default, Debug)]
pub struct Faults {
    blocked: Mutex<HashSet<u64>>,
    dropped_from: Mutex<HashSet<u64>>,
}

impl Faults {
    pub fn set_blocked(&self, peers: impl IntoIterator<Item = u64>) {
        *self.blocked.lock().unwrap() = peers.into_iter().collect();
    }

    pub fn set_dropped_from(&self, peers: impl IntoIterator<Item = u64>) {
        *self.dropped_from.lock().unwrap() = peers.into_iter().collect();
    }

    pub fn blocked(&self) -> Vec<u64> {
        sorted(&self.blocked)
    }

    pub fn dropped_from(&self) -> Vec<u64> {
        sorted(&self.dropped_from)
    }

    fn is_blocked(&self, peer: u64) -> bool {
        self.blocked.lock().unwrap().contains(&peer)
    }

    /// Whether a message from `peer` is to be dropped on arrival.
    fn drops_from(&self, peer: u64) -> bool {
        self.is_blocked(peer) || self.dropped_from.lock().unwrap().contains(&peer)
    }
}

fn sorted(set: &Mutex<HashSet<u64>>) -> Vec<u64> {
    let mut v: Vec<u64> = set.lock().unwrap().iter().copied().collect();
    v.sort_unstable();
    v
}

/// The running peer network of one node.
pub struct Network {
    shared: Arc<Shared>,
    pub faults: Arc<Faults>,
}

/// A peer's address and the queue its dial loop drains.
type Outbound = (String, mpsc::Sender<Vec<u8>>);

/// What the network's tasks share.
struct Shared {
    node_id: u64,
    secret: Secret,
    advertise_url: String,
    tls: Option<Arc<PeerTls>>,
    /// Every member's peer address (this node's included): whom to dial,
    /// and whom to accept.
    members: Mutex<BTreeMap<u64, String>>,
    /// Members removed less than [`LINGER`] ago: still dialed and accepted.
    lingering: Mutex<BTreeMap<u64, (String, tokio::time::Instant)>>,
    /// Outbound queue per peer, with the address its dial loop uses.
    queues: Mutex<HashMap<u64, Outbound>>,
    /// Public URLs peers told us in their handshakes.
    urls: Mutex<HashMap<u64, String>>,
    faults: Arc<Faults>,
    metrics: Arc<Metrics>,
    /// Refused inbound connections, logged within a budget.
    refusals: RateLimitedLog,
}

impl Network {
    /// Listen for peers and start dialing every other member.
    pub async fn start(
        cfg: PeerConfig,
        inbox: Inbox,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Network>, PeerError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| PeerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared {
            node_id: cfg.node_id,
            secret: cfg.secret,
            advertise_url: cfg.advertise_url,
            tls: cfg.tls,
            members: Mutex::new(BTreeMap::new()),
            lingering: Mutex::new(BTreeMap::new()),
            queues: Mutex::new(HashMap::new()),
            urls: Mutex::new(HashMap::new()),
            faults: faults.clone(),
            metrics,
            refusals: RateLimitedLog::default(),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), inbox));
        let network = Arc::new(Network { shared, faults });
        network.set_members(cfg.members);
        Ok(network)
    }

    /// Connect to exactly `members` (this node's entry is ignored): dial new
    /// ones, redial moved ones; accept only members. A removed member stays
    /// connected for [`LINGER`]: a leader that removes itself must still
    /// commit the change and hand over, and a removed node must still learn
    /// that it was removed.
    pub fn set_members(self: &Arc<Self>, members: BTreeMap<u64, String>) {
        let shared = &self.shared;
        let previous = std::mem::replace(&mut *shared.members.lock().unwrap(), members.clone());
        let mut lingering = shared.lingering.lock().unwrap();
        let until = tokio::time::Instant::now() + LINGER;
        for (id, addr) in previous {
            if !members.contains_key(&id) && id != shared.node_id {
                lingering.insert(id, (addr, until));
            }
        }
        lingering.retain(|id, _| !members.contains_key(id));
        let mut queues = shared.queues.lock().unwrap();
        queues.retain(|id, (addr, _)| {
            members.get(id) == Some(addr) || lingering.get(id).is_some_and(|(a, _)| a == addr)
        });
        for (&peer, addr) in &members {
            if peer == shared.node_id || queues.contains_key(&peer) {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.insert(peer, (addr.clone(), tx));
            tokio::spawn(dial_loop(shared.clone(), peer, addr.clone(), rx));
        }
        if !lingering.is_empty() {
            let network = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LINGER).await;
                network.forget_lingering();
            });
        }
    }

    /// Drop the connections of removed members whose linger has passed.
    fn forget_lingering(&self) {
        let shared = &self.shared;
        let members = shared.members.lock().unwrap().clone();
        let mut lingering = shared.lingering.lock().unwrap();
        let now = tokio::time::Instant::now();
        lingering.retain(|_, (_, until)| *until > now);
        shared.queues.lock().unwrap().retain(|id, (addr, _)| {
            members.get(id) == Some(addr) || lingering.get(id).is_some_and(|(a, _)| a == addr)
        });
    }

    /// Every member's peer address, this node's included.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.shared.members.lock().unwrap().clone()
    }

    /// Queue `payload` for `to`; dropped (and counted) when `to` is unknown,
    /// blocked or its queue is full.
    pub fn send(&self, to: u64, payload: Vec<u8>) {
        let queued = !self.faults.is_blocked(to)
            && self
                .shared
                .queues
                .lock()
                .unwrap()
                .get(&to)
                .is_some_and(|(_, q)| q.try_send(payload).is_ok());
        if !queued {
            self.shared.metrics.peer_messages_dropped_total.inc();
        }
    }

    /// The public URL `peer` announced, if it has connected.
    pub fn url_of(&self, peer: u64) -> Option<String> {
        self.shared.urls.lock().unwrap().get(&peer).cloned()
    }
}

async fn dial_loop(shared: Arc<Shared>, peer: u64, addr: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    let metrics = &shared.metrics;
    let mut backoff = MIN_BACKOFF;
    let mut last_error = String::new();
    // A closed queue means the peer left the membership.
    while !rx.is_closed() {
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, dial(&shared, peer, &addr)).await;
        match connected {
            Ok(Ok((stream, mut session, url))) => {
                let over = if shared.tls.is_some() {
                    "mutual TLS"
                } else {
                    "plaintext"
                };
                tracing::info!("connected to peer {peer} at {addr} ({over})");
                last_error.clear();
                backoff = MIN_BACKOFF;
                shared.urls.lock().unwrap().insert(peer, url);
                let mut out = BufWriter::new(stream);
                let result: std::io::Result<()> = async {
                    while let Some(first) = rx.recv().await {
                        let mut next = Some(first);
                        // Write everything queued, then flush once.
                        while let Some(payload) = next {
                            if shared.faults.is_blocked(peer) {
                                metrics.peer_messages_dropped_total.inc();
                            } else {
                                write_frame(&mut out, &mut session, &payload).await?;
                                metrics.peer_frames_sent_total.inc();
                            }
                            next = rx.try_recv().ok();
                        }
                        out.flush().await?;
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => break, // removed from the membership, or shutting down
                    Err(e) => tracing::warn!("lost the connection to peer {peer} at {addr}: {e}"),
                }
            }
            Ok(Err(e)) => {
                if matches!(e, PeerError::Handshake(_) | PeerError::Tls(_)) {
                    metrics.peer_auth_failures_total.inc();
                }
                let text = e.to_string();
                if text != last_error {
                    tracing::warn!(
                        "cannot connect to peer {peer} at {addr}: {text}; retrying with backoff"
                    );
                    last_error = text;
                }
            }
            Err(_) => tracing::warn!("peer {peer} at {addr}: handshake timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tracing::info!("stopped dialing peer {peer} at {addr}: no longer a member");
}

async fn dial(
    cfg: &Shared,
    peer: u64,
    addr: &str,
) -> Result<(BoxStream, auth::Session, String), PeerError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut stream: BoxStream = match &cfg.tls {
        None => Box::new(tcp),
        Some(tls) => Box::new(
            tls.connect(tcp, peer)
                .await
                .map_err(|e| PeerError::Tls(format!("{addr} (node {peer} in --peers): {e}")))?,
        ),
    };
    let nonce_d = auth::nonce();
    let mut hello = Vec::new();
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&cfg.node_id.to_be_bytes());
    hello.extend_from_slice(&nonce_d);
    put_url(&mut hello, &cfg.advertise_url);
    stream.write_all(&hello).await?;

    let (acceptor, nonce_a) = read_greeting(&mut stream).await?;
    let accept_tag = read_tag(&mut stream).await?;
    let url = read_url(&mut stream).await?;
    if acceptor != peer {
        return Err(PeerError::Handshake(format!(
            "{addr} is node {acceptor}, but --peers says node {peer}"
        )));
    }
    let transcript = Transcript {
        dialer: cfg.node_id,
        acceptor,
        nonce_d,
        nonce_a,
    };
    if !auth::constant_time_eq(&transcript.accept_tag(&cfg.secret), &accept_tag) {
        return Err(PeerError::Handshake(format!(
            "node {acceptor} at {addr} does not know the cluster secret \
             (check --cluster-secret-file on both nodes)"
        )));
    }
    stream.write_all(&transcript.dial_tag(&cfg.secret)).await?;
    Ok((stream, transcript.session(&cfg.secret), url))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, inbox: Inbox) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(handshaking) = pending.clone().try_acquire_owned() else {
            shared.metrics.peer_auth_failures_total.inc();
            tracing::debug!("closed a peer connection from {remote}: too many handshakes");
            continue;
        };
        let (shared, inbox) = (shared.clone(), inbox.clone());
        tokio::spawn(async move {
            let metrics = &shared.metrics;
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(&shared, stream)).await;
            drop(handshaking);
            let (stream, peer, session, url) = match accepted {
                Ok(Ok(ok)) => ok,
                Ok(Err(e)) => {
                    metrics.peer_auth_failures_total.inc();
                    shared
                        .refusals
                        .log(remote, &format!("on the peer port, {e}"));
                    return;
                }
                Err(_) => {
                    metrics.peer_auth_failures_total.inc();
                    shared
                        .refusals
                        .log(remote, "on the peer port, no handshake in time");
                    return;
                }
            };
            shared.urls.lock().unwrap().insert(peer, url);
            match receive(stream, peer, session, &inbox, &shared.faults, metrics).await {
                // A forged or oversized frame: someone to look into.
                Err(e @ PeerError::Handshake(_)) => {
                    tracing::warn!("cut off peer {peer} ({remote}): {e}");
                }
                Err(e) => tracing::debug!("peer {peer} ({remote}) disconnected: {e}"),
                Ok(()) => {}
            }
        });
    }
}

async fn accept(
    cfg: &Shared,
    tcp: TcpStream,
) -> Result<(BoxStream, u64, auth::Session, String), PeerError> {
    tcp.set_nodelay(true)?;
    let (mut stream, cert): (BoxStream, _) = match &cfg.tls {
        None => (Box::new(tcp), None),
        Some(tls) => {
            let (stream, cert) = tls.accept(tcp).await.map_err(PeerError::Tls)?;
            (Box::new(stream), Some(cert))
        }
    };
    let (dialer, nonce_d) = read_greeting(&mut stream).await?;
    let url = read_url(&mut stream).await?;
    let known = cfg.members.lock().unwrap().contains_key(&dialer)
        || cfg.lingering.lock().unwrap().contains_key(&dialer);
    if dialer == cfg.node_id || !known {
        return Err(PeerError::Handshake(format!(
            "node {dialer} is not a member of this cluster"
        )));
    }
    if let Some(cert) = &cert {
        PeerTls::check_dialer(cert, dialer).map_err(PeerError::Tls)?;
    }
    let nonce_a = auth::nonce();
    let transcript = Transcript {
        dialer,
        acceptor: cfg.node_id,
        nonce_d,
        nonce_a,
    };
    let mut welcome = Vec::new();
    welcome.extend_from_slice(MAGIC);
    welcome.extend_from_slice(&cfg.node_id.to_be_bytes());
    welcome.extend_from_slice(&nonce_a);
    welcome.extend_from_slice(&transcript.accept_tag(&cfg.secret));
    put_url(&mut welcome, &cfg.advertise_url);
    stream.write_all(&welcome).await?;
    let dial_tag = read_tag(&mut stream).await?;
    if !auth::constant_time_eq(&transcript.dial_tag(&cfg.secret), &dial_tag) {
        return Err(PeerError::Handshake(format!(
            "node {dialer} does not know the cluster secret"
        )));
    }
    Ok((stream, dialer, transcript.session(&cfg.secret), url))
}

async fn receive(
    mut stream: BoxStream,
    peer: u64,
    mut session: auth::Session,
    inbox: &Inbox,
    faults: &Faults,
    metrics: &Metrics,
) -> Result<(), PeerError> {
    loop {
        let payload = read_frame(&mut stream, peer, &mut session, metrics).await?;
        if faults.drops_from(peer) || !inbox.deliver(peer, payload) {
            metrics.peer_messages_dropped_total.inc();
        }
    }
}

/// Read and authenticate the next frame of an accepted connection from
/// `peer` (a big-endian u32 length, the payload, its tag under `session`),
/// counting it in `metrics`. An oversized or forged frame is a
/// [`PeerError::Handshake`] (the connection is cut); public for the fuzz
/// targets (`host/fuzz`).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    peer: u64,
    session: &mut auth::Session,
    metrics: &Metrics,
) -> Result<Vec<u8>, PeerError> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        metrics.peer_auth_failures_total.inc();
        return Err(PeerError::Handshake(format!(
            "peer {peer} sent a {len}-byte frame (limit {MAX_FRAME}); disconnected"
        )));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    let tag = read_tag(r).await?;
    if !session.open(&payload, &tag) {
        metrics.peer_auth_failures_total.inc();
        return Err(PeerError::Handshake(format!(
            "a frame from peer {peer} failed authentication; disconnected"
        )));
    }
    metrics.peer_frames_received_total.inc();
    Ok(payload)
}

async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    session: &mut auth::Session,
    payload: &[u8],
) -> std::io::Result<()> {
    out.write_u32(payload.len() as u32).await?;
    out.write_all(payload).await?;
    out.write_all(&session.seal(payload)).await
}

/// Read a dialer's greeting (magic, node id, nonce), the first thing an
/// accepted connection sends; public for the fuzz targets (`host/fuzz`).
pub async fn read_greeting<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u64, Nonce), PeerError> {
    let mut magic = [0; MAGIC.len()];
    r.read_exact(&mut magic).await?;
    if &magic != MAGIC {
        return Err(PeerError::Handshake(
            if magic[0] == crate::tls::HANDSHAKE_RECORD {
                "a TLS handshake spoken to a plaintext peer port: the dialing node runs with \
                 --peer-tls-cert and this one without; give every node the same peer TLS settings"
            } else {
                "not a tsohost peer (wrong protocol magic)"
            }
            .into(),
        ));
    }
    let id = r.read_u64().await?;
    let mut nonce = [0; NONCE];
    r.read_exact(&mut nonce).await?;
    Ok((id, nonce))
}

async fn read_tag<R: AsyncRead + Unpin>(r: &mut R) -> Result<Tag, PeerError> {
    let mut tag = [0; TAG];
    r.read_exact(&mut tag).await?;
    Ok(tag)
}

fn put_url(buf: &mut Vec<u8>, url: &str) {
    let url = &url.as_bytes()[..url.len().min(MAX_URL)];
    buf.extend_from_slice(&(url.len() as u16).to_be_bytes());
    buf.extend_from_slice(url);
}

/// Read a URL as the handshake carries it (big-endian u16 length, at most
/// [`MAX_URL`] bytes of UTF-8); public for the fuzz targets (`host/fuzz`).
pub async fn read_url<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, PeerError> {
    let len = r.read_u16().await? as usize;
    if len > MAX_URL {
        return Err(PeerError::Handshake(format!("URL of {len} bytes")));
    }
    let mut url = vec![0; len];
    r.read_exact(&mut url).await?;
    String::from_utf8(url).map_err(|_| PeerError::Handshake("URL is not UTF-8".into()))
}
