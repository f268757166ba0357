//! Lockfiles of any ecosystem, read into one model: each package's ecosystem, name,
//! version, and where known its source and checksum.
//!
//! | file | ecosystem | read with |
//! | --- | --- | --- |
//! | `Cargo.lock` | crates.io | `cargo-lock` |
//! | `requirements*.txt` (or another `.txt` of `name==version` pins, as `pip freeze` writes) | PyPI | line by line, as pip reads it |
//! | `poetry.lock`, `uv.lock` | PyPI | `toml` |
//! | `package-lock.json`, `npm-shrinkwrap.json` (lockfileVersion 2 or 3) | npm | `serde_json` |
//! | `go.mod` (with the checksums of `go.sum` beside it), `go.sum` | Go | line by line |
//!
//! The format comes from the file name. A directory is read as the lockfiles in it,
//! one per ecosystem (see [`Lockfile::find`]). Names are normalised per ecosystem
//! (PyPI: PEP 503, so `Flask` and `flask` are one package) and versions are ordered
//! by the ecosystem's own rules ([`Version`]: PEP 440 for PyPI, semver for crates.io
//! and npm, semver with a leading `v` for Go, whose pseudo-versions are semver
//! pre-releases). Every version is checked when the file is read, so a bad one is an
//! error naming the file and the package, not a silent mismatch later.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;

/// A package ecosystem, named as OSV names it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Ecosystem {
    /// Rust crates (Cargo.lock).
    #[default]
    #[serde(rename = "crates.io")]
    CratesIo,
    /// Python packages (requirements.txt, poetry.lock, uv.lock).
    #[serde(rename = "PyPI")]
    PyPI,
    /// JavaScript packages (package-lock.json).
    #[serde(rename = "npm")]
    Npm,
    /// Go modules (go.mod, go.sum).
    #[serde(rename = "Go")]
    Go,
}

impl Ecosystem {
    /// Every ecosystem warden reads.
    pub const ALL: [Ecosystem; 4] = [Self::CratesIo, Self::PyPI, Self::Npm, Self::Go];

    /// Its OSV name: `crates.io`, `PyPI`, `npm`, `Go`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CratesIo => "crates.io",
            Self::PyPI => "PyPI",
            Self::Npm => "npm",
            Self::Go => "Go",
        }
    }

    /// A package name as the ecosystem compares names: PyPI per PEP 503 (lowercase,
    /// each run of `-`, `_` and `.` as one `-`); the others as written.
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Self::PyPI => pep503(name),
            Self::CratesIo | Self::Npm | Self::Go => name.trim().to_owned(),
        }
    }

    /// Parses a version by the ecosystem's rules: PEP 440 for PyPI, semver for
    /// crates.io and npm, semver after an optional `v` for Go (go.mod writes
    /// `v1.2.3`, OSV `1.2.3`).
    pub fn parse_version(self, text: &str) -> anyhow::Result<Version> {
        let text = text.trim();
        match self {
            Self::PyPI => pep440_rs::Version::from_str(text)
                .map(Version::Pep440)
                .map_err(|e| anyhow::anyhow!("{text:?} is not a PEP 440 version ({e})")),
            Self::CratesIo | Self::Npm => semver::Version::parse(text)
                .map(Version::Semver)
                .map_err(|e| anyhow::anyhow!("{text:?} is not a semver version ({e})")),
            Self::Go => semver::Version::parse(text.strip_prefix('v').unwrap_or(text))
                .map(Version::Semver)
                .map_err(|e| anyhow::anyhow!("{text:?} is not a Go module version ({e})")),
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ecosystem {
    type Err = anyhow::Error;

    /// The OSV name, exactly (`PyPI`, not `pypi`).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .with_context(|| {
                format!("{s:?} is not an ecosystem warden reads (crates.io, PyPI, npm, Go)")
            })
    }
}

/// PEP 503 normalisation: lowercase, every run of `-`, `_`, `.` becomes one `-`.
fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A version, ordered by its ecosystem's rules. Versions of different ecosystems are
/// never compared with each other (they order by kind, semver first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// crates.io, npm, Go (without its `v`).
    Semver(semver::Version),
    /// PyPI.
    Pep440(pep440_rs::Version),
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Semver(v) => v.fmt(f),
            Self::Pep440(v) => v.fmt(f),
        }
    }
}

/// One package of a lockfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// Normalised for the ecosystem ([`Ecosystem::normalize_name`]).
    pub name: String,
    /// As the lockfile writes it (a Go version keeps its `v`).
    pub version: String,
    /// Where it comes from, when the lockfile says and it is not simply the
    /// ecosystem's registry: `path`, `path+DIR`, `git+URL`, `file:...` (npm),
    /// `registry+URL` (another index), ... For Cargo.lock, `crates.io`, `path` or the
    /// source URL, as the inventory shows it.
    pub source: Option<String>,
    /// The lockfile's hash of the package: Cargo's checksum, npm's integrity,
    /// a `--hash` of requirements.txt, the sdist's hash in poetry.lock and uv.lock,
    /// go.sum's `h1:` hash.
    pub checksum: Option<String>,
}

impl Package {
    /// The version, parsed by the ecosystem's rules.
    pub fn parsed_version(&self) -> anyhow::Result<Version> {
        self.ecosystem.parse_version(&self.version)
    }

    /// Whether it comes from a package registry (so registry advisories are about
    /// it), rather than from a local path, a git repository or a direct URL.
    pub fn from_registry(&self) -> bool {
        match self.source.as_deref() {
            None | Some("crates.io") => true,
            Some(s) => {
                s.starts_with("registry+")
                    || s.starts_with("sparse+")
                    || (self.ecosystem == Ecosystem::Npm
                        && (s.starts_with("https://") || s.starts_with("http://")))
            }
        }
    }
}

