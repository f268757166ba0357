//! Every package of a lockfile: version, source, checksum, and for a Cargo.lock
//! also its license, whether a workspace member depends on it directly, and which
//! members pull it in. A lockfile of another ecosystem (or a directory of several)
//! lists ecosystem, name, version, source and checksum only: licenses and the
//! dependency graph are read for a Cargo.lock alone.
//!
//! The dependency graph comes from the lockfile itself (so any lockfile can be
//! listed); licenses come from `cargo metadata --offline --locked` when the lockfile
//! is a workspace's `Cargo.lock` next to its `Cargo.toml` (online only if the
//! offline run fails), otherwise from the crates' manifests in the local registry
//! cache (`$CARGO_HOME/registry/src`); a license that neither knows is `None`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cargo_lock::{Lockfile, Package};

use crate::lockfile::{Ecosystem, Format};

/// One package of the lockfile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InventoryPackage {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// `crates.io`, `path` (a workspace member or local crate), or the source URL;
    /// for other ecosystems `registry` (the ecosystem's own) or what the lockfile
    /// says ([`crate::lockfile::Package::source`]).
    pub source: String,
    pub checksum: Option<String>,
    /// The SPDX expression the crate declares, if known.
    pub license: Option<String>,
    /// A workspace member (or other local path package).
    pub member: bool,
    /// Some member depends on it directly.
    pub direct: bool,
    /// The members whose dependency trees contain it.
    pub pulled_in_by: Vec<String>,
}

/// The inventory of one lockfile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inventory {
    pub lockfile: PathBuf,
    pub members: Vec<String>,
    pub packages: Vec<InventoryPackage>,
    /// Where the licenses came from, and what could not be found.
    pub license_source: String,
    /// Whether kinds (member, direct, transitive), licenses and who pulls each
    /// package in were worked out: for a single Cargo.lock only.
    pub cargo_details: bool,
}

/// Builds the inventory of the lockfile at `path` (any format, or a directory of
/// lockfiles).
pub fn inventory(path: &Path) -> anyhow::Result<Inventory> {
    let lock = crate::lockfile::Lockfile::read(path)?;
    if let [only] = lock.files.as_slice()
        && only.format == Format::CargoLock
    {
        let cargo = crate::lockdiff::load(&only.path)?;
        return Ok(inventory_of(&only.path, &cargo));
    }
    Ok(generic(path, &lock))
}

/// The inventory of a lockfile that is not (only) a Cargo.lock.
fn generic(path: &Path, lock: &crate::lockfile::Lockfile) -> Inventory {
    let mut packages: Vec<InventoryPackage> = lock
        .packages
        .iter()
        .map(|p| InventoryPackage {
            ecosystem: p.ecosystem,
            name: p.name.clone(),
            version: p.version.clone(),
            source: p.source.clone().unwrap_or_else(|| "registry".to_owned()),
            checksum: p.checksum.clone(),
            license: None,
            member: false,
            direct: false,
            pulled_in_by: Vec::new(),
        })
        .collect();
    packages.sort_by(|a, b| {
        let parsed = |p: &InventoryPackage| p.ecosystem.parse_version(&p.version).ok();
        (a.ecosystem, &a.name, parsed(a), &a.version).cmp(&(
            b.ecosystem,
            &b.name,
            parsed(b),
            &b.version,
        ))
    });
    Inventory {
        lockfile: path.to_owned(),
        members: Vec::new(),
        packages,
        license_source: "not read: licenses and who pulls each package in are read for a \
                         Cargo.lock only"
            .to_owned(),
        cargo_details: false,
    }
}

/// The inventory of `lock`, already read from `path`.
pub fn inventory_of(path: &Path, lock: &Lockfile) -> Inventory {
    let (licenses, license_source) = licenses(path, lock);
    build(path, lock, &licenses, license_source)
}

/// The source of a package as shown: `crates.io`, `path` or its URL.
pub fn source_of(package: &Package) -> String {
    match &package.source {
        None => "path".to_owned(),
        Some(s) if s.is_default_registry() => "crates.io".to_owned(),
        Some(s) => {
            let text = s.to_string();
            // A git source ends in `#<commit>`; the commit is in the lockfile anyway.
            text.split('#').next().unwrap_or(&text).to_owned()
        }
    }
}

