//! The running driver's own statistics (WIT 0.2 `driver.stats`), published
//! as `tsohost_driver_<name>{driver="<driver>", ...}`.
//!
//! What a driver answers is untrusted input: it may be any bytes a guest
//! chose. [`DriverStats::set`] keeps only what can be published without
//! breaking the exposition format or another series, and drops the rest
//! with a warning naming the statistic (logged when the refusals change,
//! not on every scrape, and at most [`MAX_LOGGED`] lines at a time):
//! - names are `[a-z_][a-z0-9_]*` (≤ 100 bytes), label names the same but
//!   not `driver` (the host's) nor `__`-prefixed; label values and help are
//!   any text, help cut to 300 bytes;
//! - every entry of one name has the kind, help and label names of the
//!   first; a repeated label set is dropped;
//! - at most [`MAX_STATS`] entries and [`MAX_LABELS`] labels per entry;
//! - none of the host's own `tsohost_driver_*` names ([`RESERVED`]).
//!
//! A counter named `x_total` is published as `x_total`, not `x_total_total`.

use crate::driver::bindings::{Metric, MetricValue};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// Entries beyond this many are dropped (wit/driver.wit).
pub const MAX_STATS: usize = 256;
/// Labels per entry beyond this many drop the entry.
pub const MAX_LABELS: usize = 8;
const MAX_NAME: usize = 100;
const MAX_HELP: usize = 300;
/// The host's own `tsohost_driver_<name>_total` counters, which a driver's
/// statistic may not shadow (under either kind: a gauge `crashes_total`
/// would write the same sample name).
pub const RESERVED: [&str; 4] = ["crashes", "starts", "swaps", "migrations"];
/// Refusals logged per change of the driver's answer.
pub const MAX_LOGGED: usize = 5;

/// One published statistic: its entries, which share a kind and help.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    help: String,
    counter: bool,
    label_names: Vec<String>,
    /// Label values (in `label_names` order) and the value.
    series: Vec<(Vec<String>, MetricValue)>,
}

/// The latest answer of the running driver, as published.
#[derive(Debug, Default)]
pub struct DriverStats {
    latest: Mutex<Published>,
    /// The refusals last logged.
    refused: Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct Published {
    driver: String,
    families: BTreeMap<String, Family>,
}

impl DriverStats {
    /// Publish `stats`, the answer of `driver`, in place of the last one.
    pub fn set(&self, driver: &str, stats: Vec<Metric>) {
        let (families, refusals) = sift(stats);
        let mut logged = self.refused.lock().unwrap();
        if *logged != refusals {
            for refusal in refusals.iter().take(MAX_LOGGED) {
                tracing::warn!(
                    driver = %driver,
                    "the driver's statistic {refusal}: not published (fix `stats` in the driver)"
                );
            }
            if refusals.len() > MAX_LOGGED {
                tracing::warn!(
                    driver = %driver,
                    "{} more of the driver's statistics were not published",
                    refusals.len() - MAX_LOGGED
                );
            }
            *logged = refusals;
        }
        drop(logged);
        *self.latest.lock().unwrap() = Published {
            driver: driver.to_string(),
            families,
        };
    }

