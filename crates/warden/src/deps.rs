//! `warden deps ...`: argument parsing and printing for the third-party library
//! commands; the work is in `warden_audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use warden_audit::{advisories, check, inventory, ledger, lockdiff};

#[derive(Subcommand)]
pub enum DepsCommand {
    /// Every package of a lockfile, direct or transitive: version, source,
    /// checksum, and for a Cargo.lock its license and which workspace members pull
    /// it in.
    ///
    /// Reads Cargo.lock, requirements*.txt (name==version pins, as `pip freeze`
    /// writes them), poetry.lock, uv.lock, package-lock.json (v2/v3), go.mod and
    /// go.sum, or the lockfiles of a directory. For a Cargo.lock, licenses come from
    /// `cargo metadata --offline` when it is a workspace's Cargo.lock beside its
    /// Cargo.toml, otherwise from the local registry cache. For the other formats
    /// the columns that need cargo metadata (kind, license, who pulls it in) are
    /// left out: the table shows package, version, ecosystem and source.
    Inventory {
        /// The lockfile to list (any format above), or a directory of lockfiles.
        #[arg(
            long,
            env = "WARDEN_LOCKFILE",
            value_name = "PATH",
            default_value = "Cargo.lock"
        )]
        lockfile: PathBuf,
        /// Print one JSON document.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print a Markdown table (for a review or release note).
        #[arg(long)]
        markdown: bool,
    },
    /// Audit a lockfile: RustSec advisories (vulnerabilities, unsound, unmaintained,
    /// notices), licenses, duplicate versions and sources of a Cargo.lock, and OSV
    /// advisories for any ecosystem with --osv-db, against the policy.
    ///
    /// Vulnerabilities always fail; the policy (ops/deps-policy.toml) says which
    /// informational advisories fail, which licenses are allowed, and which
    /// advisories are ignored (by ID or alias), each with a reason and an expiry
    /// date (an expired ignore fails). Each finding names the package, version,
    /// advisory (with its aliases) and the fixed version.
    ///
    /// A lockfile other than Cargo.lock (requirements.txt, poetry.lock, uv.lock,
    /// package-lock.json, go.mod, go.sum) needs --osv-db: it is checked against
    /// those advisories only.
    #[command(
        after_long_help = "Exit status: 0 no violation; 1 a violation; 2 usage or \
        environment error (no advisory database, unreadable lockfile or policy).\n\n\
        The RustSec advisory database (for a Cargo.lock): --advisory-db DIR, or cargo-audit's \
        $CARGO_HOME/advisory-db. A git checkout is fast-forwarded first (and the default \
        one cloned when missing) unless --no-fetch; when that fails the local copy is used \
        and its age is printed.\n\n\
        OSV advisories: --osv-db DIR holds one OSV JSON file per advisory, as \
        osv-scanner keeps them offline (DIR/PyPI/*.json, DIR/npm/*.json, DIR/Go/*.json, \
        DIR/crates.io/*.json) or in any tree of *.json files. A package is affected when \
        an advisory names its ecosystem and name and lists its version, or one of its \
        ECOSYSTEM or SEMVER ranges contains it, in the ecosystem's version order (PEP 440 \
        for PyPI, semver otherwise). Packages from a local path, git or a direct URL are \
        not matched."
    )]
    Audit {
        /// The lockfile to audit (any format `inventory` reads), or a directory of
        /// lockfiles.
        #[arg(
            long,
            env = "WARDEN_LOCKFILE",
            value_name = "PATH",
            default_value = "Cargo.lock"
        )]
        lockfile: PathBuf,
        /// A local copy of the RustSec advisory database [default: $CARGO_HOME/advisory-db].
        #[arg(long, env = "WARDEN_ADVISORY_DB", value_name = "DIR")]
        advisory_db: Option<PathBuf>,
        /// Do not try to fetch the live advisory database.
        #[arg(long, env = "WARDEN_NO_FETCH")]
        no_fetch: bool,
        /// A directory of OSV advisories (JSON) to match every ecosystem's packages
        /// against, beside RustSec's for a Cargo.lock.
        #[arg(long, env = "WARDEN_OSV_DB", value_name = "DIR")]
        osv_db: Option<PathBuf>,
        /// The policy file [default: ops/deps-policy.toml; built-in defaults when it
        /// does not exist].
        #[arg(long, env = "WARDEN_POLICY", value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two lockfiles: packages added, removed, upgraded and
    /// downgraded, with the kind of change (major, minor, patch).
    ///
    /// Any format `inventory` reads; versions are compared by the ecosystem's rules
    /// (PEP 440 for Python, semver for Cargo, npm and Go). Each side is a file, or a
    /// git revision of the repository here: `REV:PATH`, or a bare `REV` for the
    /// other side's file at that revision (its Cargo.lock when both are
    /// revisions), e.g. `warden deps diff HEAD~5 Cargo.lock` or `warden deps diff
    /// v1.2 requirements.txt`.
    Diff {
        /// The old lockfile: a path or a git revision.
        #[arg(value_name = "OLD")]
        old: String,
        /// The new lockfile: a path or a git revision.
        #[arg(value_name = "NEW")]
        new: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The update ledger (ops/dependency-ledger.toml): every change of the lockfile
    /// (Cargo.lock by default, or any format `inventory` reads), why, and its
    /// measured impact on memory and latency.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Append an entry for the current lockfile: date, SHA-256, each package changed
    /// since the last entry, the reason, and the impact measured by `warden gate`.
    Record {
        /// Why the dependencies changed.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// The `warden gate` JSON report (gate.json) that measured this update.
        #[arg(long, value_name = "GATE_JSON")]
        gate: Option<PathBuf>,
        /// The last entry's lockfile (path or git revision), when git history does
        /// not have it.
        #[arg(long, value_name = "FILE|REV")]
        previous: Option<String>,
        #[command(flatten)]
        files: LedgerFiles,
    },
    /// Fail (exit 1) when the lockfile (its SHA-256) is not the ledger's last entry.
    Check {
        #[command(flatten)]
        files: LedgerFiles,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The history, newest first, with the impact of each update.
    Show {
        /// The ledger.
        #[arg(
            long,
            env = "WARDEN_LEDGER",
            value_name = "FILE",
            default_value = "ops/dependency-ledger.toml"
        )]
        ledger: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct LedgerFiles {
    /// The lockfile: Cargo.lock, requirements*.txt, poetry.lock, uv.lock,
    /// package-lock.json, go.mod or go.sum (one file, not a directory).
    #[arg(
        long,
        env = "WARDEN_LOCKFILE",
        value_name = "PATH",
        default_value = "Cargo.lock"
    )]
    lockfile: PathBuf,
    /// The ledger.
    #[arg(
        long,
        env = "WARDEN_LEDGER",
        value_name = "FILE",
        default_value = "ops/dependency-ledger.toml"
    )]
    ledger: PathBuf,
}

