//! The `Settings` service of the `Broker`: small durable maps of gateway settings: what a gateway must remember across restarts that is
//! neither a message nor a consumer position — the HTTP gateway's transaction callback URL per
//! producer group, for instance.
//!
//! Owns the files `<data_dir>/config/settings-<name>.json`: one JSON object of string keys and
//! values per map, replaced atomically (temp file, fsync, rename, directory fsync; see
//! `meta_file`), so a crash leaves the old or the new map. Unlike a system topic, a map is not
//! subject to CommitLog retention.
//!
//! Bounds: map names are 1..=64 of `[a-z0-9_-]`; at most [`MAX_ENTRIES`] entries of keys up to
//! [`MAX_KEY`] and values up to [`MAX_VALUE`] bytes. Meant for settings that change rarely:
//! every change rewrites the map (writers of all maps are serialised by one lock).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::meta_file;
use super::Broker;
use crate::error::{Error, Result};

/// Most entries of one map.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 4096;

/// Serialises every read-modify-write of every map.
static WRITE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

impl Broker {
    pub(super) fn settings_path(&self, name: &str) -> Result<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "settings map name `{name}`: 1..=64 of [a-z0-9_-]"
            )));
        }
        Ok(self
            .config()
            .store
            .data_dir
            .join("config")
            .join(format!("settings-{name}.json")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{Broker, Config};

    fn open(dir: &std::path::Path) -> Broker {
        let mut c = Config::default();
        c.store.data_dir = dir.to_path_buf();
        c.store.segment_size = 1 << 20;
        Broker::open(c).unwrap()
    }

    #[test]
    fn settings_survive_a_restart_and_bad_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            assert!(b.settings().map("http-callbacks").unwrap().is_empty());
            b.settings()
                .set("http-callbacks", "pg1", Some("http://a/1"))
                .unwrap();
            b.settings()
                .set("http-callbacks", "pg2", Some("http://a/2"))
                .unwrap();
            b.settings().set("http-callbacks", "pg2", None).unwrap();
            b.settings().set("other", "k", Some("v")).unwrap();
            assert!(b.settings().map("Bad Name").is_err());
            assert!(b.settings().set("other", "", Some("v")).is_err());
            assert!(b
                .settings()
                .set("other", "k", Some(&"x".repeat(super::MAX_VALUE + 1)))
                .is_err());
            b.shutdown().unwrap();
        }
        let b = open(dir.path());
        let m = b.settings().map("http-callbacks").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["pg1"], "http://a/1");
        assert_eq!(b.settings().map("other").unwrap()["k"], "v");
        b.shutdown().unwrap();
    }
}

/// Small durable settings maps of gateways.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    pub(super) broker: &'a Broker,
}

impl Settings<'_> {
    /// The map `name` (empty if it was never written).
    ///
    /// # Errors
    /// An invalid name, an unreadable or corrupt file.
    pub fn map(self, name: &str) -> Result<BTreeMap<String, String>> {
        let path = self.broker.settings_path(name)?;
        Ok(meta_file::load(&path)?.unwrap_or_default())
    }

    /// Sets (`Some`) or removes (`None`) `key` in the map `name`, durably before it returns.
    ///
    /// # Errors
    /// An invalid name, a key or value over its bound, a full map, I/O errors.
    pub fn set(self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let path = self.broker.settings_path(name)?;
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::InvalidArgument(format!(
                "setting key: 1..={MAX_KEY} bytes"
            )));
        }
        if value.is_some_and(|v| v.len() > MAX_VALUE) {
            return Err(Error::InvalidArgument(format!(
                "setting value: at most {MAX_VALUE} bytes"
            )));
        }
        let _serial = WRITE.lock();
        let mut map: BTreeMap<String, String> = meta_file::load(&path)?.unwrap_or_default();
        let changed = match value {
            Some(v) => {
                if !map.contains_key(key) && map.len() >= MAX_ENTRIES {
                    return Err(Error::InvalidArgument(format!(
                        "settings map `{name}` is full ({MAX_ENTRIES} entries)"
                    )));
                }
                map.insert(key.to_owned(), v.to_owned()).as_deref() != Some(v)
            }
            None => map.remove(key).is_some(),
        };
        if changed {
            meta_file::store(&path, &map)?;
        }
        Ok(())
    }
}
