//! The controller's Raft state machine ([`StateMachine`]): [`Groups`] in memory, shared with the
//! services through [`SharedState`], and its snapshots, kept durably beside the log
//! (`meta/snapshot` in the redb database of `store.rs`).
//!
//! Invariants: entries are applied in log order, each exactly once per life of the process; a
//! restarted member loads its last snapshot, then openraft re-applies the committed entries after
//! it (the committed log id is saved by `store.rs`). A snapshot is the JSON of [`Groups`] with
//! its Raft metadata. Must not decide anything: deciding is the leader's (`liveness.rs`).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use redb::Database;
use serde::{Deserialize, Serialize};

use super::state::{Groups, Outcome};
use super::store::{get_meta, put_meta};
use super::TypeConfig;

type StoreError = StorageError<u64>;
type Membership = StoredMembership<u64, openraft::BasicNode>;

/// What the state machine has applied: the groups and the Raft bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The last applied log id.
    pub last_applied: Option<LogId<u64>>,
    /// The last applied membership (the controller members).
    pub membership: Membership,
    /// The groups.
    pub groups: Groups,
}

/// The applied state, readable by the services while the state machine writes it.
pub type SharedState = Arc<RwLock<Applied>>;

/// A snapshot as stored: its metadata and the JSON of [`Applied`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine of one controller member.
#[derive(Clone)]
pub struct StateMachine {
    state: SharedState,
    db: Arc<Database>,
}

impl StateMachine {
    /// Opens the state machine of `db`, from its last snapshot if any.
    pub(super) fn open(db: Arc<Database>) -> Result<Self, AnyError> {
        let applied = match get_meta::<StoredSnapshot>(&db, "snapshot")? {
            None => Applied::default(),
            Some(s) => serde_json::from_slice(&s.data).map_err(|e| AnyError::new(&e))?,
        };
        Ok(Self {
            state: Arc::new(RwLock::new(applied)),
            db,
        })
    }

    /// The state the services read.
    pub fn shared(&self) -> SharedState {
        Arc::clone(&self.state)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let (data, meta) = {
            let state = self.state.read();
            let data = serde_json::to_vec(&*state)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            let id = state.last_applied.map_or_else(
                || "0-0".to_owned(),
                |l| format!("{}-{}", l.leader_id, l.index),
            );
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id: id,
            };
            (data, meta)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        put_meta(&self.db, "snapshot", &stored)
            .map_err(|e| StorageIOError::write_snapshot(None, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, Membership), StoreError> {
        let state = self.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write();
        let mut out = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Outcome::default()),
                EntryPayload::Normal(command) => {
                    let outcome = state.groups.apply(&command);
                    if let Some(reason) = &outcome.refused {
                        tracing::debug!(?command, %reason, "controller command refused");
                    } else {
                        tracing::info!(?command, "controller command applied");
                    }
                    out.push(outcome);
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Outcome::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StoreError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        let mut applied: Applied = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(signature.clone(), AnyError::new(&e)))?;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        put_meta(&self.db, "snapshot", &stored)
            .map_err(|e| StorageIOError::write_snapshot(signature, e))?;
        *self.state.write() = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let stored: Option<StoredSnapshot> =
            get_meta(&self.db, "snapshot").map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
