//! The HTTP/JSON API of a single node, through the real binary and socket.

mod support;

use hyper::Method;
use std::time::{Duration, Instant};
use support::{
    ADMIN_TOKEN, Server, admin, admin_client, get, json, metric, post, start_with_admin, status,
};
use tsohost_client::status::Role;

/// Every admin route, with a method it answers.
const ADMIN_ROUTES: [(Method, &str); 10] = [
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
    // Counted by route: 10 bad bodies and one too large, 5 bad queries.
    for (route, bad) in [("/v1/timestamps", 11), ("/v1/timestamp", 5)] {
        let series = format!("tsohost_requests_total{{route=\"{route}\",result=\"bad\"}}");
        assert_eq!(metric(&server.url, &series).await, bad, "{series}");
    }
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
    assert_eq!(v.driver.wit_version, "0.2.0");
    assert_eq!(v.driver.digest.len(), 64);
    assert_eq!(v.window_ms, 500);
    let hw = v.high_water_ms;
    // The window is kept ahead in the background, without requests.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(status(&server.url).await.high_water_ms > hw);
    let persists = "tsohost_persist_duration_seconds_count{result=\"ok\"}";
    assert!(metric(&server.url, persists).await >= 2);
    assert_eq!(metric(&server.url, "tsohost_serving").await, 1);
    assert_eq!(metric(&server.url, "tsohost_leader").await, 1);
    assert!(metric(&server.url, "tsohost_elections_total").await >= 1);
    let text = support::metrics_text(&server.url).await;
    let build = format!(
        "tsohost_build_info{{version=\"{}\",wit_version=\"0.2.0\",driver=\"file\",\
         driver_version=\"{}\",driver_digest=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        v.driver.version,
        v.driver.digest
    );
    assert!(text.lines().any(|l| l == build), "no {build} in\n{text}");
    let headroom = support::value_in(&text, "tsohost_window_headroom_seconds");
    assert!(headroom > 0.0 && headroom <= 0.5, "{headroom}");
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

/// `tsohost status` shows one node's row of the dashboard in the terminal:
/// the driver's digest and WIT version, its own statistics, rates and
/// latencies measured while requests come in, headroom and events.
#[tokio::test(flavor = "multi_thread")]
async fn cli_status_shows_what_the_dashboard_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--driver", "raft"]);
    server.wait_ready().await;
    for _ in 0..10 {
        support::timestamp(&server.url).await;
    }
    let status_cli = |args: &[&str]| {
        let out = std::process::Command::new(support::BIN)
            .arg("status")
            .args(["--url", &server.url])
            .args(args)
            .env_remove("TSOHOST_URL")
            .output()
            .unwrap();
        support::succeeded(&out)
    };
    // Requests keep coming while the command measures.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (server.url.clone(), stop.clone());
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                support::timestamp(&url).await;
            }
        }
    });
    let text = tokio::task::block_in_place(|| status_cli(&[]));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    let v = status(&server.url).await;
    let driver = format!("\ndriver:     raft {} (", v.driver.version);
    let digest = format!("), digest {}, WIT 0.2.0\n", &v.driver.digest[..12]);
    assert!(
        text.contains(&driver) && text.contains(&digest),
        "no {driver:?}...{digest:?} in\n{text}"
    );
    let line = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line in\n{text}"))
            .trim()
            .to_string()
    };
    let rate = line("rate:");
    let per_second: f64 = rate.split(' ').next().unwrap().parse().unwrap();
    assert!(per_second > 0.0, "{rate}");
    assert!(rate.ends_with("requests/s over the last 1 s"), "{rate}");
    let latency = line("latency:");
    assert!(
        latency.starts_with("p50 ") && latency.contains(" ms, p99 "),
        "{latency}"
    );
    assert!(
        latency.ends_with("requests over the last 1 s)"),
        "{latency}"
    );
    assert!(line("high water:").contains(" ms, headroom "), "{text}");
    // (A loaded machine may see the driver crash and be elected again.)
    let events = line("events:");
    assert!(
        events.starts_with("elections ")
            && events.contains(", swaps 0, migrations 0, crashes ")
            && events.contains(" since start"),
        "{events}"
    );
    // The driver's statistics (WIT 0.2 `stats`), wrapped over lines.
    let stats = &text[text.find("\nstats:").expect("a stats line")..text.find("\nrate:").unwrap()];
    for stat in [
        "epoch ",
        "commit_index ",
        "log_entries ",
        "messages_sent_total 0",
    ] {
        assert!(stats.contains(stat), "no {stat:?} in {stats}");
    }

    // One read of /metrics: no rates, latencies since start.
    let text = tokio::task::block_in_place(|| status_cli(&["--interval", "0s"]));
    assert!(
        text.contains("\nrate:       not measured (--interval 0)\n"),
        "{text}"
    );
    assert!(text.contains(" requests since start)\n"), "{text}");
    // --json is the status document, nothing more.
    let json: serde_json::Value =
        serde_json::from_str(&tokio::task::block_in_place(|| status_cli(&["--json"]))).unwrap();
    assert_eq!(json["driver"]["digest"], v.driver.digest.as_str());
    assert!(json.get("latency").is_none() && json.get("metrics").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_drivers_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    // The first start says it compiles (before it does) and how long it took.
    let log = server.stderr();
    let compiling = log.find("compiling built-in driver").expect(&log);
    let compiled = log.find("compiled built-in driver").expect(&log);
    assert!(
        compiling < compiled && log.contains("the result is cached in"),
        "{log}"
    );
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
    assert!(
        server
            .stderr()
            .contains("loaded built-in driver \"file\" compiled earlier, from the cache"),
        "{}",
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
    let server = start_with_admin(dir.path(), &["--enable-fault-injection"]);
    server.wait_ready().await;
    let routes = ADMIN_ROUTES;
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
    let bad_before = metric(&server.url, "tsohost_admin_refusals_total").await;
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
        metric(&server.url, "tsohost_admin_refusals_total").await,
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
        let a = admin(&lone.url, Method::PUT, "/v1/admin/driver", "", token).await;
        assert_eq!(a.status, 404, "{token:?}");
        assert_eq!(json(&a)["error"]["code"], "admin_off");
    }
}

