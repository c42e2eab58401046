//! HTTPS on the client API: `tsohost certs init`, a TLS node answering the
//! Rust client, the CLI and curl (HTTP/1.1 and HTTP/2), mutual TLS, what a
//! TLS port does with plaintext and garbage (and a plaintext port with
//! TLS), the admin address of a TLS
//! node, bad certificate files at start (garbage, expired, not yet valid;
//! a certificate for other names only warns), certificate rotation without
//! a restart, and a cluster whose followers redirect to the leader's
//! https:// URL.

mod support;

use bytes::Bytes;
use hyper::Method;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{BIN, ClusterSpec, RAFT, Server, ca, certs_init, serve_refused, wait_for_log};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tsohost_client::connection::{Answer, ClientError, once_with};
use tsohost_client::tls::TlsConfig;
use tsohost_client::{Client, Config, Error};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn trust(ca: &Path) -> TlsConfig {
    TlsConfig::from_ca_file(&ca.join("ca.pem")).unwrap()
}

fn trust_with_cert(ca: &Path, identity: &Path) -> TlsConfig {
    trust(ca)
        .with_client_cert(&identity.join("client.pem"), &identity.join("client.key"))
        .unwrap()
}

/// A TLS node serving `certs`' node certificate, with `extra` flags.
fn start_tls(dir: &Path, certs: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert".to_string(),
        p(&certs.join("node.pem")).to_string(),
        "--tls-key".to_string(),
        p(&certs.join("node.key")).to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.join("data"), &args);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server
}

async fn get(url: &str, tls: &TlsConfig, path: &str) -> Result<Answer, ClientError> {
    once_with(url, Some(tls), Method::GET, path, Bytes::new()).await
}

