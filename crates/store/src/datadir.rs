//! The data directory of `warden up`: readable by its owner only.
//!
//! It holds webhook signing secrets, subscribers' addresses, the admin token and
//! the API's users, so every directory Warden makes in it is 0700 and every file
//! 0600 (a stored release binary 0500), whatever the umask. SQLite files are made
//! 0600 before SQLite opens them: SQLite gives a database's `-wal` and `-shm` files
//! the database file's own permissions. A data dir made by an older Warden, or by
//! hand, is tightened when it is opened, and the log says what was changed.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The permissions of a directory Warden makes.
pub const DIR_MODE: u32 = 0o700;
/// The permissions of a file Warden makes.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and any missing parent) owner-only, then takes away what the
/// group and others may do with it and with everything under it. Returns what was
/// tightened (also logged); an entry that cannot be tightened is logged, not fatal.
///
/// # Errors
/// When `dir` cannot be created or is not a directory.
pub fn prepare(dir: &Path) -> io::Result<Vec<Tightened>> {
    create_dir(dir)?;
    let tightened = tighten(dir);
    if !tightened.is_empty() {
        let listed: Vec<String> = tightened.iter().take(10).map(ToString::to_string).collect();
        let more = tightened.len().saturating_sub(listed.len());
        tracing::warn!(
            data_dir = %dir.display(),
            "the data dir was open to other users: tightened {} entries ({}{})",
            tightened.len(),
            listed.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        );
    }
    Ok(tightened)
}

/// Creates `dir` and its missing parents with [`DIR_MODE`]; an existing directory
/// is left as it is.
///
/// # Errors
/// When it cannot be created, or exists and is not a directory.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))
}

/// Creates `path` empty with [`FILE_MODE`] unless it exists, so that whatever
/// opens it next (SQLite) finds it owner-only; an existing file open to others is
/// tightened.
///
/// # Errors
/// When it cannot be created or read.
pub fn create_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
    if let Some(t) = tighten_one(path) {
        tracing::warn!(
            "{} was open to other users: tightened it to {:o}",
            t.path.display(),
            t.to
        );
    }
    Ok(())
}

/// One entry whose permissions were taken from the group and others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its permission bits before.
    pub from: u32,
    /// And after.
    pub to: u32,
}

impl std::fmt::Display for Tightened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:o} → {:o}", self.path.display(), self.from, self.to)
    }
}

/// Clears the group's and others' permission bits of `root` and everything under
/// it. Symbolic links are neither changed nor followed.
#[must_use]
pub fn tighten(root: &Path) -> Vec<Tightened> {
    let mut done = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        done.extend(tighten_one(&path));
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => pending.extend(entries.filter_map(Result::ok).map(|e| e.path())),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot list a directory of the data dir to check its permissions");
                }
            }
        }
    }
    done.sort_by(|a, b| a.path.cmp(&b.path));
    done
}

fn tighten_one(path: &Path) -> Option<Tightened> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    let from = meta.permissions().mode() & 0o7777;
    // Group and other bits, and setuid/setgid/sticky: none belongs in the data dir.
    let to = from & 0o700;
    if from == to {
        return None;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(to)) {
        Ok(()) => Some(Tightened {
            path: path.to_path_buf(),
            from,
            to,
        }),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot take the group's and others' permissions from a file of the data dir; do it by hand (chmod go-rwx)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_loose_tree_is_tightened_and_reported_and_a_tight_one_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("api")).unwrap();
        std::fs::write(dir.join("control.db"), "x").unwrap();
        std::fs::write(dir.join("api/api.sqlite3"), "x").unwrap();
        std::fs::write(root.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join("link")).unwrap();
        for (path, m) in [
            (dir.clone(), 0o755),
            (dir.join("api"), 0o775),
            (dir.join("control.db"), 0o644),
            (dir.join("api/api.sqlite3"), 0o666),
            (root.path().join("outside"), 0o644),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let done = prepare(&dir).unwrap();
        let paths: Vec<&Path> = done.iter().map(|t| t.path.as_path()).collect();
        assert_eq!(paths.len(), 4, "{done:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("api")), 0o700);
        assert_eq!(mode(&dir.join("control.db")), 0o600);
        assert_eq!(mode(&dir.join("api/api.sqlite3")), 0o600);
        assert_eq!(
            mode(&root.path().join("outside")),
            0o644,
            "a link's target outside the data dir is not touched"
        );
        assert!(
            done.iter()
                .any(|t| t.to_string().ends_with("control.db 644 → 600"))
        );
        assert!(prepare(&dir).unwrap().is_empty());
    }

    #[test]
    fn made_owner_only_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir) & 0o077, 0);
        assert_eq!(mode(&root.path().join("a")) & 0o077, 0);
        let file = dir.join("f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, "kept").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
    }
}
