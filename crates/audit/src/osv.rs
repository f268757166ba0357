//! Advisories in the OSV format (<https://ossf.github.io/osv-schema/>) from a
//! directory, matched against the packages of any lockfile.
//!
//! The directory is read as osv-scanner's offline databases are laid out — one
//! folder per ecosystem, `DIR/PyPI/*.json`, `DIR/npm/*.json`, ... — or as any tree
//! of `*.json` files (all are read, recursively; folders named after an ecosystem
//! the lockfile does not use are skipped). Each file is one advisory.
//!
//! An advisory applies to a package when one of its `affected[]` entries names the
//! package's ecosystem and name (PyPI names compared after PEP 503 normalisation)
//! and either lists the version in `versions`, or one of its `ranges` of type
//! `ECOSYSTEM` or `SEMVER` contains it. A range is evaluated as the OSV schema
//! says: its events sorted by version (`introduced: "0"` first), walking them,
//! `introduced` opens, `fixed` closes at that version and `last_affected` closes
//! after it; versions are compared by the ecosystem's rules ([`Ecosystem::parse_version`]).
//! `GIT` ranges (commits) are not evaluated. Withdrawn advisories are skipped, and
//! so are packages that do not come from a registry (local paths, git, direct
//! URLs), which a registry's advisory is not about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::advisories::{AdvisoryKind, AdvisoryMatch};
use crate::lockfile::{Ecosystem, Package, Version};

/// The OSV advisories read from a directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OsvDb {
    pub path: PathBuf,
    /// How many advisory files were read.
    pub advisories: usize,
    /// The ecosystems it was read for.
    pub ecosystems: Vec<Ecosystem>,
    /// Ranges or versions that could not be evaluated (a version the ecosystem
    /// cannot read), one sentence each.
    pub warnings: Vec<String>,
    #[serde(skip)]
    entries: Vec<Advisory>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Advisory {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    summary: Option<String>,
    details: Option<String>,
    published: Option<String>,
    modified: Option<String>,
    withdrawn: Option<String>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    severity: Vec<Severity>,
    database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Affected {
    package: Option<AffectedPackage>,
    #[serde(default)]
    ranges: Vec<Range>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<Severity>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct AffectedPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Event {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Reference {
    #[serde(rename = "type")]
    kind: String,
    url: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Severity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

/// Reads the advisories under `dir` that may concern `ecosystems`.
pub fn load(dir: &Path, ecosystems: &BTreeSet<Ecosystem>) -> anyhow::Result<OsvDb> {
    anyhow::ensure!(
        dir.is_dir(),
        "no OSV advisory directory at {}: pass --osv-db DIR, a folder of OSV JSON files \
         (DIR/<ecosystem>/*.json as osv-scanner keeps them offline, or any tree of *.json)",
        dir.display()
    );
    let mut files = Vec::new();
    let mut zips = Vec::new();
    collect(dir, dir, ecosystems, &mut files, &mut zips)?;
    if files.is_empty() {
        if let Some(zip) = zips.first() {
            anyhow::bail!(
                "{} holds no OSV JSON files, only archives such as {}: unzip them in place \
                 (`unzip all.zip`) and run again",
                dir.display(),
                zip.display()
            );
        }
        anyhow::bail!(
            "{} holds no OSV advisories (*.json files): pass --osv-db DIR with \
             DIR/<ecosystem>/*.json",
            dir.display()
        );
    }
    files.sort();
    let mut entries = Vec::with_capacity(files.len());
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the OSV advisory {}", file.display()))?;
        let advisory: Advisory = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an OSV advisory (one JSON object with an `id`)",
                file.display()
            )
        })?;
        entries.push(advisory);
    }
    Ok(OsvDb {
        path: dir.to_owned(),
        advisories: entries.len(),
        ecosystems: ecosystems.iter().copied().collect(),
        warnings: Vec::new(),
        entries,
    })
}

