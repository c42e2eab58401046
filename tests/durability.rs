//! kill -9 at random moments under concurrent load, restart on the same data
//! directory, many times: no timestamp after a restart is ≤ any before it,
//! and the whole history keeps uniqueness and real-time order.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::checker::History;
use support::{Server, spawn_clients};

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
