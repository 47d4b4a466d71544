//! The store's three background threads: flusher, dispatcher and cleaner.
//!
//! Owns: their loops and start-up. Each thread holds an `Arc<Inner>`, sleeps on its own
//! [`Signal`](super::Signal) with a timeout, and exits once `shutdown` is set (the final flush,
//! dispatch and checkpoint are then done by [`super::Store::shutdown`] on the caller's thread).
//!
//! - *flusher*: under `SYNC_FLUSH` it is woken by every append and flushes whatever was written
//!   since its last flush in one msync, so concurrent producers share it (group commit); when
//!   the last flush covered several producers it first lingers (at most 200 µs) until as many
//!   appended again. Under `ASYNC_FLUSH` it flushes every `flush_interval_ms`, or earlier once
//!   16 MiB are unflushed so that write-back keeps pace with the writes. It also writes the checkpoint.
//! - *dispatcher*: follows the confirmed CommitLog offset into ConsumeQueues and the index.
//!   When it cannot (a full disk: `ENOSPC` reserving a queue or index page) it records why
//!   (the store's health, the `rocketgate_store_dispatch_stalled` gauge), retries with a
//!   backoff from 50 ms doubling to 5 s, and clears the failure once a round succeeds.
//! - *checkpointer*: flushes ConsumeQueues and the index and writes the checkpoint every
//!   `checkpoint_interval_ms`, on its own thread so its msyncs never delay a SYNC ack.
//! - *cleaner*: retention by age and the disk-use watermark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Error, Inner, Result};
use crate::config::FlushMode;

type Job = fn(Arc<Inner>);

