//! The RustSec advisory database: where it is, how old it is, and which of its
//! advisories apply to the packages of a lockfile.
//!
//! The database is a directory of advisories, one folder per crate
//! (`crates/<name>/RUSTSEC-YYYY-NNNN.md`). Matching uses the `rustsec` crate's own
//! query ([`rustsec::database::Query`]), as `cargo audit` does, so both report the
//! same advisories; but only the folders of crates in the lockfile are read and
//! parsed, in parallel, rather than all of the ~1,200 advisories.
//!
//! Fetching the live database is done with the `git` command (a clone or a
//! fast-forward of a git checkout), which keeps the heavy `gix` stack out of the
//! build; when it fails the local copy is used and its age is said.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustsec::advisory::{Advisory, Informational};
use rustsec::database::Query;
use rustsec::{Collection, Lockfile};
use time::Date;

use crate::lockfile::Ecosystem;

/// Where the live database is cloned from.
pub const UPSTREAM: &str = "https://github.com/rustsec/advisory-db.git";

/// How long a fetch may take before the local copy is used instead.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// An advisory database on disk and what is known of its age.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdvisoryDb {
    pub path: PathBuf,
    /// The day of its last upstream change (git commit, or SNAPSHOT.txt's date),
    /// else of the directory's last modification.
    pub updated: Option<String>,
    /// Days from `updated` to today.
    pub age_days: Option<i64>,
    /// What happened when getting it: fetched, could not fetch, a snapshot, ...
    pub note: String,
}

/// How to find the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `--advisory-db DIR`; `None`: `$CARGO_HOME/advisory-db` like cargo-audit.
    pub dir: Option<PathBuf>,
    /// Try to fetch the live database (`--no-fetch` turns it off).
    pub fetch: bool,
}

/// The default location, shared with cargo-audit: `$CARGO_HOME/advisory-db`.
pub fn default_dir() -> Option<PathBuf> {
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cargo"),
    };
    Some(cargo_home.join("advisory-db"))
}

/// Finds the database (fetching it when asked and possible) and dates it.
pub fn locate(options: &DbOptions, today: Date) -> anyhow::Result<AdvisoryDb> {
    let explicit = options.dir.is_some();
    let path = match &options.dir {
        Some(dir) => dir.clone(),
        None => default_dir().context(
            "cannot tell where the advisory database lives (neither CARGO_HOME nor HOME is \
             set): pass --advisory-db DIR",
        )?,
    };
    let is_git = path.join(".git").exists();
    let note = if !path.exists() {
        if !options.fetch || explicit {
            anyhow::bail!(
                "no advisory database at {}: pass --advisory-db DIR with a copy of \
                 https://github.com/rustsec/advisory-db{}",
                path.display(),
                if options.fetch {
                    ""
                } else {
                    ", or drop --no-fetch to clone it there"
                }
            );
        }
        match git(
            None,
            &["clone", "--quiet", "--depth", "1", UPSTREAM],
            Some(&path),
        ) {
            Ok(()) => format!("fetched {UPSTREAM}"),
            Err(error) => anyhow::bail!(
                "no advisory database at {} and cannot fetch it ({error}): pass \
                 --advisory-db DIR with a local copy of the RustSec advisory database",
                path.display()
            ),
        }
    } else if !options.fetch {
        "not fetched (--no-fetch)".to_owned()
    } else if is_git {
        match git(Some(&path), &["pull", "--quiet", "--ff-only"], None) {
            Ok(()) => "fetched the live database".to_owned(),
            Err(error) => {
                format!("could not fetch the live database ({error}): using the local copy")
            }
        }
    } else {
        "a snapshot (not a git checkout), used as it is".to_owned()
    };
    anyhow::ensure!(
        path.join("crates").is_dir(),
        "{} is not a RustSec advisory database (it has no crates/ folder): pass \
         --advisory-db DIR with a copy of https://github.com/rustsec/advisory-db",
        path.display()
    );
    let updated = last_update(&path);
    let age_days = updated.map(|d| (today - d).whole_days());
    Ok(AdvisoryDb {
        path,
        updated: updated.map(|d| d.to_string()),
        age_days,
        note,
    })
}

impl AdvisoryDb {
    /// One line for a report: where, how old, what happened.
    pub fn describe(&self) -> String {
        let age = match (&self.updated, self.age_days) {
            (Some(day), Some(days)) => format!("last updated {day}, {days} days old"),
            _ => "age unknown".to_owned(),
        };
        format!("{} ({age}; {})", self.path.display(), self.note)
    }
}

