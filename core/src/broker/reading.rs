//! A slave's read-only broker (`Broker::open_reader`): the write refusal every mutating
//! service checks first ([`Broker::check_master`]), the reload of the cached tables after the
//! slave applied replicated KV changes ([`Broker::refresh`]), and the offsets committed on a
//! slave (overlaid on the replicated ones, forwarded to the master; `replication/reads.rs`
//! owns them). On a master, [`Broker::commit_slave_offsets`] commits what a slave took before
//! it was promoted.
//!
//! Must not write to the store or the KV store: on a slave both refuse local writes anyway
//! (`Store::set_following`, `KvStore::set_following`); this module turns that into a clear
//! [`Error::NotMaster`] before any in-memory state changes.

use std::collections::BTreeSet;
use std::path::Path;

use super::Broker;
use crate::error::{Error, Result};
use crate::replication::reads::{self, ForwardedOffset};

/// KV namespaces whose changes reload a table of a read-only broker.
const TOPICS: &str = "core.topics";
const GROUPS: &str = "core.groups";
const OFFSETS: &str = "core.offsets";
const AUTH: [&str; 3] = ["auth.users", "auth.policies", "auth.tokens"];

impl Broker {
    /// Whether this is a slave's read-only broker.
    pub fn is_read_only(&self) -> bool {
        self.inner.reader.is_some()
    }

    /// Refuses `what` on a slave's read-only broker.
    ///
    /// # Errors
    /// [`Error::NotMaster`] on a slave.
    pub(crate) fn check_master(&self, what: &'static str) -> Result<()> {
        match self.inner.reader {
            Some(_) => Err(Error::NotMaster { what }),
            None => Ok(()),
        }
    }

    /// Reloads the tables cached from the KV store whose namespaces are in `changed` (a slave
    /// calls it after applying replicated changes; `None`: every table, after a snapshot).
    pub(crate) fn refresh(&self, changed: Option<&BTreeSet<String>>) {
        let Some(commits) = &self.inner.reader else {
            return;
        };
        let touched = |ns: &str| changed.is_none_or(|c| c.contains(ns));
        let inner = &self.inner;
        if touched(TOPICS) {
            if let Err(e) = inner.topics.reload() {
                tracing::error!(error = %e, "slave reads: cannot reload the topic table");
            }
        }
        if touched(GROUPS) {
            if let Err(e) = inner.consumption.groups.reload() {
                tracing::error!(error = %e, "slave reads: cannot reload the group table");
            }
        }
        if touched(OFFSETS) {
            let consumers = &inner.consumption.consumers;
            if let Err(e) = consumers.reload_offsets() {
                tracing::error!(error = %e, "slave reads: cannot reload the offsets");
            }
            let replicated = |g: &str, t: &str, q: u32| consumers.persisted_offset(g, t, q);
            if let Err(e) = commits.settle(replicated, self.now_ms()) {
                tracing::error!(error = %e, "slave reads: cannot update the slave's offsets");
            }
            self.overlay_slave_commits();
        }
        if AUTH.iter().any(|ns| touched(ns)) {
            if let Err(e) = inner.auth.reload() {
                tracing::error!(error = %e, "slave reads: cannot reload users and policies");
            }
        }
    }

    /// Puts the offsets committed on this slave over the replicated ones.
    pub(super) fn overlay_slave_commits(&self) {
        if let Some(commits) = &self.inner.reader {
            for ((g, t, q), offset) in commits.overlay() {
                self.inner.consumption.consumers.commit(&g, &t, q, offset);
            }
        }
    }

    /// Notes an offset committed on a slave (after it passed the same checks as on a master).
    pub(super) fn note_slave_commit(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<()> {
        match &self.inner.reader {
            Some(commits) => commits.note(group, topic, queue_id, offset),
            None => Ok(()),
        }
    }

    /// The offsets committed on this slave, shared with the replica's outbox.
    pub(crate) fn slave_commits(&self) -> Option<std::sync::Arc<reads::SlaveCommits>> {
        self.inner.reader.clone()
    }

    /// Commits offsets a slave forwarded (a master applies them as a client's commits); the
    /// ones refused (a topic or group deleted since) are logged and skipped. Returns how many
    /// were committed.
    pub fn commit_forwarded_offsets(&self, offsets: &[ForwardedOffset]) -> usize {
        let mut committed = 0;
        for o in offsets {
            match self
                .consumer()
                .commit_offset(&o.group, &o.topic, o.queue_id, o.offset)
            {
                Ok(()) => committed += 1,
                Err(e) => tracing::warn!(
                    group = %o.group,
                    topic = %o.topic,
                    queue_id = o.queue_id,
                    offset = o.offset,
                    error = %e,
                    "an offset committed on a slave was not taken"
                ),
            }
        }
        committed
    }

    /// On a master opening a promoted slave's directory: commits the offsets the slave took
    /// and had not forwarded, then removes their file.
    pub(super) fn commit_slave_offsets(&self, meta: &Path) -> Result<()> {
        let pending = reads::take_pending(meta)?;
        if pending.is_empty() {
            return Ok(());
        }
        let committed = self.commit_forwarded_offsets(&pending);
        tracing::info!(
            committed,
            held = pending.len(),
            "committed the offsets taken while this broker was a slave"
        );
        // Durable in the KV store before their file goes.
        self.consumer().persist_state()?;
        reads::clear_pending(meta)
    }
}
