//! The in-sync set of a master's slaves and SYNC replication's acknowledgement gate.
//!
//! Owns: each attached slave's last report (what it wrote and flushed), the decision whether a
//! slave is in sync (connected, within `max_lag_bytes` of the master's end, and caught up to
//! what the master had at most `max_lag` ago), the replication policy (ASYNC or SYNC,
//! `min_in_sync_replicas`), and the wait a send makes under SYNC until every in-sync slave has
//! its record. Logs every change of the set and exports it as metrics.
//!
//! Must not touch files or the network: the transport tells it when a slave attaches and
//! what it reports; the producer path asks it before and after an append.
//!
//! Time: lag in time is measured on the broker's clock (injected in tests), and the wait wakes
//! on reports or after the lag deadline of the slowest in-sync slave (tokio's timer, paused in
//! tests), so a dead slave holds a send at most `max_lag` before it leaves the set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::{Error, Result};

/// Slaves a master tracks: a report of one more slave id is refused, so neither the table nor
/// the metric labels grow with what callers send.
pub const MAX_SLAVES: usize = 16;

/// When a send is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplicationMode {
    /// After the master has the record (the flush mode decides what "has" means); slaves
    /// follow behind.
    #[default]
    Async,
    /// After the master and every in-sync slave have the record (and have fsynced it when the
    /// master's flush mode is SYNC).
    Sync,
}

/// How a master acknowledges writes and decides who is in sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPolicy {
    /// ASYNC or SYNC replication.
    pub mode: ReplicationMode,
    /// Replicas that must be in sync for a write to be taken, counting the master (1: the
    /// master alone suffices). Under SYNC, fewer refuses writes.
    pub min_in_sync_replicas: usize,
    /// A slave further behind the master's end than this is out of the set.
    pub max_lag_bytes: u64,
    /// A slave that has not caught up to what the master had this long ago is out of the set.
    pub max_lag: Duration,
    /// Count what a slave has fsynced, not only written (the master's flush mode is SYNC).
    pub flushed: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            mode: ReplicationMode::Async,
            min_in_sync_replicas: 1,
            max_lag_bytes: 256 << 20,
            max_lag: Duration::from_secs(3),
            flushed: false,
        }
    }
}

/// One slave as the master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveStatus {
    /// Its broker id.
    pub id: u64,
    /// Open replication streams to it (0: disconnected).
    pub connected: bool,
    /// CommitLog bytes it has written.
    pub written: u64,
    /// CommitLog bytes it has fsynced.
    pub flushed: u64,
    /// Bytes it is behind the master's end (by what counts under the policy).
    pub lag_bytes: u64,
    /// How long ago it last had everything the master had then (0 when caught up; `None`
    /// before it first caught up).
    pub lag_ms: Option<u64>,
    /// Whether it is in the in-sync set.
    pub in_sync: bool,
}

#[derive(Debug, Default)]
struct Slave {
    streams: usize,
    written: u64,
    flushed: u64,
    /// The master's end at this slave's previous report, and when.
    prev: Option<(u64, i64)>,
    /// When it last had everything the master had at that moment.
    caught_up_at: Option<i64>,
    in_sync: bool,
}

impl Slave {
    fn confirmed(&self, flushed: bool) -> u64 {
        if flushed {
            self.flushed
        } else {
            self.written
        }
    }

    fn judge(&self, p: &SyncPolicy, end: u64, now: i64) -> bool {
        let confirmed = self.confirmed(p.flushed);
        let max_lag_ms = i64::try_from(p.max_lag.as_millis()).unwrap_or(i64::MAX);
        self.streams > 0
            && end.saturating_sub(confirmed) <= p.max_lag_bytes
            && (confirmed >= end
                || self
                    .caught_up_at
                    .is_some_and(|t| now.saturating_sub(t) <= max_lag_ms))
    }
}

/// The in-sync set and the SYNC gate of one master (see the module doc).
#[derive(Debug)]
pub(crate) struct InSync {
    clock: Arc<dyn Clock>,
    /// Mirrors `policy.mode == Sync` so ASYNC sends skip the lock.
    sync: AtomicBool,
    /// A policy was set: this broker is a replication master.
    enabled: AtomicBool,
    state: Mutex<State>,
    /// Bumped on every report, attach, detach and policy change.
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    policy: SyncPolicy,
    slaves: BTreeMap<u64, Slave>,
}

impl InSync {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            sync: AtomicBool::new(false),
            enabled: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn set_policy(&self, policy: SyncPolicy) {
        self.sync
            .store(policy.mode == ReplicationMode::Sync, Ordering::Release);
        self.enabled.store(true, Ordering::Release);
        self.state.lock().policy = policy;
        self.bump();
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub(crate) fn policy(&self) -> SyncPolicy {
        self.state.lock().policy.clone()
    }

    /// A replication stream to slave `id` opened.
    pub(crate) fn attach(&self, id: u64) -> Result<()> {
        let mut st = self.state.lock();
        if !st.slaves.contains_key(&id) && st.slaves.len() >= MAX_SLAVES {
            return Err(Error::LimitReached {
                what: "replicating slaves",
                key: "replication (fixed)",
                limit: MAX_SLAVES,
            });
        }
        st.slaves.entry(id).or_default().streams += 1;
        drop(st);
        self.bump();
        Ok(())
    }

    /// A replication stream to slave `id` closed.
    pub(crate) fn detach(&self, id: u64, end: u64) {
        let mut st = self.state.lock();
        if let Some(s) = st.slaves.get_mut(&id) {
            s.streams = s.streams.saturating_sub(1);
        }
        let now = self.clock.now_ms();
        Self::evaluate(&mut st, end, now);
        drop(st);
        self.bump();
    }

    /// Slave `id` reports what it wrote and flushed; `end` is the master's end now.
    pub(crate) fn report(&self, id: u64, written: u64, flushed: u64, end: u64) -> Result<()> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        if !st.slaves.contains_key(&id) && st.slaves.len() >= MAX_SLAVES {
            return Err(Error::LimitReached {
                what: "replicating slaves",
                key: "replication (fixed)",
                limit: MAX_SLAVES,
            });
        }
        let flushed_counts = st.policy.flushed;
        let s = st.slaves.entry(id).or_default();
        s.written = written;
        s.flushed = flushed;
        let confirmed = s.confirmed(flushed_counts);
        if confirmed >= end {
            s.caught_up_at = Some(now);
        } else if let Some((prev_end, prev_at)) = s.prev.filter(|(e, _)| confirmed >= *e) {
            // It has everything the master had at its previous report.
            let _ = prev_end;
            s.caught_up_at = Some(s.caught_up_at.map_or(prev_at, |t| t.max(prev_at)));
        }
        s.prev = Some((end, now));
        Self::evaluate(&mut st, end, now);
        drop(st);
        self.bump();
        Ok(())
    }

