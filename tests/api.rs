//! The HTTP/JSON API of a single node, through the real binary and socket.

mod support;

use hyper::Method;
use support::{
    ADMIN_TOKEN, Server, admin, admin_client, get, json, metric, post, start_with_admin, status,
};
use tsohost_client::status::Role;

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_increase_and_batches_are_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let mut last = 0u64;
    for _ in 0..50 {
        let a = post(&server.url, "/v1/timestamps", "").await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["cache-control"], "no-store");
        let v = json(&a);
        let ts: u64 = v["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(ts > last);
        assert_eq!(v["physical_ms"].as_u64().unwrap(), ts >> 18);
        assert_eq!(v["logical"].as_u64().unwrap(), ts & ((1 << 18) - 1));
        assert_eq!(v["count"], 1);
        last = ts;
    }
    let a = post(&server.url, "/v1/timestamps", r#"{"count": 1000}"#)
        .await
        .unwrap();
    let batch: u64 = json(&a)["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(batch > last);
    assert_eq!(json(&a)["count"], 1000);
    let a = get(&server.url, "/v1/timestamp").await.unwrap();
    assert_eq!(a.headers["cache-control"], "no-store");
    let next: u64 = json(&a)["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(next >= batch + 1000, "the batch is [first, first+count)");
    let a = get(&server.url, "/v1/timestamp?count=262144")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        metric(&server.url, "tsohost_timestamps_issued_total").await,
        50 + 1000 + 1 + 262144
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_json_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let cases = [
        (r#"{"count": 0}"#, "count"),
        (r#"{"count": 262145}"#, "count"),
        (r#"{"count": -1}"#, "count"),
        (r#"{"count": 1.5}"#, "count"),
        (r#"{"count": "7"}"#, "count"),
        (r#"{"count": null}"#, "count"),
        (r#"{"cuont": 3}"#, "body"),
        ("{not json", "body"),
        ("[1,2]", "body"),
        ("\u{0}\u{1}binary", "body"),
    ];
    for (body, field) in cases {
        let a = post(&server.url, "/v1/timestamps", body).await.unwrap();
        assert_eq!(a.status, 400, "body {body:?}");
        let v = json(&a);
        assert_eq!(v["error"]["field"], field, "body {body:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    for query in [
        "?count=0",
        "?count=abc",
        "?count=99999999999999999999",
        "?cnt=2",
        "?count=%zz",
    ] {
        let a = get(&server.url, &format!("/v1/timestamp{query}"))
            .await
            .unwrap();
        assert_eq!(a.status, 400, "query {query}");
        json(&a);
    }
    // Over the 16 KiB limit, small enough that the client finishes writing
    // before the server answers (a larger body may meet a closed socket).
    let huge = format!(r#"{{"count": 1, "pad": "{}"}}"#, "x".repeat(20 << 10));
    let a = post(&server.url, "/v1/timestamps", &huge).await.unwrap();
    assert_eq!(a.status, 413);
    assert_eq!(json(&a)["error"]["code"], "body_too_large");
    let a = get(&server.url, "/v1/nothing-here").await.unwrap();
    assert_eq!(a.status, 404);
    json(&a);
    let a = get(&server.url, "/v1/timestamps").await.unwrap();
    assert_eq!(a.status, 405);
    json(&a);
    // Still serving after all that.
    assert_eq!(
        post(&server.url, "/v1/timestamps", "")
            .await
            .unwrap()
            .status,
        200
    );
    assert!(metric(&server.url, "tsohost_requests_bad_total").await >= 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--window", "500ms"]);
    server.wait_ready().await;
    let a = get(&server.url, "/healthz").await.unwrap();
    assert_eq!(a.status, 200);
    let a = get(&server.url, "/readyz").await.unwrap();
    assert_eq!(a.status, 200);
    let v = status(&server.url).await;
    assert!(v.serving);
    assert_eq!(v.leadership.role, Role::Leader);
    assert_eq!(v.driver.name, "file");
    assert!(v.driver.healthy);
    assert_eq!(v.driver.wit_version, "0.1.0");
    assert_eq!(v.driver.digest.len(), 64);
    assert_eq!(v.window_ms, 500);
    let hw = v.high_water_ms;
    // The window is kept ahead in the background, without requests.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(status(&server.url).await.high_water_ms > hw);
    assert!(metric(&server.url, "tsohost_persists_total").await >= 2);
    assert_eq!(metric(&server.url, "tsohost_serving").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_ts_prints_timestamps_from_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let run = |args: &[&str]| {
        std::process::Command::new(support::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let a = run(&["ts", "--url", &server.url]);
    assert!(a.status.success());
    let first: u64 = String::from_utf8_lossy(&a.stdout).trim().parse().unwrap();
    let b = run(&["ts", "--url", &server.url, "--count", "5"]);
    let v: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert!(v["timestamp"].as_str().unwrap().parse::<u64>().unwrap() > first);
    let bad = run(&["ts", "--url", &server.url, "--count", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--count"));
    let down = run(&["ts", "--url", "http://127.0.0.1:1", "--timeout", "300ms"]);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_drivers_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    assert!(server.stderr().contains("compiled built-in driver"));
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("component-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        cached.len() == 1 && cached[0].ends_with(".cwasm"),
        "{cached:?}"
    );
    let server = server.crash_and_restart();
    server.wait_ready().await;
    assert!(
        !server.stderr().contains("compiled built-in driver"),
        "the restart compiled again:\n{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_a_restart_resumes_above() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let a = post(&server.url, "/v1/timestamps", "").await.unwrap();
    let before: u64 = json(&a)["timestamp"].as_str().unwrap().parse().unwrap();
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(server.stderr().contains("stopped"));
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let a = post(&server.url, "/v1/timestamps", "").await.unwrap();
    let after: u64 = json(&a)["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(after > before);
}

/// Every admin route answers only the configured token: anything else gets
/// the JSON 401, counted as a bad request, before the body is looked at. A
/// wrong method on an admin path is still a 405, and a node started without
/// a token has no admin API at all (404, token or not).
#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(dir.path(), &[]);
    server.wait_ready().await;
    let routes = [
        (Method::GET, "/v1/admin/faults"),
        (Method::PUT, "/v1/admin/faults"),
        (Method::PUT, "/v1/admin/driver"),
        (Method::PUT, "/v1/admin/members"),
        (Method::POST, "/v1/admin/leader"),
        (Method::POST, "/v1/admin/migration/seal"),
        (Method::DELETE, "/v1/admin/migration/seal"),
        (Method::POST, "/v1/admin/migration/read"),
        (Method::POST, "/v1/admin/migration/prepare"),
        (Method::PUT, "/v1/admin/migration/driver?floor=1"),
    ];
    let longer = format!("{ADMIN_TOKEN}x");
    let upper = ADMIN_TOKEN.to_uppercase();
    let tokens = [
        None,
        Some(""),
        Some("wrong"),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        Some(longer.as_str()),
        Some(upper.as_str()),
    ];
    let bad_before = metric(&server.url, "tsohost_requests_bad_total").await;
    for (method, path) in &routes {
        for token in tokens {
            let a = admin(&server.url, method.clone(), path, "{not json", token).await;
            assert_eq!(a.status, 401, "{method} {path} with {token:?}");
            assert_eq!(a.headers["cache-control"], "no-store");
            assert_eq!(
                json(&a),
                serde_json::json!({"error": {
                    "code": "unauthorized",
                    "message": "missing or wrong admin token (Authorization: Bearer <token>)",
                }})
            );
        }
    }
    assert_eq!(
        metric(&server.url, "tsohost_requests_bad_total").await,
        bad_before + (routes.len() * tokens.len()) as u64
    );

    for (method, path, status, code) in [
        (
            Method::DELETE,
            "/v1/admin/faults",
            405,
            "method_not_allowed",
        ),
        (Method::GET, "/v1/admin/driver", 405, "method_not_allowed"),
        (Method::GET, "/v1/admin/nothing", 404, "not_found"),
    ] {
        let a = admin(&server.url, method.clone(), path, "", None).await;
        assert_eq!(a.status, status, "{method} {path}");
        assert_eq!(json(&a)["error"]["code"], code, "{method} {path}");
    }

    let faults = "/v1/admin/faults";
    let now = admin_client(&server.url).faults().await.unwrap();
    assert_eq!(now.fail_storage_writes, Some(0));
    let a = admin(
        &server.url,
        Method::PUT,
        faults,
        "{not json",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(json(&a)["error"]["field"], "body");

    let lone = tempfile::tempdir().unwrap();
    let lone = Server::start(lone.path(), &[]);
    lone.wait_ready().await;
    for token in [None, Some(ADMIN_TOKEN)] {
        let a = admin(&lone.url, Method::GET, faults, "", token).await;
        assert_eq!(a.status, 404, "{token:?}");
        assert_eq!(json(&a)["error"]["code"], "admin_off");
    }
}
