//! Commands that talk to running nodes: `status` and `cluster ...`.
//!
//! - [`metrics_text`]: reading `/metrics` back for `status`.

mod metrics_text;

use super::ClusterCmd;
use super::parse::{driver_source, read_secret_file};
use crate::node::Status;
use crate::tools::migrate::Access;
use anyhow::{Context, bail};
use bytes::Bytes;
use metrics_text::{Scrape, bucket_delta, quantile};
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

/// How many hex digits of a driver's SHA-256 `tsohost status` shows: as
/// many as the dashboard, enough to tell builds apart at a glance (`--json`
/// has all of them).
const DIGEST_SHOWN: usize = 12;

/// What `tsohost status` read at the node's `/metrics`, for the facts the
/// status document lacks (rates, latencies, headroom, events, the driver's
/// statistics).
pub(super) enum Observed {
    /// Nothing usable, and why: the status is still worth printing.
    Missing(String),
    /// One scrape (`--interval 0`): no rates.
    Once(Scrape),
    /// Two scrapes `elapsed` apart: rates and latencies over that time.
    Twice {
        before: Scrape,
        after: Scrape,
        elapsed: Duration,
    },
}

impl Observed {
    /// The newest scrape, if any.
    fn latest(&self) -> Option<&Scrape> {
        match self {
            Observed::Missing(_) => None,
            Observed::Once(s) | Observed::Twice { after: s, .. } => Some(s),
        }
    }
}

/// `tsohost status` without `--json`: the node's status, then its metrics
/// sampled twice `interval` apart (once with a zero interval) so that the
/// summary can show rates as the dashboard does. A node that does not
/// answer its status fails the command; metrics that cannot be read only
/// leave their lines out, saying why.
pub(super) async fn status_report(
    url: &str,
    timeout: Duration,
    interval: Duration,
) -> anyhow::Result<String> {
    let status = node_status(url, timeout).await?;
    let observed = match scrape(url, timeout).await {
        Err(e) => Observed::Missing(format!("{e:#}")),
        Ok(first) if interval.is_zero() => Observed::Once(first),
        Ok(before) => {
            let started = std::time::Instant::now();
            tokio::time::sleep(interval).await;
            match scrape(url, timeout).await {
                Ok(after) => Observed::Twice {
                    before,
                    after,
                    elapsed: started.elapsed(),
                },
                Err(e) => Observed::Missing(format!("{e:#}")),
            }
        }
    };
    Ok(summary(&status, &observed))
}

/// The node's `/metrics`, parsed, within `timeout`.
async fn scrape(url: &str, timeout: Duration) -> anyhow::Result<Scrape> {
    let tls = super::tls::client();
    let get = crate::client::once_with(
        url,
        tls.as_ref(),
        hyper::Method::GET,
        "/metrics",
        Bytes::new(),
    );
    let answer = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| anyhow::anyhow!("{url}/metrics did not answer within {timeout:?}"))??;
    if !answer.status.is_success() {
        bail!("{url}/metrics answered {}", answer.status);
    }
    let text = std::str::from_utf8(&answer.body).context("/metrics is not UTF-8")?;
    Ok(Scrape::parse(text)?)
}

