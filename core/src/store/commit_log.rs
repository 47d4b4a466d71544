//! The CommitLog: every message of every topic, appended in order to fixed-size segment files.
//!
//! Owns: the segment files under `commitlog/`, the write position, the per-queue next offsets
//! (assigned under the append lock so that queue order is CommitLog order), the flushed
//! position, and the crash-recovery scan with its durable cut of a torn tail.
//!
//! Invariants:
//! - Segment files are named by their 20-digit start offset and are contiguous: each starts where
//!   the previous one ends. A record never spans two segments; a segment whose space cannot hold
//!   the next record ends with a [`record::blank`] filler (or with fewer than 8 spare bytes).
//! - `flushed <= wrote`. Bytes below `wrote` are complete records (published with Release, read
//!   with Acquire); bytes at and above it are touched only by the writer.
//! - A segment is fsynced (size included) before it gets its final name, so a power cut never
//!   leaves a short or empty segment under that name.
//! - After recovery, everything from the recovered end to the end of its segment is zero on
//!   disk (durably), and later segments are deleted, newest first (a power cut during the
//!   deletes leaves a contiguous log): no stale record can reappear later even if a shorter
//!   record is written over the cut (RocketMQ #10666).
//! - Once a flush fails the log is poisoned: it refuses writes and never reports a later flush
//!   as success.
//!
//! Callers: only [`super::Store`] (the append path, the flusher thread, the dispatcher thread,
//! readers). It must not depend on `broker` or anything above the store.
//!
//! Concurrency: one `Mutex<Writer>` serialises appends and segment rolls; the segment list is
//! behind an `RwLock` taken briefly by readers to clone an `Arc<Segment>`; `wrote` and `flushed`
//! are atomics. Flushing (`flush`) is done by one thread at a time (the flusher), without the
//! append lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::disk::{self, sync_dir};
use super::error::{Error, IoContext, Result};
use super::mapped_file::MappedFile;
use super::record::{self, Peek, RecordDraft, RecordView, StoreFields};

mod replica;
pub(crate) use self::replica::{Chunk, ReplAppended, ReplError};

/// Segments at least this large are prefaulted in the background when they are created.
const PREFAULT_MIN_SEGMENT: u64 = 16 << 20;

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    base: u64,
    file: MappedFile,
}

impl Segment {
    /// Offset one past its last byte.
    pub fn end(&self) -> u64 {
        self.base + self.file.len() as u64
    }
    /// The file.
    pub fn file(&self) -> &MappedFile {
        &self.file
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// CommitLog offset of the record.
    pub physical_offset: u64,
    /// Encoded size.
    pub size: u32,
    /// Offset within its queue.
    pub queue_offset: u64,
    /// Store timestamp (ms).
    pub store_timestamp: i64,
    /// Offset one past the record: durable once `flushed >= end`.
    pub end: u64,
}

/// Why an append could not start a new segment, besides I/O errors.
pub trait RollGuard: Send + Sync {
    /// Called before a new segment of `size` bytes is created; an error refuses the write.
    ///
    /// # Errors
    /// [`Error::DiskFull`] when the disk-use limits forbid a new segment.
    fn check_roll(&self, live_segments: usize, size: u64) -> Result<()>;
}

struct Writer {
    buf: Vec<u8>,
    /// topic -> next offset per queue id.
    queue_offsets: HashMap<String, Vec<u64>>,
}

/// The CommitLog.
pub struct CommitLog {
    dir: PathBuf,
    segment_size: u64,
    /// Map segments without read-around (`SYNC_FLUSH`: msync writes back only dirty pages).
    random_access: bool,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    wrote: AtomicU64,
    flushed: AtomicU64,
    poisoned: AtomicBool,
    poison_reason: Mutex<String>,
    /// Flushes that made something durable (group commit: fewer than the appends they cover).
    flush_rounds: AtomicU64,
    /// Tests only: flushes skip their msync yet count as done (a store that "forgot" to sync),
    /// to show that the power-loss test catches it.
    #[cfg(test)]
    skip_msync: AtomicBool,
}

/// What the recovery scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// End of the intact log.
    pub end: u64,
    /// Where the scan started.
    pub scanned_from: u64,
    /// Whether a damaged or torn tail was cut off.
    pub cut_tail: bool,
}

