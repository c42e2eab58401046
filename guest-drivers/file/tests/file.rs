//! What is particular to the file driver, natively on the SDK's simulation
//! host: the order of its durable writes and reports, strictly growing
//! epochs, and what it refuses. The SDK's contract suite (`tests/contract.rs`)
//! covers the rest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use tsohost_driver_file::FileDriver;
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::sim::cluster::{SimCluster, config, options};
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::storage::decode_u64;
use tsohost_guest_sdk::{
    Driver, DriverError, Epoch, Leadership, LogLevel, NodeId, Peer, Role, driver,
};

/// A host that keeps, besides the storage, what a power cut would leave of
/// it (only synced writes), and checks at each report and completion that
/// what the driver claims is already there.
struct Durable {
    sim: SimHost,
    /// The storage as of the last synced write.
    durable: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Writes made, and how many of them were synced.
    writes: RefCell<(u64, u64)>,
}

impl Durable {
    fn new(storage: MemStorage) -> Rc<Self> {
        let durable = RefCell::new(
            SimHost::new(1, storage.clone(), SimClock::default())
                .storage_scan(b"", b"", u32::MAX)
                .into_iter()
                .collect(),
        );
        Rc::new(Durable {
            sim: SimHost::new(1, storage, SimClock::default()),
            durable,
            writes: RefCell::default(),
        })
    }

    fn durable_u64(&self, key: &[u8]) -> u64 {
        self.durable
            .borrow()
            .get(key)
            .and_then(|v| decode_u64(v))
            .unwrap_or(0)
    }
}

impl Host for Durable {
    fn send(&self, to: NodeId, payload: &[u8]) {
        self.sim.send(to, payload);
    }

    fn storage_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sim.storage_get(key)
    }

    fn storage_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), DriverError> {
        self.sim.storage_write(puts, deletes, sync)?;
        let mut writes = self.writes.borrow_mut();
        writes.0 += 1;
        if sync {
            writes.1 += 1;
            let mut durable = self.durable.borrow_mut();
            durable.clear();
            durable.extend(self.sim.storage_scan(b"", b"", u32::MAX));
        }
        Ok(())
    }

    fn storage_scan(&self, start: &[u8], end: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.sim.storage_scan(start, end, limit)
    }

    fn now_ms(&self) -> u64 {
        self.sim.now_ms()
    }

    fn report_leadership(&self, report: Leadership) {
        assert_eq!(
            self.durable_u64(b"generation"),
            report.epoch.hi,
            "leadership reported before its generation was synced"
        );
        self.sim.report_leadership(report);
    }

    fn completed(&self, request: u64, outcome: Result<u64, DriverError>) {
        if let Ok(hw) = outcome {
            let durable = self.durable_u64(b"high-water");
            assert!(
                durable >= hw,
                "request {request} completed with {hw}, but only {durable} survives a power cut"
            );
        }
        self.sim.completed(request, outcome);
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.sim.log(level, message);
    }

    fn report_membership(&self, members: &[Peer]) {
        self.sim.report_membership(members);
    }
}

fn start(host: &Rc<Durable>) -> FileDriver {
    FileDriver::init(host.clone(), &config(1, &[], false, 0, &[])).expect("init")
}

#[test]
fn nothing_is_claimed_before_it_is_synced() {
    let storage = MemStorage::default();
    let host = Durable::new(storage.clone());
    let mut d = start(&host);
    let epoch = host.sim.last_report().unwrap().epoch;
    for (request, at_least) in [(1, 10), (2, 5), (3, 30), (4, 30)] {
        d.persist_high_water(request, at_least, epoch);
        assert_eq!(
            host.sim.take_completion(request),
            Some(Ok(at_least.max(10)))
        );
    }
    d.load_high_water(5);
    assert_eq!(host.sim.take_completion(5), Some(Ok(30)));
    let (writes, synced) = *host.writes.borrow();
    assert_eq!(writes, synced, "every write is synced");
    assert_eq!(
        synced, 3,
        "the generation, 10 and 30; nothing for 5 or a repeat"
    );

    // A new instance on what survived: a new generation, synced before it
    // reports.
    let host = Durable::new(storage);
    let _d = start(&host);
    let again = host.sim.last_report().unwrap();
    assert_eq!(again.epoch, Epoch { hi: 2, lo: 0 });
}

#[test]
fn it_leads_forever_and_every_start_takes_a_strictly_greater_epoch() {
    let mut c = SimCluster::<FileDriver>::new(&[1], &[]);
    let (_, mut last) = c.wait_leader();
    assert_eq!(
        (last.role, last.leader, last.lease_until_ms),
        (Role::Leader, Some(1), u64::MAX)
    );
    for round in 0..3 {
        c.kill(1);
        c.start(1, false);
        let (_, r) = c.wait_leader();
        assert!(r.epoch > last.epoch, "round {round}");
        assert_eq!(
            c.persist(1, 7, last.epoch),
            Err(DriverError::Fenced(r.epoch))
        );
        last = r;
    }
    assert_eq!(c.load(1), Ok(0), "the fenced persists wrote nothing");
    assert_eq!(
        c.nodes[&1].host.memberships.borrow().len(),
        0,
        "no membership"
    );
}

#[test]
fn it_refuses_other_nodes_cluster_operations_and_messages() {
    let storage = MemStorage::default();
    let host = Rc::new(SimHost::new(1, storage.clone(), SimClock::default()));
    match FileDriver::init(host.clone(), &config(1, &[1, 2], true, 0, &[])) {
        Err(DriverError::InvalidConfig(m)) => assert!(m.contains("node 2"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(storage.is_empty(), "a refused init writes nothing");

    let mut d = FileDriver::init(host.clone(), &config(1, &[1], true, 0, &[])).unwrap();
    d.change_membership(1, &[]);
    d.transfer_leadership(2, None);
    for (request, operation) in [(1, "change-membership"), (2, "transfer-leadership")] {
        assert!(matches!(
            host.take_completion(request),
            Some(Err(DriverError::InvalidConfig(m)))
                if m.starts_with(operation) && m.contains("single-node")
        ));
    }
    d.on_message(2, b"hello");
    assert_eq!(d.on_tick(5), u64::MAX, "nothing to do over time");
    assert!(host.outbox.borrow().is_empty());
    assert!(
        host.logs
            .borrow()
            .iter()
            .any(|(level, line)| *level == LogLevel::Warn && line.contains("no peers"))
    );
    assert_eq!(host.reports.borrow().len(), 1, "one report, from init");

    let refused = FileDriver::init(host, &config(1, &[], false, 0, &options(&[("k", "v")])));
    assert!(matches!(refused, Err(DriverError::InvalidConfig(m)) if m.contains("`k`")));
}

#[test]
fn a_corrupt_high_water_is_reported_not_misread() {
    let storage = MemStorage::default();
    let host = Rc::new(SimHost::new(1, storage, SimClock::default()));
    host.storage_write(&[(b"high-water".to_vec(), vec![1, 2, 3])], &[], true)
        .unwrap();
    let mut d = FileDriver::init(host.clone(), &config(1, &[], false, 0, &[])).unwrap();
    d.load_high_water(1);
    assert!(matches!(
        host.take_completion(1),
        Some(Err(DriverError::Storage(m))) if m.contains("corrupt")
    ));
}

#[test]
fn its_name_is_file_and_its_version_the_crates() {
    let info = driver::info::<FileDriver>(env!("CARGO_PKG_VERSION"));
    assert_eq!(info.name, "file");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
}
