//! Reading a node's `/metrics` (the Prometheus text format 0.0.4) back, for
//! `tsohost status`: the samples, counters summed over their labels, and a
//! latency quantile from a histogram's buckets.
//!
//! Only what the exposition format says a sample line is, with no client
//! library: the CLI needs a handful of numbers from a document the host
//! itself renders, and a pure function over text is what can be tested
//! against every corner of the format (escaped label values, `+Inf`,
//! timestamps) without a node.

use std::collections::BTreeMap;

/// A line of the exposition that is not a sample: the CLI reports it and
/// shows the status without the metrics rather than guess.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("line {line} of /metrics is not a sample ({why}): {text:?}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// What was wrong.
    pub why: &'static str,
    /// The line itself.
    pub text: String,
}

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`..._bucket`, `..._count` included).
    pub name: String,
    /// Its labels in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    /// Its value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape, in the order the node wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// The samples.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parse a whole exposition; `#` lines (HELP, TYPE, comments) and blank
    /// lines are skipped.
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let samples = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| {
                parse_sample(l.trim()).map_err(|why| ParseError {
                    line: i + 1,
                    why,
                    text: l.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Scrape { samples })
    }

    /// The sum of every series named `name` (a counter over all its
    /// labels); `None` when the node has no such series, so that a
    /// metric an older node lacks is told apart from a zero.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }

    /// The cumulative buckets of histogram `name` summed over all its
    /// series (every route and result): `(upper bound, count)` in
    /// increasing bound order, `+Inf` last. Empty when there is none.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_bound: BTreeMap<OrderedBound, f64> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            if let Some(le) = s.label("le").and_then(parse_value) {
                *by_bound.entry(OrderedBound(le)).or_default() += s.value;
            }
        }
        by_bound.into_iter().map(|(b, n)| (b.0, n)).collect()
    }
}

/// An `f64` bucket bound as a map key, in `total_cmp` order (which puts
/// `+Inf` last, where the format wants it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedBound(f64);
impl Eq for OrderedBound {}
impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// What happened between two scrapes of the same histogram: the
/// difference of each cumulative bucket. A bucket that went down (the node
/// restarted in between) counts as 0, and bounds only one side has are
/// dropped, so that the result is still a histogram.
pub fn bucket_delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .filter_map(|&(bound, n)| {
            let old = before.iter().find(|(b, _)| *b == bound)?.1;
            Some((bound, (n - old).max(0.0)))
        })
        .collect()
}

