//! What a chaos run prints: the faults applied, an availability timeline,
//! and the verdict with the requests involved in any violation.

use super::nemesis::Fault;
use crate::tools::checker::Violation;
use std::fmt;
use std::path::PathBuf;

/// Answered and failed requests in one slice of the run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Slice {
    pub from_ms: u64,
    pub answered: u64,
    pub failed: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub driver: String,
    pub nodes: u64,
    pub clients: usize,
    pub seed: u64,
    pub duration_ms: u64,
    pub faults: Vec<Fault>,
    pub timeline: Vec<Slice>,
    pub answered: u64,
    pub timestamps: u64,
    pub failed: u64,
    pub violations: Vec<Violation>,
    /// Where the nodes' logs and data are.
    pub dir: PathBuf,
}

impl Report {
    pub fn kept(&self) -> bool {
        self.violations.is_empty()
    }

    /// Split answers and failures (times in µs since the start) into
    /// slices of `slice_ms`.
    pub fn timeline(
        answered: &[u64],
        failed: &[u64],
        duration_ms: u64,
        slice_ms: u64,
    ) -> Vec<Slice> {
        let slice_ms = slice_ms.max(1);
        let n = (duration_ms / slice_ms + 1) as usize;
        let mut slices: Vec<Slice> = (0..n)
            .map(|i| Slice {
                from_ms: i as u64 * slice_ms,
                ..Slice::default()
            })
            .collect();
        let index = |us: u64| ((us / 1000 / slice_ms) as usize).min(n - 1);
        for &t in answered {
            slices[index(t)].answered += 1;
        }
        for &t in failed {
            slices[index(t)].failed += 1;
        }
        slices
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tsohost chaos: driver {}, {} nodes, {} clients, {:.0} s, seed {}",
            self.driver,
            self.nodes,
            self.clients,
            self.duration_ms as f64 / 1e3,
            self.seed
        )?;
        writeln!(f, "\nfaults ({}):", self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        let widest = self
            .timeline
            .iter()
            .map(|s| s.answered)
            .max()
            .unwrap_or(0)
            .max(1);
        writeln!(f, "\navailability (answered / failed requests per slice):")?;
        for s in &self.timeline {
            let bar = "#".repeat((s.answered * 40).div_ceil(widest) as usize);
            writeln!(
                f,
                "  {:>7.1} s {:>7} {:>6}  {bar}",
                s.from_ms as f64 / 1e3,
                s.answered,
                s.failed
            )?;
        }
        writeln!(
            f,
            "\n{} answered requests ({} timestamps), {} failed or timed out",
            self.answered, self.timestamps, self.failed
        )?;
        if self.kept() {
            writeln!(
                f,
                "contract kept: no timestamp handed out twice, real-time order held across \
                 all clients and nodes"
            )?;
        } else {
            writeln!(
                f,
                "CONTRACT VIOLATED ({} violation(s) shown):",
                self.violations.len()
            )?;
            for v in &self.violations {
                writeln!(f, "  {v}")?;
            }
        }
        if !self.kept() {
            writeln!(f, "node logs and data: {}", self.dir.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_counts_each_request_once_in_its_slice() {
        let t = Report::timeline(
            &[0, 999_999, 1_000_000, 9_999_999_999],
            &[1_500_000],
            2_000,
            1_000,
        );
        let counts: Vec<(u64, u64)> = t.iter().map(|s| (s.answered, s.failed)).collect();
        assert_eq!(counts, vec![(2, 0), (1, 1), (1, 0)]);
    }
}
