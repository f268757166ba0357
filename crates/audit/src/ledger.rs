//! The update ledger (`ops/dependency-ledger.toml`): one entry per change of
//! the lockfile (Cargo.lock, or any format [`Lockfile::read`] knows) — when, the lockfile's SHA-256, each package that changed, why, and
//! what the update measurably did to memory and latency (from a `warden gate`
//! report). It is reviewed in diffs like code, so entries are appended as text and
//! old ones are never rewritten.
//!
//! ```toml
//! [[entry]]
//! date = "2026-11-25"
//! lockfile_sha256 = "5d0c…"
//! packages = 412
//! reason = "serde_json 1.0.121 fixes a quadratic parse"
//! changes = [
//!     { name = "serde_json", old = "1.0.120", new = "1.0.121", kind = "upgraded", bump = "patch" },
//! ]
//!
//! [entry.impact]                  # absent when no gate report was given
//! gate_verdict = "pass"           # the gate's verdict: every check passed
//! tests_passed = true
//! leak = "heap grows 0.2 B per request (95% CI -0.1 B to 0.5 B) over 8 rounds: no leak"
//! heap_delta_pct = 1.2            # peak heap at quiet points, candidate vs baseline
//! heap_delta_bytes = 131072
//! rss_delta_pct = 0.4
//! rss_delta_bytes = 212992
//! p99_delta_pct = -2.5
//! report = "gate/gate.json"
//! ```
//!
//! The changes of a new entry are computed against the lockfile of the last entry,
//! found in git history by its SHA-256 (or given with `--previous`). A change of
//! another ecosystem than crates.io also says which (`ecosystem = "PyPI"`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use time::Date;

use crate::lockdiff::{self, PackageChange};
use crate::lockfile::{Ecosystem, Lockfile};

/// What the file says above the first entry, for a ledger of `lockfile`.
fn header(lockfile: &Path) -> String {
    let name = lockfile
        .file_name()
        .map_or_else(|| "the lockfile".into(), |n| n.to_string_lossy());
    let option = if name == "Cargo.lock" {
        String::new()
    } else {
        format!(" --lockfile {}", lockfile.display())
    };
    format!(
        "\
# The dependency ledger: one entry per change of {name}, oldest first, with the
# packages that changed, why, and the measured impact of the update (from a
# `warden gate` report). Append with
#   warden deps ledger record{option} --reason \"...\" [--gate gate/gate.json]
# CI runs `warden deps ledger check{option}`, which fails when {name} is not the last
# entry. Review it in diffs like code; never rewrite an old entry.
"
    )
}

/// A ledger records one file: a directory of lockfiles has no single SHA-256.
fn ensure_file(lockfile: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !lockfile.is_dir(),
        "{} is a directory: the ledger records one lockfile, so pass --lockfile FILE",
        lockfile.display()
    );
    Ok(())
}

/// The whole ledger, oldest entry first.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

/// One recorded lockfile.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub date: String,
    pub lockfile_sha256: String,
    pub packages: usize,
    #[serde(default)]
    pub reason: String,
    /// Against the previous entry; empty for the first.
    #[serde(default)]
    pub changes: Vec<PackageChange>,
    pub impact: Option<Impact>,
}

/// What the update did, from a `warden gate` report (candidate against baseline).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Impact {
    /// The gate's verdict: `pass` or `fail`.
    pub gate_verdict: String,
    /// Whether every check of the gate passed.
    pub tests_passed: bool,
    /// The candidate's leak verdict, as the memory test phrased it.
    pub leak: String,
    pub heap_delta_pct: Option<f64>,
    pub heap_delta_bytes: Option<i64>,
    pub rss_delta_pct: Option<f64>,
    pub rss_delta_bytes: Option<i64>,
    pub p99_delta_pct: Option<f64>,
    /// Why the gate failed, when it did.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The report it was read from.
    pub report: String,
}

