//! `tsohost check-driver`: runs the driver contract (wit/driver.wit) against
//! a component and reports each rule kept or broken, in words a driver
//! author can act on.
//!
//! The driver runs in the real sandbox and actor, on in-memory storage that
//! records every write, as a single node. Rules that need a working driver
//! are skipped (and reported) once an earlier rule they depend on fails.

use crate::clock::SystemClock;
use crate::driver::actor::{ActorConfig, StorageFor};
use crate::driver::bindings::{DriverError, Epoch, Peer, Role, describe};
use crate::driver::{Command, DriverHandle, DriverSource, Event, LoadedDriver, Runtime, Spawner};
use crate::storage::{Entries, MemStorage, Storage, StorageError, WriteBatch};
use crate::timestamp::MAX_PHYSICAL_MS;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long the checker waits for any one answer from the driver.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One rule's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub rule: &'static str,
    /// `pass`, `fail` or `skipped`.
    pub outcome: &'static str,
    pub detail: String,
}

/// Storage that counts synced writes, so the checker can tell whether a
/// persist completed after one.
#[derive(Clone, Default)]
struct Recording {
    inner: MemStorage,
    synced_writes: Arc<AtomicU64>,
}

impl Storage for Recording {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key)
    }
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        self.inner.write(batch, sync)?;
        if sync {
            self.synced_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        self.inner.scan(start, end, limit)
    }
}

/// A driver under test: its actor and what it has said.
struct Subject {
    handle: Option<DriverHandle>,
    events: UnboundedReceiver<Event>,
    next_request: u64,
    leader_epoch: Option<Epoch>,
    crashes: Arc<Mutex<Vec<String>>>,
}

