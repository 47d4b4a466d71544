//! Performance goals and whether a bench's runs meet them: what every bench reports at the
//! end of its output (and in `--json`).
//!
//! Owns: [`Spec`] (a goal as a bench states it: the figure of the summary it is judged on, the
//! threshold, where the goal comes from, and why this run cannot decide it, if so), [`Goal`]
//! (the verdict; serialised as it is, so its field names are part of the JSON contract) and
//! [`judge`].
//!
//! Invariants: a goal is judged on the **median** of its figure over the runs, never on one
//! run; its min-max is reported beside it. A goal the run's settings or tools cannot decide is
//! reported as `NOT DECIDED` with the reason, never left out. A figure no run measured makes
//! its goal `NOT DECIDED` too.
//!
//! Pure data and functions; depends only on [`super::summary`]. The thresholds themselves live
//! with each bench (`goals.rs` for `bench store`, the other benches' modules for theirs).

use serde::Serialize;

use super::summary::Summary;

/// Which side of the target meets the goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `value >= target`.
    AtLeast,
    /// `value <= target`.
    AtMost,
}

impl Bound {
    /// `>=` or `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::AtLeast => ">=",
            Self::AtMost => "<=",
        }
    }
}

/// A goal as a bench states it.
#[derive(Debug, Clone)]
pub struct Spec {
    metric: String,
    bound: Bound,
    target: f64,
    source: &'static str,
    undecided: Option<String>,
}

impl Spec {
    /// The summary figure `metric` must be at least `target`; the goal comes from `source`.
    pub fn at_least(metric: impl Into<String>, target: f64, source: &'static str) -> Self {
        Self::new(metric.into(), Bound::AtLeast, target, source)
    }

    /// The summary figure `metric` must be at most `target`.
    pub fn at_most(metric: impl Into<String>, target: f64, source: &'static str) -> Self {
        Self::new(metric.into(), Bound::AtMost, target, source)
    }

    fn new(metric: String, bound: Bound, target: f64, source: &'static str) -> Self {
        Self {
            metric,
            bound,
            target,
            source,
            undecided: None,
        }
    }

    /// This run cannot decide the goal, for `why` (if `Some`).
    #[must_use]
    pub fn unless(mut self, why: Option<String>) -> Self {
        if self.undecided.is_none() {
            self.undecided = why;
        }
        self
    }
}

/// The verdict on one goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The median is within the bound.
    #[serde(rename = "MET")]
    Met,
    /// The median is outside the bound.
    #[serde(rename = "NOT MET")]
    NotMet,
    /// The run cannot decide it (`reason` says why).
    #[serde(rename = "NOT DECIDED")]
    NotDecided,
}

impl Status {
    /// As printed.
    pub fn label(self) -> &'static str {
        match self {
            Self::Met => "MET",
            Self::NotMet => "NOT MET",
            Self::NotDecided => "NOT DECIDED",
        }
    }
}

/// One goal and whether the runs meet it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The summary figure it is judged on.
    pub metric: String,
    /// Its unit.
    pub unit: &'static str,
    /// `>=` when `target` is a lower bound, `<=` when it is an upper bound.
    pub bound: &'static str,
    /// The threshold.
    pub target: f64,
    /// The median of the figure over the runs (what the verdict is on).
    pub median: Option<f64>,
    /// Smallest of the runs.
    pub min: Option<f64>,
    /// Largest of the runs.
    pub max: Option<f64>,
    /// Runs the median is of.
    pub runs: usize,
    /// The verdict.
    pub status: Status,
    /// Why it is not decided.
    pub reason: Option<String>,
    /// Where the goal comes from (`issue 3`).
    pub source: &'static str,
}

/// Judges every goal on the median of its figure in `summary`.
pub fn judge(specs: Vec<Spec>, summary: &[Summary]) -> Vec<Goal> {
    specs
        .into_iter()
        .map(|s| {
            let found = summary.iter().find(|f| f.name == s.metric);
            let undecided = s.undecided.or_else(|| {
                found
                    .is_none()
                    .then(|| "no run measured this figure".to_owned())
            });
            let status = match (found, &undecided) {
                (Some(f), None) => {
                    let met = match s.bound {
                        Bound::AtLeast => f.median >= s.target,
                        Bound::AtMost => f.median <= s.target,
                    };
                    if met {
                        Status::Met
                    } else {
                        Status::NotMet
                    }
                }
                _ => Status::NotDecided,
            };
            Goal {
                unit: found.map_or("", |f| f.unit),
                median: found.map(|f| f.median),
                min: found.map(|f| f.min),
                max: found.map(|f| f.max),
                runs: found.map_or(0, |f| f.runs),
                metric: s.metric,
                bound: s.bound.symbol(),
                target: s.target,
                status,
                reason: undecided,
                source: s.source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{summarize, Metric};

    #[test]
    fn judged_on_the_median() {
        let runs: Vec<Vec<Metric>> = [150.0, 250.0, 260.0]
            .iter()
            .map(|v| vec![Metric::new("x1", "msgs/s", *v)])
            .collect();
        let s = summarize(&runs);
        let g = judge(
            vec![
                Spec::at_least("x1", 200.0, "issue 3"),
                Spec::at_most("x1", 200.0, "issue 3"),
                Spec::at_least("x1", 100.0, "issue 3").unless(Some("size is not 1 KiB".into())),
                Spec::at_most("p99", 5.0, "issue 3"),
            ],
            &s,
        );
        assert_eq!(g[0].status, Status::Met);
        assert_eq!(g[0].median, Some(250.0));
        assert_eq!(
            (g[0].min, g[0].max, g[0].runs),
            (Some(150.0), Some(260.0), 3)
        );
        assert_eq!(g[1].status, Status::NotMet);
        assert_eq!(g[2].status, Status::NotDecided);
        assert_eq!(g[2].reason.as_deref(), Some("size is not 1 KiB"));
        assert_eq!(g[3].status, Status::NotDecided);
        assert_eq!(g[3].reason.as_deref(), Some("no run measured this figure"));
    }
}
