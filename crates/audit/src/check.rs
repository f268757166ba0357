//! `warden deps audit`: the lockfile against the advisory databases and the policy.
//!
//! A Cargo.lock gets four checks, each finding a violation (fails the audit) or a
//! warning; a lockfile of another ecosystem (PyPI, npm, Go) gets the first, from
//! OSV advisories only (`--osv-db DIR`, [`crate::osv`]), which a Cargo.lock may get
//! too, beside RustSec's:
//! - advisories: vulnerabilities always fail; unsound, unmaintained and notice
//!   advisories fail when the policy's `deny_informational` lists their kind. An
//!   ignore in the policy silences one advisory until its expiry date; an expired
//!   ignore fails, and an ignore that matches nothing is a warning (remove it);
//! - licenses: each registry package's SPDX expression must be satisfiable with the
//!   allowed licenses (or match an exception for that crate);
//! - duplicates: a crate in several versions (a warning unless the policy denies it);
//! - sources: packages from anywhere but crates.io, unless the policy allows it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use time::Date;

use crate::advisories::{self, AdvisoryDb, AdvisoryKind, AdvisoryMatch, DbOptions};
use crate::inventory;
use crate::lockfile::{Ecosystem, Lockfile};
use crate::osv::{self, OsvDb};
use crate::policy::{Informational, Policy};

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Advisory,
    License,
    Duplicate,
    Source,
    Policy,
}

/// One thing the audit found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub check: Check,
    /// Whether it fails the audit.
    pub violation: bool,
    pub package: Option<String>,
    pub version: Option<String>,
    /// The advisory, for advisory findings.
    pub advisory: Option<AdvisoryMatch>,
    /// One sentence: what is wrong and what to do.
    pub message: String,
}

/// The audit's result; `passed()` decides the exit code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditReport {
    pub lockfile: PathBuf,
    pub packages: usize,
    /// The RustSec database, when a Cargo.lock was audited.
    pub database: Option<AdvisoryDb>,
    /// The OSV advisories, when `--osv-db` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub osv: Option<OsvDb>,
    pub policy: String,
    pub licenses_from: String,
    pub findings: Vec<Finding>,
    /// Advisories silenced by a (still valid) ignore in the policy.
    pub ignored: Vec<AdvisoryMatch>,
}

impl AuditReport {
    /// No violation.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.violation)
    }

    /// Violation count, warning count.
    pub fn counts(&self) -> (usize, usize) {
        let violations = self.findings.iter().filter(|f| f.violation).count();
        (violations, self.findings.len() - violations)
    }
}

/// What to audit, and against what.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// A lockfile of any format, or a directory of them.
    pub lockfile: PathBuf,
    /// The RustSec database, for a Cargo.lock.
    pub database: DbOptions,
    /// A directory of OSV advisories (`--osv-db`), for any ecosystem.
    pub osv_db: Option<PathBuf>,
    /// The policy, and a description of where it came from.
    pub policy: (Policy, String),
    pub today: Date,
}

/// Reads the policy file, or — when `explicit` is false and the file is absent —
/// falls back to [`Policy::builtin`], saying so.
pub fn load_policy(path: &Path, explicit: bool) -> anyhow::Result<(Policy, String)> {
    if !explicit && !path.exists() {
        return Ok((
            Policy::builtin(),
            format!("built-in defaults ({} does not exist)", path.display()),
        ));
    }
    Ok((Policy::load(path)?, path.display().to_string()))
}

