//! The directories of a benchmark run: the run's root (`--dir`, or a fresh `./data/bench-<pid>`)
//! and one fresh subdirectory per case.
//!
//! Owns: their creation and deletion. Invariants: a case never sees another case's data (a case
//! directory that already exists is an error); a case directory is deleted and the filesystem
//! synced when the case ends, also on error, so that the next case does not pay for the
//! deletion; a root the run created is deleted at the end unless `--keep`; a directory given
//! with `--dir` is never deleted, only what the run put into it.
//!
//! Who calls it: every `bench` subcommand. Concurrency: none.
//!
//! Owns the benchmark directories; must not delete anything it did not create (a `--dir`
//! given by the user is kept, only the run's own entries in it are removed).

use std::path::PathBuf;

use crate::error::Context;
use crate::error::{bail, Result};

/// The run's directory; deleted on drop if this run created it and `--keep` was not given.
pub struct BenchDir {
    /// The directory.
    pub path: PathBuf,
    remove: bool,
}

impl BenchDir {
    /// The directory given with `--dir` (created if missing), or a fresh `./data/bench-<pid>`.
    ///
    /// # Errors
    /// A default directory that already exists; one that cannot be created.
    pub fn new(dir: Option<PathBuf>, keep: bool) -> Result<Self> {
        let (path, created) = match dir {
            Some(d) => (d.clone(), !d.exists()),
            None => {
                let d = PathBuf::from("data").join(format!("bench-{}", std::process::id()));
                if d.exists() {
                    bail!("{} already exists; pass --dir", d.display());
                }
                (d, true)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            remove: created && !keep,
        })
    }

    /// A fresh subdirectory for one case.
    ///
    /// # Errors
    /// The subdirectory exists already.
    pub fn case(&self, name: &str, keep: bool) -> Result<CaseDir> {
        let path = self.path.join(name);
        if path.exists() {
            bail!(
                "{} already exists (left by an earlier run?); remove it or pick another --dir",
                path.display()
            );
        }
        Ok(CaseDir { path, keep })
    }
}

/// One case's directory; deleted on drop (after the case, or on its error) unless `--keep`,
/// followed by a `syncfs` so that the next case does not pay for the deletion.
pub struct CaseDir {
    /// The directory (not created yet: the broker creates it).
    pub path: PathBuf,
    keep: bool,
}

impl Drop for CaseDir {
    fn drop(&mut self) {
        if self.keep || !self.path.exists() {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
        // Let the filesystem finish the deletion (and its discards) now, not during the next
        // case's fsyncs.
        if let Some(parent) = self.path.parent() {
            let synced = std::fs::File::open(parent).and_then(|d| Ok(rustix::fs::syncfs(&d)?));
            if let Err(e) = synced {
                eprintln!("warning: cannot sync {}: {e}", parent.display());
            }
        }
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