pub(super) fn spawn(inner: &Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    let jobs: [(&str, Job); 4] = [
        ("rg-flusher", flusher),
        ("rg-dispatcher", dispatcher),
        ("rg-checkpoint", checkpointer),
        ("rg-cleaner", cleaner),
    ];
    for (name, job) in jobs {
        let inner = inner.clone();
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || job(inner))
            .map_err(|e| Error::io(name, e))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Whether the injected-failure countdown says this flush must fail.
fn injected_failure(inner: &Inner) -> bool {
    inner
        .fail_flush_countdown
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok_and(|prev| prev == 1)
}

/// ASYNC: flush before the interval once this much is unflushed, so write-back overlaps the
/// writes instead of starting after them.
const EARLY_FLUSH_BYTES: u64 = 16 << 20;
/// SYNC: longest wait for the producers released by the last flush to append again.
const GROUP_LINGER: Duration = Duration::from_micros(200);

fn flusher(inner: Arc<Inner>) {
    let sync = inner.config.flush_mode == FlushMode::Sync;
    let interval = Duration::from_millis(inner.config.flush_interval_ms);
    let tick = if sync {
        Duration::from_millis(10)
    } else {
        interval.min(Duration::from_millis(50))
    };
    let mut last_flush = Instant::now();
    let mut last_batch = 1u64;
    let mut appends_at_flush = inner.appends.load(Ordering::Acquire);
    loop {
        let stop = inner.shutdown.load(Ordering::Acquire);
        let log = &inner.log;
        if !stop {
            // Under SYNC, appends wake this thread; under ASYNC it wakes on a short tick.
            inner
                .flush_signal
                .wait_unless(tick, || sync && log.wrote() > log.flushed());
        }
        let pending = log.wrote().saturating_sub(log.flushed());
        let due = stop || sync || pending >= EARLY_FLUSH_BYTES || last_flush.elapsed() >= interval;
        if pending > 0 && due && !log.is_poisoned() {
            if sync && last_batch > 1 && !stop {
                // Group commit: let the producers released by the last flush append again so
                // that one msync covers them all (they are many; a lone producer never waits).
                // A timed wait, not a spin: on 2 CPUs spinning steals the time the producers
                // need to append.
                let deadline = Instant::now() + GROUP_LINGER;
                let batch_ready =
                    || inner.appends.load(Ordering::Acquire) - appends_at_flush >= last_batch;
                while !batch_ready() {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    inner.flush_signal.wait_unless(deadline - now, batch_ready);
                }
            }
            let appends = inner.appends.load(Ordering::Acquire);
            if let Err(e) = log.flush(injected_failure(&inner)) {
                tracing::error!(error = %e, "flush failed; the store is now read-only");
            }
            last_batch = (appends - appends_at_flush).max(1);
            appends_at_flush = appends;
            last_flush = Instant::now();
            inner.publish_flushed();
            if sync {
                inner.dispatch_signal.notify_always();
            }
        }
        if stop {
            return;
        }
    }
}

fn checkpointer(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.config.checkpoint_interval_ms);
    loop {
        inner.checkpoint_signal.wait(every);
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        if !inner.log.is_poisoned() {
            if let Err(e) = inner.checkpoint() {
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
    }
}

/// First wait after a failed dispatch round; it doubles up to [`DISPATCH_BACKOFF_MAX`].
const DISPATCH_BACKOFF_MIN: Duration = Duration::from_millis(50);
const DISPATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

fn dispatcher(inner: Arc<Inner>) {
    let mut backoff = DISPATCH_BACKOFF_MIN;
    loop {
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        let limit = inner.confirmed();
        if inner.dispatched.load(Ordering::Acquire) < limit {
            match inner.dispatch_until(limit, false) {
                Ok(_) => {
                    backoff = DISPATCH_BACKOFF_MIN;
                    inner.dispatch_disk_full.store(false, Ordering::Release);
                    if let Some(reason) = inner.dispatch_failure.lock().take() {
                        tracing::warn!(was = %reason, "dispatch recovered");
                        crate::metrics::dispatch_stalled(false);
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    inner
                        .dispatch_disk_full
                        .store(e.is_disk_full(), Ordering::Release);
                    let first = inner.dispatch_failure.lock().replace(reason).is_none();
                    crate::metrics::dispatch_failed();
                    if first {
                        tracing::error!(error = %e, "dispatch stalled: new messages stay invisible until it recovers; retrying");
                        crate::metrics::dispatch_stalled(true);
                        // Readers waiting for these records stop waiting and read what is
                        // dispatched.
                        inner.dispatched_tx.send_modify(|_| {});
                    } else {
                        tracing::debug!(error = %e, retry_in = ?backoff, "dispatch still failing");
                    }
                    inner.dispatch_signal.wait(backoff);
                    backoff = (backoff * 2).min(DISPATCH_BACKOFF_MAX);
                }
            }
        } else {
            inner
                .dispatch_signal
                .wait_unless(Duration::from_millis(100), || {
                    inner.dispatched.load(Ordering::Acquire) < inner.confirmed()
                });
        }
    }
}

fn cleaner(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.config.clean_interval_ms);
    loop {
        inner.clean_signal.wait(every);
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = inner.clean() {
            tracing::error!(error = %e, "retention failed");
        }
    }
}

/// A wake-up flag with a condition variable.
///
/// `notify` is called on every append, so it is cheap unless the waiter actually sleeps: the
/// waiter announces itself in `sleeping` (SeqCst) before it re-checks for work and waits, and a
/// notifier that published work first (SeqCst) and then sees `sleeping == false` knows the
/// waiter will see that work without a wake-up.
#[derive(Default)]
pub(super) struct Signal {
    pending: Mutex<bool>,
    cv: Condvar,
    sleeping: AtomicBool,
}

impl Signal {
    pub(super) fn notify(&self) {
        // Orders the caller's publication of work (a Release store) before reading
        // `sleeping`: without it the store could still sit in the store buffer while the waiter
        // checks for work and goes to sleep (a lost wake-up).
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.sleeping.load(Ordering::SeqCst) {
            return;
        }
        let mut p = self.pending.lock();
        if !*p {
            *p = true;
            self.cv.notify_one();
        }
    }

    /// Waits up to `timeout` for a notification unless `has_work` (checked after announcing
    /// the wait) says there is something to do already.
    pub(super) fn wait_unless(&self, timeout: Duration, has_work: impl Fn() -> bool) {
        self.sleeping.store(true, Ordering::SeqCst);
        let mut p = self.pending.lock();
        if !*p && !has_work() {
            self.cv.wait_for(&mut p, timeout);
        }
        *p = false;
        drop(p);
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits up to `timeout` for a notification; consumes it.
    pub(super) fn wait(&self, timeout: Duration) {
        self.wait_unless(timeout, || false);
    }

    /// Wakes the waiter whether or not it announced itself (shutdown, explicit requests).
    pub(super) fn notify_always(&self) {
        let mut p = self.pending.lock();
        *p = true;
        self.cv.notify_one();
    }
}
