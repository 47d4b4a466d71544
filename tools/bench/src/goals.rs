//! The performance goals of the store, checked against one run of `bench store`, and the ratio
//! of every figure to the disk yardstick.
//!
//! Owns: the goal thresholds (from the issue that introduced the benchmark):
//! - ASYNC, 4 KiB bodies: durable MB/s >= 70% of the raw sequential-write bandwidth;
//! - ASYNC, 128 B bodies, one producer: >= 1,000,000 msgs/s;
//! - SYNC, 64 producers: >= 20x the single-producer SYNC msgs/s (group commit works).
//!
//! Invariants: a goal is only reported when the run has the cases that decide it; the ASYNC
//! bandwidth goal uses the *durable* rate (ack time plus the final flush), never the ack rate,
//! which can exceed the disk while the data is still only in the page cache.
//!
//! Pure functions over the results; called by [`super::store`] once all cases ran. Depends on
//! [`super::report`] (the result types) and [`super::goal`], never the other way round.
//!
//! Owns the store's goal thresholds; must not do I/O or print (`report.rs` renders the goals).

use super::goal::Goal;
use super::report::{AppendResult, ReadResult};
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

/// The goals that the cases in `cases` can decide.
pub fn check(cases: &[AppendResult]) -> Vec<Goal> {
    let mut out = Vec::new();
    for c in cases
        .iter()
        .filter(|c| c.flush == "ASYNC" && c.body_bytes == 4096)
    {
        out.push(Goal::at_least(
            format!("ASYNC 4KiB x{}: durable MB/s / disk MB/s", c.producers),
            c.durable_disk_ratio,
            0.70,
        ));
    }
    if let Some(c) = find(cases, "ASYNC", 128, 1) {
        out.push(Goal::at_least(
            "ASYNC 128B x1: msgs/s".into(),
            c.msgs_per_sec,
            1e6,
        ));
    }
    for one in cases
        .iter()
        .filter(|c| c.flush == "SYNC" && c.producers == 1)
    {
        if let Some(many) = find(cases, "SYNC", one.body_bytes, 64) {
            let ratio = if one.msgs_per_sec > 0.0 {
                many.msgs_per_sec / one.msgs_per_sec
            } else {
                0.0
            };
            out.push(Goal::at_least(
                format!("SYNC {} x64 / x1 msgs/s", size_label(one.body_bytes)),
                ratio,
                20.0,
            ));
        }
    }
    out
}
