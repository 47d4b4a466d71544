//! KV snapshots: the whole state at one sequence number, in
//! `<data_dir>/kv/snap-<seq, 20 digits>.kv`.
//!
//! # Byte layout (all integers little-endian)
//!
//! ```text
//! 8  file magic "RGKVSNP1"
//! 8  sequence number: the state includes every record up to and including it
//! 8  entry count
//! per entry, in (namespace, key) order:
//!    1 namespace length, 2 key length, 4 value length, namespace, key, value
//! 4  crc32c over every byte before it
//! ```
//!
//! Invariant: a snapshot file is complete or absent. It is written as `snap-<seq>.kv.tmp`,
//! fsynced, renamed to its name and the directory fsynced; a `.tmp` file is garbage of a crash
//! and is deleted when the store opens. A file whose CRC, count or lengths disagree is
//! rejected as a whole.
//!
//! Called by `kv` (its parent) while opening and while compacting (under its writer lock).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::Error;

const MAGIC: &[u8; 8] = b"RGKVSNP1";

/// The file name of the snapshot at `seq`.
pub(super) fn file_name(seq: u64) -> String {
    format!("snap-{seq:020}.kv")
}

/// Writes the snapshot of `entries` at `seq` into `dir` atomically; returns its path and size.
///
/// # Errors
/// I/O errors (the temp file is removed then).
pub(super) fn write(
    dir: &Path,
    seq: u64,
    entries: &BTreeMap<(String, Bytes), Bytes>,
) -> Result<(PathBuf, u64), Error> {
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let result = (|| -> std::io::Result<u64> {
        let mut w = Crc(BufWriter::with_capacity(1 << 16, File::create(&tmp)?), 0, 0);
        w.put(MAGIC)?;
        w.put(&seq.to_le_bytes())?;
        w.put(&(entries.len() as u64).to_le_bytes())?;
        for ((ns, key), value) in entries {
            w.put(&[ns.len() as u8])?;
            w.put(&(key.len() as u16).to_le_bytes())?;
            w.put(&(value.len() as u32).to_le_bytes())?;
            w.put(ns.as_bytes())?;
            w.put(key)?;
            w.put(value)?;
        }
        let crc = w.1;
        w.0.write_all(&crc.to_le_bytes())?;
        let file = w.0.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(w.2 + 4)
    })();
    match result {
        Ok(len) => Ok((path, len)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Error::io(&path, e))
        }
    }
}

/// A writer that keeps the running crc32c and byte count of what went through it.
struct Crc<W>(W, u32, u64);

impl<W: Write> Crc<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.1 = crc32c::crc32c_append(self.1, b);
        self.2 += b.len() as u64;
        self.0.write_all(b)
    }
}

/// A loaded snapshot.
pub(super) struct Loaded {
    pub(super) seq: u64,
    pub(super) entries: BTreeMap<(String, Bytes), Bytes>,
    pub(super) len: u64,
}

/// Reads and checks the snapshot at `path`.
///
/// # Errors
/// I/O errors; [`Error::Corrupted`] when any check fails.
pub(super) fn read(path: &Path) -> Result<Loaded, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |offset: usize, reason| Error::Corrupted {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < 28 || &bytes[..8] != MAGIC {
        return Err(bad(0, "not a KV snapshot (bad magic or too short)"));
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(data) != want {
        return Err(bad(data.len(), "snapshot CRC mismatch"));
    }
    let u64_at = |i: usize| {
        data.get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let seq = u64_at(8).ok_or_else(|| bad(8, "truncated header"))?;
    let count = u64_at(16).ok_or_else(|| bad(16, "truncated header"))?;
    let mut entries = BTreeMap::new();
    let mut pos = 24;
    for _ in 0..count {
        let head = data
            .get(pos..pos + 7)
            .ok_or_else(|| bad(pos, "truncated entry"))?;
        let ns_len = usize::from(head[0]);
        let key_len = usize::from(u16::from_le_bytes([head[1], head[2]]));
        let value_len = u32::from_le_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let start = pos + 7;
        let end = start + ns_len + key_len + value_len;
        let body = data
            .get(start..end)
            .ok_or_else(|| bad(pos, "truncated entry"))?;
        let ns =
            std::str::from_utf8(&body[..ns_len]).map_err(|_| bad(pos, "namespace is not UTF-8"))?;
        let key = Bytes::copy_from_slice(&body[ns_len..ns_len + key_len]);
        let value = Bytes::copy_from_slice(&body[ns_len + key_len..]);
        entries.insert((ns.to_owned(), key), value);
        pos = end;
    }
    if pos != data.len() {
        return Err(bad(pos, "bytes after the last entry"));
    }
    Ok(Loaded {
        seq,
        entries,
        len: bytes.len() as u64,
    })
}
