//! The slot against real components and a real RocksDB: refusals leave the
//! running driver alone, and the driver record is durable before it counts.

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::driver::actor::namespaces_of;
use crate::driver::builtin::builtin;
use crate::driver::{Event, Runtime};
use tokio::sync::mpsc::UnboundedReceiver;

struct Fixture {
    slot: DriverSlot,
    db: Db,
    runtime: Runtime,
    events: UnboundedReceiver<Event>,
    _dir: tempfile::TempDir,
}

fn load(runtime: &Runtime, name: &str) -> LoadedDriver {
    runtime.load(&builtin(name).unwrap()).unwrap()
}

/// A single node running the built-in `file` driver.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db")).unwrap();
    let runtime = Runtime::new(None).unwrap();
    let loaded = load(&runtime, "file");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let node = Node::new(
        1,
        Duration::from_secs(3),
        clock.clone(),
        DriverStatus::from(&loaded),
        DriverRecord::first("file"),
        Arc::default(),
        None,
    );
    let storage_for = namespaces_of(&db);
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let spawner = Spawner::new(
        storage_for,
        ActorConfig {
            node_id: 1,
            peers: Vec::new(),
            bootstrap: true,
            floor: 0,
            generation: 0,
            seed: 1,
            options: Vec::new(),
            memory_limit: 64 << 20,
            call_timeout: Duration::from_secs(1),
        },
        clock,
        events_tx,
    );
    let handle = spawner.spawn(loaded.clone()).unwrap();
    Fixture {
        slot: DriverSlot::new(node, spawner, db.clone(), handle, loaded),
        db,
        runtime,
        events,
        _dir: dir,
    }
}

impl Fixture {
    /// The name of the next driver instance that starts.
    async fn started(&mut self) -> String {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await {
                Ok(Some(Event::Started(info))) => return info.name,
                Ok(Some(_)) => {}
                other => panic!("no driver started: {other:?}"),
            }
        }
    }
}

fn refusal(r: Result<impl std::fmt::Debug, Refusal>) -> String {
    match r {
        Err(Refusal::Now(e)) => e,
        Err(Refusal::Restarted(e) | Refusal::NoDriver(e)) => panic!("not refused at once: {e}"),
        Ok(v) => panic!("not refused: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_to_another_driver_is_refused_and_the_driver_keeps_running() {
    let mut f = fixture();
    assert_eq!(f.started().await, "file");
    let raft = load(&f.runtime, "raft");
    let e = refusal(f.slot.swap(raft));
    assert!(e.contains("is a migration"), "{e}");
    let status = f
        .slot
        .swap(load(&f.runtime, "file"))
        .unwrap_or_else(|_| panic!());
    assert_eq!((status.name.as_str(), status.swaps), ("file", 1));
    assert_eq!(f.started().await, "file");
    f.slot.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seal_is_durable_and_a_migration_needs_it() {
    let mut f = fixture();
    f.started().await;
    let raft = load(&f.runtime, "raft");
    let e = refusal(f.slot.migrate(raft.clone(), 0));
    assert!(e.contains("not sealed"), "{e}");
    assert!(
        f.slot.prepare(&load(&f.runtime, "file")).is_err(),
        "the same driver"
    );
    assert_eq!(f.slot.prepare(&raft).unwrap().name, "raft");

    let sealed = f.slot.seal().unwrap();
    assert!(sealed.now_sealed);
    assert!(DriverRecord::load(&f.db).unwrap().unwrap().sealed, "stored");
    assert!(
        !f.slot.seal().unwrap().now_sealed,
        "sealing twice changes nothing"
    );
    assert!(f.slot.unseal().unwrap());
    assert!(!DriverRecord::load(&f.db).unwrap().unwrap().sealed);
    assert!(!f.slot.unseal().unwrap());

    f.slot.seal().unwrap();
    let (status, record) = f.slot.migrate(raft, 5_000).unwrap_or_else(|_| panic!());
    assert_eq!(status.name, "raft");
    assert_eq!(
        (
            record.driver.as_str(),
            record.generation,
            record.floor,
            record.sealed
        ),
        ("raft", 1, 5_000, false)
    );
    assert_eq!(DriverRecord::load(&f.db).unwrap().unwrap(), record);
    assert_eq!(f.started().await, "raft");
    f.slot.shutdown();
}
