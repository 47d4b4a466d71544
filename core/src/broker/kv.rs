//! The [`Kv`] service: the broker's durable namespaced key-value store of small state, as
//! gateways see it (the engine and its file formats are `crate::kv`).
//!
//! Owns nothing but the borrowed [`Broker`]; every call goes to the broker's one `KvStore`.
//! Invariants (from the engine): a write returns after it is fsynced, gets the next sequence
//! number and is visible to reads after that, never before; CommitLog retention never touches
//! it. Namespaces are 1..=64 of `[a-z0-9._-]`; the `settings.` prefix belongs to
//! [`crate::Settings`], `mqtt.` to the MQTT gateway.
//!
//! Concurrency: reads are synchronous and short (a read lock on the in-memory map). Writes are
//! `async`: they run on Tokio's blocking pool, where concurrent writers share one fsync.

use bytes::Bytes;

use super::Broker;
use crate::error::{Error, KvError, Result};
use crate::kv::KvStore;

/// The broker's durable key-value store of small state (see [`Broker::kv`]).
#[derive(Clone, Copy)]
pub struct Kv<'a> {
    pub(super) broker: &'a Broker,
}

impl Broker {
    pub(super) fn kv_store(&self) -> &std::sync::Arc<KvStore> {
        &self.inner.kv
    }
}

async fn blocking<T: Send + 'static>(
    kv: &std::sync::Arc<KvStore>,
    f: impl FnOnce(&KvStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let kv = kv.clone();
    tokio::task::spawn_blocking(move || f(&kv))
        .await
        .map_err(|e| Error::Kv(KvError::Poisoned(format!("a KV write task failed: {e}"))))?
}

impl Kv<'_> {
    /// The value of `key` in namespace `ns`, if any.
    ///
    /// # Errors
    /// None today; reserved for a store that reads from disk.
    pub fn get(self, ns: &str, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.broker.kv_store().get(ns, key))
    }

    /// Stores `value` under `key` in `ns`; returns once it is durable, with its sequence
    /// number.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad namespace or a key or value over its bound,
    /// `QuotaExceeded` when `kv.max_total_bytes` would be exceeded, `ReadOnly` after a failed
    /// fsync, `Internal` for I/O errors.
    pub async fn put(self, ns: &str, key: &[u8], value: impl Into<Bytes>) -> Result<u64> {
        self.broker.check_master("a KV write")?;
        let (ns, key, value) = (ns.to_owned(), key.to_vec(), value.into());
        blocking(self.broker.kv_store(), move |kv| kv.put(&ns, &key, value)).await
    }

    /// Removes `key` from `ns` (a no-op that is still written if it is absent); returns once
    /// it is durable, with its sequence number.
    ///
    /// # Errors
    /// As [`Kv::put`], without the quota.
    pub async fn delete(self, ns: &str, key: &[u8]) -> Result<u64> {
        self.broker.check_master("a KV delete")?;
        let (ns, key) = (ns.to_owned(), key.to_vec());
        blocking(self.broker.kv_store(), move |kv| kv.delete(&ns, &key)).await
    }

    /// Up to `limit` entries of `ns` whose key starts with `prefix`, in key order, starting
    /// after the key `after` if given (pass the last key of a page to get the next one).
    ///
    /// # Errors
    /// None today; reserved for a store that reads from disk.
    pub fn scan(
        self,
        ns: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        Ok(self.broker.kv_store().scan(ns, prefix, after, limit))
    }

    /// Entries in `ns`.
    pub fn len(self, ns: &str) -> usize {
        self.broker.kv_store().len(ns)
    }

    /// Bytes of all entries of every namespace (namespace + key + value), as counted against
    /// `kv.max_total_bytes`.
    pub fn total_bytes(self) -> u64 {
        self.broker.kv_store().total_bytes()
    }

    /// The sequence number of the last durable write (0 if none): replication will ship the
    /// changes after a follower's sequence.
    pub fn last_sequence(self) -> u64 {
        self.broker.kv_store().last_sequence()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{Broker, Config, Reason};

    fn open(dir: &std::path::Path) -> Broker {
        let mut c = Config::default();
        c.store.data_dir = dir.to_path_buf();
        c.store.segment_size = 1 << 20;
        c.kv.max_total_bytes = 1 << 20;
        Broker::open(c).unwrap()
    }

    #[tokio::test]
    async fn the_service_writes_durably_and_refuses_over_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            let kv = b.kv();
            // The broker's own tables (its internal topics) wrote first.
            let start = kv.last_sequence();
            assert_eq!(kv.put("app.state", b"a", "1").await.unwrap(), start + 1);
            assert_eq!(kv.put("app.state", b"b", "2").await.unwrap(), start + 2);
            kv.delete("app.state", b"a").await.unwrap();
            assert_eq!(kv.last_sequence(), start + 3);
            let big = vec![0u8; 600 << 10];
            kv.put("app.big", b"1", big.clone()).await.unwrap();
            let err = kv.put("app.big", b"2", big).await.unwrap_err();
            assert_eq!(err.reason(), Reason::QuotaExceeded);
            assert_eq!(kv.last_sequence(), start + 4);
            b.shutdown().unwrap();
        }
        let b = open(dir.path());
        let kv = b.kv();
        assert_eq!(kv.get("app.state", b"a").unwrap(), None);
        assert_eq!(&kv.get("app.state", b"b").unwrap().unwrap()[..], b"2");
        assert_eq!(kv.scan("app.state", b"", None, 10).unwrap().len(), 1);
        assert_eq!(kv.len("app.big"), 1);
        b.shutdown().unwrap();
    }
}
