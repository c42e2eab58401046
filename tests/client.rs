//! The Rust client (`client/`) against a real 3-node raft cluster: found
//! the leader from a follower's URL, coalesced concurrent callers into
//! fewer requests, kept real-time order for every caller, and rode out a
//! kill -9 of the leader without a failed call.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::checker::{Op, micros};
use support::{ClusterSpec, RAFT, metric, serving_node};
use tsohost_client::{Client, Config};

/// Batch requests a node served.
const BATCHES_SERVED: &str = "tsohost_requests_total{route=\"/v1/timestamps\",result=\"ok\"}";

#[tokio::test(flavor = "multi_thread")]
async fn callers_share_requests_follow_the_leader_and_survive_its_crash() {
    let spec = ClusterSpec::new(3);
    let mut nodes: Vec<_> = (1..=3)
        .map(|id| Some(spec.start(id, &RAFT.founder())))
        .collect();
    let leader = serving_node(&spec.urls, Duration::from_secs(30)).await;
    let follower = (leader + 1) % 3;
    // Only a follower's URL first: the client must follow it to the leader.
    let mut urls = vec![spec.urls[follower].clone()];
    urls.extend(spec.urls.iter().cloned());
    let client = Client::with_config(urls, Config::default()).unwrap();
    assert!(client.get_ts().await.unwrap().0 > 0);
    assert_eq!(client.leader().as_deref(), Some(spec.urls[leader].as_str()));

    let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls_per_caller = 200;
    let callers: Vec<_> = (0..64u32)
        .map(|caller| {
            let (client, ops) = (client.clone(), ops.clone());
            tokio::spawn(async move {
                for _ in 0..calls_per_caller {
                    let sent = Instant::now();
                    let ts = client.get_ts().await.expect("every call succeeds");
                    ops.lock().unwrap().push(Op {
                        sent: micros(sent),
                        received: micros(Instant::now()),
                        first: ts.0,
                        count: 1,
                        client: caller,
                    });
                }
            })
        })
        .collect();
    // Once a third of the calls are done, count the leader's requests and
    // kill it.
    while ops.lock().unwrap().len() < 64 * calls_per_caller / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut requests = metric(&spec.urls[leader], BATCHES_SERVED).await;
    nodes[leader].take().unwrap().kill9();
    for c in callers {
        c.await.unwrap();
    }
    let ops = ops.lock().unwrap().clone();
    assert_eq!(ops.len(), 64 * calls_per_caller);
    tsohost::tools::checker::check(&ops).unwrap_or_else(|v| panic!("contract violated: {v}"));

    for (i, url) in spec.urls.iter().enumerate() {
        if nodes[i].is_some() {
            requests += metric(url, BATCHES_SERVED).await;
        }
    }
    assert!(
        requests < ops.len() as u64 / 2,
        "{} calls took {requests} requests: not coalesced",
        ops.len()
    );
    let range = client.get_range(1000).await.unwrap();
    assert!(range.first.0 > ops.iter().map(|o| o.first).max().unwrap());
    assert_eq!(range.iter().count(), 1000);
}

/// Batch calls coalesce too: 16 callers asking 1000 timestamps at a time,
/// mixed with callers of single timestamps and of ranges so large that two
/// never fit in one request (262144 at most), share requests; every caller
/// gets exactly its count, no two ranges overlap, and real-time order holds.
#[tokio::test(flavor = "multi_thread")]
async fn batch_calls_share_requests_and_keep_their_counts_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let client = Client::new([server.url.as_str()]).unwrap();
    let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counts = |caller: u32| match caller {
        0..16 => 1000,
        16..20 => 1,
        _ => 200_000,
    };
    let calls_per_caller = 100;
    let callers: Vec<_> = (0..22u32)
        .map(|caller| {
            let (client, ops) = (client.clone(), ops.clone());
            tokio::spawn(async move {
                for _ in 0..calls_per_caller {
                    let sent = Instant::now();
                    let range = client
                        .get_range(counts(caller))
                        .await
                        .expect("every call succeeds");
                    assert_eq!(range.count, counts(caller));
                    ops.lock().unwrap().push(Op {
                        sent: micros(sent),
                        received: micros(Instant::now()),
                        first: range.first.0,
                        count: range.count,
                        client: caller,
                    });
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let ops = ops.lock().unwrap().clone();
    tsohost::tools::checker::check(&ops).unwrap_or_else(|v| panic!("contract violated: {v}"));
    let requests = metric(&server.url, BATCHES_SERVED).await;
    assert!(
        requests < ops.len() as u64 / 2,
        "{} calls took {requests} requests: batches not coalesced",
        ops.len()
    );
}
