//! The summary of a bench's runs: every figure of every run, and its median and min-max.
//!
//! Owns: [`Metric`] (one figure of one run, as a bench names it), [`Summary`] (one figure over
//! all runs; serialised as it is, so its field names are part of the JSON contract),
//! [`summarize`], [`median`] and the number format of the summary table.
//!
//! Invariants: the median of an even number of values is the mean of the middle two; a run
//! that lacks a figure (or measured NaN) is `null` in that figure's values and does not count
//! for its median, min or max, and `runs` says how many did; figures keep the order in which
//! the benches first name them.
//!
//! Pure functions; called by [`super::output`] and the goal checks. Must not measure or print.

use serde::Serialize;

/// One figure of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// What it is (`pop+ack x4`, `send->pop p99`).
    pub name: String,
    /// Its unit (`msgs/s`, `ms`, `µs/msg`, `x`).
    pub unit: &'static str,
    /// The figure.
    pub value: f64,
}

impl Metric {
    /// A figure named `name` in `unit`.
    pub fn new(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            unit,
            value,
        }
    }
}

/// One figure over all runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// What it is.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// Median of the runs that measured it.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Runs that measured it.
    pub runs: usize,
    /// Every run's figure, in run order (`None`: not measured in that run).
    pub values: Vec<Option<f64>>,
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Every figure named in any run, with its median and min-max over the runs.
pub fn summarize(runs: &[Vec<Metric>]) -> Vec<Summary> {
    let mut names: Vec<(&str, &'static str)> = Vec::new();
    for m in runs.iter().flatten() {
        if !names.iter().any(|(n, _)| *n == m.name) {
            names.push((&m.name, m.unit));
        }
    }
    names
        .into_iter()
        .filter_map(|(name, unit)| {
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|run| {
                    run.iter()
                        .find(|m| m.name == name)
                        .map(|m| m.value)
                        .filter(|v| v.is_finite())
                })
                .collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            Some(Summary {
                name: name.to_owned(),
                unit,
                median: median(&present)?,
                min: present.iter().copied().fold(f64::INFINITY, f64::min),
                max: present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                runs: present.len(),
                values,
            })
        })
        .collect()
}

/// A figure as the tables print it: no decimals from 1,000 on, one from 100, two from 1,
/// three significant digits below.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1000.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let decimals = (2.0 - a.log10().floor()).clamp(3.0, 9.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// The summary as table lines: name, unit, median, min-max, then each run's figure.
pub fn lines(summary: &[Summary]) -> Vec<String> {
    let runs = summary.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let mut rows: Vec<Vec<String>> = vec![{
        let mut h = vec![
            "figure".into(),
            "unit".into(),
            "median".into(),
            "min-max".into(),
        ];
        h.extend((1..=runs).map(|i| format!("run {i}")));
        h
    }];
    for s in summary {
        let mut r = vec![
            s.name.clone(),
            s.unit.to_owned(),
            number(s.median),
            format!("{}-{}", number(s.min), number(s.max)),
        ];
        r.extend(
            s.values
                .iter()
                .map(|v| v.map_or_else(|| "-".into(), number)),
        );
        rows.push(r);
    }
    align(&rows, 2)
}

/// Rows as lines of aligned columns, two spaces apart and indented by two: the first `left`
/// columns left-aligned (names), the others right-aligned (figures).
pub fn align(rows: &[Vec<String>], left: usize) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let pad = " ".repeat(width[c].saturating_sub(s.chars().count()));
                    if c < left {
                        format!("{s}{pad}")
                    } else {
                        format!("{pad}{s}")
                    }
                })
                .collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 5.0, 1.0]), Some(5.0));
    }

    #[test]
    fn summary_keeps_every_run_and_the_order() {
        let run = |a: f64, b: Option<f64>| {
            let mut v = vec![Metric::new("x1", "msgs/s", a)];
            if let Some(b) = b {
                v.push(Metric::new("p99", "ms", b));
            }
            v
        };
        let s = summarize(&[
            run(100.0, Some(3.0)),
            run(300.0, None),
            run(200.0, Some(f64::NAN)),
            run(50.0, Some(1.0)),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "x1");
        assert_eq!(s[0].unit, "msgs/s");
        assert_eq!((s[0].median, s[0].min, s[0].max), (150.0, 50.0, 300.0));
        assert_eq!(s[0].runs, 4);
        assert_eq!(
            s[0].values,
            vec![Some(100.0), Some(300.0), Some(200.0), Some(50.0)]
        );
        // Missing and NaN figures are null and do not count.
        assert_eq!(s[1].values, vec![Some(3.0), None, None, Some(1.0)]);
        assert_eq!(
            (s[1].median, s[1].min, s[1].max, s[1].runs),
            (2.0, 1.0, 3.0, 2)
        );
        let json = serde_json::to_value(&s[1]).unwrap();
        assert_eq!(json["values"], serde_json::json!([3.0, null, null, 1.0]));
        assert_eq!(json["median"], 2.0);
    }

    #[test]
    fn table_shows_median_range_and_runs() {
        let s = summarize(&[
            vec![Metric::new("pop+ack x1", "msgs/s", 480_123.4)],
            vec![Metric::new("pop+ack x1", "msgs/s", 500_000.0)],
            vec![Metric::new("pop+ack x1", "msgs/s", 470_000.0)],
        ]);
        let l = lines(&s);
        assert_eq!(l.len(), 2);
        assert!(l[0].contains("median") && l[0].contains("min-max") && l[0].ends_with("run 3"));
        let cells: Vec<&str> = l[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "pop+ack",
                "x1",
                "msgs/s",
                "480123",
                "470000-500000",
                "480123",
                "500000",
                "470000"
            ]
        );
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(1_302_289.3), "1302289");
        assert_eq!(number(123.45), "123.5");
        assert_eq!(number(5.972), "5.97");
        assert_eq!(number(0.0234), "0.0234");
        assert_eq!(number(0.5), "0.500");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "-");
    }
}
