//! Replication: the logic a master and its followers run over the store's and the KV store's
//! primitives, without any transport (phase 1), and its public face for the node's transport
//! (`public.rs`, phase 2a: `rocketgate-server` owns the wire protocol; SYNC acknowledgements,
//! the in-sync set and switchover are phase 2b; see `docs/replication.md`).
//!
//! Owns: the handshake ([`Leader::handshake`] → [`HandshakeReply`]), the choice of what a
//! follower is sent next ([`Leader::next_chunk`], [`Leader::kv_changes`]), the follower's
//! side ([`Follower`]), and epochs ([`become_master`], `epoch.rs`). It must not touch files
//! itself: the CommitLog, the epoch file and the KV files are `store`'s and `kv`'s.
//!
//! Invariants:
//! - A follower's CommitLog is a prefix of its master's, byte for byte, at the same offsets:
//!   it appends only at its end, only chunks that passed every record check, and before
//!   following it cuts whatever its log holds past the last common point with the master
//!   ([`epoch::last_common`]); the cut is durable before the first chunk is applied.
//! - A follower adopts its master's epoch list at the handshake, so that whoever is promoted
//!   next opens a newer epoch at its own end ([`become_master`]) and can answer handshakes.
//! - KV changes keep their sequence numbers; a follower applies them contiguously or takes a
//!   snapshot. A follower never writes anything of its own: its Store and KvStore refuse local
//!   writes, and the only Broker on its data dir while it follows is read-only (`reads.rs`,
//!   `Replica::reader`: no internal topics, no workers; offsets committed on it are kept aside
//!   and forwarded to the master).
//! - Promotion: close the follower's Store and KvStore, [`become_master`] with a new epoch,
//!   open a `Broker` on the directory. Every table the Broker caches (topics, groups, offsets,
//!   pop state, timer, transactions, sessions, users) is loaded from the KV at open, so the
//!   promoted broker has everything the follower copied.

mod epoch;
mod handover;
mod in_sync;
mod public;
pub(crate) mod reads;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::time::Duration;

pub(crate) use self::epoch::{begin_epoch, last_common};
pub(crate) use self::handover::Handover;
pub use self::handover::{SwitchReport, SwitchRequest, SwitchRequests};
pub(crate) use self::in_sync::InSync;
pub use self::in_sync::{ReplicationMode, SlaveStatus, SyncPolicy, MAX_SLAVES};
pub use self::public::{
    Attached, KvBatch, KvChange, KvState, LogChunk, MasterWelcome, OffsetOutbox, Replica,
    ReplicaError, ReplicaErrorKind, ReplicationSource, SlaveHello,
};
pub use self::reads::ForwardedOffset;
use crate::config::StoreConfig;
use crate::kv::{KvApplyError, KvChanges, KvSnapshot, KvStore, Record};
use crate::store::epochs::{self, EpochEntry};
use crate::store::{self, Chunk, ReadBound, ReplAppended, ReplError, Store};

/// What a follower tells its master when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handshake {
    /// Its CommitLog segment size (must equal the master's).
    pub(crate) segment_size: u64,
    /// Its epoch list.
    pub(crate) epochs: Vec<EpochEntry>,
    /// Its CommitLog end.
    pub(crate) log_end: u64,
    /// Its KV store's last sequence.
    pub(crate) kv_sequence: u64,
}

/// The master's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeReply {
    /// Where the follower's log must end before it follows (truncate to it if longer).
    pub(crate) start: u64,
    /// The master's epoch list (the follower adopts it).
    pub(crate) epochs: Vec<EpochEntry>,
    /// The master's oldest retained CommitLog offset: a `start` below it cannot be followed
    /// (the follower must start over from an empty log at this offset).
    pub(crate) min_offset: u64,
    /// The follower must replace its KV state by the master's snapshot before following: its
    /// epoch list differs from the master's, so its KV sequence numbers may name other changes
    /// (the KV log has no epochs of its own).
    pub(crate) kv_snapshot_needed: bool,
}

