//! Tables of named records in the KV store: the topic table and the group table keep one key
//! per topic or group (its configuration as JSON) in their own namespace, so a change writes one
//! record, durably, instead of rewriting a whole file, and the tables travel with the rest of the
//! small state (replication later copies the KV store).
//!
//! Upgrade: the JSON files of earlier versions (`config/topics.json`, `config/groups.json`) are
//! imported once, when the namespace is still empty, and removed after the import is durable; a
//! crash in between imports them again (the writes are idempotent) or just removes the file.
//!
//! Who calls it: `topic.rs` and `consumer_group.rs`, which serialise their own writers.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::meta_file::meta_err;
use crate::error::Result;
use crate::kv::KvStore;

/// One namespace of named JSON records.
#[derive(Debug, Clone)]
pub(crate) struct KvTable {
    kv: Arc<KvStore>,
    ns: &'static str,
}

impl KvTable {
    pub(crate) fn new(kv: Arc<KvStore>, ns: &'static str) -> Self {
        Self { kv, ns }
    }

    /// Every record, in name order.
    ///
    /// # Errors
    /// [`crate::Error::Metadata`] for a record that does not parse.
    pub(crate) fn load<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.kv
            .scan(self.ns, b"", None, usize::MAX)
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| {
                    meta_err(
                        Path::new(self.ns),
                        format!("record `{}`: {e}", String::from_utf8_lossy(&k)),
                    )
                })
            })
            .collect()
    }

    /// Stores `value` under `name`, durably.
    ///
    /// # Errors
    /// KV refusals (bounds, quota) and faults.
    pub(crate) fn put<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| meta_err(Path::new(self.ns), e))?;
        self.kv.put(self.ns, name.as_bytes(), Bytes::from(bytes))?;
        Ok(())
    }

    /// Removes `name`, durably.
    ///
    /// # Errors
    /// KV faults.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.kv.delete(self.ns, name.as_bytes())?;
        Ok(())
    }

    /// Imports the records of a legacy JSON file once (when the namespace is empty), then removes
    /// the file. `read` parses the file into named records.
    ///
    /// # Errors
    /// An unreadable legacy file, KV refusals and faults.
    pub(crate) fn import_legacy<T: Serialize>(
        &self,
        file: &Path,
        read: impl FnOnce(&Path) -> Result<Option<Vec<(String, T)>>>,
    ) -> Result<()> {
        let Some(records) = read(file)? else {
            return Ok(());
        };
        if self.kv.len(self.ns) == 0 {
            for (name, value) in &records {
                self.put(name, value)?;
            }
            tracing::info!(file = %file.display(), records = records.len(), "imported into the KV store");
        }
        std::fs::remove_file(file).map_err(|e| meta_err(file, e))
    }
}