/// `/v1/admin/faults` (clock steps, failing storage, driver crashes) exists
/// only on a node started with `--enable-fault-injection`: on any other it
/// answers a JSON 404 naming the flag, token or not, while the rest of the
/// admin API works. A node with the flag says so at start, as a warning.
#[tokio::test(flavor = "multi_thread")]
async fn fault_injection_exists_only_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let plain = start_with_admin(dir.path(), &[]);
    plain.wait_ready().await;
    let faults = "/v1/admin/faults";
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        for token in [None, Some(ADMIN_TOKEN)] {
            let body = r#"{"clock_offset_ms": -60000}"#;
            let a = admin(&plain.url, method.clone(), faults, body, token).await;
            assert_eq!(a.status, 404, "{method} with {token:?}");
            assert_eq!(a.headers["cache-control"], "no-store");
            let error = &json(&a)["error"];
            assert_eq!(error["code"], "faults_off", "{method} with {token:?}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("--enable-fault-injection"), "{message}");
        }
    }
    let err = admin_client(&plain.url).faults().await.unwrap_err();
    assert_eq!(err.code(), Some("faults_off"), "{err}");
    // The rest of the admin API is there: a token check, then the handler.
    let a = admin(&plain.url, Method::POST, "/v1/admin/leader", "{}", None).await;
    assert_eq!(a.status, 401);
    assert!(!plain.stderr().contains("fault injection is ON"));

    let dir = tempfile::tempdir().unwrap();
    let faulty = start_with_admin(dir.path(), &["--enable-fault-injection"]);
    faulty.wait_ready().await;
    let node = admin_client(&faulty.url);
    let set = tsohost_client::admin::Faults {
        clock_offset_ms: Some(-5),
        ..Default::default()
    };
    assert_eq!(
        node.set_faults(&set).await.unwrap().clock_offset_ms,
        Some(-5)
    );
    assert_eq!(node.faults().await.unwrap().clock_offset_ms, Some(-5));
    let a = admin(&faulty.url, Method::GET, faults, "", None).await;
    assert_eq!(a.status, 401, "still behind the token");
    let log = faulty.stderr();
    assert!(
        log.contains("WARN") && log.contains("fault injection is ON"),
        "{log}"
    );

    // Without the admin API the flag means nothing: refused at start.
    let (code, stderr) = support::serve_refused(dir.path(), &["--enable-fault-injection"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
}

/// With `--admin-listen` the admin API answers on that address only: the
/// public address answers 404 to every admin path (token or not) and still
/// serves timestamps; the admin address serves the admin API and the
/// monitoring endpoints, checks the token, and hands out no timestamps.
/// The CLI reaches it with `--admin-url`.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let admin_addr = format!("127.0.0.1:{}", tsohost::tools::cluster::free_port());
    let admin_url = format!("http://{admin_addr}");
    let server = start_with_admin(
        dir.path(),
        &["--admin-listen", &admin_addr, "--enable-fault-injection"],
    );
    server.wait_ready().await;
    let log = server.stderr();
    assert!(
        log.contains(&format!("admin API on {admin_url} only")),
        "{log}"
    );

    // The public address: no admin surface at all.
    let routes = ADMIN_ROUTES;
    for (method, path) in &routes {
        for token in [None, Some(ADMIN_TOKEN)] {
            let a = admin(&server.url, method.clone(), path, "{}", token).await;
            assert_eq!(a.status, 404, "{method} {path} with {token:?}");
            assert_eq!(json(&a)["error"]["code"], "admin_elsewhere");
        }
    }
    let err = admin_client(&server.url).faults().await.unwrap_err();
    assert_eq!(err.code(), Some("admin_elsewhere"), "{err}");
    let ts = post(&server.url, "/v1/timestamps", "").await.unwrap();
    assert_eq!(ts.status, 200);

    // The admin address: the admin API behind the token, and monitoring.
    let node = admin_client(&admin_url);
    assert_eq!(node.faults().await.unwrap().fail_storage_writes, Some(0));
    assert_eq!(node.status().await.unwrap().node_id, 1);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&admin_url, path).await.unwrap().status, 200, "{path}");
    }
    for (method, path) in &routes {
        let a = admin(&admin_url, method.clone(), path, "{}", Some("wrong")).await;
        assert_eq!(a.status, 401, "{method} {path}");
    }
    let a = post(&admin_url, "/v1/timestamps", "").await.unwrap();
    assert_eq!(a.status, 404, "no timestamps on the admin address");

    // The CLI: --url alone finds no admin API; --admin-url does.
    let component = support::guest("tsohost_driver_file.wasm");
    let token = dir.path().join("admin-token");
    let swap = |admin_url: Option<&str>| {
        let mut cmd = std::process::Command::new(support::BIN);
        cmd.args(["driver", "swap", "--url", &server.url, "--to"])
            .arg(&component)
            .arg("--admin-token-file")
            .arg(&token)
            .env_remove("TSOHOST_ADMIN_URL");
        if let Some(u) = admin_url {
            cmd.args(["--admin-url", u]);
        }
        cmd.output().unwrap()
    };
    let out = swap(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("admin_elsewhere"), "{stderr}");
    let out = swap(Some(&admin_url));
    let stdout = support::succeeded(&out);
    assert!(stdout.contains(r#""swaps":1"#), "{stdout}");
    assert_eq!(status(&server.url).await.driver.swaps, 1);

    // Refused at start: without a token, and on the public address itself.
    let (code, stderr) = support::serve_refused(dir.path(), &["--admin-listen", &admin_addr]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
}

/// Every CLI command that talks to a node gives up after its `--timeout`
/// on a node that accepts connections and never answers (a stopped
/// process does exactly that: the kernel still accepts), exiting non-zero
/// with an error naming the URL and the timeout.
#[test]
fn cli_commands_give_up_on_a_node_that_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let token = token.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["status"],
        &["status", "--json"],
        &["ts"],
        &["driver", "swap", "--to", token, "--admin-token-file", token],
        &["cluster", "transfer-leader", "--admin-token-file", token],
        &["bench", "--duration", "100ms", "--warmup", "0s"],
    ];
    for args in commands {
        let started = Instant::now();
        let out = std::process::Command::new(support::BIN)
            .args(args)
            .args(["--url", &url, "--timeout", "1s"])
            .env_remove("TSOHOST_URL")
            .env_remove("TSOHOST_ADMIN_URL")
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            took < Duration::from_secs(5),
            "{args:?} took {took:?} with --timeout 1s: {stderr}"
        );
        assert!(took >= Duration::from_millis(900), "{args:?} took {took:?}");
        assert!(
            stderr.contains(url.trim_start_matches("http://")) && stderr.contains("1s"),
            "{args:?}: the error names neither the node nor the timeout: {stderr}"
        );
    }
}

