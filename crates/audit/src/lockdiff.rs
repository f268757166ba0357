//! Differences between two Cargo.lock files, package by package.
//!
//! A package may appear in several versions in one lockfile (two semver-incompatible
//! majors, say). Versions present in both files are unchanged; the rest are paired
//! newest-to-newest, so `serde_json 1.0.120 → 1.0.121` reads as one upgrade rather
//! than a removal and an addition; what cannot be paired is added or removed.
//!
//! [`diff`] compares two parsed lockfiles; [`diff_versions`] compares two dependency
//! sets given as (name, version) pairs, the form the release registry keeps, so the
//! postmortem can name what changed between the last good and the bad release.
//! [`load_spec`] reads a lockfile from a path or from a git revision.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use cargo_lock::{Lockfile, Version};

/// How a package changed between two lockfiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Upgraded,
    Downgraded,
}

/// Which part of the version changed, in semver terms. For 0.x versions the minor
/// number is the breaking one, as Cargo treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Major,
    Minor,
    Patch,
    /// Only the pre-release or build metadata changed.
    Other,
}

/// One package whose version changed (or that appeared or disappeared).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub kind: ChangeKind,
    /// `None` for added and removed packages.
    pub bump: Option<Bump>,
}

impl std::fmt::Display for PackageChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => write!(f, "{} {old} → {new}", self.name)?,
            (None, Some(new)) => write!(f, "{} {new} (added)", self.name)?,
            (Some(old), None) => write!(f, "{} {old} (removed)", self.name)?,
            (None, None) => write!(f, "{}", self.name)?,
        }
        if let Some(bump) = self.bump {
            let bump = match bump {
                Bump::Major => "major",
                Bump::Minor => "minor",
                Bump::Patch => "patch",
                Bump::Other => "pre-release",
            };
            write!(f, " ({bump})")?;
        }
        Ok(())
    }
}

/// Reads a lockfile, naming the file in the error.
pub fn load(path: &Path) -> anyhow::Result<Lockfile> {
    Lockfile::load(path).with_context(|| format!("cannot read {} as a Cargo.lock", path.display()))
}

/// Parses a lockfile's text; `origin` says where it came from, for the error.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<Lockfile> {
    text.parse()
        .with_context(|| format!("cannot read {origin} as a Cargo.lock"))
}

/// The Cargo.lock a warden binary was built with, which it carries
/// (`warden build-info --lockfile`).
pub fn built_into(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["build-info", "--lockfile"])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    anyhow::ensure!(
        out.status.success() && !out.stdout.is_empty(),
        "{} does not carry the Cargo.lock it was built with (a warden older than this one?); \
         pass the lockfile it was built from",
        bin.display()
    );
    String::from_utf8(out.stdout)
        .with_context(|| format!("{} build-info --lockfile printed no text", bin.display()))
}

/// Reads a lockfile named on the command line: a file when `spec` is an existing
/// path, otherwise a git revision of the repository at the current directory —
/// `REV` (its `Cargo.lock`) or `REV:PATH` — read with `git show`.
pub fn load_spec(spec: &str) -> anyhow::Result<Lockfile> {
    let path = Path::new(spec);
    if path.exists() {
        return load(path);
    }
    let object = if spec.contains(':') {
        spec.to_owned()
    } else {
        format!("{spec}:Cargo.lock")
    };
    let text = git_show(Path::new("."), &object).with_context(|| {
        format!("{spec:?} is neither a file nor a git revision with a Cargo.lock")
    })?;
    parse(&text, &format!("{object} (from git)"))
}

/// `git show OBJECT` in `repo`, as text.
pub fn git_show(repo: &Path, object: &str) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["show", object])
        .output()
        .context("cannot run git (is it installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "git show {object}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).with_context(|| format!("git show {object}: not UTF-8"))
}

fn versions(lock: &Lockfile) -> BTreeMap<String, Vec<Version>> {
    let mut map: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for package in &lock.packages {
        map.entry(package.name.as_str().to_owned())
            .or_default()
            .push(package.version.clone());
    }
    for list in map.values_mut() {
        list.sort();
        list.dedup();
    }
    map
}

fn versions_of_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<BTreeMap<String, Vec<Version>>> {
    let mut map: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for (name, version) in pairs {
        let version = Version::parse(version)
            .with_context(|| format!("package {name}: {version:?} is not a semver version"))?;
        map.entry(name.to_owned()).or_default().push(version);
    }
    for list in map.values_mut() {
        list.sort();
        list.dedup();
    }
    Ok(map)
}

fn bump(old: &Version, new: &Version) -> Bump {
    let (lo, hi) = if old < new { (old, new) } else { (new, old) };
    if lo.major != hi.major {
        Bump::Major
    } else if lo.minor != hi.minor {
        if lo.major == 0 {
            Bump::Major
        } else {
            Bump::Minor
        }
    } else if lo.patch != hi.patch {
        if lo.major == 0 && lo.minor == 0 {
            Bump::Major
        } else {
            Bump::Patch
        }
    } else {
        Bump::Other
    }
}

/// The packages that differ between `old` and `new`, sorted by name.
pub fn diff(old: &Lockfile, new: &Lockfile) -> Vec<PackageChange> {
    diff_maps(&versions(old), &versions(new))
}

