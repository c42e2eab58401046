//! Hot swap of a running node's driver for a new build of the same driver,
//! under concurrent load: no answer after a swap is ≤ one before it, and a
//! refused component leaves the old driver serving.

mod support;

use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::checker::History;
use support::{admin_client, guest, metric, spawn_clients, start_with_admin, status};
use tsohost_client::admin::ApiError;

/// A swap the node must refuse: its error.
async fn refused(url: &str, component: Vec<u8>) -> ApiError {
    match admin_client(url).swap(component).await {
        Ok(driver) => panic!("swapped in {driver:?}"),
        Err(e) => e.api().cloned().unwrap_or_else(|| panic!("{e}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn swaps_under_load_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(dir.path(), &[]);
    server.wait_ready().await;
    let new_build = std::fs::read(guest("tsohost_driver_file.wasm")).unwrap();
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&server.url, 8, 3, history.clone(), stop.clone());
    let admin = admin_client(&server.url);
    let mut epochs = vec![status(&server.url).await.leadership.epoch];
    for round in 1..=5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let driver = admin.swap(new_build.clone()).await.unwrap();
        assert_eq!(driver.name, "file");
        assert_eq!(driver.swaps, round);
        server.wait_ready().await;
        epochs.push(status(&server.url).await.leadership.epoch);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    history.check();
    assert!(history.len() > 100, "{} answers", history.len());
    epochs.dedup();
    assert_eq!(epochs.len(), 6, "every swap starts a new epoch: {epochs:?}");
    assert_eq!(metric(&server.url, "tsohost_driver_swaps_total").await, 5);
    let source = status(&server.url).await.driver.source;
    assert!(source.starts_with("uploaded component"), "{source}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_components_leave_the_old_driver_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(dir.path(), &[]);
    server.wait_ready().await;
    let before = status(&server.url).await;

    // Without the token: refused before the body is read.
    let a = support::admin(&server.url, Method::PUT, "/v1/admin/driver", "x", None).await;
    assert_eq!(a.status, 401);
    let e = refused(&server.url, b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!((e.status, e.field.as_deref()), (400, Some("body")));
    assert!(e.message.contains("core WebAssembly module"), "{e}");
    assert_eq!(refused(&server.url, b"garbage".to_vec()).await.status, 400);
    let wrong = std::fs::read(guest("tsohost-test-wrong-world.wasm")).unwrap();
    assert_eq!(refused(&server.url, wrong).await.status, 400);
    let other = std::fs::read(guest("tsohost_test_misbehave.wasm")).unwrap();
    let e = refused(&server.url, other).await;
    assert_eq!((e.status, e.code.as_str()), (409, "refused"));
    assert!(e.message.contains("migration"), "{e}");

    let after = status(&server.url).await;
    assert_eq!(after.driver.digest, before.driver.digest);
    assert_eq!(after.leadership.epoch, before.leadership.epoch);
    assert_eq!(
        support::post(&server.url, "/v1/timestamps", "")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(metric(&server.url, "tsohost_driver_swaps_total").await, 0);

    // A build of the same driver (same name, same storage) whose init
    // fails: the old build, already stopped, starts again (in a new epoch)
    // and serves above everything before.
    let last = support::timestamp(&server.url).await;
    let broken = std::fs::read(guest("tsohost_test_init_fails.wasm")).unwrap();
    let e = refused(&server.url, broken).await;
    assert_eq!(e.status, 409, "{e}");
    assert!(e.message.contains("refuses to start"), "{e}");
    // The refusal is answered once the old build serves again: no 503
    // in between.
    let after = status(&server.url).await;
    assert_eq!(after.driver.digest, before.driver.digest);
    let next = support::timestamp(&server.url).await;
    assert!(next > last, "the restarted old build went backwards");
    assert_eq!(metric(&server.url, "tsohost_driver_swaps_total").await, 0);

    // The CLI does the same as the API.
    let path = guest("tsohost_driver_file.wasm");
    let out = std::process::Command::new(support::BIN)
        .args([
            "driver",
            "swap",
            "--to",
            path.to_str().unwrap(),
            "--url",
            &server.url,
        ])
        .arg("--admin-token-file")
        .arg(dir.path().join("admin-token"))
        .output()
        .unwrap();
    support::succeeded(&out);
    assert_eq!(metric(&server.url, "tsohost_driver_swaps_total").await, 1);
}

/// Rolling upgrade of a 3-node cluster, one node at a time, leader
/// included, while clients run against the cluster.
async fn rolling_upgrade(driver: &support::Replicated) {
    let spec = support::ClusterSpec::new(3);
    let _nodes: Vec<_> = (1..=3)
        .map(|id| spec.start(id, &driver.founder()))
        .collect();
    support::serving_node(&spec.urls, Duration::from_secs(30)).await;
    let new_build = std::fs::read(guest(driver.component)).unwrap();
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = support::spawn_cluster_clients(&spec.urls, 8, 1, history.clone(), stop.clone());
    for url in &spec.urls {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let swapped = admin_client(url).swap(new_build.clone()).await.unwrap();
        assert_eq!(swapped.name, driver.driver);
        support::serving_node(&spec.urls, Duration::from_secs(30)).await;
    }
    let served = history.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(history.len() > served, "served after the last swap");
    history.check();
    for url in &spec.urls {
        assert_eq!(metric(url, "tsohost_driver_swaps_total").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_upgrade_of_a_raft_cluster() {
    rolling_upgrade(&support::RAFT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_upgrade_of_a_paxos_cluster() {
    rolling_upgrade(&support::PAXOS).await
}
