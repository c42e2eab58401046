//! What happened, for the report of a violation: the last events of each
//! node (and of the nemesis) in the order they happened.
//!
//! Everything in a trace is a function of the component and the seed: times
//! are simulated, never measured, so a replay prints the same trace byte for
//! byte.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

/// Events kept per node: enough to show how a violation came about, few
/// enough to read.
pub const KEEP_PER_NODE: usize = 12;

/// Who an event belongs to: a node, or the nemesis (0).
pub const NEMESIS: u64 = 0;

#[derive(Debug, Default)]
pub struct Trace {
    /// Print every event as it is noted.
    print: bool,
    seq: u64,
    recent: BTreeMap<u64, VecDeque<(u64, String)>>,
}

/// A simulated time, µs, as seconds with ms: `12.345s`.
pub fn secs(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us / 1_000) % 1_000)
}

impl Trace {
    /// A trace that also prints every event as it is noted, if `print`.
    pub fn printing(print: bool) -> Trace {
        Trace {
            print,
            ..Trace::default()
        }
    }

    /// Note that `line` happened on `node` at `now_us`.
    pub fn note(&mut self, now_us: u64, node: u64, line: impl AsRef<str>) {
        self.seq += 1;
        let who = if node == NEMESIS {
            "nemesis".to_string()
        } else {
            format!("n{node}")
        };
        let text = format!("{:>9} {who:<7} {}", secs(now_us), line.as_ref());
        if self.print {
            println!("  {text}");
        }
        let recent = self.recent.entry(node).or_default();
        if recent.len() == KEEP_PER_NODE {
            recent.pop_front();
        }
        recent.push_back((self.seq, text));
    }

    /// The kept events of every node, merged in the order they happened.
    pub fn render(&self) -> String {
        let mut lines: Vec<&(u64, String)> = self.recent.values().flatten().collect();
        lines.sort_by_key(|(seq, _)| *seq);
        let mut out = String::new();
        for (_, line) in lines {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_events_of_each_node_in_order() {
        let mut t = Trace::default();
        for i in 0..20 {
            t.note(i * 1_000, 1, format!("a{i}"));
            if i % 5 == 0 {
                t.note(i * 1_000 + 1, 2, format!("b{i}"));
            }
        }
        let out = t.render();
        assert!(!out.contains(" a7\n") && out.contains(" a8\n") && out.contains(" a19\n"));
        assert!(out.contains(" b0\n"), "a quiet node keeps older events");
        let a8 = out.find(" a8\n").unwrap();
        let b10 = out.find(" b10\n").unwrap();
        let a11 = out.find(" a11\n").unwrap();
        assert!(a8 < b10 && b10 < a11, "{out}");
        assert_eq!(secs(12_345_678), "12.345s");
    }
}
