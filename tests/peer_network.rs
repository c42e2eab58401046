//! The host's peer network, through real processes: authenticated
//! connections, redirects to the leader, fault injection behind the admin
//! token, garbage from the network, and peer mutual TLS (the node id bound
//! to the certificate; every other certificate, and plaintext, refused;
//! plaintext peers off loopback refused at start). The drivers are the test-only
//! `gossip` guest (pings between all nodes; the lowest id serves).

mod support;

use hyper::Method;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    ADMIN_TOKEN, ClusterSpec, Server, admin, admin_client, guest, json, metric, post,
    serve_refused, status, wait_for_log,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tsohost::peer::auth::MAGIC;
use tsohost::tls::peer;
use tsohost_client::admin::Faults;
use tsohost_client::tls::{self, TlsConfig};

fn gossip() -> String {
    guest("tsohost_test_gossip.wasm").display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_talk_and_followers_redirect_to_the_leader() {
    let spec = ClusterSpec::new(3);
    let driver = gossip();
    let nodes: Vec<_> = (1..=3)
        .map(|id| spec.start(id, &["--driver", &driver]))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        for other in (1..=3).filter(|&o| o != i as u64 + 1) {
            wait_for_log(node, &format!("first ping from node {other}")).await;
            wait_for_log(node, &format!("first pong from node {other}")).await;
        }
    }
    nodes[0].wait_ready().await;
    let a = post(&nodes[1].url, "/v1/timestamps?x=1", "").await.unwrap();
    assert_eq!(a.status, 307);
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("{}/v1/timestamps?x=1", nodes[0].url)
    );
    let v = json(&a);
    assert_eq!(v["error"]["leader"]["id"], 1);
    assert_eq!(v["error"]["leader"]["url"], nodes[0].url.as_str());
    let status = status(&nodes[2].url).await;
    assert_eq!(status.leadership.leader, Some(1));
    assert!(!status.serving);
    assert!(
        metric(
            &nodes[1].url,
            "tsohost_peer_frames_total{direction=\"received\"}"
        )
        .await
            > 0
    );
    assert_eq!(
        metric(&nodes[0].url, "tsohost_peer_auth_failures_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_the_secret_is_refused() {
    let spec = ClusterSpec::new(2);
    let driver = gossip();
    let one = spec.start(1, &["--driver", &driver]);
    let wrong = spec.dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-cluster-secret-at-all").unwrap();
    let mut args = spec.args(2, &["--driver", &driver]);
    let i = args
        .iter()
        .position(|a| a == "--cluster-secret-file")
        .unwrap();
    args[i + 1] = wrong.display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let two = support::Server::start(&spec.data_dir(2), &args);
    wait_for_log(&one, "does not know the cluster secret").await;
    wait_for_log(&two, "does not know the cluster secret").await;
    assert!(metric(&one.url, "tsohost_peer_auth_failures_total").await > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!one.stderr().contains("first ping from node 2"));
    assert!(!two.stderr().contains("first ping from node 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_peer_port_is_counted_and_harmless() {
    let spec = ClusterSpec::new(2);
    let driver = gossip();
    let one = spec.start(1, &["--driver", &driver]);
    one.wait_ready().await;
    let peer_addr = spec.address(1);
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        b"TSOHPEER1",
    ] {
        let mut s = std::net::TcpStream::connect(peer_addr).unwrap();
        let _ = s.write_all(garbage);
        drop(s);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&one.url, "tsohost_peer_auth_failures_total").await < 3 {
        assert!(std::time::Instant::now() < deadline, "{}", one.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        post(&one.url, "/v1/timestamps", "").await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_injection_needs_the_token_and_drops_traffic() {
    let spec = ClusterSpec::new(2);
    let driver = gossip();
    let one = spec.start(1, &["--driver", &driver, "--enable-fault-injection"]);
    let _two = spec.start(2, &["--driver", &driver]);
    wait_for_log(&one, "first ping from node 2").await;
    let faults = "/v1/admin/faults";
    let body = r#"{"blocked_peers": [2]}"#;
    let a = admin(&one.url, Method::PUT, faults, body, None).await;
    assert_eq!(a.status, 401);
    let a = admin(
        &one.url,
        Method::PUT,
        faults,
        body,
        Some("wrong-token-wrong-token"),
    )
    .await;
    assert_eq!(a.status, 401);
    let a = admin(
        &one.url,
        Method::PUT,
        faults,
        r#"{"blocked_peers": "2"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(a.status, 400);
    let block = |peers: Vec<u64>| Faults {
        blocked_peers: Some(peers),
        ..Faults::default()
    };
    let admin = admin_client(&one.url);
    admin.set_faults(&block(vec![2])).await.unwrap();
    let dropped = metric(&one.url, "tsohost_peer_messages_dropped_total").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        metric(&one.url, "tsohost_peer_messages_dropped_total").await > dropped + 4,
        "pings to and from node 2 are dropped"
    );
    assert_eq!(admin.faults().await.unwrap().blocked_peers, Some(vec![2]));
    let healed = admin.set_faults(&block(vec![])).await.unwrap();
    assert_eq!(healed.blocked_peers, Some(vec![]));

    // Node 2, started without --enable-fault-injection, has none.
    let err = admin_client(&spec.urls[1]).faults().await.unwrap_err();
    let err = err.api().unwrap_or_else(|| panic!("{err}"));
    assert_eq!((err.status, err.code.as_str()), (404, "faults_off"));

    // A node without --admin-token-file has no admin API.
    let lone = tempfile::tempdir().unwrap();
    let lone = support::Server::start(lone.path(), &[]);
    let err = admin_client(&lone.url)
        .transfer_leader(None)
        .await
        .unwrap_err();
    let err = err.api().unwrap_or_else(|| panic!("{err}"));
    assert_eq!((err.status, err.code.as_str()), (404, "admin_off"));
}

/// A peer that knows the secret, completes the handshake, then announces a
/// frame over the limit is cut off before the node reads (or allocates) it,
/// and counted; the node serves on.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_frame_from_an_authenticated_peer_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tsohost::peer::auth::{MAGIC, NONCE, Secret, TAG, Transcript, constant_time_eq, nonce};
    let spec = ClusterSpec::new(2);
    let driver = gossip();
    let one = spec.start(1, &["--driver", &driver]);
    one.wait_ready().await;
    let secret = std::fs::read(spec.secret_file()).unwrap();
    let secret = Secret::new(secret.trim_ascii()).unwrap();

    // The dialer's half of the handshake, as node 2.
    let mut s = tokio::net::TcpStream::connect(spec.address(1))
        .await
        .unwrap();
    let nonce_d = nonce();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&2u64.to_be_bytes());
    hello.extend_from_slice(&nonce_d);
    hello.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&hello).await.unwrap();
    let mut magic = [0; MAGIC.len()];
    s.read_exact(&mut magic).await.unwrap();
    assert_eq!(&magic, MAGIC);
    assert_eq!(s.read_u64().await.unwrap(), 1);
    let mut nonce_a = [0; NONCE];
    s.read_exact(&mut nonce_a).await.unwrap();
    let mut accept_tag = [0; TAG];
    s.read_exact(&mut accept_tag).await.unwrap();
    let url_len = s.read_u16().await.unwrap();
    let mut url = vec![0; url_len as usize];
    s.read_exact(&mut url).await.unwrap();
    let transcript = Transcript {
        dialer: 2,
        acceptor: 1,
        nonce_d,
        nonce_a,
    };
    assert!(constant_time_eq(
        &transcript.accept_tag(&secret),
        &accept_tag
    ));
    s.write_all(&transcript.dial_tag(&secret)).await.unwrap();

    let before = metric(&one.url, "tsohost_peer_auth_failures_total").await;
    let announced = tsohost::peer::MAX_FRAME as u32 + 1;
    s.write_all(&announced.to_be_bytes()).await.unwrap();
    let _ = s.write_all(&[0; 1024]).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the node kept the connection open");
    assert!(metric(&one.url, "tsohost_peer_auth_failures_total").await > before);
    // The warning is written after the connection is dropped: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !one.stderr().contains("-byte frame (limit") {
        assert!(std::time::Instant::now() < deadline, "{}", one.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        post(&one.url, "/v1/timestamps", "").await.unwrap().status,
        200
    );
}

/// The certificate and key files of `certs/peer-{id}`.
fn peer_identity(certs: &Path, id: u64) -> (PathBuf, PathBuf) {
    (
        certs.join(format!("peer-{id}.pem")),
        certs.join(format!("peer-{id}.key")),
    )
}

/// A rustls configuration speaking the peer protocol, trusting `ca` and
/// presenting `identity` (or no certificate).
fn peer_client(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> Arc<rustls::ClientConfig> {
    let mut tls = TlsConfig::from_ca_file(ca).unwrap();
    if let Some((cert, key)) = identity {
        tls = tls.with_client_cert(cert, key).unwrap();
    }
    let mut config = (*tls.client_config()).clone();
    config.alpn_protocols = vec![peer::ALPN.to_vec()];
    Arc::new(config)
}

/// Dial node `node`'s peer port at `addr` over TLS with `config` and greet
/// it as node `claim`: `Ok` if it answered with its greeting (accepted),
/// else what failed.
async fn greet_over_tls(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    node: u64,
    claim: u64,
) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(peer::node_name(node)).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(&hello(claim))
        .await
        .map_err(|e| e.to_string())?;
    let mut magic = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut magic))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    assert_eq!(&magic, MAGIC);
    Ok(())
}