/// Why replication refused to go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicationError {
    /// Segment sizes differ: the follower's files could not be identical.
    #[error("segment size {follower} differs from the master's {master}")]
    SegmentSize {
        /// The master's.
        master: u64,
        /// The follower's.
        follower: u64,
    },
    /// The follower's log does not end where the handshake said it must.
    #[error("the follower's log ends at {end}, the handshake agreed on {start}: truncate first")]
    NotTruncated {
        /// Its end.
        end: u64,
        /// The agreed start.
        start: u64,
    },
    /// The handshake asked for a KV snapshot and none was given.
    #[error("the master asked for a KV snapshot before following")]
    KvSnapshotMissing,
    /// A CommitLog chunk refused, or a read the master cannot serve.
    #[error(transparent)]
    Log(#[from] ReplError),
    /// KV records refused.
    #[error(transparent)]
    Kv(#[from] KvApplyError),
    /// A fault of the KV files.
    #[error(transparent)]
    KvFiles(#[from] crate::kv::Error),
    /// A storage fault.
    #[error(transparent)]
    Store(#[from] store::Error),
}

type Result<T, E = ReplicationError> = std::result::Result<T, E>;

/// The master's side: answers handshakes and serves chunks (one per connected follower, or
/// shared: it holds no per-follower state).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leader<'a> {
    store: &'a Store,
    kv: &'a KvStore,
    bound: ReadBound,
}

impl<'a> Leader<'a> {
    /// A leader serving records up to `bound` (written for ASYNC replication).
    pub(crate) fn new(store: &'a Store, kv: &'a KvStore, bound: ReadBound) -> Self {
        Self { store, kv, bound }
    }

    /// Answers a follower's handshake with where it must start.
    ///
    /// # Errors
    /// [`ReplicationError::SegmentSize`]; an unreadable epoch file.
    pub(crate) fn handshake(&self, h: &Handshake) -> Result<HandshakeReply> {
        if h.segment_size != self.store.segment_size() {
            return Err(ReplicationError::SegmentSize {
                master: self.store.segment_size(),
                follower: h.segment_size,
            });
        }
        let epochs = epochs::load(self.store.dir())?;
        let end = self.store.log_bound(self.bound);
        let start = last_common(&epochs, end, &h.epochs, h.log_end);
        Ok(HandshakeReply {
            start,
            kv_snapshot_needed: h.epochs != epochs,
            epochs,
            min_offset: self.store.log_offsets().0,
        })
    }

    /// The next chunk of whole records from `from`, at most about `max_bytes`.
    ///
    /// # Errors
    /// [`ReplError::BelowRetained`] (start over at its `min`), [`ReplError::BeyondEnd`],
    /// [`ReplError::NotRecordStart`], corruption.
    pub(crate) fn next_chunk(&self, from: u64, max_bytes: usize) -> Result<Chunk> {
        Ok(self.store.read_chunk(from, max_bytes, self.bound)?)
    }

    /// Waits until there is something past `from` to send, or `timeout`; returns whether
    /// there is.
    ///
    /// # Errors
    /// The store shut down.
    pub(crate) async fn wait_for_more(&self, from: u64, timeout: Duration) -> Result<bool> {
        Ok(self.store.wait_for_more(from, self.bound, timeout).await?)
    }

    /// The KV changes after `since` (or that a snapshot is needed).
    ///
    /// # Errors
    /// I/O errors reading the KV logs.
    pub(crate) fn kv_changes(&self, since: u64, max_bytes: usize) -> Result<KvChanges> {
        Ok(self.kv.changes_since(since, max_bytes)?)
    }

    /// The whole KV state, for a follower that needs a snapshot.
    pub(crate) fn kv_snapshot(&self) -> KvSnapshot {
        self.kv.snapshot()
    }
}

/// What a follower sends in its handshake.
pub(crate) fn handshake_of(store: &Store, kv: &KvStore) -> Result<Handshake> {
    Ok(Handshake {
        segment_size: store.segment_size(),
        epochs: epochs::load(store.dir())?,
        log_end: store.log_bound(ReadBound::Written),
        kv_sequence: kv.last_sequence(),
    })
}

/// On a closed store: makes the follower's log end at `reply.start` (durably cutting a
/// divergent tail, with every ConsumeQueue and index entry past it at the next open) and
/// adopts the master's epochs. Returns whether anything was cut.
///
/// # Errors
/// A locked directory (the store is open), a start that is not a record start, I/O errors.
pub(crate) fn truncate_divergent(config: &StoreConfig, reply: &HandshakeReply) -> Result<bool> {
    let end = store::truncate_to(config, reply.start)?;
    epochs::store(&config.data_dir, &reply.epochs)?;
    Ok(end > reply.start)
}

/// Opens a new master term `epoch` at the end of the (closed or idle) store's log.
///
/// # Errors
/// [`store::Error::Corrupted`] if `epoch` is not newer than the follower's epochs; I/O errors.
pub(crate) fn become_master(dir: &std::path::Path, epoch: u64, log_end: u64) -> Result<()> {
    let list = epochs::load(dir)?;
    let Some(next) = begin_epoch(&list, epoch, log_end) else {
        return Err(store::Error::Corrupted {
            path: dir.join("epoch"),
            offset: log_end,
            reason: "a new epoch must be newer than every epoch of the log",
        }
        .into());
    };
    epochs::store(dir, &next)?;
    Ok(())
}

/// The follower's side over its (open) Store and KvStore.
#[derive(Debug)]
pub(crate) struct Follower<'a> {
    store: &'a Store,
    kv: &'a KvStore,
}

impl<'a> Follower<'a> {
    /// A follower that agreed on `reply` with its master: its log must end at `reply.start`
    /// (after [`truncate_divergent`]). When the reply asks for it, `kv_snapshot` (the master's,
    /// [`Leader::kv_snapshot`]) replaces its KV state first; then it adopts the master's epochs
    /// (in that order: a crash in between asks for the snapshot again).
    ///
    /// # Errors
    /// [`ReplicationError::NotTruncated`]; [`ReplicationError::KvSnapshotMissing`]; I/O errors.
    pub(crate) fn start(
        store: &'a Store,
        kv: &'a KvStore,
        reply: &HandshakeReply,
        kv_snapshot: Option<KvSnapshot>,
    ) -> Result<Self> {
        let end = store.log_bound(ReadBound::Written);
        if end > reply.start {
            return Err(ReplicationError::NotTruncated {
                end,
                start: reply.start,
            });
        }
        match kv_snapshot {
            Some(snap) => kv.install_snapshot(snap)?,
            None if reply.kv_snapshot_needed => return Err(ReplicationError::KvSnapshotMissing),
            None => {}
        }
        epochs::store(store.dir(), &reply.epochs)?;
        Ok(Self { store, kv })
    }

    /// Where the next chunk must start.
    pub(crate) fn log_end(&self) -> u64 {
        self.store.log_bound(ReadBound::Written)
    }

    /// Appends a chunk (checked record by record, nothing written if one fails).
    ///
    /// # Errors
    /// [`ReplError::Gap`], [`ReplError::Overlap`], [`ReplError::BadChunk`], storage faults.
    pub(crate) async fn apply(&self, chunk: &Chunk) -> Result<ReplAppended> {
        Ok(self.store.append_replicated(chunk).await?)
    }

    /// The KV sequence to ask changes after.
    pub(crate) fn kv_sequence(&self) -> u64 {
        self.kv.last_sequence()
    }

    /// Applies KV changes received from the master.
    ///
    /// # Errors
    /// [`KvApplyError::Sequence`] and the other refusals; I/O errors.
    pub(crate) fn apply_kv(&self, records: &[Record]) -> Result<u64> {
        Ok(self.kv.apply_replicated(records)?)
    }

    /// Replaces the KV state by the master's snapshot.
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn install_kv_snapshot(&self, snap: KvSnapshot) -> Result<()> {
        Ok(self.kv.install_snapshot(snap)?)
    }
}
