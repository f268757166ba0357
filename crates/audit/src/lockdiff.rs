//! Differences between two lockfiles, package by package, in any ecosystem.
//!
//! A package may appear in several versions in one lockfile (two semver-incompatible
//! majors, say). Versions present in both files are unchanged; the rest are paired
//! newest-to-newest, so `serde_json 1.0.120 → 1.0.121` reads as one upgrade rather
//! than a removal and an addition; what cannot be paired is added or removed.
//! Packages are told apart by ecosystem and (normalised) name, and versions are
//! ordered by the ecosystem's rules: PEP 440 for PyPI (`1.0.10` > `1.0.9`,
//! `2.0.0rc1` < `2.0.0`), semver for crates.io, npm and Go.
//!
//! [`diff`] compares two parsed lockfiles — a Cargo.lock as `cargo_lock` reads it,
//! or a [`Lockfile`] of any format; [`diff_versions`] compares two dependency sets
//! given as (name, version) pairs, the form the release registry keeps (see
//! [`release_dependencies`]), so the postmortem can name what changed between the
//! last good and the bad release. [`load_spec`] and [`load_pair`] read a lockfile
//! from a path or from a git revision.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::lockfile::{Ecosystem, Format, Lockfile, Version};

/// How a package changed between two lockfiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Upgraded,
    Downgraded,
}

/// Which part of the version changed. Semver ecosystems (crates.io, npm, Go) treat
/// the minor number of a 0.x version as the breaking one, as Cargo and npm's caret
/// do; PyPI compares the release segments of PEP 440 (major.minor.micro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Major,
    Minor,
    Patch,
    /// Only the pre-release or build metadata changed (PyPI: pre, post, dev or
    /// local parts, or a fourth release segment).
    Other,
}

/// One package whose version changed (or that appeared or disappeared).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageChange {
    pub name: String,
    /// Absent (crates.io) in Cargo.lock diffs, as before other ecosystems were read.
    #[serde(default, skip_serializing_if = "is_crates_io")]
    pub ecosystem: Ecosystem,
    pub old: Option<String>,
    pub new: Option<String>,
    pub kind: ChangeKind,
    /// `None` for added and removed packages.
    pub bump: Option<Bump>,
}

