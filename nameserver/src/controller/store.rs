//! The Raft log of one controller member on disk ([`LogStore`]): entries, vote, committed and
//! purged log ids in a redb database (`<data_dir>/raft.redb`), which also holds the state
//! machine's last snapshot (`machine.rs` writes it through [`LogStore::db`]).
//!
//! Why redb: a single-file, pure-Rust embedded B-tree store with ACID transactions where a
//! commit is durable when it returns (fsync'd, `Durability::Immediate`), which is exactly what
//! Raft needs from a vote or an appended entry, without a background compaction thread (fjall's
//! LSM tree is built for write-heavy loads the controller does not have: it writes a few
//! entries per failover and per broker joining).
//!
//! Invariants: an append or a vote returns only once committed to disk; entries are JSON of
//! openraft's `Entry`; reads never block on writers (redb MVCC). Writes are small and rare, so
//! they run inline on the Raft task. Must not touch the state machine's contents.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableTable, TableDefinition};

use super::TypeConfig;

/// Log index → JSON of the entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `vote`, `committed`, `purged`, `snapshot` → JSON.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

type StoreError = StorageError<u64>;

fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// Opens (creating) the database and its tables.
///
/// # Errors
/// The file cannot be created, opened or is not a redb database.
pub(super) fn open(dir: &Path) -> Result<Arc<Database>, AnyError> {
    let db = Database::create(dir.join("raft.redb")).map_err(any)?;
    let tx = db.begin_write().map_err(any)?;
    {
        tx.open_table(LOG).map_err(any)?;
        tx.open_table(META).map_err(any)?;
    }
    tx.commit().map_err(any)?;
    Ok(Arc::new(db))
}

/// Writes `key` = JSON of `value` in [`META`], durably.
pub(super) fn put_meta<T: serde::Serialize>(
    db: &Database,
    key: &str,
    value: &T,
) -> Result<(), AnyError> {
    let bytes = serde_json::to_vec(value).map_err(any)?;
    let tx = db.begin_write().map_err(any)?;
    {
        let mut table = tx.open_table(META).map_err(any)?;
        table.insert(key, bytes.as_slice()).map_err(any)?;
    }
    tx.commit().map_err(any)
}

/// Reads `key` of [`META`].
pub(super) fn get_meta<T: serde::de::DeserializeOwned>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, AnyError> {
    let tx = db.begin_read().map_err(any)?;
    let table = tx.open_table(META).map_err(any)?;
    match table.get(key).map_err(any)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(any),
    }
}

/// The controller's Raft log (and the reader openraft's replication uses: a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn last_entry(&self) -> Result<Option<LogId<u64>>, AnyError> {
        let tx = self.db.begin_read().map_err(any)?;
        let table = tx.open_table(LOG).map_err(any)?;
        let last = table.last().map_err(any)?;
        let Some((_, v)) = last else {
            return Ok(None);
        };
        let entry: Entry<TypeConfig> = serde_json::from_slice(v.value()).map_err(any)?;
        Ok(Some(entry.log_id))
    }

    /// Removes the entries with an index in `range`.
    fn remove(&self, range: impl RangeBounds<u64>) -> Result<(), AnyError> {
        let tx = self.db.begin_write().map_err(any)?;
        {
            let mut table = tx.open_table(LOG).map_err(any)?;
            table.retain_in(range, |_, _| false).map_err(any)?;
        }
        tx.commit().map_err(any)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let read = || -> Result<Vec<Entry<TypeConfig>>, AnyError> {
            let tx = self.db.begin_read().map_err(any)?;
            let table = tx.open_table(LOG).map_err(any)?;
            let mut out = Vec::new();
            for row in table.range(range).map_err(any)? {
                let (_, v) = row.map_err(any)?;
                out.push(serde_json::from_slice(v.value()).map_err(any)?);
            }
            Ok(out)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<u64>> =
            get_meta(&self.db, "purged").map_err(StorageIOError::read_logs)?;
        let last = self.last_entry().map_err(StorageIOError::read_logs)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StoreError> {
        put_meta(&self.db, "vote", vote).map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StoreError> {
        get_meta(&self.db, "vote").map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StoreError> {
        put_meta(&self.db, "committed", &committed)
            .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StoreError> {
        get_meta::<Option<LogId<u64>>>(&self.db, "committed")
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), AnyError> {
            let tx = self.db.begin_write().map_err(any)?;
            {
                let mut table = tx.open_table(LOG).map_err(any)?;
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry).map_err(any)?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(any)?;
                }
            }
            tx.commit().map_err(any)
        };
        match write() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StoreError> {
        self.remove(log_id.index..)
            .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StoreError> {
        put_meta(&self.db, "purged", &log_id).map_err(StorageIOError::write_logs)?;
        self.remove(..=log_id.index)
            .map_err(|e| StorageIOError::write_logs(e).into())
    }
}
