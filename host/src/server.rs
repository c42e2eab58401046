//! `tsohost serve`: assembles a node from its parts and runs it until a
//! signal.

use crate::clock::{Clock, SkewedClock, SystemClock};
use crate::driver::actor::{ActorConfig, namespaces_of};
use crate::driver::bindings::Peer;
use crate::driver::{DriverSource, GuestLimits, Runtime, Spawner};
use crate::metrics::Metrics;
use crate::migration::DriverRecord;
use crate::node::{Coordinator, DriverStatus, Node};
use crate::peer::auth::Secret;
use crate::peer::{Network, PeerConfig};
use crate::storage::Db;
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Everything `serve` needs, validated by the CLI.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub driver: DriverSource,
    pub driver_options: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub window: Duration,
    pub node_id: u64,
    pub guest_memory: usize,
    pub guest_call_timeout: Duration,
    pub cluster: Option<ClusterConfig>,
    /// Bearer token of the admin API; `None` turns it off.
    pub admin_token: Option<String>,
    /// Serve the admin API on this address alone, not on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Whether `/v1/admin/faults` exists (`--enable-fault-injection`).
    pub fault_injection: bool,
    pub http: crate::http::Limits,
    /// HTTPS on `listen` (`--tls-cert`, `--tls-key`, `--tls-client-ca`);
    /// `None` serves plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
}

/// How this node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub peer_listen: SocketAddr,
    /// Every member's peer address, this node's included.
    pub members: BTreeMap<u64, String>,
    pub secret: Secret,
    /// Mutual TLS between peers; `None`: plaintext (the CLI allows it on
    /// loopback addresses only, or with `--insecure-peers`).
    pub tls: Option<crate::tls::peer::PeerTlsFiles>,
    pub bootstrap: bool,
    /// Public URL told to peers; default `http://` (`https://` with TLS) +
    /// the HTTP listen address.
    pub advertise_url: Option<String>,
}