fn segment_name(base: u64) -> String {
    format!("{base:020}")
}

impl CommitLog {
    /// Opens the log in `dir` and recovers its end.
    ///
    /// With `clean == true` (the previous run shut down cleanly) the scan starts at `hint` (the
    /// checkpointed flushed offset) and trusts what is before it. After a crash it starts at the
    /// beginning of the segment holding `hint` (or the first segment) and verifies every record.
    /// Either way a torn or damaged tail is cut durably.
    ///
    /// # Errors
    /// I/O errors, or [`Error::Corrupted`] if the segment files are not contiguous.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        random_access: bool,
        hint: Option<u64>,
        clean: bool,
    ) -> Result<(Self, Recovered)> {
        disk::create_dir_all(dir).at(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(base) = name.parse::<u64>() {
                    bases.push(base);
                }
            } else if name.ends_with(".tmp") {
                // Leftover of an interrupted roll; never holds data.
                let _ = disk::remove_file(&entry.path());
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len());
        for base in bases {
            let path = dir.join(segment_name(base));
            let file = MappedFile::open(&path).at(&path)?;
            if let Some(prev) = segments.last().map(|s: &Arc<Segment>| s.end()) {
                if prev != base {
                    return Err(Error::Corrupted {
                        path,
                        offset: base,
                        reason: "segment does not start where the previous one ends",
                    });
                }
            }
            segments.push(Arc::new(Segment { base, file }));
        }
        if random_access {
            for seg in &segments {
                seg.file.advise_random();
            }
        }
        let log = Self {
            dir: dir.to_path_buf(),
            segment_size,
            random_access,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                buf: Vec::with_capacity(4096),
                queue_offsets: HashMap::new(),
            }),
            wrote: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(String::new()),
            flush_rounds: AtomicU64::new(0),
            #[cfg(test)]
            skip_msync: AtomicBool::new(false),
        };
        let recovered = log.recover(hint, clean)?;
        log.wrote.store(recovered.end, Ordering::Release);
        log.flushed.store(recovered.end, Ordering::Release);
        Ok((log, recovered))
    }

    fn recover(&self, hint: Option<u64>, clean: bool) -> Result<Recovered> {
        let segments = self.segments.read().clone();
        let Some(first) = segments.first() else {
            return Ok(Recovered {
                end: 0,
                scanned_from: 0,
                cut_tail: false,
            });
        };
        let min = first.base;
        let max = segments.last().map_or(min, |s| s.end());
        let start = match hint {
            Some(h) if h >= min && h <= max => {
                if clean {
                    h
                } else {
                    // The start of the segment holding the hint (the previous one if the hint
                    // sits exactly on a boundary, so its tail gets verified too).
                    let idx = segments.partition_point(|s| s.end() < h);
                    segments.get(idx).map_or(min, |s| s.base)
                }
            }
            _ => min,
        };
        let (end, damaged) = self.scan(&segments, start);
        let cut_tail = self.cut_after(&segments, end, damaged || !clean)?;
        if cut_tail {
            tracing::warn!(
                end,
                scanned_from = start,
                "commit log: cut a damaged or torn tail"
            );
        }
        Ok(Recovered {
            end,
            scanned_from: start,
            cut_tail,
        })
    }

    /// Walks verified records from `start`; returns the end of the intact prefix and whether it
    /// stopped at damage (as opposed to clean zeros).
    fn scan(&self, segments: &[Arc<Segment>], start: u64) -> (u64, bool) {
        let mut idx = segments.partition_point(|s| s.end() <= start);
        let mut pos = start;
        while let Some(seg) = segments.get(idx) {
            let len = seg.file.len();
            let mut at = (pos - seg.base) as usize;
            loop {
                let remaining = len - at;
                if remaining < 8 {
                    break; // implicit end of segment
                }
                let head = seg.file.slice(at, 8).unwrap_or(&[]);
                match record::peek(head) {
                    Peek::Empty => return (seg.base + at as u64, false),
                    Peek::Blank { len: b } if b == remaining => {
                        at = len;
                        break;
                    }
                    Peek::Record { len: r } if r <= remaining => {
                        let Some(buf) = seg.file.slice(at, r) else {
                            return (seg.base + at as u64, true);
                        };
                        let phy = seg.base + at as u64;
                        if RecordView::parse(buf, len, Some(phy)).is_err() {
                            return (phy, true);
                        }
                        at += r;
                    }
                    _ => return (seg.base + at as u64, true),
                }
            }
            pos = seg.base + at as u64;
            idx += 1;
            if idx < segments.len() {
                pos = segments[idx].base;
            }
        }
        (pos, false)
    }

    /// Makes `end` the durable end of the log: zeroes whatever is left after it in its segment
    /// (when `scrub`) and deletes every later segment. Returns whether anything was removed.
    fn cut_after(&self, segments: &[Arc<Segment>], end: u64, scrub: bool) -> Result<bool> {
        let mut changed = false;
        // Keep every segment that starts before `end`, and always the first one.
        let keep = segments.partition_point(|s| s.base < end).max(1);
        if let Some(seg) = keep.checked_sub(1).and_then(|i| segments.get(i)) {
            if scrub && end < seg.end() {
                let from = (end - seg.base) as usize;
                if seg.file.scrub_from(from).at(seg.file.path())? {
                    changed = true;
                }
            }
        }
        let mut list = self.segments.write();
        // Newest first: a power cut keeps a prefix of the unlinks, and deleting oldest first
        // could leave a gap (segments after it refused at the next start) where this order
        // leaves a shorter, contiguous tail to cut again (found by the power-loss test, T1c).
        for seg in segments.iter().skip(keep).rev() {
            let path = seg.file.path().to_path_buf();
            disk::remove_file(&path).at(&path)?;
            changed = true;
        }
        let n = keep.min(list.len());
        list.truncate(n);
        if changed {
            sync_dir(&self.dir).at(&self.dir)?;
        }
        Ok(changed)
    }

    /// Offset one past the last written record.
    pub fn wrote(&self) -> u64 {
        self.wrote.load(Ordering::Acquire)
    }

    /// Offset up to which the log is durable on disk.
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Smallest offset still held (start of the oldest segment), or the write position if empty.
    pub fn min_offset(&self) -> u64 {
        self.segments
            .read()
            .first()
            .map_or_else(|| self.wrote(), |s| s.base)
    }

    /// Whether a failed flush has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned(self.poison_reason.lock().clone())
    }

    /// Marks the log read-only after a failed flush.
    pub fn poison(&self, reason: String) {
        tracing::error!(reason = %reason, "commit log poisoned: refusing further writes");
        *self.poison_reason.lock() = reason;
        self.poisoned.store(true, Ordering::Release);
    }

    /// Seeds the next queue offset of `(topic, queue_id)` (recovery), keeping the larger value.
    pub fn seed_queue_offset(&self, topic: &str, queue_id: u32, next: u64) {
        let mut w = self.writer.lock();
        let v = w.queue_offsets.entry(topic.to_owned()).or_default();
        let i = queue_id as usize;
        if v.len() <= i {
            v.resize(i + 1, 0);
        }
        v[i] = v[i].max(next);
    }

    /// The next queue offset `(topic, queue_id)` will be given: one past its last appended
    /// record (0 for a queue never written).
    pub fn next_queue_offset(&self, topic: &str, queue_id: u32) -> u64 {
        let w = self.writer.lock();
        w.queue_offsets
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the queue offsets of a deleted topic.
    pub fn forget_topic(&self, topic: &str) {
        self.writer.lock().queue_offsets.remove(topic);
    }

    /// Appends one record for queue `queue_id`.
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed flush, [`Error::RecordTooLarge`], [`Error::DiskFull`]
    /// from `guard` or from preallocating a new segment, other I/O errors.
    pub fn append(
        &self,
        draft: &RecordDraft<'_>,
        queue_id: u32,
        store_timestamp: i64,
        guard: &dyn RollGuard,
    ) -> Result<Appended> {
        self.append_at(draft, queue_id, store_timestamp, guard, None)
    }

    /// Appends a store-operation record (queue 0, queue offset 0, no offset of its own) and,
    /// under the same writer lock, forgets the queue offsets of `reset`: the records after it
    /// start at queue offset 0 (a topic's deletion, `store_ops.rs`).
    ///
    /// # Errors
    /// As [`CommitLog::append`].
    pub(super) fn append_resetting(
        &self,
        draft: &RecordDraft<'_>,
        reset: &str,
        store_timestamp: i64,
        guard: &dyn RollGuard,
    ) -> Result<Appended> {
        self.append_at(draft, 0, store_timestamp, guard, Some(reset))
    }

    fn append_at(
        &self,
        draft: &RecordDraft<'_>,
        queue_id: u32,
        store_timestamp: i64,
        guard: &dyn RollGuard,
        reset: Option<&str>,
    ) -> Result<Appended> {
        let size = draft.encoded_len().ok_or(Error::RecordTooLarge {
            size: usize::MAX,
            max: self.segment_size as usize,
        })?;
        if size as u64 > self.segment_size {
            return Err(Error::RecordTooLarge {
                size,
                max: self.segment_size as usize,
            });
        }
        let mut w = self.writer.lock();
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        let mut pos = self.wrote.load(Ordering::Relaxed);
        let seg = self.segment_for_write(pos, size, guard)?;
        if seg.base > pos {
            pos = seg.base;
        }
        let queue_offset = if reset.is_some() {
            0
        } else {
            let i = queue_id as usize;
            if !w.queue_offsets.contains_key(draft.topic) {
                w.queue_offsets.insert(draft.topic.to_owned(), Vec::new());
            }
            match w.queue_offsets.get_mut(draft.topic) {
                Some(v) => {
                    if v.len() <= i {
                        v.resize(i + 1, 0);
                    }
                    v[i]
                }
                None => 0,
            }
        };
        let fields = StoreFields {
            queue_id,
            queue_offset,
            physical_offset: pos,
            store_timestamp,
            raft_term: 0,
            raft_index: 0,
        };
        let Writer { buf, queue_offsets } = &mut *w;
        draft
            .encode(&fields, buf)
            .map_err(|_| Error::RecordTooLarge {
                size,
                max: self.segment_size as usize,
            })?;
        seg.file.write_at((pos - seg.base) as usize, buf);
        if let Some(topic) = reset {
            queue_offsets.remove(topic);
        } else if let Some(v) = queue_offsets.get_mut(draft.topic) {
            v[queue_id as usize] += 1;
        }
        let end = pos + size as u64;
        self.wrote.store(end, Ordering::Release);
        Ok(Appended {
            physical_offset: pos,
            size: size as u32,
            queue_offset,
            store_timestamp,
            end,
        })
    }

    /// The segment the next record of `size` bytes goes to, rolling to a new one if needed.
    /// Called with the writer lock held.
    fn segment_for_write(
        &self,
        pos: u64,
        size: usize,
        guard: &dyn RollGuard,
    ) -> Result<Arc<Segment>> {
        let current = self.segments.read().last().cloned();
        if let Some(seg) = current {
            if pos >= seg.base && pos + size as u64 <= seg.end() {
                return Ok(seg);
            }
            // Close the current segment with a filler when there is room for one.
            if pos < seg.end() {
                let remaining = seg.end() - pos;
                if remaining >= 8 {
                    seg.file
                        .write_at((pos - seg.base) as usize, &record::blank(remaining as u32));
                }
            }
            let next = seg.end();
            return self.roll(next, guard);
        }
        self.roll(pos, guard)
    }

    fn roll(&self, base: u64, guard: &dyn RollGuard) -> Result<Arc<Segment>> {
        let live = self.segments.read().len();
        guard.check_roll(live, self.segment_size)?;
        let path = self.dir.join(segment_name(base));
        let tmp = self.dir.join(format!("{}.tmp", segment_name(base)));
        // The zero-filled, preallocated file is fsynced before it gets its final name: a rename
        // and a directory fsync make the name durable, not the file's size, so without it a
        // power cut could leave an empty segment under the final name, which recovery refuses
        // (found by the power-loss test, T1c).
        let created = MappedFile::create(&tmp, self.segment_size as usize)
            .and_then(|f| f.sync_all().map(|()| f));
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                let _ = disk::remove_file(&tmp);
                if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                    return Err(Error::DiskFull(format!("no space for a new segment: {e}")));
                }
                return Err(Error::io(&tmp, e));
            }
        };
        // It gets its final name only once it is complete and durable, so a crash never leaves
        // a short segment behind.
        disk::rename(&tmp, &path).at(&path)?;
        sync_dir(&self.dir).at(&self.dir)?;
        let seg = Arc::new(Segment {
            base,
            file: reopen_as(file, path),
        });
        if self.random_access {
            seg.file.advise_random();
        }
        if self.segment_size >= PREFAULT_MIN_SEGMENT {
            // Fault the fresh segment in off the append path (the writer starts at its head,
            // the prefault races ahead of it).
            let s = seg.clone();
            let _ = std::thread::Builder::new()
                .name("rg-prefault".into())
                .spawn(move || s.file.prefault());
        }
        self.segments.write().push(seg.clone());
        tracing::debug!(base, "commit log: rolled to a new segment");
        Ok(seg)
    }

    /// Makes everything written so far durable. Returns the new flushed offset.
    ///
    /// Must be called by one thread at a time (the flusher). A failure poisons the log and is
    /// returned; the flushed offset then never advances again.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a previous flush failed, or the failing flush's I/O error.
    pub fn flush(&self, fail: bool) -> Result<u64> {
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        let from = self.flushed.load(Ordering::Acquire);
        let to = self.wrote.load(Ordering::Acquire);
        if to <= from {
            return Ok(from);
        }
        let segments: Vec<Arc<Segment>> = {
            let list = self.segments.read();
            let i = list.partition_point(|s| s.end() <= from);
            list[i..]
                .iter()
                .take_while(|s| s.base < to)
                .cloned()
                .collect()
        };
        let mut result = Ok(());
        if fail {
            result = Err(std::io::Error::other("injected fsync failure"));
        }
        for seg in &segments {
            if result.is_err() {
                break;
            }
            #[cfg(test)]
            if self.skip_msync.load(Ordering::Relaxed) {
                continue;
            }
            let a = from.max(seg.base) - seg.base;
            let b = to.min(seg.end()) - seg.base;
            result = seg.file.flush_range(a as usize, (b - a) as usize);
        }
        if let Err(e) = result {
            let path = segments
                .first()
                .map_or_else(|| self.dir.clone(), |s| s.file.path().to_path_buf());
            self.poison(format!("flush of {} failed: {e}", path.display()));
            return Err(Error::io(path, e));
        }
        self.flushed.store(to, Ordering::Release);
        self.flush_rounds.fetch_add(1, Ordering::Relaxed);
        Ok(to)
    }

    /// Flushes so far that made something durable.
    pub fn flush_rounds(&self) -> u64 {
        self.flush_rounds.load(Ordering::Relaxed)
    }

    /// Reads the record at `phy` (size from the ConsumeQueue, or `None` to read its header).
    /// Only offsets below `limit` (the caller's visibility bound) are served.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the bytes there are not an intact record.
    pub fn read<T>(
        &self,
        phy: u64,
        size: Option<u32>,
        limit: u64,
        f: impl FnOnce(RecordView<'_>) -> T,
    ) -> Result<Option<T>> {
        let Some(seg) = self.segment_at(phy) else {
            return Ok(None);
        };
        let at = (phy - seg.base) as usize;
        let avail = (limit.min(seg.end()).saturating_sub(phy)) as usize;
        let len = match size {
            Some(s) => s as usize,
            None => match seg.file.slice(at, 8.min(avail)).map(record::peek) {
                Some(Peek::Record { len }) => len,
                _ => return Ok(None),
            },
        };
        if len > avail {
            return Ok(None);
        }
        let corrupt = |reason| Error::Corrupted {
            path: seg.file.path().to_path_buf(),
            offset: phy,
            reason,
        };
        let buf = seg
            .file
            .slice(at, len)
            .ok_or_else(|| corrupt("record past segment end"))?;
        match RecordView::parse(buf, seg.file.len(), Some(phy)) {
            Ok(view) if view.total_len == len => Ok(Some(f(view))),
            Ok(_) => Err(corrupt("record size differs from its queue entry")),
            Err(e) => {
                tracing::error!(phy, error = %e, "commit log: corrupt record refused");
                Err(corrupt("record failed verification"))
            }
        }
    }

    /// Walks records from `from` (a record boundary) up to `limit`, calling `f` with each and
    /// returning the offset after the last one visited. Skips segment fillers.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a record below `limit` is damaged.
    pub fn walk(
        &self,
        from: u64,
        limit: u64,
        max: usize,
        mut f: impl FnMut(&RecordView<'_>),
    ) -> Result<u64> {
        let mut pos = from.max(self.min_offset());
        let mut n = 0;
        while pos < limit && n < max {
            let Some(seg) = self.segment_at(pos) else {
                break;
            };
            let at = (pos - seg.base) as usize;
            let remaining = seg.file.len() - at;
            let head = if remaining >= 8 {
                seg.file.slice(at, 8)
            } else {
                None
            };
            match head.map(record::peek) {
                None => pos = seg.end(),
                Some(Peek::Blank { len }) if len == remaining => pos = seg.end(),
                Some(Peek::Record { len }) if len <= remaining && pos + len as u64 <= limit => {
                    let buf = seg.file.slice(at, len).unwrap_or(&[]);
                    let view = RecordView::parse(buf, seg.file.len(), Some(pos)).map_err(|_| {
                        Error::Corrupted {
                            path: seg.file.path().to_path_buf(),
                            offset: pos,
                            reason: "record failed verification",
                        }
                    })?;
                    f(&view);
                    pos += len as u64;
                    n += 1;
                }
                _ => {
                    return Err(Error::Corrupted {
                        path: seg.file.path().to_path_buf(),
                        offset: pos,
                        reason: "no record where one was expected",
                    })
                }
            }
        }
        Ok(pos.max(from))
    }

    fn segment_at(&self, phy: u64) -> Option<Arc<Segment>> {
        let list = self.segments.read();
        let i = list.partition_point(|s| s.end() <= phy);
        list.get(i).filter(|s| s.base <= phy).cloned()
    }

    /// Deletes the oldest segments for which `expired` holds, never the last one, and never one
    /// reaching past `safe` (not yet dispatched). Returns the new minimum offset.
    ///
    /// # Errors
    /// I/O errors from unlinking.
    pub fn delete_oldest(&self, safe: u64, expired: impl Fn(&Segment) -> bool) -> Result<u64> {
        let mut removed = false;
        loop {
            let victim = {
                let list = self.segments.read();
                match list.first() {
                    Some(s) if list.len() > 1 && s.end() <= safe && expired(s) => s.clone(),
                    _ => break,
                }
            };
            let path = victim.file.path().to_path_buf();
            self.segments.write().retain(|s| s.base != victim.base);
            disk::remove_file(&path).at(&path)?;
            tracing::info!(base = victim.base, "retention: deleted commit log segment");
            removed = true;
        }
        if removed {
            sync_dir(&self.dir).at(&self.dir)?;
        }
        Ok(self.min_offset())
    }

    /// Tests only: from now on flushes skip their msync but still advance the flushed offset
    /// and acknowledge (sabotage, to show that the power-loss test notices).
    #[cfg(test)]
    pub(super) fn skip_msync_for_test(&self) {
        self.skip_msync.store(true, Ordering::Relaxed);
    }

    /// Number of live segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }
}

/// Keeps the mapping of a file that was renamed after it was created.
fn reopen_as(file: MappedFile, path: PathBuf) -> MappedFile {
    file.renamed(path)
}
