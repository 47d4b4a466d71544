//! The public face of replication for the node's transport (phase 2a): plain data types a
//! transport can put on the wire, a master's [`ReplicationSource`] over its open `Broker`, and a
//! slave's [`Replica`] over its own Store and KvStore (no `Broker`: a follower writes nothing of
//! its own). No wire format and no network here (`rocketgate-server` owns both).
//!
//! Owns: the conversions between these types and the crate's primitives, the open / truncate /
//! reopen sequence of a slave, and the master's new term at start. Must not touch files
//! itself: `store`, `kv` and `epochs` do.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{become_master, handshake_of, Follower, Handshake, HandshakeReply, Leader};
use super::{truncate_divergent, ReplicationError};
use super::{SlaveStatus, SyncPolicy};
use crate::broker::Broker;
use crate::config::Config;
use crate::kv::{KvChanges, KvStore, Limits, Record};
use crate::store::epochs::{self, EpochEntry};
use crate::store::{Chunk, ReadBound, ReplError, Store};

/// What a slave tells its master when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveHello {
    /// Its CommitLog segment size (must equal the master's).
    pub segment_size: u64,
    /// Its epoch list: (epoch, start offset), oldest first.
    pub epochs: Vec<(u64, u64)>,
    /// Its CommitLog end.
    pub log_end: u64,
    /// Its KV store's last sequence.
    pub kv_sequence: u64,
}

/// The master's answer to a [`SlaveHello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterWelcome {
    /// Where the slave's log must end before it follows (it truncates to it if longer).
    pub start: u64,
    /// The master's epoch list (the slave adopts it).
    pub epochs: Vec<(u64, u64)>,
    /// The master's oldest retained CommitLog offset.
    pub min_offset: u64,
    /// The slave must install the master's KV snapshot before following.
    pub kv_snapshot_needed: bool,
}

/// A run of whole CommitLog records, at the master's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Offset of the first byte.
    pub from: u64,
    /// Whole records, back to back.
    pub data: Vec<u8>,
    /// The segment holding `from` ends right after `data`.
    pub seals_segment: bool,
}

/// One KV change (a `None` value deletes the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChange {
    /// Its sequence number (the master's).
    pub seq: u64,
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: Bytes,
    /// New value, or `None` for a deletion.
    pub value: Option<Bytes>,
}

/// What a slave at some KV sequence must receive next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvBatch {
    /// The changes right after it (empty: up to date).
    Changes(Vec<KvChange>),
    /// It needs the whole state.
    SnapshotNeeded,
}

/// The whole KV state at a sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvState {
    /// The sequence the state is at.
    pub seq: u64,
    /// Every (namespace, key, value).
    pub entries: Vec<(String, Bytes, Bytes)>,
}

/// Why replication refused to go on.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReplicaError {
    kind: ReplicaErrorKind,
    message: String,
}

/// The kind of a [`ReplicaError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaErrorKind {
    /// Segment sizes differ.
    SegmentSize,
    /// Retention deleted what the slave needs (`min` is the master's oldest offset): the slave
    /// must start over with an empty data directory.
    BelowRetained {
        /// The master's oldest retained offset.
        min: u64,
    },
    /// A chunk or KV batch was refused (gap, overlap, corrupt byte, sequence).
    Refused,
    /// The store shut down, or a storage fault.
    Storage,
}

impl ReplicaError {
    /// Its kind.
    pub fn kind(&self) -> ReplicaErrorKind {
        self.kind
    }
}

