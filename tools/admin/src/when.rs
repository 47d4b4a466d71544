//! Times given on the command line (`--time`, `--begin`, `--end`, `--deliver-at`), and times
//! shown in the output.
//!
//! A `WHEN` is one of:
//! - milliseconds since the Unix epoch: `1764756000000`;
//! - an RFC 3339 time: `2026-12-03T10:00:00Z`, `2026-12-03T10:00:00.250Z`,
//!   `2026-12-03T11:00:00+01:00` (a zone is required);
//! - a duration (humantime syntax: `10m`, `2h`, `1h 30m`, `3days`), optionally followed by
//!   ` ago`: that long before now (for `--deliver-at`: that long after now);
//! - `now`.
//!
//! Invariants: parsing never reads the clock ([`When`] keeps a duration as is); the clock is
//! read once per command, when [`When::before`] or [`When::after`] resolves it. Times are shown
//! in RFC 3339 UTC with milliseconds. Pure: no I/O, no state.
//!
//! Owns the `WHEN` syntax; must not depend on any other module of the crate.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A fixed time, in ms since the Unix epoch.
    At(i64),
    /// A duration relative to now.
    Offset(Duration),
    /// Now.
    Now,
}

/// A `WHEN` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhenError(String);

impl fmt::Display for WhenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WhenError {}

const EXPECTED: &str = "expected ms since the epoch, an RFC 3339 time like \
                        2026-12-03T10:00:00Z, a duration ago like 10m or 2h, or `now`";

impl FromStr for When {
    type Err = WhenError;

    fn from_str(input: &str) -> Result<Self, WhenError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(WhenError(format!("empty time: {EXPECTED}")));
        }
        if s.eq_ignore_ascii_case("now") {
            return Ok(Self::Now);
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<i64>()
                .map(Self::At)
                .map_err(|_| WhenError(format!("`{s}` is too large for ms since the epoch")));
        }
        if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
            return rfc3339_ms(s).map(Self::At);
        }
        let duration = s.strip_suffix(" ago").unwrap_or(s).trim();
        humantime::parse_duration(duration)
            .map(Self::Offset)
            .map_err(|e| WhenError(format!("`{s}` is not a time ({e}): {EXPECTED}")))
    }
}

impl When {
    /// Resolves to ms since the epoch, a duration meaning that long before `now_ms`.
    pub fn before(self, now_ms: i64) -> i64 {
        match self {
            Self::At(ms) => ms,
            Self::Offset(d) => now_ms.saturating_sub(duration_ms(d)),
            Self::Now => now_ms,
        }
    }

    /// Resolves to ms since the epoch, a duration meaning that long after `now_ms`.
    pub fn after(self, now_ms: i64) -> i64 {
        match self {
            Self::At(ms) => ms,
            Self::Offset(d) => now_ms.saturating_add(duration_ms(d)),
            Self::Now => now_ms,
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The current time, in ms since the epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

/// Parses an RFC 3339 time with a `Z` or `±HH:MM` zone.
fn rfc3339_ms(input: &str) -> Result<i64, WhenError> {
    let bad = |why: &str| WhenError(format!("`{input}` is not an RFC 3339 time: {why}"));
    // `t` and `z` are allowed in lower case (RFC 3339 section 5.6).
    let upper = input.to_ascii_uppercase();
    let s = upper.as_str();
    let (utc, offset_s) = if s.ends_with('Z') {
        (s.to_owned(), 0)
    } else {
        let zone = s
            .len()
            .checked_sub(6)
            .and_then(|at| Some((at, s.get(at..)?)))
            .filter(|(_, z)| {
                let b = z.as_bytes();
                matches!(b[0], b'+' | b'-')
                    && b[1..3].iter().all(u8::is_ascii_digit)
                    && b[3] == b':'
                    && b[4..6].iter().all(u8::is_ascii_digit)
            });
        let Some((at, zone)) = zone else {
            return Err(bad("a zone is needed (`Z` or `+HH:MM`)"));
        };
        let b = zone.as_bytes();
        let hours = i64::from(b[1] - b'0') * 10 + i64::from(b[2] - b'0');
        let minutes = i64::from(b[4] - b'0') * 10 + i64::from(b[5] - b'0');
        if hours > 23 || minutes > 59 {
            return Err(bad("the zone offset is out of range"));
        }
        let sign = if b[0] == b'-' { -1 } else { 1 };
        (
            format!("{}Z", &s[..at]),
            sign * (hours * 3600 + minutes * 60),
        )
    };
    let time = humantime::parse_rfc3339(&utc).map_err(|e| bad(&e.to_string()))?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad("before 1970"))?;
    Ok(duration_ms(ms).saturating_sub(offset_s * 1000))
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds; `None` for 0 (no time) or a time
/// before 1970.
pub fn format_ms(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok().filter(|&ms| ms > 0)?;
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(time).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T: i64 = 1_796_292_000_000; // 2026-12-03T10:00:00Z

    #[test]
    fn epoch_milliseconds() {
        assert_eq!("1796292000000".parse::<When>(), Ok(When::At(T)));
        assert_eq!(" 0 ".parse::<When>(), Ok(When::At(0)));
        assert!("99999999999999999999999".parse::<When>().is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!("2026-12-03T10:00:00Z".parse::<When>(), Ok(When::At(T)));
        assert_eq!(
            "2026-12-03T10:00:00.250Z".parse::<When>(),
            Ok(When::At(T + 250))
        );
        assert_eq!("2026-12-03T11:30:00+01:30".parse::<When>(), Ok(When::At(T)));
        assert_eq!("2026-12-03T05:00:00-05:00".parse::<When>(), Ok(When::At(T)));
        assert_eq!("2026-12-03t10:00:00z".parse::<When>(), Ok(When::At(T)));
        let e = "2026-12-03T10:00:00".parse::<When>().unwrap_err();
        assert!(e.to_string().contains("zone"), "{e}");
        assert!("2026-13-03T10:00:00Z".parse::<When>().is_err());
        assert!("2026-12-03T10:00:00+25:00".parse::<When>().is_err());
        assert!("2026-12-03Té0:00:00Z".parse::<When>().is_err());
    }

    #[test]
    fn durations_ago_and_ahead() {
        assert_eq!(
            "10m".parse::<When>(),
            Ok(When::Offset(Duration::from_secs(600)))
        );
        assert_eq!(
            "2h ago".parse::<When>(),
            Ok(When::Offset(Duration::from_secs(7200)))
        );
        assert_eq!(
            "1h 30m".parse::<When>(),
            Ok(When::Offset(Duration::from_secs(5400)))
        );
        assert_eq!("NOW".parse::<When>(), Ok(When::Now));
        let ten = When::Offset(Duration::from_secs(600));
        assert_eq!(ten.before(T), T - 600_000);
        assert_eq!(ten.after(T), T + 600_000);
        assert_eq!(When::At(5).before(T), 5);
        assert_eq!(When::Now.after(T), T);
    }

    #[test]
    fn garbage_is_refused_with_the_accepted_forms() {
        for bad in ["", "yesterday", "10 parsecs", "-5", "2026-12"] {
            let e = bad.parse::<When>().unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ms(T).unwrap(), "2026-12-03T10:00:00.000Z");
        assert_eq!(format_ms(0), None);
        assert_eq!(format_ms(-1), None);
        assert!(now_ms() > T - 365 * 86_400_000 * 2);
    }
}
