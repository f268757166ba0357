//! `warden gate`: the test for third-party library updates.
//!
//! Runs the memory test's scenario (with the same workload flags, `--duration`
//! being the budget per build) against two builds — the current one (baseline)
//! and one with updated dependencies (candidate) — started side by side and driven
//! in interleaved rounds (A, B, A, B, ...), so that whatever else the machine is
//! doing falls on both. It then compares them: the leak verdict of each, peak heap
//! (the largest heap held at a quiet point) and peak RSS, p50/p99 latency (medians over the measured rounds) and unexpected
//! answers; with the two lockfiles it also lists the packages whose versions changed.
//!
//! It fails (exit 1) on a regression beyond the thresholds: a leak in the candidate,
//! peak heap up more than `--max-heap-increase` (default 10%), p99 up more than
//! `--max-p99-increase` (default 20%), or more unexpected answers than the baseline.
//!
//! # JSON report (`--json`, or `gate.json` under `--report DIR`; `gate.md` beside it)
//!
//! ```json
//! {
//!   "verdict": "fail",                       // "pass" | "fail"
//!   "reasons": ["candidate: heap grows 257 B per request (...): LEAK"],
//!   "thresholds": { "leak_bytes_per_request": 16.0, "peak_heap_increase_pct": 10.0,
//!                   "p99_increase_pct": 20.0 },
//!   "comparison": { "peak_heap_delta_pct": 4.1, "peak_rss_delta_pct": 12.5,
//!                   "p50_delta_pct": -1.2, "p99_delta_pct": 3.3 },  // null when unmeasured
//!   "dependency_changes": [                  // null without --baseline-lock/--candidate-lock
//!     { "name": "serde_json", "old": "1.0.120", "new": "1.0.121",
//!       "kind": "upgraded", "bump": "patch" }
//!   ],
//!   "baseline": { ... },                     // a `warden memtest` report each
//!   "candidate": { ... }
//! }
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use warden_audit::lockdiff::{self, PackageChange};

use crate::memtest::{self, MemtestReport, Progress, Subject, Workload};
use crate::target::{ServiceOptions, Target};

/// Options of `warden gate`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_long_help = "Exit status: 0 no regression; 1 a regression beyond the \
    thresholds; 2 usage or start-up error.\n\nExample, before merging a dependency \
    update:\n  git stash && cargo build --release && cp target/release/warden /tmp/base\n  \
    git stash pop && cargo build --release\n  warden gate --baseline /tmp/base --candidate \
    target/release/warden \\\n      --baseline-lock old/Cargo.lock --candidate-lock Cargo.lock \
    --report gate/"
)]
pub struct GateArgs {
    /// The current release: a command line that starts it (`{port}` replaced by a
    /// free loopback port, also in $PORT), e.g. `"releases/v1/.venv/bin/gunicorn -b
    /// 127.0.0.1:{port} app:app"`; or the path of a Warden binary (a single word
    /// without `{port}`).
    #[arg(long, value_name = "CMD|BIN")]
    pub baseline: String,
    /// The release with updated dependencies, the same way.
    #[arg(long, value_name = "CMD|BIN")]
    pub candidate: String,
    #[command(flatten)]
    pub service: ServiceOptions,
    /// The baseline's lockfile, to list what changed [default: for a Warden binary,
    /// the Cargo.lock it was built with, which it carries].
    #[arg(long, value_name = "FILE", requires = "candidate_lock")]
    pub baseline_lock: Option<PathBuf>,
    /// The candidate's lockfile [default: the Cargo.lock built into a Warden binary].
    #[arg(long, value_name = "FILE", requires = "baseline_lock")]
    pub candidate_lock: Option<PathBuf>,
    /// Argument passed to the baseline Warden binary when it is started; repeat for
    /// several.
    #[arg(long = "baseline-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub baseline_args: Vec<String>,
    /// Argument passed to the candidate Warden binary when it is started; repeat for
    /// several.
    #[arg(long = "candidate-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub candidate_args: Vec<String>,
    #[command(flatten)]
    pub workload: Workload,
    /// Largest accepted rise of the peak heap held at quiet points, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub max_heap_increase: f64,
    /// Largest accepted rise of p99 latency, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 20.0)]
    pub max_p99_increase: f64,
    /// Write gate.json and gate.md (a table to paste into a pull request) here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Thresholds a gate applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Thresholds {
    pub leak_bytes_per_request: f64,
    pub peak_heap_increase_pct: f64,
    pub p99_increase_pct: f64,
}

