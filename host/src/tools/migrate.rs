//! `tsohost cluster migrate`: the operator's side of a migration, over the
//! admin API of every node (see [`crate::migration`] for the steps).
//!
//! Every step is idempotent on the nodes, and [`plan`] starts from what the
//! nodes report, so the command can be re-run after any failure: it
//! finishes what is left, or (`--abort`) unseals a cluster where no node
//! has switched yet.

use crate::migration::{DriverRecord, NodeView, Plan, abort, plan};
use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use std::time::{Duration, Instant};
use tsohost_client::admin::Admin;
use tsohost_client::status::Status;

/// What to migrate to.
pub struct Target {
    /// For messages: a built-in name or a path.
    pub label: String,
    pub bytes: Bytes,
}

/// How long the command waits for the migrated cluster to serve.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the command waits for every node to be up and known.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the old driver's leader is looked for, to read the high water.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How the command reaches the nodes' admin API.
#[derive(Debug, Clone)]
pub struct Access {
    /// Every node's admin URL, for nodes that serve their admin API on an
    /// address of its own (`--admin-listen`); empty: the URLs the nodes
    /// advertise, which serve it too.
    pub admin_urls: Vec<String>,
    /// How long one request to a node may take.
    pub timeout: Duration,
    /// For `https://` nodes: the CA to trust and an optional client certificate.
    pub tls: Option<tsohost_client::tls::TlsConfig>,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            admin_urls: Vec::new(),
            timeout: tsohost_client::admin::DEFAULT_TIMEOUT,
            tls: None,
        }
    }
}

/// The admin clients of the nodes, by URL: every step goes to one node.
struct Nodes<'a> {
    token: &'a str,
    access: &'a Access,
}

impl Nodes<'_> {
    fn admin(&self, url: &str) -> anyhow::Result<Admin> {
        let admin = Admin::new(url, self.token).with_context(|| format!("node URL {url}"))?;
        Ok(admin
            .with_timeout(self.access.timeout)
            .with_tls(self.access.tls.clone()))
    }

    async fn status(&self, url: &str) -> anyhow::Result<Status> {
        let status = self.admin(url)?.status().await;
        status.with_context(|| format!("the status of {url}"))
    }
}

/// Every node of the cluster `url` belongs to (just `url` for a node
/// without peers), as it reports itself; with admin URLs, the nodes behind
/// them, which must be every member.
async fn discover(nodes: &Nodes<'_>, url: &str) -> anyhow::Result<Vec<NodeView>> {
    if !nodes.access.admin_urls.is_empty() {
        return discover_admin_urls(nodes).await;
    }
    let status = nodes.status(url).await?;
    let mut urls = vec![url.trim_end_matches('/').to_string()];
    for m in status.members.iter().flatten() {
        if m.id == status.node_id {
            continue;
        }
        let Some(u) = &m.url else {
            bail!(
                "node {} ({}) is a member, but {url} does not know its URL yet (it has not \
                 connected): every node must be up to migrate; start it, then re-run",
                m.id,
                m.address
            );
        };
        urls.push(u.clone());
    }
    let mut views = Vec::new();
    for u in urls {
        let s = nodes
            .status(&u)
            .await
            .context("every node must be up to migrate; nothing was changed by this step")?;
        views.push(view(&u, s));
    }
    views.sort_by_key(|n| n.id);
    Ok(views)
}

/// The nodes behind `--admin-url`: their admin addresses are not
/// advertised, so the operator names every one.
async fn discover_admin_urls(nodes: &Nodes<'_>) -> anyhow::Result<Vec<NodeView>> {
    let mut views = Vec::new();
    let mut members = std::collections::BTreeSet::new();
    for u in &nodes.access.admin_urls {
        let s = nodes
            .status(u)
            .await
            .context("every node must be up to migrate; nothing was changed by this step")?;
        members.extend(s.members.iter().flatten().map(|m| m.id));
        members.insert(s.node_id);
        views.push(view(u.trim_end_matches('/'), s));
    }
    let missing: Vec<u64> = members
        .into_iter()
        .filter(|id| !views.iter().any(|v| v.id == *id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "nodes {missing:?} are members, but no --admin-url leads to them: name every \
             node's admin address (--admin-url URL1,URL2,...)"
        );
    }
    views.sort_by_key(|n| n.id);
    views.dedup_by_key(|n| n.id);
    Ok(views)
}

