//! The API's SQLite files are its users' password hashes and data: readable by
//! their owner only, whatever the umask. The data directory is made 0700 and the
//! database 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files
//! the database file's permissions); one left open to others by an older Warden is
//! tightened, and the log says so.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) 0700, and takes the group's and others'
/// permissions from it and the files in it.
///
/// # Errors
/// When it cannot be created.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    tighten(dir);
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            tighten(&entry.path());
        }
    }
    Ok(())
}

/// Opens `path` for writing, creating it 0600 if missing; an existing file open to
/// others is tightened.
///
/// # Errors
/// When it cannot be opened or created.
pub fn open_file(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
    tighten(path);
    Ok(file)
}

/// Clears the group and other permission bits of `path` (not following a link).
fn tighten(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let from = meta.permissions().mode() & 0o7777;
    let to = from & 0o700;
    if meta.file_type().is_symlink() || from == to {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(to)) {
        Ok(()) => tracing::warn!(
            "{} was open to other users: tightened it from {from:o} to {to:o}",
            path.display()
        ),
        Err(error) => tracing::warn!(
            path = %path.display(), %error,
            "cannot take the group's and others' permissions from it; do it by hand (chmod go-rwx)"
        ),
    }
}