type Key = (String, String);

fn key(name: &str, version: &str) -> Key {
    (name.to_owned(), version.to_owned())
}

fn build(
    path: &Path,
    lock: &Lockfile,
    licenses: &BTreeMap<Key, String>,
    license_source: String,
) -> Inventory {
    // Index packages by name and by (name, version), to resolve dependency entries
    // (which name a version only when several are present).
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in lock.packages.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
    }
    let resolve = |dep: &cargo_lock::Dependency| -> Option<usize> {
        let candidates = by_name.get(dep.name.as_str())?;
        candidates
            .iter()
            .copied()
            .find(|&i| lock.packages[i].version == dep.version)
            .or_else(|| (candidates.len() == 1).then(|| candidates[0]))
    };
    let members: Vec<usize> = (0..lock.packages.len())
        .filter(|&i| lock.packages[i].source.is_none())
        .collect();
    let mut pulled_in_by: Vec<BTreeSet<String>> = vec![BTreeSet::new(); lock.packages.len()];
    let mut direct = vec![false; lock.packages.len()];
    for &member in &members {
        let member_name = lock.packages[member].name.to_string();
        let mut seen = vec![false; lock.packages.len()];
        let mut queue = VecDeque::from([member]);
        seen[member] = true;
        while let Some(i) = queue.pop_front() {
            for dep in &lock.packages[i].dependencies {
                let Some(j) = resolve(dep) else { continue };
                if i == member {
                    direct[j] = true;
                }
                if !seen[j] {
                    seen[j] = true;
                    queue.push_back(j);
                }
            }
        }
        for (i, was_seen) in seen.iter().enumerate() {
            if *was_seen && i != member {
                pulled_in_by[i].insert(member_name.clone());
            }
        }
    }
    let mut packages: Vec<InventoryPackage> = lock
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| InventoryPackage {
            ecosystem: Ecosystem::CratesIo,
            name: p.name.to_string(),
            version: p.version.to_string(),
            source: source_of(p),
            checksum: p.checksum.as_ref().map(ToString::to_string),
            license: licenses
                .get(&key(p.name.as_str(), &p.version.to_string()))
                .cloned(),
            member: p.source.is_none(),
            direct: direct[i],
            pulled_in_by: pulled_in_by[i].iter().cloned().collect(),
        })
        .collect();
    packages.sort_by(|a, b| {
        let semver = |v: &str| cargo_lock::Version::parse(v).ok();
        (&a.name, semver(&a.version), &a.version).cmp(&(&b.name, semver(&b.version), &b.version))
    });
    let mut member_names: Vec<String> = members
        .iter()
        .map(|&i| lock.packages[i].name.to_string())
        .collect();
    member_names.sort();
    Inventory {
        lockfile: path.to_owned(),
        members: member_names,
        packages,
        license_source,
        cargo_details: true,
    }
}

/// Licenses by (name, version), and a sentence on where they came from.
fn licenses(path: &Path, lock: &Lockfile) -> (BTreeMap<Key, String>, String) {
    let manifest = path.parent().map(|d| d.join("Cargo.toml"));
    let is_workspace_lock = path.file_name().is_some_and(|f| f == "Cargo.lock")
        && manifest.as_ref().is_some_and(|m| m.is_file());
    let mut note = String::new();
    if let (true, Some(manifest)) = (is_workspace_lock, manifest) {
        match metadata_licenses(&manifest) {
            Ok(map) => return (map, "cargo metadata".to_owned()),
            Err(error) => {
                note = format!("cargo metadata failed ({error}); ");
            }
        }
    }
    let map = registry_cache_licenses(lock);
    let missing = lock
        .packages
        .iter()
        .filter(|p| p.source.is_some())
        .filter(|p| !map.contains_key(&key(p.name.as_str(), &p.version.to_string())))
        .count();
    let _ = write!(note, "the local registry cache");
    if missing > 0 {
        let _ = write!(
            note,
            " ({missing} packages not in it: `cargo fetch` in their project brings them)"
        );
    }
    (map, note)
}