/// The peer network's TLS, loaded and watched for rotation; `None` when
/// the cluster runs plaintext.
fn peer_tls(
    cluster: &ClusterConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<crate::tls::peer::PeerTls>>> {
    let Some(files) = &cluster.tls else {
        return Ok(None);
    };
    let tls = crate::tls::peer::PeerTls::new(files.clone(), metrics.clone())
        .context("cannot start peer TLS (--peer-tls-cert, --peer-tls-key, --peer-ca)")?;
    tls.watch()
        .context("cannot install the SIGHUP handler that reloads the peer TLS files")?;
    Ok(Some(tls))
}

/// Connections the `--admin-listen` listener takes at once: operators and
/// tools, never clients, and a separate budget, so that a flood of the
/// public address cannot lock the operator out.
const ADMIN_MAX_CONNECTIONS: usize = 64;

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let stop = StopSignals::install()?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}; pass --data-dir with a writable path",
            cfg.data_dir.display()
        )
    })?;
    let db = Db::open(&cfg.data_dir.join("db"))?;
    let runtime =
        Runtime::new(Some(cfg.data_dir.join("component-cache")))?.with_limits(GuestLimits {
            memory: cfg.guest_memory,
            call_timeout: cfg.guest_call_timeout,
        });
    let loaded = runtime.load(&cfg.driver)?;
    let skewed = Arc::new(SkewedClock::new(Arc::new(SystemClock::new())));
    let clock: Arc<dyn Clock> = skewed.clone();
    let metrics = Arc::new(Metrics::default());
    let tls = match &cfg.tls {
        None => None,
        Some(files) => {
            let tls = crate::tls::Tls::new(files.clone(), metrics.clone())
                .context("cannot serve HTTPS (--tls-cert, --tls-key, --tls-client-ca)")?;
            tls.watch()
                .context("cannot install the SIGHUP handler that reloads the TLS files")?;
            Some(tls)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let status = DriverStatus::from(&loaded);
    let storage_for = namespaces_of(&db);
    let peers = match &cfg.cluster {
        Some(c) => c
            .members
            .iter()
            .map(|(&id, address)| Peer {
                id,
                address: address.clone(),
            })
            .collect(),
        None => Vec::new(),
    };
    let actor_config = ActorConfig {
        node_id: cfg.node_id,
        peers,
        bootstrap: cfg.cluster.as_ref().is_none_or(|c| c.bootstrap),
        floor: 0,
        generation: 0,
        seed: cfg.node_id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        options: cfg.driver_options.clone(),
        memory_limit: cfg.guest_memory,
        call_timeout: cfg.guest_call_timeout,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another server using it? Pass --listen ADDR",
                cfg.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let admin_listener = match cfg.admin_listen {
        None => None,
        Some(admin_addr) => Some(
            tokio::net::TcpListener::bind(admin_addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {admin_addr} (--admin-listen); is another server \
                         using it? Pass another --admin-listen ADDR"
                    )
                })?,
        ),
    };
    let mut spawner = Spawner::new(storage_for, actor_config, clock.clone(), events_tx);
    // A data directory that was sealed or migrated records its driver:
    // check `loaded` against it before it touches storage.
    let record = DriverRecord::load(&db)?;
    if let Some(record) = &record {
        // A migrated node refuses to start the driver it left, whose state
        // on this node is out of date.
        DriverRecord::admits(Some(record), &loaded.info.name)?;
        spawner.config_mut().floor = record.floor;
        spawner.config_mut().generation = record.generation;
        if record.sealed {
            tracing::warn!(
                "this node is sealed for a migration to another driver: it will not serve under \
                 {} until `tsohost cluster migrate` finishes (or --abort unseals it)",
                record.driver
            );
        }
    }
    let driver = spawner.spawn(loaded.clone())?;
    let record = record.unwrap_or_else(|| DriverRecord::first(&loaded.info.name));
    let guest_faults = spawner.faults();
    let network = match &cfg.cluster {
        None => None,
        Some(c) => Some(
            Network::start(
                PeerConfig {
                    node_id: cfg.node_id,
                    listen: c.peer_listen,
                    members: c.members.clone(),
                    secret: c.secret.clone(),
                    tls: peer_tls(c, &metrics)?,
                    advertise_url: c
                        .advertise_url
                        .clone()
                        .unwrap_or_else(|| format!("{scheme}://{addr}")),
                },
                spawner.inbox(),
                metrics.clone(),
            )
            .await?,
        ),
    };
    let node = Node::new(
        cfg.node_id,
        cfg.window,
        clock,
        status,
        record,
        metrics.clone(),
        network,
    );
    node.attach_stats_probe(spawner.stats_probe());
    let shutdown = Arc::new(Notify::new());
    let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
    let coordinator = tokio::spawn(
        Coordinator::new(node.clone(), spawner, db.clone(), driver, loaded).run(
            events_rx,
            control_rx,
            shutdown.clone(),
        ),
    );
    // Tests and scripts read this line to find the port.
    println!(
        "tsohost listening on {scheme}://{addr} ({}, data dir {})",
        cfg.driver.label(),
        cfg.data_dir.display()
    );
    tracing::info!("listening on {scheme}://{addr}");
    if let Some(tls) = &tls {
        let files = tls.files();
        tracing::info!(
            "TLS: certificate {}, key {}; client certificates {}; SIGHUP or a changed file \
             reloads them",
            files.cert.display(),
            files.key.display(),
            match &files.client_ca {
                Some(ca) => format!("required, signed by {}", ca.display()),
                None => "not asked for".to_string(),
            }
        );
    }
    if let Some(admin_listener) = &admin_listener {
        let admin_addr = admin_listener.local_addr()?;
        // Tests and scripts read this line to find the admin port.
        println!("tsohost admin API on {scheme}://{admin_addr}");
        tracing::info!(
            "admin API on {scheme}://{admin_addr} only (--admin-listen); not on \
             {scheme}://{addr}{}",
            if tls.is_some() {
                " (the same certificate and client-certificate requirement as --listen)"
            } else {
                ""
            }
        );
    }
    if cfg.fault_injection {
        tracing::warn!(
            "fault injection is ON (--enable-fault-injection): anyone with the admin token can \
             step this node's clock, fail its storage and crash its driver through \
             /v1/admin/faults. For tests and `tsohost chaos` only; never in production"
        );
    }
    let admin = crate::api::AdminConfig {
        token: cfg.admin_token.clone(),
        runtime,
        control: control_tx,
        storage_faults: db.failpoint(),
        clock: skewed,
        guest_faults,
        fault_injection: cfg.fault_injection,
    };
    let limits = crate::http::fit_to_open_file_limit(cfg.http);
    // With --admin-listen the admin API gets a listener of its own, which
    // stops with the public one. It speaks TLS when --listen does, with the
    // same certificate (reloaded with it) and the same --tls-client-ca: the
    // admin token never crosses the network in the clear.
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let (app, admin_server) = match admin_listener {
        None => (crate::api::router(node, admin), None),
        Some(admin_listener) => {
            let mut stopped = admin_stopped;
            let admin_server = tokio::spawn(crate::http::serve_tls(
                admin_listener,
                crate::api::admin_router(node.clone(), admin),
                crate::http::Limits {
                    max_connections: limits.max_connections.min(ADMIN_MAX_CONNECTIONS),
                    ..limits
                },
                metrics.clone(),
                tls.clone(),
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            ));
            (crate::api::public_router(node), Some(admin_server))
        }
    };
    crate::http::serve_tls(listener, app, limits, metrics, tls, async move {
        stop.wait().await;
        let _ = stop_admin.send(true);
    })
    .await;
    if let Some(admin_server) = admin_server {
        let _ = admin_server.await;
    }
    shutdown.notify_one();
    let _ = coordinator.await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment the node starts: a signal
/// that arrives before the listener first waits for one must still stop
/// the node cleanly, not kill it.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).context("cannot install the SIGTERM/SIGINT handlers");
        Ok(StopSignals {
            term: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.term.recv() => {},
        }
        tracing::info!("shutting down");
    }
}
