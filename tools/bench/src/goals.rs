//! The performance goals of the store, the figures of one `bench store` run they are judged on,
//! and the ratio of every figure to the disk yardstick.
//!
//! Owns: the goal thresholds (issue 2, which introduced the benchmark; the SYNC one again in
//! issue 17):
//! - ASYNC, 4 KiB bodies: durable MB/s >= 70% of the raw sequential-write bandwidth;
//! - ASYNC, 128 B bodies, one producer: >= 1,000,000 msgs/s;
//! - SYNC, 64 producers: >= 20x the single-producer SYNC msgs/s (group commit works), the
//!   ratio taken within each run (both cases share that run's conditions).
//!
//! Invariants: every goal is stated whatever cases ran; one the run's cases cannot decide is
//! `NOT DECIDED` with the flags it needs. The ASYNC bandwidth goal uses the *durable* rate (ack
//! time plus the final flush), never the ack rate, which can exceed the disk while the data is
//! still only in the page cache.
//!
//! Pure functions over one run's results; called by [`super::store`]. Depends on
//! [`super::report`] (the result types), [`super::summary`] and [`super::goal`], never the other
//! way round. Must not do I/O or print.

use super::goal::Spec;
use super::report::{AppendResult, ReadResult, StoreRun};
use super::summary::{Metric, Summary};
use super::units::size_label;

/// Fills in every `disk_ratio` from the yardstick (MB/s).
pub fn apply_yardstick(appends: &mut [AppendResult], reads: &mut [ReadResult], yardstick: f64) {
    let ratio = |mb: f64| if yardstick > 0.0 { mb / yardstick } else { 0.0 };
    for a in appends {
        a.disk_ratio = ratio(a.mb_per_sec);
        a.durable_disk_ratio = ratio(a.durable_mb_per_sec);
    }
    for r in reads {
        r.disk_ratio = ratio(r.mb_per_sec);
    }
}

fn find<'a>(
    cases: &'a [AppendResult],
    flush: &str,
    body: usize,
    producers: usize,
) -> Option<&'a AppendResult> {
    cases
        .iter()
        .find(|c| c.flush == flush && c.body_bytes == body && c.producers == producers)
}

fn label(flush: &str, body: usize, producers: usize) -> String {
    format!("{flush} {} x{producers}", size_label(body))
}

/// The figures of one run that the summary keeps: the yardstick, every case's msgs/s, every
/// ASYNC case's durable ratio to the disk, the SYNC x64 / x1 ratio of each size, and every
/// read pass.
pub fn metrics(r: &StoreRun) -> Vec<Metric> {
    let mut out = vec![Metric::new(
        "disk yardstick",
        "MB/s",
        r.disk.yardstick_mb_per_sec,
    )];
    for c in &r.append {
        let l = label(c.flush, c.body_bytes, c.producers);
        out.push(Metric::new(l.clone(), "msgs/s", c.msgs_per_sec));
        if c.flush == "ASYNC" {
            let name = format!("{l} durable / disk");
            out.push(Metric::new(name, "x", c.durable_disk_ratio));
        }
    }
    for one in r
        .append
        .iter()
        .filter(|c| c.flush == "SYNC" && c.producers == 1)
    {
        if let Some(many) = find(&r.append, "SYNC", one.body_bytes, 64) {
            let ratio = if one.msgs_per_sec > 0.0 {
                many.msgs_per_sec / one.msgs_per_sec
            } else {
                0.0
            };
            let name = format!("SYNC {} x64 / x1 msgs/s", size_label(one.body_bytes));
            out.push(Metric::new(name, "x", ratio));
        }
    }
    for p in &r.read {
        let name = format!("read {} x{}", size_label(p.body_bytes), p.producers);
        out.push(Metric::new(name, "msgs/s", p.msgs_per_sec));
    }
    out
}

/// The store's goals, on the figures of [`metrics`].
pub fn specs(summary: &[Summary]) -> Vec<Spec> {
    let has = |name: &str| summary.iter().any(|s| s.name == name);
    let missing = |name: &str, flags: &str| {
        (!has(name)).then(|| format!("no {name} case in this run ({flags})"))
    };
    let mut out = Vec::new();
    let async_4k: Vec<&Summary> = summary
        .iter()
        .filter(|s| s.name.starts_with("ASYNC 4KiB x") && s.name.ends_with(" durable / disk"))
        .collect();
    if async_4k.is_empty() {
        out.push(
            Spec::at_least("ASYNC 4KiB x1 durable / disk", 0.70, "issue 2").unless(Some(
                "no ASYNC 4 KiB case in this run (--flush, --sizes)".into(),
            )),
        );
    }
    for s in async_4k {
        out.push(Spec::at_least(s.name.clone(), 0.70, "issue 2"));
    }
    let name = "ASYNC 128B x1";
    out.push(
        Spec::at_least(name, 1e6, "issue 2").unless(missing(name, "--flush, --sizes, --producers")),
    );
    let sync: Vec<&Summary> = summary
        .iter()
        .filter(|s| s.name.starts_with("SYNC ") && s.name.ends_with(" x64 / x1 msgs/s"))
        .collect();
    if sync.is_empty() {
        out.push(
            Spec::at_least("SYNC 1KiB x64 / x1 msgs/s", 20.0, "issues 2, 17").unless(Some(
                "needs SYNC cases with 1 and 64 producers (--flush sync --producers 1,64)".into(),
            )),
        );
    }
    for s in sync {
        out.push(Spec::at_least(s.name.clone(), 20.0, "issues 2, 17"));
    }
    out
}
