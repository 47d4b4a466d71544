//! The stop signal of a node: one [`ShutdownTrigger`], any number of [`Shutdown`] clones (one
//! per gateway and background task). Triggering is sticky: a clone taken or awaited after the
//! trigger resolves at once. Dropping the trigger counts as triggering, so nothing the node
//! started can outlive the node by waiting on a signal that can no longer come.
//!
//! A `tokio::sync::watch` channel underneath: no lock is held across an await, and waiting
//! costs one task wake-up. Used by the node and by the gateways' `serve`; it knows nothing
//! about what is being stopped.

use std::future::Future;

use tokio::sync::watch;

/// Creates a trigger and the signal it fires.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

/// Fires the [`Shutdown`] signal of every clone.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Signals every [`Shutdown`] clone (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// A cheap-`Clone` signal that resolves once the node stops.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the trigger fired or was dropped; `'static`, for the `serve` functions
    /// that take `impl Future<Output = ()> + Send + 'static`.
    pub fn wait(self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0;
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// Whether the trigger fired (or was dropped) already.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_resolves_once_triggered_even_when_taken_later() {
        let (trigger, shutdown) = channel();
        let early = tokio::spawn(shutdown.clone().wait());
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        assert!(shutdown.is_triggered());
        let late = shutdown.clone();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = early.await;
            late.wait().await;
        })
        .await
        .unwrap_or_else(|_| panic!("a clone did not resolve after the trigger"));
    }

    #[tokio::test]
    async fn dropping_the_trigger_resolves_the_signal() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_triggered());
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap_or_else(|_| panic!("not resolved after the trigger was dropped"));
    }
}
