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
    pub http: crate::http::Limits,
}

/// How this node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub peer_listen: SocketAddr,
    /// Every member's peer address, this node's included.
    pub members: BTreeMap<u64, String>,
    pub secret: Secret,
    pub bootstrap: bool,
    /// Public URL told to peers; default `http://` + the HTTP listen address.
    pub advertise_url: Option<String>,
}

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
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
                    advertise_url: c
                        .advertise_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{addr}")),
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
        "tsohost listening on http://{addr} ({}, data dir {})",
        cfg.driver.label(),
        cfg.data_dir.display()
    );
    tracing::info!("listening on http://{addr}");
    let admin = crate::api::AdminConfig {
        token: cfg.admin_token.clone(),
        runtime,
        control: control_tx,
        storage_faults: db.failpoint(),
        clock: skewed,
        guest_faults,
    };
    let limits = crate::http::fit_to_open_file_limit(cfg.http);
    crate::http::serve(
        listener,
        crate::api::router(node, admin),
        limits,
        metrics,
        signal(),
    )
    .await;
    shutdown.notify_one();
    let _ = coordinator.await;
    tracing::info!("stopped");
    Ok(())
}

async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
