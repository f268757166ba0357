//! The release registry: `warden release add` and `warden release list`.
//!
//! A release is recorded once and never changes: its binary, stored in the data dir
//! under its SHA-256 (`releases/<sha256>/warden`), the build identity the binary
//! reports (`warden build-info`: version, git commit, the SHA-256 of the Cargo.lock
//! it was built with), the SHA-256 and package list of the Cargo.lock recorded with
//! it (by default the one built into the binary, so where `warden up` runs from never
//! matters), and the extra arguments its instances run with. The dependency list is what a
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
    /// The lockfile to record with it: a Cargo.lock or any format
    /// [`warden_audit::lockfile::Lockfile::read`] knows. Without one, the Cargo.lock
    /// the binary was built with (every warden binary carries it: `warden
    /// build-info --lockfile`).
    pub lockfile: Option<PathBuf>,
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
    let (lock_text, lock_origin) = match &new.lockfile {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the lockfile {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            warden_audit::lockdiff::built_into(&new.bin)?,
            format!("the Cargo.lock built into {}", new.bin.display()),
        ),
    };
    let dependencies = match &new.lockfile {
        // Any format warden reads: a Python, Node or Go lockfile is kept with its
        // ecosystem in the name (`PyPI:jsonfast`), a crate as its bare name.
        Some(path) => warden_audit::lockdiff::release_dependencies(
            &warden_audit::lockfile::Lockfile::read(path)?,
        ),
        None => {
            let lock = warden_audit::lockdiff::parse(&lock_text, &lock_origin)?;
            let mut dependencies: Vec<(String, String)> = lock
                .packages
                .iter()
                .map(|p| (p.name.as_str().to_owned(), p.version.to_string()))
                .collect();
            dependencies.sort();
            dependencies
        }
    };
    let lockfile_sha256 = hex::encode(Sha256::digest(lock_text.as_bytes()));
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
            "{lock_origin} is not the Cargo.lock this binary was built with (built with sha256 {}, recorded {}); \
             the release's dependency list is the recorded one",
            short(&release.build_lockfile_sha256),
            short(&release.lockfile_sha256)
        )
    });
    Ok((release, warning))
}

/// The release `warden up` starts: the one named (recording this binary under that
/// name when it is new), else the one that was active, else this binary under its
/// default name (recorded on first use).
pub fn for_up(
    store: &Store,
    data_dir: &Path,
    requested: Option<&str>,
    exe: &Path,
    args: &[String],
) -> anyhow::Result<Release> {
    let releases = store.releases()?;
    let find = |name: &str| releases.iter().find(|r| r.name == name).cloned();
    let name = match requested {
        Some(name) => name.to_owned(),
        None => {
            let history = crate::history::History::load(store)?;
            if let Some(active) = history.active().and_then(find) {
                return Ok(active);
            }
            let build = build_info(exe)?;
            format!(
                "{}-{}",
                build.version,
                build.git_commit.chars().take(7).collect::<String>()
            )
        }
    };
    if let Some(existing) = find(&name) {
        anyhow::ensure!(
            args.is_empty() || existing.args == args,
            "release {name} is recorded with the API arguments {:?}; a release never changes, \
             so record this one under a new name (--release)",
            existing.args
        );
        return Ok(existing);
    }
    let new = NewRelease {
        bin: exe.to_owned(),
        name: Some(name),
        lockfile: None,
        args: args.to_vec(),
    };
    let (release, warning) = add(store, data_dir, &new)?;
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(release)
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
    warden_store::datadir::create_dir(&dir)?;
    let mut file = tempfile::NamedTempFile::new_in(&dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    // Its owner runs it and nobody changes it; like the rest of the data dir, it is
    // nobody else's business.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o500))?;
    }
    file.persist(&path)
        .with_context(|| format!("cannot store the binary at {}", path.display()))?;
    Ok(path)
}

/// The `warden release list` table; `states` is parallel to `releases`.
#[must_use]
pub fn table(releases: &[Release], states: &[crate::history::ReleaseState]) -> String {
    let when = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]"
                ))
                .ok()
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "{:<20} {:<16} {:<20} {:<10} {:<9} {:>5} {:<14} {}\n",
        "RELEASE", "STATE", "DEPLOYED (UTC)", "VERSION", "COMMIT", "DEPS", "LOCKFILE", "ARGS"
    );
    let mut reasons = Vec::new();
    for (r, s) in releases.iter().zip(states) {
        out.push_str(&format!(
            "{:<20} {:<16} {:<20} {:<10} {:<9} {:>5} {:<14} {}\n",
            r.name,
            s.state,
            s.deployed_ms.map(when).unwrap_or_else(|| "-".to_owned()),
            r.version,
            r.git_commit.chars().take(7).collect::<String>(),
            r.dependencies.len(),
            short(&r.lockfile_sha256),
            r.args.join(" ")
        ));
        if let Some(reason) = &s.bad_reason {
            reasons.push(format!("{} is bad: {reason}\n", r.name));
        }
    }
    if !reasons.is_empty() {
        out.push('\n');
        out.extend(reasons);
    }
    out
}
