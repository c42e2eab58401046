//! Operating a node's data offline, as docs/operations.md tells operators
//! to: `tsohost inspect` (refused while the node runs, read-only once it
//! stopped) and recovery after quorum loss with `tsohost recover` (a
//! 3-node raft cluster loses two data directories for good; a new cluster
//! seeded from the survivor serves above everything the old one served),
//! refusing a floor below what a data directory holds. Real processes,
//! real RocksDB.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::checker::History;
use support::{BIN, ClusterSpec, Server, admin_client, serving_node, spawn_cluster_clients};
use tsohost::timestamp::LOGICAL_BITS;
use tsohost_client::admin::Faults;

fn tsohost(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tsohost")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `tsohost inspect --data-dir DIR --json`, which must succeed.
fn inspect_json(dir: &Path) -> serde_json::Value {
    let out = support::succeeded(&tsohost(&["inspect", "--data-dir", path(dir), "--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect --json: {e}: {out}"))
}

/// Every file under `dir` with its size and modification time: what a
/// read-only reader must leave as it found it.
fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

async fn timestamps(url: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(support::timestamp(url).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_refuses_a_running_node_and_reads_a_stopped_one_without_changing_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Server::start(&data, &[]);
    node.wait_ready().await;
    let issued = timestamps(&node.url, 20).await;

    let out = tsohost(&["inspect", "--data-dir", path(&data)]);
    assert!(!out.status.success(), "inspect ran on a live node");
    let err = stderr(&out);
    assert!(
        err.contains("is running on") && err.contains(&format!("pid {}", node.pid())),
        "{err}"
    );

    assert!(node.terminate().success());
    let before = snapshot_of(&data);
    let text = support::succeeded(&tsohost(&["inspect", "--data-dir", path(&data)]));
    assert!(text.contains("driver storage: d/file/ (current"), "{text}");
    assert!(text.contains("high-water: "), "{text}");
    let report = inspect_json(&data);
    assert_eq!(snapshot_of(&data), before, "inspect changed the directory");

    // The stored high water covers every timestamp issued: each one's
    // physical part lies below it.
    let hw = report["highest_high_water_ms"].as_u64().unwrap();
    let last_ms = issued.iter().max().unwrap() >> LOGICAL_BITS;
    assert!(
        hw > last_ms,
        "high water {hw} ms, last timestamp at {last_ms} ms"
    );
    assert_eq!(report["namespaces"][0]["high_water"]["status"], "stored");
    assert_eq!(report["namespaces"][0]["high_water"]["high_water_ms"], hw);
    assert!(report["record"].is_null(), "{report}");
    assert!(report["formats"]["rocksdb"].is_string(), "{report}");
    assert!(
        report["compiled_components"][0]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "{report}"
    );

    // A directory that is not a node's is named, not reported empty.
    let out = tsohost(&["inspect", "--data-dir", path(dir.path())]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no tsohost data"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recover_refuses_a_floor_below_what_a_data_dir_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Server::start(&data, &[]);
    node.wait_ready().await;
    let issued = timestamps(&node.url, 5).await;
    assert!(node.terminate().success());
    let hw = inspect_json(&data)["highest_high_water_ms"]
        .as_u64()
        .unwrap();

    let new = dir.path().join("new");
    let low = (hw - 1).to_string();
    let out = tsohost(&[
        "recover",
        "--from",
        path(&data),
        "--to",
        path(&new),
        "--floor-ms",
        &low,
    ]);
    assert!(!out.status.success(), "a floor below {hw} was taken");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("--floor-ms {low} is below the high water {hw} ms")),
        "{err}"
    );
    assert!(
        !new.exists(),
        "a refused recovery created {}",
        new.display()
    );

    // A floor of at least what the directory holds is taken, into an
    // empty directory only.
    let floor = hw + 60_000;
    let floor_arg = floor.to_string();
    let args = [
        "recover",
        "--from",
        path(&data),
        "--to",
        path(&new),
        "--floor-ms",
        &floor_arg,
    ];
    let text = support::succeeded(&tsohost(&args));
    assert!(text.contains(&format!("floor {floor} ms")), "{text}");
    let out = tsohost(&args);
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));

    // The new node serves above the floor, and a restart keeps it.
    let report = inspect_json(&new);
    assert_eq!(report["record"]["floor"], floor, "{report}");
    let mut fresh = Server::start(&new, &[]);
    fresh.wait_ready().await;
    let first = support::timestamp(&fresh.url).await;
    assert!(
        first >= floor << LOGICAL_BITS,
        "{first} below the floor {floor} ms"
    );
    assert!(first > *issued.iter().max().unwrap());
    assert!(fresh.terminate().success());
}