/// Runs every check. `Err` is an environment or input error (exit 2), not a
/// violation.
pub fn audit(options: &AuditOptions) -> anyhow::Result<AuditReport> {
    let (policy, policy_source) = &options.policy;
    let lock = Lockfile::read(&options.lockfile)?;
    let cargo = lock.cargo_file().map(|f| f.path.clone());
    if cargo.is_none() && options.osv_db.is_none() {
        let ecosystems: Vec<&str> = lock.ecosystems().iter().map(|e| e.as_str()).collect();
        anyhow::bail!(
            "{} has no Cargo.lock, and RustSec advisories are about Rust crates only: pass \
             --osv-db DIR, a directory of OSV advisories for {}",
            lock.describe(),
            if ecosystems.is_empty() {
                "its ecosystem".to_owned()
            } else {
                ecosystems.join(", ")
            }
        );
    }
    let mut osv = match &options.osv_db {
        Some(dir) => Some(osv::load(dir, &lock.ecosystems())?),
        None => None,
    };
    let mut findings = Vec::new();
    let mut matches = Vec::new();
    let mut database = None;
    let mut licenses_from =
        "not checked: licenses are read for a Cargo.lock only (from cargo metadata)".to_owned();
    if let Some(cargo) = &cargo {
        let cargo_lock = crate::lockdiff::load(cargo)?;
        let db = advisories::locate(&options.database, options.today)?;
        // Licenses may take a `cargo metadata` run: do it while the advisories are read.
        let (rustsec, inventory) = std::thread::scope(|scope| {
            let inventory = scope.spawn(|| inventory::inventory_of(cargo, &cargo_lock));
            let matches = advisories::scan(&db.path, &cargo_lock);
            let inventory = inventory
                .join()
                .map_err(|_| anyhow::anyhow!("the inventory thread panicked"));
            (matches, inventory)
        });
        let (rustsec, inventory) = (rustsec?, inventory?);
        matches.extend(rustsec);
        cargo_checks(policy, &inventory, &mut findings);
        licenses_from = inventory.license_source;
        database = Some(db);
    }
    if let Some(db) = &mut osv {
        let mut found = db.scan(&lock.packages);
        // RustSec already said what it knows of a crate: an OSV advisory that is
        // the same one (by ID or alias) is not reported twice.
        found.retain(|m| {
            !matches.iter().any(|r: &AdvisoryMatch| {
                r.package == m.package
                    && r.version == m.version
                    && (m.id == r.id || m.aliases.contains(&r.id))
            })
        });
        matches.extend(found);
    }
    // An ignore that matched nothing is worth a warning only where its database was
    // read: RUSTSEC IDs when a Cargo.lock was, the others when OSV advisories were.
    let in_scope = |id: &str| {
        if id.starts_with("RUSTSEC-") {
            cargo.is_some()
        } else {
            osv.is_some()
        }
    };
    let ignored = advisory_findings(policy, options.today, matches, &in_scope, &mut findings)?;
    findings.sort_by(|a, b| {
        (!a.violation, a.check, &a.package, &a.version).cmp(&(
            !b.violation,
            b.check,
            &b.package,
            &b.version,
        ))
    });
    Ok(AuditReport {
        lockfile: options.lockfile.clone(),
        packages: lock.packages.len(),
        database,
        osv,
        policy: policy_source.clone(),
        licenses_from,
        findings,
        ignored,
    })
}

