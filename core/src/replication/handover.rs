//! A master's handover of its role to one of its slaves (the admin switchover): the write fence
//! and the mailbox through which any gateway asks the node to switch.
//!
//! Owns: the fence (while set, every write a client would be told about is refused with
//! [`Error::MasterHandover`] before anything is stored: writes already stored finish their own
//! acknowledgement) and the one queue of switch requests with their answers. The node (the
//! transport's owner) takes the queue once, and does the switch itself: it stops its gateways,
//! lets the target catch up, promotes it and follows it.
//!
//! Must not touch files, the network or the roles: deciding that a switch happened is the
//! node's, and the new roles are persisted by it.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Switch requests waiting for the node: one at a time (a second is refused while one is
/// queued or served).
const QUEUE: usize = 1;

/// What a completed (committed) switch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchReport {
    /// The slave id that becomes the master (broker id 0).
    pub target: u64,
    /// The id the old master takes as a slave (the target's old id).
    pub old_master_id: u64,
    /// The target's replication address (what the old master and the other slaves follow).
    pub target_address: String,
    /// The CommitLog end both have when the target is promoted.
    pub log_end: u64,
    /// Milliseconds between the fence and the promotion order (writes refused meanwhile).
    pub fenced_ms: u64,
}

/// A request from a gateway: switch the master role to slave `target`.
#[derive(Debug)]
pub struct SwitchRequest {
    /// The slave id to promote.
    pub target: u64,
    /// How long the target may take to catch up before the switch is abandoned.
    pub timeout: Duration,
    reply: oneshot::Sender<std::result::Result<SwitchReport, String>>,
}

impl SwitchRequest {
    /// Answers the gateway that asked (`Err`: why the switch did not happen).
    pub fn answer(self, outcome: std::result::Result<SwitchReport, String>) {
        let _ = self.reply.send(outcome);
    }
}

/// The queue of switch requests, taken once by the node (see [`Handover::take_requests`]).
#[derive(Debug)]
pub struct SwitchRequests(mpsc::Receiver<SwitchRequest>);

impl SwitchRequests {
    /// The next request; `None` once the broker is gone.
    pub async fn next(&mut self) -> Option<SwitchRequest> {
        self.0.recv().await
    }
}

/// The fence and the mailbox of one broker (see the module doc).
#[derive(Debug)]
pub(crate) struct Handover {
    /// `Some(target)` while writes are fenced for a switch to `target`.
    fence: Mutex<Option<u64>>,
    tx: mpsc::Sender<SwitchRequest>,
    rx: Mutex<Option<mpsc::Receiver<SwitchRequest>>>,
    /// A request is queued or being served.
    busy: std::sync::atomic::AtomicBool,
}

/// Clears `busy` when the requester stops waiting (answered, or its call dropped).
struct Busy<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Handover {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            fence: Mutex::new(None),
            tx,
            rx: Mutex::new(Some(rx)),
            busy: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Refuses a client write while the fence is up.
    pub(crate) fn check_writable(&self) -> Result<()> {
        match *self.fence.lock() {
            Some(target) => Err(Error::MasterHandover { target }),
            None => Ok(()),
        }
    }

    pub(crate) fn fence(&self, target: u64) {
        *self.fence.lock() = Some(target);
        tracing::warn!(
            target_slave = target,
            "writes fenced: handing the master role over"
        );
    }

    pub(crate) fn unfence(&self) {
        if self.fence.lock().take().is_some() {
            tracing::info!("write fence lifted: this broker stays the master");
        }
    }

    pub(crate) fn fenced(&self) -> Option<u64> {
        *self.fence.lock()
    }

    pub(crate) fn take_requests(&self) -> Option<SwitchRequests> {
        self.rx.lock().take().map(SwitchRequests)
    }

    /// Queues a request and waits for the node's answer.
    pub(crate) async fn request(&self, target: u64, timeout: Duration) -> Result<SwitchReport> {
        if self.rx.lock().is_some() {
            return Err(Error::InvalidArgument(
                "this broker does not serve replication: no switch is possible".into(),
            ));
        }
        use std::sync::atomic::Ordering;
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidArgument(
                "a switch is already in progress on this broker".into(),
            ));
        }
        let _busy = Busy(&self.busy);
        let (reply, answer) = oneshot::channel();
        let request = SwitchRequest {
            target,
            timeout,
            reply,
        };
        self.tx.try_send(request).map_err(|_| {
            Error::InvalidArgument("a switch is already in progress on this broker".into())
        })?;
        match answer.await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(why)) => Err(Error::SwitchFailed(why)),
            Err(_) => Err(Error::SwitchFailed(
                "the node stopped before it answered".into(),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_refuses_writes_until_lifted() {
        let h = Handover::new();
        assert!(h.check_writable().is_ok());
        h.fence(2);
        let err = h.check_writable().unwrap_err();
        assert!(matches!(err, Error::MasterHandover { target: 2 }));
        assert_eq!(err.reason(), crate::Reason::ReplicasUnavailable);
        h.unfence();
        assert!(h.check_writable().is_ok());
    }

    #[tokio::test]
    async fn a_request_without_a_node_is_refused() {
        let h = Handover::new();
        let err = h.request(1, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
    }

    #[tokio::test]
    async fn the_node_answers_a_request_and_a_second_waits_its_turn() {
        let h = std::sync::Arc::new(Handover::new());
        let mut requests = h.take_requests().unwrap();
        assert!(h.take_requests().is_none());
        let asking = {
            let h = h.clone();
            tokio::spawn(async move { h.request(3, Duration::from_secs(5)).await })
        };
        let r = tokio::time::timeout(Duration::from_secs(5), requests.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.target, 3);
        // The queue holds one: a second request while the first is unanswered is refused.
        let second = h.request(4, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(second, Error::InvalidArgument(_)));
        r.answer(Err("target 3 is not in sync".into()));
        let first = asking.await.unwrap().unwrap_err();
        assert!(matches!(first, Error::SwitchFailed(ref why) if why.contains("not in sync")));
    }
}
