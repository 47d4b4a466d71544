//! The epoch file `<data_dir>/epoch`: which master term wrote which part of the CommitLog.
//!
//! Owns: the file's format and its atomic replacement. The meaning (handshake, last common
//! point) is `crate::replication`'s.
//!
//! # Byte layout (little-endian)
//!
//! ```text
//! off   size  field
//!   0      8  magic "RGEPOCH1"
//!   8      4  count n
//!  12   16*n  entries: epoch u64, start offset u64 (epochs strictly increasing, starts
//!             non-decreasing)
//! 12+16n   4  crc32c over every byte before it
//! ```
//!
//! Invariants: the file is replaced atomically (temp file, fsync, rename, directory fsync), so
//! after a crash it holds the old or the new list, never a mix; a file failing its checks
//! refuses the open (no crash explains it). A missing file is an empty list.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::disk::{self, sync_dir};
use super::error::{Error, IoContext, Result};

const MAGIC: &[u8; 8] = b"RGEPOCH1";
const FILE: &str = "epoch";
/// More entries than any broker's history needs: bounds what a damaged count can allocate.
const MAX_ENTRIES: usize = 1 << 16;

/// One master term: `epoch` wrote the log from `start` on (until the next entry's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    /// The term.
    pub(crate) epoch: u64,
    /// CommitLog offset of its first record.
    pub(crate) start: u64,
}

/// Reads the epoch list of `dir` (empty if there is none).
///
/// # Errors
/// I/O errors; [`Error::Corrupted`] for a file failing its checks.
pub(crate) fn load(dir: &Path) -> Result<Vec<EpochEntry>> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    decode(&bytes).ok_or(Error::Corrupted {
        path,
        offset: 0,
        reason: "epoch file failed its checks",
    })
}

fn decode(b: &[u8]) -> Option<Vec<EpochEntry>> {
    if b.len() < 16 || &b[..8] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(b[8..12].try_into().ok()?) as usize;
    if n > MAX_ENTRIES || b.len() != 12 + 16 * n + 4 {
        return None;
    }
    let crc_at = b.len() - 4;
    if crc32c::crc32c(&b[..crc_at]) != u32::from_le_bytes(b[crc_at..].try_into().ok()?) {
        return None;
    }
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let mut out: Vec<EpochEntry> = Vec::with_capacity(n);
    for i in 0..n {
        let e = EpochEntry {
            epoch: u64_at(12 + 16 * i)?,
            start: u64_at(20 + 16 * i)?,
        };
        if out
            .last()
            .is_some_and(|p| p.epoch >= e.epoch || p.start > e.start)
        {
            return None;
        }
        out.push(e);
    }
    Some(out)
}

fn encode(entries: &[EpochEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 16 * entries.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        b.extend_from_slice(&e.epoch.to_le_bytes());
        b.extend_from_slice(&e.start.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Atomically replaces the epoch list of `dir`.
///
/// # Errors
/// I/O errors; [`Error::Corrupted`] (nothing written) when `entries` are not ordered.
pub(crate) fn store(dir: &Path, entries: &[EpochEntry]) -> Result<()> {
    let path = dir.join(FILE);
    if entries
        .windows(2)
        .any(|w| w[0].epoch >= w[1].epoch || w[0].start > w[1].start)
    {
        return Err(Error::Corrupted {
            path,
            offset: 0,
            reason: "epoch entries out of order",
        });
    }
    let tmp: PathBuf = dir.join("epoch.tmp");
    {
        let mut f = disk::create_truncated(&tmp).at(&tmp)?;
        f.write_all(&encode(entries)).at(&tmp)?;
        disk::sync_file(&f, &tmp).at(&tmp)?;
    }
    disk::rename(&tmp, &path).at(&path)?;
    sync_dir(dir).at(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let list = [
            EpochEntry { epoch: 1, start: 0 },
            EpochEntry {
                epoch: 3,
                start: 4096,
            },
        ];
        store(dir.path(), &list).unwrap();
        assert_eq!(load(dir.path()).unwrap(), list);
        let path = dir.path().join(FILE);
        let mut b = std::fs::read(&path).unwrap();
        b[14] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(load(dir.path()), Err(Error::Corrupted { .. })));
        let bad = [list[1], list[0]];
        assert!(store(dir.path(), &bad).is_err());
    }
}
