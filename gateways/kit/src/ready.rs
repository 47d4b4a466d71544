//! The readiness signal of a gateway: one [`Ready`] handed to [`crate::BoundGateway::serve`],
//! fired once every endpoint of the gateway accepts connections and serves them, and one
//! [`ReadyWait`] the node awaits before it logs `ready`, registers and writes its ready file.
//!
//! Binding a listener is not enough: a connection the kernel queued for a gateway that is
//! still loading its state (the MQTT gateway's retained messages and sessions, say) is not
//! served yet. So the gateway says when it is, and a gateway that stops before that drops its
//! [`Ready`] unfired, which [`ReadyWait::wait`] reports. A `tokio::sync::oneshot` channel
//! underneath; it knows nothing about what is being served.

use tokio::sync::oneshot;

/// Creates the signal of one gateway and what the node awaits.
pub fn channel() -> (Ready, ReadyWait) {
    let (tx, rx) = oneshot::channel();
    (Ready(tx), ReadyWait(rx))
}

/// Fired by a gateway once all its endpoints accept connections.
#[derive(Debug)]
pub struct Ready(oneshot::Sender<()>);

impl Ready {
    /// Every endpoint of the gateway accepts connections and serves them.
    pub fn accepting(self) {
        let _ = self.0.send(());
    }
}

/// Resolves when its gateway accepts connections, or stopped before it did.
#[derive(Debug)]
pub struct ReadyWait(oneshot::Receiver<()>);

impl ReadyWait {
    /// `true` once the gateway accepts connections; `false` if it dropped its [`Ready`]
    /// unfired (it stopped before accepting: its `serve` result says why).
    pub async fn wait(self) -> bool {
        self.0.await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fired_is_true_and_dropped_unfired_is_false() {
        let (ready, wait) = channel();
        ready.accepting();
        assert!(wait.wait().await);
        let (ready, wait) = channel();
        drop(ready);
        assert!(!wait.wait().await);
    }
}