fn is_crates_io(ecosystem: &Ecosystem) -> bool {
    *ecosystem == Ecosystem::CratesIo
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

/// Reads a Cargo.lock, naming the file in the error.
pub fn load(path: &Path) -> anyhow::Result<cargo_lock::Lockfile> {
    cargo_lock::Lockfile::load(path)
        .with_context(|| format!("cannot read {} as a Cargo.lock", path.display()))
}

/// Parses a Cargo.lock's text; `origin` says where it came from, for the error.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<cargo_lock::Lockfile> {
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

/// Reads a lockfile named on the command line: a file (or a directory of lockfiles)
/// when `spec` is an existing path, otherwise a git revision of the repository at
/// the current directory — `REV` (its `Cargo.lock`) or `REV:PATH` — read with
/// `git show`. Any format [`Lockfile::read`] knows.
pub fn load_spec(spec: &str) -> anyhow::Result<Lockfile> {
    load_spec_beside(spec, None)
}

/// Reads the two sides of a diff with [`load_spec`], except that a bare revision
/// reads the other side's file at that revision: `warden deps diff HEAD~5
/// requirements.txt` compares `HEAD~5:requirements.txt` with the file.
pub fn load_pair(old: &str, new: &str) -> anyhow::Result<(Lockfile, Lockfile)> {
    let file_of = |spec: &str| {
        let path = Path::new(spec);
        path.is_file().then(|| path.to_path_buf())
    };
    Ok((
        load_spec_beside(old, file_of(new).as_deref())?,
        load_spec_beside(new, file_of(old).as_deref())?,
    ))
}

/// Reads a lockfile named on the command line like [`load_spec`], except that a
/// bare revision reads `file`'s path at that revision (`--previous HEAD` for a
/// ledger of requirements.txt is `HEAD:requirements.txt`).
pub fn load_spec_as(spec: &str, file: &Path) -> anyhow::Result<Lockfile> {
    load_spec_beside(spec, Some(file))
}

fn load_spec_beside(spec: &str, other: Option<&Path>) -> anyhow::Result<Lockfile> {
    let path = Path::new(spec);
    if path.exists() {
        return Lockfile::read(path);
    }
    let object = if spec.contains(':') {
        spec.to_owned()
    } else {
        match other {
            Some(file) => format!("{spec}:{}", git_path(file)?),
            None => format!("{spec}:Cargo.lock"),
        }
    };
    let text = git_show(Path::new("."), &object).with_context(|| {
        format!("{spec:?} is neither a file nor a git revision with a {}", {
            let (_, file) = object.split_once(':').unwrap_or(("", "Cargo.lock"));
            file.rsplit('/').next().unwrap_or(file).to_owned()
        })
    })?;
    parse_git(Path::new("."), &text, &object)
}

/// A path as `git show REV:PATH` takes it: `./relative` to the current directory,
/// or an absolute path made relative to the repository's top.
fn git_path(file: &Path) -> anyhow::Result<String> {
    if file.is_relative() {
        return Ok(format!("./{}", file.display()));
    }
    let out = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .context("cannot run git (is it installed?)")?;
    anyhow::ensure!(out.status.success(), "not in a git repository");
    let top = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let top = top.canonicalize().unwrap_or(top);
    let file = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let relative = file
        .strip_prefix(&top)
        .with_context(|| format!("{} is outside the git repository", file.display()))?;
    Ok(relative.display().to_string())
}

/// Parses the text of `object` (`REV:PATH`, shown in the git repository `repo`),
/// its format told by PATH's name; a requirements file's `-r` includes are read at
/// the same revision.
pub(crate) fn parse_git(repo: &Path, text: &str, object: &str) -> anyhow::Result<Lockfile> {
    let (rev, path) = object.split_once(':').unwrap_or((object, "Cargo.lock"));
    let origin = format!("{object} (from git)");
    let format =
        crate::lockfile::detect_named(path, text).with_context(|| format!("reading {origin}"))?;
    if format == Format::CargoLock {
        // Exactly as before other formats were read.
        return crate::lockfile::Lockfile::parse(text, format, &origin);
    }
    let dir = match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/"),
        None => String::new(),
    };
    let include = |name: &str| -> anyhow::Result<(String, String)> {
        let included = format!("{rev}:{dir}{name}");
        Ok((git_show(repo, &included)?, included))
    };
    crate::lockfile::parse_with(text, format, Path::new(&origin), &include)
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

/// What [`diff`] compares: every package's ecosystem, name and version.
pub trait PackageSet {
    /// (ecosystem, name, version) of every package.
    fn entries(&self) -> Vec<(Ecosystem, String, String)>;
}

impl PackageSet for cargo_lock::Lockfile {
    fn entries(&self) -> Vec<(Ecosystem, String, String)> {
        self.packages
            .iter()
            .map(|p| {
                (
                    Ecosystem::CratesIo,
                    p.name.as_str().to_owned(),
                    p.version.to_string(),
                )
            })
            .collect()
    }
}

impl PackageSet for Lockfile {
    fn entries(&self) -> Vec<(Ecosystem, String, String)> {
        self.packages
            .iter()
            .map(|p| (p.ecosystem, p.name.clone(), p.version.clone()))
            .collect()
    }
}

/// A version as written, ordered by its ecosystem's rules (by text when it does not
/// parse, before every version that does).
#[derive(Debug, Clone)]
struct Ver {
    parsed: Option<Version>,
    text: String,
}

impl Ord for Ver {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (&self.parsed, &other.parsed) {
            (Some(a), Some(b)) => a.cmp(b),
            (None, None) => self.text.cmp(&other.text),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
        }
    }
}