    /// Re-judges every slave against the master's `end` and the clock: logs and exports what
    /// changed. Returns how many slaves are in sync.
    pub(crate) fn refresh(&self, end: u64) -> usize {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        Self::evaluate(&mut st, end, now)
    }

    fn evaluate(st: &mut State, end: u64, now: i64) -> usize {
        let p = &st.policy;
        let mut n = 0;
        for (id, s) in &mut st.slaves {
            let in_sync = s.judge(p, end, now);
            if in_sync != s.in_sync {
                let confirmed = s.confirmed(p.flushed);
                if in_sync {
                    tracing::info!(slave = id, confirmed, end, "slave joined the in-sync set");
                } else {
                    tracing::warn!(
                        slave = id,
                        confirmed,
                        end,
                        connected = s.streams > 0,
                        "slave left the in-sync set"
                    );
                }
                s.in_sync = in_sync;
            }
            n += usize::from(in_sync);
            let lag_ms = if s.confirmed(p.flushed) >= end {
                Some(0)
            } else {
                s.caught_up_at.map(|t| now.saturating_sub(t).max(0) as u64)
            };
            crate::metrics::replication_slave(
                *id,
                end.saturating_sub(s.written),
                end.saturating_sub(s.flushed),
                lag_ms,
                in_sync,
            );
        }
        crate::metrics::replication_in_sync(n + 1);
        n
    }

    /// Every tracked slave.
    pub(crate) fn slaves(&self, end: u64) -> Vec<SlaveStatus> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        Self::evaluate(&mut st, end, now);
        let flushed = st.policy.flushed;
        st.slaves
            .iter()
            .map(|(id, s)| {
                let confirmed = s.confirmed(flushed);
                SlaveStatus {
                    id: *id,
                    connected: s.streams > 0,
                    written: s.written,
                    flushed: s.flushed,
                    lag_bytes: end.saturating_sub(confirmed),
                    lag_ms: if confirmed >= end {
                        Some(0)
                    } else {
                        s.caught_up_at.map(|t| now.saturating_sub(t).max(0) as u64)
                    },
                    in_sync: s.in_sync,
                }
            })
            .collect()
    }

    /// Under SYNC: refuses a write while fewer than `min_in_sync_replicas` replicas (the
    /// master included) are in sync. `end` gives the master's end now.
    pub(crate) fn check_writable(&self, end: impl Fn() -> u64) -> Result<()> {
        if !self.sync.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        let n = Self::evaluate(&mut st, end(), now) + 1;
        let required = st.policy.min_in_sync_replicas;
        if n < required {
            return Err(Error::NotEnoughReplicas {
                in_sync: n,
                required,
            });
        }
        Ok(())
    }

    /// Under SYNC: waits until every in-sync slave has the log up to `record_end`. A slave that
    /// falls out of the set (disconnected, or not caught up within `max_lag`) is no longer
    /// waited for; if the set falls below `min_in_sync_replicas`, the write is not
    /// acknowledged. `end` gives the master's end now.
    pub(crate) async fn replicated(&self, record_end: u64, end: impl Fn() -> u64) -> Result<()> {
        if !self.sync.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let wait = {
                let now = self.clock.now_ms();
                let mut st = self.state.lock();
                if st.policy.mode != ReplicationMode::Sync {
                    return Ok(());
                }
                let n = Self::evaluate(&mut st, end(), now) + 1;
                let required = st.policy.min_in_sync_replicas;
                if n < required {
                    return Err(Error::NotEnoughReplicas {
                        in_sync: n,
                        required,
                    });
                }
                let flushed = st.policy.flushed;
                let max_lag_ms = i64::try_from(st.policy.max_lag.as_millis()).unwrap_or(i64::MAX);
                // The earliest moment a slave still missing the record leaves the set.
                let behind = st
                    .slaves
                    .values()
                    .filter(|s| s.in_sync && s.confirmed(flushed) < record_end)
                    .map(|s| {
                        s.caught_up_at
                            .map_or(0, |t| t.saturating_add(max_lag_ms) - now)
                    })
                    .min();
                match behind {
                    None => return Ok(()),
                    Some(ms) => Duration::from_millis(ms.clamp(1, max_lag_ms.max(1)) as u64),
                }
            };
            // A report, a detach or the deadline: judge again.
            let _ = tokio::time::timeout(wait, rx.changed()).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "in_sync_tests.rs"]
mod tests;