/// A lockfile format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    CargoLock,
    Requirements,
    PoetryLock,
    UvLock,
    PackageLock,
    GoMod,
    GoSum,
}

impl Format {
    /// The ecosystem its packages belong to.
    pub fn ecosystem(self) -> Ecosystem {
        match self {
            Self::CargoLock => Ecosystem::CratesIo,
            Self::Requirements | Self::PoetryLock | Self::UvLock => Ecosystem::PyPI,
            Self::PackageLock => Ecosystem::Npm,
            Self::GoMod | Self::GoSum => Ecosystem::Go,
        }
    }

    /// How the format is usually called.
    pub fn name(self) -> &'static str {
        match self {
            Self::CargoLock => "Cargo.lock",
            Self::Requirements => "requirements.txt",
            Self::PoetryLock => "poetry.lock",
            Self::UvLock => "uv.lock",
            Self::PackageLock => "package-lock.json",
            Self::GoMod => "go.mod",
            Self::GoSum => "go.sum",
        }
    }

    /// The format a file name says, if it says one. `requirements*.txt` is a
    /// requirements file; another `.txt` is one only if it holds `==` pins, which
    /// [`Lockfile::read`] checks.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "cargo.lock" => Self::CargoLock,
            "poetry.lock" => Self::PoetryLock,
            "uv.lock" => Self::UvLock,
            "package-lock.json" | "npm-shrinkwrap.json" => Self::PackageLock,
            "go.mod" => Self::GoMod,
            "go.sum" => Self::GoSum,
            _ if lower.starts_with("requirements") && lower.ends_with(".txt") => Self::Requirements,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file a [`Lockfile`] was read from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockedFile {
    /// Its path, or `REV:PATH (from git)` for a git revision.
    pub path: PathBuf,
    pub format: Format,
}

/// The packages of one lockfile, or of the lockfiles of a directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lockfile {
    /// The files read (a go.mod and the go.sum beside it are two).
    pub files: Vec<LockedFile>,
    /// Every package, in the order of the files; one entry per (ecosystem, name,
    /// version).
    pub packages: Vec<Package>,
}

/// The names a directory's lockfiles go by, preferred first within an ecosystem.
const DIRECTORY_NAMES: [&str; 8] = [
    "Cargo.lock",
    "uv.lock",
    "poetry.lock",
    "requirements.txt",
    "npm-shrinkwrap.json",
    "package-lock.json",
    "go.mod",
    "go.sum",
];

/// What a file names with `-r FILE`: its text and where it came from.
pub(crate) type Include<'a> = dyn Fn(&str) -> anyhow::Result<(String, String)> + 'a;

const KNOWN: &str = "Cargo.lock, requirements*.txt (or another .txt of name==version pins), \
                     poetry.lock, uv.lock, package-lock.json, npm-shrinkwrap.json, go.mod and go.sum";

impl Lockfile {
    /// Reads a lockfile, its format told by its name; or, for a directory, the
    /// lockfiles in it ([`Lockfile::find`]).
    pub fn read(path: &Path) -> anyhow::Result<Lockfile> {
        if path.is_dir() {
            let found = Self::find(path)?;
            anyhow::ensure!(
                !found.is_empty(),
                "no lockfile in {}: warden reads {KNOWN}",
                path.display()
            );
            let mut whole = Lockfile {
                files: Vec::new(),
                packages: Vec::new(),
            };
            for file in found {
                let part = Self::read_file(&file)?;
                whole.files.extend(part.files);
                whole.packages.extend(part.packages);
            }
            whole.dedup();
            return Ok(whole);
        }
        Self::read_file(path)
    }

    /// The lockfiles of a directory, one per ecosystem: `Cargo.lock`; `uv.lock`,
    /// else `poetry.lock`, else `requirements.txt`; `npm-shrinkwrap.json`, else
    /// `package-lock.json`; `go.mod` (with go.sum's checksums), else `go.sum`.
    pub fn find(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for name in DIRECTORY_NAMES {
            let path = dir.join(name);
            let Some(format) = Format::from_file_name(name) else {
                continue;
            };
            if path.is_file() && seen.insert(format.ecosystem()) {
                found.push(path);
            }
        }
        Ok(found)
    }

    fn read_file(path: &Path) -> anyhow::Result<Lockfile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the lockfile {}", path.display()))?;
        let format = detect(path, &text)?;
        let origin = path.display().to_string();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let include = move |name: &str| -> anyhow::Result<(String, String)> {
            let included = dir.join(name);
            let text = std::fs::read_to_string(&included).with_context(|| {
                format!(
                    "cannot read {}, which {origin} includes",
                    included.display()
                )
            })?;
            Ok((text, included.display().to_string()))
        };
        let mut lock = parse_with(&text, format, path, &include)?;
        // go.mod's versions with go.sum's checksums, when go.sum is beside it.
        if format == Format::GoMod {
            let sum = path.with_file_name("go.sum");
            if sum.is_file() {
                let text = std::fs::read_to_string(&sum)
                    .with_context(|| format!("cannot read {}", sum.display()))?;
                let sums = go_sum_hashes(&text, &sum.display().to_string())?;
                for package in &mut lock.packages {
                    if package.checksum.is_none() {
                        package.checksum = sums
                            .get(&(package.name.clone(), package.version.clone()))
                            .cloned();
                    }
                }
                lock.files.push(LockedFile {
                    path: sum,
                    format: Format::GoSum,
                });
            }
        }
        Ok(lock)
    }

    /// Parses a lockfile's text in a known format; `origin` names it in errors and
    /// in [`Lockfile::files`]. A requirements file's `-r FILE` cannot be followed
    /// here (there is no directory to find it in): it is an error.
    pub fn parse(text: &str, format: Format, origin: &str) -> anyhow::Result<Lockfile> {
        let include = |name: &str| -> anyhow::Result<(String, String)> {
            anyhow::bail!("cannot follow `-r {name}` in {origin}: read the file from disk")
        };
        parse_with(text, format, Path::new(origin), &include)
    }

    /// The ecosystems of its packages.
    pub fn ecosystems(&self) -> BTreeSet<Ecosystem> {
        self.packages.iter().map(|p| p.ecosystem).collect()
    }

    /// The Cargo.lock it was read from, if any.
    pub fn cargo_file(&self) -> Option<&LockedFile> {
        self.files.iter().find(|f| f.format == Format::CargoLock)
    }

    /// The files read, for a message: `examples/v1/requirements.txt`, or several
    /// joined with `, `.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        names.join(", ")
    }

    fn dedup(&mut self) {
        let mut seen = BTreeSet::new();
        self.packages
            .retain(|p| seen.insert((p.ecosystem, p.name.clone(), p.version.clone())));
    }
}