/// Candidate against baseline, in percent (positive: the candidate is higher).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub peak_heap_delta_pct: Option<f64>,
    pub peak_rss_delta_pct: Option<f64>,
    pub p50_delta_pct: Option<f64>,
    pub p99_delta_pct: Option<f64>,
}

/// The gate's report; its schema is in the module documentation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateReport {
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub thresholds: Thresholds,
    pub comparison: Comparison,
    pub dependency_changes: Option<Vec<PackageChange>>,
    pub baseline: MemtestReport,
    pub candidate: MemtestReport,
}

impl GateReport {
    /// Whether the candidate may ship.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// One side of the gate, as given.
enum Side<'a> {
    /// A Warden binary.
    Warden(&'a std::path::Path),
    /// A command line.
    Command(&'a str),
}

impl<'a> Side<'a> {
    /// A command when it has several words or `{port}`; else a Warden binary.
    fn of(value: &'a str) -> Self {
        if value.trim().contains(char::is_whitespace) || value.contains("{port}") {
            Self::Command(value)
        } else {
            Self::Warden(std::path::Path::new(value))
        }
    }

    async fn start(&self, args: &[String], service: &ServiceOptions) -> anyhow::Result<Target> {
        match self {
            Self::Warden(bin) => Target::start(bin, args, memtest::CHILD_ENV).await,
            Self::Command(command) => Target::command(command, service).await,
        }
    }
}

fn check_args(args: &GateArgs) -> anyhow::Result<()> {
    for (flag, side, extra) in [
        ("--baseline-arg", &args.baseline, &args.baseline_args),
        ("--candidate-arg", &args.candidate, &args.candidate_args),
    ] {
        anyhow::ensure!(
            extra.is_empty() || matches!(Side::of(side), Side::Warden(_)),
            "{flag} is for a Warden binary; with a command line, put the arguments in it"
        );
    }
    for (flag, v) in [
        ("--max-heap-increase", args.max_heap_increase),
        ("--max-p99-increase", args.max_p99_increase),
    ] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{flag} must be a percentage of 0 or more"
        );
    }
    Ok(())
}

/// What changed between the Cargo.locks the two builds carry; `None` (and a warning)
/// when one of them carries none.
fn built_in_changes(args: &GateArgs) -> Option<Vec<PackageChange>> {
    let read = |side: &str| -> anyhow::Result<_> {
        let Side::Warden(bin) = Side::of(side) else {
            anyhow::bail!("{side:?} is a command, which carries no lockfile");
        };
        let text = lockdiff::built_into(bin)?;
        lockdiff::parse(
            &text,
            &format!("the Cargo.lock built into {}", bin.display()),
        )
    };
    match (read(&args.baseline), read(&args.candidate)) {
        (Ok(a), Ok(b)) => Some(lockdiff::diff(&a, &b)),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(
                "no dependency changes listed: {error:#}; pass --baseline-lock and --candidate-lock"
            );
            None
        }
    }
}

