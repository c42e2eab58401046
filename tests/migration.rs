//! Migration of a running cluster to another driver (`tsohost cluster
//! migrate`), under concurrent load: no answer after the migration is ≤ one
//! before it, a migrated node refuses to start with the driver it left, an
//! interrupted migration is finished by a re-run, and a sealed one can be
//! given up.

mod support;

use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::checker::History;
use support::{
    ADMIN_TOKEN, ClusterSpec, PAXOS, RAFT, admin, admin_client, metric, serving_node, status,
};

/// `tsohost cluster migrate ARGS --url URL`, which must succeed.
fn migrate(spec: &ClusterSpec, url: &str, args: &[&str]) {
    let mut all = vec!["cluster", "migrate", "--url", url];
    all.extend_from_slice(args);
    support::cli(spec, &all);
}

/// Seal every node through the admin API, as an interrupted run leaves
/// them; the highest high water they held.
async fn seal_all(spec: &ClusterSpec) -> u64 {
    let mut held = 0;
    for url in &spec.urls {
        held = held.max(admin_client(url).seal().await.unwrap());
    }
    held
}

async fn assert_runs(spec: &ClusterSpec, driver: &str, generation: u64) {
    for url in &spec.urls {
        let s = status(url).await;
        assert_eq!(s.driver.name, driver, "{url}: {s:?}");
        assert_eq!(s.migration.generation, generation, "{url}: {s:?}");
        assert!(!s.migration.sealed, "{url}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raft_cluster_moves_to_paxos_and_back_under_load() {
    let spec = ClusterSpec::new(3);
    let mut nodes: Vec<_> = (1..=3).map(|id| spec.start(id, &RAFT.founder())).collect();
    serving_node(&spec.urls, Duration::from_secs(30)).await;
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = support::spawn_cluster_clients(&spec.urls, 8, 1, history.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    migrate(&spec, &spec.urls[1], &["--to", "paxos"]);
    assert_runs(&spec, "paxos", 1).await;
    let floor = status(&spec.urls[0]).await.migration.floor;
    assert!(floor > 0);
    let before = history.len();
    serving_node(&spec.urls, Duration::from_secs(30)).await;

    // A migrated node refuses the driver it left, and starts with the new.
    nodes[2].kill9();
    let args = spec.args(3, &RAFT.founder());
    let out = std::process::Command::new(support::BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(spec.data_dir(3))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("migrated to the driver \"paxos\""),
        "{stderr}"
    );
    nodes[2] = spec.start(3, &PAXOS.founder());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status(&spec.urls[2]).await.leadership.leader.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 never followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_runs(&spec, "paxos", 1).await;

    // Back to raft, the way an interrupted run leaves it: every node
    // sealed, node 1 already switched; a re-run finishes with node 1's floor.
    let held = seal_all(&spec).await;
    let raft = std::fs::read(support::guest(RAFT.component)).unwrap();
    // (A small body: the node answers a bad query without reading the
    // body, and closes the connection.)
    // (Raw HTTP: the typed client cannot send a floor that is not a number.)
    let path = "/v1/admin/migration/driver?floor=abc";
    let refused = admin(&spec.urls[0], Method::PUT, path, "x", Some(ADMIN_TOKEN)).await;
    assert_eq!(
        refused.status,
        400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let switched = admin_client(&spec.urls[0])
        .switch(raft, held)
        .await
        .unwrap();
    assert_eq!(switched.name, "raft");
    migrate(&spec, &spec.urls[2], &["--to", "raft"]);
    assert_runs(&spec, "raft", 2).await;
    assert_eq!(
        status(&spec.urls[1]).await.migration.floor,
        held,
        "the re-run used the floor node 1 switched with"
    );
    serving_node(&spec.urls, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(history.len() > before, "served after the migrations");
    history.check();
    for url in &spec.urls {
        assert!(metric(url, "tsohost_driver_migrations_total").await >= 1);
    }
}

/// A migration to raft stopped after switching one node of three; running
/// the command back to paxos rolls it back: every node ends on paxos, on
/// fresh storage, above everything served.
#[tokio::test(flavor = "multi_thread")]
async fn a_half_done_migration_is_rolled_back_by_migrating_back() {
    let spec = ClusterSpec::new(3);
    let _nodes: Vec<_> = (1..=3).map(|id| spec.start(id, &PAXOS.founder())).collect();
    let leader = serving_node(&spec.urls, Duration::from_secs(30)).await;
    let before = support::timestamp(&spec.urls[leader]).await;
    let held = seal_all(&spec).await;
    let raft = std::fs::read(support::guest(RAFT.component)).unwrap();
    admin_client(&spec.urls[0])
        .switch(raft, held)
        .await
        .unwrap();
    // --abort cannot unseal: node 1 runs raft now.
    let out = std::process::Command::new(support::BIN)
        .args(["cluster", "migrate", "--abort", "--url", &spec.urls[0]])
        .arg("--admin-token-file")
        .arg(spec.token_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("node 1 runs raft"), "{stderr}");

    migrate(&spec, &spec.urls[2], &["--to", "paxos"]);
    for (i, url) in spec.urls.iter().enumerate() {
        let s = status(url).await;
        assert_eq!(s.driver.name, "paxos", "{s:?}");
        assert_eq!(s.migration.generation, if i == 0 { 2 } else { 1 }, "{s:?}");
        assert!(s.migration.floor >= held, "{s:?}");
    }
    let leader = serving_node(&spec.urls, Duration::from_secs(30)).await;
    assert!(support::timestamp(&spec.urls[leader]).await > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_is_sealed_unsealed_then_moved_from_file_to_raft() {
    let spec = ClusterSpec::new(1);
    let url = spec.urls[0].clone();
    let listen = url.trim_start_matches("http://").to_string();
    let token = spec.token_file();
    let flags = |driver: &'static str| {
        vec![
            "--driver".to_string(),
            driver.to_string(),
            "--listen".into(),
            listen.clone(),
            "--admin-token-file".into(),
            token.display().to_string(),
        ]
    };
    let start = |driver| {
        let args = flags(driver);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::Server::start(&spec.data_dir(1), &args)
    };
    let mut node = start("file");
    node.wait_ready().await;
    let first = support::timestamp(&url).await;

    // A component the node refuses stops the migration before any seal.
    for bad in [
        "tsohost-test-wrong-world.wasm",
        "tsohost_test_init_fails.wasm",
    ] {
        let path = support::guest(bad);
        let out = std::process::Command::new(support::BIN)
            .args(["cluster", "migrate", "--url", &url, "--to"])
            .arg(&path)
            .arg("--admin-token-file")
            .arg(&token)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(!status(&url).await.migration.sealed);
    }
    assert!(support::timestamp(&url).await > first);

    // A switch needs a seal first.
    let raft = std::fs::read(support::guest(RAFT.component)).unwrap();
    let node_admin = admin_client(&url);
    let err = node_admin.switch(raft, 1).await.unwrap_err();
    let api = err.api().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(api.status, 409, "{err}");
    assert!(api.message.contains("not sealed"), "{err}");
    // Sealed: not serving.
    assert!(node_admin.seal().await.unwrap() > first >> 18);
    let a = support::post(&url, "/v1/timestamps", "").await.unwrap();
    assert_eq!(a.status, 503);
    // A restart stays sealed.
    node.kill9();
    node = start("file");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sealed = status(&url).await;
    assert!(!sealed.serving && sealed.migration.sealed, "{sealed:?}");

    migrate(&spec, &url, &["--abort"]);
    node.wait_ready().await;
    let second = support::timestamp(&url).await;
    assert!(second > first);

    migrate(&spec, &url, &["--to", "raft"]);
    node.wait_ready().await;
    let third = support::timestamp(&url).await;
    assert!(third > second, "{third} after {second}");
    // Nothing left to do: a re-run says so and changes nothing.
    migrate(&spec, &url, &["--to", "raft"]);
    assert_eq!(status(&url).await.migration.generation, 1);

    node.kill9();
    let args = flags("file");
    let (code, stderr) = {
        let out = std::process::Command::new(support::BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(spec.data_dir(1))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("migrated to the driver \"raft\""),
        "{stderr}"
    );
    node = start("raft");
    node.wait_ready().await;
    assert!(support::timestamp(&url).await > third);
}