impl From<ReplicationError> for ReplicaError {
    fn from(e: ReplicationError) -> Self {
        let kind = match &e {
            ReplicationError::SegmentSize { .. } => ReplicaErrorKind::SegmentSize,
            ReplicationError::Log(ReplError::BelowRetained { min, .. }) => {
                ReplicaErrorKind::BelowRetained { min: *min }
            }
            ReplicationError::Log(_)
            | ReplicationError::Kv(_)
            | ReplicationError::NotTruncated { .. }
            | ReplicationError::KvSnapshotMissing => ReplicaErrorKind::Refused,
            ReplicationError::KvFiles(_) | ReplicationError::Store(_) => ReplicaErrorKind::Storage,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<crate::store::Error> for ReplicaError {
    fn from(e: crate::store::Error) -> Self {
        ReplicationError::from(e).into()
    }
}

type Result<T> = std::result::Result<T, ReplicaError>;

fn to_pairs(list: &[EpochEntry]) -> Vec<(u64, u64)> {
    list.iter().map(|e| (e.epoch, e.start)).collect()
}

fn to_entries(list: &[(u64, u64)]) -> Vec<EpochEntry> {
    list.iter()
        .map(|&(epoch, start)| EpochEntry { epoch, start })
        .collect()
}

fn chunk_out(c: Chunk) -> LogChunk {
    LogChunk {
        from: c.from,
        data: c.data,
        seals_segment: c.seals_segment,
    }
}

/// The master's side over its open `Broker` (ASYNC: everything written is served).
#[derive(Debug, Clone)]
pub struct ReplicationSource {
    broker: Broker,
}

impl ReplicationSource {
    fn leader(&self) -> Leader<'_> {
        let (store, kv) = self.broker.replication_parts();
        Leader::new(store, kv, ReadBound::Written)
    }

    /// Opens a new master term at the log end: the next epoch after every one the log has
    /// (1 for a log without epochs). Returns it. Call once at start, before clients write.
    ///
    /// # Errors
    /// An unreadable epoch file; I/O errors.
    pub fn begin_term(&self) -> Result<u64> {
        let (store, _) = self.broker.replication_parts();
        let list = epochs::load(store.dir()).map_err(ReplicationError::from)?;
        let epoch = list.last().map_or(1, |e| e.epoch + 1);
        become_master(store.dir(), epoch, store.log_bound(ReadBound::Written))?;
        Ok(epoch)
    }

    /// Answers a slave's hello.
    ///
    /// # Errors
    /// [`ReplicaErrorKind::SegmentSize`]; an unreadable epoch file.
    pub fn handshake(&self, hello: &SlaveHello) -> Result<MasterWelcome> {
        let reply = self.leader().handshake(&Handshake {
            segment_size: hello.segment_size,
            epochs: to_entries(&hello.epochs),
            log_end: hello.log_end,
            kv_sequence: hello.kv_sequence,
        })?;
        Ok(MasterWelcome {
            start: reply.start,
            epochs: to_pairs(&reply.epochs),
            min_offset: reply.min_offset,
            kv_snapshot_needed: reply.kv_snapshot_needed,
        })
    }

    /// The CommitLog segment size.
    pub fn segment_size(&self) -> u64 {
        self.broker.replication_parts().0.segment_size()
    }

    /// The master's CommitLog end (what a slave must reach).
    pub fn log_end(&self) -> u64 {
        self.broker
            .replication_parts()
            .0
            .log_bound(ReadBound::Written)
    }

    /// The next chunk from `from` (a record start), at most about `max_bytes`.
    ///
    /// # Errors
    /// [`ReplicaErrorKind::BelowRetained`], an offset past the end or not a record start.
    pub fn next_chunk(&self, from: u64, max_bytes: usize) -> Result<LogChunk> {
        Ok(chunk_out(self.leader().next_chunk(from, max_bytes)?))
    }

    /// Waits until the log is past `from`, or `timeout`; returns whether it is.
    ///
    /// # Errors
    /// The store shut down.
    pub async fn wait_for_more(&self, from: u64, timeout: Duration) -> Result<bool> {
        Ok(self.leader().wait_for_more(from, timeout).await?)
    }

    /// The KV changes after `since`, at most about `max_bytes`.
    ///
    /// # Errors
    /// I/O errors reading the KV logs.
    pub fn kv_changes(&self, since: u64, max_bytes: usize) -> Result<KvBatch> {
        Ok(match self.leader().kv_changes(since, max_bytes)? {
            KvChanges::SnapshotNeeded => KvBatch::SnapshotNeeded,
            KvChanges::Records(records) => KvBatch::Changes(
                records
                    .into_iter()
                    .map(|r| KvChange {
                        seq: r.seq,
                        namespace: r.namespace,
                        key: r.key,
                        value: r.value,
                    })
                    .collect(),
            ),
        })
    }

    /// The whole KV state.
    pub fn kv_snapshot(&self) -> KvState {
        let (seq, map) = self.leader().kv_snapshot();
        KvState {
            seq,
            entries: map.into_iter().map(|((ns, k), v)| (ns, k, v)).collect(),
        }
    }
}

impl ReplicationSource {
    fn end(&self) -> u64 {
        self.broker.replication_parts().0.log_offsets().2
    }

    /// Sets how writes are acknowledged and who counts as in sync (ASYNC until called).
    pub fn set_policy(&self, policy: SyncPolicy) {
        self.broker.in_sync().set_policy(policy);
    }

    /// Whether this broker serves replication (a policy was set).
    pub fn is_enabled(&self) -> bool {
        self.broker.in_sync().enabled()
    }

    /// The policy in force.
    pub fn policy(&self) -> SyncPolicy {
        self.broker.in_sync().policy()
    }

    /// A replication stream to slave `id` opened: it counts as connected until the returned
    /// guard drops (several streams of one id count once each).
    ///
    /// # Errors
    /// [`crate::Error::LimitReached`] when [`super::MAX_SLAVES`] other ids are tracked.
    pub fn attach(&self, id: u64) -> crate::Result<Attached> {
        self.broker.in_sync().attach(id)?;
        Ok(Attached {
            source: self.clone(),
            id,
        })
    }

    /// Slave `id` reports what it has written and fsynced. Returns the master's end.
    ///
    /// # Errors
    /// [`crate::Error::LimitReached`] when [`super::MAX_SLAVES`] other ids are tracked.
    pub fn report(&self, id: u64, written: u64, flushed: u64) -> crate::Result<u64> {
        let end = self.end();
        self.broker.in_sync().report(id, written, flushed, end)?;
        Ok(end)
    }

    /// Re-judges the in-sync set against the clock (a slave that stopped reporting leaves it
    /// after `max_lag`), logging and exporting changes. Returns the replicas in sync, the
    /// master included. The transport calls it periodically.
    pub fn refresh(&self) -> usize {
        self.broker.in_sync().refresh(self.end()) + 1
    }

    /// Every slave this master tracks.
    pub fn slaves(&self) -> Vec<SlaveStatus> {
        self.broker.in_sync().slaves(self.end())
    }
}

/// A switchover, master side (see `handover.rs`): gateways ask with
/// [`ReplicationSource::request_switch`], the node serves [`ReplicationSource::take_switch_requests`].
impl ReplicationSource {
    /// Asks the node to hand the master role to slave `target` (giving it `timeout` to catch
    /// up) and waits for the outcome.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] when this broker serves no replication or a switch
    /// is in progress; [`crate::Error::SwitchFailed`] with the node's reason.
    pub async fn request_switch(
        &self,
        target: u64,
        timeout: Duration,
    ) -> crate::Result<super::SwitchReport> {
        self.broker.handover().request(target, timeout).await
    }

    /// The queue of switch requests, for the node (`None` after the first call).
    pub fn take_switch_requests(&self) -> Option<super::SwitchRequests> {
        self.broker.handover().take_requests()
    }

    /// Refuses every client write ([`crate::Error::MasterHandover`]) from now on.
    pub fn fence(&self, target: u64) {
        self.broker.handover().fence(target);
    }

    /// Takes client writes again.
    pub fn unfence(&self) {
        self.broker.handover().unfence();
    }

    /// The slave writes are fenced for, if any.
    pub fn fenced(&self) -> Option<u64> {
        self.broker.handover().fenced()
    }

    /// Stops the broker's own writers (timer delivery, check-backs, revival, the offset
    /// persister) and persists the consumer state, so the log and the KV store stop moving
    /// once the gateways have stopped. The store stays open for the stream.
    ///
    /// # Errors
    /// Persisting the consumer state failed.
    pub fn quiesce(&self) -> crate::Result<()> {
        self.broker.quiesce()
    }

    /// Commits the consumer offsets a slave's report carried (taken through its read-only
    /// broker); returns how many were committed (the others are logged).
    pub fn commit_forwarded_offsets(&self, offsets: &[super::ForwardedOffset]) -> usize {
        self.broker.commit_forwarded_offsets(offsets)
    }

    /// The KV store's last sequence.
    pub fn kv_sequence(&self) -> u64 {
        self.broker.replication_parts().1.last_sequence()
    }
}

/// A slave's open replication stream (see [`ReplicationSource::attach`]).
#[derive(Debug)]
pub struct Attached {
    source: ReplicationSource,
    id: u64,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let end = self.source.end();
        self.source.broker.in_sync().detach(self.id, end);
    }
}

impl Broker {
    /// The master's side of replication over this broker's store and KV store.
    pub fn replication_source(&self) -> ReplicationSource {
        ReplicationSource {
            broker: self.clone(),
        }
    }
}

/// The consumer offsets committed on a slave that its master has not taken yet: what the
/// slave's replication reports carry.
#[derive(Debug, Clone)]
pub struct OffsetOutbox {
    commits: Arc<super::reads::SlaveCommits>,
}

impl OffsetOutbox {
    /// Up to `max` offsets to send now (not sent yet, or sent more than a second ago without
    /// an answer).
    pub fn next(&self, max: usize) -> Vec<super::ForwardedOffset> {
        self.commits.to_forward(max, crate::clock::now_ms())
    }