/// Runs the gate; `Err` is a usage or start-up error.
pub async fn run_gate(args: &GateArgs) -> anyhow::Result<GateReport> {
    check_args(args)?;
    let w = &args.workload;
    memtest::check_args(w)?;
    // Read the lockfiles first: a typo should not cost two minutes of load.
    let dependency_changes = match (&args.baseline_lock, &args.candidate_lock) {
        (Some(a), Some(b)) => Some(lockdiff::diff(
            &warden_audit::lockfile::Lockfile::read(a)?,
            &warden_audit::lockfile::Lockfile::read(b)?,
        )),
        _ => built_in_changes(args),
    };
    let started = Instant::now();
    let progress = Progress::new(2 * (w.rounds + 1), args.json);
    progress.message("starting both builds");
    let baseline = Side::of(&args.baseline)
        .start(&args.baseline_args, &args.service)
        .await
        .context("baseline")?;
    let candidate = match Side::of(&args.candidate)
        .start(&args.candidate_args, &args.service)
        .await
    {
        Ok(target) => target,
        Err(error) => {
            baseline.stop().await;
            return Err(error.context("candidate"));
        }
    };
    progress.message("registering users");
    let mut a = Subject::start(baseline, "baseline".into(), w.users).await?;
    let mut b = Subject::start(candidate, "candidate".into(), w.users).await?;
    let plan = memtest::round_plan(w, started.elapsed(), 2);
    for round in 0..=w.rounds {
        for subject in [&mut a, &mut b] {
            progress.round(&subject.name, round, w.rounds);
            subject.round(round, plan).await?;
            progress.round_done(subject, w.rounds);
        }
    }
    progress.finish();
    let mut baseline = a.finish(w, (None, None), started).await;
    baseline.target.clone_from(&args.baseline);
    let mut candidate = b.finish(w, (None, None), started).await;
    candidate.target.clone_from(&args.candidate);
    let report = compare(args, baseline, candidate, dependency_changes);
    if let Some(dir) = &args.report {
        write_report(dir, &report)?;
    }
    Ok(report)
}

/// The largest heap held at a quiet point. The heap sampled while running is no use
/// for comparing builds: a password hash holds 19 MiB for a few milliseconds, so
/// that peak says how many hashes a 100 ms sample happened to catch (identical builds
/// differed by +88%), not what the build keeps.
fn quiet_heap_peak(report: &MemtestReport) -> Option<u64> {
    report.rounds.iter().filter_map(|r| r.heap_bytes).max()
}

/// Percent change from `a` to `b`; `None` when either is missing or `a` is zero.
fn delta_pct(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
        _ => None,
    }
}

fn compare(
    args: &GateArgs,
    baseline: MemtestReport,
    candidate: MemtestReport,
    dependency_changes: Option<Vec<PackageChange>>,
) -> GateReport {
    let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
    let comparison = Comparison {
        peak_heap_delta_pct: delta_pct(
            as_f64(quiet_heap_peak(&baseline)),
            as_f64(quiet_heap_peak(&candidate)),
        ),
        peak_rss_delta_pct: delta_pct(
            as_f64(baseline.peak_rss_bytes),
            as_f64(candidate.peak_rss_bytes),
        ),
        p50_delta_pct: delta_pct(
            Some(baseline.latency_ms.p50),
            Some(candidate.latency_ms.p50),
        ),
        p99_delta_pct: delta_pct(
            Some(baseline.latency_ms.p99),
            Some(candidate.latency_ms.p99),
        ),
    };
    let mut reasons = Vec::new();
    if !candidate.passed() {
        let also = if baseline.passed() {
            ""
        } else {
            " (the baseline fails too)"
        };
        for reason in &candidate.reasons {
            reasons.push(format!("candidate: {reason}{also}"));
        }
    }
    if let Some(d) = comparison.peak_heap_delta_pct
        && d > args.max_heap_increase
    {
        reasons.push(format!(
            "peak heap at quiet points rose {d:+.1}% (limit +{}%)",
            args.max_heap_increase
        ));
    }
    if let Some(d) = comparison.p99_delta_pct
        && d > args.max_p99_increase
    {
        reasons.push(format!(
            "p99 latency rose {d:+.1}% (limit +{}%)",
            args.max_p99_increase
        ));
    }
    if candidate.errors > baseline.errors {
        reasons.push(format!(
            "the candidate gave {} unexpected answers, the baseline {}",
            candidate.errors, baseline.errors
        ));
    }
    GateReport {
        verdict: if reasons.is_empty() { "pass" } else { "fail" },
        reasons,
        thresholds: Thresholds {
            leak_bytes_per_request: args.workload.threshold,
            peak_heap_increase_pct: args.max_heap_increase,
            p99_increase_pct: args.max_p99_increase,
        },
        comparison,
        dependency_changes,
        baseline,
        candidate,
    }
}

fn mib(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |b| format!("{:.2} MiB", b as f64 / 1048576.0))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |d| format!("{d:+.1}%"))
}

