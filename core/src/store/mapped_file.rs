//! One memory-mapped file of fixed size: the building block of CommitLog segments,
//! ConsumeQueue files and index files.
//!
//! Owns: the file handle, its `MmapRaw` mapping, the raw reads and writes into it and which
//! prefix of it has real disk blocks reserved. It knows nothing of what the bytes mean.
//! Creating, msyncing and fsyncing go through [`super::disk`] (and its `recorded!` hook, so the
//! power-loss tests see them).
//!
//! Invariants:
//! - A file has its full size from creation (its length never changes), but only a *reserved*
//!   prefix has disk blocks. A CommitLog segment is reserved whole ([`MappedFile::create`]). A
//!   *growing* file ([`MappedFile::create_growing`], ConsumeQueue and index files) starts with
//!   a small reserved prefix, the rest a hole, and the prefix doubles (up to the file size) as
//!   the writer asks for it with [`MappedFile::reserve`]. Writers reserve before they write, so
//!   writing into the mapping never hits a hole on a full disk (SIGBUS); a full disk surfaces as
//!   an `io::Error` from `create` or `reserve`. A near-empty queue costs a page, not its full
//!   file. Reserving never changes the file's size or bytes, so what a power cut leaves and
//!   what recovery reads is the same as with a fully preallocated file.
//! - The blocks of growing files are counted in a shared [`DiskUsage`] while their mapping
//!   lives (an unlinked file's blocks are freed only when its last mapping drops), so the
//!   store's disk limit sees them.
//! - Bytes are only ever written by one writer at a time (the caller holds its own lock), and a
//!   reader only reads a range after the writer has published it (the caller publishes positions
//!   with Release/Acquire atomics). Under that contract the raw-pointer accesses below never race.
//!
//! Concurrency: `MappedFile` is `Send + Sync`; it holds no locks. The mapping is unmapped when
//! the last `Arc` to it drops, so a reader holding an `Arc` may keep reading a file that
//! retention has already unlinked.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::MmapRaw;

use super::disk::{self, recorded};
#[cfg(test)]
use super::power_loss::Event;

/// Reservations of growing files are made in whole pages.
const PAGE: usize = 4096;

/// Bytes of disk reserved by the growing files of one store (ConsumeQueues and index), shared
/// by all of them; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage(Arc<AtomicU64>);

impl DiskUsage {
    /// The bytes reserved now.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }
    fn sub(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// A fixed-size file mapped read-write into memory.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    len: usize,
    /// Bytes from the start known to have disk blocks (the whole file unless growing).
    reserved: AtomicUsize,
    /// Where the reserved bytes of a growing file are counted.
    usage: Option<DiskUsage>,
    /// What this file added to `usage`.
    counted: AtomicU64,
}

impl MappedFile {
    /// Creates (or reuses, if it exists with the right size) and preallocates `path` to `len`
    /// bytes and maps it.
    ///
    /// # Errors
    /// Any I/O error, including `ENOSPC` from the preallocation.
    pub fn create(path: &Path, len: usize) -> io::Result<Self> {
        let file = disk::open_rw(path, true)?;
        preallocate(&file, path, 0, len as u64)?;
        Self::map(path.to_path_buf(), file, len)
    }

    /// Creates (or reuses) `path` with size `len`, reserves disk blocks for its first
    /// `initial` bytes only (rounded up to a page) and maps it; the rest is reserved as the
    /// writer asks ([`MappedFile::reserve`]). Reserved bytes are counted in `usage`.
    ///
    /// # Errors
    /// Any I/O error, including `ENOSPC` from the reservation.
    pub fn create_growing(
        path: &Path,
        len: usize,
        initial: usize,
        usage: &DiskUsage,
    ) -> io::Result<Self> {
        let file = disk::open_rw(path, true)?;
        if file.metadata()?.len() != len as u64 {
            file.set_len(len as u64)?;
        }
        let f = Self::map(path.to_path_buf(), file, len)?.growing(usage, 0);
        f.reserve(initial)?;
        Ok(f)
    }

    /// Opens an existing growing file (see [`MappedFile::create_growing`]): the blocks it
    /// holds now are counted in `usage`, and the writer reserves again before it writes
    /// (reserving what is already allocated costs nothing).
    ///
    /// # Errors
    /// As [`MappedFile::open`].
    pub fn open_growing(path: &Path, usage: &DiskUsage) -> io::Result<Self> {
        let f = Self::open(path)?;
        let held = {
            use std::os::unix::fs::MetadataExt;
            f.file.metadata()?.blocks().saturating_mul(512)
        };
        let held = held.min(f.len as u64);
        Ok(f.growing(usage, held))
    }

