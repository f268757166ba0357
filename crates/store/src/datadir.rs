//! The data directory of `warden up`: readable by its owner only, and held by one
//! `warden up` at a time ([`Lock`]).
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

/// The name of the lock file in the data dir.
pub const LOCK_FILE: &str = "lock";

/// Who holds a data dir: written into its lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// When it took the lock (unix ms).
    pub started_ms: i64,
    /// What it is: `warden up`.
    pub what: String,
    /// Where to find it, e.g. `proxy 127.0.0.1:8080, console 127.0.0.1:8081`.
    pub details: String,
}

/// The data dir is held by another process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("the data dir {} is in use by {}; stop it or pass --data-dir", dir.display(), describe(holder.as_ref()))]
    Busy {
        /// The data dir.
        dir: PathBuf,
        /// Who, as its lock file says (unknown if it had not written it yet).
        holder: Option<Holder>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the data dir {}: {source}", dir.display())]
    Io {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn describe(holder: Option<&Holder>) -> String {
    match holder {
        None => "another process (its lock file does not say which yet)".to_owned(),
        Some(h) => {
            let ago = crate::now_ms().saturating_sub(h.started_ms).max(0) / 1000;
            let ago = match ago {
                0..60 => format!("{ago} s"),
                60..3600 => format!("{} min", ago / 60),
                3600..86400 => format!("{} h {} min", ago / 3600, ago % 3600 / 60),
                _ => format!("{} days", ago / 86400),
            };
            let details = if h.details.is_empty() {
                String::new()
            } else {
                format!(", {}", h.details)
            };
            format!("{} (pid {}, started {ago} ago{details})", h.what, h.pid)
        }
    }
}

/// An exclusive hold on a data dir, released when dropped or when the process ends
/// however it ends (an advisory `flock`: kill -9 leaves no stale lock).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes `dir`'s lock at once, writing this process's id, `what` it is and
    /// `details` (where to find it) in it for whoever tries next; fails with
    /// [`LockError::Busy`] naming the holder. The file is closed on exec, so child
    /// processes never keep the lock.
    ///
    /// # Errors
    /// [`LockError::Busy`] when another process holds it, [`LockError::Io`] when
    /// the lock file cannot be opened.
    pub fn acquire(dir: &Path, what: &str, details: &str) -> Result<Self, LockError> {
        use std::io::{Read, Seek, Write};
        let io = |source: io::Error| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes who it is right after locking: give it a moment.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                let holder = loop {
                    let mut text = String::new();
                    let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
                    let holder = read
                        .ok()
                        .and_then(|_| serde_json::from_str::<Holder>(text.trim()).ok());
                    if holder.is_some() || std::time::Instant::now() >= deadline {
                        break holder;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                };
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io(error)),
        }
        let holder = Holder {
            pid: std::process::id(),
            started_ms: crate::now_ms(),
            what: what.to_owned(),
            details: details.to_owned(),
        };
        let text = serde_json::to_string(&holder).map_err(|e| io(e.into()))?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
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

    #[test]
    fn one_holder_at_a_time_and_the_next_one_is_told_who() {
        let root = tempfile::tempdir().unwrap();
        let lock = Lock::acquire(root.path(), "warden up", "console 127.0.0.1:1").unwrap();
        assert_eq!(mode(&root.path().join(LOCK_FILE)), 0o600);
        // flock locks belong to the open file: a second open in this process
        // conflicts like another process would.
        let error = Lock::acquire(root.path(), "another", "").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "is in use by warden up (pid {}, started 0 s ago, console 127.0.0.1:1); \
                 stop it or pass --data-dir",
                std::process::id()
            )),
            "{text}"
        );
        drop(lock);
        let again = Lock::acquire(root.path(), "warden up", "console 127.0.0.1:2").unwrap();
        let written = std::fs::read_to_string(root.path().join(LOCK_FILE)).unwrap();
        assert!(
            written.contains("127.0.0.1:2") && !written.contains("127.0.0.1:1"),
            "{written}"
        );
        drop(again);
    }
}