fn metadata_licenses(manifest: &Path) -> anyhow::Result<BTreeMap<Key, String>> {
    let run = |offline: bool| {
        let mut command = cargo_metadata::MetadataCommand::new();
        command.manifest_path(manifest);
        let mut options = vec!["--locked".to_owned()];
        if offline {
            options.push("--offline".to_owned());
        }
        command.other_options(options);
        command.exec()
    };
    let metadata = match run(true) {
        Ok(m) => m,
        Err(_) => run(false).map_err(|e| anyhow::anyhow!("{}", first_line(&e.to_string())))?,
    };
    Ok(metadata
        .packages
        .into_iter()
        .filter_map(|p| {
            let license = p.license.or_else(|| {
                p.license_file
                    .map(|f| format!("LicenseRef-file({})", f.file_name().unwrap_or("?")))
            })?;
            Some((key(&p.name, &p.version.to_string()), license))
        })
        .collect())
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

#[derive(serde::Deserialize)]
struct CachedManifest {
    package: CachedPackage,
}

#[derive(serde::Deserialize)]
struct CachedPackage {
    license: Option<String>,
    #[serde(rename = "license-file")]
    license_file: Option<String>,
}

/// Licenses read from `$CARGO_HOME/registry/src/*/<name>-<version>/Cargo.toml`.
fn registry_cache_licenses(lock: &Lockfile) -> BTreeMap<Key, String> {
    let Some(home) = cargo_home() else {
        return BTreeMap::new();
    };
    let Ok(indexes) = std::fs::read_dir(home.join("registry").join("src")) else {
        return BTreeMap::new();
    };
    let roots: Vec<PathBuf> = indexes.filter_map(|e| Some(e.ok()?.path())).collect();
    let mut map = BTreeMap::new();
    for package in &lock.packages {
        if !package
            .source
            .as_ref()
            .is_some_and(|s| s.is_default_registry())
        {
            continue;
        }
        let dir = format!("{}-{}", package.name, package.version);
        for root in &roots {
            let Ok(text) = std::fs::read_to_string(root.join(&dir).join("Cargo.toml")) else {
                continue;
            };
            let Ok(manifest) = toml::from_str::<CachedManifest>(&text) else {
                continue;
            };
            let license = manifest.package.license.or_else(|| {
                manifest
                    .package
                    .license_file
                    .map(|f| format!("LicenseRef-file({f})"))
            });
            if let Some(license) = license {
                map.insert(
                    key(package.name.as_str(), &package.version.to_string()),
                    license,
                );
                break;
            }
        }
    }
    map
}

fn cargo_home() -> Option<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
        _ => Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")),
    }
}

/// A plain-text table, one package a line.
pub fn table(inventory: &Inventory) -> String {
    if !inventory.cargo_details {
        let rows: Vec<Vec<String>> = inventory
            .packages
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.version.clone(),
                    p.ecosystem.to_string(),
                    p.source.clone(),
                ]
            })
            .collect();
        let mut out = columns(&["PACKAGE", "VERSION", "ECOSYSTEM", "SOURCE"], &rows);
        let _ = writeln!(out, "\n{}", summary(inventory));
        return out;
    }
    let rows: Vec<[String; 6]> = inventory
        .packages
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.version.clone(),
                kind(p).to_owned(),
                p.source.clone(),
                p.license.clone().unwrap_or_else(|| "unknown".into()),
                p.pulled_in_by.join(","),
            ]
        })
        .collect();
    let header = [
        "PACKAGE",
        "VERSION",
        "KIND",
        "SOURCE",
        "LICENSE",
        "PULLED IN BY",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    let _ = writeln!(out, "\n{}", summary(inventory));
    out
}

/// Left-aligned columns, two spaces apart, the last one unpadded.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
    out
}

fn kind(p: &InventoryPackage) -> &'static str {
    if p.member {
        "member"
    } else if p.direct {
        "direct"
    } else {
        "transitive"
    }
}

/// One sentence: how many packages of each kind, and where licenses came from.
pub fn summary(inventory: &Inventory) -> String {
    if !inventory.cargo_details {
        let mut per: BTreeMap<Ecosystem, usize> = BTreeMap::new();
        for p in &inventory.packages {
            *per.entry(p.ecosystem).or_default() += 1;
        }
        let per: Vec<String> = per.iter().map(|(e, n)| format!("{n} {e}")).collect();
        return format!(
            "{} packages in {} ({}); licenses and who pulls each package in are read for a \
             Cargo.lock only",
            inventory.packages.len(),
            inventory.lockfile.display(),
            per.join(", ")
        );
    }
    let count = |k: &str| inventory.packages.iter().filter(|p| kind(p) == k).count();
    format!(
        "{} packages in {}: {} workspace members, {} direct, {} transitive; licenses from {}",
        inventory.packages.len(),
        inventory.lockfile.display(),
        count("member"),
        count("direct"),
        count("transitive"),
        inventory.license_source
    )
}