    /// The master answered the report that carried `sent`.
    pub fn sent(&self, sent: &[super::ForwardedOffset]) {
        self.commits.forwarded(sent, crate::clock::now_ms());
    }
}

/// A slave's data directory while it follows: its Store and KvStore (both refusing local
/// writes), and, once asked for, a read-only `Broker` over them ([`Replica::reader`]).
#[derive(Debug)]
pub struct Replica {
    config: Config,
    store: Arc<Store>,
    kv: Arc<KvStore>,
    reader: Option<Broker>,
}

fn kv_limits(c: &Config) -> Limits {
    Limits {
        max_value: c.limits.max_body_bytes.saturating_add(64 << 10),
        max_total: c.kv.max_total_bytes,
        compact_log_bytes: c.kv.compact_log_bytes,
    }
}

impl Replica {
    /// Opens (recovering) the Store and the KvStore under `config.store.data_dir`.
    ///
    /// # Errors
    /// Invalid configuration, a locked directory, recovery failures.
    pub fn open(config: Config) -> crate::Result<Self> {
        config.validate()?;
        crate::broker::data_dir::make_private(&config.store.data_dir)?;
        let store =
            Store::open_with_clock(config.store.clone(), Arc::new(crate::clock::SystemClock))?;
        store.set_following(true);
        let kv = Arc::new(KvStore::open(
            &config.store.data_dir.join("kv"),
            kv_limits(&config),
        )?);
        kv.set_following(true);
        Ok(Self {
            config,
            store: Arc::new(store),
            kv,
            reader: None,
        })
    }

