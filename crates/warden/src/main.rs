//! `warden`: the command line. It parses arguments and wires the crates together;
//! the work itself lives in the library crates.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod deps;

use std::path::PathBuf;
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
    /// Run Warden on this machine: the API on 127.0.0.1:8080, the console (dashboard,
    /// alerts) on 127.0.0.1:8081, data in ./warden-data.
    ///
    /// Needs no configuration, server or network: the API's database and the control
    /// plane's store are SQLite files in the data directory. The API runs as a child
    /// process, restarted if it dies; the control plane scrapes its /metrics and its
    /// RSS every 5 s, keeps 7 days of series, evaluates the alert rules (memory leak,
    /// memory high, p99 latency, 5xx ratio, target down) and notifies the [[notifiers]]
    /// of --config.
    Up(UpArgs),
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
    /// The release registry: record a build as an immutable release, list releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Print this binary's build identity as JSON (version, git commit, Cargo.lock
    /// SHA-256); `warden release add` reads it from the binary it records.
    #[command(hide = true)]
    BuildInfo,
    /// Third-party libraries: inventory, audit (advisories, licenses, duplicates,
    /// sources), lockfile diffs, and the ledger of every update and its impact.
    #[command(subcommand)]
    Deps(deps::DepsCommand),
    /// Benchmarks, side by side with their peers in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `warden up`'s flags.