fn view(url: &str, s: Status) -> NodeView {
    let m = s.migration;
    NodeView {
        id: s.node_id,
        url: url.to_string(),
        driver: s.driver.name,
        digest: s.driver.digest,
        record: DriverRecord {
            driver: m.driver,
            generation: m.generation,
            floor: m.floor,
            sealed: m.sealed,
        },
    }
}

/// One line per node: what it runs now.
fn table(nodes: &[NodeView]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "  node {:<3} {:<28} {} (generation {}, floor {} ms){}\n",
                n.id,
                n.url,
                n.driver,
                n.record.generation,
                n.record.floor,
                if n.record.sealed { ", sealed" } else { "" }
            )
        })
        .collect()
}

/// Move every node of `url`'s cluster to `target`, or (`None`) unseal a
/// migration that switched no node yet. Progress goes to stderr.
pub async fn run(url: &str, token: &str, target: Option<Target>) -> anyhow::Result<()> {
    run_with(url, token, target, &Access::default()).await
}

/// As [`run`], reaching the nodes as `access` says.
pub async fn run_with(
    url: &str,
    token: &str,
    target: Option<Target>,
    access: &Access,
) -> anyhow::Result<()> {
    let admin = Nodes { token, access };
    // Right after a cluster starts, nodes may not have met yet: wait a
    // little for every node to be up and known.
    let started = Instant::now();
    let mut told = false;
    let nodes = loop {
        match discover(&admin, url).await {
            Ok(nodes) => break nodes,
            Err(e) if started.elapsed() < DISCOVER_TIMEOUT => {
                if !std::mem::replace(&mut told, true) {
                    eprintln!("waiting up to {DISCOVER_TIMEOUT:?} for every node: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    };
    eprintln!("the cluster now:\n{}", table(&nodes));
    let Some(target) = target else {
        let ids = abort(&nodes).map_err(anyhow::Error::msg)?;
        return unseal(&admin, &nodes, &ids).await;
    };
    let digest = crate::driver::DriverSource::digest_of(&target.bytes);
    match plan(&nodes, &digest) {
        Plan::Done => {
            eprintln!("every node runs {} already; nothing to do", target.label);
            Ok(())
        }
        Plan::Unseal(ids) => {
            eprintln!(
                "every node runs {} already; unsealing the sealed ones",
                target.label
            );
            unseal(&admin, &nodes, &ids).await
        }
        Plan::Migrate { seal, floor } => migrate(&admin, &nodes, &seal, floor, &target).await,
    }
}

async fn unseal(admin: &Nodes<'_>, nodes: &[NodeView], ids: &[u64]) -> anyhow::Result<()> {
    for n in nodes.iter().filter(|n| ids.contains(&n.id)) {
        admin.admin(&n.url)?.unseal().await?;
        eprintln!(
            "  node {}: unsealed; serving under {} again",
            n.id, n.driver
        );
    }
    Ok(())
}

async fn migrate(
    admin: &Nodes<'_>,
    nodes: &[NodeView],
    seal: &[u64],
    floor: Option<u64>,
    target: &Target,
) -> anyhow::Result<()> {
    let pending: Vec<&NodeView> = nodes.iter().filter(|n| seal.contains(&n.id)).collect();
    let body = target.bytes.clone();
    // 0. Every node compiles and checks the new driver while the old one
    // serves: a component a node refuses stops the migration before it
    // starts, and the switch below finds it compiled.
    for n in &pending {
        let info = admin
            .admin(&n.url)?
            .prepare(body.clone())
            .await
            .with_context(|| {
                format!(
                    "node {} refused {}; nothing was changed",
                    n.id, target.label
                )
            })?;
        eprintln!(
            "  node {}: {} {} compiled and checked",
            n.id, info.name, info.version
        );
    }
    let started = Instant::now();
    // 1. Seal: nobody serves under the old driver from here on.
    let mut held = 0;
    for n in &pending {
        let hw = admin.admin(&n.url)?.seal().await.with_context(|| {
            format!(
                "sealing node {} failed; nodes sealed so far do not serve: re-run to go on, \
                     or `tsohost cluster migrate --abort` to unseal them",
                n.id
            )
        })?;
        held = held.max(hw);
        eprintln!(
            "  node {}: sealed ({} held a high water of {hw} ms)",
            n.id, n.driver
        );
    }
    // 2. The floor: above what every node held, every floor a node was
    // switched with, and what a previous run switched nodes with or else
    // what each driver that may have served says, read linearizably.
    let recorded = nodes.iter().map(|n| n.record.floor).max().unwrap_or(0);
    let floor = match floor {
        Some(f) => {
            eprintln!("  nodes switched by an earlier run use floor {f} ms: finishing with it");
            f
        }
        None => {
            let read = read_high_water(admin, nodes, &pending).await?;
            eprintln!("  the old driver's high water, read linearizably: {read} ms");
            read
        }
    }
    .max(held)
    .max(recorded);
    // 3. Switch every sealed node.
    for n in &pending {
        if let Err(e) = admin.admin(&n.url)?.switch(body.clone(), floor).await {
            let now = discover(admin, &n.url).await.map(|v| table(&v));
            bail!(
                "switching node {} to {} failed: {e:#}\nthe cluster now:\n{}\nre-run `tsohost \
                 cluster migrate --to {}` to finish",
                n.id,
                target.label,
                now.unwrap_or_else(|e| format!("  (cannot tell: {e:#})\n")),
                target.label
            );
        }
        eprintln!(
            "  node {}: switched to {} above {floor} ms",
            n.id, target.label
        );
    }
    let pause = wait_serving(nodes, started, !admin.access.admin_urls.is_empty()).await?;
    eprintln!(
        "migrated to {} in {:.1?}; the first timestamp came {:.1?} after the first seal",
        target.label,
        started.elapsed(),
        pause
    );
    let after = discover(admin, &nodes[0].url).await?;
    eprintln!("the cluster now:\n{}", table(&after));
    Ok(())
}

/// The high water of every driver that may have served, read on its
/// (sealed) leader: every driver that a majority of `all` runs. Normally
/// that is the one old driver; a cluster part-way through a migration runs
/// two, and only one can have a majority (a driver run by fewer nodes
/// cannot commit anything). The maximum of the answers.
async fn read_high_water(
    admin: &Nodes<'_>,
    all: &[NodeView],
    sealed: &[&NodeView],
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut drivers: Vec<&str> = sealed.iter().map(|n| n.driver.as_str()).collect();
    drivers.sort_unstable();
    drivers.dedup();
    drivers.retain(|d| 2 * all.iter().filter(|n| n.driver == *d).count() > all.len());
    let mut highest = 0;
    for driver in drivers {
        let group: Vec<&&NodeView> = sealed.iter().filter(|n| n.driver == driver).collect();
        let mut last_error = String::new();
        let hw = 'read: loop {
            for n in &group {
                match admin.admin(&n.url)?.read_high_water().await {
                    Ok(hw) => break 'read hw,
                    Err(e) => last_error = format!("{e:#}"),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no node could read {driver}'s high water in {READ_TIMEOUT:?} (is a \
                     majority up?); last answer: {last_error}. The nodes stay sealed: re-run \
                     to retry, or --abort to unseal"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        highest = highest.max(hw);
    }
    Ok(highest)
}

/// Wait until some node hands out a timestamp (or, at admin URLs, which
/// hand out none, says it serves); how long since `since`.
async fn wait_serving(
    nodes: &[NodeView],
    since: Instant,
    admin_urls: bool,
) -> anyhow::Result<Duration> {
    let (method, path) = match admin_urls {
        false => (Method::POST, "/v1/timestamps"),
        true => (Method::GET, "/readyz"),
    };
    let started = Instant::now();
    while started.elapsed() < SERVE_TIMEOUT {
        for n in nodes {
            if let Ok(Ok(a)) = tokio::time::timeout(
                Duration::from_secs(1),
                crate::client::once(&n.url, method.clone(), path, Bytes::new()),
            )
            .await
                && a.status.is_success()
            {
                return Ok(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!(
        "every node switched, but none served within {SERVE_TIMEOUT:?}; see the nodes' logs \
         (`tsohost status --url ...` shows each one's leadership)"
    )
}