fn collect(
    root: &Path,
    dir: &Path,
    ecosystems: &BTreeSet<Ecosystem>,
    files: &mut Vec<PathBuf>,
    zips: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() {
            // DIR/<ecosystem>/: skip the ecosystems the lockfile does not use.
            if dir == root
                && let Ok(ecosystem) = name.parse::<Ecosystem>()
                && !ecosystems.contains(&ecosystem)
            {
                continue;
            }
            collect(root, &path, ecosystems, files, zips)?;
        } else if name.ends_with(".json") {
            files.push(path);
        } else if name.ends_with(".zip") {
            zips.push(path);
        }
    }
    Ok(())
}

impl OsvDb {
    /// One line for a report.
    pub fn describe(&self) -> String {
        let ecosystems: Vec<&str> = self.ecosystems.iter().map(|e| e.as_str()).collect();
        format!(
            "{} ({} OSV advisories read, for {})",
            self.path.display(),
            self.advisories,
            ecosystems.join(", ")
        )
    }

    /// The advisories that apply to `packages`, sorted by package, version and ID.
    /// Ranges that cannot be evaluated are added to [`OsvDb::warnings`].
    pub fn scan(&mut self, packages: &[Package]) -> Vec<AdvisoryMatch> {
        // Index the affected entries by (ecosystem, normalised name).
        let mut index: BTreeMap<(Ecosystem, String), Vec<(usize, usize)>> = BTreeMap::new();
        for (a, advisory) in self.entries.iter().enumerate() {
            if advisory.withdrawn.is_some() {
                continue;
            }
            for (i, affected) in advisory.affected.iter().enumerate() {
                let Some(package) = &affected.package else {
                    continue;
                };
                let Ok(ecosystem) = package.ecosystem.parse::<Ecosystem>() else {
                    continue;
                };
                index
                    .entry((ecosystem, ecosystem.normalize_name(&package.name)))
                    .or_default()
                    .push((a, i));
            }
        }
        let mut warnings = BTreeSet::new();
        let mut found = Vec::new();
        for package in packages.iter().filter(|p| p.from_registry()) {
            let Some(hits) = index.get(&(package.ecosystem, package.name.clone())) else {
                continue;
            };
            let Ok(version) = package.parsed_version() else {
                continue;
            };
            let mut by_advisory: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            for &(a, i) in hits {
                let advisory = &self.entries[a];
                let affected = &advisory.affected[i];
                let mut warn = |what: String| {
                    warnings.insert(format!("{}: {what}", advisory.id));
                };
                if let Some(fixes) = affects(package.ecosystem, &version, affected, &mut warn) {
                    by_advisory.entry(a).or_default().extend(fixes);
                }
            }
            for (a, fixes) in by_advisory {
                found.push(to_match(&self.entries[a], package, fixes));
            }
        }
        self.warnings.extend(warnings);
        found.sort_by(|a, b| (&a.package, &a.version, &a.id).cmp(&(&b.package, &b.version, &b.id)));
        found.dedup_by(|a, b| a.package == b.package && a.version == b.version && a.id == b.id);
        found
    }
}

