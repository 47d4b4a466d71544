//! Topics: their configuration (queues, message type, permissions) and its persistence in the
//! KV store (namespace `core.topics`, one record per topic; `config/topics.json` of earlier
//! versions is imported once, see `table.rs`).
//!
//! Owns: the topic table. Invariant: a change is durable in the KV store before it is applied
//! to the table and reported as done; a refused or failed write changes nothing.
//!
//! Concurrency: an `RwLock` around the table; lookups on the send path take the read lock.
//! A change (create, update, delete) holds the write lock across its check and the persist, and
//! swaps in a new `Arc<Topic>`: callers holding the old one keep a consistent (older) view.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::meta_file;
use crate::error::{Error, Result};

/// What kind of messages a topic carries (RocketMQ 5 `accept_message_types`). Read in any case
/// (`fifo`, `Fifo`), written as RocketMQ spells it (`FIFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    /// Plain messages.
    #[default]
    Normal,
    /// Ordered by message group.
    Fifo,
    /// Delayed / timed.
    Delay,
    /// Transactional.
    Transaction,
    /// Any of the above.
    Mixed,
}

impl MessageType {
    /// The RocketMQ name: `NORMAL`, `FIFO`, `DELAY`, `TRANSACTION`, `MIXED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Fifo => "FIFO",
            Self::Delay => "DELAY",
            Self::Transaction => "TRANSACTION",
            Self::Mixed => "MIXED",
        }
    }
}

/// Read/write permissions of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// Consumers may read.
    pub read: bool,
    /// Producers may write.
    pub write: bool,
}

impl Default for Permission {
    fn default() -> Self {
        Self {
            read: true,
            write: true,
        }
    }
}

/// A topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Name.
    pub name: String,
    /// Number of queues.
    pub queue_count: u32,
    /// Accepted message type.
    #[serde(default)]
    pub message_type: MessageType,
    /// Permissions.
    #[serde(default)]
    pub permission: Permission,
}

impl TopicConfig {
    /// A read-write NORMAL topic with `queue_count` queues.
    pub fn new(name: impl Into<String>, queue_count: u32) -> Self {
        Self {
            name: name.into(),
            queue_count,
            message_type: MessageType::Normal,
            permission: Permission::default(),
        }
    }

    /// Sets the message type.
    #[must_use]
    pub fn with_type(mut self, t: MessageType) -> Self {
        self.message_type = t;
        self
    }
}

/// A live topic: its config and the round-robin counter for queue selection.
#[derive(Debug)]
pub struct Topic {
    /// Configuration.
    pub config: TopicConfig,
    round_robin: AtomicU64,
}

impl Topic {
    /// The next queue in round-robin order.
    pub fn next_queue(&self) -> u32 {
        let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
        (n % u64::from(self.config.queue_count.max(1))) as u32
    }
}

#[derive(Serialize, Deserialize, Default)]
struct TopicsFile {
    topics: Vec<TopicConfig>,
}

/// The topic table.
#[derive(Debug)]
pub struct TopicRegistry {
    table: super::table::KvTable,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Bumped after every change of a user topic (see [`super::Topics::changed`]).
    pub(super) version: tokio::sync::watch::Sender<u64>,
}