/// Runs git with a time limit, without prompting for credentials.
fn git(dir: Option<&Path>, args: &[&str], target: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command.args(args);
    if let Some(target) = target {
        command.arg(target);
    }
    let mut child = command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let line = stderr
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("git failed");
                return Err(line.to_owned());
            }
            Ok(None) if started.elapsed() > FETCH_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", FETCH_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The day of the database's last change: its last git commit, the date in a
/// snapshot's SNAPSHOT.txt, or the modification time of its crates/ folder.
fn last_update(path: &Path) -> Option<Date> {
    if path.join(".git").exists() {
        let output = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(["log", "-1", "--format=%cs"])
            .output()
            .ok()?;
        if output.status.success()
            && let Ok(date) = crate::policy::parse_date(&String::from_utf8_lossy(&output.stdout))
        {
            return Some(date);
        }
    }
    if let Ok(text) = std::fs::read_to_string(path.join("SNAPSHOT.txt")) {
        let found = text
            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .find_map(|word| {
                (word.len() == 10)
                    .then(|| crate::policy::parse_date(word).ok())
                    .flatten()
            });
        if found.is_some() {
            return found;
        }
    }
    let modified = std::fs::metadata(path.join("crates"))
        .ok()?
        .modified()
        .ok()?;
    Some(time::OffsetDateTime::from(modified).date())
}

/// What kind of advisory matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvisoryKind {
    Vulnerability,
    Unsound,
    Unmaintained,
    Notice,
}

impl std::fmt::Display for AdvisoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vulnerability => "vulnerability",
            Self::Unsound => "unsound",
            Self::Unmaintained => "unmaintained",
            Self::Notice => "notice",
        })
    }
}

/// One advisory that applies to one package of the lockfile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdvisoryMatch {
    pub id: String,
    pub kind: AdvisoryKind,
    pub package: String,
    pub version: String,
    pub title: String,
    pub date: String,
    /// The versions that fix it (`>=1.2.3`); empty when none does.
    pub patched: Vec<String>,
    pub url: Option<String>,
    /// `Some(severity)` from its CVSS score, when it has one.
    pub severity: Option<String>,
    /// Other IDs of the same advisory (CVE, GHSA, ...); given for OSV advisories.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The package's ecosystem; absent for crates.io.
    #[serde(skip_serializing_if = "is_crates_io")]
    pub ecosystem: Ecosystem,
}

fn is_crates_io(ecosystem: &Ecosystem) -> bool {
    *ecosystem == Ecosystem::CratesIo
}

/// Reads the advisories of the crates named in `lockfile` and returns those that
/// apply to its packages, sorted by package, version and ID. The matching rules are
/// rustsec's (and so cargo-audit's): packages from crates.io only, withdrawn
/// advisories skipped, informational ones of an unknown kind skipped.
pub fn scan(db_path: &Path, lockfile: &Lockfile) -> anyhow::Result<Vec<AdvisoryMatch>> {
    let names: BTreeSet<&str> = lockfile
        .packages
        .iter()
        .filter(|p| p.source.as_ref().is_some_and(|s| s.is_default_registry()))
        .map(|p| p.name.as_str())
        .collect();
    let by_crate = load_for(db_path, names.into_iter().collect())?;
    let vulnerability = Query::crate_scope();
    let informational = Query::crate_scope().informational(true);
    let mut found = Vec::new();
    for package in &lockfile.packages {
        if !package
            .source
            .as_ref()
            .is_some_and(|s| s.is_default_registry())
        {
            continue;
        }
        let Some(advisories) = by_crate.get(package.name.as_str()) else {
            continue;
        };
        for advisory in advisories {
            let kind = if vulnerability.clone().package(package).matches(advisory) {
                AdvisoryKind::Vulnerability
            } else if informational.clone().package(package).matches(advisory) {
                match &advisory.metadata.informational {
                    Some(Informational::Unsound) => AdvisoryKind::Unsound,
                    Some(Informational::Unmaintained) => AdvisoryKind::Unmaintained,
                    Some(Informational::Notice) => AdvisoryKind::Notice,
                    _ => continue,
                }
            } else {
                continue;
            };
            found.push(AdvisoryMatch {
                id: advisory.metadata.id.to_string(),
                kind,
                package: package.name.to_string(),
                version: package.version.to_string(),
                title: advisory.metadata.title.clone(),
                date: advisory.metadata.date.as_str().to_owned(),
                patched: advisory
                    .versions
                    .patched()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                url: advisory
                    .metadata
                    .id
                    .url()
                    .or_else(|| advisory.metadata.url.as_ref().map(ToString::to_string)),
                severity: advisory.severity().map(|s| s.to_string()),
                aliases: Vec::new(),
                ecosystem: Ecosystem::CratesIo,
            });
        }
    }
    found.sort_by(|a, b| (&a.package, &a.version, &a.id).cmp(&(&b.package, &b.version, &b.id)));
    found.dedup_by(|a, b| a.package == b.package && a.version == b.version && a.id == b.id);
    Ok(found)
}