/// `Some(fixed versions above it)` when `affected` covers `version`.
fn affects(
    ecosystem: Ecosystem,
    version: &Version,
    affected: &Affected,
    warn: &mut dyn FnMut(String),
) -> Option<Vec<String>> {
    let mut hit = affected
        .versions
        .iter()
        .any(|listed| match ecosystem.parse_version(listed) {
            Ok(v) => v == *version,
            Err(_) => false,
        });
    let mut fixes: Vec<(Version, String)> = Vec::new();
    for range in &affected.ranges {
        if !matches!(range.kind.as_str(), "ECOSYSTEM" | "SEMVER") {
            continue;
        }
        match evaluate(ecosystem, version, range) {
            Ok((inside, fixed)) => {
                hit |= inside;
                fixes.extend(fixed.into_iter().filter(|(v, _)| v > version));
            }
            Err(problem) => warn(problem),
        }
    }
    if !hit {
        return None;
    }
    fixes.sort();
    // The smallest fix above the version is the one to take; later ones are for
    // later affected ranges.
    Some(fixes.into_iter().take(1).map(|(_, text)| text).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
}

/// Whether the range contains `version`, and its `fixed` versions.
fn evaluate(
    ecosystem: Ecosystem,
    version: &Version,
    range: &Range,
) -> Result<(bool, Vec<(Version, String)>), String> {
    // (None = "0", the lowest of all)
    let mut events: Vec<(Option<Version>, EventKind, String)> = Vec::new();
    for event in &range.events {
        for (kind, text) in [
            (EventKind::Introduced, &event.introduced),
            (EventKind::Fixed, &event.fixed),
            (EventKind::LastAffected, &event.last_affected),
        ] {
            let Some(text) = text else { continue };
            let parsed =
                if kind == EventKind::Introduced && text == "0" {
                    None
                } else {
                    Some(ecosystem.parse_version(text).map_err(|e| {
                        format!("a {} range cannot be evaluated: {e:#}", range.kind)
                    })?)
                };
            events.push((parsed, kind, text.clone()));
        }
    }
    events.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut inside = false;
    let mut fixed = Vec::new();
    for (at, kind, text) in events {
        match kind {
            EventKind::Introduced => {
                if at.as_ref().is_none_or(|at| version >= at) {
                    inside = true;
                }
            }
            EventKind::Fixed => {
                if let Some(at) = at {
                    if version >= &at {
                        inside = false;
                    }
                    fixed.push((at, text));
                }
            }
            EventKind::LastAffected => {
                if at.as_ref().is_some_and(|at| version > at) {
                    inside = false;
                }
            }
        }
    }
    Ok((inside, fixed))
}

fn to_match(advisory: &Advisory, package: &Package, fixes: BTreeSet<String>) -> AdvisoryMatch {
    let title = advisory
        .summary
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            advisory.details.as_ref().and_then(|d| {
                let line = d.lines().find(|l| !l.trim().is_empty())?.trim();
                Some(match line.char_indices().nth(120) {
                    Some((cut, _)) => format!("{}…", &line[..cut]),
                    None => line.to_owned(),
                })
            })
        })
        .unwrap_or_else(|| advisory.id.clone());
    let url = ["ADVISORY", "WEB"]
        .iter()
        .find_map(|kind| advisory.references.iter().find(|r| r.kind == *kind))
        .or_else(|| advisory.references.first())
        .map(|r| r.url.clone());
    let date = advisory
        .published
        .as_deref()
        .or(advisory.modified.as_deref())
        .map(|d| d.get(..10).unwrap_or(d).to_owned())
        .unwrap_or_default();
    AdvisoryMatch {
        id: advisory.id.clone(),
        kind: AdvisoryKind::Vulnerability,
        package: package.name.clone(),
        version: package.version.clone(),
        title,
        date,
        patched: fixes.into_iter().collect(),
        url,
        severity: severity(advisory, package),
        aliases: advisory.aliases.clone(),
        ecosystem: package.ecosystem,
    }
}

/// From a CVSS vector (of the affected entry, else of the advisory), else from the
/// database's own word for it (GitHub's `database_specific.severity`).
fn severity(advisory: &Advisory, package: &Package) -> Option<String> {
    let affected = advisory.affected.iter().filter(|a| {
        a.package.as_ref().is_some_and(|p| {
            p.ecosystem == package.ecosystem.as_str()
                && package.ecosystem.normalize_name(&p.name) == package.name
        })
    });
    let vectors = affected
        .flat_map(|a| a.severity.iter())
        .chain(&advisory.severity)
        .filter(|s| s.kind.starts_with("CVSS"));
    for s in vectors {
        if let Ok(cvss) = s.score.parse::<cvss::Cvss>() {
            return Some(cvss.severity().to_string());
        }
    }
    advisory
        .database_specific
        .as_ref()?
        .get("severity")?
        .as_str()
        .map(str::to_lowercase)
}
