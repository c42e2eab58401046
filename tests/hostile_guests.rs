//! A guest that traps, loops forever or allocates without bound is stopped
//! and reported; the host stays up, does not serve while it has no healthy
//! driver, rebuilds the guest from storage, and never goes backwards.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::checker::History;
use support::{Server, admin_client, get, guest, metric, spawn_clients, status};
use tsohost_client::admin::{Faults, GuestFault};

/// Inject `fault` into the driver of the node at `url`.
async fn inject(url: &str, fault: GuestFault) {
    let faults = Faults {
        guest: Some(fault),
        ..Faults::default()
    };
    // The answer may show it pending or already fired: the driver calls
    // into the host all the time.
    admin_client(url).set_faults(&faults).await.unwrap();
}

/// Why the driver of the node at `url` last crashed.
async fn last_crash(url: &str) -> String {
    let driver = status(url).await.driver;
    driver
        .last_crash
        .clone()
        .unwrap_or_else(|| panic!("no crash: {driver:?}"))
}

fn misbehave(fault: &str) -> Vec<String> {
    vec![
        "--driver".into(),
        guest("tsohost_test_misbehave.wasm")
            .to_str()
            .unwrap()
            .into(),
        "--driver-option".into(),
        format!("fault={fault}"),
        "--guest-call-timeout".into(),
        "100ms".into(),
        "--guest-memory-mib".into(),
        "32".into(),
    ]
}