/// The format of the file at `path` whose text is `text`: from its name, else from
/// what it holds (any other file was read as a Cargo.lock before other formats
/// were, so `old.lock` still is one).
fn detect(path: &Path, text: &str) -> anyhow::Result<Format> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    if let Some(format) = Format::from_file_name(name) {
        return Ok(format);
    }
    let lower = name.to_ascii_lowercase();
    let top_level_key = |key: &str| text.lines().any(|l| l.starts_with(key));
    let format = if text.trim_start().starts_with('{') && text.contains("\"lockfileVersion\"") {
        Format::PackageLock
    } else if text.contains("@generated by Poetry") || top_level_key("lock-version") {
        Format::PoetryLock
    } else if top_level_key("requires-python") && top_level_key("version") {
        Format::UvLock
    } else if lower.ends_with(".txt") {
        let pinned = text.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#') && !l.starts_with('-') && l.contains("==")
        });
        anyhow::ensure!(
            pinned,
            "{} is not a requirements file warden can read: it pins nothing as \
             name==version (warden reads {KNOWN})",
            path.display()
        );
        Format::Requirements
    } else if lower.ends_with(".lock") || text.contains("[[package]]") {
        Format::CargoLock
    } else {
        anyhow::bail!(
            "cannot tell the lockfile format of {} from its name or contents: warden reads {KNOWN}",
            path.display()
        )
    };
    Ok(format)
}

/// The format of a lockfile named `name` (a path inside a git revision, say),
/// sniffing a `.txt` for pins as [`Lockfile::read`] does.
pub(crate) fn detect_named(name: &str, text: &str) -> anyhow::Result<Format> {
    detect(Path::new(name), text)
}

/// Parses `text`, following a requirements file's includes with `include`.
pub(crate) fn parse_with(
    text: &str,
    format: Format,
    origin: &Path,
    include: &Include<'_>,
) -> anyhow::Result<Lockfile> {
    let origin_text = origin.display().to_string();
    let packages = match format {
        Format::CargoLock => parse_cargo(text, &origin_text)?,
        Format::Requirements => {
            let mut packages = Vec::new();
            requirements(text, &origin_text, include, 0, &mut packages)?;
            packages
        }
        Format::PoetryLock => parse_poetry(text, &origin_text)?,
        Format::UvLock => parse_uv(text, &origin_text)?,
        Format::PackageLock => parse_npm(text, &origin_text)?,
        Format::GoMod => parse_go_mod(text, &origin_text)?,
        Format::GoSum => parse_go_sum(text, &origin_text)?,
    };
    let mut lock = Lockfile {
        files: vec![LockedFile {
            path: origin.to_path_buf(),
            format,
        }],
        packages,
    };
    lock.dedup();
    Ok(lock)
}

/// Checks a version against its ecosystem, naming the file and package on error.
fn checked(package: Package, origin: &str) -> anyhow::Result<Package> {
    package.parsed_version().with_context(|| {
        format!(
            "{origin}: package {} {}: its version cannot be compared",
            package.name, package.version
        )
    })?;
    Ok(package)
}

fn parse_cargo(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    let lock = crate::lockdiff::parse(text, origin)?;
    Ok(lock
        .packages
        .iter()
        .map(|p| Package {
            ecosystem: Ecosystem::CratesIo,
            name: p.name.as_str().to_owned(),
            version: p.version.to_string(),
            source: Some(crate::inventory::source_of(p)),
            checksum: p.checksum.as_ref().map(ToString::to_string),
        })
        .collect())
}

// ---------------------------------------------------------------- requirements.txt

/// Options pip accepts in a requirements file that install nothing by themselves.
const GLOBAL_OPTIONS_WITH_VALUE: [&str; 12] = [
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--no-binary",
    "--only-binary",
    "--use-feature",
    "-c",
    "--constraint",
    "--config-settings",
];
const GLOBAL_FLAGS: [&str; 4] = ["--no-index", "--pre", "--prefer-binary", "--require-hashes"];

