//! ConsumeQueues: per (topic, queue id), the dense array of fixed-size entries that turns a
//! logical queue offset into a CommitLog position.
//!
//! Owns: the files under `consumequeue/<topic>/<queue id>/`, each named by the 20-digit logical
//! offset of its first entry and holding `entries_per_file` entries. Files are *growing*
//! mapped files: full size from creation, but disk blocks are reserved for a page first and
//! doubled as entries are put (a queue with one message costs 4 KiB, not 6 MB), and counted in
//! the store's [`DiskUsage`].
//!
//! # Entry layout (20 bytes, little-endian)
//!
//! ```text
//! 0  u64 physical_offset   CommitLog offset of the record
//! 8  u32 size              record size; 0 means "no entry here" (never written or cut)
//! 12 u64 tag_hash          [`tag_hash`] of the message tag, 0 for none
//! ```
//!
//! Invariants: a ConsumeQueue is derived data, written only by the dispatcher and rebuildable
//! from the CommitLog at any time; entry `n` is always at byte `(n - first) * 20` of its file, so
//! replaying a record rewrites the same bytes (idempotent). A queue opened with no entry left
//! starts at its first file (replay raises it; it never claims offsets no record had). Entries
//! are published by storing `max` (Release) after the bytes; readers read only below `max`
//! (Acquire). Physical offsets increase with the logical offset. A flush covers every entry
//! put since the last one, also one put below what was flushed (replay). Files are deleted
//! newest first when a queue is cut, so a power cut during the deletes leaves no gap.
//!
//! Concurrency: one writer (the dispatcher thread, or recovery before any reader exists); many
//! readers. The file list is behind an `RwLock` held only to clone an `Arc`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::disk::{self, sync_dir};
use super::error::{IoContext, Result};
use super::mapped_file::{DiskUsage, MappedFile};

/// Bytes per entry.
pub const ENTRY_LEN: usize = 20;

/// The hash of a tag stored in the queue, used to filter without reading the CommitLog.
pub fn tag_hash(tag: &str) -> u64 {
    if tag.is_empty() {
        0
    } else {
        u64::from(crc32c::crc32c(tag.as_bytes())) | (1 << 32)
    }
}

/// One queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// CommitLog offset.
    pub physical_offset: u64,
    /// Record size.
    pub size: u32,
    /// Tag hash.
    pub tag_hash: u64,
}

impl CqEntry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[..8].copy_from_slice(&self.physical_offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b[12..].copy_from_slice(&self.tag_hash.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut p = [0u8; 8];
        let mut t = [0u8; 8];
        let mut s = [0u8; 4];
        p.copy_from_slice(b.get(..8)?);
        s.copy_from_slice(b.get(8..12)?);
        t.copy_from_slice(b.get(12..20)?);
        let e = Self {
            physical_offset: u64::from_le_bytes(p),
            size: u32::from_le_bytes(s),
            tag_hash: u64::from_le_bytes(t),
        };
        (e.size != 0).then_some(e)
    }
}

#[derive(Debug)]
struct CqFile {
    first: u64,
    file: MappedFile,
}

impl CqFile {
    fn capacity(&self) -> u64 {
        (self.file.len() / ENTRY_LEN) as u64
    }
    fn end(&self) -> u64 {
        self.first + self.capacity()
    }
    fn entry(&self, offset: u64) -> Option<CqEntry> {
        let at = usize::try_from(offset.checked_sub(self.first)?).ok()? * ENTRY_LEN;
        CqEntry::decode(self.file.slice(at, ENTRY_LEN)?)
    }
}

/// The ConsumeQueue of one (topic, queue id).
#[derive(Debug)]
pub struct ConsumeQueue {
    dir: PathBuf,
    entries_per_file: u64,
    files: RwLock<Vec<Arc<CqFile>>>,
    min: AtomicU64,
    max: AtomicU64,
    flushed: AtomicU64,
    usage: DiskUsage,
}

