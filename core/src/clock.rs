//! The broker's clock: wall-clock milliseconds since the epoch, the one time source of store
//! timestamps, delays, invisibility and expiry, and what gateways stamp their own protocol
//! times with (so that every protocol agrees on "now").
//!
//! Pure functions; no state.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current wall-clock time in ms since the epoch (0 before 1970, which no sane clock shows).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