#[derive(clap::Args)]
struct UpArgs {
    /// Where users reach the API.
    #[arg(
        long,
        env = "WARDEN_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    listen: std::net::SocketAddr,
    /// The console: dashboard, alerts, the control plane's /metrics.
    #[arg(
        long,
        env = "WARDEN_CONSOLE",
        value_name = "ADDR",
        default_value = "127.0.0.1:8081"
    )]
    console: std::net::SocketAddr,
    /// Where the API's database and the control plane's store live.
    #[arg(
        long,
        env = "WARDEN_DATA_DIR",
        value_name = "DIR",
        default_value = "./warden-data"
    )]
    data_dir: PathBuf,
    /// Config file: [monitor], [alerts.*] and [[notifiers]] tables; every key is
    /// shown in ops/warden.example.toml. Without it the defaults apply.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override [monitor] scrape_interval (e.g. 1s, 5s).
    #[arg(long, env = "WARDEN_SCRAPE_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    scrape_interval: Option<std::time::Duration>,
    /// The release name shown on charts and in alerts [default: VERSION-COMMIT].
    #[arg(long, env = "WARDEN_RELEASE", value_name = "NAME")]
    release: Option<String>,
    /// Extra argument for the API instance (repeatable), e.g.
    /// --api-arg=--chaos-leak-bytes-per-request=4096.
    #[arg(long = "api-arg", value_name = "ARG", allow_hyphen_values = true)]
    api_args: Vec<String>,
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Record a release: its binary (stored under its SHA-256 in the data dir), its
    /// version and git commit, and the packages of its Cargo.lock. Releases never
    /// change; a name can be used once.
    Add {
        /// The warden binary to record [default: this one].
        #[arg(long, value_name = "PATH")]
        bin: Option<PathBuf>,
        /// The release's name [default: VERSION-COMMIT].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The Cargo.lock to record as its dependency set.
        #[arg(long, value_name = "FILE", default_value = "Cargo.lock")]
        lockfile: PathBuf,
        /// Extra argument its API instances run with (repeatable).
        #[arg(long = "api-arg", value_name = "ARG", allow_hyphen_values = true)]
        api_args: Vec<String>,
        /// Where the registry lives.
        #[arg(
            long,
            env = "WARDEN_DATA_DIR",
            value_name = "DIR",
            default_value = "./warden-data"
        )]
        data_dir: PathBuf,
        /// Print the recorded release as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the releases, oldest first.
    List {
        /// Where the registry lives.
        #[arg(
            long,
            env = "WARDEN_DATA_DIR",
            value_name = "DIR",
            default_value = "./warden-data"
        )]
        data_dir: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Throughput and latency of the API against a bare axum server's ceiling.
    Api(warden_memtest::bench::BenchApiArgs),
    /// CPU cost of the monitoring loop: scrape, store and evaluate rules for 100
    /// targets × 500 series every 5 s (goal: under 5% of one core).
    Scrape(warden_monitor::bench_scrape::BenchScrapeArgs),
    /// Warden's leak detector and the canonical PromQL rule scored on a labelled
    /// corpus of memory series: precision, recall and detection delay per leak rate.
    Detector(warden_monitor::bench::BenchDetectorArgs),
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
            Command::Up(args) => up(args).await,
            Command::Api(args) => serve_api(args).await,
            Command::Memtest(args) => until_interrupted(memtest(args)).await,
            Command::Release(command) => release(command),
            Command::BuildInfo => {
                println!("{}", serde_json::to_string(&BUILD)?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Gate(args) => until_interrupted(gate(args)).await,
            Command::Deps(command) => deps::run(command),
            Command::Bench(BenchCommand::Api(args)) => {
                let exe = std::env::current_exe()?;
                warden_memtest::bench::run_api_bench(args, &exe)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Bench(BenchCommand::Detector(args)) => {
                warden_monitor::bench::run_detector_bench(&args).map(verdict)
            }
            Command::Bench(BenchCommand::Scrape(args)) if args.serve => {
                warden_monitor::bench_scrape::serve(&args)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Bench(BenchCommand::Scrape(args)) => {
                let exe = std::env::current_exe()?;
                warden_monitor::bench_scrape::run(&args, &exe)
                    .await
                    .map(verdict)
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
    // Set by `warden up`'s supervisor: stop when it is gone instead of living on.
    let supervisor = std::env::var("WARDEN_SUPERVISOR_PID")
        .ok()
        .and_then(|pid| pid.parse().ok());
    app.run_until(async move {
        tokio::select! {
            () = warden_api::shutdown_signal() => {}
            () = warden_api::supervisor_gone(supervisor) => {}
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `warden up`: the API instance under a supervisor, the monitoring loop and the
/// console, until SIGINT/SIGTERM.
async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut config = warden_monitor::control::MonitorConfig::load(args.config.as_deref())?;
    if let Some(interval) = args.scrape_interval {
        config.monitor.scrape_interval = interval;
        config.monitor.scrape_timeout = config.monitor.scrape_timeout.min(interval);
        config.validate()?;
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data dir {}: {e}",
            args.data_dir.display()
        )
    })?;
    let store = warden_store::Store::open(&args.data_dir.join("control.db"))?;
    let release = args.release.unwrap_or_else(|| {
        format!(
            "{}-{}",
            BUILD.version,
            BUILD.git_commit.chars().take(7).collect::<String>()
        )
    });
    let console = tokio::net::TcpListener::bind(args.console)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--console): {e}", args.console))?;

    let (targets, targets_rx) = tokio::sync::watch::channel(Vec::new());
    let status = warden_monitor::control::MonitorStatus::new()?;
    let spec = warden_deploy::supervisor::InstanceSpec {
        bin: std::env::current_exe()?,
        release,
        listen: args.listen,
        data_dir: args.data_dir.join("api"),
        args: args.api_args,
    };
    let supervisor = warden_deploy::supervisor::supervise(spec, store.clone(), targets);
    let monitor = warden_monitor::control::run(config, store.clone(), targets_rx, status.clone());
    let console = axum::serve(console, warden_monitor::control::console(store, status));
    tracing::info!(api = %args.listen, console = %args.console, "warden is up");
    tokio::select! {
        result = supervisor => result?,
        result = monitor => result?,
        result = console => result?,
        () = warden_api::shutdown_signal() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `warden release add|list`.
fn release(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    let open = |data_dir: &std::path::Path| -> anyhow::Result<warden_store::Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create the data dir {}: {e}", data_dir.display())
        })?;
        Ok(warden_store::Store::open(&data_dir.join("control.db"))?)
    };
    match command {
        ReleaseCommand::Add {
            bin,
            name,
            lockfile,
            api_args,
            data_dir,
            json,
        } => {
            let store = open(&data_dir)?;
            let new = warden_deploy::release::NewRelease {
                bin: bin.map_or_else(std::env::current_exe, Ok)?,
                name,
                lockfile,
                args: api_args,
            };
            let (release, warning) = warden_deploy::release::add(&store, &data_dir, &new)?;
            if let Some(warning) = warning {
                eprintln!("warning: {warning}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&release)?);
            } else {
                println!(
                    "release {} recorded: version {}, commit {}, {} packages, binary sha256 {}",
                    release.name,
                    release.version,
                    release.git_commit,
                    release.dependencies.len(),
                    release.binary_sha256
                );
            }
        }
        ReleaseCommand::List { data_dir, json } => {
            let releases = open(&data_dir)?.releases()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&releases)?);
            } else if releases.is_empty() {
                println!("no releases yet: record one with `warden release add`");
            } else {
                print!("{}", warden_deploy::release::table(&releases));
            }
        }
    }
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