impl TopicRegistry {
    /// Loads the table from the KV store (namespace `core.topics`, one record per topic),
    /// importing `dir/topics.json` of an earlier version once.
    ///
    /// # Errors
    /// [`Error::Metadata`] for an unreadable legacy file or record, KV faults.
    pub fn load(kv: Arc<crate::kv::KvStore>, dir: &Path) -> Result<Self> {
        let table = super::table::KvTable::new(kv, "core.topics");
        table.import_legacy(&dir.join("topics.json"), |path| {
            Ok(meta_file::load::<TopicsFile>(path)?
                .map(|f| f.topics.into_iter().map(|c| (c.name.clone(), c)).collect()))
        })?;
        let configs: Vec<TopicConfig> = table.load()?;
        let topics = configs
            .into_iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Arc::new(Topic {
                        config: c,
                        round_robin: AtomicU64::new(0),
                    }),
                )
            })
            .collect();
        Ok(Self {
            table,
            topics: RwLock::new(topics),
            version: tokio::sync::watch::channel(0).0,
        })
    }

    /// Replaces the table by what the KV store holds now (a slave's read-only broker, after
    /// replicated changes), keeping each unchanged topic's round-robin position.
    ///
    /// # Errors
    /// [`Error::Metadata`] for a record that does not parse.
    pub(crate) fn reload(&self) -> Result<()> {
        let configs: Vec<TopicConfig> = self.table.load()?;
        let mut topics = self.topics.write();
        let old = std::mem::take(&mut *topics);
        for c in configs {
            let topic = match old.get(&c.name) {
                Some(t) if t.config == c => t.clone(),
                _ => Arc::new(Topic {
                    config: c,
                    round_robin: AtomicU64::new(0),
                }),
            };
            topics.insert(topic.config.name.clone(), topic);
        }
        drop(topics);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Looks a topic up.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, by name.
    pub fn list(&self) -> Vec<TopicConfig> {
        self.topics
            .read()
            .values()
            .map(|t| t.config.clone())
            .collect()
    }

    /// Adds a topic and persists the table.
    ///
    /// # Errors
    /// [`Error::TopicExists`], or [`Error::Metadata`] if persisting failed (the table is then
    /// left unchanged).
    pub fn create(&self, config: TopicConfig) -> Result<Arc<Topic>> {
        self.create_bounded(config, usize::MAX)
    }

    /// [`TopicRegistry::create`], refused with [`Error::LimitReached`] when `max_user` user
    /// topics (those the broker does not manage itself) exist already; checked under the
    /// table's write lock, so concurrent creations cannot pass it together.
    ///
    /// # Errors
    /// As [`TopicRegistry::create`], and [`Error::LimitReached`].
    pub fn create_bounded(&self, config: TopicConfig, max_user: usize) -> Result<Arc<Topic>> {
        let mut topics = self.topics.write();
        if topics.contains_key(&config.name) {
            return Err(Error::TopicExists(config.name));
        }
        if !super::is_system_managed(&config.name)
            && topics
                .keys()
                .filter(|n| !super::is_system_managed(n))
                .count()
                >= max_user
        {
            return Err(Error::LimitReached {
                what: "topics",
                key: "max_topics",
                limit: max_user,
            });
        }
        let topic = Arc::new(Topic {
            config: config.clone(),
            round_robin: AtomicU64::new(0),
        });
        self.table.put(&config.name, &config)?;
        topics.insert(config.name.clone(), topic.clone());
        Ok(topic)
    }

    /// Replaces a topic's configuration with `change(current)` and persists the table. The
    /// change is computed under the table's write lock, so a check it makes against the current
    /// configuration (such as "queue counts only grow") cannot race another update. Returns the
    /// new topic (its round-robin position carries over) and whether anything changed.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], the error of `change` (nothing changes then), or
    /// [`Error::Metadata`] if persisting failed (the table is then left unchanged).
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&TopicConfig) -> Result<TopicConfig>,
    ) -> Result<(Arc<Topic>, bool)> {
        let mut topics = self.topics.write();
        let Some(old) = topics.get(name).cloned() else {
            return Err(Error::TopicNotFound(name.to_owned()));
        };
        let config = change(&old.config)?;
        if config == old.config {
            return Ok((old, false));
        }
        debug_assert_eq!(config.name, old.config.name, "an update never renames");
        let topic = Arc::new(Topic {
            config,
            round_robin: AtomicU64::new(old.round_robin.load(Ordering::Relaxed)),
        });
        self.table.put(name, &topic.config)?;
        topics.insert(name.to_owned(), topic.clone());
        Ok((topic, true))
    }

    /// Removes a topic and persists the table.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] or [`Error::Metadata`].
    pub fn delete(&self, name: &str) -> Result<TopicConfig> {
        let mut topics = self.topics.write();
        if !topics.contains_key(name) {
            return Err(Error::TopicNotFound(name.to_owned()));
        }
        self.table.remove(name)?;
        let t = topics
            .remove(name)
            .ok_or_else(|| Error::TopicNotFound(name.to_owned()))?;
        Ok(t.config.clone())
    }
}
