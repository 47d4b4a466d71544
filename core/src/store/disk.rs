//! The store's filesystem calls that decide what a power cut leaves behind: creating, renaming
//! and removing files and directories, and syncing files and directories.
//!
//! Owns: only the calls. Every such call of the store goes through here, and the msyncs of
//! mapped files go through [`super::mapped_file`] with the same [`recorded!`] hook, so that in
//! core's unit tests the power-loss recorder (`power_loss.rs`, T1c) sees each one, in order.
//! Outside `cfg(test)` the hook expands to the bare call: it costs nothing in other builds.
//! Writes into mapped files and into open files need no hook (the recorder reads what a file
//! holds when it needs it); only what makes bytes or names durable does.
//!
//! What callers may rely on (POSIX, not one filesystem's journal ordering):
//! - [`create_dir_all`] fsyncs the parent of every directory it creates, so a directory never
//!   vanishes in a power cut once a file inside it was synced and named durably.
//! - A create, rename or remove is durable only after [`sync_dir`] of its directory; the data
//!   and size of a file only after [`sync_file`] (or an msync of the mapped range, which on
//!   Linux has `fdatasync` semantics for that range: data and size).
//!
//! Must not touch: anything outside the store's data directory; file contents.
//!
//! Concurrency: stateless functions; callers hold whatever lock their own invariants need.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Runs the filesystem call `$op` (an `io::Result`); in core's unit tests it first reports
/// `$event` (a `power_loss::Event`) to the power-loss recorder of the directory, if any. The
/// event expression is not compiled outside tests.
macro_rules! recorded {
    ($event:expr, $op:expr) => {{
        #[cfg(test)]
        let result = $crate::store::power_loss::around($event, || $op);
        #[cfg(not(test))]
        let result = $op;
        result
    }};
}
pub(crate) use recorded;

#[cfg(test)]
use super::power_loss::Event;

/// The directory a path's entry lives in (`.` for a bare relative name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its missing ancestors, each one durably (its parent is fsynced after it
/// was created).
///
/// # Errors
/// The error of `mkdir` or of syncing a parent.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dir);
    if parent != dir {
        create_dir_all(parent)?;
    }
    match recorded!(Event::Mkdir(dir), std::fs::create_dir(dir)) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for reading and writing; with `create`, creates it if missing (the new name is
/// durable once its directory is synced).
///
/// # Errors
/// The error of `open`.
pub(crate) fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if !create {
        return options.open(path);
    }
    options.create(true).truncate(false);
    recorded!(Event::Create(path), options.open(path))
}

/// Creates `path` empty for writing, truncating it if it exists (`File::create`).
///
/// # Errors
/// The error of `open`.
pub(crate) fn create_truncated(path: &Path) -> io::Result<File> {
    recorded!(Event::Create(path), File::create(path))
}

/// Makes the data and metadata of `file` (open at `path`) durable (`fsync`).
///
/// # Errors
/// The error of `fsync`.
pub(crate) fn sync_file(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(not(test))]
    let _ = path;
    recorded!(Event::SyncFile(path), file.sync_all())
}

/// Renames `from` to `to` (same directory), replacing `to`.
///
/// # Errors
/// The error of `rename`.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    recorded!(Event::Rename(from, to), std::fs::rename(from, to))
}

/// Removes the file `path`.
///
/// # Errors
/// The error of `unlink`.
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    recorded!(Event::Remove(path), std::fs::remove_file(path))
}

/// Removes the directory `path` with everything in it.
///
/// # Errors
/// The error of the first failing removal.
pub(crate) fn remove_dir_all(path: &Path) -> io::Result<()> {
    recorded!(Event::RemoveDirAll(path), std::fs::remove_dir_all(path))
}

/// Reserves disk blocks for bytes `from..from + len` of `file` (open at `path`), extending it
/// if it is shorter (`fallocate`). Not a durability event (the recorder does not see it); it is
/// here as the seam where tests make the disk full ([`inject_enospc`]).
///
/// # Errors
/// The error of `fallocate` (`ENOSPC` on a full disk, `EOPNOTSUPP` where unsupported).
pub(crate) fn allocate(file: &File, path: &Path, from: u64, len: u64) -> io::Result<()> {
    #[cfg(test)]
    if enospc::injected(path) {
        return Err(rustix::io::Errno::NOSPC.into());
    }
    #[cfg(not(test))]
    let _ = path;
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, len).map_err(Into::into)
}

/// Fsyncs a directory so that a create, rename or unlink inside it is durable.
///
/// # Errors
/// The error of `open` or `fsync`.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    recorded!(Event::SyncDir(dir), File::open(dir)?.sync_all())
}

/// Tests only: from now on (until called with `false`), reserving disk blocks for any file
/// under `dir` fails with `ENOSPC`, as on a full disk.
#[cfg(test)]
pub(crate) fn inject_enospc(dir: &Path, on: bool) {
    enospc::set(dir, on);
}

#[cfg(test)]
mod enospc {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static FULL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(super) fn set(dir: &Path, on: bool) {
        let mut full = FULL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        full.retain(|d| d != dir);
        if on {
            full.push(dir.to_path_buf());
        }
    }

    pub(super) fn injected(path: &Path) -> bool {
        let full = FULL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        full.iter().any(|d| path.starts_with(d))
    }
}
