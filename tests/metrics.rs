//! `/metrics` as Prometheus reads it: Prometheus's own checker
//! (`promtool check metrics`, fetched by `./x`) accepts a live node's
//! exposition, lint included (names, units, `_total`, help texts), and
//! refuses the same text once broken. The built-in drivers (WIT 0.2) publish
//! their own statistics there; tests/example_drivers.rs checks that the
//! new-driver templates publish theirs and a 0.1 driver (javascript-paxos)
//! none.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{ClusterSpec, PAXOS, RAFT, Replicated, admin, get, metrics_text, post, value_in};

/// `promtool check metrics` over `text`: (exit code, what it said).
fn promtool(text: &str) -> (i32, String) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {promtool} ({e}): run the tests through `./x test`, which fetches it"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_a_live_nodes_metrics_and_refuses_them_broken() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_with_admin(dir.path(), &[]);
    server.wait_ready().await;
    // Some of every kind of answer, so that labelled series have values.
    for body in ["", r#"{"count": 5}"#, r#"{"count": 0}"#] {
        post(&server.url, "/v1/timestamps", body).await.unwrap();
    }
    get(&server.url, "/v1/timestamp?count=2").await.unwrap();
    admin(
        &server.url,
        hyper::Method::GET,
        "/v1/admin/faults",
        "",
        Some("wrong"),
    )
    .await;
    let answer = get(&server.url, "/metrics").await.unwrap();
    assert_eq!(
        answer.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics_text(&server.url).await;
    let (code, said) = promtool(&text);
    assert_eq!(code, 0, "promtool refused /metrics: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool: {said}");

    // The checker has teeth: a counter without `_total` and without help,
    // and a malformed sample, are refused.
    let (code, said) = promtool(&format!(
        "{text}# TYPE tsohost_oops counter\ntsohost_oops 1\n"
    ));
    assert_ne!(code, 0, "{said}");
    let (code, said) = promtool(&format!("{text}tsohost_oops{{a=\"b\" 1\n"));
    assert_ne!(code, 0, "{said}");
}

/// The value of `name{driver="DRIVER"}` in `text`.
fn driver_stat(text: &str, name: &str, driver: &str) -> f64 {
    value_in(
        text,
        &format!("tsohost_driver_{name}{{driver=\"{driver}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_driver_reports_its_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_with_admin(dir.path(), &[]);
    server.wait_ready().await;
    post(&server.url, "/v1/timestamps", "").await.unwrap();
    let text = metrics_text(&server.url).await;
    assert!(driver_stat(&text, "epoch", "file") >= 1.0, "{text}");
    assert_eq!(driver_stat(&text, "elections_total", "file"), 1.0, "{text}");
    assert!(
        driver_stat(&text, "high_water_writes_total", "file") >= 1.0,
        "{text}"
    );
    assert_eq!(driver_stat(&text, "messages_sent_total", "file"), 0.0);
    assert!(
        text.contains("tsohost_build_info{") && text.contains("wit_version=\"0.2.0\""),
        "{text}"
    );
}

/// Every node of a 3-node cluster publishes the driver's view: the epoch,
/// the elections it saw, a commit index that moves with the load, and the
/// messages it exchanged.
async fn a_replicated_driver_reports_its_statistics(driver: &Replicated) {
    let spec = ClusterSpec::new(3);
    let _nodes: Vec<_> = (1..=3)
        .map(|id| spec.start(id, &driver.founder()))
        .collect();
    let leader = support::serving_node(&spec.urls, Duration::from_secs(60)).await;
    let url = &spec.urls[leader];
    // Timestamps through the client, which follows the leader should a
    // late node's start cause an election.
    let client = tsohost_client::Client::new(spec.urls.iter().cloned()).unwrap();
    let name = driver.driver;
    // The high water is persisted (a log entry committed) as the window
    // moves: serving for a while moves the commit index.
    let before = driver_stat(&metrics_text(url).await, "commit_index", name);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while driver_stat(&metrics_text(url).await, "commit_index", name) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader's commit index did not move in 20 s of serving"
        );
        client
            .get_ts()
            .await
            .expect("a timestamp within the client's deadline");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for url in &spec.urls {
        // A node that started last (three compile the driver at once on two
        // cores) catches up a little later.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut text = metrics_text(url).await;
        while driver_stat(&text, "commit_index", name) == 0.0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            text = metrics_text(url).await;
        }
        assert!(
            driver_stat(&text, "commit_index", name) > 0.0,
            "{url}: {text}"
        );
        assert!(driver_stat(&text, "epoch", name) >= 1.0, "{url}: {text}");
        assert!(
            driver_stat(&text, "elections_total", name) >= 1.0,
            "{url}: {text}"
        );
        assert!(
            driver_stat(&text, "messages_sent_total", name) > 0.0,
            "{url}: {text}"
        );
        assert!(
            driver_stat(&text, "messages_received_total", name) > 0.0,
            "{url}: {text}"
        );
        assert!(
            driver_stat(&text, "messages_sent_bytes_total", name) > 0.0,
            "{url}: {text}"
        );
        for gauge in ["log_entries", "snapshot_index", "applied_index"] {
            driver_stat(&text, gauge, name);
        }
        driver_stat(&text, "snapshots_total", name);
        let (code, said) = promtool(&text);
        assert_eq!(code, 0, "promtool refused {url}/metrics: {said}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raft_reports_its_statistics() {
    a_replicated_driver_reports_its_statistics(&RAFT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paxos_reports_its_statistics() {
    a_replicated_driver_reports_its_statistics(&PAXOS).await;
}
