//! What a connection sends: an unbounded queue of frames counted in bytes, and the writer task
//! that moves them to the socket and then acknowledges the deliveries they carried.
//!
//! Invariants:
//! - `pending` is the number of bytes queued and not yet written; the driver refuses to queue
//!   deliveries past `max_pending_bytes` (slow consumer), so the queue is bounded by that plus
//!   the driver's own replies.
//! - A delivery is acknowledged to the core only after its frame was written and flushed to
//!   the socket: a queue-group message on a connection that dies before is redelivered.
//!
//! Concurrency: the writer task owns the socket's write half and the receiver; the driver owns
//! the sender. Dropping the sender lets the writer drain the queue and end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rocketgate_core::Broker;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// A frame (possibly empty) and the delivery it carries, to acknowledge once written.
#[derive(Debug)]
pub(crate) struct Out {
    pub bytes: Bytes,
    pub ack: Option<(Arc<str>, String)>,
}

/// The driver's side of the queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    tx: mpsc::UnboundedSender<Out>,
    pending: Arc<AtomicUsize>,
}

impl Outbound {
    /// Queues `bytes` (and the delivery to acknowledge after them). `false` when the writer is
    /// gone.
    pub(crate) fn send(&self, bytes: Bytes, ack: Option<(Arc<str>, String)>) -> bool {
        self.pending.fetch_add(bytes.len(), Ordering::Relaxed);
        self.tx.send(Out { bytes, ack }).is_ok()
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// A queue and the writer task draining it into `w`.
pub(crate) fn start<W>(w: W, broker: Broker) -> (Outbound, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(write(w, rx, pending.clone(), broker));
    (Outbound { tx, pending }, task)
}

/// Most frames written before one flush and one round of acknowledgements.
const BATCH: usize = 256;

async fn write<W: AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    pending: Arc<AtomicUsize>,
    broker: Broker,
) {
    let mut w = BufWriter::with_capacity(64 << 10, w);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut written = 0;
        let mut acks: HashMap<Arc<str>, Vec<String>> = HashMap::new();
        for out in batch.drain(..) {
            if w.write_all(&out.bytes).await.is_err() {
                return;
            }
            written += out.bytes.len();
            if let Some((group, receipt)) = out.ack {
                acks.entry(group).or_default().push(receipt);
            }
        }
        if w.flush().await.is_err() {
            return;
        }
        pending.fetch_sub(written, Ordering::Relaxed);
        for (group, receipts) in acks {
            let handles: Vec<&str> = receipts.iter().map(String::as_str).collect();
            if let Err(e) = broker.consumer().ack_batch(&group, &handles).await {
                tracing::debug!(error = %e, group = %group, "NATS delivery ack failed");
            }
        }
    }
    let _ = w.shutdown().await;
}