/// Poll `/readyz` over TLS until the node serves.
async fn wait_ready(server: &Server, tls: &TlsConfig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get(&server.url, tls, "/readyz").await {
            Ok(a) if a.status == 200 => return,
            other => assert!(
                Instant::now() < deadline,
                "{} never became ready ({other:?}); stderr:\n{}",
                server.url,
                server.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The node's count of failed TLS handshakes.
async fn handshake_failures(url: &str, tls: &TlsConfig) -> u64 {
    metric(url, tls, "tsohost_tls_handshake_failures_total").await
}

async fn metric(url: &str, tls: &TlsConfig, name: &str) -> u64 {
    let answer = get(url, tls, "/metrics").await.expect("metrics");
    support::metric_in(&String::from_utf8_lossy(&answer.body), name)
}

fn client(url: &str, tls: TlsConfig) -> Client {
    let config = Config {
        deadline: Duration::from_secs(2),
        tls: Some(tls),
        ..Config::default()
    };
    Client::with_config([url], config).unwrap()
}

/// `curl -s args...`: (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn certs_init_writes_a_ca_and_certificates_with_private_keys_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let (code, out, err) = certs_init(&dir, &["--name", "node1.example", "--name", "10.0.0.7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--cacert"), "{out}");
    for file in [
        "ca.pem",
        "ca.key",
        "node.pem",
        "node.key",
        "client.pem",
        "client.key",
        "peer-1.pem",
        "peer-1.key",
        "peer-3.pem",
        "peer-3.key",
    ] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let want = if file.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{file} has mode {mode:o}");
    }
    let node = std::fs::read_to_string(dir.join("node.pem")).unwrap();
    assert!(node.starts_with("-----BEGIN CERTIFICATE-----"), "{node}");
    assert!(out.contains("--peer-tls-cert"), "{out}");
    assert!(!dir.join("peer-4.pem").exists());

    // The CA is never replaced: a second init refuses, naming the file,
    // and leaves it as it was.
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();
    let (code, _, err) = certs_init(&dir, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("ca.pem exists"), "{err}");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_node_answers_the_rust_client_the_cli_and_curl_over_http1_and_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca(tmp.path(), "a");
    let other = ca(tmp.path(), "b");
    let server = start_tls(tmp.path(), &certs, &[]);
    let tls = trust(&certs);
    wait_ready(&server, &tls).await;

    // The Rust client, with the CA.
    let c = client(&server.url, tls.clone());
    let a = c.get_ts().await.unwrap();
    let b = c.get_ts().await.unwrap();
    assert!(b > a, "{b} after {a}");
    assert_eq!(c.status().await.unwrap().node_id, 1);

    // Without a CA the client refuses the URL; trusting another CA, the
    // handshake fails and the error says so.
    assert_eq!(
        Client::new([server.url.as_str()]).err(),
        Some(Error::NoCa(server.url.clone()))
    );
    match client(&server.url, trust(&other)).get_ts().await {
        Err(Error::Deadline { last, .. }) => {
            assert!(last.contains("TLS handshake"), "{last}");
            assert!(last.contains("--ca-file"), "{last}");
        }
        other => panic!("a client trusting another CA got {other:?}"),
    }

    // curl with --cacert, over HTTP/1.1 and HTTP/2 (ALPN).
    let cacert = certs.join("ca.pem");
    let url = format!("{}/v1/timestamps", server.url);
    let (code, body) = curl(&["--cacert", p(&cacert), "-XPOST", &url]);
    assert_eq!(code, 0, "curl failed: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["timestamp"].is_string(), "{body}");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (code, out) = curl(&[
            "--cacert",
            p(&cacert),
            flag,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &format!("{}/v1/timestamp", server.url),
        ]);
        assert_eq!((code, out.as_str()), (0, format!("200 {version}").as_str()));
    }
    // curl without the CA refuses the node's certificate (exit 60).
    let (code, _) = curl(&[&url]);
    assert_eq!(code, 60, "curl without --cacert should not trust the node");

    // The CLI, with --ca-file and with TSOHOST_CA_FILE.
    let out = Command::new(BIN)
        .args(["ts", "--url", &server.url, "--ca-file", p(&cacert)])
        .output()
        .unwrap();
    let ts: u64 = support::succeeded(&out).trim().parse().unwrap();
    assert!(ts > b.0);
    let out = Command::new(BIN)
        .args(["status", "--url", &server.url])
        .env("TSOHOST_CA_FILE", &cacert)
        .output()
        .unwrap();
    assert!(support::succeeded(&out).starts_with("node 1: serving"));
    let out = Command::new(BIN)
        .args(["status", "--url", &server.url, "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_clients_without_a_certificate_of_its_ca_and_serves_those_with_one() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca(tmp.path(), "a");
    let stranger = ca(tmp.path(), "b");
    let server = start_tls(
        tmp.path(),
        &certs,
        &["--tls-client-ca", p(&certs.join("ca.pem"))],
    );
    let with_cert = trust_with_cert(&certs, &certs);
    wait_ready(&server, &with_cert).await;
    assert!(
        client(&server.url, with_cert.clone())
            .get_ts()
            .await
            .is_ok()
    );

    // No certificate, one signed by another CA, or an expired one: refused,
    // counted, logged.
    let (expired, expired_key) = support::ca_signed(&certs, "client", -30, -1);
    for (who, tls) in [
        ("no certificate", trust(&certs)),
        ("another CA's", trust_with_cert(&certs, &stranger)),
        (
            "an expired",
            trust(&certs)
                .with_client_cert(&expired, &expired_key)
                .unwrap(),
        ),
    ] {
        match get(&server.url, &tls, "/v1/timestamp").await {
            Err(ClientError::Tls { .. } | ClientError::Http { .. } | ClientError::Closed(_)) => {}
            other => panic!("a client with {who} certificate got {other:?}"),
        }
    }
    wait_for_log(&server, "refused a connection from 127.0.0.1:").await;
    wait_for_log(&server, "certificate expired").await;
    assert!(handshake_failures(&server.url, &with_cert).await >= 3);

    // curl: refused without --cert, served with it.
    let cacert = certs.join("ca.pem");
    let url = format!("{}/v1/timestamp", server.url);
    let (code, _) = curl(&["--cacert", p(&cacert), &url]);
    assert_ne!(code, 0, "curl without a client certificate was served");
    let (code, body) = curl(&[
        "--cacert",
        p(&cacert),
        "--cert",
        p(&certs.join("client.pem")),
        "--key",
        p(&certs.join("client.key")),
        &url,
    ]);
    assert_eq!(code, 0, "{body}");
    assert!(body.contains("\"timestamp\""), "{body}");

    // The CLI with --client-cert/--client-key.
    let out = Command::new(BIN)
        .args(["ts", "--url", &server.url, "--ca-file", p(&cacert)])
        .args(["--client-cert", p(&certs.join("client.pem"))])
        .args(["--client-key", p(&certs.join("client.key"))])
        .output()
        .unwrap();
    support::succeeded(&out);
}

/// With TLS on, `--admin-listen` serves the admin API over TLS too, with
/// the node's certificate and its `--tls-client-ca` requirement: the admin
/// token never crosses the network in the clear. Plaintext and clients
/// without a certificate are refused there; the CLI reaches it with
/// `--admin-url https://... --ca-file`.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_address_of_a_tls_node_speaks_tls_with_the_same_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca(tmp.path(), "a");
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, support::ADMIN_TOKEN).unwrap();
    let admin_addr = format!("127.0.0.1:{}", tsohost::tools::cluster::free_port());
    let cacert = certs.join("ca.pem");
    let server = start_tls(
        tmp.path(),
        &certs,
        &[
            "--admin-token-file",
            p(&token),
            "--admin-listen",
            &admin_addr,
            "--tls-client-ca",
            p(&cacert),
            "--enable-fault-injection",
        ],
    );
    let with_cert = trust_with_cert(&certs, &certs);
    wait_ready(&server, &with_cert).await;
    let admin_url = format!("https://{admin_addr}");
    assert!(
        server
            .stderr()
            .contains(&format!("admin API on {admin_url} only")),
        "{}",
        server.stderr()
    );

    // Over https with the CA and a client certificate: the admin API.
    let admin = |url: &str, tls: Option<TlsConfig>| {
        tsohost_client::admin::Admin::new(url, support::ADMIN_TOKEN)
            .unwrap()
            .with_timeout(Duration::from_secs(5))
            .with_tls(tls)
    };
    let node = admin(&admin_url, Some(with_cert.clone()));
    assert_eq!(node.status().await.unwrap().node_id, 1);
    assert_eq!(node.faults().await.unwrap().fail_storage_writes, Some(0));
    let wrong = tsohost_client::admin::Admin::new(&admin_url, "wrong token, wrong token")
        .unwrap()
        .with_tls(Some(with_cert.clone()));
    assert_eq!(
        wrong.faults().await.unwrap_err().code(),
        Some("unauthorized")
    );

    // Plaintext on the admin address: refused, counted, logged.
    let plain = format!("http://{admin_addr}");
    let err = admin(&plain, None).faults().await.unwrap_err();
    assert!(err.code().is_none(), "plaintext was answered: {err}");
    let mut raw = TcpStream::connect(&admin_addr).await.unwrap();
    raw.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "plaintext served on the admin address: {}",
        String::from_utf8_lossy(&answer)
    );
    wait_for_log(&server, "plaintext HTTP spoken to the TLS port").await;
    // The --tls-client-ca requirement holds there too.
    match admin(&admin_url, Some(trust(&certs))).faults().await {
        Err(e) => assert!(e.code().is_none(), "{e}"),
        Ok(f) => panic!("a client without a certificate was answered {f:?}"),
    }
    assert!(handshake_failures(&server.url, &with_cert).await >= 2);

    // The CLI: --admin-url https://... with --ca-file and the certificate.
    let out = Command::new(BIN)
        .args(["driver", "swap", "--url", &server.url, "--to"])
        .arg(support::guest("tsohost_driver_file.wasm"))
        .args(["--admin-token-file", p(&token), "--admin-url", &admin_url])
        .args(["--ca-file", p(&cacert)])
        .args(["--client-cert", p(&certs.join("client.pem"))])
        .args(["--client-key", p(&certs.join("client.key"))])
        .env_remove("TSOHOST_ADMIN_URL")
        .output()
        .unwrap();
    let stdout = support::succeeded(&out);
    assert!(stdout.contains(r#""swaps":1"#), "{stdout}");
}

/// A client speaking TLS to a plaintext node: the connection is closed,
/// the node logs why and counts it, and keeps serving plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn tls_spoken_to_a_plaintext_port_is_refused_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca(tmp.path(), "certs");
    let server = Server::start(&tmp.path().join("data"), &[]);
    server.wait_ready().await;
    let https = server.url.replace("http://", "https://");
    assert!(get(&https, &trust(&certs), "/readyz").await.is_err());
    wait_for_log(
        &server,
        "a TLS handshake spoken to the plaintext HTTP port (use http://, or start the node \
         with --tls-cert and --tls-key)",
    )
    .await;
    assert_eq!(
        support::metric(&server.url, "tsohost_http_tls_on_plaintext_port_total").await,
        1
    );
    support::timestamp(&server.url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_and_garbage_on_the_tls_port_are_refused_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca(tmp.path(), "a");
    let server = start_tls(tmp.path(), &certs, &[]);
    let tls = trust(&certs);
    wait_ready(&server, &tls).await;
    // A keep-alive TLS connection open through it all.
    let mut kept = tsohost_client::connection::Connection::open_with(&server.url, Some(&tls))
        .await
        .unwrap();
    let before = handshake_failures(&server.url, &tls).await;

    let addr = server.url.trim_start_matches("https://").to_string();
    for bytes in [
        &b"GET /v1/timestamp HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"\x16\x03\x01\x00\x05garbage that is no client hello"[..],
        &[0u8, 1, 2, 3, 255][..],
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the node held a bad connection open");
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
            "the TLS port answered plaintext: {answer:?}"
        );
    }
    wait_for_log(&server, "plaintext HTTP spoken to the TLS port").await;
    wait_for_log(&server, "not a TLS handshake (first byte 0x00)").await;
    let log = server.stderr();
    assert!(
        log.contains("refused a connection from 127.0.0.1:"),
        "{log}"
    );
    // The server counts a failure after it closed the connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshake_failures(&server.url, &tls).await - before < 3 {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = handshake_failures(&server.url, &tls).await;
    assert_eq!(after - before, 3, "{}", server.stderr());

    // The open connection and new ones are served as before.
    let answer = kept
        .send(Method::GET, "/v1/timestamp", Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(client(&server.url, tls).get_ts().await.is_ok());
}

#[test]
fn bad_certificate_files_are_refused_at_start_naming_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ca(tmp.path(), "a");
    let b = ca(tmp.path(), "b");
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let der = tmp.path().join("cert.der");
    std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a, 0x02]).unwrap();
    let missing = tmp.path().join("missing.pem");
    let data = tmp.path().join("data");
    let (a_cert, a_key, b_key) = (a.join("node.pem"), a.join("node.key"), b.join("node.key"));
    let cases: Vec<(Vec<&Path>, &str, &Path)> = vec![
        (vec![&garbage, &a_key], "is not a PEM file", &garbage),
        (vec![&der, &a_key], "looks like DER", &der),
        (vec![&a_key, &a_key], "holds no certificate", &a_key),
        (vec![&a_cert, &a_cert], "holds no private key", &a_cert),
        // The key of another CA's node certificate (files of two
        // `certs init` mixed up).
        (
            vec![&a_cert, &b_key],
            "does not match the certificate",
            &a_cert,
        ),
        (vec![&missing, &a_key], "cannot read", &missing),
    ];
    for (files, problem, named) in cases {
        let (code, err) = serve_refused(
            &data,
            &["--tls-cert", p(files[0]), "--tls-key", p(files[1])],
        );
        assert_ne!(code, 0);
        assert!(err.contains(problem), "expected {problem:?}: {err}");
        assert!(err.contains(p(named)), "expected {named:?} named: {err}");
    }
    // A client CA file that holds no certificate.
    let (code, err) = serve_refused(
        &data,
        &[
            "--tls-cert",
            p(&a_cert),
            "--tls-key",
            p(&a_key),
            "--tls-client-ca",
            p(&a.join("ca.key")),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("holds no certificate") && err.contains("ca.key"),
        "{err}"
    );
    // A certificate without its key.
    let (code, err) = serve_refused(&data, &["--tls-cert", p(&a_cert)]);
    assert_ne!(code, 0);
    assert!(err.contains("--tls-key"), "{err}");
}

