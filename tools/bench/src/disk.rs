//! The yardstick of `bench store`: the raw sequential-write bandwidth and the sync latency of the
//! filesystem under the benchmark directory, measured with plain `write` + `fdatasync`, and the
//! filesystem that directory is on.
//!
//! Owns: two scratch files (`raw-seq-write.bench`, `raw-fsync.bench`) in the directory it is
//! given, created fresh and deleted when a measurement ends, also on error.
//!
//! Invariants:
//! - The bytes written are a non-repeating pseudo-random pattern (a backend that compresses or
//!   skips zeros cannot flatter the figure).
//! - Every sequential figure includes the final `fdatasync`: nothing is counted that is still
//!   only in the page cache. There are two shapes: write everything, then one `fdatasync` (the
//!   classic figure; write-back starts late), and the same with a second thread syncing every
//!   100 ms (write-back overlaps the writes, as under the store's flusher). The store is compared
//!   with the better one.
//! - The sync latency is that of a 4 KiB append to a new file: the data plus the metadata a
//!   growing file needs, like a CommitLog write into a fresh segment.
//!
//! Who calls it: [`super::store`] only, with no store case running.
//! Concurrency: blocking I/O on the caller's thread, plus one scoped syncing thread.
//!
//! Owns the raw-disk yardstick; must not use the store (it measures what is under it) nor
//! write outside the directory it is given.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Context;

use super::report::{histogram, Latency, SeqWrite};
use super::units::mb_per_sec;
use crate::error::Result;

/// Size of each sequential `write`.
pub const BLOCK: usize = 1 << 20;
/// Size of each synced append.
const SMALL: usize = 4096;
/// How often the second thread syncs during an overlapped sequential write.
pub const OVERLAP_SYNC_EVERY: Duration = Duration::from_millis(100);

/// Deletes its file when dropped, so that an error never leaves a GiB behind.
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, file })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fills `buf` with a xorshift pattern continuing from `state`.
pub fn fill_pattern(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Writes `total` bytes in [`BLOCK`] writes to a new file and `fdatasync`s it, timing both.
///
/// With `overlap`, a second thread `fdatasync`s the file every [`OVERLAP_SYNC_EVERY`] while the
/// writes go on, so write-back runs alongside the writes as it does under the store's flusher;
/// without, the one `fdatasync` at the end does all the write-back.
///
/// # Errors
/// I/O errors, with the file named.
pub fn seq_write(dir: &Path, total: u64, overlap: bool) -> Result<SeqWrite> {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ u64::from(overlap);
    let mut block = vec![0u8; BLOCK];
    fill_pattern(&mut block, &mut state);
    let blocks = total.div_ceil(BLOCK as u64).max(1);
    let mut seq = Scratch::create(dir, "raw-seq-write.bench")?;
    let syncer = seq
        .file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", seq.path.display()))?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|scope| {
        if overlap {
            scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(OVERLAP_SYNC_EVERY);
                    // An error here shows again in the final, checked fdatasync.
                    let _ = syncer.sync_data();
                }
            });
        }
        let result = write_blocks(&mut seq, &mut block, &mut state, blocks);
        done.store(true, Ordering::Release);
        result
    })?;
    seq.file
        .sync_data()
        .with_context(|| format!("fdatasync of {}", seq.path.display()))?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = blocks * BLOCK as u64;
    Ok(SeqWrite {
        bytes,
        secs,
        mb_per_sec: mb_per_sec(bytes, secs),
    })
}

fn write_blocks(seq: &mut Scratch, block: &mut [u8], state: &mut u64, blocks: u64) -> Result<()> {
    for _ in 0..blocks {
        // Change a few bytes per block: each block differs, without timing a 1 MiB fill.
        fill_pattern(&mut block[..64], state);
        seq.file
            .write_all(block)
            .with_context(|| format!("write to {}", seq.path.display()))?;
    }
    Ok(())
}

/// Appends 4 KiB + `fdatasync` to a new file for up to `time` (at most 2,000 times).
///
/// # Errors
/// I/O errors, with the file named.
pub fn sync_latency(dir: &Path, time: Duration) -> Result<Latency> {
    let mut state = 0x2545_F491_4F6C_DD1D;
    let mut small = Scratch::create(dir, "raw-fsync.bench")?;
    let mut hist = histogram()?;
    let mut page = vec![0u8; SMALL];
    fill_pattern(&mut page, &mut state);
    let until = Instant::now() + time;
    while Instant::now() < until && hist.len() < 2000 {
        fill_pattern(&mut page[..64], &mut state);
        let t = Instant::now();
        small
            .file
            .write_all(&page)
            .and_then(|()| small.file.sync_data())
            .with_context(|| format!("write + fdatasync of {}", small.path.display()))?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
    }
    Ok(Latency::from(&hist))
}

/// The canonical path of `dir` and the filesystem holding it (`ext4 on /dev/vda`).
pub fn location(dir: &Path) -> (String, String) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let filesystem = filesystem_of(&dir).unwrap_or_else(|| "unknown filesystem".into());
    (dir.display().to_string(), filesystem)
}

/// `"<type> on <device>"` of the mount holding `dir` (the longest matching mount point).
fn filesystem_of(dir: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{kind} on {dev}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("rg-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for overlap in [false, true] {
            let r = seq_write(&dir, 3 << 20, overlap).unwrap();
            assert_eq!(r.bytes, 3 << 20);
            assert!(r.mb_per_sec > 0.0);
        }
        assert!(
            sync_latency(&dir, Duration::from_millis(20))
                .unwrap()
                .samples
                > 0
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
        let (dir, filesystem) = location(Path::new("/"));
        assert_eq!(dir, "/");
        assert!(!filesystem.is_empty());
    }

    #[test]
    fn pattern_varies() {
        let mut s = 1;
        let mut a = [0u8; 16];
        fill_pattern(&mut a, &mut s);
        assert_ne!(a[..8], a[8..]);
    }
}
