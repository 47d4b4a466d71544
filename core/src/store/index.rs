//! The IndexFile store: a persistent hash index from a key (bytes the caller composes, e.g.
//! `"topic#key"` or a message id) to candidate CommitLog physical offsets, with time-range queries.
//!
//! It is derived data: it can always be rebuilt from the CommitLog, so unflushed tail entries may
//! be lost in a crash. Hash collisions are expected; the caller verifies every candidate by reading
//! the record it points at. Called by the store's dispatcher (writes), cleaner (retention) and
//! lookups (queries); it knows nothing of records and never imports `broker`.
//!
//! # On-disk layout
//! `dir` holds files named by their 20-digit zero-padded sequence number (`00000000000000000001`,
//! ...). Only the last file is active; when it is full the next sequence is created. Each file has
//! a fixed size of `64 + slot_count * 4 + entry_capacity * 20` bytes, all little-endian. Files
//! are *growing* mapped files: disk blocks are reserved for the header and slot table when a
//! file is created and for the entries as they are appended (doubling), counted in the store's
//! [`DiskUsage`]:
//!
//! | offset | size | field                                                      |
//! |--------|------|------------------------------------------------------------|
//! | 0      | 4    | magic `b"RGIX"`                                            |
//! | 4      | 4    | format version (1)                                         |
//! | 8      | 8    | begin_timestamp_ms i64 (store time of entry 1)             |
//! | 16     | 8    | end_timestamp_ms i64 (largest store time, inclusive)       |
//! | 24     | 8    | begin_phy u64 (phy of entry 1)                             |
//! | 32     | 8    | end_phy u64 (phy of the last entry)                        |
//! | 40     | 4    | entry_count u32                                            |
//! | 44     | 4    | slot_count u32                                             |
//! | 48     | 4    | entry_capacity u32                                         |
//! | 52     | 12   | reserved, zero                                             |
//! | 64     | 4·S  | slots: u32 number of the newest entry of the slot, 0 = none |
//! | 64+4·S | 20·E | entries, numbered from 1                                   |
//!
//! An entry is `key_hash u32 | phy_plus_one u64 | time_delta_secs u32 | prev u32`: the `crc32c`
//! of the key, the phy offset + 1 (an all-zero entry is never valid), the store time minus the
//! file's begin timestamp in whole seconds (saturating; a store time before the begin counts as
//! the begin), and the number of the previous entry of the same slot (0 = end of chain). A key's
//! slot is `key_hash % slot_count`.
//!
//! # Invariants
//! - Entries are appended in non-decreasing phy order (a put below the last indexed phy is
//!   ignored), so phys never decrease across entries and files, and `prev < number`.
//! - Nothing read from disk is trusted for safety or termination: slot and `prev` values outside
//!   `1..=capacity` end a chain, and a chain is only followed while `prev` strictly decreases, so
//!   it ends within `capacity` steps even on garbage.
//! - Recovery ([`IndexStore::open`]) deletes the newest files that hold nothing durable, truncates
//!   the last remaining file at its first invalid entry or first entry with `phy >= durable_phy`,
//!   zeroes the dropped tail, rebuilds its slot table from the surviving entries and flushes it.
//!   Older, sealed files are trusted: a flush syncs every sealed file whole before the active one,
//!   so any durable offset beyond a sealed file's entries was returned after that file was synced.
//!
//! # Concurrency
//! One writer (the dispatcher thread) calls `put`, `flush` and `delete_below`; they serialise on
//! the `writer` mutex. Any number of threads may `query` without blocking the writer: a query
//! clones the file list under a short read lock (the writer takes the write lock only to roll or
//! delete a file), then reads lock-free. Readers never read the mapped header or slot table of the
//! active file, only its in-memory atomics. A put writes the entry bytes, stores the slot head (in
//! the mapping, and with Release in memory), publishes the count with Release, then rewrites the
//! mapped header. The reader rule: a file whose published count is 0 is skipped; otherwise a slot
//! head loaded with Acquire is followed whenever it is `<= capacity`, even if it exceeds the count
//! loaded earlier, because its entry was completely written before the head was stored, and so
//! was every (older) entry reachable through `prev`. Sealed files are immutable and read straight
//! from the mapping (the active file's `Arc` is swapped for a sealed copy when it fills). A
//! deleted file stays mapped until the last reader drops its `Arc`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::disk::{self, sync_dir};
use super::error::{Error, IoContext, Result};
use super::mapped_file::{DiskUsage, MappedFile};