impl Ledger {
    /// Reads the ledger; a missing file is an empty ledger.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the ledger {}", path.display()));
            }
        };
        toml::from_str(&text).with_context(|| {
            format!(
                "the ledger {} is not valid (fix it by hand: it is reviewed like code)",
                path.display()
            )
        })
    }

    /// The most recent entry.
    pub fn last(&self) -> Option<&Entry> {
        self.entries.last()
    }
}

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Options of `warden deps ledger record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub lockfile: PathBuf,
    pub ledger: PathBuf,
    pub reason: Option<String>,
    /// A `warden gate` JSON report measuring this update.
    pub gate: Option<PathBuf>,
    /// The previous lockfile (path or git revision) when git history cannot give it.
    pub previous: Option<String>,
    pub today: Date,
}

/// What `record` did.
#[derive(Debug, Clone)]
pub enum Recorded {
    Appended(Entry),
    /// The lockfile already is the last entry; nothing was written.
    AlreadyRecorded(Entry),
}

/// Appends an entry for the current lockfile (see the module documentation).
pub fn record(options: &RecordOptions) -> anyhow::Result<Recorded> {
    ensure_file(&options.lockfile)?;
    let sha = sha256_file(&options.lockfile)?;
    let lock = Lockfile::read(&options.lockfile)?;
    let ledger = Ledger::load(&options.ledger)?;
    if let Some(last) = ledger.last()
        && last.lockfile_sha256 == sha
    {
        return Ok(Recorded::AlreadyRecorded(last.clone()));
    }
    // Read the gate report before anything is written: a typo changes nothing.
    let impact = options.gate.as_deref().map(read_gate).transpose()?;
    let changes = match (&options.previous, ledger.last()) {
        (Some(spec), _) => lockdiff::diff(&lockdiff::load_spec_as(spec, &options.lockfile)?, &lock),
        (None, None) => Vec::new(),
        (None, Some(last)) => {
            let previous = find_in_history(&options.lockfile, &last.lockfile_sha256)?
                .with_context(|| {
                    format!(
                        "cannot find the lockfile of the ledger's last entry ({}, sha256 {}) \
                         in the git history of {}: pass --previous FILE|REV",
                        last.date,
                        short(&last.lockfile_sha256),
                        options.lockfile.display()
                    )
                })?;
            lockdiff::diff(&previous, &lock)
        }
    };
    let entry = Entry {
        date: options.today.to_string(),
        lockfile_sha256: sha,
        packages: lock.packages.len(),
        reason: options.reason.clone().unwrap_or_default(),
        changes,
        impact,
    };
    append(&options.ledger, &options.lockfile, &entry)?;
    Ok(Recorded::Appended(entry))
}

/// Appends `entry` as text, keeping the rest of the file byte for byte.
fn append(path: &Path, lockfile: &Path, entry: &Entry) -> anyhow::Result<()> {
    use std::io::Write as _;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut text = String::new();
    match &existing {
        None => text.push_str(&header(lockfile)),
        Some(old) if !old.ends_with('\n') && !old.is_empty() => text.push('\n'),
        Some(_) => {}
    }
    text.push('\n');
    text.push_str(&render_entry(entry));
    // Check that the result parses before touching the file.
    let whole = format!("{}{text}", existing.as_deref().unwrap_or(""));
    let parsed: Ledger = toml::from_str(&whole).context("the new ledger entry does not parse")?;
    anyhow::ensure!(
        parsed.last() == Some(entry),
        "the new ledger entry does not read back as written"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write the ledger {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write the ledger {}", path.display()))?;
    Ok(())
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn render_entry(entry: &Entry) -> String {
    let mut out = String::from("[[entry]]\n");
    let _ = writeln!(out, "date = {}", quoted(&entry.date));
    let _ = writeln!(out, "lockfile_sha256 = {}", quoted(&entry.lockfile_sha256));
    let _ = writeln!(out, "packages = {}", entry.packages);
    let _ = writeln!(out, "reason = {}", quoted(&entry.reason));
    if entry.changes.is_empty() {
        out.push_str("changes = []\n");
    } else {
        out.push_str("changes = [\n");
        for c in &entry.changes {
            let mut fields = vec![format!("name = {}", quoted(&c.name))];
            if c.ecosystem != Ecosystem::CratesIo {
                fields.push(format!("ecosystem = {}", quoted(c.ecosystem.as_str())));
            }
            if let Some(old) = &c.old {
                fields.push(format!("old = {}", quoted(old)));
            }
            if let Some(new) = &c.new {
                fields.push(format!("new = {}", quoted(new)));
            }
            fields.push(format!("kind = {}", quoted(enum_name(&c.kind).as_str())));
            if let Some(bump) = &c.bump {
                fields.push(format!("bump = {}", quoted(enum_name(bump).as_str())));
            }
            let _ = writeln!(out, "    {{ {} }},", fields.join(", "));
        }
        out.push_str("]\n");
    }
    if let Some(impact) = &entry.impact {
        out.push_str("\n[entry.impact]\n");
        let _ = writeln!(out, "gate_verdict = {}", quoted(&impact.gate_verdict));
        let _ = writeln!(out, "tests_passed = {}", impact.tests_passed);
        let _ = writeln!(out, "leak = {}", quoted(&impact.leak));
        let float = |out: &mut String, key: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let _ = writeln!(out, "{key} = {v:?}");
            }
        };
        let int = |out: &mut String, key: &str, v: Option<i64>| {
            if let Some(v) = v {
                let _ = writeln!(out, "{key} = {v}");
            }
        };
        float(&mut out, "heap_delta_pct", impact.heap_delta_pct);
        int(&mut out, "heap_delta_bytes", impact.heap_delta_bytes);
        float(&mut out, "rss_delta_pct", impact.rss_delta_pct);
        int(&mut out, "rss_delta_bytes", impact.rss_delta_bytes);
        float(&mut out, "p99_delta_pct", impact.p99_delta_pct);
        if !impact.reasons.is_empty() {
            let reasons: Vec<String> = impact.reasons.iter().map(|r| quoted(r)).collect();
            let _ = writeln!(out, "reasons = [{}]", reasons.join(", "));
        }
        let _ = writeln!(out, "report = {}", quoted(&impact.report));
    }
    out
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The fields of a `warden gate` JSON report that the ledger keeps.
#[derive(serde::Deserialize)]
struct GateJson {
    verdict: String,
    #[serde(default)]
    reasons: Vec<String>,
    comparison: GateComparison,
    baseline: MemtestJson,
    candidate: MemtestJson,
}

#[derive(serde::Deserialize)]
struct GateComparison {
    peak_heap_delta_pct: Option<f64>,
    peak_rss_delta_pct: Option<f64>,
    p99_delta_pct: Option<f64>,
}

#[derive(serde::Deserialize)]
struct MemtestJson {
    verdict: String,
    summary: String,
    peak_rss_bytes: Option<u64>,
    #[serde(default)]
    rounds: Vec<RoundJson>,
}

#[derive(serde::Deserialize)]
struct RoundJson {
    heap_bytes: Option<u64>,
}

/// Reads the impact from a `warden gate` JSON report (`--json` output or gate.json).
pub fn read_gate(path: &Path) -> anyhow::Result<Impact> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the gate report {}", path.display()))?;
    let gate: GateJson = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a `warden gate` JSON report (write one with `warden gate ... --report DIR`)",
            path.display()
        )
    })?;
    anyhow::ensure!(
        matches!(gate.verdict.as_str(), "pass" | "fail"),
        "{}: verdict {:?} is neither pass nor fail",
        path.display(),
        gate.verdict
    );
    let quiet_heap = |m: &MemtestJson| m.rounds.iter().filter_map(|r| r.heap_bytes).max();
    let delta = |a: Option<u64>, b: Option<u64>| -> Option<i64> {
        Some(i64::try_from(b?).ok()? - i64::try_from(a?).ok()?)
    };
    let leak = if gate.candidate.summary.is_empty() {
        gate.candidate.verdict.clone()
    } else {
        gate.candidate.summary.clone()
    };
    Ok(Impact {
        tests_passed: gate.verdict == "pass",
        gate_verdict: gate.verdict,
        leak,
        heap_delta_pct: gate.comparison.peak_heap_delta_pct,
        heap_delta_bytes: delta(quiet_heap(&gate.baseline), quiet_heap(&gate.candidate)),
        rss_delta_pct: gate.comparison.peak_rss_delta_pct,
        rss_delta_bytes: delta(gate.baseline.peak_rss_bytes, gate.candidate.peak_rss_bytes),
        p99_delta_pct: gate.comparison.p99_delta_pct,
        reasons: gate.reasons,
        report: path.display().to_string(),
    })
}

/// Searches the git history of `lockfile` for the version whose SHA-256 is `sha`.
fn find_in_history(lockfile: &Path, sha: &str) -> anyhow::Result<Option<Lockfile>> {
    let dir = match lockfile.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(file) = lockfile.file_name().and_then(|f| f.to_str()) else {
        return Ok(None);
    };
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "--format=%H", "-n", "500", "--", file])
        .output()
        .context("cannot run git (is it installed?)")?;
    if !output.status.success() {
        return Ok(None);
    }
    for rev in String::from_utf8_lossy(&output.stdout).lines() {
        let object = format!("{rev}:./{file}");
        let Ok(text) = lockdiff::git_show(dir, &object) else {
            continue;
        };
        if hex::encode(Sha256::digest(text.as_bytes())) == sha {
            return Ok(Some(lockdiff::parse_git(dir, &text, &object)?));
        }
    }
    Ok(None)
}

/// The result of `warden deps ledger check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub passed: bool,
    pub message: String,
    /// What changed since the last entry, when it could be worked out.
    pub changes: Option<Vec<PackageChange>>,
}