/// A self-signed certificate for `names`, valid from `from` to `to` days
/// from now, written to `dir/NAME.pem` and `dir/NAME.key`.
fn certificate(dir: &Path, file: &str, names: &[&str], from: i64, to: i64) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(to);
    let cert = params.self_signed(&key).unwrap();
    let (pem, key_file) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&pem, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (pem, key_file)
}

/// An expired or not yet valid certificate stops the node at start, with
/// an error naming the file, its validity dates and what to do.
#[test]
fn a_certificate_out_of_its_validity_is_refused_at_start_with_its_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let names = ["localhost", "127.0.0.1"];
    // (file, valid from and to in days from now, what the error says, the
    // date it names, the advice it gives)
    for (file, from, to, says, date_in_days, advice) in [
        (
            "expired",
            -30,
            -1,
            "expired: it was valid from",
            -1,
            &["Renew it", "tsohost certs init"][..],
        ),
        (
            "early",
            2,
            30,
            "is not valid yet: it is valid from",
            2,
            &["clock"][..],
        ),
    ] {
        let (cert, key) = certificate(tmp.path(), file, &names, from, to);
        let (code, err) = serve_refused(&data, &["--tls-cert", p(&cert), "--tls-key", p(&key)]);
        assert_ne!(code, 0, "{file}");
        assert!(err.contains(p(&cert)), "the file is not named: {err}");
        assert!(err.contains(says), "{err}");
        let day = (time::OffsetDateTime::now_utc() + time::Duration::days(date_in_days)).date();
        assert!(err.contains(&day.to_string()), "{day} not named: {err}");
        for advice in advice {
            assert!(err.contains(advice), "{advice} not said: {err}");
        }
    }
}