const DEFAULT_POLICY: &str = "ops/deps-policy.toml";

/// Runs one `warden deps` command: exit 0 ok, 1 a violation; `Err` is exit 2.
pub fn run(command: DepsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DepsCommand::Inventory {
            lockfile,
            json,
            markdown,
        } => {
            let inventory = inventory::inventory(&lockfile)?;
            if json {
                warden_telemetry::output::print(
                    &(serde_json::to_string_pretty(&inventory)? + "\n"),
                )?;
            } else if markdown {
                warden_telemetry::output::print(&inventory::markdown(&inventory))?;
            } else {
                warden_telemetry::output::print(&inventory::table(&inventory))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DepsCommand::Audit {
            lockfile,
            advisory_db,
            no_fetch,
            osv_db,
            policy,
            json,
        } => {
            let explicit = policy.is_some();
            let policy_path = policy.unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY));
            let options = check::AuditOptions {
                lockfile,
                database: advisories::DbOptions {
                    dir: advisory_db,
                    fetch: !no_fetch,
                },
                osv_db,
                policy: check::load_policy(&policy_path, explicit)?,
                today: warden_audit::today(),
            };
            let report = check::audit(&options)?;
            if json {
                warden_telemetry::output::print(&(serde_json::to_string_pretty(&report)? + "\n"))?;
            } else {
                warden_telemetry::output::print(&check::render(&report))?;
            }
            Ok(verdict(report.passed()))
        }
        DepsCommand::Diff { old, new, json } => {
            let (before, after) = lockdiff::load_pair(&old, &new)?;
            let changes = lockdiff::diff(&before, &after);
            if json {
                warden_telemetry::output::print(&(serde_json::to_string_pretty(&changes)? + "\n"))?;
            } else if changes.is_empty() {
                warden_telemetry::output::print(&format!(
                    "no package changed between {old} and {new}\n"
                ))?;
            } else {
                let mut text = String::new();
                for change in &changes {
                    text.push_str(&format!("{change}\n"));
                }
                text.push_str(&format!("\n{}\n", lockdiff::summary(&changes)));
                warden_telemetry::output::print(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DepsCommand::Ledger(LedgerCommand::Record {
            reason,
            gate,
            previous,
            files,
        }) => {
            let options = ledger::RecordOptions {
                lockfile: files.lockfile,
                ledger: files.ledger,
                reason,
                gate,
                previous,
                today: warden_audit::today(),
            };
            match ledger::record(&options)? {
                ledger::Recorded::AlreadyRecorded(entry) => {
                    warden_telemetry::output::print(&format!(
                        "{} is already the ledger's last entry ({}): nothing recorded\n",
                        options.lockfile.display(),
                        entry.date
                    ))?
                }
                ledger::Recorded::Appended(entry) => {
                    let mut text = format!(
                        "recorded in {}: {} packages, {}{}\n",
                        options.ledger.display(),
                        entry.packages,
                        if entry.changes.is_empty() {
                            "first entry".to_owned()
                        } else {
                            lockdiff::summary(&entry.changes)
                        },
                        if entry.impact.is_some() {
                            ", with the gate's measured impact"
                        } else {
                            "; impact not measured (--gate DIR/gate.json adds it)"
                        }
                    );
                    for change in &entry.changes {
                        text.push_str(&format!("  {change}\n"));
                    }
                    warden_telemetry::output::print(&text)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DepsCommand::Ledger(LedgerCommand::Check { files, json }) => {
            let outcome = ledger::check(&files.lockfile, &files.ledger)?;
            if json {
                warden_telemetry::output::print(&(serde_json::to_string_pretty(&outcome)? + "\n"))?;
            } else if outcome.passed {
                warden_telemetry::output::print(&format!("{}\n", outcome.message))?;
            } else {
                eprintln!("error: {}", outcome.message);
            }
            Ok(verdict(outcome.passed))
        }
        DepsCommand::Ledger(LedgerCommand::Show { ledger: path, json }) => {
            anyhow::ensure!(
                path.exists(),
                "no ledger file at {}: run this from the repository's root, or pass --ledger FILE \
                 (`warden deps ledger record` starts one)",
                path.display()
            );
            let ledger = ledger::Ledger::load(&path)?;
            if json {
                let newest_first: Vec<&ledger::Entry> = ledger.entries.iter().rev().collect();
                warden_telemetry::output::print(
                    &(serde_json::to_string_pretty(&newest_first)? + "\n"),
                )?;
            } else {
                warden_telemetry::output::print(&ledger::render_history(&ledger))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
