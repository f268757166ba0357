//! The release registry: `warden release add` and `warden release list`.
//!
//! A release is recorded once and never changes: its binary, stored in the data dir
//! under its SHA-256 (`releases/<sha256>/warden`), the build identity the binary
//! reports (`warden build-info`: version, git commit, the SHA-256 of the Cargo.lock
//! it was built with), the SHA-256 and package list of the Cargo.lock recorded with
//! it, and the extra arguments its instances run with. The dependency list is what a
//! postmortem diffs between the last good and a bad release to name suspects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use warden_store::{NewEvent, Release, Store};

/// What `warden release add` records.
#[derive(Debug, Clone)]
pub struct NewRelease {
    /// The `warden` binary to record.
    pub bin: PathBuf,
    /// Its name; default `VERSION-COMMIT7`.
    pub name: Option<String>,
    /// The Cargo.lock to record with it.
    pub lockfile: PathBuf,
    /// Extra arguments for its instances.
    pub args: Vec<String>,
}

/// What a binary says about itself (`warden build-info`).
#[derive(Debug, Clone, Deserialize)]
struct BuildInfo {
    version: String,
    git_commit: String,
    lockfile_sha256: String,
}

/// Records `new` in `store`, copying its binary under `data_dir/releases/`.
/// Returns the release and, when the lockfile differs from the one the binary was
/// built with, a warning to show.
pub fn add(
    store: &Store,
    data_dir: &Path,
    new: &NewRelease,
) -> anyhow::Result<(Release, Option<String>)> {
    let binary = std::fs::read(&new.bin)
        .with_context(|| format!("cannot read the binary {}", new.bin.display()))?;
    let binary_sha256 = hex::encode(Sha256::digest(&binary));
    let build = build_info(&new.bin)?;
    let lock_bytes = std::fs::read(&new.lockfile)
        .with_context(|| format!("cannot read the lockfile {}", new.lockfile.display()))?;
    let lockfile_sha256 = hex::encode(Sha256::digest(&lock_bytes));
    let lock = warden_audit::lockdiff::load(&new.lockfile)?;
    let mut dependencies: Vec<(String, String)> = lock
        .packages
        .iter()
        .map(|p| (p.name.as_str().to_owned(), p.version.to_string()))
        .collect();
    dependencies.sort();
    let name = new.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            build.version,
            build.git_commit.chars().take(7).collect::<String>()
        )
    });
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)),
        "release name {name:?}: use letters, digits and . _ - + only"
    );
    let stored = store_binary(data_dir, &binary_sha256, &binary)?;
    let release = Release {
        name,
        added_ms: warden_store::now_ms(),
        version: build.version,
        git_commit: build.git_commit,
        build_lockfile_sha256: build.lockfile_sha256,
        lockfile_sha256,
        binary_sha256,
        binary_path: stored.display().to_string(),
        args: new.args.clone(),
        dependencies,
    };
    store.add_release(&release)?;
    let event = NewEvent {
        kind: "release.added".to_owned(),
        release: Some(release.name.clone()),
        payload: serde_json::json!({
            "summary": format!("release {} added", release.name),
            "binary_sha256": release.binary_sha256,
            "lockfile_sha256": release.lockfile_sha256,
            "args": release.args,
        }),
    };
    store.append_event(&event)?;
    let warning = (release.lockfile_sha256 != release.build_lockfile_sha256).then(|| {
        format!(
            "{} is not the Cargo.lock this binary was built with (built with sha256 {}, recorded {}); \
             the release's dependency list is the recorded one",
            new.lockfile.display(),
            short(&release.build_lockfile_sha256),
            short(&release.lockfile_sha256)
        )
    });
    Ok((release, warning))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Asks the binary for its build identity.
fn build_info(bin: &Path) -> anyhow::Result<BuildInfo> {
    let out = Command::new(bin)
        .arg("build-info")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} build-info failed: is it a warden binary? {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} build-info printed no build identity", bin.display()))
}

/// Copies the binary to `data_dir/releases/<sha256>/warden` (once: the name is its
/// content), through a temporary file so a crash never leaves a half-written binary.
fn store_binary(data_dir: &Path, sha256: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("releases").join(sha256);
    let path = dir.join("warden");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(&dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o555))?;
    }
    file.persist(&path)
        .with_context(|| format!("cannot store the binary at {}", path.display()))?;
    Ok(path)
}

/// The `warden release list` table.
#[must_use]
pub fn table(releases: &[Release]) -> String {
    let mut out = format!(
        "{:<20} {:<10} {:<9} {:>5} {:<14} {:<20} {}\n",
        "RELEASE", "VERSION", "COMMIT", "DEPS", "LOCKFILE", "ADDED (UTC)", "ARGS"
    );
    for r in releases {
        let added = time::OffsetDateTime::from_unix_timestamp(r.added_ms / 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]"
                ))
                .ok()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<20} {:<10} {:<9} {:>5} {:<14} {:<20} {}\n",
            r.name,
            r.version,
            r.git_commit.chars().take(7).collect::<String>(),
            r.dependencies.len(),
            short(&r.lockfile_sha256),
            added,
            r.args.join(" ")
        ));
    }
    out
}