const MAGIC: u32 = u32::from_le_bytes(*b"RGIX");
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const SLOT_LEN: usize = 4;
const ENTRY_LEN: usize = 20;
const SEC: i64 = 1000;
/// Recovery zeroes stale entries past the kept ones until it sees this many zero entries in a row.
const ZERO_RUN: u32 = 1024;

/// Geometry of new index files (existing files keep the geometry in their header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Hash slots per file (0 is treated as 1).
    pub slots_per_file: u32,
    /// Entries per file (0 is treated as 1).
    pub entries_per_file: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            slots_per_file: 1_000_000,
            entries_per_file: 4_000_000,
        }
    }
}

/// Reads `N` little-endian bytes at `at`, or zeros when out of range.
fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

fn file_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}"))
}

fn file_len(slots: u32, capacity: u32) -> Option<usize> {
    let len = HEADER_LEN as u64 + u64::from(slots) * SLOT_LEN as u64;
    usize::try_from(len + u64::from(capacity) * ENTRY_LEN as u64).ok()
}

fn delta_secs(begin_ts: i64, ts: i64) -> u32 {
    u32::try_from(ts.saturating_sub(begin_ts).max(0) / SEC).unwrap_or(u32::MAX)
}

fn remove_file(path: &Path) -> Result<()> {
    match disk::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// One 20-byte entry (all zero = never written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    hash: u32,
    phy_plus_one: u64,
    delta_secs: u32,
    prev: u32,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let (h, p, d, v) = (self.hash, self.phy_plus_one, self.delta_secs, self.prev);
        [
            &h.to_le_bytes()[..],
            &p.to_le_bytes(),
            &d.to_le_bytes(),
            &v.to_le_bytes(),
        ]
        .concat()
    }

    fn decode(b: &[u8]) -> Self {
        let (hash, prev) = (u32::from_le_bytes(le(b, 0)), u32::from_le_bytes(le(b, 16)));
        let (phy_plus_one, delta_secs) =
            (u64::from_le_bytes(le(b, 4)), u32::from_le_bytes(le(b, 12)));
        Self {
            hash,
            phy_plus_one,
            delta_secs,
            prev,
        }
    }
}

/// The header fields that change as entries are added.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    begin_ts: i64,
    end_ts: i64,
    begin_phy: u64,
    end_phy: u64,
    count: u32,
}

/// One index file: its mapping, geometry and [`Meta`] as atomics.
struct IndexFile {
    seq: u64,
    map: Arc<MappedFile>,
    slots: u32,
    capacity: u32,
    /// In-memory slot table of the active file (readers never read its mapped slots).
    live_slots: Option<Box<[AtomicU32]>>,
    count: AtomicU32,
    begin_ts: AtomicI64,
    end_ts: AtomicI64,
    begin_phy: AtomicU64,
    end_phy: AtomicU64,
}

impl IndexFile {
    fn new(seq: u64, map: Arc<MappedFile>, slots: u32, capacity: u32, m: Meta) -> Self {
        Self {
            seq,
            map,
            slots,
            capacity,
            live_slots: None,
            count: AtomicU32::new(m.count.min(capacity)),
            begin_ts: AtomicI64::new(m.begin_ts),
            end_ts: AtomicI64::new(m.end_ts),
            begin_phy: AtomicU64::new(m.begin_phy),
            end_phy: AtomicU64::new(m.end_phy),
        }
    }

