//! Commands that talk to running nodes: `status` and `cluster ...`.

use super::ClusterCmd;
use super::parse::{driver_source, read_secret_file};
use crate::node::Status;
use crate::tools::migrate::Access;
use anyhow::{Context, bail};
use bytes::Bytes;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tsohost_client::admin::Admin;

/// `tsohost cluster ...`: find the leader through `url`, then ask it (at its
/// advertised URL, or at its address among `access.admin_urls`).
pub(super) async fn cluster(
    action: ClusterCmd,
    url: &str,
    token_file: Option<PathBuf>,
    access: &Access,
) -> anyhow::Result<()> {
    let token_file = token_file.context("--admin-token-file is required")?;
    let token = String::from_utf8(read_secret_file(&token_file, "--admin-token-file")?)
        .context("--admin-token-file: the token is not text")?;
    if let ClusterCmd::Migrate { to, .. } = &action {
        let target = match to {
            Some(to) => {
                let source = driver_source(to)?;
                Some(crate::tools::migrate::Target {
                    label: to.clone(),
                    bytes: match source.bytes()? {
                        std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                        std::borrow::Cow::Owned(b) => Bytes::from(b),
                    },
                })
            }
            None => None,
        };
        return crate::tools::migrate::run_with(url, &token, target, access).await;
    }
    // A node that just started or lost its leader learns the next within an
    // election; wait that long rather than fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = node_status(url, access.timeout).await?;
        if status.leadership.leader.is_some() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let members = status
        .members
        .as_ref()
        .with_context(|| format!("{url} is not part of a cluster"))?;
    let leader = status
        .leadership
        .leader
        .with_context(|| format!("{url} has known no leader for 10 s; is a majority up?"))?;
    let leader_url = if !access.admin_urls.is_empty() {
        admin_url_of(leader, access).await?
    } else if leader == status.node_id {
        url.to_string()
    } else {
        members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.url.clone())
            .with_context(|| format!("node {leader} leads, but its URL is not known yet"))?
    };
    let current: Vec<(u64, String)> = members.iter().map(|m| (m.id, m.address.clone())).collect();
    let admin = Admin::new(leader_url, token)?
        .with_timeout(access.timeout)
        .with_tls(access.tls.clone());
    let answer = match action {
        ClusterCmd::Add { id, address } => {
            if current.iter().any(|(m, _)| *m == id) {
                bail!("node {id} is already a member");
            }
            let mut next = current.clone();
            next.push((id, address));
            serde_json::to_value(admin.set_members(&next).await?)?
        }
        ClusterCmd::Remove { id } => {
            if !current.iter().any(|(m, _)| *m == id) {
                bail!("node {id} is not a member");
            }
            let next: Vec<_> = current.into_iter().filter(|(m, _)| *m != id).collect();
            serde_json::to_value(admin.set_members(&next).await?)?
        }
        ClusterCmd::TransferLeader { to } => {
            serde_json::json!({ "leader": admin.transfer_leader(to).await? })
        }
        ClusterCmd::Migrate { .. } => unreachable!("handled above"),
    };
    println!("{answer}");
    Ok(())
}

/// Which of `access.admin_urls` is node `id`'s (each answers `/v1/status`).
async fn admin_url_of(id: u64, access: &Access) -> anyhow::Result<String> {
    let mut seen = Vec::new();
    for url in &access.admin_urls {
        let status = node_status(url, access.timeout)
            .await
            .with_context(|| format!("--admin-url {url}"))?;
        if status.node_id == id {
            return Ok(url.clone());
        }
        seen.push(status.node_id);
    }
    bail!(
        "node {id} leads, but no --admin-url leads to it (they are nodes {seen:?}): add the \
         leader's admin address"
    )
}

/// The status of the node at `url`, within `timeout`.
pub(super) async fn node_status(url: &str, timeout: Duration) -> anyhow::Result<Status> {
    let config = tsohost_client::Config {
        deadline: timeout,
        tls: super::tls::client(),
        ..Default::default()
    };
    Ok(tsohost_client::Client::with_config([url], config)?
        .status()
        .await?)
}