    /// A read-only `Broker` over this copy (the same one until [`Replica::release_reader`]):
    /// it serves reads — topics, pulls by offset, queries, committed offsets, users for
    /// authentication — and refuses writes with [`crate::Error::NotMaster`]; its cached tables
    /// are reloaded whenever KV changes are applied here. Offsets committed through it are
    /// kept aside and forwarded to the master ([`Replica::offsets_to_forward`]).
    ///
    /// # Errors
    /// Unreadable metadata.
    pub fn reader(&mut self) -> crate::Result<Broker> {
        if let Some(b) = &self.reader {
            return Ok(b.clone());
        }
        let b = Broker::open_reader(self.config.clone(), self.store.clone(), self.kv.clone())?;
        self.reader = Some(b.clone());
        Ok(b)
    }

    /// Drops this replica's handle on its reader. The caller stops whatever else holds one
    /// (gateways) before a truncating [`Replica::start`] or [`Replica::discard`], which need
    /// the store to themselves.
    pub fn release_reader(&mut self) {
        self.reader = None;
    }

    /// Whether agreeing on `welcome` cuts this copy's log (so needs the store to itself).
    pub fn would_truncate(&self, welcome: &MasterWelcome) -> bool {
        self.store.log_bound(ReadBound::Written) > welcome.start
    }

