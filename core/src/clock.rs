//! The broker's clock: milliseconds since the epoch, the one time source of the broker's
//! decisions — delivery times of scheduled messages, invisibility deadlines and redelivery,
//! retry backoff, transaction check-backs, session expiry in gateways that ask the broker.
//!
//! Time is an input: [`crate::Broker::open_with_clock`] takes any [`Clock`]; production uses
//! [`SystemClock`], tests a [`ManualClock`] they move by hand, so that invisibility, delays and
//! expiry are tested by advancing time, not by sleeping. The store stamps records with the same
//! clock (store time), so decisions that start from a stored record's time — the first
//! check-back of a half message reloaded after a restart, offsets for a time — agree with the
//! rest.
//!
//! Concurrency: a clock is shared (`Arc<dyn Clock>`) and read from any thread.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current wall-clock time in ms since the epoch (0 before 1970, which no sane clock shows).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that stands still until it is moved: for tests of time-dependent behaviour.
/// Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// A clock showing the system time now.
    pub fn starting_now() -> Self {
        Self::new(now_ms())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(ms, Ordering::AcqRel);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::Acquire)
    }
}
