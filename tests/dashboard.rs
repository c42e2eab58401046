//! The dashboard (`GET /ui`) in a real headless browser (Debian's
//! Chromium, installed by `./x`): served by a follower of a 3-node raft
//! cluster, it loads without console errors and shows the leader; after
//! the leader is killed it shows the new leader and the dead node.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{ClusterSpec, RAFT, Server, serving_node};

/// The page at `url` after its scripts ran for a while: (DOM, console).
fn browse(url: &str) -> (String, String) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // Enough for the page's first polls (virtual time stops while
            // requests are under way).
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {chromium} ({e}): run the tests through `./x test`, which installs it"
            )
        });
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The console messages of the page in Chromium's log.
fn console(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// The DOM of `page` after its scripts ran, which logged nothing to the
/// console (no error, no uncaught exception).
async fn load(page: String) -> String {
    let (dom, log) = tokio::task::spawn_blocking(move || browse(&page))
        .await
        .unwrap();
    let console = console(&log);
    assert!(console.is_empty(), "console: {console:?}\n{log}");
    dom
}

/// Load `page` until its DOM `shows` what is expected (within 30 s): the
/// page shows the cluster as it is, and on a loaded machine a node can be
/// a candidate for a moment (a heartbeat late) before it follows again.
async fn load_until(page: String, shows: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dom = load(page.clone()).await;
        if shows(&dom) {
            return dom;
        }
        assert!(std::time::Instant::now() < deadline, "{dom}");
    }
}

/// The DOM shows `node` as the leader and each of `rows` (node, role).
fn shows(dom: &str, leader: usize, rows: &[(usize, &str)]) -> bool {
    dom.contains(&format!(r#"<b id="leader">node {leader}</b>"#))
        && rows
            .iter()
            .all(|(id, role)| dom.contains(&format!(r#"<tr data-node="{id}" data-role="{role}">"#)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_leader_and_the_new_one_after_a_kill() {
    let spec = ClusterSpec::new(3);
    let mut nodes: Vec<Option<Server>> = (1..=3)
        .map(|id| Some(spec.start(id, &RAFT.founder())))
        .collect();
    let leader = serving_node(&spec.urls, Duration::from_secs(30)).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // Wait until the follower has heard every peer's URL (the page reads
    // the members from it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while support::status(&spec.urls[follower])
        .await
        .members
        .unwrap_or_default()
        .iter()
        .any(|m| m.id != follower as u64 + 1 && m.url.is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "peers never announced URLs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let page = format!("{}/ui", spec.urls[follower]);
    let rows = [
        (leader + 1, "leader"),
        (follower + 1, "follower"),
        (other + 1, "follower"),
    ];
    load_until(page, |dom| shows(dom, leader + 1, &rows)).await;

    nodes[leader].take().unwrap().kill9();
    let new = serving_node(&spec.urls, Duration::from_secs(30)).await;
    assert_ne!(new, leader);
    let survivor = if new == follower { other } else { follower };
    let rows = [(new + 1, "leader"), (leader + 1, "down")];
    load_until(format!("{}/ui", spec.urls[survivor]), |dom| {
        shows(dom, new + 1, &rows)
    })
    .await;
    drop(nodes);
}
