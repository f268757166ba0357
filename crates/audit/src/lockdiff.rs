//! Differences between two Cargo.lock files, package by package.
//!
//! A package may appear in several versions in one lockfile (two semver-incompatible
//! majors, say). Versions present in both files are unchanged; the rest are paired
//! newest-to-newest, so `serde_json 1.0.120 → 1.0.121` reads as one upgrade rather
//! than a removal and an addition; what cannot be paired is added or removed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use cargo_lock::{Lockfile, Version};

/// How a package changed between two lockfiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Upgraded,
    Downgraded,
}

/// Which part of the version changed, in semver terms. For 0.x versions the minor
/// number is the breaking one, as Cargo treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Major,
    Minor,
    Patch,
    /// Only the pre-release or build metadata changed.
    Other,
}

/// One package whose version changed (or that appeared or disappeared).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    let (old, new) = (versions(old), versions(new));
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
