//! kill -9 at random moments under concurrent load, restart on the same data
//! directory, many times: no timestamp after a restart is ≤ any before it,
//! and the whole history keeps uniqueness and real-time order. The same
//! holds while the wall clock is stepped and storage writes or reads fail.

mod support;

use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::checker::History;
use support::{
    ADMIN_TOKEN, Server, admin, admin_client, json, metric, spawn_clients, start_with_admin,
};
use tsohost_client::admin::Faults;

/// Persists of the high water that failed.
const PERSIST_FAILURES: &str = "tsohost_persist_duration_seconds_count{result=\"error\"}";

#[tokio::test(flavor = "multi_thread")]
async fn kill9_under_load_never_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    // A short window makes kills land between extensions too.
    let mut server = Server::start(dir.path(), &["--window", "200ms"]);
    let history = History::default();
    let mut seed: u64 = 0x5eed_1234;
    for round in 0..12 {
        server.wait_ready().await;
        let before = history.max();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = spawn_clients(
            &server.url,
            8,
            1 + round % 3 * 100,
            history.clone(),
            stop.clone(),
        );
        // A pseudo-random moment between 20 and 400 ms into the load.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(20 + (seed >> 33) % 380)).await;
        server = server.crash_and_restart();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let first_after = history.ops().iter().filter(|o| o.first > before).count();
        assert!(first_after > 0, "round {round}: no timestamps served");
    }
    server.wait_ready().await;
    let a = support::post(&server.url, "/v1/timestamps", "")
        .await
        .unwrap();
    let last: u64 = support::json(&a)["timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > history.max(), "after the last restart");
    assert!(history.len() > 100, "only {} answers", history.len());
    history.check();
}

/// The wall clock stepped back and forth and storage writes failing, under
/// load, through the admin API's fault injection: timestamps never repeat
/// or go backwards, the failures are reported, and the node serves again.
#[tokio::test(flavor = "multi_thread")]
async fn clock_steps_and_failing_storage_never_send_time_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(
        dir.path(),
        &["--window", "50ms", "--enable-fault-injection"],
    );
    server.wait_ready().await;
    let faults = "/v1/admin/faults";
    let node = admin_client(&server.url);
    let set = async |faults: Faults| node.set_faults(&faults).await.unwrap();
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 4, 7, history.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failures = metric(&server.url, PERSIST_FAILURES).await;
    let writes = |n| Faults {
        fail_storage_writes: Some(n),
        ..Faults::default()
    };
    set(writes(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(set(writes(0)).await.fail_storage_writes, Some(0));
    assert!(
        metric(&server.url, PERSIST_FAILURES).await > failures,
        "the injected write failures failed persists"
    );
    // A step forward moves the high water ahead (it stays there once the
    // clock is back), so the clock comes last.
    for offset in [-60_000, 30_000, -5_000, 0] {
        let step = Faults {
            clock_offset_ms: Some(offset),
            ..Faults::default()
        };
        assert_eq!(set(step).await.clock_offset_ms, Some(offset));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    serves_again_then_check(&history, &stop, clients).await;

    // Raw HTTP: bodies the typed client cannot send.
    for (body, field) in [
        (r#"{"clock_offset_ms": 100000000000}"#, "clock_offset_ms"),
        (r#"{"fail_disk": true}"#, "body"),
    ] {
        let a = admin(&server.url, Method::PUT, faults, body, Some(ADMIN_TOKEN)).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(json(&a)["error"]["field"], field, "{body}");
    }
    let a = admin(
        &server.url,
        Method::PUT,
        faults,
        r#"{"clock_offset_ms": 1}"#,
        None,
    )
    .await;
    assert_eq!(a.status, 401);
}

/// Storage reads failing while the driver is rebuilt (an injected trap
/// makes the host rebuild it, and a driver reads its state then): each
/// failed read traps the new instance instead of reading as "absent", the
/// node rebuilds it until reads work, and no timestamp repeats or goes
/// backwards.
#[tokio::test(flavor = "multi_thread")]
async fn failing_reads_trap_the_driver_and_never_send_time_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(
        dir.path(),
        &["--window", "200ms", "--enable-fault-injection"],
    );
    server.wait_ready().await;
    let node = admin_client(&server.url);
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 4, 7, history.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crashes = metric(&server.url, "tsohost_driver_crashes_total").await;
    let faults = Faults {
        fail_storage_reads: Some(3),
        guest: Some(tsohost_client::admin::GuestFault::Trap),
        ..Faults::default()
    };
    assert_eq!(
        node.set_faults(&faults).await.unwrap().fail_storage_reads,
        Some(3)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while node.faults().await.unwrap().fail_storage_reads != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failing reads were not met"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.wait_ready().await;
    let after = metric(&server.url, "tsohost_driver_crashes_total").await;
    assert!(
        after >= crashes + 2,
        "the injected trap and at least one failed read each stopped an instance \
         ({crashes} crashes before, {after} after)"
    );
    serves_again_then_check(&history, &stop, clients).await;
}

/// The node answers again within 300 ms; then stop the clients and check
/// the whole history.
async fn serves_again_then_check(
    history: &History,
    stop: &AtomicBool,
    clients: Vec<tokio::task::JoinHandle<History>>,
) {
    let before = history.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(history.len() > before, "the node serves again");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    history.check();
}
