//! The driver actor with real guest components, without sockets or disks
//! (in-memory storage): the contract as the host sees it.

use super::actor::{ActorConfig, StorageFor};
use super::bindings::{DriverError, Epoch, Role};
use super::{Command, DriverHandle, DriverSource, Event, Runtime, Spawner};
use crate::clock::SystemClock;
use crate::storage::{Entries, MemStorage, Storage, StorageError, WriteBatch};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

fn config(options: &[(&str, &str)]) -> ActorConfig {
    ActorConfig {
        node_id: 1,
        peers: Vec::new(),
        bootstrap: true,
        floor: 0,
        generation: 0,
        seed: 7,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        memory_limit: 32 << 20,
        call_timeout: Duration::from_millis(100),
    }
}

struct Harness {
    handle: Option<DriverHandle>,
    events: UnboundedReceiver<Event>,
    next_request: u64,
}

fn start(
    source: DriverSource,
    storage: &MemStorage,
    options: &[(&str, &str)],
) -> Result<Harness, super::actor::StartError> {
    start_on(source, Arc::new(storage.clone()), options)
}

fn start_on(
    source: DriverSource,
    storage: Arc<dyn Storage>,
    options: &[(&str, &str)],
) -> Result<Harness, super::actor::StartError> {
    let runtime = Runtime::new(None).unwrap();
    let driver = runtime.load(&source).unwrap();
    let storage_for: StorageFor = Arc::new(move |_, _| storage.clone());
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let handle = Spawner::new(
        storage_for,
        config(options),
        Arc::new(SystemClock::new()),
        tx,
    )
    .spawn(driver)?;
    Ok(Harness {
        handle: Some(handle),
        events,
        next_request: 1,
    })
}

fn file() -> DriverSource {
    super::builtin::builtin("file").unwrap()
}

fn misbehave() -> DriverSource {
    DriverSource::File(Path::new(super::builtin::guest_dir()).join("tsohost_test_misbehave.wasm"))
}