/// Reads a requirements file as pip does: `#` comments (at the start of a line or
/// after whitespace), `\` line continuations, `-r`/`--requirement` includes (followed),
/// `-c` constraints and index options (ignored: they pin nothing), `-e` editable
/// installs (skipped: the project's own source, not a pinned dependency), and lines
/// `name[extras]==version ; marker --hash=...`. A line that pins nothing is an error
/// naming the file and line.
fn requirements(
    text: &str,
    origin: &str,
    include: &Include<'_>,
    depth: usize,
    out: &mut Vec<Package>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        depth < 16,
        "{origin}: requirements files include each other too deeply (a cycle of -r?)"
    );
    for (number, line) in logical_lines(text) {
        let at = |problem: String| anyhow::anyhow!("{origin}:{number}: {problem}");
        let line = strip_comment(&line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            let (option, value) = split_option(line);
            match option {
                "-r" | "--requirement" => {
                    let value = value.ok_or_else(|| at(format!("{option} needs a file name")))?;
                    let (text, included) = include(value).map_err(|e| at(format!("{e:#}")))?;
                    requirements(&text, &included, include, depth + 1, out)?;
                }
                "-e" | "--editable" => {}
                _ if GLOBAL_OPTIONS_WITH_VALUE.contains(&option) => {}
                _ if GLOBAL_FLAGS.contains(&option) => {}
                _ => {
                    return Err(at(format!(
                        "unknown option {option:?} (warden reads pins as `pip freeze` \
                         writes them, with -r, -c, -e, --hash and index options)"
                    )));
                }
            }
            continue;
        }
        out.push(requirement(line).map_err(at)?);
    }
    Ok(())
}

/// The file's lines with `\` continuations joined, each with the number of its
/// first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (continues, body) = match raw.trim_end().strip_suffix('\\') {
            Some(body) => (true, body),
            None => (false, raw),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !continues && let Some(done) = current.take() {
            out.push(done);
        }
    }
    out.extend(current);
    out
}

/// The line without a `#` comment (one at the start, or after whitespace, as pip
/// reads it: `#egg=` in a URL is not a comment).
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// `-r file`, `-rfile`, `--requirement=file`, `--requirement file` → (option, value).
fn split_option(line: &str) -> (&str, Option<&str>) {
    if let Some(rest) = line.strip_prefix("--") {
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let option = &line[..end + 2];
        let value = rest[end..]
            .trim_start_matches(|c: char| c == '=' || c.is_whitespace())
            .trim();
        return (option, (!value.is_empty()).then_some(value));
    }
    let option = line.get(..2).unwrap_or(line);
    let value = line.get(2..).unwrap_or("").trim();
    (option, (!value.is_empty()).then_some(value))
}

fn valid_python_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One requirement line: `name[extras]==version`, `name===version` or
/// `name[extras] @ URL`, then an optional `; marker` and per-requirement options
/// (`--hash=sha256:...`, kept as the checksum).
fn requirement(line: &str) -> Result<Package, String> {
    // Per-requirement options start at the first ` --`.
    let (spec, options) = match line.find(" --").or_else(|| line.find("\t--")) {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    let mut checksum = None;
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let hash = if let Some(value) = word.strip_prefix("--hash=") {
            Some(value)
        } else if word == "--hash" {
            words.next()
        } else {
            None
        };
        if let Some(hash) = hash
            && checksum.is_none()
        {
            checksum = Some(hash.to_owned());
        }
    }
    // A direct reference: `name @ URL ; marker` (the URL may hold `;` only after a space).
    if let Some((name_part, url)) = spec.split_once('@')
        && valid_python_name(strip_extras(name_part.trim()))
        && !name_part.contains("==")
    {
        let name = strip_extras(name_part.trim());
        let url = url.split(" ;").next().unwrap_or(url).trim();
        let url = url.split("\t;").next().unwrap_or(url).trim();
        let version = version_from_archive(name, url).ok_or_else(|| {
            format!(
                "`{}` names no version (a direct reference to {url}): pin it as name==version, \
                 or install a wheel or sdist whose file name carries its version",
                spec.trim()
            )
        })?;
        return python_package(name, &version, Some(url.to_owned()), checksum);
    }
    let spec = spec.split(';').next().unwrap_or(spec).trim();
    let Some((name, version)) = spec.split_once("==") else {
        return Err(format!(
            "`{spec}` is not pinned as name==version (warden compares exact versions, as \
             `pip freeze` writes them)"
        ));
    };
    let name = strip_extras(name.trim());
    let version = version.strip_prefix('=').unwrap_or(version).trim();
    if !valid_python_name(name) {
        return Err(format!("`{spec}`: {name:?} is not a Python package name"));
    }
    if version.is_empty() || version.contains(['*', ',', '<', '>', '!', '~', '=', ' ']) {
        return Err(format!(
            "`{spec}` is not one exact version (name==version, as `pip freeze` writes it)"
        ));
    }
    python_package(name, version, None, checksum)
}

fn python_package(
    name: &str,
    version: &str,
    source: Option<String>,
    checksum: Option<String>,
) -> Result<Package, String> {
    let package = Package {
        ecosystem: Ecosystem::PyPI,
        name: pep503(name),
        version: version.to_owned(),
        source,
        checksum,
    };
    package
        .parsed_version()
        .map_err(|e| format!("{name}: {e:#}"))?;
    Ok(package)
}

/// `name[extra1,extra2]` → `name`.
fn strip_extras(name: &str) -> &str {
    name.split('[').next().unwrap_or(name).trim()
}

