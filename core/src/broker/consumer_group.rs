//! Consumer groups: their configuration and subscriptions, persisted in the KV store
//! (namespace `core.groups`, one record per group; `config/groups.json` of earlier versions is
//! imported once, see `table.rs`).
//!
//! Owns: the group table. A group subscribes to topics with a filter expression; the
//! subscription is what pop and push-style consumers of the group receive. Groups are created
//! explicitly, or on first use when `consumer.auto_create_groups` is on (RocketMQ's default).
//!
//! Concurrency: an `RwLock` around the table; changes are persisted before they are reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::filter::{Filter, FilterExpression};
use super::meta_file;
use crate::error::{Error, Result};

/// A consumer group's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Name (same rules as topic names).
    pub name: String,
    /// Deliveries before a message goes to the dead-letter queue (including the first).
    #[serde(default = "default_attempts")]
    pub max_delivery_attempts: u32,
    /// Topic → filter expression.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, FilterExpression>,
}

fn default_attempts() -> u32 {
    16
}

impl GroupConfig {
    /// A group with no subscriptions and the default retry policy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_delivery_attempts: default_attempts(),
            subscriptions: BTreeMap::new(),
        }
    }
}

/// A live group: its configuration and parsed filters.
#[derive(Debug)]
pub struct Group {
    /// Configuration.
    pub config: GroupConfig,
    filters: BTreeMap<String, Filter>,
}

impl Group {
    fn new(config: GroupConfig) -> Result<Self> {
        let filters = config
            .subscriptions
            .iter()
            .map(|(t, e)| Filter::parse(e).map(|f| (t.clone(), f)))
            .collect::<Result<_>>()?;
        Ok(Self { config, filters })
    }

    /// The group's filter for `topic`, if subscribed.
    pub fn filter(&self, topic: &str) -> Option<&Filter> {
        self.filters.get(topic)
    }
}

#[derive(Serialize, Deserialize, Default)]
struct GroupsFile {
    groups: Vec<GroupConfig>,
}

/// The group table.
#[derive(Debug)]
pub struct GroupRegistry {
    table: super::table::KvTable,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
}

impl GroupRegistry {
    /// Loads the table from the KV store, importing `dir/groups.json` of an earlier version
    /// once.
    ///
    /// # Errors
    /// [`Error::Metadata`] for an unreadable legacy file or record, KV faults.
    pub fn load(kv: Arc<crate::kv::KvStore>, dir: &Path) -> Result<Self> {
        let table = super::table::KvTable::new(kv, "core.groups");
        table.import_legacy(&dir.join("groups.json"), |path| {
            Ok(meta_file::load::<GroupsFile>(path)?
                .map(|f| f.groups.into_iter().map(|c| (c.name.clone(), c)).collect()))
        })?;
        let groups = Self::build(table.load()?);
        Ok(Self {
            table,
            groups: RwLock::new(groups),
        })
    }

    /// Replaces the table by what the KV store holds now (a slave's read-only broker, after
    /// replicated changes).
    ///
    /// # Errors
    /// [`Error::Metadata`] for a record that does not parse.
    pub(crate) fn reload(&self) -> Result<()> {
        let groups = Self::build(self.table.load()?);
        *self.groups.write() = groups;
        Ok(())
    }

    /// The table of the stored configurations (a group whose filter no longer compiles is
    /// logged and left out).
    fn build(configs: Vec<GroupConfig>) -> BTreeMap<String, Arc<Group>> {
        let mut groups = BTreeMap::new();
        for c in configs {
            let name = c.name.clone();
            match Group::new(c) {
                Ok(g) => {
                    groups.insert(name, Arc::new(g));
                }
                Err(e) => {
                    tracing::error!(group = %name, error = %e, "ignoring a stored group with an invalid filter")
                }
            }
        }
        groups
    }

    /// Looks a group up.
    pub fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.read().get(name).cloned()
    }

    /// How many groups exist.
    pub fn len(&self) -> usize {
        self.groups.read().len()
    }

    /// All groups.
    pub fn list(&self) -> Vec<GroupConfig> {
        self.groups
            .read()
            .values()
            .map(|g| g.config.clone())
            .collect()
    }

    /// Creates a group, or replaces it when `replace` is set.
    ///
    /// # Errors
    /// [`Error::GroupExists`] (without `replace`), [`Error::IllegalFilter`], [`Error::Metadata`].
    pub fn upsert(&self, config: GroupConfig, replace: bool) -> Result<Arc<Group>> {
        self.upsert_bounded(config, replace, usize::MAX)
    }

    /// [`GroupRegistry::upsert`], refusing to add a group with [`Error::LimitReached`] when
    /// `max` groups exist already (checked under the table's write lock).
    ///
    /// # Errors
    /// As [`GroupRegistry::upsert`], and [`Error::LimitReached`].
    pub fn upsert_bounded(
        &self,
        config: GroupConfig,
        replace: bool,
        max: usize,
    ) -> Result<Arc<Group>> {
        let group = Arc::new(Group::new(config)?);
        let mut groups = self.groups.write();
        let exists = groups.contains_key(&group.config.name);
        if !replace && exists {
            return Err(Error::GroupExists(group.config.name.clone()));
        }
        if !exists && groups.len() >= max {
            return Err(Error::LimitReached {
                what: "consumer groups",
                key: "max_groups",
                limit: max,
            });
        }
        self.table.put(&group.config.name, &group.config)?;
        groups.insert(group.config.name.clone(), group.clone());
        Ok(group)
    }

    /// Deletes a group.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::Metadata`].
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut groups = self.groups.write();
        if !groups.contains_key(name) {
            return Err(Error::GroupNotFound(name.to_owned()));
        }
        self.table.remove(name)?;
        groups.remove(name);
        Ok(())
    }
}