    fn growing(mut self, usage: &DiskUsage, held: u64) -> Self {
        usage.add(held);
        self.reserved = AtomicUsize::new(0);
        self.usage = Some(usage.clone());
        self.counted = AtomicU64::new(held);
        self
    }

    /// Makes sure the first `upto` bytes have disk blocks, growing the reserved prefix to at
    /// least twice its size (at most the file's size). Writers of growing files call it before
    /// writing past what they reserved. One writer at a time (the caller's contract, as for
    /// [`MappedFile::write_at`]).
    ///
    /// # Errors
    /// `ENOSPC` and other errors of `fallocate`; nothing was reserved then.
    pub fn reserve(&self, upto: usize) -> io::Result<()> {
        let have = self.reserved.load(Ordering::Acquire);
        if upto <= have {
            return Ok(());
        }
        let want = upto.max(have.saturating_mul(2)).max(PAGE);
        let want = want.div_ceil(PAGE).saturating_mul(PAGE).min(self.len);
        preallocate(&self.file, &self.path, 0, want as u64)?;
        self.reserved.store(want, Ordering::Release);
        if let Some(usage) = &self.usage {
            let before = self.counted.fetch_max(want as u64, Ordering::AcqRel);
            usage.add((want as u64).saturating_sub(before));
        }
        Ok(())
    }

    /// Bytes from the start that have disk blocks reserved by this mapping.
    #[cfg(test)]
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Opens an existing file and maps its whole length.
    ///
    /// # Errors
    /// Any I/O error; `InvalidData` if the file is empty.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = disk::open_rw(path, false)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty mapped file",
            ));
        }
        Self::map(path.to_path_buf(), file, len)
    }

    fn map(path: PathBuf, file: File, len: usize) -> io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Self {
            path,
            file,
            map,
            len,
            reserved: AtomicUsize::new(len),
            usage: None,
            counted: AtomicU64::new(0),
        })
    }

    /// The same mapping under a new path (after the file was renamed).
    #[must_use]
    pub fn renamed(mut self, path: PathBuf) -> Self {
        self.path = path;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies `data` into the mapping at `pos`.
    ///
    /// The caller must be the only writer of this range, and no reader may be reading it (it has
    /// not been published yet, or the store is recovering and has no readers).
    ///
    /// # Panics
    /// If `pos + data.len()` exceeds the file; callers check bounds first.
    pub fn write_at(&self, pos: usize, data: &[u8]) {
        let end = pos.checked_add(data.len()).filter(|end| *end <= self.len);
        assert!(end.is_some(), "write past the end of a mapped file");
        // SAFETY: the range is inside the mapping (checked above); by the type's contract no one
        // else reads or writes it concurrently.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(pos),
                data.len(),
            );
        }
    }

    /// Fills `len` bytes at `pos` with zeros. Same contract as [`MappedFile::write_at`].
    ///
    /// # Panics
    /// If the range exceeds the file.
    pub fn zero(&self, pos: usize, len: usize) {
        let end = pos.checked_add(len).filter(|end| *end <= self.len);
        assert!(end.is_some(), "zero past the end of a mapped file");
        // SAFETY: as in `write_at`.
        unsafe {
            std::ptr::write_bytes(self.map.as_mut_ptr().add(pos), 0, len);
        }
    }

    /// Zeroes every non-zero 4 KiB page from `from` to the end of the file and msyncs what
    /// changed, so nothing written there before can reappear. Returns whether anything was
    /// non-zero. Same contract as [`MappedFile::write_at`].
    ///
    /// # Errors
    /// The error of `msync`.
    pub fn scrub_from(&self, from: usize) -> io::Result<bool> {
        const PAGE: usize = 4096;
        let mut dirty: Option<(usize, usize)> = None;
        let mut at = from;
        while at < self.len {
            let end = ((at / PAGE + 1) * PAGE).min(self.len);
            if self
                .slice(at, end - at)
                .is_some_and(|s| s.iter().any(|b| *b != 0))
            {
                self.zero(at, end - at);
                dirty = Some(dirty.map_or((at, end), |(a, _)| (a, end)));
            }
            at = end;
        }
        match dirty {
            Some((a, b)) => self.flush_range(a, b - a).map(|()| true),
            None => Ok(false),
        }
    }

    /// Borrows `len` bytes at `pos`, or `None` if the range is outside the file.
    ///
    /// The caller must only read ranges that were published to it (see the module doc).
    pub fn slice(&self, pos: usize, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); by contract nobody writes the range while it is borrowed.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) })
    }

    /// Makes `len` bytes at `pos` durable (msync of the covering pages).
    ///
    /// # Errors
    /// The error of `msync`; the caller must treat it as fatal for durability.
    pub fn flush_range(&self, pos: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        recorded!(
            Event::SyncRange(&self.path, pos as u64, len as u64),
            self.map.flush_range(pos, len)
        )
    }

    /// Makes the whole file durable, including its metadata.
    ///
    /// # Errors
    /// The error of `msync` or `fsync`.
    pub fn flush_all(&self) -> io::Result<()> {
        self.map.flush()?;
        self.sync_all()
    }

    /// Makes the file's size and everything written to it durable (`fsync`), e.g. a fresh
    /// preallocated file before it is given its final name.
    ///
    /// # Errors
    /// The error of `fsync`.
    pub fn sync_all(&self) -> io::Result<()> {
        disk::sync_file(&self.file, &self.path)
    }

    /// Turns off read-around for the mapping (a hint; errors are ignored). Pages then stay
    /// 4 KiB, so a write dirties (and a later `msync` writes back) only the page it touched
    /// instead of a whole large folio: what `SYNC_FLUSH` group commits need.
    pub fn advise_random(&self) {
        let _ = self.map.advise(memmap2::Advice::Random);
    }

    /// Maps the whole file in ahead of use, read-only, in 64 MiB steps, so the writer does not
    /// take a page fault per fresh page (a hint; stops at the first error, e.g. an old kernel).
    pub fn prefault(&self) {
        const STEP: usize = 64 << 20;
        let mut at = 0;
        while at < self.len {
            let n = STEP.min(self.len - at);
            if self
                .map
                .advise_range(memmap2::Advice::PopulateRead, at, n)
                .is_err()
            {
                return;
            }
            at += n;
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let Some(usage) = &self.usage {
            usage.sub(self.counted.load(Ordering::Acquire));
        }
    }
}