/// The version in a wheel's or sdist's file name at the end of `url`
/// (`jsonfast-1.0.1-py3-none-any.whl`, `jsonfast-1.0.1.tar.gz`), when the file is
/// that package's.
fn version_from_archive(name: &str, url: &str) -> Option<String> {
    let file = url.split(['?', '#']).next()?.rsplit('/').next()?.to_owned();
    let stem = [".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    let wanted = pep503(name);
    for (i, _) in stem.match_indices('-') {
        if pep503(&stem[..i]) == wanted {
            let rest = &stem[i + 1..];
            let version = if file.ends_with(".whl") {
                rest.split('-').next()?
            } else {
                rest
            };
            return (!version.is_empty()).then(|| version.to_owned());
        }
    }
    None
}

// ---------------------------------------------------------------- poetry.lock

#[derive(serde::Deserialize)]
struct PoetryLock {
    #[serde(default)]
    package: Vec<PoetryPackage>,
    metadata: Option<PoetryMetadata>,
}

#[derive(serde::Deserialize)]
struct PoetryPackage {
    name: String,
    version: String,
    #[serde(default)]
    files: Vec<PoetryFile>,
    source: Option<PoetrySource>,
}

#[derive(serde::Deserialize)]
struct PoetryFile {
    file: String,
    hash: String,
}

#[derive(serde::Deserialize)]
struct PoetrySource {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    reference: Option<String>,
    resolved_reference: Option<String>,
}

#[derive(serde::Deserialize)]
struct PoetryMetadata {
    /// lock-version 1.x kept the files here, by package name.
    #[serde(default)]
    files: BTreeMap<String, Vec<PoetryFile>>,
}

/// The hash of the sdist if there is one (the same for every platform), else of
/// the first file.
fn poetry_hash(files: &[PoetryFile]) -> Option<String> {
    files
        .iter()
        .find(|f| f.file.ends_with(".tar.gz") || f.file.ends_with(".zip"))
        .or_else(|| files.first())
        .map(|f| f.hash.clone())
}

fn parse_poetry(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    let lock: PoetryLock =
        toml::from_str(text).with_context(|| format!("cannot read {origin} as a poetry.lock"))?;
    anyhow::ensure!(
        lock.metadata.is_some(),
        "{origin} is not a poetry.lock: it has no [metadata] table"
    );
    let old_files = lock.metadata.map(|m| m.files).unwrap_or_default();
    lock.package
        .into_iter()
        .map(|p| {
            let checksum = poetry_hash(&p.files)
                .or_else(|| old_files.get(&p.name).and_then(|files| poetry_hash(files)));
            let source = p.source.map(|s| match s.kind.as_str() {
                "legacy" => format!("registry+{}", s.url),
                "git" => {
                    let at = s.resolved_reference.or(s.reference);
                    match at {
                        Some(at) => format!("git+{}#{at}", s.url),
                        None => format!("git+{}", s.url),
                    }
                }
                "directory" | "file" => format!("path+{}", s.url),
                other => format!("{other}+{}", s.url),
            });
            checked(
                Package {
                    ecosystem: Ecosystem::PyPI,
                    name: pep503(&p.name),
                    version: p.version,
                    source,
                    checksum,
                },
                origin,
            )
        })
        .collect()
}

// ---------------------------------------------------------------- uv.lock

#[derive(serde::Deserialize)]
struct UvLock {
    version: Option<i64>,
    #[serde(default)]
    package: Vec<UvPackage>,
}

#[derive(serde::Deserialize)]
struct UvPackage {
    name: String,
    version: Option<String>,
    source: Option<BTreeMap<String, toml::Value>>,
    sdist: Option<UvDist>,
    #[serde(default)]
    wheels: Vec<UvDist>,
}

#[derive(serde::Deserialize)]
struct UvDist {
    hash: Option<String>,
}

fn parse_uv(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    let lock: UvLock =
        toml::from_str(text).with_context(|| format!("cannot read {origin} as a uv.lock"))?;
    anyhow::ensure!(
        lock.version.is_some(),
        "{origin} is not a uv.lock: it has no top-level `version`"
    );
    let mut packages = Vec::new();
    for p in lock.package {
        // { registry = URL } | { git = URL } | { path = P } | { directory = P } |
        // { editable = P } | { virtual = P } | { url = URL }
        let (kind, place) = p
            .source
            .as_ref()
            .and_then(|s| {
                [
                    "registry",
                    "git",
                    "url",
                    "path",
                    "directory",
                    "editable",
                    "virtual",
                ]
                .into_iter()
                .find_map(|k| Some((k, s.get(k)?.as_str()?.to_owned())))
            })
            .unzip();
        let local = matches!(kind, Some("path" | "directory" | "editable" | "virtual"));
        let Some(version) = p.version else {
            // The project itself (or a local package) with a dynamic version.
            anyhow::ensure!(
                local,
                "{origin}: package {} has no version and is not a local package",
                p.name
            );
            continue;
        };
        let source = match (kind, place) {
            (Some("registry"), Some(url)) => Some(format!("registry+{url}")),
            (Some("git"), Some(url)) => Some(format!("git+{url}")),
            (Some("url"), Some(url)) => Some(format!("url+{url}")),
            (Some("path" | "directory"), Some(p)) => Some(format!("path+{p}")),
            (Some(kind), Some(p)) => Some(format!("{kind}+{p}")),
            _ => None,
        };
        let checksum = p
            .sdist
            .and_then(|d| d.hash)
            .or_else(|| p.wheels.into_iter().find_map(|w| w.hash));
        packages.push(checked(
            Package {
                ecosystem: Ecosystem::PyPI,
                name: pep503(&p.name),
                version,
                source,
                checksum,
            },
            origin,
        )?);
    }
    Ok(packages)
}

// ---------------------------------------------------------------- package-lock.json

#[derive(serde::Deserialize)]
struct PackageLock {
    #[serde(rename = "lockfileVersion")]
    lockfile_version: Option<u64>,
    packages: Option<BTreeMap<String, NpmEntry>>,
}

#[derive(serde::Deserialize)]
struct NpmEntry {
    name: Option<String>,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
    #[serde(default)]
    link: bool,
}

fn parse_npm(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    let lock: PackageLock = serde_json::from_str(text)
        .with_context(|| format!("cannot read {origin} as a package-lock.json"))?;
    let version = lock.lockfile_version.unwrap_or(1);
    let Some(entries) = lock.packages.filter(|_| version >= 2) else {
        anyhow::bail!(
            "{origin} is a lockfileVersion {version} package-lock.json, which warden does not \
             read (v1 lists no installed paths): regenerate it with npm 7 or newer \
             (`npm install --package-lock-only`)"
        );
    };
    anyhow::ensure!(
        version <= 3,
        "{origin}: lockfileVersion {version} is newer than warden knows (2 and 3)"
    );
    let mut packages = Vec::new();
    for (key, entry) in &entries {
        // "" is the project; other keys without node_modules/ are workspace folders
        // or link targets, read through the links that point at them.
        let Some(at) = key.rfind("node_modules/") else {
            continue;
        };
        let installed_as = &key[at + "node_modules/".len()..];
        let name = entry.name.as_deref().unwrap_or(installed_as);
        let (version, source, checksum) = if entry.link {
            let Some(target) = entry.resolved.as_deref() else {
                continue;
            };
            let Some(version) = entries.get(target).and_then(|t| t.version.clone()) else {
                // A linked workspace package without a version: the project's own.
                continue;
            };
            (version, Some(format!("link:{target}")), None)
        } else {
            let version = entry
                .version
                .clone()
                .with_context(|| format!("{origin}: {key:?} has no version"))?;
            (version, entry.resolved.clone(), entry.integrity.clone())
        };
        packages.push(checked(
            Package {
                ecosystem: Ecosystem::Npm,
                name: name.to_owned(),
                version,
                source,
                checksum,
            },
            origin,
        )?);
    }
    Ok(packages)
}

// ---------------------------------------------------------------- go.mod, go.sum

/// The words of a go.mod line without its `//` comment; quoted paths unquoted.
fn go_words(line: &str) -> Vec<String> {
    let line = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    line.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '`').to_owned())
        .collect()
}