/// The routes a node answers without a token, besides the admin ones.
const PUBLIC_ROUTES: [(Method, &str); 8] = [
    (Method::POST, "/v1/timestamps"),
    (Method::GET, "/v1/timestamp"),
    (Method::GET, "/v1/status"),
    (Method::GET, "/healthz"),
    (Method::GET, "/readyz"),
    (Method::GET, "/metrics"),
    (Method::GET, "/v1/openapi.json"),
    (Method::GET, "/ui"),
];

/// `GET /v1/openapi.json` documents exactly the routes a node answers,
/// each with the error object on its error statuses, admin routes behind
/// the bearer scheme, and timestamps as decimal strings.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_lists_every_route_and_the_error_object() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_admin(dir.path(), &["--enable-fault-injection"]);
    server.wait_ready().await;
    let a = get(&server.url, "/v1/openapi.json").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let doc = json(&a);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
            let admin = path.starts_with("/v1/admin/");
            assert_eq!(
                op.get("security").is_some(),
                admin,
                "{method} {path}: security"
            );
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status == "503" {
                    let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorAnswer",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let answered: std::collections::BTreeSet<String> = PUBLIC_ROUTES
        .iter()
        .chain(&ADMIN_ROUTES)
        .map(|(m, p)| format!("{m} {}", p.split('?').next().unwrap()))
        .collect();
    assert_eq!(documented, answered);
    // Every route listed is one the node answers (no 404 `not_found`, no
    // 405) with the admin token.
    for (method, path) in PUBLIC_ROUTES.iter().chain(&ADMIN_ROUTES) {
        let a = admin(&server.url, method.clone(), path, "", Some(ADMIN_TOKEN)).await;
        assert!(
            a.status != 405 && !(a.status == 404 && json(&a)["error"]["code"] == "not_found"),
            "{method} {path}: {}",
            a.status
        );
    }
    let range = &doc["components"]["schemas"]["RangeJson"]["properties"]["timestamp"];
    assert_eq!(range["type"], "string");
    assert_eq!(range["pattern"], "^[0-9]+$");
    let status = &doc["components"]["schemas"]["Status"]["properties"]["last_issued"];
    assert_eq!(status["type"], "string");
}

