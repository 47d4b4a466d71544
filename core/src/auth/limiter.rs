//! Per-source limit of failed authentications: each source IP has a bucket of
//! `auth.failure_burst` failures that refills by one every `auth.failure_refill_ms`; while a
//! source's bucket is empty, its authentications are refused before any credential is looked
//! at (the same "invalid credentials"-class error, saying to retry later), so a password
//! guesser gets a handful of tries per minute instead of thousands per second. A success does
//! not reset the bucket (it would let a guesser with one valid account go on).
//!
//! Bounded: at most [`MAX_TRACKED`] sources are remembered; when full, the sources whose
//! buckets are full again are forgotten first, then the least recently failed. Requests without
//! a source (in-process calls) are never limited.
//!
//! Pure state behind a mutex; the caller passes the time (the broker's clock).

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;

/// Most sources remembered at once.
pub const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, as of `at_ms`.
    tokens: f64,
    at_ms: i64,
}

/// The limiter (see the module doc).
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    burst: f64,
    refill_ms: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    /// `burst` failures, one more every `refill_ms`; `burst == 0` turns the limit off.
    pub(crate) fn new(burst: u32, refill_ms: u64) -> Self {
        Self {
            burst: f64::from(burst),
            refill_ms: refill_ms.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, b: Bucket, now_ms: i64) -> f64 {
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        (b.tokens + elapsed / self.refill_ms).min(self.burst)
    }

    /// Whether `source` may try to authenticate now.
    pub(crate) fn allows(&self, source: Option<IpAddr>, now_ms: i64) -> bool {
        let (Some(ip), true) = (source, self.burst > 0.0) else {
            return true;
        };
        match self.buckets.lock().get(&ip) {
            Some(b) => self.level(*b, now_ms) >= 1.0,
            None => true,
        }
    }

    /// Records a failed attempt from `source`.
    pub(crate) fn failed(&self, source: Option<IpAddr>, now_ms: i64) {
        let (Some(ip), true) = (source, self.burst > 0.0) else {
            return;
        };
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| self.level(*b, now_ms) < self.burst);
            if buckets.len() >= MAX_TRACKED {
                let oldest = buckets.iter().min_by_key(|(_, b)| b.at_ms).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    buckets.remove(&k);
                }
            }
        }
        let level = buckets
            .get(&ip)
            .map_or(self.burst, |b| self.level(*b, now_ms));
        buckets.insert(
            ip,
            Bucket {
                tokens: (level - 1.0).max(0.0),
                at_ms: now_ms,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn a_source_gets_its_burst_then_one_try_per_refill() {
        let l = FailureLimiter::new(3, 1000);
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert!(l.allows(a, 0));
            l.failed(a, 0);
        }
        assert!(!l.allows(a, 0), "burst spent");
        assert!(!l.allows(a, 999), "a millisecond before the refill");
        assert!(l.allows(a, 1000), "one try after a refill");
        l.failed(a, 1000);
        assert!(!l.allows(a, 1000));
        assert!(
            l.allows(ip("10.0.0.2"), 0),
            "other sources are not affected"
        );
        assert!(l.allows(None, 0), "in-process calls are never limited");
        assert!(l.allows(a, 4000), "refilled to the burst after 3 periods");
    }

    #[test]
    fn zero_burst_turns_it_off_and_the_table_is_bounded() {
        let off = FailureLimiter::new(0, 1000);
        for _ in 0..100 {
            off.failed(ip("10.0.0.1"), 0);
        }
        assert!(off.allows(ip("10.0.0.1"), 0));
        assert_eq!(off.tracked(), 0);

        let l = FailureLimiter::new(2, 1000);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let v4 = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            l.failed(Some(IpAddr::V4(v4)), i64::from(i));
        }
        assert!(l.tracked() <= MAX_TRACKED);
        let last = std::net::Ipv4Addr::from(0x0a00_0000 + MAX_TRACKED as u32 + 9);
        l.failed(Some(IpAddr::V4(last)), 0);
        assert!(!l.allows(Some(IpAddr::V4(last)), 0), "the newest are kept");
    }
}