struct Replace {
    old: String,
    old_version: Option<String>,
    new: String,
    new_version: Option<String>,
}

fn parse_replace(words: &[String], origin: &str, number: usize) -> anyhow::Result<Replace> {
    let arrow = words
        .iter()
        .position(|w| w == "=>")
        .with_context(|| format!("{origin}:{number}: a replace without `=>`"))?;
    let (left, right) = (&words[..arrow], &words[arrow + 1..]);
    let bad = || anyhow::anyhow!("{origin}:{number}: cannot read this replace directive");
    Ok(Replace {
        old: left.first().ok_or_else(bad)?.clone(),
        old_version: left.get(1).cloned(),
        new: right.first().ok_or_else(bad)?.clone(),
        new_version: right.get(1).cloned(),
    })
}

/// go.mod's `require`d modules — with Go's pruned module graphs (go 1.17 and later)
/// every module the build needs — with `replace` directives applied: a replacement
/// module takes the package's name and version; a local directory keeps the
/// required version, with the directory as its source.
fn parse_go_mod(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    let mut requires: Vec<(String, String)> = Vec::new();
    let mut replaces: Vec<Replace> = Vec::new();
    let mut block: Option<String> = None;
    let mut saw_module = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let words = go_words(line);
        let Some(first) = words.first() else {
            continue;
        };
        if let Some(verb) = &block {
            if first == ")" {
                block = None;
                continue;
            }
            match verb.as_str() {
                "require" => {
                    let version = words.get(1).with_context(|| {
                        format!("{origin}:{number}: a require without a version")
                    })?;
                    requires.push((first.clone(), version.clone()));
                }
                "replace" => replaces.push(parse_replace(&words, origin, number)?),
                _ => {}
            }
            continue;
        }
        if words.len() == 2 && words[1] == "(" {
            block = Some(first.clone());
            continue;
        }
        match first.as_str() {
            "module" => saw_module = true,
            "require" => {
                let (Some(path), Some(version)) = (words.get(1), words.get(2)) else {
                    anyhow::bail!("{origin}:{number}: a require needs a module and a version");
                };
                requires.push((path.clone(), version.clone()));
            }
            "replace" => replaces.push(parse_replace(&words[1..], origin, number)?),
            _ => {}
        }
    }
    anyhow::ensure!(
        saw_module,
        "{origin} is not a go.mod: it has no `module` line"
    );
    let mut packages = Vec::new();
    for (path, version) in requires {
        let replace = replaces
            .iter()
            .find(|r| r.old == path && r.old_version.as_ref().is_none_or(|v| *v == version));
        let package = match replace {
            Some(r) if r.new_version.is_none() => Package {
                ecosystem: Ecosystem::Go,
                name: path,
                version,
                source: Some(format!("path+{}", r.new)),
                checksum: None,
            },
            Some(r) => Package {
                ecosystem: Ecosystem::Go,
                name: r.new.clone(),
                version: r.new_version.clone().unwrap_or_default(),
                source: None,
                checksum: None,
            },
            None => Package {
                ecosystem: Ecosystem::Go,
                name: path,
                version,
                source: None,
                checksum: None,
            },
        };
        packages.push(checked(package, origin)?);
    }
    Ok(packages)
}

/// go.sum's module hashes (not the `/go.mod` ones), by (module, version).
fn go_sum_hashes(text: &str, origin: &str) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let mut map = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let [module, version, hash] = words[..] else {
            anyhow::bail!(
                "{origin}:{}: a go.sum line is `module version hash`",
                index + 1
            );
        };
        if version.ends_with("/go.mod") {
            continue;
        }
        map.insert((module.to_owned(), version.to_owned()), hash.to_owned());
    }
    Ok(map)
}