/// A Markdown table, with checksums, for a review or a release note.
pub fn markdown(inventory: &Inventory) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    if !inventory.cargo_details {
        let mut out = String::from(
            "| package | version | ecosystem | source | checksum |\n|---|---|---|---|---|\n",
        );
        for p in &inventory.packages {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&p.name),
                cell(&p.version),
                p.ecosystem,
                cell(&p.source),
                p.checksum
                    .as_deref()
                    .map_or(String::new(), |c| format!("`{c}`"))
            );
        }
        let _ = writeln!(out, "\n{}", summary(inventory));
        return out;
    }
    let mut out = String::from(
        "| package | version | kind | source | license | pulled in by | checksum |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for p in &inventory.packages {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&p.name),
            cell(&p.version),
            kind(p),
            cell(&p.source),
            cell(p.license.as_deref().unwrap_or("unknown")),
            cell(&p.pulled_in_by.join(", ")),
            p.checksum
                .as_deref()
                .map_or(String::new(), |c| format!("`{c}`"))
        );
    }
    let _ = writeln!(out, "\n{}", summary(inventory));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOCK: &str = r#"version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde", "tool"]

[[package]]
name = "tool"
version = "0.1.0"
dependencies = ["itoa 1.0.11"]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f"
dependencies = ["itoa 0.4.8"]

[[package]]
name = "itoa"
version = "0.4.8"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "itoa"
version = "1.0.11"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "gitdep"
version = "0.2.0"
source = "git+https://github.com/example/gitdep?branch=main#0123456789abcdef0123456789abcdef01234567"
"#;

    #[test]
    fn members_direct_and_transitive_packages_are_told_apart() {
        let lock: Lockfile = LOCK.parse().unwrap();
        let inv = build(
            Path::new("Cargo.lock"),
            &lock,
            &BTreeMap::from([(key("serde", "1.0.200"), "MIT OR Apache-2.0".to_owned())]),
            "test".into(),
        );
        let find = |n: &str, v: &str| {
            inv.packages
                .iter()
                .find(|p| p.name == n && p.version == v)
                .unwrap()
                .clone()
        };
        assert_eq!(inv.members, ["app", "tool"]);
        let serde = find("serde", "1.0.200");
        assert!(serde.direct && !serde.member);
        assert_eq!(serde.pulled_in_by, ["app"]);
        assert_eq!(serde.license.as_deref(), Some("MIT OR Apache-2.0"));
        assert_eq!(serde.source, "crates.io");
        assert!(serde.checksum.is_some());
        let old_itoa = find("itoa", "0.4.8");
        assert!(!old_itoa.direct);
        assert_eq!(old_itoa.pulled_in_by, ["app"]);
        let new_itoa = find("itoa", "1.0.11");
        assert_eq!(new_itoa.pulled_in_by, ["app", "tool"]);
        assert!(new_itoa.direct, "tool (a member) depends on it directly");
        let git = find("gitdep", "0.2.0");
        assert_eq!(
            git.source,
            "git+https://github.com/example/gitdep?branch=main"
        );
        assert!(git.pulled_in_by.is_empty());
        let text = table(&inv);
        assert!(text.contains("serde    1.0.200  direct"), "{text}");
        assert!(
            markdown(&inv)
                .contains("| serde | 1.0.200 | direct | crates.io | MIT OR Apache-2.0 | app |")
        );
    }

    #[test]
    fn the_projects_own_inventory_has_licenses_for_all_registry_packages() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"));
        let inv = inventory(path).unwrap();
        assert_eq!(inv.license_source, "cargo metadata");
        let serde = inv.packages.iter().find(|p| p.name == "serde").unwrap();
        assert!(serde.license.is_some());
        assert!(inv.members.contains(&"warden-audit".to_owned()));
    }
}
