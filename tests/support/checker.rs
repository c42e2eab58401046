//! Recording the answers of test clients for `tsohost::tools::checker`,
//! the judge of the contract (uniqueness and real-time order, O(n log n)).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tsohost::client::Answer;
use tsohost::timestamp::RangeJson;
pub use tsohost::tools::checker::Op;
use tsohost::tools::load::Recorder;

/// Microseconds on one time base for every client of every node: since a
/// minute before the first call in this test process (a request is sent
/// before its answer is recorded).
pub fn micros(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(std::time::Duration::from_secs(60))
            .unwrap_or(now)
    });
    at.saturating_duration_since(base).as_micros() as u64
}

#[derive(Default, Clone)]
pub struct History(Arc<Mutex<Vec<Op>>>);

impl History {
    pub fn record(&self, sent: Instant, received: Instant, answer: &Answer) {
        let range: RangeJson = serde_json::from_slice(&answer.body).expect("timestamp JSON");
        self.0.lock().unwrap().push(Op {
            sent: micros(sent),
            received: micros(received),
            first: range.first().expect("decimal timestamp").0,
            count: range.count,
            client: 0,
        });
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }

    /// The largest timestamp answered so far.
    pub fn max(&self) -> u64 {
        self.ops().iter().map(Op::last).max().unwrap_or(0)
    }

    /// Panics naming the requests involved on a violation.
    pub fn check(&self) {
        if let Err(v) = tsohost::tools::checker::check(&self.ops()) {
            panic!("contract violated: {v}");
        }
    }
}

/// The test clients ([`super::spawn_cluster_clients`]) record every answer.
impl Recorder for History {
    fn answered(&mut self, sent: Instant, received: Instant, answer: &Answer) -> bool {
        self.record(sent, received, answer);
        true
    }
}