    /// Whether a reader is open ([`Replica::reader`]).
    pub fn has_reader(&self) -> bool {
        self.reader.is_some()
    }

    /// The offsets committed through the reader, on their way to the master (`None` without
    /// a reader). The outbox holds no store handle.
    pub fn outbox(&self) -> Option<OffsetOutbox> {
        let commits = self.reader.as_ref()?.slave_commits()?;
        Some(OffsetOutbox { commits })
    }

    /// Takes the store back from every other holder, or says who still holds it.
    fn exclusive_store(store: Arc<Store>) -> Result<Store> {
        Arc::try_unwrap(store).map_err(|_| ReplicaError {
            kind: ReplicaErrorKind::Storage,
            message: "a reader still holds the store: stop the slave's gateways and release \
                          the reader first"
                .into(),
        })
    }

    /// What to tell the master.
    ///
    /// # Errors
    /// An unreadable epoch file.
    pub fn hello(&self) -> Result<SlaveHello> {
        let h = handshake_of(&self.store, &self.kv)?;
        Ok(SlaveHello {
            segment_size: h.segment_size,
            epochs: to_pairs(&h.epochs),
            log_end: h.log_end,
            kv_sequence: h.kv_sequence,
        })
    }

    /// Agrees on `welcome`: cuts a divergent tail (closing and reopening the store), installs
    /// `kv` when the master asked for a snapshot, adopts the master's epochs.
    ///
    /// # Errors
    /// [`ReplicaErrorKind::BelowRetained`] when the master no longer has `welcome.start`; a
    /// missing snapshot; I/O errors.
    pub fn start(self, welcome: &MasterWelcome, kv: Option<KvState>) -> Result<Self> {
        if welcome.start < welcome.min_offset {
            return Err(ReplicationError::Log(ReplError::BelowRetained {
                from: welcome.start,
                min: welcome.min_offset,
            })
            .into());
        }
        let reply = HandshakeReply {
            start: welcome.start,
            epochs: to_entries(&welcome.epochs),
            min_offset: welcome.min_offset,
            kv_snapshot_needed: welcome.kv_snapshot_needed,
        };
        let mut this = self;
        if this.would_truncate(welcome) {
            if this.reader.is_some() {
                return Err(ReplicaError {
                    kind: ReplicaErrorKind::Storage,
                    message: "release the reader before a truncating start".into(),
                });
            }
            let Self {
                config, store, kv, ..
            } = this;
            let store = Self::exclusive_store(store)?;
            store.shutdown()?;
            drop(store);
            let cut = truncate_divergent(&config.store, &reply)?;
            tracing::warn!(to = welcome.start, cut, "cut a divergent tail");
            let store =
                Store::open_with_clock(config.store.clone(), Arc::new(crate::clock::SystemClock))?;
            store.set_following(true);
            this = Self {
                config,
                store: Arc::new(store),
                kv,
                reader: None,
            };
        }
        let snap = kv.map(|s| {
            let map = s
                .entries
                .into_iter()
                .map(|(ns, k, v)| ((ns, k), v))
                .collect();
            (s.seq, map)
        });
        Follower::start(&this.store, &this.kv, &reply, snap)?;
        Ok(this)
    }