/// Schemathesis (from PyPI, installed by `./x`) sends generated valid and
/// invalid requests to every operation of a live node's document: no
/// answer is a 5xx other than 503, and every answer (status, headers,
/// body) is one the document describes.
#[test]
fn schemathesis_finds_every_openapi_answer_documented_and_no_server_error() {
    let schemathesis = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = start_with_admin(dir.path(), &[]);
    runtime.block_on(server.wait_ready());
    let config = dir.path().join("schemathesis.toml");
    let hooks = dir.path().join("hooks.py");
    std::fs::write(
        &hooks,
        "import schemathesis\n\
         # Generated bytes for application/wasm bodies, sent as octet-stream ones are.\n\
         schemathesis.serializer.alias(\"application/wasm\", \"application/octet-stream\")\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            r#"hooks = "{hooks}"
seed = 7
request-timeout = 10
workers = 1

[generation]
max-examples = 50
deterministic = true

[auth.openapi.admin_token]
bearer = "${{TSOHOST_ADMIN_TOKEN}}"

[checks]
# "No 5xx other than 503": a node that does not serve says so with a 503.
not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

# Generated bytes are never a driver component.
[[operations]]
include-path-regex = "^/v1/admin/(driver|migration/prepare|migration/driver)$"
checks.positive_data_acceptance.enabled = false
"#,
            hooks = hooks.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/v1/openapi.json", server.url)])
        .args(["--no-color", "--wait-for-schema", "30"])
        .env("TSOHOST_ADMIN_TOKEN", ADMIN_TOKEN)
        // Its reports and caches go to the temporary directory.
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {schemathesis} ({e}): run the tests through `./x test`, which installs it")
        });
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Schemathesis found problems:\n{said}");
    assert!(said.contains("passed"), "{said}");
}

