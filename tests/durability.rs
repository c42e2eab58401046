//! kill -9 at random moments under concurrent load, restart on the same data
//! directory, many times: no timestamp after a restart is ≤ any before it,
//! and the whole history keeps uniqueness and real-time order. The same
//! holds while the wall clock is stepped and storage writes fail.

mod support;

use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::checker::History;
use support::{ADMIN_TOKEN, Server, admin, json, metric, spawn_clients, start_with_admin};

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
    let server = start_with_admin(dir.path(), &["--window", "50ms"]);
    server.wait_ready().await;
    let faults = "/v1/admin/faults";
    let set = async |body: &str| {
        let a = admin(&server.url, Method::PUT, faults, body, Some(ADMIN_TOKEN)).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        json(&a)
    };
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 4, 7, history.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failures = metric(&server.url, "tsohost_persist_failures_total").await;
    set(r#"{"fail_storage_writes": 3}"#).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = set(r#"{"fail_storage_writes": 0}"#).await;
    assert_eq!(now["fail_storage_writes"], 0);
    assert!(
        metric(&server.url, "tsohost_persist_failures_total").await > failures,
        "the injected write failures failed persists"
    );
    // A step forward moves the high water ahead (it stays there once the
    // clock is back), so the clock comes last.
    for offset in [-60_000, 30_000, -5_000, 0] {
        let now = set(&format!(r#"{{"clock_offset_ms": {offset}}}"#)).await;
        assert_eq!(now["clock_offset_ms"], offset);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = history.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(history.len() > before, "the node serves again");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    history.check();

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