    fn follower(&self) -> Follower<'_> {
        Follower {
            store: &self.store,
            kv: &self.kv,
        }
    }

    /// Where the next chunk must start.
    pub fn log_end(&self) -> u64 {
        self.store.log_bound(ReadBound::Written)
    }

    /// How far the local log is durable.
    pub fn flushed(&self) -> u64 {
        self.store.log_bound(ReadBound::Flushed)
    }

    /// The KV sequence to ask changes after.
    pub fn kv_sequence(&self) -> u64 {
        self.kv.last_sequence()
    }

    /// Appends a chunk (every record checked; nothing written if one fails); returns the new
    /// log end.
    ///
    /// # Errors
    /// [`ReplicaErrorKind::Refused`] (gap, overlap, corrupt byte); storage faults.
    pub async fn apply(&self, chunk: LogChunk) -> Result<u64> {
        let chunk = Chunk {
            from: chunk.from,
            data: chunk.data,
            seals_segment: chunk.seals_segment,
        };
        Ok(self.follower().apply(&chunk).await?.end)
    }

    /// Applies KV changes (contiguous sequences only); returns the last sequence.
    ///
    /// # Errors
    /// [`ReplicaErrorKind::Refused`]; I/O errors.
    pub fn apply_kv(&self, changes: Vec<KvChange>) -> Result<u64> {
        let namespaces: std::collections::BTreeSet<String> =
            changes.iter().map(|c| c.namespace.clone()).collect();
        let records: Vec<Record> = changes
            .into_iter()
            .map(|c| Record {
                seq: c.seq,
                namespace: c.namespace,
                key: c.key,
                value: c.value,
            })
            .collect();
        let seq = self.follower().apply_kv(&records)?;
        if let Some(b) = &self.reader {
            b.refresh(Some(&namespaces));
        }
        Ok(seq)
    }

    /// Replaces the KV state by the master's (sent when the master no longer has the changes
    /// after this slave's sequence).
    ///
    /// # Errors
    /// I/O errors.
    pub fn install_kv(&self, state: KvState) -> Result<()> {
        let map = state
            .entries
            .into_iter()
            .map(|(ns, k, v)| ((ns, k), v))
            .collect();
        self.follower().install_kv_snapshot((state.seq, map))?;
        if let Some(b) = &self.reader {
            b.refresh(None);
        }
        Ok(())
    }

    /// Flushes and closes the store (the clean marker), so a `Broker` may open the directory.
    ///
    /// # Errors
    /// The final flush's error.
    pub fn close(self) -> Result<()> {
        self.store.shutdown()?;
        Ok(())
    }

    /// Closes this replica and deletes everything it copied (CommitLog, ConsumeQueues, index,
    /// epochs, KV store), keeping the node's own `config/`, then opens the empty directory:
    /// for a slave whose master no longer has what it would need next
    /// ([`ReplicaErrorKind::BelowRetained`]). It then copies from the master's oldest segment,
    /// with a KV snapshot.
    ///
    /// # Errors
    /// A reader still open (release it first); I/O errors; the directory cannot be reopened.
    pub fn discard(self) -> Result<Self> {
        let Self {
            config, store, kv, ..
        } = self;
        let store = Self::exclusive_store(store)?;
        store.shutdown()?;
        drop(store);
        drop(kv);
        let storage = |e: &dyn std::fmt::Display| ReplicaError {
            kind: ReplicaErrorKind::Storage,
            message: e.to_string(),
        };
        crate::store::discard_files(&config.store)?;
        crate::kv::discard_files(&config.store.data_dir.join("kv")).map_err(|e| storage(&e))?;
        Self::open(config).map_err(|e| storage(&e))
    }

    /// Whether this replica holds nothing yet (no record, no epoch).
    ///
    /// # Errors
    /// An unreadable epoch file.
    pub fn is_empty(&self) -> Result<bool> {
        let h = self.hello()?;
        Ok(h.log_end == 0 && h.epochs.is_empty())
    }
}
