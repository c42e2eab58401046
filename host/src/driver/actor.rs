//! The actor that owns one driver: a thread, a `Store`, one command queue.
//!
//! Invariants:
//! - the guest is called from this thread only, one call at a time, so it is
//!   never re-entered (imports only queue events, see [`super::sandbox`]);
//! - every call runs under the per-call time limit and the memory cap;
//! - a call that traps, runs too long or exhausts memory poisons the
//!   `Store`: the instance is dropped, every request it held is failed, and a
//!   fresh instance is built from the same component and storage after a
//!   backoff. The host process is never taken down by a guest;
//! - every request given to the guest is completed exactly once, by the guest
//!   or, when the instance is lost, by the actor.

use super::bindings::{Config, DriverError, Metric, Peer};
use super::component::LoadedDriver;
use super::fault::GuestFaults;
use super::instance::{BuildError, Instance, Setup};
use super::mailbox::{Item, Mailbox};
use super::protocol::{Command, Event};
use crate::clock::Clock;
use crate::storage::{Db, Storage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Longest a driver sleeps between ticks, whatever it asks: a guard against a
/// driver that asks for a wake-up too far ahead.
pub const MAX_TICK_INTERVAL: Duration = Duration::from_secs(1);
/// A lost instance is rebuilt after this, doubling (up to
/// [`MAX_BACKOFF`]) while rebuilding fails.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a driver is started on this node.
#[derive(Debug, Clone)]
pub struct ActorConfig {
    pub node_id: u64,
    pub peers: Vec<Peer>,
    pub bootstrap: bool,
    pub floor: u64,
    /// Migration generation: which of the driver's namespaces it runs on.
    pub generation: u64,
    pub seed: u64,
    pub options: Vec<(String, String)>,
    /// Guest linear memory cap, bytes.
    pub memory_limit: usize,
    /// Longest one call into the guest may run.
    pub call_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "driver {source_label} refused its configuration: {}",
        super::bindings::describe(error)
    )]
    Refused {
        source_label: String,
        error: DriverError,
    },
    #[error("cannot start the driver thread: {0}")]
    Thread(std::io::Error),
}

/// Opens the storage namespace of a driver, by the name the driver reports
/// and the migration generation ([`ActorConfig::generation`]).
pub type StorageFor = Arc<dyn Fn(&str, u64) -> Arc<dyn Storage> + Send + Sync>;

/// The node's drivers' namespaces in `db` (`d/<name>[#<generation>]/`).
pub fn namespaces_of(db: &Db) -> StorageFor {
    let db = db.clone();
    Arc::new(move |name: &str, generation| {
        Arc::new(db.namespace(name, generation)) as Arc<dyn Storage>
    })
}

/// Peer messages queued for a driver beyond this are dropped.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// The running actor. Dropping it does not stop it: call `shutdown`.
pub struct DriverHandle {
    mailbox: Arc<Mailbox>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Everything but the component that starting a driver on this node takes,
/// kept so that a hot swap can start another.
///
/// The mailbox belongs to the node, not to one actor: the peer network keeps
/// delivering into it across swaps, and messages that arrive while one actor
/// stops and the next starts wait for the next.
#[derive(Clone)]
pub struct Spawner {
    storage_for: StorageFor,
    config: ActorConfig,
    clock: Arc<dyn Clock>,
    events: UnboundedSender<Event>,
    mailbox: Arc<Mailbox>,
    faults: Arc<GuestFaults>,
}

impl Spawner {
    pub fn new(
        storage_for: StorageFor,
        config: ActorConfig,
        clock: Arc<dyn Clock>,
        events: UnboundedSender<Event>,
    ) -> Spawner {
        Spawner {
            storage_for,
            config,
            clock,
            events,
            mailbox: Arc::new(Mailbox::new(MAX_QUEUED_MESSAGES)),
            faults: Arc::default(),
        }
    }

    /// Faults injected into whichever instance runs (chaos runs).
    pub fn faults(&self) -> Arc<GuestFaults> {
        self.faults.clone()
    }