/// Node `i`'s clock stepped by `offset_ms` through the fault API.
async fn step_clock(url: &str, offset_ms: i64) {
    let faults = Faults {
        clock_offset_ms: Some(offset_ms),
        ..Faults::default()
    };
    admin_client(url).set_faults(&faults).await.unwrap();
}

async fn load(urls: &[String], history: &History, d: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_cluster_clients(urls, 8, 1, history.clone(), stop.clone());
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
}

/// The runbook of docs/operations.md, "Recovery after quorum loss", end to
/// end. The old cluster's clocks run an hour ahead (stepped through the
/// fault API), so its timestamps are far above what a new cluster's clocks
/// give: only the recovered floor keeps the new ones above them.
#[tokio::test(flavor = "multi_thread")]
async fn a_raft_cluster_that_lost_two_data_dirs_is_recovered_above_everything_it_served() {
    let driver = &support::RAFT;
    let mut flags = driver.founder();
    flags.push("--enable-fault-injection");
    let old = ClusterSpec::new(3);
    let mut nodes: Vec<Option<Server>> = (1..=3).map(|id| Some(old.start(id, &flags))).collect();
    serving_node(&old.urls, Duration::from_secs(30)).await;
    for url in &old.urls {
        step_clock(url, 3_600_000).await;
    }
    let before = History::default();
    load(&old.urls, &before, Duration::from_millis(1500)).await;
    assert!(before.len() > 100, "only {} answers", before.len());
    before.check();
    let highest_before = before.max();
    let ahead = (highest_before >> LOGICAL_BITS) as i64 - now_ms() as i64;
    assert!(
        ahead > 3_000_000,
        "the old cluster's clock is not ahead: {ahead} ms"
    );

    // Two machines are lost for good: two nodes are killed and their data
    // directories deleted. The survivor is the last leader, which stored
    // every entry its majority committed. (A follower may lag behind the
    // majority, here under the CPU load of a test run too; the runbook's
    // margin covers that case, which no data can.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let survivor = serving_node(&old.urls, Duration::from_secs(10)).await;
    for i in (0..3).filter(|&i| i != survivor) {
        nodes[i].take().unwrap().kill9();
        std::fs::remove_dir_all(old.data_dir(i as u64 + 1)).unwrap();
    }
    let survivor_dir = old.data_dir(survivor as u64 + 1);

    // Runbook step 1: stop the survivor (it cannot serve alone anyway).
    assert!(nodes[survivor].take().unwrap().terminate().success());

    // Step 2: read what it holds.
    let report = inspect_json(&survivor_dir);
    let held = report["highest_high_water_ms"].as_u64().unwrap();
    assert!(
        held > highest_before >> LOGICAL_BITS,
        "the survivor holds {held} ms, below the last timestamp's {} ms",
        highest_before >> LOGICAL_BITS
    );
    let raft = &report["namespaces"][0];
    assert_eq!(raft["prefix"], "d/raft/", "{report}");
    let sources = raft["high_water"]["sources"].as_array().unwrap();
    assert!(
        sources.iter().any(|s| s["keys"] == "sm")
            && sources
                .iter()
                .any(|s| s["keys"].as_str().unwrap().starts_with("log/")),
        "{report}"
    );

    // Step 3: seed the new cluster's directories from it.
    let new = ClusterSpec::new(3);
    let mut args = vec!["recover", "--from", path(&survivor_dir)];
    let dirs: Vec<PathBuf> = (1..=3).map(|id| new.data_dir(id)).collect();
    for d in &dirs {
        args.extend(["--to", path(d)]);
    }
    let text = support::succeeded(&tsohost(&args));
    assert!(text.contains(&format!("floor {held} ms")), "{text}");

    // Step 4: start the new cluster (real clocks) and use it.
    let started = Instant::now();
    let new_nodes: Vec<Server> = (1..=3).map(|id| new.start(id, &driver.founder())).collect();
    serving_node(&new.urls, Duration::from_secs(30)).await;
    let after = History::default();
    load(&new.urls, &after, Duration::from_millis(1000)).await;
    assert!(after.len() > 100, "only {} answers", after.len());
    after.check();
    let lowest_after = after.ops().iter().map(|op| op.first).min().unwrap();
    assert!(
        lowest_after > highest_before,
        "after recovery {lowest_after} was served, not above {highest_before} from before \
         (recovery took {:?})",
        started.elapsed()
    );
    drop(new_nodes);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