/// Reserves real disk blocks for bytes `from..len` of `file` (and extends it to `len` if it is
/// shorter).
fn preallocate(file: &File, path: &Path, from: u64, len: u64) -> io::Result<()> {
    let n = len.saturating_sub(from);
    if n == 0 {
        return Ok(());
    }
    match disk::allocate(file, path, from, n) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate (rare: some FUSE or network mounts) fall back to a
        // sparse file; the disk watermark is then the only protection against SIGBUS.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
            if file.metadata()?.len() < len {
                file.set_len(len)?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_flush_reopen() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let f = MappedFile::create(&path, 4096)?;
        f.write_at(10, b"hello");
        assert_eq!(f.slice(10, 5), Some(&b"hello"[..]));
        assert_eq!(f.slice(4095, 2), None);
        f.flush_range(0, 4096)?;
        drop(f);
        let f = MappedFile::open(&path)?;
        assert_eq!(f.len(), 4096);
        assert_eq!(f.slice(10, 5), Some(&b"hello"[..]));
        f.zero(10, 5);
        assert_eq!(f.slice(10, 5), Some(&[0u8; 5][..]));
        Ok(())
    }

    fn blocks(path: &Path) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::metadata(path)?.blocks() * 512)
    }

    #[test]
    fn a_growing_file_reserves_by_doubling_and_counts_its_blocks() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("g");
        let usage = DiskUsage::default();
        let len = 6_000_000;
        let f = MappedFile::create_growing(&path, len, 100, &usage)?;
        assert_eq!(f.len(), len, "the file has its full size from the start");
        assert_eq!(f.reserved(), PAGE);
        assert!(blocks(&path)? <= 2 * PAGE as u64, "{}", blocks(&path)?);
        assert_eq!(usage.bytes(), PAGE as u64);
        f.reserve(PAGE + 1)?;
        assert_eq!(f.reserved(), 2 * PAGE, "doubles");
        f.reserve(100 * PAGE)?;
        assert_eq!(f.reserved(), 100 * PAGE, "or takes what is asked for");
        f.reserve(len)?;
        assert_eq!(f.reserved(), len, "never past the file");
        assert_eq!(usage.bytes(), len as u64);
        f.write_at(len - 5, b"hello");
        drop(f);
        assert_eq!(usage.bytes(), 0, "a dropped mapping is no longer counted");
        let f = MappedFile::open_growing(&path, &usage)?;
        assert!(
            usage.bytes() >= len as u64 - PAGE as u64,
            "{}",
            usage.bytes()
        );
        assert_eq!(f.slice(len - 5, 5), Some(&b"hello"[..]));
        drop(f);
        assert_eq!(usage.bytes(), 0);
        Ok(())
    }
}