    /// Creates a fresh, empty active file (replacing any leftover of the same name).
    fn create(dir: &Path, seq: u64, config: IndexConfig, usage: &DiskUsage) -> Result<Self> {
        let path = file_path(dir, seq);
        let (slots, capacity) = (config.slots_per_file, config.entries_per_file);
        let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "index file too large");
        let len = file_len(slots, capacity).ok_or_else(too_large).at(&path)?;
        remove_file(&path)?;
        let head = file_len(slots, 1).unwrap_or(len);
        let map = MappedFile::create_growing(&path, len, head, usage).at(&path)?;
        let map = Arc::new(map);
        let mut file = Self::new(seq, map, slots, capacity, Meta::default());
        file.live_slots = Some((0..slots).map(|_| AtomicU32::new(0)).collect());
        file.write_header();
        Ok(file)
    }

    /// Opens an existing file; `None` if it was never initialised (crash right after creation).
    fn load(path: &Path, seq: u64, usage: &DiskUsage) -> Result<Option<Self>> {
        if std::fs::metadata(path).at(path)?.len() < HEADER_LEN as u64 {
            return Ok(None);
        }
        let map = MappedFile::open_growing(path, usage).at(path)?;
        let h = map.slice(0, HEADER_LEN).unwrap_or_default().to_vec();
        let (path, reason) = (
            path.to_path_buf(),
            "bad magic or size not matching the header",
        );
        match u32::from_le_bytes(le(&h, 0)) {
            0 => return Ok(None),
            MAGIC => {}
            _ => {
                return Err(Error::Corrupted {
                    path,
                    offset: 0,
                    reason,
                })
            }
        }
        let found = u32::from_le_bytes(le(&h, 4));
        if found != VERSION {
            return Err(Error::FormatVersion {
                path,
                found,
                expected: VERSION,
            });
        }
        let (slots, capacity) = (
            u32::from_le_bytes(le(&h, 44)),
            u32::from_le_bytes(le(&h, 48)),
        );
        if slots == 0 || capacity == 0 || file_len(slots, capacity) != Some(map.len()) {
            return Err(Error::Corrupted {
                path,
                offset: 44,
                reason,
            });
        }
        let meta = Meta {
            begin_ts: i64::from_le_bytes(le(&h, 8)),
            end_ts: i64::from_le_bytes(le(&h, 16)),
            begin_phy: u64::from_le_bytes(le(&h, 24)),
            end_phy: u64::from_le_bytes(le(&h, 32)),
            count: u32::from_le_bytes(le(&h, 40)),
        };
        // What recovery may write: the header, the slot table and the entries counted.
        let used = file_len(slots, meta.count.min(capacity)).unwrap_or(map.len());
        map.reserve(used).at(&path)?;
        Ok(Some(Self::new(seq, Arc::new(map), slots, capacity, meta)))
    }

    fn meta(&self) -> Meta {
        Meta {
            count: self.count.load(Acquire),
            begin_ts: self.begin_ts.load(Relaxed),
            end_ts: self.end_ts.load(Relaxed),
            begin_phy: self.begin_phy.load(Relaxed),
            end_phy: self.end_phy.load(Relaxed),
        }
    }

    /// A copy for a file that just became full: same mapping and header, slots read from disk.
    fn sealed(&self) -> Self {
        let map = Arc::clone(&self.map);
        Self::new(self.seq, map, self.slots, self.capacity, self.meta())
    }

    /// Offset of entry `n` (1-based; 0 maps to entry 1's offset).
    fn entry_off(&self, n: u32) -> usize {
        let skip = (n as usize).saturating_sub(1) * ENTRY_LEN;
        HEADER_LEN + self.slots as usize * SLOT_LEN + skip
    }

    fn read_entry(&self, n: u32) -> Option<Entry> {
        if n == 0 || n > self.capacity {
            return None;
        }
        let bytes = self.map.slice(self.entry_off(n), ENTRY_LEN);
        bytes.map(Entry::decode)
    }

    fn slot_head(&self, slot: u32) -> u32 {
        let pos = HEADER_LEN + slot as usize * SLOT_LEN;
        match &self.live_slots {
            Some(live) => live.get(slot as usize).map_or(0, |s| s.load(Acquire)),
            None => self
                .map
                .slice(pos, SLOT_LEN)
                .map_or(0, |b| u32::from_le_bytes(le(b, 0))),
        }
    }

    fn write_header(&self) {
        let m = self.meta();
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend([MAGIC, VERSION].iter().flat_map(|v| v.to_le_bytes()));
        h.extend([m.begin_ts, m.end_ts].iter().flat_map(|v| v.to_le_bytes()));
        h.extend(
            [m.begin_phy, m.end_phy]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        h.extend(
            [m.count, self.slots, self.capacity]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        h.resize(HEADER_LEN, 0);
        self.map.write_at(0, &h);
    }

    /// Appends one entry (writer only; the caller checked the file is not full), publishes it.
    ///
    /// # Errors
    /// Reserving disk blocks for the entry failed (`ENOSPC`); nothing was written.
    fn append(&self, hash: u32, phy_plus_one: u64, ts: i64) -> io::Result<()> {
        let n = self.count.load(Relaxed) + 1;
        self.map.reserve(self.entry_off(n) + ENTRY_LEN)?;
        if n == 1 {
            self.begin_ts.store(ts, Relaxed);
            self.end_ts.store(ts, Relaxed);
            self.begin_phy.store(phy_plus_one - 1, Relaxed);
        }
        let slot = hash % self.slots;
        let (prev, delta_secs) = (
            self.slot_head(slot),
            delta_secs(self.begin_ts.load(Relaxed), ts),
        );
        let entry = Entry {
            hash,
            phy_plus_one,
            delta_secs,
            prev,
        };
        self.map.write_at(self.entry_off(n), &entry.encode());
        self.map
            .write_at(HEADER_LEN + slot as usize * SLOT_LEN, &n.to_le_bytes());
        if let Some(head) = self.live_slots.as_ref().and_then(|l| l.get(slot as usize)) {
            head.store(n, Release);
        }
        self.end_ts.fetch_max(ts, Relaxed);
        self.end_phy.store(phy_plus_one - 1, Relaxed);
        self.count.store(n, Release);
        self.write_header();
        Ok(())
    }

    /// Pushes to `out` the phys of `hash` whose store second overlaps `[begin_ms, end_ms]`,
    /// skipping a phy equal to the one just pushed (a key replayed for the same record).
    fn collect(&self, hash: u32, begin_ms: i64, end_ms: i64, max: usize, out: &mut Vec<u64>) {
        let base = self.begin_ts.load(Relaxed);
        let mut cur = self.slot_head(hash % self.slots);
        while out.len() < max {
            let Some(e) = self.read_entry(cur) else { break };
            let t0 = base.saturating_add(i64::from(e.delta_secs) * SEC);
            let in_range = t0 <= end_ms && t0.saturating_add(SEC - 1) >= begin_ms;
            let phy = e.phy_plus_one.wrapping_sub(1);
            if e.hash == hash && e.phy_plus_one != 0 && in_range && out.last() != Some(&phy) {
                out.push(phy);
            }
            if e.prev >= cur {
                break;
            }
            cur = e.prev;
        }
    }

    /// Recovery of the active file (before it is shared): see the module doc.
    fn recover(&mut self, durable_phy: u64) -> Result<()> {
        let old = self.meta();
        let (mut kept, mut first_phy, mut last_phy, mut max_delta) = (0u32, 0u64, 0u64, 0u32);
        while kept < old.count {
            let e = self.read_entry(kept + 1).unwrap_or_default();
            let phy = e.phy_plus_one.wrapping_sub(1);
            if e.phy_plus_one == 0 || phy < last_phy || phy >= durable_phy {
                break;
            }
            first_phy = if kept == 0 { phy } else { first_phy };
            (last_phy, max_delta, kept) = (phy, max_delta.max(e.delta_secs), kept + 1);
        }
        // Zero the dropped tail, including stale entries written past the header's count, so that
        // a later header write-back can never make them look valid.
        let (mut dirty_end, mut zeros) = (old.count.max(kept), 0);
        for n in dirty_end.saturating_add(1)..=self.capacity {
            if zeros >= ZERO_RUN {
                break;
            }
            match self.read_entry(n) {
                Some(e) if e != Entry::default() => (dirty_end, zeros) = (n, 0),
                _ => zeros += 1,
            }
        }
        if dirty_end > kept {
            let len = (dirty_end - kept) as usize * ENTRY_LEN;
            let end = self.entry_off(kept + 1) + len;
            self.map.reserve(end).at(self.map.path())?;
            self.map.zero(self.entry_off(kept + 1), len);
        }
        // Rebuild the slot table from the surviving entries.
        let mut table = vec![0u32; self.slots as usize];
        for n in 1..=kept {
            let hash = self.read_entry(n).map_or(0, |e| e.hash);
            if let Some(head) = table.get_mut((hash % self.slots) as usize) {
                *head = n;
            }
        }
        let bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.map.write_at(HEADER_LEN, &bytes);
        self.live_slots = Some(table.into_iter().map(AtomicU32::new).collect());
        let keep = |v: i64| if kept == 0 { 0 } else { v };
        let end_ts = old
            .begin_ts
            .saturating_add(i64::from(max_delta) * SEC + SEC - 1);
        self.begin_ts.store(keep(old.begin_ts), Relaxed);
        self.end_ts.store(keep(end_ts), Relaxed);
        self.begin_phy.store(first_phy, Relaxed);
        self.end_phy.store(last_phy, Relaxed);
        self.count.store(kept, Relaxed);
        self.write_header();
        if kept < old.count {
            let file = self.map.path().display();
            tracing::info!(file = %file, kept, dropped = old.count - kept, "index file truncated");
        }
        self.map.flush_all().at(self.map.path())
    }
}

/// Writer-side state, guarded by `IndexStore::writer`.
struct Writer {
    config: IndexConfig,
    active: Option<Arc<IndexFile>>,
    next_seq: u64,
    last_phy_plus_one: u64,
    /// Files sealed since the last flush (flushed whole by the next flush).
    pending: Vec<Arc<MappedFile>>,
    /// The active file was created since the last flush (flush it whole, with metadata).
    active_fresh: bool,
    poisoned: bool,
}

/// The index files of one store directory. `Send + Sync`; see the module doc.
pub struct IndexStore {
    dir: PathBuf,
    files: RwLock<Vec<Arc<IndexFile>>>,
    writer: Mutex<Writer>,
    usage: DiskUsage,
}

impl fmt::Debug for IndexStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexStore")
            .field("dir", &self.dir)
            .field("files", &self.files.read().len())
            .finish_non_exhaustive()
    }
}