impl Harness {
    /// The next event that `pick` accepts, skipping others.
    fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.events.try_recv() {
                Ok(event) => {
                    if let Some(t) = pick(event) {
                        return t;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        panic!("no {what} event within 10 s");
    }

    fn leadership(&mut self) -> Epoch {
        self.expect("leadership", |e| match e {
            Event::Leadership(l) if l.role == Role::Leader => Some(l.epoch),
            _ => None,
        })
    }

    fn call(&mut self, make: impl FnOnce(u64) -> Command) -> Result<u64, DriverError> {
        let request = self.next_request;
        self.next_request += 1;
        self.handle.as_ref().unwrap().send(make(request));
        self.expect("completion", |e| match e {
            Event::Completed {
                request: r,
                outcome,
            } if r == request => Some(outcome),
            _ => None,
        })
    }

    fn load(&mut self) -> Result<u64, DriverError> {
        self.call(|request| Command::LoadHighWater { request })
    }

    fn persist(&mut self, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        self.call(|request| Command::PersistHighWater {
            request,
            at_least,
            epoch,
        })
    }

    fn stop(mut self) {
        self.handle.take().unwrap().shutdown();
    }
}

#[test]
fn file_driver_keeps_the_contract_across_instances() {
    let storage = MemStorage::default();
    let mut h = start(file(), &storage, &[]).unwrap();
    let e1 = h.leadership();
    assert_eq!(h.load(), Ok(0));
    assert_eq!(h.persist(100, e1), Ok(100));
    assert_eq!(h.persist(50, e1), Ok(100), "never decreases");
    let too_far = 1 << 46;
    assert_eq!(
        h.persist(too_far, e1),
        Err(DriverError::OutOfRange(too_far))
    );
    let stale = Epoch { hi: 0, lo: 0 };
    assert_eq!(h.persist(200, stale), Err(DriverError::Fenced(e1)));
    assert_eq!(h.load(), Ok(100));
    h.stop();

    // A fresh instance resumes from storage with a newer epoch, and the
    // old epoch is fenced.
    let mut h = start(file(), &storage, &[]).unwrap();
    let e2 = h.leadership();
    assert!(e2 > e1);
    assert_eq!(h.load(), Ok(100));
    assert_eq!(h.persist(300, e1), Err(DriverError::Fenced(e2)));
    assert_eq!(h.persist(300, e2), Ok(300));
    h.stop();
}

/// Storage whose reads fail while `failing` is set, as a broken disk's
/// would; writes go through.
struct FailingReads {
    inner: MemStorage,
    failing: std::sync::atomic::AtomicBool,
}

impl FailingReads {
    fn error(&self) -> Option<StorageError> {
        self.failing
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(StorageError::Injected)
    }
}

impl Storage for FailingReads {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.error() {
            Some(e) => Err(e),
            None => self.inner.get(key),
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        self.inner.write(batch, sync)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        match self.error() {
            Some(e) => Err(e),
            None => self.inner.scan(start, end, limit),
        }
    }
}

#[test]
fn a_failed_read_is_never_taken_for_absent_state() {
    let storage = MemStorage::default();
    let mut h = start(file(), &storage, &[]).unwrap();
    let e1 = h.leadership();
    assert_eq!(h.persist(100, e1), Ok(100));
    h.stop();

    // Reading the generation fails: the instance must not start as if the
    // store were empty (epoch 1, high water 0); it traps and is rebuilt.
    let failing = Arc::new(FailingReads {
        inner: storage,
        failing: true.into(),
    });
    let mut h = start_on(file(), failing.clone(), &[]).unwrap();
    let first = h.expect("crash or leadership", |e| match e {
        Event::Crashed { reason } => Some(Ok(reason)),
        Event::Leadership(l) => Some(Err(l)),
        _ => None,
    });
    let reason = first.expect("no leadership while reads fail");
    assert!(reason.contains("storage-get failed"), "{reason}");
    failing
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let e2 = h.leadership();
    assert!(
        e2 > e1,
        "a newer epoch once reads work: {e2:?} after {e1:?}"
    );
    assert_eq!(h.load(), Ok(100));
    h.stop();
}

#[test]
fn a_driver_refusing_its_config_does_not_start() {
    let err = start(file(), &MemStorage::default(), &[("colour", "blue")])
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("unknown driver option `colour`"),
        "{err}"
    );
}

#[test]
fn a_trap_fails_the_request_and_rebuilds_from_storage() {
    let storage = MemStorage::default();
    let mut h = start(misbehave(), &storage, &[("fault", "trap-on-persist=2")]).unwrap();
    let e1 = h.leadership();
    assert_eq!(h.persist(100, e1), Ok(100));
    assert!(matches!(h.persist(200, e1), Err(DriverError::Internal(_))));
    let reason = h.expect("crash", |e| match e {
        Event::Crashed { reason } => Some(reason),
        _ => None,
    });
    assert!(reason.contains("trapped"), "{reason}");
    let e2 = h.leadership();
    assert!(e2 > e1, "the rebuilt instance leads in a newer epoch");
    assert_eq!(h.load(), Ok(100), "state came back from storage");
    h.stop();
}

#[test]
fn a_hang_is_cut_off_by_the_time_limit() {
    let mut h = start(
        misbehave(),
        &MemStorage::default(),
        &[("fault", "loop-on-persist=1")],
    )
    .unwrap();
    let e1 = h.leadership();
    let started = Instant::now();
    assert!(matches!(h.persist(100, e1), Err(DriverError::Internal(_))));
    assert!(started.elapsed() < Duration::from_secs(5));
    let reason = h.expect("crash", |e| match e {
        Event::Crashed { reason } => Some(reason),
        _ => None,
    });
    assert!(reason.contains("per-call limit"), "{reason}");
    h.stop();
}

/// An [`Instance`](super::instance::Instance) of `source` on fresh storage,
/// alone, under a `cap`-byte memory cap, with `options`.
fn instance(
    source: DriverSource,
    cap: usize,
    options: &[(&str, &str)],
) -> super::instance::Instance {
    let driver = Runtime::new(None).unwrap().load(&source).unwrap();
    let config = config(options);
    let setup = super::instance::Setup {
        config: super::bindings::Config {
            node_id: config.node_id,
            peers: config.peers,
            bootstrap: config.bootstrap,
            floor: config.floor,
            seed: config.seed,
            options: config.options,
        },
        storage: Arc::new(MemStorage::default()),
        clock: Arc::new(SystemClock::new()),
        events: tokio::sync::mpsc::unbounded_channel().0,
        faults: Arc::default(),
        memory_limit: cap,
        call_timeout: config.call_timeout,
        instant_hangs: false,
        observe_writes: false,
    };
    match super::instance::Instance::build(&driver, setup) {
        Ok(instance) => instance,
        Err(e) => panic!("build: {e:?}"),
    }
}

#[test]
fn an_instance_counts_the_memory_it_was_granted() {
    const PAGE: usize = 64 << 10;
    const CAP: usize = 32 << 20;
    let mut file = instance(file(), CAP, &[]);
    let after_init = file.memory_bytes();
    assert!(
        after_init > 0 && after_init.is_multiple_of(PAGE),
        "{after_init}"
    );
    // A peer message is copied into guest memory: the guest grows by at
    // least its size.
    file.messages(vec![(2, vec![0; 4 << 20])]).unwrap();
    assert!(
        file.memory_bytes() >= after_init + (4 << 20),
        "{} after a 4 MiB message, {after_init} before",
        file.memory_bytes()
    );

    // A guest that allocates without bound is stopped at its cap, and the
    // refused growth is not counted.
    let mut hog = instance(misbehave(), CAP, &[("fault", "hog-on-persist=1")]);
    let epoch = Epoch { hi: 0, lo: 0 };
    let failed = hog.command(Command::PersistHighWater {
        request: 1,
        at_least: 1,
        epoch,
    });
    let reason = failed.expect_err("the hog exceeds its cap");
    assert!(reason.contains("memory limit"), "{reason}");
    let held = hog.memory_bytes();
    assert!(
        CAP / 2 < held && held <= CAP,
        "{held} bytes under a {CAP}-byte cap"
    );
}