/// Whether the lockfile is the ledger's last entry.
pub fn check(lockfile: &Path, ledger_path: &Path) -> anyhow::Result<CheckOutcome> {
    ensure_file(lockfile)?;
    let sha = sha256_file(lockfile)?;
    let lock = Lockfile::read(lockfile)?;
    let ledger = Ledger::load(ledger_path)?;
    let Some(last) = ledger.last() else {
        return Ok(CheckOutcome {
            passed: false,
            message: format!(
                "the ledger {} has no entries: record {} with `warden deps ledger record \
                 --reason \"...\"`",
                ledger_path.display(),
                lockfile.display()
            ),
            changes: None,
        });
    };
    if last.lockfile_sha256 == sha {
        return Ok(CheckOutcome {
            passed: true,
            message: format!(
                "{} is recorded: the ledger's last entry ({}, sha256 {}{})",
                lockfile.display(),
                last.date,
                short(&sha),
                if last.reason.is_empty() {
                    String::new()
                } else {
                    format!(", \"{}\"", last.reason)
                }
            ),
            changes: Some(Vec::new()),
        });
    }
    let changes = find_in_history(lockfile, &last.lockfile_sha256)
        .ok()
        .flatten()
        .map(|previous| lockdiff::diff(&previous, &lock));
    let mut message = format!(
        "{} (sha256 {}) is not the ledger's last entry ({}, sha256 {})",
        lockfile.display(),
        short(&sha),
        last.date,
        short(&last.lockfile_sha256)
    );
    if let Some(changes) = &changes {
        let _ = write!(message, "; since then: {}", lockdiff::summary(changes));
        for c in changes {
            let _ = write!(message, "\n  {c}");
        }
    }
    let _ = write!(
        message,
        "\nrecord the update: `warden deps ledger record --reason \"...\" --gate gate/gate.json` \
         (run `warden gate` first to measure it)"
    );
    Ok(CheckOutcome {
        passed: false,
        message,
        changes,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The history, newest first, with impacts.
pub fn render_history(ledger: &Ledger) -> String {
    if ledger.entries.is_empty() {
        return "the ledger has no entries yet: `warden deps ledger record --reason \"...\"`\n"
            .to_owned();
    }
    let mut out = String::new();
    for (i, e) in ledger.entries.iter().enumerate().rev() {
        let _ = writeln!(
            out,
            "{}  sha256 {}  {} packages{}",
            e.date,
            short(&e.lockfile_sha256),
            e.packages,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!("  — {}", e.reason)
            }
        );
        if i == 0 && e.changes.is_empty() {
            out.push_str("  first entry\n");
        } else if e.changes.is_empty() {
            out.push_str("  no package changed\n");
        } else {
            let _ = writeln!(out, "  {}", lockdiff::summary(&e.changes));
            for c in &e.changes {
                let _ = writeln!(out, "    {c}");
            }
        }
        match &e.impact {
            None => out.push_str("  impact: not measured\n"),
            Some(m) => {
                let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |d| format!("{d:+.1}%"));
                let bytes = |v: Option<i64>| {
                    v.map_or(String::new(), |b| {
                        format!(
                            " ({}{:.1} KiB)",
                            if b < 0 { "-" } else { "+" },
                            b.unsigned_abs() as f64 / 1024.0
                        )
                    })
                };
                let _ = writeln!(
                    out,
                    "  impact: gate {}; heap {}{}, RSS {}{}, p99 {}; {}",
                    m.gate_verdict.to_uppercase(),
                    pct(m.heap_delta_pct),
                    bytes(m.heap_delta_bytes),
                    pct(m.rss_delta_pct),
                    bytes(m.rss_delta_bytes),
                    pct(m.p99_delta_pct),
                    m.leak
                );
                for reason in &m.reasons {
                    let _ = writeln!(out, "    {reason}");
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write_lock(path: &Path, packages: &[(&str, &str)]) {
        let mut text = String::from("version = 3\n");
        for (name, version) in packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n"
            ));
        }
        std::fs::write(path, text).unwrap();
    }

    fn today() -> Date {
        Date::from_calendar_date(2026, time::Month::November, 25).unwrap()
    }

    const GATE: &str = r#"{
      "verdict": "fail",
      "reasons": ["candidate: heap grows 257 B per request (95% CI 250 B to 260 B): LEAK"],
      "thresholds": { "leak_bytes_per_request": 16.0, "peak_heap_increase_pct": 10.0, "p99_increase_pct": 20.0 },
      "comparison": { "peak_heap_delta_pct": 40.5, "peak_rss_delta_pct": 12.5, "p50_delta_pct": 1.0, "p99_delta_pct": 3.25 },
      "dependency_changes": null,
      "baseline": { "verdict": "pass", "summary": "heap grows 0.1 B per request: no leak",
                    "peak_rss_bytes": 1000000, "rounds": [{"heap_bytes": 100}, {"heap_bytes": 200}] },
      "candidate": { "verdict": "fail", "summary": "heap grows 257 B per request (95% CI 250 B to 260 B): LEAK",
                     "peak_rss_bytes": 1125000, "rounds": [{"heap_bytes": 150}, {"heap_bytes": null}, {"heap_bytes": 281}] }
    }"#;

    #[test]
    fn record_appends_changes_and_impact_and_check_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        let old = dir.path().join("old.lock");
        let ledger = dir.path().join("ops/dependency-ledger.toml");
        let gate = dir.path().join("gate.json");
        std::fs::write(&gate, GATE).unwrap();
        write_lock(&lock, &[("serde_json", "1.0.120"), ("itoa", "1.0.11")]);
        std::fs::copy(&lock, &old).unwrap();

        // No entry yet: the check fails and says what to do.
        let outcome = check(&lock, &ledger).unwrap();
        assert!(!outcome.passed);
        assert!(
            outcome.message.contains("has no entries"),
            "{}",
            outcome.message
        );

        let options = RecordOptions {
            lockfile: lock.clone(),
            ledger: ledger.clone(),
            reason: Some("first \"entry\"".into()),
            gate: None,
            previous: None,
            today: today(),
        };
        let Recorded::Appended(first) = record(&options).unwrap() else {
            panic!("not appended")
        };
        assert!(first.changes.is_empty());
        assert!(check(&lock, &ledger).unwrap().passed);
        assert!(matches!(
            record(&options).unwrap(),
            Recorded::AlreadyRecorded(_)
        ));

        write_lock(
            &lock,
            &[
                ("serde_json", "1.0.121"),
                ("itoa", "1.0.11"),
                ("memchr", "2.7.4"),
            ],
        );
        let outcome = check(&lock, &ledger).unwrap();
        assert!(!outcome.passed);
        assert!(outcome.message.contains("is not the ledger's last entry"));

        // Outside git the previous lockfile must be given.
        let err = record(&options).unwrap_err();
        assert!(format!("{err:#}").contains("--previous"), "{err:#}");

        let bad_gate = RecordOptions {
            gate: Some(old.clone()),
            previous: Some(old.display().to_string()),
            ..options.clone()
        };
        let err = record(&bad_gate).unwrap_err();
        assert!(format!("{err:#}").contains("is not a `warden gate` JSON report"));

        let second = RecordOptions {
            reason: Some("serde_json patch".into()),
            gate: Some(gate.clone()),
            previous: Some(old.display().to_string()),
            ..options.clone()
        };
        let Recorded::Appended(entry) = record(&second).unwrap() else {
            panic!("not appended")
        };
        let got: Vec<String> = entry.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "memchr 2.7.4 (added)",
                "serde_json 1.0.120 → 1.0.121 (patch)"
            ]
        );
        let impact = entry.impact.clone().unwrap();
        assert_eq!(impact.gate_verdict, "fail");
        assert!(!impact.tests_passed);
        assert!(impact.leak.ends_with("LEAK"));
        assert_eq!(impact.heap_delta_bytes, Some(81));
        assert_eq!(impact.rss_delta_bytes, Some(125000));
        assert_eq!(impact.p99_delta_pct, Some(3.25));
        assert!(check(&lock, &ledger).unwrap().passed);

        let loaded = Ledger::load(&ledger).unwrap();
        assert_eq!(loaded.entries.len(), 2);
        assert_eq!(loaded.entries[0].reason, "first \"entry\"");
        assert_eq!(loaded.entries[1], entry);
        let text = std::fs::read_to_string(&ledger).unwrap();
        assert!(text.starts_with("# The dependency ledger"));
        let history = render_history(&loaded);
        let newest = history.find("serde_json patch").unwrap();
        let oldest = history.find("first entry").unwrap();
        assert!(newest < oldest, "{history}");
        assert!(
            history.contains("impact: gate FAIL; heap +40.5% (+0.1 KiB), RSS +12.5%"),
            "{history}"
        );
        assert!(history.contains("impact: not measured"));
    }

    #[test]
    fn a_broken_ledger_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.toml");
        std::fs::write(&ledger, "[[entry]]\ndate = 3\n").unwrap();
        let err = format!("{:#}", Ledger::load(&ledger).unwrap_err());
        assert!(err.contains("is not valid"), "{err}");
    }
}
