//! `warden`: the command line. It parses arguments and wires the crates together;
//! the work itself lives in the library crates.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warden_api::{ApiArgs, Application, Settings};
use warden_telemetry::BuildInfo;

const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    git_commit: env!("WARDEN_GIT_COMMIT"),
    lockfile_sha256: env!("WARDEN_LOCKFILE_SHA256"),
};

/// Warden: an API service, and the system that keeps it from going down the way a
/// leaking JSON library once took an API down for 105 minutes.
///
/// Every flag can also be set with an environment variable: WARDEN_ + the flag's
/// name in capitals with - as _ (WARDEN_LISTEN, WARDEN_DATA_DIR, ...).
/// Exit codes: 0 success, 1 a check found a problem, 2 usage or environment error.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Warden on this machine: the API on 127.0.0.1:8080, data in ./warden-data.
    ///
    /// Needs no configuration, server or network: the database is an SQLite file in
    /// the data directory.
    Up(ApiArgs),
    /// Run one API instance (what `up` supervises), configured by flags, WARDEN_*
    /// environment variables or a TOML file (--config).
    ///
    /// Endpoints: /v1/users, /v1/sessions, /v1/me, /v1/items; /healthz, /readyz,
    /// /metrics (Prometheus) and /openapi.json (OpenAPI 3.1).
    Api(ApiArgs),
    /// Does the API leak memory? Drives a realistic workload in rounds and tests
    /// whether the heap keeps growing from round to round.
    ///
    /// Starts the API binary (default: this one) on a temporary data dir and a free
    /// loopback port, or measures a running one (--url, --pid). Prints a one-sentence
    /// verdict with the leak rate in bytes per request and its 95% confidence
    /// interval; --report DIR also writes a JSON report and an SVG chart.
    Memtest(warden_memtest::memtest::MemtestArgs),
    /// Test a dependency update: run the memory test's scenario against the current
    /// build and the updated one, interleaved, and compare leaks, peak memory and
    /// latency.
    ///
    /// With both lockfiles it lists the packages whose versions changed. Writes a
    /// JSON report and a Markdown table for the pull request with --report DIR.
    Gate(warden_memtest::gate::GateArgs),
    /// Benchmarks, side by side with their peers in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Throughput and latency of the API against a bare axum server's ceiling.
    Api(warden_memtest::bench::BenchApiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    warden_telemetry::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) | Command::Api(args) => serve_api(args).await,
            Command::Memtest(args) => until_interrupted(memtest(args)).await,
            Command::Gate(args) => until_interrupted(gate(args)).await,
            Command::Bench(BenchCommand::Api(args)) => {
                let exe = std::env::current_exe()?;
                warden_memtest::bench::run_api_bench(args, &exe)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve_api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    Settings::prepare_data_dir(&args)?;
    let settings = Settings::resolve(args)?;
    let app = Application::build(settings, &BUILD).await?;
    app.run_until(warden_api::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when a check passed, 1 when it found a problem.
fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs `work` until it ends or SIGINT/SIGTERM arrives. Interrupted, the work is
/// dropped, which kills the API processes it started instead of leaving them behind.
async fn until_interrupted(
    work: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        result = work => result,
        () = warden_api::shutdown_signal() => anyhow::bail!("interrupted; the APIs it started are stopped"),
    }
}

/// Exit 0 when the candidate may ship, 1 on a regression; errors (exit 2) are `Err`.
async fn gate(args: warden_memtest::gate::GateArgs) -> anyhow::Result<ExitCode> {
    let report = warden_memtest::gate::run_gate(&args).await?;
    warden_memtest::gate::print_report(&report, &args)?;
    Ok(verdict(report.passed()))
}

/// Exit 0 on a pass, 1 on a leak or exceeded limit; errors (exit 2) come back as `Err`.
async fn memtest(args: warden_memtest::memtest::MemtestArgs) -> anyhow::Result<ExitCode> {
    let report = warden_memtest::memtest::run_memtest(&args).await?;
    warden_memtest::memtest::print_report(&report, &args)?;
    Ok(verdict(report.passed()))
}