/// A dialer's greeting claiming node `id`.
fn hello(id: u64) -> Vec<u8> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&id.to_be_bytes());
    hello.extend_from_slice(&[7; 16]);
    hello.extend_from_slice(&0u16.to_be_bytes());
    hello
}

/// Wait until `node` counts more than `than` peer authentication failures.
async fn auth_failures_above(node: &Server, than: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = metric(&node.url, "tsohost_peer_auth_failures_total").await;
        if n > than {
            return n;
        }
        assert!(Instant::now() < deadline, "{}", node.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nodes 1 and 3 of a 3-node cluster speak mutual TLS; node 2 is played by
/// the test. Node 1 refuses every dialer that is not node 2 with node 2's
/// certificate, and refuses to talk to a "node 2" that presents another
/// node's certificate; each refusal is logged and counted, and the real
/// nodes keep talking and serving. A rotated certificate is taken up
/// without a restart, unless it is another node's.
#[tokio::test(flavor = "multi_thread")]
async fn peer_mutual_tls_binds_the_node_id_to_the_certificate() {
    let spec = ClusterSpec::new(3);
    let driver = gossip();
    let certs = support::ca(spec.dir.path(), "certs");
    let other = support::ca(spec.dir.path(), "other");
    let start = |id| {
        let mut flags = vec!["--driver".to_string(), driver.clone()];
        flags.extend(support::peer_tls_flags(&certs, id));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        spec.start(id, &flags)
    };
    // Node 2's address answers with node 3's (valid) certificate.
    let impostor = TcpListener::bind(spec.address(2)).await.unwrap();
    let (cert3, key3) = peer_identity(&certs, 3);
    let mut served = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            tls::certified_key(&cert3, &key3).unwrap(),
        )));
    served.alpn_protocols = vec![peer::ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(served));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = impostor.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });

    let one = start(1);
    let three = start(3);
    wait_for_log(&one, "first ping from node 3").await;
    wait_for_log(&three, "first ping from node 1").await;
    wait_for_log(&one, "cannot connect to peer 2").await;
    let log = one.stderr();
    assert!(log.contains("not valid for name"), "{log}");
    let mut failures = auth_failures_above(&one, 0).await;

    let ca = certs.join("ca.pem");
    let addr = spec.address(1);
    let node2 = peer_identity(&certs, 2);
    let expired = support::ca_signed(&certs, &peer::node_name(2), -30, -1);
    let cases: [(&str, Arc<rustls::ClientConfig>, &str); 5] = [
        (
            "no certificate",
            peer_client(&ca, None),
            "peer sent no certificates",
        ),
        (
            "node 2's name from another CA",
            peer_client(&ca, Some(&peer_identity(&other, 2))),
            // Both CAs are called "tsohost CA": the name matches, the
            // signature does not.
            "BadSignature",
        ),
        (
            "an expired certificate of node 2",
            peer_client(&ca, Some(&expired)),
            "certificate expired",
        ),
        (
            "node 3's certificate claiming node 2",
            peer_client(&ca, Some(&peer_identity(&certs, 3))),
            "it says it is node 2, but its certificate is not: it is node 3's",
        ),
        (
            "node 1's own certificate claiming node 2",
            peer_client(&ca, Some(&peer_identity(&certs, 1))),
            "it is node 1's",
        ),
    ];
    for (case, config, reason) in cases {
        let outcome = greet_over_tls(addr, config, 1, 2).await;
        assert!(outcome.is_err(), "{case}: accepted");
        failures = auth_failures_above(&one, failures).await;
        wait_for_log(&one, reason).await;
    }
    // Plaintext to the TLS peer port.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&hello(2)).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}"); // nothing, or a TLS alert
    auth_failures_above(&one, failures).await;
    wait_for_log(&one, "plaintext peer protocol spoken to the TLS port").await;

    // The control: node 2's own certificate is accepted.
    greet_over_tls(addr, peer_client(&ca, Some(&node2)), 1, 2)
        .await
        .unwrap();
    // The real nodes still talk, and the lowest serves.
    wait_for_log(&three, "first pong from node 1").await;
    one.wait_ready().await;
    assert_eq!(
        post(&one.url, "/v1/timestamps", "").await.unwrap().status,
        200
    );

    // Rotation: another node's certificate is refused (the old one stays);
    // a new one of node 1's is taken up without a restart, and a node that
    // connects afresh gets it, both ways.
    let (cert1, key1) = peer_identity(&certs, 1);
    let (cert2, key2) = peer_identity(&certs, 2);
    std::fs::copy(&cert2, &cert1).unwrap();
    std::fs::copy(&key2, &key1).unwrap();
    wait_for_log(&one, "is not node 1's peer certificate: it is node 2's").await;
    assert!(one.stderr().contains("were NOT reloaded"));
    let (new_cert, new_key) = support::ca_signed(&certs, &peer::node_name(1), -1, 30);
    std::fs::copy(&new_cert, &cert1).unwrap();
    std::fs::copy(&new_key, &key1).unwrap();
    wait_for_log(&one, "reloaded the peer TLS certificate").await;
    drop(three);
    let three = start(3);
    wait_for_log(&three, "connected to peer 1 at").await;
    wait_for_log(&three, "first ping from node 1").await;
    wait_for_log(&three, "first pong from node 1").await;
}