/// The advisories of some crates, by crate name.
type ByCrate = Vec<(String, Vec<Advisory>)>;

/// Loads the advisories of `names` from `db/crates/<name>/`, spread over the cores.
fn load_for(db: &Path, names: Vec<&str>) -> anyhow::Result<BTreeMap<String, Vec<Advisory>>> {
    let crates = db.join(Collection::Crates.as_str());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = names.len().div_ceil(workers).max(1);
    let results: Vec<anyhow::Result<ByCrate>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let crates = &crates;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for name in part {
                        let advisories = load_crate(&crates.join(name), name)?;
                        if !advisories.is_empty() {
                            out.push(((*name).to_owned(), advisories));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an advisory reader panicked")))
            })
            .collect()
    });
    let mut map = BTreeMap::new();
    for result in results {
        map.extend(result?);
    }
    Ok(map)
}

/// The advisories in one crate's folder (none when it has no folder). Same checks
/// as `rustsec::Database::open`: `.md` files named after their ID, in the folder of
/// their package; placeholders skipped.
fn load_crate(dir: &Path, name: &str) -> anyhow::Result<Vec<Advisory>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut advisories = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file.starts_with('.') {
            continue;
        }
        anyhow::ensure!(
            file.ends_with(".md"),
            "advisory database: unexpected file {}",
            path.display()
        );
        let mut advisory = Advisory::load_file(&path)
            .with_context(|| format!("advisory database: cannot parse {}", path.display()))?;
        anyhow::ensure!(
            advisory.metadata.package.as_str() == name,
            "advisory database: {} is about {}, not {name}",
            path.display(),
            advisory.metadata.package
        );
        match advisory.metadata.collection {
            None => advisory.metadata.collection = Some(Collection::Crates),
            Some(Collection::Crates) => {}
            Some(other) => anyhow::bail!(
                "advisory database: {} is in crates/ but says collection {other:?}",
                path.display()
            ),
        }
        if advisory.metadata.id.is_placeholder() {
            continue;
        }
        advisories.push(advisory);
    }
    Ok(advisories)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snapshot() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/advisory-db"
        ))
    }

    fn lock(packages: &[(&str, &str)]) -> Lockfile {
        let mut text = String::from("version = 3\n");
        for (name, version) in packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            ));
        }
        text.parse().unwrap()
    }

    #[test]
    fn finds_what_rustsec_database_finds() {
        let lockfile = lock(&[
            ("smallvec", "1.6.0"),
            ("time", "0.1.43"),
            ("atty", "0.2.14"),
            ("serde", "1.0.200"),
        ]);
        let ours: BTreeSet<String> = scan(&snapshot(), &lockfile)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        let db = rustsec::Database::open(&snapshot()).unwrap();
        let mut theirs: BTreeSet<String> = db
            .query_vulnerabilities(&lockfile, &Query::crate_scope())
            .into_iter()
            .map(|v| v.advisory.id.to_string())
            .collect();
        theirs.extend(
            db.query_vulnerabilities(&lockfile, &Query::crate_scope().informational(true))
                .into_iter()
                .filter(|v| {
                    v.advisory
                        .informational
                        .as_ref()
                        .is_some_and(|i| i.warning_kind().is_some())
                })
                .map(|v| v.advisory.id.to_string()),
        );
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_missing_database_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            dir: Some(dir.path().join("nothing")),
            fetch: true,
        };
        let today = Date::from_calendar_date(2026, time::Month::January, 1).unwrap();
        let err = format!("{:#}", locate(&options, today).unwrap_err());
        assert!(err.contains("--advisory-db DIR"), "{err}");
        let options = DbOptions {
            dir: Some(dir.path().to_owned()),
            fetch: false,
        };
        let err = format!("{:#}", locate(&options, today).unwrap_err());
        assert!(err.contains("not a RustSec advisory database"), "{err}");
    }

    #[test]
    fn the_snapshot_is_dated_from_its_snapshot_file() {
        let options = DbOptions {
            dir: Some(snapshot()),
            fetch: true,
        };
        let stated = std::fs::read_to_string(snapshot().join("SNAPSHOT.txt")).unwrap();
        let today = Date::from_calendar_date(2030, time::Month::January, 1).unwrap();
        let db = locate(&options, today).unwrap();
        let updated = db.updated.clone().unwrap();
        assert!(
            stated.contains(&updated),
            "{updated} is not in SNAPSHOT.txt"
        );
        let age = today - crate::policy::parse_date(&updated).unwrap();
        assert_eq!(db.age_days, Some(age.whole_days()));
        assert!(db.note.contains("snapshot"), "{}", db.note);
    }
}
