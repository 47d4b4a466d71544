//! The checkpoint, the abort marker and the directory lock: the small files that tell recovery
//! where it may start and whether the last run ended cleanly.
//!
//! Owns: `checkpoint` (what is durable), `abort` (present while a store is open; its presence
//! at start means the previous run crashed) and `lock` (an exclusive `flock` so two processes
//! never open one store).
//!
//! # `checkpoint` layout (48 bytes, little-endian)
//!
//! ```text
//! 0  u32 magic 0x5247_4350 ("RGCP")   4  u32 format version (1)
//! 8  u64 commit_log   durable CommitLog end
//! 16 u64 consume_queue CommitLog offset below which every ConsumeQueue entry is durable
//! 24 u64 index        CommitLog offset below which every index entry is durable
//! 32 i64 timestamp_ms when it was written
//! 40 u32 crc32c over bytes [0, 40)    44 u32 reserved (0)
//! ```
//!
//! Invariants: a checkpoint is written only after the data it describes was flushed; it is
//! replaced atomically (write temp, fsync, rename, fsync directory), so a crash leaves either the
//! old or the new one. A checkpoint that fails its CRC is ignored (recovery then scans from the
//! first segment), never trusted.
//!
//! Concurrency: written by the checkpointer thread, at the end of open and at shutdown, and
//! lowered by recovery before it removes derived files; read once at open.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::disk::{self, sync_dir};
use super::error::{Error, IoContext, Result};

const MAGIC: u32 = 0x5247_4350;
const VERSION: u32 = 1;
const LEN: usize = 48;

/// What the store knew to be durable when the checkpoint was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Durable CommitLog end.
    pub commit_log: u64,
    /// ConsumeQueues are durable for records below this CommitLog offset.
    pub consume_queue: u64,
    /// The index is durable for records below this CommitLog offset.
    pub index: u64,
    /// When written (ms since the epoch).
    pub timestamp_ms: i64,
}

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.commit_log.to_le_bytes());
        b[16..24].copy_from_slice(&self.consume_queue.to_le_bytes());
        b[24..32].copy_from_slice(&self.index.to_le_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        let crc = crc32c::crc32c(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LEN {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(0) != MAGIC || u32_at(4) != VERSION || u32_at(40) != crc32c::crc32c(&b[..40]) {
            return None;
        }
        Some(Self {
            commit_log: u64_at(8),
            consume_queue: u64_at(16),
            index: u64_at(24),
            timestamp_ms: u64_at(32) as i64,
        })
    }

    /// Reads the checkpoint in `dir`; `None` if absent or damaged.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("checkpoint");
        match std::fs::read(&path) {
            Ok(b) => {
                let cp = Self::decode(&b);
                if cp.is_none() {
                    tracing::warn!(path = %path.display(), "checkpoint damaged; recovering from the first segment");
                }
                Ok(cp)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Atomically replaces the checkpoint in `dir`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("checkpoint.tmp");
        let path = dir.join("checkpoint");
        {
            let mut f = disk::create_truncated(&tmp).at(&tmp)?;
            f.write_all(&self.encode()).at(&tmp)?;
            disk::sync_file(&f, &tmp).at(&tmp)?;
        }
        disk::rename(&tmp, &path).at(&path)?;
        sync_dir(dir).at(dir)
    }
}

/// Creates the abort marker; returns whether one was already there (the last run crashed).
///
/// # Errors
/// I/O errors.
pub fn mark_open(dir: &Path) -> Result<bool> {
    let path = dir.join("abort");
    let existed = path.exists();
    let file = disk::create_truncated(&path).at(&path)?;
    disk::sync_file(&file, &path).at(&path)?;
    sync_dir(dir).at(dir)?;
    Ok(existed)
}

/// Removes the abort marker after a clean shutdown.
///
/// # Errors
/// I/O errors.
pub fn mark_clean(dir: &Path) -> Result<()> {
    let path = dir.join("abort");
    match disk::remove_file(&path) {
        Ok(()) => sync_dir(dir).at(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// An exclusive lock on a store directory, held for the store's lifetime.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock.
    ///
    /// # Errors
    /// [`Error::Io`] with `WouldBlock` if another process holds the store open.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let file = disk::open_rw(&path, true).at(&path)?;
        // A child process forked by another thread holds a copy of the descriptor until it
        // execs; retry briefly so a close-and-reopen in this process does not fail spuriously.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let lock = loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other,
            }
        };
        lock.map_err(|e| {
            Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!("store directory is in use by another process ({e})"),
                ),
            )
        })?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), None);
        let cp = Checkpoint {
            commit_log: 1,
            consume_queue: 2,
            index: 3,
            timestamp_ms: 4,
        };
        cp.store(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Some(cp));
        let path = dir.path().join("checkpoint");
        let mut b = std::fs::read(&path).unwrap();
        b[9] ^= 1;
        std::fs::write(&path, b).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), None);
        assert!(!mark_open(dir.path()).unwrap());
        assert!(mark_open(dir.path()).unwrap());
        mark_clean(dir.path()).unwrap();
        assert!(!mark_open(dir.path()).unwrap());
        let _l = DirLock::acquire(dir.path()).unwrap();
        assert!(DirLock::acquire(dir.path()).is_err());
    }
}