/// The human view of one node: the facts of the dashboard's row for it
/// (docs: README "Dashboard"), from its status and what `observed` read at
/// its `/metrics`.
pub(super) fn summary(s: &Status, observed: &Observed) -> String {
    let mut out = String::new();
    let latest = observed.latest();
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
    let headroom = latest
        .and_then(|m| m.sum("tsohost_window_headroom_seconds"))
        .map(|h| format!(", headroom {h:.2} s"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "high water: {} ms (window {} ms{headroom}), last issued {}",
        s.high_water_ms, s.window_ms, s.last_issued
    );
    let d = &s.driver;
    let health = if d.healthy { "healthy" } else { "not healthy" };
    let digest = d.digest.get(..DIGEST_SHOWN).unwrap_or(&d.digest);
    let _ = writeln!(
        out,
        "driver:     {} {} ({health}), digest {digest}, WIT {}",
        d.name, d.version, d.wit_version
    );
    if let Some(stats) = latest.map(driver_stats).filter(|s| !s.is_empty()) {
        wrapped(&mut out, "stats:", &stats);
    }
    let measured = match observed {
        Observed::Missing(why) => Err(why),
        Observed::Once(after) => Ok(load(after, None)),
        Observed::Twice {
            before,
            after,
            elapsed,
        } => Ok(load(after, Some((before, *elapsed)))),
    };
    match measured {
        Err(why) => {
            let _ = writeln!(out, "metrics:    not read: {why}");
        }
        Ok((rate, latency)) => {
            let _ = writeln!(out, "rate:       {rate}");
            let _ = writeln!(out, "latency:    {latency}");
        }
    }
    let _ = writeln!(out, "events:     {}", events(s, observed));
    if let Some(why) = &d.last_crash {
        // Its first line says why; the rest is a guest backtrace, which
        // would bury the summary.
        let mut lines = why.lines();
        let _ = write!(out, "last crash: {}", lines.next().unwrap_or_default());
        match lines.count() {
            0 => out.push('\n'),
            more => {
                let _ = writeln!(out, " ({more} more lines in --json)");
            }
        }
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

/// The request histogram whose percentiles are shown (all routes and
/// results together, as on the dashboard).
const REQUEST_HISTOGRAM: &str = "tsohost_request_duration_seconds";

/// The `rate:` and `latency:` lines: timestamps and requests per second
/// and the latency percentiles between the two scrapes; when no request
/// came in between (or with one scrape), the percentiles since the node
/// started, so that an idle node still shows how it answered.
fn load(after: &Scrape, before: Option<(&Scrape, Duration)>) -> (String, String) {
    let since_start = percentiles(&after.buckets(REQUEST_HISTOGRAM), "since start");
    let Some((before, elapsed)) = before else {
        let latency = since_start.unwrap_or_else(|| "no requests yet".into());
        return ("not measured (--interval 0)".into(), latency);
    };
    let elapsed = elapsed.as_secs_f64().max(f64::EPSILON);
    let rate = |name: &str| {
        let delta = after.sum(name).unwrap_or(0.0) - before.sum(name).unwrap_or(0.0);
        delta.max(0.0) / elapsed
    };
    let window = format!("over the last {}", seconds(elapsed));
    let rates = format!(
        "{:.0} timestamps/s, {:.0} requests/s {window}",
        rate("tsohost_timestamps_issued_total"),
        rate("tsohost_requests_total")
    );
    let recent = bucket_delta(
        &after.buckets(REQUEST_HISTOGRAM),
        &before.buckets(REQUEST_HISTOGRAM),
    );
    let latency = match (percentiles(&recent, &window), since_start) {
        (Some(recent), _) => recent,
        (None, Some(since_start)) => format!("none {window}; {since_start}"),
        (None, None) => "no requests yet".into(),
    };
    (rates, latency)
}

/// `p50 X ms, p99 Y ms (N requests WHEN)`, or `None` with no requests.
fn percentiles(buckets: &[(f64, f64)], when: &str) -> Option<String> {
    let p50 = quantile(0.5, buckets)?;
    let p99 = quantile(0.99, buckets)?;
    let count = buckets.last()?.1;
    Some(format!(
        "p50 {}, p99 {} ({count:.0} requests {when})",
        millis(p50),
        millis(p99)
    ))
}

/// The dashboard's event counters since the node started, with what
/// changed between the two scrapes; crashes and swaps from the status when
/// the metrics could not be read.
fn events(s: &Status, observed: &Observed) -> String {
    const COUNTERS: [(&str, &str); 4] = [
        ("elections", "tsohost_elections_total"),
        ("swaps", "tsohost_driver_swaps_total"),
        ("migrations", "tsohost_driver_migrations_total"),
        ("crashes", "tsohost_driver_crashes_total"),
    ];
    let Some(latest) = observed.latest() else {
        return format!(
            "swaps {}, crashes {} since start",
            s.driver.swaps, s.driver.crashes
        );
    };
    let mut listed = Vec::new();
    let mut recent = Vec::new();
    for (label, name) in COUNTERS {
        let now = latest.sum(name).unwrap_or(0.0);
        listed.push(format!("{label} {now:.0}"));
        if let Observed::Twice { before, .. } = observed {
            let new = now - before.sum(name).unwrap_or(0.0);
            if new > 0.0 {
                recent.push(format!("{label} +{new:.0}"));
            }
        }
    }
    let mut line = format!("{} since start", listed.join(", "));
    if let Observed::Twice { elapsed, .. } = observed
        && !recent.is_empty()
    {
        let _ = write!(
            line,
            " ({} in the last {})",
            recent.join(", "),
            seconds(elapsed.as_secs_f64())
        );
    }
    line
}

/// The driver's own statistics (`tsohost_driver_<name>{driver="..."}`,
/// told from the host's `tsohost_driver_*` by the `driver` label), as
/// `name value`, other labels in braces.
fn driver_stats(scrape: &Scrape) -> Vec<String> {
    scrape
        .samples
        .iter()
        .filter(|m| m.label("driver").is_some())
        .filter_map(|m| {
            let name = m.name.strip_prefix("tsohost_driver_")?;
            let labels: Vec<String> = m
                .labels
                .iter()
                .filter(|(k, _)| k != "driver")
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            Some(format!("{name}{labels} {}", number(m.value)))
        })
        .collect()
}

/// `label` and `items` comma-separated, continued on indented lines
/// rather than one line too wide for a terminal.
fn wrapped(out: &mut String, label: &str, items: &[String]) {
    const WIDTH: usize = 100;
    let mut line = format!("{label:<12}");
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        let item = if last {
            item.clone()
        } else {
            format!("{item},")
        };
        if line.trim_end().len() > 12 && line.len() + item.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(12);
        }
        line.push_str(&item);
        line.push(' ');
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A value as people read it: whole numbers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Seconds, `1 s` or `1.5 s`.
fn seconds(s: f64) -> String {
    format!("{} s", format!("{s:.1}").trim_end_matches(".0"))
}

/// A latency in seconds as milliseconds, with the precision it needs.
fn millis(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{DriverStatus, LeadershipStatus, Member, MigrationStatus, StatusRole};
    use crate::timestamp::Timestamp;

    /// A follower of a 3-node raft cluster whose driver crashed once.
    fn follower() -> Status {
        let member = |id: u64| Member {
            address: format!("127.0.0.1:750{id}"),
            id,
            url: None,
        };
        Status {
            blocked_peers: Some(vec![]),
            driver: DriverStatus {
                crashes: 1,
                digest: "ab".repeat(32),
                healthy: true,
                last_crash: Some("trap\n0: 0xdf292\n1: 0xd9a31".into()),
                loaded_at_ms: 0,
                name: "raft".into(),
                source: "built-in driver \"raft\"".into(),
                swaps: 0,
                version: "0.3.0".into(),
                wit_version: "0.2.0".into(),
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
        }
    }

    /// `/metrics` of a node that has answered `requests` requests (half
    /// within 1 ms, the rest within 10 ms) and issued `issued` timestamps.
    fn metrics(requests: u64, issued: u64, elections: u64) -> Scrape {
        let fast = requests / 2;
        Scrape::parse(&format!(
            "# TYPE tsohost_requests_total counter\n\
             tsohost_requests_total{{route=\"/v1/timestamps\",result=\"ok\"}} {requests}\n\
             tsohost_request_duration_seconds_bucket{{route=\"/v1/timestamps\",result=\"ok\",le=\"0.001\"}} {fast}\n\
             tsohost_request_duration_seconds_bucket{{route=\"/v1/timestamps\",result=\"ok\",le=\"0.01\"}} {requests}\n\
             tsohost_request_duration_seconds_bucket{{route=\"/v1/timestamps\",result=\"ok\",le=\"+Inf\"}} {requests}\n\
             tsohost_timestamps_issued_total {issued}\n\
             tsohost_window_headroom_seconds 2.5\n\
             tsohost_elections_total {elections}\n\
             tsohost_driver_crashes_total 1\n\
             tsohost_driver_swaps_total 0\n\
             tsohost_driver_migrations_total 2\n\
             tsohost_driver_commit_index{{driver=\"raft\"}} 42\n\
             tsohost_driver_messages_sent_total{{driver=\"raft\",to=\"2\"}} 7\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_summary_names_the_leader_and_the_seal() {
        let text = summary(&follower(), &Observed::Missing("refused".into()));
        assert!(text.starts_with("node 1: not serving\n"), "{text}");
        assert!(
            text.contains("follower (node 2 leads), epoch 3.0"),
            "{text}"
        );
        assert!(
            text.contains("raft 0.3.0 (healthy), digest abababababab, WIT 0.2.0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "events:     swaps 0, crashes 1 since start\nlast crash: trap (2 more lines in --json)\n"
            ),
            "{text}"
        );
        assert!(text.contains("metrics:    not read: refused\n"), "{text}");
        assert!(
            text.contains("1 127.0.0.1:7501, 2* 127.0.0.1:7502"),
            "{text}"
        );
        assert!(text.contains("generation 1, floor 9 ms, SEALED"), "{text}");
        assert!(!text.contains("faults"), "{text}");
        assert!(!text.contains("stats:"), "{text}");
    }

    #[test]
    fn the_summary_shows_the_dashboards_rates_latencies_and_events() {
        let observed = Observed::Twice {
            before: metrics(100, 1000, 1),
            after: metrics(300, 3000, 2),
            elapsed: Duration::from_secs(2),
        };
        let text = summary(&follower(), &observed);
        assert!(
            text.contains("high water: 5 ms (window 3000 ms, headroom 2.50 s), last issued 7\n"),
            "{text}"
        );
        // 200 requests in 2 s: 100 within 1 ms, 100 within 10 ms, so the
        // median is the first bucket's bound and p99 interpolates.
        let lines = [
            "rate:       1000 timestamps/s, 100 requests/s over the last 2 s\n",
            "latency:    p50 1.00 ms, p99 9.82 ms (200 requests over the last 2 s)\n",
            "events:     elections 2, swaps 0, migrations 2, crashes 1 since start \
             (elections +1 in the last 2 s)\nlast crash: trap (2 more lines in --json)\n",
            "stats:      commit_index 42, messages_sent_total{to=\"2\"} 7\n",
        ];
        for line in lines {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        // Nothing between the scrapes: the latencies since start.
        let idle = Observed::Twice {
            before: metrics(300, 3000, 2),
            after: metrics(300, 3000, 2),
            elapsed: Duration::from_secs(1),
        };
        let text = summary(&follower(), &idle);
        let lines = [
            "rate:       0 timestamps/s, 0 requests/s over the last 1 s\n",
            "latency:    none over the last 1 s; p50 1.00 ms, p99 9.82 ms (300 requests since \
             start)\n",
            "events:     elections 2, swaps 0, migrations 2, crashes 1 since start\n",
        ];
        for line in lines {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        let text = summary(&follower(), &Observed::Once(metrics(0, 0, 1)));
        let lines = [
            "rate:       not measured (--interval 0)\n",
            "latency:    no requests yet\n",
        ];
        for line in lines {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn long_stat_lines_wrap_under_their_label() {
        let items: Vec<String> = (0..12).map(|i| format!("statistic_{i} {i}")).collect();
        let mut out = String::new();
        wrapped(&mut out, "stats:", &items);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1, "{out}");
        assert!(lines.iter().all(|l| l.len() <= 100), "{out}");
        assert!(lines[0].starts_with("stats:      statistic_0 0, "), "{out}");
        assert!(lines[1].starts_with("            statistic_"), "{out}");
        assert!(out.ends_with("statistic_11 11\n"), "{out}");
    }
}