fn leak_cell(r: &MemtestReport) -> String {
    match &r.leak_bytes_per_request {
        Some(l) => format!(
            "{:.1} B/req (95% CI {:.1} to {:.1}){}",
            l.estimate,
            l.low,
            l.high,
            if r.summary.ends_with("LEAK") {
                " **LEAK**"
            } else {
                ""
            }
        ),
        None => "n/a".into(),
    }
}

/// The verdict table as Markdown, for a pull request.
pub fn markdown(report: &GateReport) -> String {
    let (a, b, c) = (&report.baseline, &report.candidate, &report.comparison);
    let t = &report.thresholds;
    let mark = |bad: bool| if bad { "✗" } else { "✓" };
    let over = |d: Option<f64>, limit: f64| d.is_some_and(|d| d > limit);
    let mut md = String::new();
    let _ = writeln!(md, "## warden gate: {}\n", report.verdict.to_uppercase());
    let _ = writeln!(md, "| | baseline | candidate | change | limit | |");
    let _ = writeln!(md, "|---|---|---|---:|---:|:-:|");
    let _ = writeln!(
        md,
        "| leak | {} | {} | | {} B/req | {} |",
        leak_cell(a),
        leak_cell(b),
        t.leak_bytes_per_request,
        mark(!b.passed())
    );
    let _ = writeln!(
        md,
        "| peak heap at quiet points | {} | {} | {} | +{}% | {} |",
        mib(quiet_heap_peak(a)),
        mib(quiet_heap_peak(b)),
        pct(c.peak_heap_delta_pct),
        t.peak_heap_increase_pct,
        mark(over(c.peak_heap_delta_pct, t.peak_heap_increase_pct))
    );
    let _ = writeln!(
        md,
        "| peak RSS | {} | {} | {} | | |",
        mib(a.peak_rss_bytes),
        mib(b.peak_rss_bytes),
        pct(c.peak_rss_delta_pct)
    );
    let _ = writeln!(
        md,
        "| p50 latency | {:.2} ms | {:.2} ms | {} | | |",
        a.latency_ms.p50,
        b.latency_ms.p50,
        pct(c.p50_delta_pct)
    );
    let _ = writeln!(
        md,
        "| p99 latency | {:.2} ms | {:.2} ms | {} | +{}% | {} |",
        a.latency_ms.p99,
        b.latency_ms.p99,
        pct(c.p99_delta_pct),
        t.p99_increase_pct,
        mark(over(c.p99_delta_pct, t.p99_increase_pct))
    );
    let _ = writeln!(
        md,
        "| unexpected answers | {} of {} | {} of {} | | | {} |",
        a.errors,
        a.requests,
        b.errors,
        b.requests,
        mark(b.errors > a.errors)
    );
    if !report.reasons.is_empty() {
        let _ = writeln!(md, "\nWhy it fails:\n");
        for reason in &report.reasons {
            let _ = writeln!(md, "- {reason}");
        }
    }
    match &report.dependency_changes {
        Some(changes) if changes.is_empty() => {
            let _ = writeln!(
                md,
                "\nDependencies: the two lockfiles list the same versions."
            );
        }
        Some(changes) => {
            let _ = writeln!(md, "\nDependency changes ({}):\n", changes.len());
            for change in changes {
                let _ = writeln!(md, "- {change}");
            }
        }
        None => {}
    }
    let _ = writeln!(
        md,
        "\nBaseline `{}`, candidate `{}`; interleaved rounds, {} measured each.",
        a.target,
        b.target,
        a.rounds.len().saturating_sub(1)
    );
    md
}

fn write_report(dir: &std::path::Path, report: &GateReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = dir.join("gate.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let md = dir.join("gate.md");
    std::fs::write(&md, markdown(report))
        .with_context(|| format!("cannot write {}", md.display()))?;
    Ok(())
}

/// Prints the report on stdout: JSON with `--json`, else the Markdown table.
pub fn print_report(report: &GateReport, args: &GateArgs) -> anyhow::Result<()> {
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else {
        warden_telemetry::out!("{}", markdown(report))?;
        if let Some(dir) = &args.report {
            warden_telemetry::outln!(
                "\nreport: {}, {}",
                dir.join("gate.json").display(),
                dir.join("gate.md").display()
            )?;
        }
    }
    Ok(())
}
