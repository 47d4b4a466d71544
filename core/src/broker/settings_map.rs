//! The `Settings` service of the `Broker`: small durable maps of gateway settings: what a gateway must remember across restarts that is
//! neither a message nor a consumer position — the HTTP gateway's transaction callback URL per
//! producer group, for instance.
//!
//! Owns the KV namespaces `settings.<name>` (one per map; keys and values UTF-8): every change
//! is one durable KV write, so it survives a crash once `set` returned, and CommitLog
//! retention never deletes it. Upgrade: maps of earlier versions were the JSON files
//! `<data_dir>/config/settings-<name>.json`; [`import_json_files`] copies each into its
//! namespace when the broker opens and then deletes the file, so an upgrade loses nothing (a
//! crash in between imports the same entries again).
//!
//! Bounds: map names are 1..=55 of `[a-z0-9_-]` (the namespace is at most 64 bytes); at most
//! [`MAX_ENTRIES`] entries of keys up to [`MAX_KEY`] and values up to [`MAX_VALUE`] bytes.
//!
//! Concurrency: `set` blocks on the KV write (an fsync, shared with concurrent writers); the
//! check of a map's size and the write are serialised by one lock for all maps.

use std::collections::BTreeMap;
use std::path::Path;

use super::meta_file;
use super::Broker;
use crate::error::{Error, Result};
use crate::kv::KvStore;

/// Most entries of one map.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 4096;
/// Longest map name.
const MAX_NAME: usize = 64 - PREFIX.len();
/// Namespace prefix of the maps.
const PREFIX: &str = "settings.";

/// Serialises every check-and-write of every map.
static WRITE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The KV namespace of the map `name`.
fn namespace(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "settings map name `{name}`: 1..={MAX_NAME} of [a-z0-9_-]"
        )));
    }
    Ok(format!("{PREFIX}{name}"))
}

/// Imports the JSON settings files of earlier versions from `config_dir` into the KV store,
/// then deletes them. A file whose name is not a valid map name is left and logged.
///
/// # Errors
/// An unreadable file, KV write errors.
pub(super) fn import_json_files(kv: &KvStore, config_dir: &Path) -> Result<()> {
    let Ok(dir) = std::fs::read_dir(config_dir) else {
        return Ok(());
    };
    let mut imported = false;
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("settings-")?.strip_suffix(".json"))
        else {
            continue;
        };
        let Ok(ns) = namespace(name) else {
            tracing::warn!(file = %path.display(), "not importing a settings file with an invalid map name");
            continue;
        };
        let map: BTreeMap<String, String> = meta_file::load(&path)?.unwrap_or_default();
        for (k, v) in &map {
            kv.put(
                &ns,
                k.as_bytes(),
                bytes::Bytes::copy_from_slice(v.as_bytes()),
            )?;
        }
        std::fs::remove_file(&path).map_err(|e| meta_file::meta_err(&path, e))?;
        tracing::info!(
            map = name,
            entries = map.len(),
            "imported a settings file into the KV store"
        );
        imported = true;
    }
    if imported {
        std::fs::File::open(config_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| meta_file::meta_err(config_dir, e))?;
    }
    Ok(())
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
    /// An invalid name.
    pub fn map(self, name: &str) -> Result<BTreeMap<String, String>> {
        let ns = namespace(name)?;
        Ok(self
            .broker
            .kv_store()
            .scan(&ns, b"", None, usize::MAX)
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) `key` in the map `name`, durably before it returns.
    ///
    /// # Errors
    /// An invalid name, a key or value over its bound, a full map, KV write errors.
    pub fn set(self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        self.broker.check_master("changing a setting")?;
        let ns = namespace(name)?;
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
        let kv = self.broker.kv_store();
        let _serial = WRITE.lock();
        let current = kv.get(&ns, key.as_bytes());
        match value {
            Some(v) => {
                if current.as_deref() == Some(v.as_bytes()) {
                    return Ok(());
                }
                if current.is_none() && kv.len(&ns) >= MAX_ENTRIES {
                    return Err(Error::InvalidArgument(format!(
                        "settings map `{name}` is full ({MAX_ENTRIES} entries)"
                    )));
                }
                kv.put(
                    &ns,
                    key.as_bytes(),
                    bytes::Bytes::copy_from_slice(v.as_bytes()),
                )?;
            }
            None if current.is_some() => {
                kv.delete(&ns, key.as_bytes())?;
            }
            None => {}
        }
        Ok(())
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
            assert!(b.settings().map(&"a".repeat(56)).is_err());
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
        assert_eq!(b.kv().len("settings.http-callbacks"), 1);
        b.shutdown().unwrap();
    }

    #[test]
    fn json_settings_files_of_an_earlier_version_are_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let file = config.join("settings-http-callbacks.json");
        std::fs::write(&file, r#"{"pg1":"http://a/1","pg2":"http://a/2"}"#).unwrap();
        {
            let b = open(dir.path());
            let m = b.settings().map("http-callbacks").unwrap();
            assert_eq!(m.len(), 2);
            assert_eq!(m["pg2"], "http://a/2");
            assert!(!file.exists(), "the imported file is removed");
            b.settings().set("http-callbacks", "pg2", None).unwrap();
            b.shutdown().unwrap();
        }
        let b = open(dir.path());
        let m = b.settings().map("http-callbacks").unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["pg1"]);
        b.shutdown().unwrap();
    }
}