async fn stays_up_without_serving(fault: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let args = misbehave(fault);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(dir.path(), &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(&server.url, "tsohost_driver_crashes_total").await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no crash reported:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&server.url, "/healthz").await.unwrap().status, 200);
    assert_eq!(get(&server.url, "/readyz").await.unwrap().status, 503);
    let a = support::post(&server.url, "/v1/timestamps", "")
        .await
        .unwrap();
    assert_eq!(a.status, 503);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(!status(&server.url).await.driver.healthy);
    let last = last_crash(&server.url).await;
    assert!(last.contains(reason), "{last:?} lacks {reason:?}");
    support::wait_for_log(&server, reason).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_loops_forever_in_init() {
    stays_up_without_serving("loop-in-init", "ran longer than the per-call limit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_allocates_without_bound() {
    stays_up_without_serving("hog-in-init", "memory limit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_traps_in_init() {
    stays_up_without_serving("trap-in-init", "trapped").await;
}

/// Faults on every Nth persist of each instance: the node keeps serving
/// between rebuilds and the history keeps the contract.
async fn recovers_under_load(fault: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = misbehave(fault);
    args.extend(["--window".into(), "60ms".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(dir.path(), &args);
    server.wait_ready().await;
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 4, 10, history.clone(), stop.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&server.url, "tsohost_driver_crashes_total").await < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no crashes:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served_before = history.len();
    server.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        history.len() > served_before,
        "served again after the rebuilds"
    );
    assert!(metric(&server.url, "tsohost_driver_starts_total").await >= 4);
    history.check();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_traps_now_and_then() {
    recovers_under_load("trap-on-persist=3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_hangs_now_and_then() {
    recovers_under_load("loop-on-persist=3").await;
}

/// The sandbox holds: a guest that tries files, the environment, the real
/// clock and a socket finds none of them (it would refuse to start, naming
/// what worked), and nothing reaches a listener on this machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_leave_the_sandbox() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let probe = format!("probe={}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = guest("tsohost_test_misbehave.wasm");
    let server = Server::start(
        dir.path(),
        &[
            "--driver",
            path.to_str().unwrap(),
            "--driver-option",
            "fault=escape",
            "--driver-option",
            &probe,
        ],
    );
    server.wait_ready().await;
    assert!(
        !server.stderr().contains("sandbox escaped"),
        "{}",
        server.stderr()
    );
    assert!(
        listener.accept().is_err(),
        "the guest connected to the probe"
    );
}

/// Faults injected into a real driver mid-run (`PUT /v1/admin/faults
/// {"guest": ...}`, as `tsohost chaos` does): each tears the instance down
/// through the real trap or time-limit path, the node rebuilds it from
/// storage, and the history keeps the contract.
#[tokio::test(flavor = "multi_thread")]
async fn injected_traps_and_hangs_of_the_built_in_driver() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_with_admin(
        dir.path(),
        &["--guest-call-timeout", "200ms", "--enable-fault-injection"],
    );
    server.wait_ready().await;
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 4, 10, history.clone(), stop.clone());
    let reasons = [
        (
            GuestFault::Trap,
            "trap injected through PUT /v1/admin/faults",
        ),
        (GuestFault::Hang, "ran longer than the per-call limit"),
    ];
    for (round, (fault, reason)) in reasons.into_iter().enumerate() {
        inject(&server.url, fault).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while metric(&server.url, "tsohost_driver_crashes_total").await <= round as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the injected {fault:?} did not fire:\n{}",
                server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = last_crash(&server.url).await;
        assert!(last.contains(reason), "{last:?} lacks {reason:?}");
        server.wait_ready().await;
    }
    let served = history.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(history.len() > served, "served after the faults");
    history.check();
}

/// A replicated driver made to allocate past its memory cap mid-run (the
/// next peer message is delivered larger than the cap, as `tsohost chaos`
/// does): the node rebuilds it, and the cluster serves on.
#[tokio::test(flavor = "multi_thread")]
async fn an_injected_allocation_past_the_cap_of_a_cluster_node() {
    let spec = support::ClusterSpec::new(3);
    let mut flags = support::RAFT.founder();
    flags.extend(["--guest-memory-mib", "64", "--enable-fault-injection"]);
    let _nodes: Vec<_> = (1..=3).map(|id| spec.start(id, &flags)).collect();
    let leader = support::serving_node(&spec.urls, Duration::from_secs(30)).await;
    let victim = &spec.urls[(leader + 1) % 3];
    inject(victim, GuestFault::Exhaust).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(victim, "tsohost_driver_crashes_total").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the injected exhaustion did not fire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = last_crash(victim).await;
    assert!(last.contains("memory limit (64 MiB)"), "{last}");
    let leader = support::serving_node(&spec.urls, Duration::from_secs(30)).await;
    support::timestamp(&spec.urls[leader]).await;
}

/// What a guest prints goes to the node's log, attributed to the driver,
/// and the report of its trap (the log and `/v1/status`) quotes its last
/// lines and its panic's message.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_prints_then_traps() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = misbehave("print-then-trap-on-persist=1");
    args.extend(["--log-format".into(), "json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(dir.path(), &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(&server.url, "tsohost_driver_crashes_total").await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no crash reported:\n{}",
            server.stderr()
        );
        // Each term start persists: the first persist of an instance traps.
        let _ = support::post(&server.url, "/v1/timestamps", "").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = [
        "`persist-high-water` trapped",
        "the guest's exception: misbehave: trapping on purpose after printing",
        "misbehave: a line on stderr before the trap",
    ];
    // The node's stderr is read through a pipe: the crash counter can be
    // seen before the report's line is.
    for text in said {
        support::wait_for_log(&server, text).await;
    }
    let log = server.stderr();
    let printed: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "misbehave: a line on stdout before the trap")
        .collect();
    let line = printed
        .first()
        .unwrap_or_else(|| panic!("not logged:\n{log}"));
    assert_eq!(line["driver"], "misbehave", "{line}");
    assert_eq!(line["stream"], "stdout", "{line}");
    let crash = last_crash(&server.url).await;
    for said in said {
        assert!(crash.contains(said), "{said:?} missing from {crash}");
    }
}

/// A guest that writes without end: the log takes a bounded number of its
/// lines (per call, per second, each at most 4 KiB), says how many it
/// dropped, and the node keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_floods_its_output_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let args = misbehave("flood");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let server = Server::start(dir.path(), &args);
    server.wait_ready().await;
    // Two seconds of ticks every 10 ms, 1001 lines each, while serving.
    for _ in 0..20 {
        let r = support::post(&server.url, "/v1/timestamps", "")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.stderr();
    let seconds = started.elapsed().as_secs() + 1;
    let flood = log
        .lines()
        .filter(|l| l.contains("misbehave: flood line"))
        .count() as u64;
    // The bucket starts full (200) and refills at 200 a second.
    let bound = 200 * (seconds + 1);
    assert!(flood > 0, "no driver output logged:\n{log}");
    assert!(
        flood <= bound,
        "{flood} flood lines in {seconds} s (bound {bound})"
    );
    assert!(log.contains("dropped"), "no note of dropped lines");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096 + 512, "a log line of {longest} bytes");
    assert!(
        log.contains("misbehave: a long line xxx"),
        "the long line is cut, not lost"
    );
    assert_eq!(metric(&server.url, "tsohost_driver_crashes_total").await, 0);
}
