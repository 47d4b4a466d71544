//! What `bench replication` reports: the settings line, one run's tables, the figures the
//! summary keeps, and the goals.
//!
//! Owns the goals of issue 15 (replication), for 1 KiB sends with 64 producers:
//! - ASYNC replication >= 0.9 x the unreplicated master's msgs/s;
//! - SYNC replication >= 0.5 x ASYNC replication's msgs/s;
//!
//! each a ratio taken within a run (the cases of a run share the machine's state) and judged
//! on the median of the runs' ratios. The replication lag is reported (p50, p99, max, bytes
//! and ms) with no target: issue 15 asks for the figures only.
//!
//! Pure formatting and functions over the results; called by [`super::run`].

use super::lag::{LagResult, Spread};
use super::{CaseResult, ReplicationArgs, ReplicationRun, ReplicationSettings};
use crate::goal::Spec;
use crate::summary::{Metric, Summary};

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1e3)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

impl ReplicationSettings {
    /// The settings as printed under the header.
    pub(super) fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "settings: {} B bodies, one message per SendMessage, {} producers, {:.1} s per \
                 case, {} slave(s) in the replicated cases, {} flush on every process; SYNC \
                 requires min_in_sync_replicas = {}",
                self.body_bytes,
                self.producers,
                self.duration_secs,
                self.slaves,
                self.flush_mode.flag(),
                1 + self.slaves
            ),
            format!(
                "servers:  `{} broker` processes on 127.0.0.1, fresh per case; CPU from \
                 /proc/<pid>/stat (% of one CPU); lag sampled from the master's /metrics every \
                 {:.0} ms during the load",
                self.bin, self.sample_every_ms
            ),
        ]
    }
}

/// Prints one run's tables.
pub(super) fn print_run(r: &ReplicationRun) {
    println!(
        "{:<13} {:>6} {:>9} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10}",
        "case",
        "slaves",
        "msgs/s",
        "MB/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms",
        "master%",
        "slaves%",
        "mst µs/msg",
        "slv µs/msg"
    );
    for c in &r.cases {
        let s = &c.send;
        println!(
            "{:<13} {:>6} {:>9.0} {:>6.1} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10}",
            c.case,
            c.slaves,
            s.msgs_per_sec,
            s.mb_per_sec,
            s.errors,
            ms(s.latency.p50_us),
            ms(s.latency.p99_us),
            ms(s.latency.p999_us),
            ms(s.latency.max_us),
            opt(c.master_cpu_percent, 0),
            opt(c.slaves_cpu_percent, 0),
            opt(s.server_cpu_us_per_msg, 1),
            opt(c.slaves_cpu_us_per_msg, 1),
        );
    }
    let lagged: Vec<(&CaseResult, &LagResult)> = r
        .cases
        .iter()
        .filter_map(|c| c.lag.as_ref().map(|l| (c, l)))
        .collect();
    if lagged.is_empty() {
        return;
    }
    println!(
        "replication lag (master's /metrics; all slaves pooled)   bytes: p50 / p99 / max       \
         ms: p50 / p99 / max   in sync"
    );
    for (c, l) in lagged {
        let spread = |s: Option<Spread>, d: usize| {
            s.map_or_else(
                || "-".to_owned(),
                |s| format!("{:.d$} / {:.d$} / {:.d$}", s.p50, s.p99, s.max),
            )
        };
        let in_sync = match (l.in_sync_min, l.in_sync_max) {
            (Some(a), Some(b)) if a == b => format!("{a:.0}"),
            (Some(a), Some(b)) => format!("{a:.0}-{b:.0}"),
            _ => "-".into(),
        };
        let mut notes = Vec::new();
        if l.failed_scrapes > 0 {
            notes.push(format!("{} failed scrapes", l.failed_scrapes));
        }
        if l.not_caught_up > 0 {
            notes.push(format!("{} readings not caught up yet", l.not_caught_up));
        }
        println!(
            "  {:<11} {:>4} scrapes every {:.0} ms   {:>26}   {:>20}   {:>7}{}",
            c.case,
            l.scrapes,
            l.every_ms,
            spread(l.bytes, 0),
            spread(l.ms, 1),
            in_sync,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            }
        );
    }
}

fn msgs(r: &ReplicationRun, case: &str) -> Option<f64> {
    r.cases
        .iter()
        .find(|c| c.case == case)
        .map(|c| c.send.msgs_per_sec)
}

/// The figures of one run that the summary keeps.
pub(super) fn metrics(r: &ReplicationRun) -> Vec<Metric> {
    let mut out = Vec::new();
    for c in &r.cases {
        let s = &c.send;
        let name = c.case.as_str();
        out.push(Metric::new(name, "msgs/s", s.msgs_per_sec));
        out.push(Metric::new(
            format!("{name} p50"),
            "ms",
            s.latency.p50_us / 1e3,
        ));
        out.push(Metric::new(
            format!("{name} p99"),
            "ms",
            s.latency.p99_us / 1e3,
        ));
        out.push(Metric::new(
            format!("{name} p99.9"),
            "ms",
            s.latency.p999_us / 1e3,
        ));
        let total = match (s.server_cpu_us_per_msg, c.slaves_cpu_us_per_msg) {
            (Some(m), Some(sl)) => Some(m + sl),
            (m, None) if c.slaves == 0 => m,
            _ => None,
        };
        if let Some(t) = total {
            out.push(Metric::new(format!("{name} server CPU"), "µs/msg", t));
        }
        if let Some(l) = &c.lag {
            for (suffix, unit, spread) in [("", "bytes", l.bytes), (" time", "ms", l.ms)] {
                let Some(sp) = spread else { continue };
                for (q, v) in [("p50", sp.p50), ("p99", sp.p99), ("max", sp.max)] {
                    out.push(Metric::new(format!("{name} lag{suffix} {q}"), unit, v));
                }
            }
        }
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    if let Some(x) = ratio(msgs(r, "ASYNC"), msgs(r, "unreplicated")) {
        out.push(Metric::new("ASYNC / unreplicated", "x", x));
    }
    if let Some(x) = ratio(msgs(r, "SYNC"), msgs(r, "ASYNC")) {
        out.push(Metric::new("SYNC / ASYNC", "x", x));
    }
    out
}

/// The goals of issue 15, on the figures of [`metrics`].
pub(super) fn specs(_summary: &[Summary], a: &ReplicationArgs) -> Vec<Spec> {
    let mut setup = Vec::new();
    if a.size != 1024 {
        setup.push(format!("--size {} (the goal is for 1 KiB)", a.size));
    }
    if a.producers != 64 {
        setup.push(format!("--producers {} (the goal is for 64)", a.producers));
    }
    let setup = (!setup.is_empty()).then(|| setup.join(", "));
    vec![
        Spec::at_least("ASYNC / unreplicated", 0.9, "issue 15").unless(setup.clone()),
        Spec::at_least("SYNC / ASYNC", 0.5, "issue 15").unless(setup),
    ]
}