    /// Publish nothing (the driver did not answer; stale values would lie).
    pub fn clear(&self) {
        self.latest.lock().unwrap().families.clear();
    }
}

impl Collector for DriverStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.latest.lock().unwrap();
        for (name, family) in &latest.families {
            let name = match family.counter {
                true => name.strip_suffix("_total").unwrap_or(name),
                false => name.as_str(),
            };
            let name = format!("driver_{name}");
            let kind = match family.counter {
                true => prometheus_client::metrics::MetricType::Counter,
                false => prometheus_client::metrics::MetricType::Gauge,
            };
            let mut descriptor = encoder.encode_descriptor(&name, &family.help, None, kind)?;
            for (values, value) in &family.series {
                let labels: Vec<(&str, &str)> = std::iter::once(("driver", latest.driver.as_str()))
                    .chain(
                        family
                            .label_names
                            .iter()
                            .map(String::as_str)
                            .zip(values.iter().map(String::as_str)),
                    )
                    .collect();
                let series = descriptor.encode_family(&labels)?;
                match *value {
                    MetricValue::Counter(v) => ConstCounter::new(v).encode(series)?,
                    MetricValue::Gauge(v) => ConstGauge::new(v).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// The publishable part of `stats`, and why each other entry was dropped.
fn sift(stats: Vec<Metric>) -> (BTreeMap<String, Family>, Vec<String>) {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut seen: HashSet<(String, Vec<String>)> = HashSet::new();
    let mut refusals = Vec::new();
    let total = stats.len();
    for metric in stats.into_iter().take(MAX_STATS) {
        let name = metric.name;
        if let Some(why) = bad_name(&name) {
            refusals.push(format!("{name:?} has a bad name: {why}"));
            continue;
        }
        if RESERVED.contains(&name.strip_suffix("_total").unwrap_or(&name)) {
            refusals.push(format!(
                "{name} would shadow the host's tsohost_driver_{name}: choose another name"
            ));
            continue;
        }
        if metric.labels.len() > MAX_LABELS {
            refusals.push(format!("{name} has more than {MAX_LABELS} labels"));
            continue;
        }
        if let Some((label, why)) = metric
            .labels
            .iter()
            .find_map(|(k, _)| bad_label(k).map(|why| (k, why)))
        {
            refusals.push(format!("{name} has a bad label name {label:?}: {why}"));
            continue;
        }
        let (label_names, values): (Vec<String>, Vec<String>) = metric.labels.into_iter().unzip();
        let counter = matches!(metric.value, MetricValue::Counter(_));
        let family = families.entry(name.clone()).or_insert_with(|| Family {
            help: cut(metric.help, MAX_HELP),
            counter,
            label_names: label_names.clone(),
            series: Vec::new(),
        });
        if family.counter != counter || family.label_names != label_names {
            refusals.push(format!(
                "{name} differs from its first entry in kind or label names"
            ));
            continue;
        }
        if !seen.insert((name.clone(), values.clone())) {
            refusals.push(format!("{name} repeats the labels {values:?}"));
            continue;
        }
        family.series.push((values, metric.value));
    }
    if total > MAX_STATS {
        refusals.push(format!(
            "list has {total} entries; only the first {MAX_STATS} are kept"
        ));
    }
    families.retain(|_, f| !f.series.is_empty());
    (families, refusals)
}

fn bad_name(name: &str) -> Option<&'static str> {
    let mut bytes = name.bytes();
    match bytes.next() {
        None => Some("it is empty"),
        _ if name.len() > MAX_NAME => Some("it is longer than 100 bytes"),
        Some(first) if !(first.is_ascii_lowercase() || first == b'_') => {
            Some("it must start with [a-z_]")
        }
        _ if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') => {
            Some("it may hold only [a-z0-9_]")
        }
        _ => None,
    }
}

fn bad_label(name: &str) -> Option<&'static str> {
    if name == "driver" {
        return Some("the host sets `driver`");
    }
    if name.starts_with("__") {
        return Some("names starting with __ are Prometheus's");
    }
    bad_name(name)
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn metric(name: &str, value: MetricValue, labels: &[(&str, &str)]) -> Metric {
        Metric {
            name: name.into(),
            help: format!("help of {name}"),
            value,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn render(stats: Vec<Metric>) -> String {
        let collected = std::sync::Arc::new(DriverStats::default());
        collected.set("raft", stats);
        let mut registry = Registry::with_prefix("tsohost");
        registry.register_collector(Box::new(collected));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn publishes_counters_and_gauges_under_the_drivers_name() {
        let out = render(vec![
            metric("elections", MetricValue::Counter(3), &[]),
            metric(
                "messages_sent_total",
                MetricValue::Counter(9),
                &[("peer", "2")],
            ),
            metric(
                "messages_sent_total",
                MetricValue::Counter(4),
                &[("peer", "3")],
            ),
            metric("term", MetricValue::Gauge(-1), &[]),
        ]);
        for line in [
            "# TYPE tsohost_driver_elections_total counter",
            "tsohost_driver_elections_total{driver=\"raft\"} 3",
            "tsohost_driver_messages_sent_total{driver=\"raft\",peer=\"2\"} 9",
            "tsohost_driver_messages_sent_total{driver=\"raft\",peer=\"3\"} 4",
            "# TYPE tsohost_driver_term gauge",
            "tsohost_driver_term{driver=\"raft\"} -1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} missing in\n{out}");
        }
    }

    #[test]
    fn drops_what_cannot_be_published_and_says_why() {
        let (families, refusals) = sift(vec![
            metric("", MetricValue::Counter(1), &[]),
            metric("Up", MetricValue::Counter(1), &[]),
            metric("a b", MetricValue::Counter(1), &[]),
            metric("x\n", MetricValue::Counter(1), &[]),
            metric("ok", MetricValue::Gauge(1), &[("driver", "evil")]),
            metric("ok", MetricValue::Gauge(1), &[("__name__", "evil")]),
            metric("ok", MetricValue::Gauge(2), &[("peer", "a\"\n")]),
            metric("ok", MetricValue::Counter(1), &[("peer", "b")]),
            metric("ok", MetricValue::Gauge(3), &[("node", "b")]),
            metric("ok", MetricValue::Gauge(4), &[("peer", "a\"\n")]),
        ]);
        assert_eq!(refusals.len(), 9, "{refusals:#?}");
        assert_eq!(families.len(), 1);
        assert_eq!(families["ok"].series.len(), 1);
        let out = render(vec![metric(
            "ok",
            MetricValue::Gauge(2),
            &[("peer", "a\"\n")],
        )]);
        assert!(
            out.contains(r#"tsohost_driver_ok{driver="raft",peer="a\"\n"} 2"#),
            "label values are escaped: {out}"
        );
    }

    #[test]
    fn the_hosts_own_driver_metrics_are_reserved() {
        let host = crate::metrics::Metrics::new().render();
        let own: Vec<&str> = host
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE tsohost_driver_"))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(!own.is_empty());
        for name in own {
            let base = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                RESERVED.contains(&base),
                "tsohost_driver_{name} is the host's: add {base:?} to RESERVED"
            );
        }
        for name in ["crashes", "swaps_total"] {
            let (families, refusals) = sift(vec![metric(name, MetricValue::Gauge(1), &[])]);
            assert!(families.is_empty() && refusals.len() == 1, "{name}");
        }
    }

    #[test]
    fn keeps_at_most_the_cap() {
        let many = (0..MAX_STATS + 10)
            .map(|i| metric(&format!("m{i}"), MetricValue::Gauge(1), &[]))
            .collect();
        let (families, refusals) = sift(many);
        assert_eq!(families.len(), MAX_STATS);
        assert_eq!(refusals.len(), 1);
    }
}