/// The packages that differ between two dependency sets given as (name, version)
/// pairs — the form the release registry records — sorted by name. Errs on a
/// version that is not semver.
pub fn diff_versions<'a>(
    old: impl IntoIterator<Item = (&'a str, &'a str)>,
    new: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<Vec<PackageChange>> {
    Ok(diff_maps(
        &versions_of_pairs(old)?,
        &versions_of_pairs(new)?,
    ))
}

/// Counts of each kind of change, for a one-line summary.
pub fn summary(changes: &[PackageChange]) -> String {
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    format!(
        "{} added, {} removed, {} upgraded, {} downgraded",
        count(ChangeKind::Added),
        count(ChangeKind::Removed),
        count(ChangeKind::Upgraded),
        count(ChangeKind::Downgraded)
    )
}

fn diff_maps(
    old: &BTreeMap<String, Vec<Version>>,
    new: &BTreeMap<String, Vec<Version>>,
) -> Vec<PackageChange> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    let mut changes = Vec::new();
    for name in names {
        let empty = Vec::new();
        let before = old.get(name).unwrap_or(&empty);
        let after = new.get(name).unwrap_or(&empty);
        let mut gone: Vec<&Version> = before.iter().filter(|v| !after.contains(v)).collect();
        let mut came: Vec<&Version> = after.iter().filter(|v| !before.contains(v)).collect();
        // Pair newest with newest.
        while !gone.is_empty() && !came.is_empty() {
            let (Some(o), Some(n)) = (gone.pop(), came.pop()) else {
                break;
            };
            changes.push(PackageChange {
                name: name.clone(),
                old: Some(o.to_string()),
                new: Some(n.to_string()),
                kind: if n > o {
                    ChangeKind::Upgraded
                } else {
                    ChangeKind::Downgraded
                },
                bump: Some(bump(o, n)),
            });
        }
        changes.extend(gone.into_iter().map(|o| PackageChange {
            name: name.clone(),
            old: Some(o.to_string()),
            new: None,
            kind: ChangeKind::Removed,
            bump: None,
        }));
        changes.extend(came.into_iter().map(|n| PackageChange {
            name: name.clone(),
            old: None,
            new: Some(n.to_string()),
            kind: ChangeKind::Added,
            bump: None,
        }));
    }
    changes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lock(packages: &[(&str, &str)]) -> Lockfile {
        let mut text = String::from("version = 3\n");
        for (name, version) in packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n"
            ));
        }
        text.parse().unwrap()
    }

    #[test]
    fn classifies_every_kind_of_change() {
        let old = lock(&[
            ("serde_json", "1.0.120"),
            ("itoa", "1.0.11"),
            ("ryu", "1.0.18"),
            ("gone", "0.1.0"),
            ("tokio", "1.40.0"),
            ("rand", "0.8.5"),
            ("same", "2.0.0"),
        ]);
        let new = lock(&[
            ("serde_json", "1.0.121"),
            ("itoa", "1.0.10"),
            ("ryu", "2.0.0"),
            ("tokio", "1.41.0"),
            ("rand", "0.9.0"),
            ("same", "2.0.0"),
            ("fresh", "0.3.0"),
        ]);
        let got: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "fresh 0.3.0 (added)",
                "gone 0.1.0 (removed)",
                "itoa 1.0.11 → 1.0.10 (patch)",
                "rand 0.8.5 → 0.9.0 (major)",
                "ryu 1.0.18 → 2.0.0 (major)",
                "serde_json 1.0.120 → 1.0.121 (patch)",
                "tokio 1.40.0 → 1.41.0 (minor)",
            ]
        );
        let itoa = diff(&old, &new)
            .into_iter()
            .find(|c| c.name == "itoa")
            .unwrap();
        assert_eq!(itoa.kind, ChangeKind::Downgraded);
    }

    #[test]
    fn duplicate_versions_pair_newest_with_newest() {
        let old = lock(&[("syn", "1.0.109"), ("syn", "2.0.70")]);
        let new = lock(&[("syn", "1.0.109"), ("syn", "2.0.72")]);
        let got: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["syn 2.0.70 → 2.0.72 (patch)"]);
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn release_dependency_sets_diff_like_lockfiles() {
        let old = [("serde_json", "1.0.120"), ("itoa", "1.0.11")];
        let new = [
            ("serde_json", "1.0.121"),
            ("itoa", "1.0.11"),
            ("memchr", "2.7.4"),
        ];
        let changes = diff_versions(old, new).unwrap();
        let got: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "memchr 2.7.4 (added)",
                "serde_json 1.0.120 → 1.0.121 (patch)"
            ]
        );
        assert_eq!(
            summary(&changes),
            "1 added, 0 removed, 1 upgraded, 0 downgraded"
        );
        let err = diff_versions([("x", "one")], []).unwrap_err();
        assert!(format!("{err:#}").contains("\"one\" is not a semver version"));
    }

    #[test]
    fn a_spec_that_is_neither_file_nor_revision_is_a_clear_error() {
        let err = load_spec("no-such-revision-or-file").unwrap_err();
        assert!(
            format!("{err:#}").contains("neither a file nor a git revision"),
            "{err:#}"
        );
    }

    #[test]
    fn the_projects_own_lockfile_loads() {
        let lock = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../Cargo.lock"
        )))
        .unwrap();
        assert!(
            lock.packages
                .iter()
                .any(|p| p.name.as_str() == "serde_json")
        );
        let err = load(Path::new("/nonexistent/Cargo.lock")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/Cargo.lock"));
    }
}
