//! Files under `<data_dir>/config/`: loading the JSON files of earlier versions (topics,
//! groups, consumer offsets, timer progress, settings maps — imported once into the KV store)
//! and the atomic replace of the one file still kept there, the receipt-handle key (a secret,
//! mode 0600, never replicated).
//!
//! Invariant: a file is replaced by writing a temp file, fsyncing it, renaming it over the old
//! one and fsyncing the directory, so a crash leaves the old or the new version, never a torn
//! one. Pure helpers; the caller serialises writers of one file.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub(crate) fn meta_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Metadata {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Loads `path`, or `None` if it does not exist.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| meta_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(meta_err(path, e)),
    }
}

/// Atomically replaces `path` with `bytes`.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| meta_err(path, e))
}