impl IndexStore {
    /// Opens (creating `dir` if missing) and recovers the index.
    ///
    /// Newest files that hold nothing durable (never initialised, empty, or `begin_phy >=
    /// durable_phy`) are deleted; the last remaining file is truncated at its first invalid entry
    /// (`phy_plus_one == 0` or phy decreasing) or first entry with `phy >= durable_phy`, and its
    /// slot table is rebuilt. Older files are trusted. Pass `u64::MAX` to keep every valid entry.
    ///
    /// # Errors
    /// I/O errors; [`Error::Corrupted`] for a file with a bad magic or a size that does not match
    /// its header; [`Error::FormatVersion`] for an unknown version.
    #[cfg(test)]
    pub fn open(dir: &Path, config: IndexConfig, durable_phy: u64) -> Result<Self> {
        Self::open_counted(dir, config, durable_phy, &DiskUsage::default())
    }

    /// [`IndexStore::open`], counting the index's disk blocks in `usage` (the store's).
    ///
    /// # Errors
    /// As [`IndexStore::open`].
    pub fn open_counted(
        dir: &Path,
        config: IndexConfig,
        durable_phy: u64,
        usage: &DiskUsage,
    ) -> Result<Self> {
        disk::create_dir_all(dir).at(dir)?;
        let config = IndexConfig {
            slots_per_file: config.slots_per_file.max(1),
            entries_per_file: config.entries_per_file.max(1),
        };
        let mut seqs = Vec::new();
        for dirent in std::fs::read_dir(dir).at(dir)? {
            let name = dirent.at(dir)?.file_name();
            let name = name.to_string_lossy();
            match name.parse::<u64>() {
                Ok(seq) if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) => {
                    seqs.push(seq);
                }
                _ => tracing::warn!(dir = %dir.display(), file = %name, "ignoring unknown file"),
            }
        }
        seqs.sort_unstable();
        let next_seq = seqs.last().map_or(1, |s| s.saturating_add(1));
        let (mut files, mut removed) = (Vec::new(), false);
        for seq in seqs {
            let path = file_path(dir, seq);
            match IndexFile::load(&path, seq, usage)? {
                Some(file) => files.push(file),
                None => {
                    tracing::warn!(file = %path.display(), "deleting uninitialised index file");
                    remove_file(&path)?;
                    removed = true;
                }
            }
        }
        while let Some(last) = files.last() {
            let count = last.count.load(Relaxed);
            if count > 0 && last.begin_phy.load(Relaxed) < durable_phy {
                break;
            }
            let path = last.map.path().to_path_buf();
            files.pop();
            tracing::info!(file = %path.display(), "deleting index file beyond the durable offset");
            remove_file(&path)?;
            removed = true;
        }
        if let Some(last) = files.last_mut() {
            last.recover(durable_phy)?;
        }
        if removed {
            sync_dir(dir).at(dir)?;
        }
        let files: Vec<Arc<IndexFile>> = files.into_iter().map(Arc::new).collect();
        let last_phy_plus_one = files
            .iter()
            .rev()
            .find(|f| f.count.load(Relaxed) > 0)
            .map_or(0, |f| f.end_phy.load(Relaxed).saturating_add(1));
        let writer = Writer {
            config,
            active: files.last().cloned(),
            next_seq: files.last().map_or(next_seq, |f| f.seq.saturating_add(1)),
            last_phy_plus_one,
            pending: Vec::new(),
            active_fresh: false,
            poisoned: false,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            files: RwLock::new(files),
            writer: Mutex::new(writer),
            usage: usage.clone(),
        })
    }

    /// Adds `key -> phy` at store time `store_ts_ms`.
    ///
    /// Must be called in non-decreasing phy order (one record may add several keys with the same
    /// phy); a put below the last indexed phy, or with `phy == u64::MAX`, is ignored, which makes
    /// replaying the CommitLog after recovery harmless.
    ///
    /// # Errors
    /// I/O errors creating the next file when the active one is full (the key is not indexed).
    pub fn put(&self, key: &[u8], phy: u64, store_ts_ms: i64) -> Result<()> {
        let mut w = self.writer.lock();
        let Some(phy_plus_one) = phy.checked_add(1) else {
            return Ok(());
        };
        if phy_plus_one < w.last_phy_plus_one {
            tracing::debug!(phy, "index put below the last indexed offset ignored");
            return Ok(());
        }
        let active = match &w.active {
            Some(file) if file.count.load(Relaxed) < file.capacity => Arc::clone(file),
            _ => self.roll(&mut w)?,
        };
        active
            .append(crc32c::crc32c(key), phy_plus_one, store_ts_ms)
            .at(active.map.path())?;
        w.last_phy_plus_one = phy_plus_one;
        Ok(())
    }

    /// Seals the active file and creates the next one.
    fn roll(&self, w: &mut Writer) -> Result<Arc<IndexFile>> {
        let fresh = Arc::new(IndexFile::create(
            &self.dir,
            w.next_seq,
            w.config,
            &self.usage,
        )?);
        sync_dir(&self.dir).at(&self.dir)?;
        let mut files = self.files.write();
        if let Some(old) = w.active.take() {
            if let Some(last) = files.last_mut().filter(|last| Arc::ptr_eq(last, &old)) {
                *last = Arc::new(old.sealed());
            }
            w.pending.push(Arc::clone(&old.map));
        }
        files.push(Arc::clone(&fresh));
        w.active = Some(Arc::clone(&fresh));
        w.next_seq = w.next_seq.saturating_add(1);
        w.active_fresh = true;
        Ok(fresh)
    }

    /// Candidate phy offsets for `key` stored in `[begin_ms, end_ms]` (inclusive, at whole-second
    /// granularity: the caller filters exactly), newest first, at most `max`. Files are searched
    /// newest first and skipped when their time range does not overlap; a phy equal to the one
    /// just returned (the same key put twice for a record) is returned once.
    pub fn query(&self, key: &[u8], begin_ms: i64, end_ms: i64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if max == 0 || begin_ms > end_ms {
            return out;
        }
        let hash = crc32c::crc32c(key);
        let files: Vec<Arc<IndexFile>> = self.files.read().clone();
        for file in files.iter().rev() {
            if out.len() >= max {
                break;
            }
            if file.count.load(Acquire) == 0 {
                continue;
            }
            let (fb, fe) = (file.begin_ts.load(Relaxed), file.end_ts.load(Relaxed));
            if fb <= end_ms && fe.saturating_add(SEC - 1) >= begin_ms {
                file.collect(hash, begin_ms, end_ms, max, &mut out);
            }
        }
        out
    }

    /// Msyncs everything written so far and returns the highest indexed phy + 1 (0 if empty): every
    /// entry with a smaller phy is durable. Call it between records, never between two keys of the
    /// same record, or the keys after the flush could be lost with the record counted as durable.
    ///
    /// # Errors
    /// The msync/fsync error; after one failure every later flush returns [`Error::Poisoned`]
    /// (puts and queries keep working, the durable offset no longer advances).
    pub fn flush(&self) -> Result<u64> {
        let mut w = self.writer.lock();
        if w.poisoned {
            return Err(Error::Poisoned("an index flush failed earlier".into()));
        }
        let result = Self::flush_locked(&mut w);
        w.poisoned = result.is_err();
        result
    }

    fn flush_locked(w: &mut Writer) -> Result<u64> {
        for map in &w.pending {
            map.flush_all().at(map.path())?;
        }
        w.pending.clear();
        if let Some(active) = &w.active {
            let map = &active.map;
            let used = active.entry_off(active.count.load(Relaxed) + 1);
            let result = if w.active_fresh {
                map.flush_all()
            } else {
                map.flush_range(0, used.min(map.len()))
            };
            result.at(map.path())?;
        }
        w.active_fresh = false;
        Ok(w.last_phy_plus_one)
    }

    /// Retention: deletes every file but the active one whose `end_phy < min_phy` and returns how
    /// many were deleted. Readers still holding such a file keep reading it until they finish.
    ///
    /// # Errors
    /// I/O errors unlinking a file or syncing the directory (the file is already out of the index).
    pub fn delete_below(&self, min_phy: u64) -> Result<usize> {
        let mut w = self.writer.lock();
        let doomed: Vec<Arc<IndexFile>> = {
            let mut files = self.files.write();
            let Some(active) = files.pop() else {
                return Ok(0);
            };
            let (doomed, kept) = files
                .drain(..)
                .partition(|f| f.end_phy.load(Relaxed) < min_phy);
            *files = kept;
            files.push(active);
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        w.pending
            .retain(|map| !doomed.iter().any(|f| Arc::ptr_eq(&f.map, map)));
        for file in &doomed {
            remove_file(file.map.path())?;
        }
        sync_dir(&self.dir).at(&self.dir)?;
        Ok(doomed.len())
    }

    /// Number of entries across all files.
    pub fn entry_count(&self) -> u64 {
        let files = self.files.read();
        files.iter().map(|f| u64::from(f.count.load(Acquire))).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
