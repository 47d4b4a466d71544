//! The RocketMQ 5 request signature: `authorization: MQv2-HMAC-SHA1 Credential=<ak>,
//! SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1(sk, x-mq-date-time)>`, as the official
//! SDKs send it — parsing the header, checking the HMAC in constant time, and reading the signed
//! time for the clock-skew window.
//!
//! The SDKs write `x-mq-date-time` in three ways (`../shared/grpc-v2.md`): RFC 3339 (Rust),
//! `yyyyMMdd'T'HHmmss'Z'` in UTC (Java, Node.js) and the same in *local* time with a literal
//! `Z` (Python). So a compact time is accepted when it is within the window of the broker's
//! clock shifted by a whole time-zone offset (a multiple of 15 minutes, at most 14 hours); an
//! RFC 3339 time must be within the window itself.
//!
//! Pure functions: no I/O, no clock (callers pass the time).

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Longest `authorization` header read.
pub const MAX_HEADER: usize = 512;

/// A parsed `authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The access key it names.
    pub access_key: String,
    /// The signature bytes (decoded from hex).
    pub signature: Vec<u8>,
}

/// Parses the header; `None` for anything but the MQv2-HMAC-SHA1 scheme over
/// `x-mq-date-time`.
pub fn parse_authorization(header: &str) -> Option<Signed> {
    if header.len() > MAX_HEADER {
        return None;
    }
    let rest = header.strip_prefix("MQv2-HMAC-SHA1 ")?;
    let (mut ak, mut headers, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => ak = Some(v),
            "SignedHeaders" => headers = Some(v),
            "Signature" => sig = Some(v),
            _ => return None,
        }
    }
    if !headers?.eq_ignore_ascii_case("x-mq-date-time") {
        return None;
    }
    let ak = ak.filter(|a| !a.is_empty())?;
    Some(Signed {
        access_key: ak.to_owned(),
        signature: hex::decode(sig?).ok()?,
    })
}

/// Whether `signature` is HMAC-SHA1(`secret`, `date_time`), compared in constant time.
pub fn verify(secret: &[u8], date_time: &str, signature: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return false;
    };
    mac.update(date_time.as_bytes());
    mac.verify_slice(signature).is_ok()
}

/// The signature of `date_time` under `secret` (what a client sends; for tests and tools).
pub fn sign(secret: &[u8], date_time: &str) -> String {
    match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(date_time.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Whether the signed time `date_time` is acceptable at `now_ms` within `max_skew_ms`; a
/// compact time may also be off by a whole time-zone offset when `any_offset` (the Python
/// SDK's local time with a literal `Z`).
pub fn fresh(date_time: &str, now_ms: i64, max_skew_ms: i64, any_offset: bool) -> bool {
    if let Some(t) = parse_rfc3339(date_time) {
        return (t - now_ms).abs() <= max_skew_ms;
    }
    let Some(t) = parse_compact(date_time) else {
        return false;
    };
    if !any_offset {
        return (t - now_ms).abs() <= max_skew_ms;
    }
    const QUARTER_HOUR: i64 = 15 * 60 * 1000;
    const MAX_OFFSET: i64 = 14 * 60 * 60 * 1000;
    let skew = t - now_ms;
    // The nearest whole-offset shift, within ±14 h.
    let shift = ((skew as f64 / QUARTER_HOUR as f64).round() as i64 * QUARTER_HOUR)
        .clamp(-MAX_OFFSET, MAX_OFFSET);
    (skew - shift).abs() <= max_skew_ms
}

/// `ms` since the epoch as `yyyyMMdd'T'HHmmss'Z'` (UTC), the `x-mq-date-time` the Java SDK
/// writes: what clients and tools sign.
pub fn compact_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn epoch_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000)
}

/// `yyyyMMdd'T'HHmmss'Z'`.
fn parse_compact(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    epoch_ms(
        num(s.get(0..4)?)?,
        num(s.get(4..6)?)?,
        num(s.get(6..8)?)?,
        num(s.get(9..11)?)?,
        num(s.get(11..13)?)?,
        num(s.get(13..15)?)?,
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 20 || s.len() > 40 {
        return None;
    }
    let b = s.as_bytes();
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let base = epoch_ms(
        num(s.get(0..4)?)?,
        num(s.get(5..7)?)?,
        num(s.get(8..10)?)?,
        num(s.get(11..13)?)?,
        num(s.get(14..16)?)?,
        num(s.get(17..19)?)?,
    )?;
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        ms = num(&first3)?;
        rest = &frac[digits..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (num(h)? * 60 + num(m)?) * 60_000
        }
    };
    Some(base + ms - offset_ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2024-05-01T10:00:00Z.
    const T: i64 = 1_714_557_600_000;

    #[test]
    fn the_three_time_formats_parse() {
        assert_eq!(parse_rfc3339("2024-05-01T10:00:00Z"), Some(T));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00.123456789Z"),
            Some(T + 123)
        );
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.5+02:00"), Some(T + 500));
        assert_eq!(parse_compact("20240501T100000Z"), Some(T));
        assert_eq!(compact_time(T + 999), "20240501T100000Z");
        assert_eq!(compact_time(951_782_400_000), "20000229T000000Z");
        for ms in [0, T, 4_102_444_799_000] {
            assert_eq!(parse_compact(&compact_time(ms)), Some(ms), "{ms}");
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T10:00:00Z",
            "2024-05-01T10:00:00",
            "20240501T100000",
            "x024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.Z",
        ] {
            assert!(
                parse_rfc3339(bad).is_none() && parse_compact(bad).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn freshness_allows_the_window_and_python_local_time_but_not_replays() {
        let skew = 15 * 60 * 1000;
        assert!(fresh("2024-05-01T10:00:00Z", T + skew, skew, true));
        assert!(!fresh("2024-05-01T10:00:00Z", T + skew + 1, skew, true));
        assert!(fresh("20240501T100000Z", T - 60_000, skew, true));
        // Python in UTC+8 writes 18:00 local with a Z: accepted.
        assert!(fresh("20240501T180000Z", T, skew, true));
        // A replay a day later is not.
        assert!(!fresh("20240501T100000Z", T + 86_400_000, skew, true));
        assert!(!fresh("garbage", T, skew, true));
        // With local-time signatures off a compact time is UTC: the window only.
        assert!(fresh("20240501T100000Z", T - 60_000, skew, false));
        assert!(!fresh("20240501T180000Z", T, skew, false));
        assert!(!fresh("20240501T110000Z", T, skew, false));
    }

    #[test]
    fn headers_parse_and_signatures_verify_in_the_sdk_format() {
        let sig = sign(b"secret-key", "20240501T100000Z");
        let header =
            format!("MQv2-HMAC-SHA1 Credential=ak1, SignedHeaders=x-mq-date-time, Signature={sig}");
        let p = parse_authorization(&header).unwrap();
        assert_eq!(p.access_key, "ak1");
        assert!(verify(b"secret-key", "20240501T100000Z", &p.signature));
        assert!(!verify(b"other-key", "20240501T100000Z", &p.signature));
        assert!(!verify(b"secret-key", "20240501T100001Z", &p.signature));
        for bad in [
            "Bearer x",
            "MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=00",
            "MQv2-HMAC-SHA1 Credential=a, SignedHeaders=host, Signature=00",
            "MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=zz",
            "MQv2-HMAC-SHA1 Credential=a, Extra=1, SignedHeaders=x-mq-date-time, Signature=00",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad}");
        }
        assert!(parse_authorization(&"x".repeat(MAX_HEADER + 1)).is_none());
    }
}