    /// How the next actor will be started; a migration changes the floor,
    /// the generation, the peers and `bootstrap` before spawning.
    pub fn config_mut(&mut self) -> &mut ActorConfig {
        &mut self.config
    }

    /// Where the peer network puts messages for whichever driver runs.
    pub fn inbox(&self) -> Inbox {
        Inbox(self.mailbox.clone())
    }

    /// How `/metrics` asks whichever driver runs for its statistics.
    pub fn stats_probe(&self) -> StatsProbe {
        StatsProbe(self.mailbox.clone())
    }

    /// Start the actor and its first instance. Fails if the driver refuses
    /// its config or reports an unusable name; a first instance that traps
    /// or overruns is reported through `events` and retried, like any later
    /// one. At most one actor of a spawner runs at a time: stop the previous
    /// one first.
    pub fn spawn(&self, driver: LoadedDriver) -> Result<DriverHandle, StartError> {
        self.mailbox.forget_shutdown();
        DriverHandle::spawn(
            driver,
            self.storage_for.clone(),
            self.config.clone(),
            self.clock.clone(),
            self.events.clone(),
            self.mailbox.clone(),
            self.faults.clone(),
        )
    }
}

impl DriverHandle {
    fn spawn(
        driver: LoadedDriver,
        storage_for: StorageFor,
        config: ActorConfig,
        clock: Arc<dyn Clock>,
        events: UnboundedSender<Event>,
        mailbox: Arc<Mailbox>,
        faults: Arc<GuestFaults>,
    ) -> Result<DriverHandle, StartError> {
        let rx = mailbox.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let source_label = driver.source.clone();
        let thread = std::thread::Builder::new()
            .name("driver".into())
            .spawn(move || {
                let mut actor = Actor {
                    driver,
                    storage_for,
                    config,
                    clock,
                    events,
                    faults,
                    instance: None,
                };
                match actor.build() {
                    Ok(()) => {}
                    Err(Build::Crashed(reason)) => actor.crashed(reason),
                    Err(Build::Fatal(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                actor.run(&rx);
            })
            .map_err(StartError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DriverHandle {
                mailbox,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Refused {
                    source_label,
                    error: DriverError::Internal("the driver thread died".into()),
                })
            }
        }
    }

    /// Queue a command; commands sent after shutdown are dropped.
    pub fn send(&self, command: Command) {
        self.mailbox.push_control(command);
    }

    /// Stop between two events and wait for the thread.
    pub fn shutdown(mut self) {
        self.mailbox.push_control(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the peer network puts messages for the driver.
#[derive(Clone)]
pub struct Inbox(Arc<Mailbox>);

impl Inbox {
    /// False (dropped) when the driver's queue is full.
    pub fn deliver(&self, from: u64, payload: Vec<u8>) -> bool {
        self.0.push_message(from, payload)
    }
}

/// Asks whichever driver runs for its statistics (WIT 0.2 `stats`),
/// between two of its events.
#[derive(Clone)]
pub struct StatsProbe(Arc<Mailbox>);

impl StatsProbe {
    /// The running driver's statistics (none for a 0.1 driver), or `None`
    /// when no instance answers within `timeout`: none is up, or its
    /// `stats` trapped (which rebuilds it, like any trap).
    pub async fn ask(&self, timeout: Duration) -> Option<Vec<Metric>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.0.push_stats(Command::Stats { reply });
        tokio::time::timeout(timeout, answer).await.ok()?.ok()
    }
}

struct Live {
    instance: Instance,
    next_tick: Instant,
}

enum Build {
    /// Trap, overrun: try again later.
    Crashed(String),
    /// The driver will never start with this config.
    Fatal(StartError),
}

struct Actor {
    driver: LoadedDriver,
    storage_for: StorageFor,
    config: ActorConfig,
    clock: Arc<dyn Clock>,
    events: UnboundedSender<Event>,
    faults: Arc<GuestFaults>,
    instance: Option<Live>,
}

impl Actor {
    fn build(&mut self) -> Result<(), Build> {
        let info = self.driver.info.clone();
        let setup = Setup {
            config: Config {
                node_id: self.config.node_id,
                peers: self.config.peers.clone(),
                bootstrap: self.config.bootstrap,
                floor: self.config.floor,
                seed: self.config.seed,
                options: self.config.options.clone(),
            },
            storage: (self.storage_for)(&info.name, self.config.generation),
            clock: self.clock.clone(),
            events: self.events.clone(),
            faults: self.faults.clone(),
            memory_limit: self.config.memory_limit,
            call_timeout: self.config.call_timeout,
            instant_hangs: false,
            observe_writes: false,
        };
        let instance = Instance::build(&self.driver, setup).map_err(|e| match e {
            BuildError::Crashed(reason) => Build::Crashed(reason),
            BuildError::Refused(error) => Build::Fatal(StartError::Refused {
                source_label: self.driver.source.clone(),
                error,
            }),
        })?;
        tracing::info!(
            driver = %info.name,
            "driver {} {} started from {}",
            info.name,
            info.version,
            self.driver.source
        );
        let _ = self.events.send(Event::Started(info));
        self.instance = Some(Live {
            instance,
            next_tick: Instant::now(),
        });
        Ok(())
    }

    /// Drop the instance and fail every request it held.
    fn release(&mut self) {
        if let Some(live) = self.instance.take() {
            live.instance.release();
        }
    }

    /// Drop the instance, fail what it held, and tell the node.
    fn crashed(&mut self, reason: String) {
        // The first line says what failed and what the guest said last; the
        // wasm backtrace after it is mostly addresses.
        tracing::error!(
            "{}; rebuilding the driver instance from storage",
            super::instance::summary(&reason)
        );
        tracing::debug!("the lost instance's wasm backtrace: {reason}");
        self.release();
        let _ = self.events.send(Event::Crashed { reason });
    }

    fn run(&mut self, mailbox: &Mailbox) {
        let mut backoff = MIN_BACKOFF;
        let mut rebuild_at = Instant::now() + backoff;
        loop {
            let deadline = match &self.instance {
                Some(live) => live.next_tick,
                None => rebuild_at,
            };
            let command = match mailbox.recv_until(deadline) {
                Some(Item::Control(Command::Shutdown)) => {
                    self.release();
                    return;
                }
                other => other,
            };
            let Some(live) = &mut self.instance else {
                if let Some(command) = command {
                    self.refuse(command);
                }
                if Instant::now() >= rebuild_at {
                    match self.build() {
                        Ok(()) => backoff = MIN_BACKOFF,
                        Err(Build::Crashed(reason))
                        | Err(Build::Fatal(StartError::Refused {
                            error: DriverError::Internal(reason),
                            ..
                        })) => {
                            self.crashed(reason);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        Err(Build::Fatal(e)) => {
                            self.crashed(e.to_string());
                            backoff = MAX_BACKOFF;
                        }
                    }
                    rebuild_at = Instant::now() + backoff;
                }
                continue;
            };
            let result = match command {
                Some(Item::Control(command)) => live.instance.command(command),
                Some(Item::Messages(messages)) => live.instance.messages(messages),
                None => {
                    let now = self.clock.now().mono_ms;
                    live.instance.tick(now).map(|wake_at_ms| {
                        let wait = Duration::from_millis(wake_at_ms.saturating_sub(now))
                            .clamp(Duration::from_millis(1), MAX_TICK_INTERVAL);
                        live.next_tick = Instant::now() + wait;
                    })
                }
            };
            if let Err(reason) = result {
                self.crashed(reason);
                rebuild_at = Instant::now() + backoff;
            }
        }
    }

    /// What arrives while no instance is up: requests fail, messages are lost
    /// (as on a network).
    fn refuse(&self, item: Item) {
        match item {
            Item::Control(
                Command::LoadHighWater { request }
                | Command::PersistHighWater { request, .. }
                | Command::ChangeMembership { request, .. }
                | Command::TransferLeadership { request, .. },
            ) => {
                let _ = self.events.send(Event::Completed {
                    request,
                    outcome: Err(DriverError::Internal(
                        "the driver is restarting after a failure".into(),
                    )),
                });
            }
            Item::Control(Command::Shutdown | Command::Stats { .. }) | Item::Messages(_) => {}
        }
    }
}
