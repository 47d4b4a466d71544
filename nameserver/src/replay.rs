//! Replay protection of signed broker requests: the signatures the NameServer accepted while
//! they could still pass the clock-skew check, so that the exact same request is refused the
//! second time ([`ReplayGuard`]).
//!
//! Invariants:
//! - a signature (its timestamp and MAC; the MAC covers the method, the timestamp and every
//!   field, see `secret.rs`) is admitted at most once: a replay of an accepted request —
//!   byte for byte, or re-encoded — is refused while it is remembered;
//! - memory is bounded: a signature is forgotten once its timestamp is more than the skew window
//!   behind the latest clock reading seen (it would be refused as stale anyway), and at most
//!   `max_entries` are kept, the oldest forgotten first;
//! - nothing forgotten can be replayed: the guard refuses every signature whose timestamp is
//!   not after the newest timestamp it has forgotten (the *floor*). Under normal load the floor
//!   trails the clock by the skew window and refuses nothing the skew check would accept; only
//!   when more than `max_entries` signatures arrive within a window does it rise, and then a
//!   broker whose clock lags the others' may be refused until the burst has passed (fail closed,
//!   not open);
//! - a clock that steps back does not reopen the window: expiry follows the latest reading.
//!
//! Two properties it deliberately does not have: it does not span NameServers (each keeps its
//! own; a request is only ever valid for the one it was sent to, as brokers sign each call
//! separately) nor restarts (a restarted NameServer accepts a request captured before, within
//! the skew window, once).
//!
//! Pure: no I/O, no clock (callers pass `now_ms`), no locks; the service keeps one behind a
//! `parking_lot::Mutex` held for one call of [`ReplayGuard::admit`].

use std::collections::BTreeSet;

/// The signatures accepted within the skew window (see the module doc).
#[derive(Debug)]
pub struct ReplayGuard {
    /// (timestamp ms, MAC) of every remembered signature, oldest first.
    seen: BTreeSet<(u64, [u8; 32])>,
    /// Every signature at or before this timestamp is refused (`None`: nothing forgotten yet).
    floor: Option<u64>,
    /// The latest clock reading seen.
    latest_ms: u64,
    window_ms: u64,
    max_entries: usize,
}

/// Why [`ReplayGuard::admit`] refused a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This exact signature was accepted before.
    Seen,
    /// Signed at or before the newest signature the guard forgot: it may be a replay.
    BeforeFloor,
}

impl ReplayGuard {
    /// A guard for signatures valid `window_ms` either side of the clock, remembering at most
    /// `max_entries` (at least one).
    pub fn new(window_ms: u64, max_entries: usize) -> Self {
        Self {
            seen: BTreeSet::new(),
            floor: None,
            latest_ms: 0,
            window_ms,
            max_entries: max_entries.max(1),
        }
    }

    /// Admits the signature (`timestamp_ms`, `mac`) of a request whose signature was verified
    /// at `now_ms`, remembering it.
    ///
    /// # Errors
    /// [`Replay`] when it was admitted before or may have been (nothing is remembered then).
    pub fn admit(&mut self, timestamp_ms: u64, mac: [u8; 32], now_ms: u64) -> Result<(), Replay> {
        self.latest_ms = self.latest_ms.max(now_ms);
        let horizon = self.latest_ms.saturating_sub(self.window_ms);
        while let Some(&(ts, _)) = self.seen.first() {
            if ts >= horizon {
                break;
            }
            self.forget_first();
        }
        if self.floor.is_some_and(|floor| timestamp_ms <= floor) {
            return Err(Replay::BeforeFloor);
        }
        let entry = (timestamp_ms, mac);
        if self.seen.contains(&entry) {
            return Err(Replay::Seen);
        }
        if self.seen.len() >= self.max_entries {
            if self.seen.first().is_some_and(|first| entry < *first) {
                // It would be the one forgotten at once: refuse it rather than let it be
                // replayed.
                return Err(Replay::BeforeFloor);
            }
            self.forget_first();
        }
        self.seen.insert(entry);
        Ok(())
    }

    fn forget_first(&mut self) {
        if let Some((ts, _)) = self.seen.pop_first() {
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn mac(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn an_accepted_signature_is_refused_the_second_time() {
        let mut g = ReplayGuard::new(1_000, 100);
        assert_eq!(g.admit(NOW, mac(1), NOW), Ok(()));
        assert_eq!(g.admit(NOW, mac(1), NOW + 10), Err(Replay::Seen));
        // The same body signed again (another timestamp, so another MAC) is a new request.
        assert_eq!(g.admit(NOW + 5, mac(2), NOW + 10), Ok(()));
        // Same timestamp, other MAC (another request signed in the same ms): accepted.
        assert_eq!(g.admit(NOW, mac(3), NOW + 10), Ok(()));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn signatures_are_forgotten_once_stale_and_stay_refused() {
        let mut g = ReplayGuard::new(1_000, 100);
        g.admit(NOW, mac(1), NOW).unwrap();
        g.admit(NOW + 500, mac(2), NOW + 500).unwrap();
        // Past the window of the first: it is forgotten, and refused by the floor.
        g.admit(NOW + 1_200, mac(3), NOW + 1_200).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.admit(NOW, mac(1), NOW + 1_200), Err(Replay::BeforeFloor));
        // The clock steps back: the forgotten one is still refused.
        assert_eq!(g.admit(NOW, mac(1), NOW), Err(Replay::BeforeFloor));
        assert_eq!(g.admit(NOW + 500, mac(2), NOW), Err(Replay::Seen));
        // A signature from a clock ahead (within the window) is fine.
        g.admit(NOW + 2_000, mac(4), NOW + 1_200).unwrap();
    }

    #[test]
    fn the_count_is_capped_and_the_oldest_go_first_without_reopening_replays() {
        let mut g = ReplayGuard::new(60_000, 3);
        for i in 0..10u8 {
            g.admit(NOW + u64::from(i), mac(i), NOW + 10).unwrap();
            assert!(g.len() <= 3);
        }
        // Forgotten ones cannot come back; remembered ones are refused as seen.
        assert_eq!(g.admit(NOW, mac(0), NOW + 10), Err(Replay::BeforeFloor));
        assert_eq!(g.admit(NOW + 9, mac(9), NOW + 10), Err(Replay::Seen));
        // A new signature older than every remembered one would be forgotten at once.
        assert_eq!(g.admit(NOW + 7, mac(1), NOW + 10), Err(Replay::BeforeFloor));
        assert_eq!(g.len(), 3);
        g.admit(NOW + 11, mac(11), NOW + 11).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g.admit(NOW + 7, mac(7), NOW + 11), Err(Replay::BeforeFloor));
    }
}