/// Findings for the advisories that matched, with the policy's ignores; returns the
/// advisories an ignore silenced.
fn advisory_findings(
    policy: &Policy,
    today: Date,
    matches: Vec<AdvisoryMatch>,
    in_scope: &dyn Fn(&str) -> bool,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<Vec<AdvisoryMatch>> {
    let mut ignored = Vec::new();
    let mut used_ignores = vec![false; policy.advisories.ignore.len()];
    for m in matches {
        let ignore = policy
            .advisories
            .ignore
            .iter()
            .position(|i| i.id == m.id || m.aliases.contains(&i.id));
        if let Some(index) = ignore {
            used_ignores[index] = true;
            let rule = &policy.advisories.ignore[index];
            let expiry = rule.expiry()?;
            if expiry > today {
                ignored.push(m);
                continue;
            }
            findings.push(Finding {
                check: Check::Policy,
                violation: true,
                package: Some(m.package.clone()),
                version: Some(m.version.clone()),
                message: format!(
                    "{} {}: the ignore of {} expired on {} (reason was: {}); upgrade ({}) \
                     or review it again and move `until`",
                    m.package,
                    m.version,
                    m.id,
                    rule.until,
                    rule.reason,
                    fix_text(&m)
                ),
                advisory: Some(m),
            });
            continue;
        }
        let violation = match m.kind {
            AdvisoryKind::Vulnerability => true,
            AdvisoryKind::Unsound => denies(policy, Informational::Unsound),
            AdvisoryKind::Unmaintained => denies(policy, Informational::Unmaintained),
            AdvisoryKind::Notice => denies(policy, Informational::Notice),
        };
        findings.push(Finding {
            check: Check::Advisory,
            violation,
            package: Some(m.package.clone()),
            version: Some(m.version.clone()),
            message: format!(
                "{}{}: {} {}{} ({}): {}",
                package_text(&m),
                m.version,
                m.kind,
                m.id,
                aliases_text(&m),
                m.title,
                fix_text(&m)
            ),
            advisory: Some(m),
        });
    }
    for (rule, used) in policy.advisories.ignore.iter().zip(used_ignores) {
        if !used && in_scope(&rule.id) {
            findings.push(Finding {
                check: Check::Policy,
                violation: false,
                package: None,
                version: None,
                advisory: None,
                message: format!(
                    "the policy ignores {}, which no package has any more: remove the ignore",
                    rule.id
                ),
            });
        }
    }
    Ok(ignored)
}

/// `serde_json ` for a crate (as before other ecosystems were read), `flask (PyPI) `
/// for the others.
fn package_text(m: &AdvisoryMatch) -> String {
    if m.ecosystem == Ecosystem::CratesIo {
        format!("{} ", m.package)
    } else {
        format!("{} ({}) ", m.package, m.ecosystem)
    }
}

/// ` (aka CVE-..., GHSA-...)` when the advisory has aliases.
fn aliases_text(m: &AdvisoryMatch) -> String {
    if m.aliases.is_empty() {
        String::new()
    } else {
        format!(" (aka {})", m.aliases.join(", "))
    }
}

/// Licenses, duplicate versions and sources of a Cargo.lock's packages.
fn cargo_checks(policy: &Policy, inventory: &inventory::Inventory, findings: &mut Vec<Finding>) {
    // Licenses of registry packages.
    let mut unknown = Vec::new();
    for p in inventory
        .packages
        .iter()
        .filter(|p| p.source == "crates.io")
    {
        let Some(license) = &p.license else {
            unknown.push(format!("{} {}", p.name, p.version));
            continue;
        };
        let verdict = policy.license_allowed(&p.name, license);
        let problem = match verdict {
            Ok(true) => continue,
            Ok(false) => format!(
                "license {license:?} is not allowed by the policy: add an allowed license \
                 or a [[licenses.exception]] with a reason, or replace the crate"
            ),
            Err(why) => {
                format!("license {license:?} is {why}: review it and add a [[licenses.exception]]")
            }
        };
        findings.push(Finding {
            check: Check::License,
            violation: true,
            package: Some(p.name.clone()),
            version: Some(p.version.clone()),
            advisory: None,
            message: format!("{} {}: {problem}", p.name, p.version),
        });
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(5).map(String::as_str).collect();
        findings.push(Finding {
            check: Check::License,
            violation: false,
            package: None,
            version: None,
            advisory: None,
            message: format!(
                "license unknown for {} packages ({}{}): they are not in the local registry \
                 cache; audit the project's own Cargo.lock beside its Cargo.toml, or `cargo \
                 fetch` first",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        });
    }

    // Duplicate versions.
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &inventory.packages {
        versions.entry(&p.name).or_default().push(&p.version);
    }
    for (name, list) in versions {
        if list.len() < 2 || policy.duplicates.skip.iter().any(|s| s == name) {
            continue;
        }
        findings.push(Finding {
            check: Check::Duplicate,
            violation: policy.duplicates.deny,
            package: Some(name.to_owned()),
            version: None,
            advisory: None,
            message: format!(
                "{name} is present in {} versions ({})",
                list.len(),
                list.join(", ")
            ),
        });
    }

    // Sources.
    for p in &inventory.packages {
        if p.source == "crates.io" || p.source == "path" {
            continue;
        }
        if policy.sources.allow.contains(&p.source) {
            continue;
        }
        findings.push(Finding {
            check: Check::Source,
            violation: true,
            package: Some(p.name.clone()),
            version: Some(p.version.clone()),
            advisory: None,
            message: format!(
                "{} {} comes from {}, not crates.io: add it to [sources] allow after review, \
                 or use the crates.io release",
                p.name, p.version, p.source
            ),
        });
    }
}

fn denies(policy: &Policy, kind: Informational) -> bool {
    policy.advisories.deny_informational.contains(&kind)
}

/// "fixed in >=1.2.3", or what to do when nothing fixes it.
fn fix_text(m: &AdvisoryMatch) -> String {
    let what = if m.ecosystem == Ecosystem::CratesIo {
        "crate"
    } else {
        "package"
    };
    if m.patched.is_empty() {
        match m.kind {
            AdvisoryKind::Unmaintained => format!("no fixed version: replace the {what}"),
            _ => format!("no fixed version: remove or replace the {what}"),
        }
    } else {
        format!("fixed in {}", m.patched.join(" or "))
    }
}

/// The report as text: findings first, then a summary line.
pub fn render(report: &AuditReport) -> String {
    let mut out = String::new();
    if let Some(database) = &report.database {
        let _ = writeln!(out, "advisory database: {}", database.describe());
    }
    if let Some(osv) = &report.osv {
        let _ = writeln!(out, "OSV advisories: {}", osv.describe());
        for warning in &osv.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }
    let _ = writeln!(out, "policy: {}", report.policy);
    let _ = writeln!(out, "licenses from: {}", report.licenses_from);
    for finding in &report.findings {
        let level = if finding.violation {
            "error"
        } else {
            "warning"
        };
        let _ = write!(out, "{level}: {}", finding.message);
        if let Some(url) = finding.advisory.as_ref().and_then(|a| a.url.as_ref()) {
            let _ = write!(out, " <{url}>");
        }
        out.push('\n');
    }
    for m in &report.ignored {
        let _ = writeln!(
            out,
            "ignored: {}{}: {} {} ({}), as the policy says",
            package_text(m),
            m.version,
            m.kind,
            m.id,
            m.title
        );
    }
    let (violations, warnings) = report.counts();
    let _ = writeln!(
        out,
        "{}: {} packages in {}, {violations} violations, {warnings} warnings, {} ignored advisories",
        if report.passed() { "PASS" } else { "FAIL" },
        report.packages,
        report.lockfile.display(),
        report.ignored.len()
    );
    out
}
