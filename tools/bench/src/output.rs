//! The shape of every bench's output: the header, the settings, every run in full, the summary
//! (median and min-max of each figure over the runs) and the goals judged on the medians — as
//! tables on stdout, or as one JSON object with the same parts (`--json`).
//!
//! Owns: [`repeat`] (runs a bench's measurement N times, timing each and noting how busy other
//! processes kept the CPUs), [`Run`] and [`Output`] (serialised as they are: their field names
//! are part of the JSON contract), and the printing of everything but a run's own tables, which
//! each bench prints itself.
//!
//! Invariants: every run that was measured is printed (and serialised); nothing is dropped or
//! picked. Each run is a fresh setup (the bench's closure must make it one: a new broker in a
//! new directory). Progress goes to stderr, results to stdout.
//!
//! Called by every bench's `run`. Depends on [`super::header`], [`super::summary`],
//! [`super::goal`] and [`super::load`].

use std::time::Instant;

use serde::Serialize;

use super::goal::{self, Goal, Spec};
use super::header::Header;
use super::load;
use super::summary::{self, number, Metric, Summary};
use crate::error::{Context, Result};

/// One run of a bench.
#[derive(Debug, Clone, Serialize)]
pub struct Run<R> {
    /// 1-based.
    pub run: usize,
    /// Wall-clock seconds of the whole run (setup included).
    pub secs: f64,
    /// Percent of all CPUs that other processes used during the run.
    pub others_cpu_percent: Option<f64>,
    /// What the bench measured.
    pub result: R,
}

/// Runs `one(i)` for `i` in `1..=n`, each a fresh setup, and keeps every result.
///
/// # Errors
/// The first run's error, with the run named.
pub fn repeat<R>(n: usize, mut one: impl FnMut(usize) -> Result<R>) -> Result<Vec<Run<R>>> {
    let mut runs = Vec::with_capacity(n);
    for i in 1..=n {
        eprintln!("--- run {i} of {n}");
        let before = load::Probe::now();
        let start = Instant::now();
        let result = one(i).with_context(|| format!("run {i} of {n}"))?;
        runs.push(Run {
            run: i,
            secs: start.elapsed().as_secs_f64(),
            others_cpu_percent: before
                .zip(load::Probe::now())
                .and_then(|(a, b)| a.others_percent(&b)),
            result,
        });
    }
    Ok(runs)
}

/// Everything a bench prints.
#[derive(Debug, Clone, Serialize)]
pub struct Output<S, R> {
    /// What was measured, where, when, how.
    pub header: Header,
    /// The bench's settings.
    pub settings: S,
    /// Every run, in order.
    pub runs: Vec<Run<R>>,
    /// Each figure's median and min-max over the runs, with every run's value.
    pub summary: Vec<Summary>,
    /// The goals, judged on the medians.
    pub goals: Vec<Goal>,
}

impl<S: Serialize, R: Serialize> Output<S, R> {
    /// Summarises `runs` by the figures `metrics` takes from each, and judges `goals` on them.
    pub fn new(
        header: Header,
        settings: S,
        runs: Vec<Run<R>>,
        metrics: impl Fn(&R) -> Vec<Metric>,
        goals: impl FnOnce(&[Summary]) -> Vec<Spec>,
    ) -> Self {
        let per_run: Vec<Vec<Metric>> = runs.iter().map(|r| metrics(&r.result)).collect();
        let summary = summary::summarize(&per_run);
        let goals = goal::judge(goals(&summary), &summary);
        Self {
            header,
            settings,
            runs,
            summary,
            goals,
        }
    }

    /// Prints the output: one JSON object with `json`, else the header, `settings` (the lines
    /// it returns), each run (through `run`), the summary and the goals.
    ///
    /// # Errors
    /// JSON serialisation (none expected).
    pub fn print(
        &self,
        json: bool,
        settings: impl Fn(&S) -> Vec<String>,
        run: impl Fn(&R),
    ) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        self.header.print();
        for l in settings(&self.settings) {
            println!("{l}");
        }
        let n = self.runs.len();
        for r in &self.runs {
            println!();
            let others = r.others_cpu_percent.map_or_else(String::new, |p| {
                format!("; other processes used {p:.0}% of the CPUs")
            });
            println!("=== run {} of {n} ({:.1} s{others})", r.run, r.secs);
            run(&r.result);
        }
        println!();
        println!("=== summary: median and min-max of {n} run(s), and every run");
        for l in summary::lines(&self.summary) {
            println!("{l}");
        }
        println!();
        for l in goal_lines(&self.goals) {
            println!("{l}");
        }
        Ok(())
    }
}

/// The goal lines: figure, median, min-max, target, verdict and source.
pub fn goal_lines(goals: &[Goal]) -> Vec<String> {
    let mut out = vec!["=== goals (each judged on the median of the runs)".to_owned()];
    if goals.is_empty() {
        out.push("  (none)".into());
        return out;
    }
    let mut rows = vec![vec![
        "figure".into(),
        "unit".into(),
        "median".into(),
        "min-max".into(),
        "target".into(),
    ]];
    let mut verdicts = vec!["verdict".to_owned()];
    for g in goals {
        let range = match (g.min, g.max) {
            (Some(a), Some(b)) => format!("{}-{}", number(a), number(b)),
            _ => "-".into(),
        };
        rows.push(vec![
            g.metric.clone(),
            g.unit.to_owned(),
            g.median.map_or_else(|| "-".into(), number),
            range,
            format!("{} {}", g.bound, number(g.target)),
        ]);
        verdicts.push(match &g.reason {
            Some(why) => format!("{}: {why} ({})", g.status.label(), g.source),
            None => format!("{} ({})", g.status.label(), g.source),
        });
    }
    // The verdict, the last column, left-aligned: it is text.
    out.extend(
        summary::align(&rows, 2)
            .into_iter()
            .zip(verdicts)
            .map(|(l, v)| format!("{l}  {v}")),
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::goal::Status;

    #[test]
    fn every_run_is_kept_and_summarised() {
        let runs = repeat(3, |i| Ok(i as f64 * 100.0)).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[2].run, 3);
        let out = Output::new(
            Header::collect("test", 3),
            (),
            runs,
            |r| vec![Metric::new("x", "msgs/s", *r)],
            |_| {
                vec![
                    Spec::at_least("x", 150.0, "issue 0"),
                    Spec::at_most("y", 1.0, "issue 0"),
                ]
            },
        );
        assert_eq!(out.summary[0].median, 200.0);
        assert_eq!(out.goals[0].status, Status::Met);
        assert_eq!(out.goals[1].status, Status::NotDecided);
        let json = serde_json::to_value(&out).unwrap();
        for key in ["header", "settings", "runs", "summary", "goals"] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        assert_eq!(json["runs"].as_array().unwrap().len(), 3);
        assert_eq!(json["goals"][0]["status"], "MET");
        let lines = goal_lines(&out.goals);
        assert!(lines[2].contains(">= 150") && lines[2].ends_with("MET (issue 0)"));
        assert!(lines[3].contains("NOT DECIDED: no run measured this figure (issue 0)"));
    }

    #[test]
    fn a_failed_run_is_named() {
        let e = repeat(3, |i| {
            if i == 2 {
                Err(crate::error::failed!("lost 3 messages"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "run 2 of 3");
    }
}