/// The command line as people type it: durations like `1m30s`, a host
/// name in a listen address, a wildcard listen address refused in a
/// cluster without `--advertise-url` (with the fix), `--version` naming
/// the commit and the WIT version, shell completions.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_takes_what_people_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("a"),
        &[
            "--listen",
            "localhost:0",
            "--header-timeout",
            "1m30s",
            "--window",
            "1500ms",
        ],
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    server.wait_ready().await;
    assert_eq!(status(&server.url).await.window_ms, 1500);

    let (code, err) = support::serve_refused(&dir.path().join("b"), &["--window", "3 parsecs"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("`3 parsecs` is not a duration like 250ms"),
        "{err}"
    );
    let (code, err) =
        support::serve_refused(&dir.path().join("b"), &["--listen", "nowhere.invalid:7373"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("`nowhere.invalid:7373` is not HOST:PORT"),
        "{err}"
    );

    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123").unwrap();
    let cluster = [
        "--listen",
        "0.0.0.0:0",
        "--node-id",
        "1",
        "--peers",
        "1=127.0.0.1:1,2=127.0.0.1:2",
        "--cluster-secret-file",
        secret.to_str().unwrap(),
    ];
    let (code, err) = support::serve_refused(&dir.path().join("c"), &cluster);
    assert_ne!(code, 0);
    assert!(
        err.contains("accepts connections on every address") && err.contains("--advertise-url"),
        "{err}"
    );

    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::BIN)
            .args(args)
            .output()
            .unwrap();
        support::succeeded(&out)
    };
    let version = run(&["--version"]);
    assert!(
        version.starts_with(&format!("tsohost {} (commit ", env!("CARGO_PKG_VERSION")))
            && version.contains(", WIT tsohost:driver@0.2.0, loads 0.1.0 0.2.0)"),
        "{version}"
    );
    assert!(!version.contains("commit unknown"), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("tsohost") && script.contains("--peer-tls-cert"),
            "{shell}"
        );
    }
}

/// `--log-format json`: every log line is a JSON object, and the events an
/// operator alerts on carry their fields.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_fields_of_structured_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--log-format", "json"]);
    server.wait_ready().await;
    let digest = status(&server.url).await.driver.digest;
    let log = server.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["event"] == "term_started")
        .unwrap_or_else(|| panic!("no term_started event in\n{log}"));
    assert_eq!(started["node"], 1, "{started}");
    assert_eq!(started["driver"], "file", "{started}");
    assert_eq!(started["digest"], digest.as_str(), "{started}");
    assert_eq!(started["epoch"], "1.0", "{started}");
    assert!(started["high_water_ms"].as_u64().unwrap() > 0, "{started}");
    assert_eq!(started["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "election" && l["leader"] == 1),
        "{log}"
    );
    let (code, err) = support::serve_refused(&dir.path().join("x"), &["--log-format", "xml"]);
    assert_ne!(code, 0);
    assert!(err.contains("xml") && err.contains("json"), "{err}");
}