/// A node refuses to start with a peer certificate that is not its own,
/// and refuses plaintext peer networking off loopback unless told.
#[test]
fn a_foreign_peer_certificate_or_plaintext_off_loopback_stops_the_node_at_start() {
    let spec = ClusterSpec::new(3);
    let certs = support::ca(spec.dir.path(), "certs");
    let secret = spec.secret_file();
    let node = |id: &str, peers: &str, extra: &[String]| -> Vec<String> {
        let mut flags: Vec<String> = ["--driver", "raft", "--node-id", id, "--peers", peers]
            .iter()
            .map(|s| s.to_string())
            .collect();
        flags.extend(["--cluster-secret-file".into(), secret.display().to_string()]);
        flags.extend(extra.iter().cloned());
        flags
    };
    let refused = |flags: Vec<String>| {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        serve_refused(&spec.data_dir(1), &flags)
    };
    let loopback = format!("1={},2={}", spec.address(1), spec.address(2));
    let (code, err) = refused(node("2", &loopback, &support::peer_tls_flags(&certs, 3)));
    assert_ne!(code, 0);
    assert!(
        err.contains("is not node 2's peer certificate: it is node 3's")
            && err.contains("node-2.peer.tsohost"),
        "{err}"
    );

    let routable = format!("1={},2=192.0.2.7:7374", spec.address(1));
    let (code, err) = refused(node("1", &routable, &[]));
    assert_ne!(code, 0);
    assert!(
        err.contains("192.0.2.7:7374 in plaintext")
            && err.contains("--peer-tls-cert")
            && err.contains("--insecure-peers"),
        "{err}"
    );
    // Told, it starts.
    let flags = node("1", &routable, &["--insecure-peers".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(&spec.data_dir(1), &flags);
}
