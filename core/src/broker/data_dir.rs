//! The data directory is private to the broker: it holds the users' secret keys (the KV store,
//! `auth.*`), the receipt key and every message, so it is created with mode 0700, and an
//! existing one that the group or others can enter is narrowed to 0700 at start, with a
//! warning saying so (files inside keep their modes; without access to the directory nobody
//! else reaches them).
//!
//! Called once by `Broker::open` before the store opens. Unix only; elsewhere it only creates
//! the directory.

use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and its parents) private, or narrows an existing one to 0700.
///
/// # Errors
/// [`Error::Io`] when it cannot be created or its mode read or changed.
pub(crate) fn make_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::from(crate::store::Error::io(dir, e)))?;
        }
        let mode = std::fs::metadata(dir)
            .map_err(|e| Error::from(crate::store::Error::io(dir, e)))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::from(crate::store::Error::io(dir, e)))?;
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{:o}", mode & 0o777),
                "the data directory was open to other users; narrowed to 0700 (it holds secrets)"
            );
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| Error::from(crate::store::Error::io(dir, e)))?;
    Ok(())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_0700_and_an_open_one_is_narrowed() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b/data");
        make_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }
}
