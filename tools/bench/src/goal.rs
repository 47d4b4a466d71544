//! One performance goal and whether a run meets it: what `bench store`, `bench consume` and
//! `bench delay` report at the end of their output (and in `--json`).
//!
//! Owns only the [`Goal`] type (serialised as it is, so its field names are part of the JSON
//! contract). Pure data: it depends on nothing in the crate, so that the checks (`goals.rs`,
//! the consume and delay benchmarks) and the rendering (`report.rs`) both depend on it and not
//! on each other.

use serde::Serialize;

/// One performance goal and whether this run meets it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is measured.
    pub name: String,
    /// The figure measured.
    pub value: f64,
    /// The figure required.
    pub target: f64,
    /// `>=` when `target` is a lower bound, `<=` when it is an upper bound.
    pub bound: &'static str,
    /// `value` is within the bound.
    pub met: bool,
}

impl Goal {
    /// A goal met by `value >= target`.
    pub fn at_least(name: String, value: f64, target: f64) -> Self {
        Self {
            name,
            value,
            target,
            bound: ">=",
            met: value >= target,
        }
    }

    /// A goal met by `value <= target`.
    pub fn at_most(name: String, value: f64, target: f64) -> Self {
        Self {
            name,
            value,
            target,
            bound: "<=",
            met: value <= target,
        }
    }
}
