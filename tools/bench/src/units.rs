//! Units of the bench flags and figures: parsing durations (`3s`, `500ms`) and sizes (`1GiB`,
//! `64M`), and the one definition of a megabyte used in every printed rate.
//!
//! Invariants: `MB` is 10^6 bytes (as `dd` prints), so rates compare directly with the usual
//! disk tools; sizes given with `Ki`/`Mi`/`Gi` are powers of two, `K`/`M`/`G` powers of ten.
//!
//! Pure functions; called by the clap parsers and the report.
//!
//! Must not depend on any other module of the crate.

use std::time::Duration;

/// Bytes in one MB of a printed rate.
pub const MB: f64 = 1e6;

/// `bytes` per `secs`, in MB/s (0 for an empty interval).
pub fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / MB / secs
    } else {
        0.0
    }
}

/// `count` per `secs` (0 for an empty interval).
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (s[..at].trim(), s[at..].trim())
}

/// Parses `3s`, `500ms`, `1.5s`, `2m` or a bare number of seconds.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_number(s.trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 3s or 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `4096`, `64KiB`, `1GiB`, `512M`, ... into bytes.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s.trim());
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 4096, 64KiB or 1GiB)"))?;
    let mult: u64 = match unit.trim_end_matches(['B', 'b']) {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`")),
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("`{s}` must be a positive size below 16 EiB"))
}

/// A body size for labels: `128B`, `1KiB`, `4KiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes_and_labels() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TiB").is_err());
        assert_eq!(size_label(128), "128B");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1000), "1000B");
        assert!((mb_per_sec(2_000_000, 2.0) - 1.0).abs() < 1e-9);
        assert_eq!(per_sec(5, 0.0), 0.0);
    }
}