/// The `q`-quantile (0 to 1) of the observations in cumulative `buckets`
/// (as [`Scrape::buckets`] returns), estimated as Prometheus's
/// `histogram_quantile` does: find the bucket the rank falls in and
/// interpolate linearly between its lower and upper bound (the first
/// bucket's lower bound is 0; a rank in the `+Inf` bucket answers the
/// highest finite bound, all one can say). `None` with no observations,
/// no `+Inf` bucket or a `q` outside 0..=1.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let &(last_bound, total) = buckets.last()?;
    if last_bound != f64::INFINITY || total <= 0.0 || buckets.len() < 2 {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|&(_, n)| n >= rank)?;
    if i == buckets.len() - 1 {
        return Some(buckets[i - 1].0);
    }
    let (upper, count) = buckets[i];
    let (lower, below) = match i {
        0 if upper <= 0.0 => return Some(upper),
        0 => (0.0, 0.0),
        _ => buckets[i - 1],
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

/// `name{labels} value [timestamp]`, or why not.
fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .and_then(parse_value)
        .ok_or("no or a bad value")?;
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(ts), None) if ts.parse::<i64>().is_ok() => {}
        _ => return Err("text after the value"),
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The labels after `{`, into `labels`; answers what follows the `}`.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("a label without a value")?;
        let key = rest[..eq].trim();
        if !valid_name(key) || key.contains(':') {
            return Err("bad label name");
        }
        rest = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value not in quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("an unterminated label value")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return Err("a bad escape in a label value"),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = rest[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(after) => after,
            None if rest.starts_with('}') => rest,
            None => return Err("labels not separated by commas"),
        };
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample value or bucket bound: a Go float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)) => {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP tsohost_requests_total Timestamp requests.
# TYPE tsohost_requests_total counter
tsohost_requests_total{route="/v1/timestamps",result="ok"} 20
tsohost_requests_total{route="/v1/timestamp",result="bad"} 3

tsohost_request_duration_seconds_bucket{route="/v1/timestamps",result="ok",le="0.001"} 10
tsohost_request_duration_seconds_bucket{route="/v1/timestamps",result="ok",le="0.01"} 18
tsohost_request_duration_seconds_bucket{route="/v1/timestamps",result="ok",le="+Inf"} 20
tsohost_request_duration_seconds_bucket{route="/v1/timestamp",result="bad",le="0.001"} 2
tsohost_request_duration_seconds_bucket{route="/v1/timestamp",result="bad",le="0.01"} 2
tsohost_request_duration_seconds_bucket{route="/v1/timestamp",result="bad",le="+Inf"} 3
tsohost_request_duration_seconds_sum{route="/v1/timestamps",result="ok"} 0.0003
tsohost_window_headroom_seconds 2.676 1700000000000
tsohost_driver_log_entries{driver="raft",note="a \"quoted\", \\ back\nslash}"} 5
tsohost_high_water_seconds 1.796218856892e9
weird_nan NaN
"#;

    #[test]
    fn samples_keep_their_names_labels_and_values() {
        let scrape = Scrape::parse(TEXT).unwrap();
        assert_eq!(scrape.samples.len(), 13);
        assert_eq!(scrape.sum("tsohost_requests_total"), Some(23.0));
        assert_eq!(scrape.sum("tsohost_window_headroom_seconds"), Some(2.676));
        assert_eq!(
            scrape.sum("tsohost_high_water_seconds"),
            Some(1_796_218_856.892)
        );
        assert_eq!(scrape.sum("tsohost_elections_total"), None);
        assert!(scrape.sum("weird_nan").unwrap().is_nan());
        let entries = scrape
            .samples
            .iter()
            .find(|s| s.name == "tsohost_driver_log_entries")
            .unwrap();
        assert_eq!(entries.label("driver"), Some("raft"));
        assert_eq!(entries.label("note"), Some("a \"quoted\", \\ back\nslash}"));
        assert_eq!(entries.value, 5.0);
    }

    #[test]
    fn histogram_buckets_are_summed_over_series_in_bound_order() {
        let scrape = Scrape::parse(TEXT).unwrap();
        assert_eq!(
            scrape.buckets("tsohost_request_duration_seconds"),
            vec![(0.001, 12.0), (0.01, 20.0), (f64::INFINITY, 23.0)]
        );
        assert!(scrape.buckets("tsohost_load_duration_seconds").is_empty());
    }

    #[test]
    fn lines_that_are_not_samples_are_refused_with_their_number() {
        let cases = [
            ("x", "no value"),
            ("x{a=\"1\"}", "no or a bad value"),
            ("x abc", "no or a bad value"),
            ("x 1 2 3", "text after the value"),
            ("x 1 soon", "text after the value"),
            ("9x 1", "bad metric name"),
            ("x{a=1} 1", "a label value not in quotes"),
            ("x{a=\"1} 1", "an unterminated label value"),
            ("x{a=\"\\t\"} 1", "a bad escape in a label value"),
            ("x{a=\"1\" b=\"2\"} 1", "labels not separated by commas"),
            ("x{a} 1", "a label without a value"),
        ];
        for (line, why) in cases {
            let text = format!("# TYPE x gauge\n{line}\n");
            assert_eq!(
                Scrape::parse(&text),
                Err(ParseError {
                    line: 2,
                    why,
                    text: line.to_string()
                }),
                "{line}"
            );
        }
        // A trailing comma is allowed by the format.
        assert_eq!(
            Scrape::parse("x{a=\"1\",} 1").unwrap().samples[0].labels,
            vec![("a".to_string(), "1".to_string())]
        );
    }

    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("a quantile");
        assert!((got - want).abs() < 1e-12, "{got} is not {want}");
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let b = [(0.001, 10.0), (0.01, 18.0), (f64::INFINITY, 20.0)];
        // Rank 10 of 20 is the last of the first bucket: its upper bound.
        assert_eq!(quantile(0.5, &b), Some(0.001));
        // Rank 5: halfway through [0, 0.001].
        assert_eq!(quantile(0.25, &b), Some(0.0005));
        // Rank 14: 4 of the 8 in (0.001, 0.01].
        assert_close(quantile(0.7, &b), 0.0055);
        // Rank 19.8 is in +Inf: the highest finite bound.
        assert_eq!(quantile(0.99, &b), Some(0.01));
        assert_eq!(quantile(0.0, &b), Some(0.0));
        // Nothing observed, no +Inf bucket, q out of range.
        assert_eq!(quantile(0.5, &[(0.001, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[(0.001, 3.0), (0.01, 3.0)]), None);
        assert_eq!(quantile(1.5, &b), None);
        assert_eq!(quantile(0.5, &[]), None);
        // Empty buckets before the rank are skipped.
        let sparse = [(0.001, 0.0), (0.01, 0.0), (0.1, 4.0), (f64::INFINITY, 4.0)];
        assert_close(quantile(0.5, &sparse), 0.055);
    }

    #[test]
    fn a_delta_is_what_happened_between_two_scrapes() {
        let before = [(0.001, 10.0), (0.01, 18.0), (f64::INFINITY, 20.0)];
        let after = [(0.001, 10.0), (0.01, 28.0), (f64::INFINITY, 30.0)];
        let delta = bucket_delta(&after, &before);
        assert_eq!(
            delta,
            vec![(0.001, 0.0), (0.01, 10.0), (f64::INFINITY, 10.0)]
        );
        assert_close(quantile(0.5, &delta), 0.0055);
        // A restart in between: nothing negative.
        assert_eq!(
            bucket_delta(&before, &after),
            vec![(0.001, 0.0), (0.01, 0.0), (f64::INFINITY, 0.0)]
        );
    }
}
