//! The store's error type: what can go wrong below the `Broker`, with enough context (path,
//! offset) for an operator to act on it.
//!
//! Request errors (`MessageTooLarge`, `DiskFull`) are separated from faults that poison the
//! store (`Poisoned` after a failed fsync): a poisoned store refuses every later write until it
//! is restarted and recovered, it never retries an fsync and treats that as durability.

use std::io;
use std::path::PathBuf;

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a file of the store.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record or file failed its checks (CRC, bounds, magic).
    #[error("corrupted data in {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte offset (physical for the CommitLog, within the file otherwise).
        offset: u64,
        /// What check failed.
        reason: &'static str,
    },
    /// A file written by an unknown format version.
    #[error("{path} has format version {found}, this build reads version {expected}")]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// A previous flush failed; the store accepts no more writes until restarted.
    #[error("store is read-only after a failed flush: {0}")]
    Poisoned(String),
    /// The disk-use watermark or a preallocation failure refuses new writes.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// A record larger than a segment (or the configured maximum).
    #[error("record of {size} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The store is shutting down.
    #[error("store is shut down")]
    Closed,
    /// The store follows a master (a slave's copy): only replicated records are appended.
    #[error("this store is a slave's copy: it takes only what its master replicates")]
    Follower,
    /// Stored records cannot be made readable: the dispatcher fails to follow the CommitLog.
    #[error("stored records are not readable yet: dispatch fails: {0}")]
    DispatchFailed(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the error means the disk (or the configured limit) has no room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::DiskFull(_) => true,
            Self::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
            }
            _ => false,
        }
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`] with `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