impl Subject {
    fn start(
        driver: &LoadedDriver,
        storage: &Recording,
        floor: u64,
        options: &[(String, String)],
        crashes: Arc<Mutex<Vec<String>>>,
    ) -> Result<Subject, String> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let storage = storage.clone();
        let storage_for: StorageFor =
            Arc::new(move |_, _| Arc::new(storage.clone()) as Arc<dyn Storage>);
        let spawner = Spawner::new(
            storage_for,
            ActorConfig {
                node_id: 1,
                peers: vec![Peer {
                    id: 1,
                    address: "127.0.0.1:0".into(),
                }],
                bootstrap: true,
                floor,
                generation: 0,
                seed: 1,
                options: options.to_vec(),
                memory_limit: 256 << 20,
                call_timeout: Duration::from_secs(1),
            },
            Arc::new(SystemClock::new()),
            tx,
        );
        let handle = spawner.spawn(driver.clone()).map_err(|e| e.to_string())?;
        Ok(Subject {
            handle: Some(handle),
            events,
            next_request: 1,
            leader_epoch: None,
            crashes,
        })
    }

    /// Wait for an event `pick` accepts, noting leadership and crashes.
    fn wait<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while Instant::now() < deadline {
            match self.events.try_recv() {
                Ok(event) => {
                    match &event {
                        Event::Leadership(l) if l.role == Role::Leader && l.leader == Some(1) => {
                            self.leader_epoch = Some(l.epoch);
                        }
                        Event::Crashed { reason } => {
                            self.crashes.lock().unwrap().push(reason.clone())
                        }
                        _ => {}
                    }
                    if let Some(t) = pick(&event) {
                        return Some(t);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        None
    }

    fn leadership(&mut self) -> Option<Epoch> {
        if let Some(epoch) = self.leader_epoch {
            return Some(epoch);
        }
        self.wait(|e| match e {
            Event::Leadership(l) if l.role == Role::Leader && l.leader == Some(1) => Some(l.epoch),
            _ => None,
        })
    }

    fn call(&mut self, make: impl FnOnce(u64) -> Command) -> Option<Result<u64, DriverError>> {
        let request = self.next_request;
        self.next_request += 1;
        self.handle.as_ref()?.send(make(request));
        self.wait(|e| match e {
            Event::Completed {
                request: r,
                outcome,
            } if *r == request => Some(outcome.clone()),
            _ => None,
        })
    }

    fn load(&mut self) -> Option<Result<u64, DriverError>> {
        self.call(|request| Command::LoadHighWater { request })
    }

    fn persist(&mut self, at_least: u64, epoch: Epoch) -> Option<Result<u64, DriverError>> {
        self.call(|request| Command::PersistHighWater {
            request,
            at_least,
            epoch,
        })
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Report(Vec<Verdict>);

impl Report {
    fn pass(&mut self, rule: &'static str, detail: impl Into<String>) {
        self.push(rule, "pass", detail.into());
    }
    fn fail(&mut self, rule: &'static str, detail: impl Into<String>) {
        self.push(rule, "fail", detail.into());
    }
    fn check(&mut self, rule: &'static str, ok: bool, pass: String, fail: String) -> bool {
        if ok {
            self.pass(rule, pass);
        } else {
            self.fail(rule, fail);
        }
        ok
    }
    fn push(&mut self, rule: &'static str, outcome: &'static str, detail: String) {
        self.0.push(Verdict {
            rule,
            outcome,
            detail,
        });
    }
    fn skip_rest(&mut self, rules: &[&'static str], why: &str) {
        for rule in rules {
            self.push(rule, "skipped", format!("not checked: {why}"));
        }
    }
}

fn shown(outcome: &Option<Result<u64, DriverError>>) -> String {
    match outcome {
        None => format!("no answer within {ANSWER_TIMEOUT:?} (was `completed` called?)"),
        Some(Ok(v)) => format!("ok({v})"),
        Some(Err(e)) => format!("error: {}", describe(e)),
    }
}

const LATER: &[&str] = &[
    "load-high-water answers",
    "persist completes after a synced write",
    "persist answers at least at-least",
    "high water never decreases",
    "stale epochs are fenced",
    "out-of-range is rejected",
    "state survives re-instantiation",
    "floor is respected",
];

/// Check `source` against the contract. `options` are passed to `init`.
pub fn check(source: &DriverSource, options: &[(String, String)]) -> Vec<Verdict> {
    let mut report = Report(Vec::new());
    let runtime = match Runtime::new(None) {
        Ok(r) => r,
        Err(e) => {
            report.fail("component and WIT version", e.to_string());
            return report.0;
        }
    };
    let driver = match runtime.load(source) {
        Ok(d) => d,
        Err(e) => {
            report.fail("component and WIT version", e.to_string());
            report.skip_rest(
                &["init", "leadership is reported"],
                "the component did not load",
            );
            report.skip_rest(LATER, "the component did not load");
            return report.0;
        }
    };
    report.pass(
        "component and WIT version",
        format!("exports tsohost:driver/driver@{}", driver.wit_version),
    );
    let crashes = Arc::new(Mutex::new(Vec::new()));
    let storage = Recording::default();

    // Unknown options must be refused, not ignored.
    let mut typo = options.to_vec();
    typo.push(("tsohost-check-no-such-option".into(), "1".into()));
    match Subject::start(&driver, &Recording::default(), 0, &typo, crashes.clone()) {
        Err(e) if e.contains("invalid config") => report.pass(
            "unknown options are refused",
            "init returned invalid-config",
        ),
        Err(e) => report.fail(
            "unknown options are refused",
            format!("init failed, but not with invalid-config: {e}"),
        ),
        Ok(_) => report.fail(
            "unknown options are refused",
            "init accepted the option `tsohost-check-no-such-option`; return \
             invalid-config for keys you do not know, so typos are not silently ignored",
        ),
    }

    let mut subject = match Subject::start(&driver, &storage, 0, options, crashes.clone()) {
        Ok(s) => s,
        Err(e) => {
            report.fail("init", e);
            report.skip_rest(&["leadership is reported"], "init failed");
            report.skip_rest(LATER, "init failed");
            return report.0;
        }
    };
    report.pass("init", "init succeeded for a single-node config (node 1)");
    let Some(epoch) = subject.leadership() else {
        report.fail(
            "leadership is reported",
            format!(
                "node 1, alone in its cluster, never reported itself leader within \
                 {ANSWER_TIMEOUT:?}; call host.report-leadership with role leader"
            ),
        );
        report.skip_rest(LATER, "no leadership");
        return report.0;
    };
    report.pass("leadership is reported", format!("leader in epoch {epoch}"));

    let loaded = subject.load();
    let base = match loaded {
        Some(Ok(v)) => {
            report.pass("load-high-water answers", format!("{v} on empty storage"));
            v
        }
        _ => {
            report.fail("load-high-water answers", shown(&loaded));
            0
        }
    };

    let target = base.max(1_000) + 1_000;
    let before = storage.synced_writes.load(Ordering::SeqCst);
    let persisted = subject.persist(target, epoch);
    let synced = storage.synced_writes.load(Ordering::SeqCst) > before;
    report.check(
        "persist completes after a synced write",
        matches!(persisted, Some(Ok(_))) && synced,
        "a storage-write with sync preceded the completion".into(),
        match persisted {
            Some(Ok(_)) => "persist completed without a storage-write with sync=true: the high \
                            water would be lost in a crash"
                .into(),
            ref other => format!("persist did not complete: {}", shown(other)),
        },
    );
    report.check(
        "persist answers at least at-least",
        matches!(persisted, Some(Ok(v)) if v >= target),
        format!("asked {target}, got {}", shown(&persisted)),
        format!("asked {target}, got {}", shown(&persisted)),
    );

    let lower = subject.persist(target - 500, epoch);
    let reread = subject.load();
    report.check(
        "high water never decreases",
        matches!(lower, Some(Ok(v)) if v >= target) && matches!(reread, Some(Ok(v)) if v >= target),
        format!("a lower persist answered {}", shown(&lower)),
        format!(
            "after persisting {target}, a persist of {} answered {} and a load {}",
            target - 500,
            shown(&lower),
            shown(&reread)
        ),
    );

    if epoch == (Epoch { hi: 0, lo: 0 }) {
        report.fail(
            "stale epochs are fenced",
            "the leader reported epoch 0.0, so no older epoch exists: epochs must grow with \
             every new leadership, starting above 0.0",
        );
    } else {
        let stale = Epoch { hi: 0, lo: 0 };
        let fenced = subject.persist(target + 100, stale);
        report.check(
            "stale epochs are fenced",
            matches!(fenced, Some(Err(DriverError::Fenced(_)))),
            "a persist with epoch 0.0 failed with fenced".into(),
            format!(
                "a persist with epoch 0.0 (older than {epoch}) answered {}; answer fenced",
                shown(&fenced)
            ),
        );
    }

    let too_far = MAX_PHYSICAL_MS + 1;
    let out = subject.persist(too_far, epoch);
    report.check(
        "out-of-range is rejected",
        matches!(out, Some(Err(DriverError::OutOfRange(_)))),
        "2^46 failed with out-of-range".into(),
        format!(
            "a persist of 2^46 answered {}; answer out-of-range",
            shown(&out)
        ),
    );

    subject.stop();
    drop(subject);
    match Subject::start(&driver, &storage, 0, options, crashes.clone()) {
        Err(e) => report.fail("state survives re-instantiation", format!("restart: {e}")),
        Ok(mut again) => {
            let epoch2 = again.leadership();
            let reloaded = again.load();
            report.check(
                "state survives re-instantiation",
                // The same epoch is fine (a sole Raft voter resumes its own
                // term); an older one would undo fencing.
                matches!(reloaded, Some(Ok(v)) if v >= target)
                    && epoch2.is_some_and(|e2| e2 >= epoch),
                format!(
                    "a fresh instance on the same storage loads {} in epoch {}",
                    shown(&reloaded),
                    epoch2.map(|e| e.to_string()).unwrap_or_default()
                ),
                format!(
                    "a fresh instance on the same storage loads {} (expected ≥ {target}) and \
                     leads in epoch {:?} (expected ≥ {epoch}); keep all state in host storage",
                    shown(&reloaded),
                    epoch2.map(|e| e.to_string())
                ),
            );
        }
    }

    let floor = 1_000_000_000_000;
    match Subject::start(
        &driver,
        &Recording::default(),
        floor,
        options,
        crashes.clone(),
    ) {
        Err(e) => report.fail("floor is respected", format!("init with a floor: {e}")),
        Ok(mut fresh) => {
            let _ = fresh.leadership();
            let loaded = fresh.load();
            report.check(
                "floor is respected",
                matches!(loaded, Some(Ok(v)) if v >= floor),
                format!("floor {floor}: load answered {}", shown(&loaded)),
                format!(
                    "floor {floor}: load answered {}; never answer below config.floor",
                    shown(&loaded)
                ),
            );
        }
    }

    let crashes = crashes.lock().unwrap();
    report.check(
        "no call traps or runs past the time limit",
        crashes.is_empty(),
        "no instance was lost".into(),
        crashes.join("; "),
    );
    report.0
}

/// Lines for a terminal; and whether every rule passed.
pub fn render(verdicts: &[Verdict]) -> (String, bool) {
    let mut out = String::new();
    for v in verdicts {
        let mark = match v.outcome {
            "pass" => "ok  ",
            "fail" => "FAIL",
            _ => "skip",
        };
        out.push_str(&format!("{mark}  {}: {}\n", v.rule, v.detail));
    }
    let ok = verdicts.iter().all(|v| v.outcome == "pass");
    let failed = verdicts.iter().filter(|v| v.outcome != "pass").count();
    out.push_str(&if ok {
        format!("all {} rules hold\n", verdicts.len())
    } else {
        format!("{failed} of {} rules broken or unchecked\n", verdicts.len())
    });
    (out, ok)
}
