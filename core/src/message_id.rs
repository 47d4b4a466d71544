//! Message ids in the RocketMQ 5 format, for messages whose producer did not bring one.
//!
//! Owns: generating ids. An id is 34 hex characters: `"01"`, then 6 bytes identifying the host
//! and 2 bytes of the process id (upper-case hex), then the milliseconds since the start of the
//! current month as an `i32` and a per-process sequence `i32` (lower-case hex): the shape the
//! official SDKs produce (`../shared/grpc-v2.md` §3.7). Ids are treated as opaque strings
//! everywhere else: compared exactly, never parsed.
//!
//! Invariants: two ids from one process never repeat within 2^32 ids of each other in the same
//! millisecond-of-month; processes differ by host bytes and pid.
//!
//! Concurrency: lock-free (one atomic counter); callable from any thread.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static SEQ: AtomicU32 = AtomicU32::new(0);
static PREFIX: OnceLock<String> = OnceLock::new();

fn prefix() -> &'static str {
    PREFIX.get_or_init(|| {
        // Host bytes: a hash of the hostname and boot id, so ids differ across machines without
        // needing a MAC address.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let a = crc32c::crc32c(host.as_bytes());
        let b = crc32c::crc32c_append(a, boot.as_bytes()) ^ nanos;
        let pid = std::process::id() as u16;
        let mut s = String::with_capacity(18);
        let _ = write!(s, "01{a:08X}{:04X}{pid:04X}", b as u16);
        s
    })
}

/// Milliseconds since the start of the current month (UTC), as the SDKs encode it.
fn ms_of_month(now_ms: i64) -> i32 {
    let days = now_ms.div_euclid(86_400_000);
    let ms_of_day = now_ms.rem_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm) to find the day of the month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5; // 0-based
    (day_of_month * 86_400_000 + ms_of_day) as i32
}

/// A new unique message id.
pub fn generate(now_ms: i64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tail = (u64::from(ms_of_month(now_ms) as u32) << 32) | u64::from(seq);
    let mut s = String::with_capacity(34);
    s.push_str(prefix());
    // Hand-rolled hex: this runs once per message.
    for shift in (0..16).rev() {
        s.push(char::from(HEX[((tail >> (shift * 4)) & 0xF) as usize]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_uniqueness() {
        let a = generate(1_700_000_000_000);
        let b = generate(1_700_000_000_000);
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("01"));
        assert_ne!(a, b);
        assert!(a[..18]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(a[18..]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        // 2023-11-14T22:13:20Z is day 14 of the month: 13 days + 22:13:20.
        assert_eq!(ms_of_month(1_700_000_000_000), 13 * 86_400_000 + 80_000_000);
    }
}
