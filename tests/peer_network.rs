//! The host's peer network, through real processes: authenticated
//! connections, redirects to the leader, fault injection behind the admin
//! token, and garbage from the network. The drivers are the test-only
//! `gossip` guest (pings between all nodes; the lowest id serves).

mod support;

use hyper::Method;
use std::io::Write;
use std::time::Duration;
use support::{
    ADMIN_TOKEN, ClusterSpec, admin, admin_client, guest, json, metric, post, status, wait_for_log,
};
use tsohost_client::admin::Faults;

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
    assert!(metric(&nodes[1].url, "tsohost_peer_frames_received_total").await > 0);
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
