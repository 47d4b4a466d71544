//! Store operations recorded in the CommitLog: a topic's deletion (`delete_queues`) is a record
//! of its own, so it happens at one place in the log's order for every reader of the log — the
//! dispatcher, the replay after a crash, and a replication follower.
//!
//! Owns: the marker record (internal topic [`STORE_OPS_TOPIC`], flag
//! [`record::FLAG_STORE_OP`], tag = the operation, body = the topic), the deletion's effect on
//! the ConsumeQueue table, and the dispatcher's list of deletions it has not reached yet. The
//! CommitLog's part (queue offsets reset under the writer lock, on a master and on a follower)
//! is in `commit_log.rs` and `commit_log/replica.rs`. Must not know the broker or replication.
//!
//! Invariants:
//! - Records of a topic before its marker never stay in a ConsumeQueue once the dispatcher has
//!   passed the marker; records after it start again at queue offset 0.
//! - While the dispatcher has not reached a marker, it skips the topic's records below it (so a
//!   lagging dispatcher never re-creates a deleted queue with old entries).
//! - The marker has no ConsumeQueue entry and no queue offset of its own (always 0).
//!
//! Concurrency: `Inner::pending_deletes` is held by the dispatcher for each batch it
//! dispatches and by [`super::Store::delete_queues`] around its append and its eager removal,
//! so neither sees the other half done. Lock order: `pending_deletes`, then the CommitLog's
//! writer, then the queue table.

use std::collections::{BTreeMap, HashMap};

use super::error::Result;
use super::record::{self, RecordDraft, RecordView};
use super::Inner;

/// The internal topic of store-operation records (never a ConsumeQueue).
pub const STORE_OPS_TOPIC: &str = "rmq_sys_store_ops";
/// The operation that deletes a topic's ConsumeQueues and resets its queue offsets.
const OP_DELETE_QUEUES: &str = "delete_queues";

static NO_PROPERTIES: BTreeMap<String, String> = BTreeMap::new();

/// Deletions the dispatcher has not reached: topic -> CommitLog offset of the latest marker.
pub(super) type PendingDeletes = HashMap<String, u64>;

/// The marker record of `topic`'s deletion.
pub(super) fn delete_queues_draft(topic: &str, now_ms: i64) -> RecordDraft<'_> {
    RecordDraft {
        topic: STORE_OPS_TOPIC,
        message_id: "",
        tag: OP_DELETE_QUEUES,
        message_group: "",
        born_host: "",
        keys: &[],
        properties: &NO_PROPERTIES,
        body: topic.as_bytes(),
        born_timestamp: now_ms,
        reconsume_times: 0,
        flags: record::FLAG_NO_INDEX | record::FLAG_STORE_OP,
        prepared_offset: 0,
    }
}

/// Whether the record is a store operation (no message, no queue entry).
pub(crate) fn is_store_op(v: &RecordView<'_>) -> bool {
    v.flags & record::FLAG_STORE_OP != 0
}

/// The topic whose queues this record deletes, if it is such a marker (an unknown operation of
/// a newer version is not one).
pub(crate) fn deleted_topic<'a>(v: &RecordView<'a>) -> Option<&'a str> {
    if !is_store_op(v) || v.tag != OP_DELETE_QUEUES {
        return None;
    }
    std::str::from_utf8(v.body).ok()
}

/// Whether the dispatcher skips `v`: a record of a topic whose deletion marker lies after it.
pub(super) fn deleted_later(pending: &PendingDeletes, v: &RecordView<'_>) -> bool {
    !pending.is_empty()
        && pending
            .get(v.topic)
            .is_some_and(|marker| v.fields.physical_offset < *marker)
}

impl Inner {
    /// Removes the ConsumeQueues of `topic` from the table and deletes their files.
    pub(super) fn remove_queues(&self, topic: &str) -> Result<()> {
        let removed = self.queues.write().remove(topic);
        for q in removed.into_iter().flatten().flatten() {
            q.destroy()?;
        }
        super::recovery::remove_dir(&self.dir.join("consumequeue").join(topic))
    }

    /// The dispatcher reached the deletion marker of `topic` at `phy`: whatever of the topic
    /// it dispatched before is deleted; during replay (`seed`) the queue offsets the replay
    /// raised so far start again from 0.
    pub(super) fn dispatch_delete(
        &self,
        pending: &mut PendingDeletes,
        topic: &str,
        phy: u64,
        seed: bool,
    ) -> Result<()> {
        if pending.get(topic).is_some_and(|m| *m <= phy) {
            pending.remove(topic);
        }
        if seed {
            self.log.forget_topic(topic);
        }
        self.remove_queues(topic)
    }
}