/// A certificate that does not name the host the node is reached at
/// (`--advertise-url`, else the `--listen` address) draws a warning naming
/// what it does cover; the node starts and serves (a load balancer may
/// present another certificate).
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_other_names_is_served_with_a_warning_naming_its_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (wrong, wrong_key) = certificate(tmp.path(), "wrong", &["other.example"], -1, 30);
    let server = Server::start(
        &tmp.path().join("a"),
        &["--tls-cert", p(&wrong), "--tls-key", p(&wrong_key)],
    );
    wait_for_log(
        &server,
        &format!(
            "the certificate {} (--tls-cert) does not cover 127.0.0.1 (--listen): it names \
             other.example.",
            p(&wrong)
        ),
    )
    .await;
    assert!(server.url.starts_with("https://"));

    // --advertise-url: its host is the one checked; a wildcard covers one
    // label.
    let (wild, wild_key) = certificate(tmp.path(), "wild", &["*.example.com"], -1, 30);
    let cert = ["--tls-cert", p(&wild), "--tls-key", p(&wild_key)];
    let good = Server::start(
        &tmp.path().join("b"),
        &[
            &cert[..],
            &["--advertise-url", "https://tso.example.com:7373"],
        ]
        .concat(),
    );
    let bad = Server::start(
        &tmp.path().join("c"),
        &[&cert[..], &["--advertise-url", "https://tso.example.org"]].concat(),
    );
    wait_for_log(
        &bad,
        "does not cover tso.example.org (--advertise-url): it names *.example.com.",
    )
    .await;
    assert!(
        !good.stderr().contains("does not cover"),
        "{}",
        good.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_is_served_without_a_restart_and_bad_files_keep_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ca(tmp.path(), "a");
    let b = ca(tmp.path(), "b");
    let c = ca(tmp.path(), "c");
    let live = tmp.path().join("live");
    std::fs::create_dir(&live).unwrap();
    // Replace the live files the way deployment tools do: write, rename.
    let install = |from: &Path| {
        for file in ["node.pem", "node.key"] {
            let tmp = live.join(format!(".{file}.new"));
            std::fs::copy(from.join(file), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(file)).unwrap();
        }
    };
    install(&a);
    let server = start_tls(tmp.path(), &live, &[]);
    let (trust_a, trust_b, trust_c) = (trust(&a), trust(&b), trust(&c));
    wait_ready(&server, &trust_a).await;
    let served_by = |tls: TlsConfig| {
        let url = server.url.clone();
        async move { get(&url, &tls, "/v1/status").await.is_ok() }
    };

    // SIGHUP: the next handshake presents the new certificate.
    install(&b);
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_by(trust_b.clone()).await {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !served_by(trust_a.clone()).await,
        "the old certificate is still served"
    );
    wait_for_log(&server, "reloaded the TLS certificate").await;

    // A changed file, without a signal: picked up by the watcher.
    install(&c);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !served_by(trust_c.clone()).await {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file: refused, logged naming it, the current certificate
    // keeps serving.
    std::fs::write(
        live.join("node.pem"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .unwrap();
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    wait_for_log(&server, "were NOT reloaded").await;
    let log = server.stderr();
    assert!(log.contains(p(&live.join("node.pem"))), "{log}");
    assert!(served_by(trust_c.clone()).await);
    assert!(
        metric(
            &server.url,
            &trust_c,
            "tsohost_tls_reloads_total{result=\"error\"}"
        )
        .await
            >= 1
    );
    assert!(
        metric(
            &server.url,
            &trust_c,
            "tsohost_tls_reloads_total{result=\"ok\"}"
        )
        .await
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_of_a_tls_cluster_redirect_to_the_leaders_https_url() {
    let spec = ClusterSpec::new(3);
    let certs = ca(spec.dir.path(), "certs");
    let (cert, key) = (certs.join("node.pem"), certs.join("node.key"));
    let nodes: Vec<Server> = (1..=3)
        .map(|id| {
            let mut extra = RAFT.founder();
            extra.extend(["--tls-cert", p(&cert), "--tls-key", p(&key)]);
            spec.start(id, &extra)
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    assert!(urls.iter().all(|u| u.starts_with("https://")), "{urls:?}");
    let tls = trust(&certs);
    let config = Config {
        deadline: Duration::from_secs(30),
        tls: Some(tls.clone()),
        ..Config::default()
    };
    let all = Client::with_config(urls.clone(), config.clone()).unwrap();
    all.get_ts().await.unwrap();
    let leader = all.leader().unwrap();
    let follower = urls.iter().find(|u| **u != leader).unwrap();

    // The follower's 307 names the leader by its https:// URL.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = once_with(
            follower,
            Some(&tls),
            Method::POST,
            "/v1/timestamps",
            Bytes::new(),
        )
        .await
        .unwrap();
        if a.status == 307 {
            let location = a.headers[hyper::header::LOCATION].to_str().unwrap();
            assert_eq!(location, format!("{leader}/v1/timestamps"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{follower} answered {}",
            a.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that knows only the follower follows it there.
    let one = Client::with_config([follower.as_str()], config).unwrap();
    one.get_ts().await.unwrap();
    assert_eq!(one.leader().as_deref(), Some(leader.as_str()));
}