/// go.sum alone: the modules whose code was hashed (a module listed only by its
/// `/go.mod` was needed for version selection, not built).
fn parse_go_sum(text: &str, origin: &str) -> anyhow::Result<Vec<Package>> {
    go_sum_hashes(text, origin)?
        .into_iter()
        .map(|((name, version), hash)| {
            checked(
                Package {
                    ecosystem: Ecosystem::Go,
                    name,
                    version,
                    source: None,
                    checksum: Some(hash),
                },
                origin,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(eco: Ecosystem, s: &str) -> Version {
        eco.parse_version(s).unwrap()
    }

    #[test]
    fn versions_order_by_each_ecosystems_rules() {
        use Ecosystem::*;
        assert!(v(PyPI, "1.0.10") > v(PyPI, "1.0.9"));
        assert!(v(PyPI, "2.0.0rc1") < v(PyPI, "2.0.0"));
        assert!(v(PyPI, "2.0.0.dev1") < v(PyPI, "2.0.0a1"));
        assert!(v(PyPI, "2.0.0.post1") > v(PyPI, "2.0.0"));
        assert_eq!(v(PyPI, "1.0"), v(PyPI, "1.0.0"));
        assert!(v(Npm, "1.0.0-beta.2") < v(Npm, "1.0.0"));
        assert!(v(Npm, "1.0.0-beta.11") > v(Npm, "1.0.0-beta.2"));
        assert!(v(CratesIo, "1.0.10") > v(CratesIo, "1.0.9"));
        assert_eq!(v(Go, "v1.2.3"), v(Go, "1.2.3"));
        // A pseudo-version is a pre-release of the next patch.
        let pseudo = v(Go, "v1.2.4-0.20240101120000-0123456789ab");
        assert!(pseudo > v(Go, "v1.2.3") && pseudo < v(Go, "v1.2.4"));
        assert!(
            v(Go, "v0.0.0-20240102000000-aaaaaaaaaaaa")
                > v(Go, "v0.0.0-20240101000000-bbbbbbbbbbbb")
        );
        assert!(Npm.parse_version("1.0").is_err());
        assert!(PyPI.parse_version("not a version").is_err());
    }

    #[test]
    fn python_names_are_normalised_per_pep_503() {
        assert_eq!(
            Ecosystem::PyPI.normalize_name("Foo.Bar__baz-Qux"),
            "foo-bar-baz-qux"
        );
        assert_eq!(Ecosystem::PyPI.normalize_name("MarkupSafe"), "markupsafe");
        assert_eq!(Ecosystem::Npm.normalize_name("@Scope/Name"), "@Scope/Name");
        assert_eq!("PyPI".parse::<Ecosystem>().unwrap(), Ecosystem::PyPI);
        assert!("pypi".parse::<Ecosystem>().is_err());
    }

    #[test]
    fn formats_come_from_file_names() {
        assert_eq!(
            Format::from_file_name("Cargo.lock"),
            Some(Format::CargoLock)
        );
        assert_eq!(
            Format::from_file_name("requirements-dev.txt"),
            Some(Format::Requirements)
        );
        assert_eq!(
            Format::from_file_name("npm-shrinkwrap.json"),
            Some(Format::PackageLock)
        );
        assert_eq!(Format::from_file_name("notes.txt"), None);
        assert_eq!(
            detect_named("pins.txt", "# x\nflask==3.0.0\n").unwrap(),
            Format::Requirements
        );
        let err = detect_named("notes.txt", "just words\n").unwrap_err();
        assert!(format!("{err:#}").contains("pins nothing"), "{err:#}");
        let err = detect_named("notes.md", "just words\n").unwrap_err();
        assert!(format!("{err:#}").contains("cannot tell the lockfile format of notes.md"));
        assert_eq!(
            detect_named("old.lock", "version = 3\n").unwrap(),
            Format::CargoLock
        );
        assert_eq!(
            detect_named("before.json", "{\"lockfileVersion\": 3, \"packages\": {}}").unwrap(),
            Format::PackageLock
        );
        assert_eq!(
            detect_named("base.lock", "version = 1\nrequires-python = \">=3.12\"\n").unwrap(),
            Format::UvLock
        );
    }

    fn reqs(text: &str) -> anyhow::Result<Vec<Package>> {
        Ok(Lockfile::parse(text, Format::Requirements, "requirements.txt")?.packages)
    }

    #[test]
    fn requirement_lines_as_pip_reads_them() {
        let text = "\
# a comment
--index-url https://example.org/simple

Flask[async]==3.0.0 ; python_version >= \"3.8\"  # trailing comment
zope.interface==6.4.post2 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via flask
-e ./local-project
-c constraints.txt
legacy===1.0
jsonfast @ file:///srv/wheels/jsonfast-1.0.1-py3-none-any.whl
";
        let got = reqs(text).unwrap();
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("flask", "3.0.0"),
                ("zope-interface", "6.4.post2"),
                ("legacy", "1.0"),
                ("jsonfast", "1.0.1")
            ]
        );
        assert_eq!(got[1].checksum.as_deref(), Some("sha256:aaaa"));
        assert_eq!(
            got[3].source.as_deref(),
            Some("file:///srv/wheels/jsonfast-1.0.1-py3-none-any.whl")
        );
        assert!(!got[3].from_registry());
        assert!(got[0].from_registry());
    }

    #[test]
    fn a_line_that_pins_nothing_is_named_by_file_and_line() {
        for (text, line, says) in [
            (
                "flask==3.0.0\nrequests>=2.0\n",
                2,
                "is not pinned as name==version",
            ),
            ("\n\nflask==3.*\n", 3, "is not one exact version"),
            ("flask==three\n", 1, "is not a PEP 440 version"),
            ("--frobnicate\n", 1, "unknown option"),
            (
                "x @ git+https://example.org/x.git@abc\n",
                1,
                "names no version",
            ),
            ("-r other.txt\n", 1, "cannot follow `-r other.txt`"),
        ] {
            let err = format!("{:#}", reqs(text).unwrap_err());
            assert!(
                err.contains(&format!("requirements.txt:{line}: ")) && err.contains(says),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn includes_are_followed_from_disk_and_a_directory_finds_its_lockfiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.txt"), "click==8.1.7\n").unwrap();
        std::fs::write(
            dir.path().join("requirements.txt"),
            "-r base.txt\nflask==3.0.0\n",
        )
        .unwrap();
        let lock = Lockfile::read(&dir.path().join("requirements.txt")).unwrap();
        let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["click", "flask"]);
        std::fs::write(
            dir.path().join("requirements-loop.txt"),
            "-r requirements-loop.txt\n",
        )
        .unwrap();
        let err = Lockfile::read(&dir.path().join("requirements-loop.txt")).unwrap_err();
        assert!(format!("{err:#}").contains("too deeply"), "{err:#}");

        std::fs::write(
            dir.path().join("go.mod"),
            "module example.org/app\n\ngo 1.22\n\nrequire golang.org/x/text v0.14.0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("go.sum"),
            "golang.org/x/text v0.14.0 h1:abc=\ngolang.org/x/text v0.14.0/go.mod h1:def=\n",
        )
        .unwrap();
        let lock = Lockfile::read(dir.path()).unwrap();
        assert_eq!(
            lock.ecosystems(),
            BTreeSet::from([Ecosystem::PyPI, Ecosystem::Go])
        );
        let text = lock
            .packages
            .iter()
            .find(|p| p.name == "golang.org/x/text")
            .unwrap();
        assert_eq!(text.checksum.as_deref(), Some("h1:abc="));
        assert_eq!(lock.files.len(), 3, "requirements.txt, go.mod, go.sum");

        let empty = tempfile::tempdir().unwrap();
        let err = Lockfile::read(empty.path()).unwrap_err();
        assert!(format!("{err:#}").contains("no lockfile in"), "{err:#}");
    }

    #[test]
    fn package_lock_v1_is_refused_with_what_to_do() {
        let v1 = r#"{"name":"x","version":"1.0.0","lockfileVersion":1,"dependencies":{"ms":{"version":"2.1.3"}}}"#;
        let err = format!(
            "{:#}",
            Lockfile::parse(v1, Format::PackageLock, "package-lock.json").unwrap_err()
        );
        assert!(
            err.contains("lockfileVersion 1") && err.contains("npm 7 or newer"),
            "{err}"
        );
        let broken = format!(
            "{:#}",
            Lockfile::parse("{", Format::PackageLock, "p.json").unwrap_err()
        );
        assert!(
            broken.contains("cannot read p.json as a package-lock.json"),
            "{broken}"
        );
    }

    #[test]
    fn npm_links_aliases_and_nested_copies() {
        let text = r#"{
          "lockfileVersion": 3,
          "packages": {
            "": { "name": "app", "dependencies": { "lib": "file:../lib" } },
            "../lib": { "name": "lib", "version": "0.3.0" },
            "node_modules/lib": { "resolved": "../lib", "link": true },
            "node_modules/my-ms": { "name": "ms", "version": "2.1.3", "integrity": "sha512-x" },
            "node_modules/debug": { "version": "4.4.0" },
            "node_modules/debug/node_modules/ms": { "version": "2.1.2" },
            "node_modules/@types/node": { "version": "20.1.0-beta.1" }
          }
        }"#;
        let lock = Lockfile::parse(text, Format::PackageLock, "package-lock.json").unwrap();
        let got: Vec<String> = lock
            .packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [
                "@types/node 20.1.0-beta.1",
                "debug 4.4.0",
                "ms 2.1.2",
                "lib 0.3.0",
                "ms 2.1.3"
            ]
        );
        let lib = lock.packages.iter().find(|p| p.name == "lib").unwrap();
        assert_eq!(lib.source.as_deref(), Some("link:../lib"));
        assert!(!lib.from_registry());
    }

    #[test]
    fn go_mod_applies_replacements() {
        let text = "\
module example.org/app // the app

go 1.22

require (
\tgithub.com/a/b v1.2.3
\tgithub.com/c/d v0.0.0-20240101120000-0123456789ab // indirect
\tgithub.com/e/f v2.0.0+incompatible
)

require github.com/local/x v1.0.0

replace github.com/a/b v1.2.3 => github.com/fork/b v1.2.4
replace github.com/local/x => ../x
";
        let lock = Lockfile::parse(text, Format::GoMod, "go.mod").unwrap();
        let got: Vec<String> = lock
            .packages
            .iter()
            .map(|p| format!("{} {} {:?}", p.name, p.version, p.source))
            .collect();
        assert_eq!(
            got,
            [
                "github.com/fork/b v1.2.4 None",
                "github.com/c/d v0.0.0-20240101120000-0123456789ab None",
                "github.com/e/f v2.0.0+incompatible None",
                "github.com/local/x v1.0.0 Some(\"path+../x\")",
            ]
        );
        let err = format!(
            "{:#}",
            Lockfile::parse("go 1.22\n", Format::GoMod, "go.mod").unwrap_err()
        );
        assert!(err.contains("no `module` line"), "{err}");
        let err = format!(
            "{:#}",
            Lockfile::parse("a v1 h1:x extra\n", Format::GoSum, "go.sum").unwrap_err()
        );
        assert!(err.contains("go.sum:1:"), "{err}");
    }
}