impl ConsumeQueue {
    /// Opens (or creates) the queue in `dir`, finding its last valid entry; its disk blocks are
    /// counted in a usage of its own.
    ///
    /// # Errors
    /// I/O errors.
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn open(dir: &Path, entries_per_file: u64) -> Result<Self> {
        Self::open_counted(dir, entries_per_file, &DiskUsage::default())
    }

    /// [`ConsumeQueue::open`], counting the queue's disk blocks in `usage` (the store's).
    ///
    /// # Errors
    /// I/O errors.
    pub fn open_counted(dir: &Path, entries_per_file: u64, usage: &DiskUsage) -> Result<Self> {
        disk::create_dir_all(dir).at(dir)?;
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 20 {
                if let Ok(first) = name.parse::<u64>() {
                    firsts.push(first);
                }
            }
        }
        firsts.sort_unstable();
        let mut files = Vec::with_capacity(firsts.len());
        for first in firsts {
            let path = dir.join(format!("{first:020}"));
            let file = MappedFile::open_growing(&path, usage).at(&path)?;
            if file.len() % ENTRY_LEN != 0 {
                return Err(super::error::Error::Corrupted {
                    path,
                    offset: 0,
                    reason: "consume queue file is not a whole number of entries",
                });
            }
            files.push(Arc::new(CqFile { first, file }));
        }
        // First entry from the front, last entry from the back: a queue rebuilt from the middle
        // of the log starts inside its first file, and the last file ends in zeros.
        let first_valid = files
            .iter()
            .find_map(|f| (f.first..f.end()).find(|o| f.entry(*o).is_some()));
        let last_valid = files
            .iter()
            .rev()
            .find_map(|f| (f.first..f.end()).rev().find(|o| f.entry(*o).is_some()));
        let (min, max) = match (first_valid, last_valid) {
            (Some(a), Some(z)) => (a, z + 1),
            // No entry survived (a crash lost what was never flushed): the first file's start
            // is the lowest offset the queue can be at. Replay from the CommitLog raises it to
            // the truth, where the last file's start could skip offsets that were never used
            // (found by the power-loss test, T1c).
            _ => {
                let start = files.first().map_or(0, |f| f.first);
                (start, start)
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            entries_per_file: entries_per_file.max(1),
            files: RwLock::new(files),
            min: AtomicU64::new(min),
            max: AtomicU64::new(max),
            flushed: AtomicU64::new(max),
            usage: usage.clone(),
        })
    }

    /// The first offset this queue is known to hold (written when its first file is created and
    /// before retention deletes files), if recorded.
    pub fn recorded_min(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("min"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn record_min(&self, min: u64) -> Result<()> {
        let path = self.dir.join("min");
        let tmp = self.dir.join("min.tmp");
        disk::create_truncated(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, min.to_string().as_bytes()))
            .at(&tmp)?;
        disk::rename(&tmp, &path).at(&path)?;
        sync_dir(&self.dir).at(&self.dir)
    }

    /// Checks every entry in `[min, max)`: none missing, sizes plausible, physical offsets
    /// strictly increasing without overlap and below `log_end`, and no files missing before the
    /// recorded minimum. Returns the first offset that fails.
    pub fn validate(&self, log_end: u64, min_record: u32) -> std::result::Result<(), u64> {
        let (min, max) = (self.min_offset(), self.max_offset());
        let files = self.files.read().clone();
        if let (Some(recorded), Some(first)) = (self.recorded_min(), files.first()) {
            if first.first > recorded {
                return Err(recorded);
            }
        }
        let mut prev_end = 0u64;
        let mut at = min;
        for f in files.iter().filter(|f| f.end() > min && f.first < max) {
            if f.first > at {
                return Err(at); // a missing file
            }
            while at < max.min(f.end()) {
                match f.entry(at) {
                    Some(e)
                        if e.size >= min_record
                            && e.physical_offset >= prev_end
                            && e.physical_offset.saturating_add(u64::from(e.size)) <= log_end =>
                    {
                        prev_end = e.physical_offset + u64::from(e.size);
                    }
                    _ => return Err(at),
                }
                at += 1;
            }
        }
        if at < max {
            return Err(at);
        }
        Ok(())
    }

    /// Smallest readable logical offset.
    pub fn min_offset(&self) -> u64 {
        self.min.load(Ordering::Acquire)
    }

    /// One past the largest readable logical offset.
    pub fn max_offset(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    fn file_for(&self, offset: u64) -> Option<Arc<CqFile>> {
        let files = self.files.read();
        let i = files.partition_point(|f| f.end() <= offset);
        files.get(i).filter(|f| f.first <= offset).cloned()
    }

    /// The entry at `offset`, if published.
    pub fn get(&self, offset: u64) -> Option<CqEntry> {
        if offset < self.min_offset() || offset >= self.max_offset() {
            return None;
        }
        self.file_for(offset)?.entry(offset)
    }

    /// Up to `max` entries from `from`, with their offsets. Holes (cut entries) are skipped.
    pub fn read(&self, from: u64, max: usize) -> Vec<(u64, CqEntry)> {
        let end = self.max_offset();
        let mut at = from.max(self.min_offset());
        let mut out = Vec::with_capacity(max.min(1024));
        while at < end && out.len() < max {
            let Some(file) = self.file_for(at) else { break };
            let stop = file.end().min(end);
            while at < stop && out.len() < max {
                if let Some(e) = file.entry(at) {
                    out.push((at, e));
                }
                at += 1;
            }
        }
        out
    }

    /// Writes the entry for logical `offset` (dispatcher only) and publishes it.
    ///
    /// # Errors
    /// I/O errors creating a new file.
    pub fn put(&self, offset: u64, entry: CqEntry) -> Result<()> {
        let file = match self.file_for(offset) {
            Some(f) => f,
            None => self.create_file(offset)?,
        };
        let at = ((offset - file.first) as usize) * ENTRY_LEN;
        file.file.reserve(at + ENTRY_LEN).at(file.file.path())?;
        file.file.write_at(at, &entry.encode());
        // Replay after recovery may fill a queue from below what was flushed (a queue that
        // began with a hole): the next flush must cover it (found by the power-loss test, T2b).
        // Only replay writes below `max`, before the checkpointer runs, so this never races a
        // flush of the same range.
        if offset < self.flushed.load(Ordering::Acquire) {
            self.flushed.fetch_min(offset, Ordering::AcqRel);
        }
        if offset >= self.max.load(Ordering::Relaxed) {
            self.max.store(offset + 1, Ordering::Release);
        }
        if offset < self.min.load(Ordering::Relaxed) {
            self.min.store(offset, Ordering::Release);
        }
        Ok(())
    }

    fn create_file(&self, offset: u64) -> Result<Arc<CqFile>> {
        let first = offset - offset % self.entries_per_file;
        let path = self.dir.join(format!("{first:020}"));
        let len = self.entries_per_file as usize * ENTRY_LEN;
        let file = MappedFile::create_growing(&path, len, ENTRY_LEN, &self.usage).at(&path)?;
        sync_dir(&self.dir).at(&self.dir)?;
        if self.files.read().is_empty() && self.recorded_min().is_none_or(|m| m > first) {
            self.record_min(first)?;
        }
        let f = Arc::new(CqFile { first, file });
        let mut files = self.files.write();
        let i = files.partition_point(|x| x.first < first);
        files.insert(i, f.clone());
        if files.len() == 1 {
            self.min
                .store(first.max(self.min_offset()).min(offset), Ordering::Release);
        }
        Ok(f)
    }

    /// The first logical offset whose entry has a physical offset `>= phy` (or `max_offset`).
    pub fn offset_of_phy(&self, phy: u64) -> u64 {
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if e.physical_offset < phy => lo = mid + 1,
                Some(_) => hi = mid,
                // A hole: treat as "at or after", which keeps the search conservative.
                None => hi = mid,
            }
        }
        lo
    }

    /// Removes every entry pointing at or after CommitLog offset `phy` (recovery), durably.
    ///
    /// # Errors
    /// I/O errors.
    pub fn truncate_from_phy(&self, phy: u64) -> Result<()> {
        let cut = self.offset_of_phy(phy);
        let files = self.files.read().clone();
        let mut doomed = Vec::new();
        for f in &files {
            if f.first >= cut && f.first > self.min_offset() {
                doomed.push(f.clone());
                continue;
            }
            if f.end() > cut {
                // Zero the whole rest of the file: stale entries past `max` may exist too.
                let from = (cut.max(f.first) - f.first) as usize * ENTRY_LEN;
                f.file.scrub_from(from).at(f.file.path())?;
            }
        }
        if !doomed.is_empty() {
            self.files
                .write()
                .retain(|f| !doomed.iter().any(|d| d.first == f.first));
            // Newest first, so a power cut during the unlinks leaves no gap between files.
            for d in doomed.iter().rev() {
                disk::remove_file(d.file.path()).at(d.file.path())?;
            }
            sync_dir(&self.dir).at(&self.dir)?;
        }
        self.max.store(cut, Ordering::Release);
        self.flushed.store(
            cut.min(self.flushed.load(Ordering::Acquire)),
            Ordering::Release,
        );
        if self.min_offset() > cut {
            self.min.store(cut, Ordering::Release);
        }
        Ok(())
    }

    /// Retention: forgets entries pointing below CommitLog offset `phy` and deletes files that
    /// hold only such entries (never the last file).
    ///
    /// # Errors
    /// I/O errors.
    pub fn delete_below_phy(&self, phy: u64) -> Result<()> {
        let new_min = self.offset_of_phy(phy);
        if new_min <= self.min_offset() {
            return Ok(());
        }
        self.min.store(new_min, Ordering::Release);
        self.record_min(new_min)?;
        let doomed: Vec<Arc<CqFile>> = {
            let files = self.files.read();
            let n = files.len();
            files
                .iter()
                .enumerate()
                .filter(|(i, f)| *i + 1 < n && f.end() <= new_min)
                .map(|(_, f)| f.clone())
                .collect()
        };
        if !doomed.is_empty() {
            self.files
                .write()
                .retain(|f| !doomed.iter().any(|d| d.first == f.first));
            for d in &doomed {
                disk::remove_file(d.file.path()).at(d.file.path())?;
            }
        }
        Ok(())
    }

    /// Makes every published entry durable.
    ///
    /// # Errors
    /// The msync error.
    pub fn flush(&self) -> Result<()> {
        let from = self.flushed.load(Ordering::Acquire);
        let to = self.max_offset();
        if to <= from {
            return Ok(());
        }
        let files = self.files.read().clone();
        for f in files.iter().filter(|f| f.end() > from && f.first < to) {
            let a = (from.max(f.first) - f.first) as usize * ENTRY_LEN;
            let b = (to.min(f.end()) - f.first) as usize * ENTRY_LEN;
            f.file.flush_range(a, b - a).at(f.file.path())?;
        }
        // Unless a put below `from` lowered the mark meanwhile (the next flush covers it).
        let _ = self
            .flushed
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
        Ok(())
    }

    /// Deletes the queue's files and directory (topic deletion).
    ///
    /// # Errors
    /// I/O errors.
    pub fn destroy(&self) -> Result<()> {
        self.files.write().clear();
        match disk::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(super::error::Error::io(&self.dir, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn e(phy: u64) -> CqEntry {
        CqEntry {
            physical_offset: phy,
            size: 100,
            tag_hash: tag_hash("a"),
        }
    }

    #[test]
    fn put_read_roll_reopen_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let q = ConsumeQueue::open(dir.path(), 8).unwrap();
        for i in 0..30 {
            q.put(i, e(i * 100)).unwrap();
        }
        assert_eq!(q.max_offset(), 30);
        assert_eq!(q.read(5, 3), vec![(5, e(500)), (6, e(600)), (7, e(700))]);
        assert_eq!(q.read(6, 100).len(), 24);
        assert_eq!(q.offset_of_phy(1450), 15);
        q.flush().unwrap();
        drop(q);
        let q = ConsumeQueue::open(dir.path(), 8).unwrap();
        assert_eq!((q.min_offset(), q.max_offset()), (0, 30));
        assert_eq!(q.get(29), Some(e(2900)));
        q.truncate_from_phy(1450).unwrap();
        assert_eq!(q.max_offset(), 15);
        assert_eq!(q.get(15), None);
        drop(q);
        let q = ConsumeQueue::open(dir.path(), 8).unwrap();
        assert_eq!(q.max_offset(), 15);
        q.put(15, e(1500)).unwrap();
        assert_eq!(q.get(15), Some(e(1500)));
        q.delete_below_phy(1000).unwrap();
        assert_eq!(q.min_offset(), 10);
        assert_eq!(q.read(0, 2), vec![(10, e(1000)), (11, e(1100))]);
        q.truncate_from_phy(0).unwrap();
        assert_eq!(q.max_offset(), q.min_offset().min(10));
    }

    #[test]
    fn a_queue_whose_entries_were_all_lost_reopens_at_its_first_file() {
        // Two files created, no entry made durable (a power cut before the first flush): the
        // queue must not claim offsets up to its last file's start.
        let dir = tempfile::tempdir().unwrap();
        for first in [0u64, 8] {
            std::fs::write(dir.path().join(format!("{first:020}")), [0u8; 160]).unwrap();
        }
        let q = ConsumeQueue::open(dir.path(), 8).unwrap();
        assert_eq!((q.min_offset(), q.max_offset()), (0, 0));
        q.put(0, e(0)).unwrap();
        assert_eq!((q.min_offset(), q.max_offset()), (0, 1));
    }

    #[test]
    fn entries_put_below_the_flushed_mark_survive_a_power_cut() {
        use crate::store::power_loss::{CrashPlan, ImageKind, Recording};
        use rand::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("queue");
        std::fs::create_dir(&root).unwrap();
        let recording = Recording::start(&root).unwrap();
        let q = ConsumeQueue::open(&root, 8).unwrap();
        for i in 8..16 {
            q.put(i, e(i * 100)).unwrap();
        }
        q.flush().unwrap();
        // Replay after recovery fills a queue that began with a hole: below what was flushed.
        for i in 0..8 {
            q.put(i, e(i * 100)).unwrap();
        }
        q.flush().unwrap();
        recording.plan(CrashPlan {
            rng: rand::rngs::StdRng::seed_from_u64(0),
            probability: 0.0,
            max: 1,
            witness: Box::new(|| 0),
            out: dir.path().join("images"),
            kind: ImageKind::Pessimistic,
        });
        recording.crash_now("after the second flush");
        let (points, problems) = recording.finish();
        assert!(problems.is_empty(), "{problems:?}");
        let q = ConsumeQueue::open(&points[0].image, 8).unwrap();
        assert_eq!((q.min_offset(), q.max_offset()), (0, 16));
        assert_eq!(q.read(0, 100).len(), 16);
    }

    #[test]
    fn garbage_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{:020}", 0));
        std::fs::write(&path, vec![0xFFu8; 77]).unwrap();
        assert!(
            ConsumeQueue::open(dir.path(), 8).is_err(),
            "a torn file is refused"
        );
        std::fs::write(&path, vec![0xFFu8; 80]).unwrap();
        let q = ConsumeQueue::open(dir.path(), 8).unwrap();
        let _ = q.read(0, 10);
        let _ = q.offset_of_phy(5);
        assert!(
            q.validate(1 << 20, 100).is_err(),
            "garbage entries fail validation"
        );
    }
}
