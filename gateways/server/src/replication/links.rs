//! A master's links to its slaves, for a switchover: where each slave serves replication once
//! promoted (from its handshake), its last reported KV sequence, and a control channel into its
//! open stream (the stream ends after sending the order it carries).
//!
//! Owns this table only; the CommitLog positions and the in-sync set are core's
//! (`ReplicationSource::slaves`). Bounded: only ids core admitted (at most `MAX_SLAVES`) get a
//! link, and a link is dropped with its stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rocketgate_proto::cluster::v1 as pb;
use tokio::sync::mpsc;

/// An order a switchover sends down one slave's stream (its last frame).
#[derive(Debug, Clone)]
pub(crate) enum Control {
    /// Take over as the master: the old master stopped writing at `log_end` / `kv_sequence`
    /// and follows as `old_master_id`.
    Promote {
        log_end: u64,
        kv_sequence: u64,
        old_master_id: u64,
    },
    /// Follow `master_address` from now on.
    Redirect { master_address: String },
}

impl Control {
    pub(crate) fn into_frame(self) -> pb::follow_frame::Frame {
        match self {
            Self::Promote {
                log_end,
                kv_sequence,
                old_master_id,
            } => pb::follow_frame::Frame::Promote(pb::Promote {
                log_end,
                kv_sequence,
                old_master_id,
            }),
            Self::Redirect { master_address } => pb::follow_frame::Frame::Redirect(pb::Redirect {
                master_address,
                master_id: 0,
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Link {
    address: Option<String>,
    kv_sequence: u64,
    /// The open stream's control channel, and its generation (a newer stream replaces it).
    control: Option<(u64, mpsc::Sender<Control>)>,
}

/// The table (cheap to clone; see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct Links {
    inner: Arc<Mutex<Table>>,
    /// Wakes every stream waiting for news (a switchover fenced writes: KV changes must flow
    /// at once).
    wake: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Table {
    links: BTreeMap<u64, Link>,
    generation: u64,
}

/// Removes a stream's control channel when the stream ends.
pub(crate) struct Open {
    links: Links,
    id: u64,
    generation: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut t = self.links.inner.lock();
        if let Some(link) = t.links.get_mut(&self.id) {
            if link.control.as_ref().map(|(g, _)| *g) == Some(self.generation) {
                link.control = None;
            }
        }
    }
}

impl Links {
    /// Wakes every stream now.
    pub(crate) fn wake_all(&self) {
        self.wake.notify_waiters();
    }

    /// Resolves at the next [`Links::wake_all`].
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Slave `id`'s handshake named where it serves once promoted.
    pub(crate) fn set_address(&self, id: u64, address: Option<String>) {
        self.inner.lock().links.entry(id).or_default().address = address;
    }

    /// Slave `id` reported its KV sequence.
    pub(crate) fn report(&self, id: u64, kv_sequence: u64) {
        if let Some(link) = self.inner.lock().links.get_mut(&id) {
            link.kv_sequence = kv_sequence;
        }
    }

    /// A stream to slave `id` opened: its control receiver and the guard that closes the link.
    pub(crate) fn open(&self, id: u64) -> (mpsc::Receiver<Control>, Open) {
        let (tx, rx) = mpsc::channel(1);
        let mut t = self.inner.lock();
        t.generation += 1;
        let generation = t.generation;
        t.links.entry(id).or_default().control = Some((generation, tx));
        drop(t);
        let open = Open {
            links: self.clone(),
            id,
            generation,
        };
        (rx, open)
    }

    /// Slave `id`'s promotable address, if its stream is open.
    pub(crate) fn connected_address(&self, id: u64) -> Option<Option<String>> {
        let t = self.inner.lock();
        let link = t.links.get(&id)?;
        link.control.as_ref()?;
        Some(link.address.clone())
    }

    /// Whether slave `id`'s stream is open.
    pub(crate) fn is_open(&self, id: u64) -> bool {
        self.inner
            .lock()
            .links
            .get(&id)
            .is_some_and(|l| l.control.is_some())
    }

    /// Slave `id`'s last reported KV sequence.
    pub(crate) fn kv_sequence(&self, id: u64) -> u64 {
        self.inner
            .lock()
            .links
            .get(&id)
            .map_or(0, |l| l.kv_sequence)
    }

    /// Sends `order` to slave `id`'s open stream; whether it was taken.
    pub(crate) fn send(&self, id: u64, order: Control) -> bool {
        let tx = self
            .inner
            .lock()
            .links
            .get(&id)
            .and_then(|l| l.control.as_ref().map(|(_, tx)| tx.clone()));
        tx.is_some_and(|tx| tx.try_send(order).is_ok())
    }

    /// Every slave with an open stream, but `except`.
    pub(crate) fn open_ids(&self, except: u64) -> Vec<u64> {
        self.inner
            .lock()
            .links
            .iter()
            .filter(|(id, l)| **id != except && l.control.is_some())
            .map(|(id, _)| *id)
            .collect()
    }
}
