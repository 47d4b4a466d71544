//! Background workers of the broker: a named OS thread that runs a tick function over and over,
//! sleeping in between, and stops on request.
//!
//! Owns: the thread, its stop flag and wake-up. A worker holds only a weak reference to the
//! broker: it upgrades it for the duration of one tick, so a broker whose last handle is dropped
//! closes at once even while workers sleep. Ticks that need async calls (appends that wait for
//! a flush) run on a current-thread tokio runtime owned by the worker.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Inner;
use crate::error::{Error, Result};

#[derive(Default)]
struct Signal {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// One background thread of the broker.
#[derive(Default)]
pub(super) struct Worker {
    signal: Arc<Signal>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Worker {
    /// Starts the thread: `tick` runs, then the thread sleeps for the duration it returned (or
    /// until [`Worker::wake`]), until [`Worker::stop`] or the broker is gone.
    pub(super) fn start<F, Fut>(&self, name: &str, broker: &Arc<Inner>, mut tick: F) -> Result<()>
    where
        F: FnMut(Arc<Inner>) -> Fut + Send + 'static,
        Fut: Future<Output = Duration>,
    {
        let weak: Weak<Inner> = Arc::downgrade(broker);
        let signal = self.signal.clone();
        let thread_name = name.to_owned();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, worker = %thread_name, "worker cannot start");
                        return;
                    }
                };
                loop {
                    if *signal.stop.lock() {
                        return;
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    // A panicking tick (a bug, or a gateway's callback) must not end the worker.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rt.block_on(tick(inner))
                    }));
                    let wait = ran.unwrap_or_else(|_| {
                        tracing::error!(worker = %thread_name, "worker tick panicked; continuing");
                        Duration::from_secs(1)
                    });
                    let mut stop = signal.stop.lock();
                    if !*stop && !wait.is_zero() {
                        signal.wake.wait_for(&mut stop, wait);
                    }
                }
            })
            .map_err(|e| Error::Metadata {
                path: name.into(),
                reason: e.to_string(),
            })?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Ends the current sleep early.
    pub(super) fn wake(&self) {
        self.signal.wake.notify_all();
    }

    /// Stops the thread and waits for it (unless called from it).
    pub(super) fn stop(&self) {
        *self.signal.stop.lock() = true;
        self.signal.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