/// `tsohost status` without `--json`: what an operator looks at first.
pub(super) fn summary(s: &Status) -> String {
    let mut out = String::new();
    let serving = if s.serving { "serving" } else { "not serving" };
    let leader = match s.leadership.leader {
        Some(id) if id == s.node_id => "this node leads".to_string(),
        Some(id) => format!("node {id} leads"),
        None => "no known leader".to_string(),
    };
    let epoch = s.leadership.epoch.as_deref().unwrap_or("none yet");
    let _ = writeln!(out, "node {}: {serving}", s.node_id);
    let _ = writeln!(
        out,
        "role:       {} ({leader}), epoch {epoch}",
        s.leadership.role
    );
    let _ = writeln!(
        out,
        "high water: {} ms (window {} ms), last issued {}",
        s.high_water_ms, s.window_ms, s.last_issued
    );
    let d = &s.driver;
    let health = if d.healthy { "healthy" } else { "not healthy" };
    let _ = write!(
        out,
        "driver:     {} {} ({health}, {} crashes, {} swaps)",
        d.name, d.version, d.crashes, d.swaps
    );
    match &d.last_crash {
        Some(why) => {
            let _ = writeln!(out, "; last crash: {why}");
        }
        None => out.push('\n'),
    }
    match &s.members {
        None => out.push_str("members:    none (a single node)\n"),
        Some(members) => {
            let listed: Vec<String> = members
                .iter()
                .map(|m| {
                    let mark = if s.leadership.leader == Some(m.id) {
                        "*"
                    } else {
                        ""
                    };
                    format!("{}{mark} {}", m.id, m.address)
                })
                .collect();
            let _ = writeln!(out, "members:    {} (* leads)", listed.join(", "));
        }
    }
    if let Some(blocked) = s.blocked_peers.as_ref().filter(|b| !b.is_empty()) {
        let _ = writeln!(out, "faults:     blocking peers {blocked:?}");
    }
    let m = &s.migration;
    let sealed = if m.sealed {
        "SEALED for a migration"
    } else {
        "not sealed"
    };
    let _ = writeln!(
        out,
        "data:       driver {} generation {}, floor {} ms, {sealed}",
        m.driver, m.generation, m.floor
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{DriverStatus, LeadershipStatus, Member, MigrationStatus, StatusRole};
    use crate::timestamp::Timestamp;

    #[test]
    fn the_summary_names_the_leader_and_the_seal() {
        let member = |id: u64| Member {
            address: format!("127.0.0.1:750{id}"),
            id,
            url: None,
        };
        let status = Status {
            blocked_peers: Some(vec![]),
            driver: DriverStatus {
                crashes: 1,
                digest: "ab".into(),
                healthy: true,
                last_crash: Some("trap".into()),
                loaded_at_ms: 0,
                name: "raft".into(),
                source: "built-in driver \"raft\"".into(),
                swaps: 0,
                version: "0.3.0".into(),
                wit_version: "0.1.0".into(),
            },
            high_water_ms: 5,
            last_issued: Timestamp(7),
            leadership: LeadershipStatus {
                epoch: Some("3.0".into()),
                leader: Some(2),
                role: StatusRole::Follower,
            },
            members: Some(vec![member(1), member(2)]),
            migration: MigrationStatus {
                driver: "raft".into(),
                floor: 9,
                generation: 1,
                sealed: true,
            },
            node_id: 1,
            serving: false,
            window_ms: 3000,
        };
        let text = summary(&status);
        assert!(text.starts_with("node 1: not serving\n"), "{text}");
        assert!(
            text.contains("follower (node 2 leads), epoch 3.0"),
            "{text}"
        );
        assert!(text.contains("raft 0.3.0 (healthy, 1 crashes, 0 swaps); last crash: trap"));
        assert!(
            text.contains("1 127.0.0.1:7501, 2* 127.0.0.1:7502"),
            "{text}"
        );
        assert!(text.contains("generation 1, floor 9 ms, SEALED"), "{text}");
        assert!(!text.contains("faults"), "{text}");
    }
}