impl PartialOrd for Ver {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ver {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ver {}

type VersionMap = BTreeMap<(Ecosystem, String), Vec<Ver>>;

fn versions(entries: Vec<(Ecosystem, String, String)>) -> VersionMap {
    let mut map: VersionMap = BTreeMap::new();
    for (ecosystem, name, text) in entries {
        let parsed = ecosystem.parse_version(&text).ok();
        map.entry((ecosystem, name))
            .or_default()
            .push(Ver { parsed, text });
    }
    for list in map.values_mut() {
        list.sort();
        list.dedup();
    }
    map
}

/// The name a release registry keeps for a package: the name itself for crates.io
/// (as it always has), `ECOSYSTEM:name` for the others (`PyPI:jsonfast`).
pub fn registry_name(ecosystem: Ecosystem, name: &str) -> String {
    match ecosystem {
        Ecosystem::CratesIo => name.to_owned(),
        other => format!("{other}:{name}"),
    }
}

/// The (name, version) pairs a release registry keeps for a lockfile, sorted; see
/// [`registry_name`].
pub fn release_dependencies(lock: &Lockfile) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = lock
        .packages
        .iter()
        .map(|p| (registry_name(p.ecosystem, &p.name), p.version.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// A registry name back into (ecosystem, name).
fn split_registry_name(name: &str) -> (Ecosystem, &str) {
    if let Some((prefix, rest)) = name.split_once(':')
        && let Ok(ecosystem) = prefix.parse::<Ecosystem>()
    {
        return (ecosystem, rest);
    }
    (Ecosystem::CratesIo, name)
}

fn versions_of_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<VersionMap> {
    let mut entries = Vec::new();
    for (name, version) in pairs {
        let (ecosystem, name) = split_registry_name(name);
        ecosystem
            .parse_version(version)
            .with_context(|| format!("package {name}"))?;
        entries.push((ecosystem, name.to_owned(), version.to_owned()));
    }
    Ok(versions(entries))
}

fn bump(old: &Ver, new: &Ver) -> Bump {
    let (lo, hi) = if old < new { (old, new) } else { (new, old) };
    match (&lo.parsed, &hi.parsed) {
        (Some(Version::Semver(lo)), Some(Version::Semver(hi))) => semver_bump(lo, hi),
        (Some(Version::Pep440(lo)), Some(Version::Pep440(hi))) => pep440_bump(lo, hi),
        _ => Bump::Other,
    }
}

fn semver_bump(lo: &semver::Version, hi: &semver::Version) -> Bump {
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

fn pep440_bump(lo: &pep440_rs::Version, hi: &pep440_rs::Version) -> Bump {
    let segment = |v: &pep440_rs::Version, i: usize| v.release().get(i).copied().unwrap_or(0);
    if lo.epoch() != hi.epoch() || segment(lo, 0) != segment(hi, 0) {
        Bump::Major
    } else if segment(lo, 1) != segment(hi, 1) {
        Bump::Minor
    } else if segment(lo, 2) != segment(hi, 2) {
        Bump::Patch
    } else {
        Bump::Other
    }
}

/// The packages that differ between `old` and `new`, sorted by ecosystem and name.
pub fn diff<L: PackageSet + ?Sized>(old: &L, new: &L) -> Vec<PackageChange> {
    diff_maps(&versions(old.entries()), &versions(new.entries()))
}

/// The packages that differ between two dependency sets given as (name, version)
/// pairs — the form the release registry records, [`registry_name`]s — sorted by
/// ecosystem and name. Errs on a version its ecosystem cannot read.
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

fn diff_maps(old: &VersionMap, new: &VersionMap) -> Vec<PackageChange> {
    let mut keys: Vec<&(Ecosystem, String)> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for key in keys {
        let (ecosystem, name) = (key.0, &key.1);
        let empty = Vec::new();
        let before = old.get(key).unwrap_or(&empty);
        let after = new.get(key).unwrap_or(&empty);
        let mut gone: Vec<&Ver> = before.iter().filter(|v| !after.contains(v)).collect();
        let mut came: Vec<&Ver> = after.iter().filter(|v| !before.contains(v)).collect();
        // Pair newest with newest.
        while !gone.is_empty() && !came.is_empty() {
            let (Some(o), Some(n)) = (gone.pop(), came.pop()) else {
                break;
            };
            changes.push(PackageChange {
                name: name.clone(),
                ecosystem,
                old: Some(o.text.clone()),
                new: Some(n.text.clone()),
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
            ecosystem,
            old: Some(o.text.clone()),
            new: None,
            kind: ChangeKind::Removed,
            bump: None,
        }));
        changes.extend(came.into_iter().map(|n| PackageChange {
            name: name.clone(),
            ecosystem,
            old: None,
            new: Some(n.text.clone()),
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

    fn lock(packages: &[(&str, &str)]) -> cargo_lock::Lockfile {
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
