//! `/metrics` as Prometheus reads it: Prometheus's own checker
//! (`promtool check metrics`, fetched by `./x`) accepts a live node's
//! exposition, lint included (names, units, `_total`, help texts), and
//! refuses the same text once broken.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::{admin, get, metrics_text, post};

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
