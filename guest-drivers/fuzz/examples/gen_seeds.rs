//! Write seed corpora for the guest fuzz targets from a real simulated
//! cluster (nodes 1, 2, 3; 1 bootstraps) of each driver: the messages
//! delivered to node 1 and node 3 (the two message scenarios, replayed
//! exactly by the harness), one input per kind of message seen, and the
//! storage of every node at the end (each node's records with each storage
//! header), and valid frames for the frame decoder.
//!
//! `cargo run --release --example gen_seeds --target <host> -- <dir>` writes
//! `<dir>/<target>/<name>`; ../../host/fuzz/fuzz.sh runs it (`FUZZ_SEEDS=1`) and the
//! output is checked in under `corpus/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use tsohost_guest_fuzz::{
    MessageEvent, OPTIONS, PaxosDriver, RaftDriver, Scenario, encode_storage, storage_header,
};
use tsohost_guest_sdk::frame::{self, Frame};
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::sim::cluster::SimCluster;
use tsohost_guest_sdk::{Driver, Epoch, NodeId};

/// Events per replay seed.
const REPLAY_EVENTS: usize = 64;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus dir");
    fs::write(d.join(name), bytes).expect("write seed");
}

/// Step `c` for `ms`, recording every message delivered to a node as
/// `(delivered_at, from, to, payload)`.
fn step_recording<D: Driver>(
    c: &mut SimCluster<D>,
    ms: u64,
    log: &mut Vec<(u64, NodeId, NodeId, Vec<u8>)>,
) {
    for _ in 0..ms {
        let now = c.clock.now() + 1;
        for (at, from, to, payload) in &c.in_flight {
            if *at <= now && !c.isolated.contains(from) && !c.isolated.contains(to) {
                log.push((now, *from, *to, payload.clone()));
            }
        }
        c.step();
    }
}

/// The serving leader and its epoch, stepping (and recording) until there
/// is one.
fn leader<D: Driver>(
    c: &mut SimCluster<D>,
    log: &mut Vec<(u64, NodeId, NodeId, Vec<u8>)>,
) -> (NodeId, Epoch) {
    for _ in 0..20_000 {
        if let Some((id, r)) = c.serving_leader() {
            return (id, r.epoch);
        }
        step_recording(c, 1, log);
    }
    panic!("no leader");
}

/// The first three bytes of `body`, in hex.
fn hex(body: &[u8]) -> String {
    body.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

fn seeds<D: Driver>(dir: &Path, driver: &str) {
    let mut c = SimCluster::<D>::new(&[1, 2, 3], OPTIONS);
    let mut log = Vec::new();
    let (lead, epoch) = leader(&mut c, &mut log);
    // Enough writes for snapshots (`snapshot-every` = 8) and a purged log.
    for n in 1..=20u64 {
        c.request(lead, |d, r| d.persist_high_water(r, n * 10, epoch));
        step_recording(&mut c, 5, &mut log);
    }
    c.request(lead, |d, r| d.load_high_water(r));
    step_recording(&mut c, 500, &mut log);
    // A leader change, so that elections of a running cluster show up.
    c.request(lead, |d, r| d.transfer_leadership(r, None));
    step_recording(&mut c, 3_000, &mut log);

    let message_target = format!("{driver}_message");
    let mut kinds = BTreeSet::new();
    for scenario in [Scenario::Joiner, Scenario::Bootstrapper] {
        let node = scenario.node();
        let mut replay = vec![scenario.byte()];
        let mut last = tsohost_guest_fuzz::START_MS;
        for (at, from, _, payload) in log.iter().filter(|m| m.2 == node).take(REPLAY_EVENTS) {
            let mut dt = at - last;
            // Gaps longer than a u16 are split with messages from nobody
            // that decode as nothing (an empty payload).
            while dt > u64::from(u16::MAX) {
                MessageEvent {
                    from: 0,
                    dt_ms: u16::MAX,
                    payload: vec![],
                }
                .encode(&mut replay);
                dt -= u64::from(u16::MAX);
            }
            MessageEvent {
                from: *from as u8,
                dt_ms: dt as u16,
                payload: payload.clone(),
            }
            .encode(&mut replay);
            last = *at;
        }
        write(dir, &message_target, &format!("replay-node{node}"), &replay);
    }
    // One input per kind of frame seen (request kinds, responses), each
    // delivered alone to either scenario.
    for (_, from, _, payload) in &log {
        let Ok(frames) = frame::decode(payload) else {
            continue;
        };
        for f in frames {
            // The kind and the body's first bytes (a message's variant).
            let kind = match &f {
                Frame::Request { kind, body, .. } => format!("request-{kind}-{}", hex(body)),
                Frame::Response { body, .. } => format!("response-{}", hex(body)),
            };
            if kinds.insert(kind.clone()) {
                for scenario in [Scenario::Joiner, Scenario::Bootstrapper] {
                    let mut input = vec![scenario.byte()];
                    MessageEvent {
                        from: *from as u8,
                        dt_ms: 1,
                        payload: payload.clone(),
                    }
                    .encode(&mut input);
                    write(
                        dir,
                        &message_target,
                        &format!("{kind}-node{}", scenario.node()),
                        &input,
                    );
                }
                write(
                    dir,
                    "frame",
                    &format!("{driver}-{kind}"),
                    &frame::encode(&[f]),
                );
            }
        }
    }
    // Storage: every node's records, with every header bit of interest.
    let storage_target = format!("{driver}_storage");
    for id in [1, 2, 3] {
        let records = c.nodes[&id].host.storage_scan(b"", b"", u32::MAX);
        for (bootstrap, peerless) in [(false, false), (true, false), (false, true)] {
            let header = storage_header(id, bootstrap, peerless);
            write(
                dir,
                &storage_target,
                &format!("node{id}-h{header}"),
                &encode_storage(header, &records),
            );
        }
    }
    // A single-node cluster's storage (node 1 bootstrapped alone).
    let mut single = SimCluster::<D>::new(&[1], OPTIONS);
    let mut ignored = Vec::new();
    let (lead, epoch) = leader(&mut single, &mut ignored);
    single.request(lead, |d, r| d.persist_high_water(r, 42, epoch));
    step_recording(&mut single, 100, &mut ignored);
    let records = single.nodes[&1].host.storage_scan(b"", b"", u32::MAX);
    write(
        dir,
        &storage_target,
        "single-node1",
        &encode_storage(storage_header(1, true, true), &records),
    );
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: gen_seeds <corpus dir>");
    let dir = Path::new(&dir);
    seeds::<RaftDriver>(dir, "raft");
    seeds::<PaxosDriver>(dir, "paxos");
    let mut batch = vec![Frame::Request {
        id: u64::MAX,
        kind: 7,
        body: vec![1, 2, 3],
    }];
    batch.push(Frame::Response {
        id: 300,
        body: vec![],
    });
    write(dir, "frame", "batch", &frame::encode(&batch));
    write(dir, "frame", "empty", &frame::encode(&[]));
}
