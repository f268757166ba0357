//! `warden`: the command line. It parses arguments and wires the crates together;
//! the work itself lives in the library crates.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod deps;
mod postmortem_cli;
mod status_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use warden_api::{ApiArgs, Application, Settings};
use warden_telemetry::BuildInfo;

const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    git_commit: env!("WARDEN_GIT_COMMIT"),
    lockfile_sha256: env!("WARDEN_LOCKFILE_SHA256"),
};

/// The Cargo.lock this binary was built with: a release records its dependency set
/// from it, wherever `warden up` or `warden release add` runs.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// Warden: an API service, and the system that keeps it from going down the way a
/// leaking JSON library once took an API down for 105 minutes.
///
/// Every flag can also be set with an environment variable: WARDEN_ + the flag's
/// name in capitals with - as _ (WARDEN_LISTEN, WARDEN_DATA_DIR, ...); each
/// command's --help shows them. A flag on the command line wins over the variable.
/// Exit codes: 0 success, 1 a check found a problem, 2 usage or environment error.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Warden on this machine: the front proxy on 127.0.0.1:8080, the console
    /// (dashboard, alerts, deploy API) on 127.0.0.1:8081, data in ./warden-data.
    ///
    /// Needs no configuration, server or network: the API's database and the control
    /// plane's store are SQLite files in the data directory. The active release's API
    /// instances (--replicas) run as child processes behind the proxy, restarted if
    /// they die; on first start this binary is recorded as the first release. The
    /// control plane scrapes their /metrics and RSS every 5 s, keeps 7 days of series,
    /// evaluates the alert rules (memory leak, memory high, p99 latency, 5xx ratio,
    /// target down), notifies the [[notifiers]] of --config, and rolls a new release
    /// back by itself when one of --rollback-on fires during its bake window.
    ///
    /// The console's pages: / (dashboard: memory, traffic, latency per release, with
    /// deploy and alert markers, alerts, instances), /status (the public status page:
    /// components, incidents, postmortems, e-mail and webhook sign-up at /subscribe),
    /// /history.atom and /history.rss (incident feeds), /api/v2/summary.json
    /// (Statuspage-compatible), /metrics (the control plane's own). Incidents open by
    /// themselves on alerts and move with rollbacks; `warden incident` and `warden
    /// status` manage them by hand, `warden postmortem` drafts the write-up.
    Up(UpArgs),
    /// Run one API instance (what `up` supervises), configured by flags, WARDEN_*
    /// environment variables or a TOML file (--config).
    ///
    /// Endpoints: /v1/users, /v1/sessions, /v1/me, /v1/items; /healthz, /readyz,
    /// /metrics (Prometheus) and /openapi.json (OpenAPI 3.1).
    Api(ApiArgs),
    /// Does Warden's API leak memory? Drives a realistic workload in rounds and tests
    /// whether the heap keeps growing from round to round.
    ///
    /// What it drives: a Warden API (`warden api`) and its /v1 routes only — sign-ups,
    /// logins and logouts, item creates, reads, lists, updates and deletes, plus bad
    /// input. Starts the API binary (default: this one) on a temporary data dir and a
    /// free loopback port, or measures a running one (--url, --pid). Prints a one-sentence
    /// verdict with the leak rate in bytes per request and its 95% confidence
    /// interval; --report DIR also writes a JSON report and an SVG chart.
    Memtest(warden_memtest::memtest::MemtestArgs),
    /// Test a dependency update: run the memory test's scenario against the current
    /// build and the updated one, interleaved, and compare leaks, peak memory and
    /// latency.
    ///
    /// What it drives: two builds of Warden's API (`warden` binaries), with the
    /// memory test's /v1 workload.
    ///
    /// With both lockfiles it lists the packages whose versions changed. Writes a
    /// JSON report and a Markdown table for the pull request with --report DIR.
    Gate(warden_memtest::gate::GateArgs),
    /// The release registry: record a build as an immutable release, list releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Print this binary's build identity as JSON (version, git commit, Cargo.lock
    /// SHA-256), or with --lockfile the Cargo.lock it was built with; `warden release
    /// add` reads both from the binary it records.
    #[command(hide = true)]
    BuildInfo {
        /// Print the Cargo.lock this binary was built with.
        #[arg(long)]
        lockfile: bool,
    },
    /// Move traffic to a recorded release, with no failed requests.
    ///
    /// Asks the running `warden up` (--console) to start the release's instances,
    /// wait until every one answers /readyz, switch the proxy to them in one step and
    /// drain the old ones. The previous release stays warm (running, no traffic)
    /// through the bake window, so `warden rollback` is a switch, not a restart. A
    /// release that does not get ready is never switched to; the error says why.
    ///
    /// When the release's Cargo.lock differs from the active one's, a passing
    /// `warden gate` report of the pair is required (--gate), unless --force, which
    /// is recorded in the event log. Exit 1 when the deploy was refused or failed.
    Deploy(DeployArgs),
    /// Move traffic back to the last known good release, now.
    ///
    /// When that release is still warm (within the bake window of the deploy that
    /// replaced it) new requests reach it within milliseconds; otherwise it is
    /// started first. The release rolled back from is marked bad. Works while the
    /// control plane's store or notifiers are failing: it needs only the running
    /// `warden up` and its admin token. The steps by hand and on Kubernetes are in
    /// docs/RUNBOOK.md.
    Rollback(RollbackArgs),
    /// Practice runs on a scratch data dir and loopback ports.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Third-party libraries of any lockfile (Cargo, pip/poetry/uv, npm, Go):
    /// inventory, audit (RustSec and OSV advisories; licenses, duplicates and sources
    /// of a Cargo.lock), lockfile diffs, and the ledger of every update and its impact.
    #[command(subcommand)]
    Deps(deps::DepsCommand),
    /// Incidents on the status page: open one, post updates as it moves from
    /// investigating to identified, monitoring and resolved (then its postmortem),
    /// list them.
    ///
    /// Talks to the running `warden up` (--console) with its admin token, like
    /// `warden deploy`. Updates without --message post the templates of the
    /// communication plan (docs/COMMUNICATION.md).
    #[command(subcommand)]
    Incident(status_cli::IncidentCommand),
    /// The status page: set a component's state, schedule maintenance, manage its
    /// subscribers, or export the page and its Statuspage-compatible JSON as static
    /// files.
    ///
    /// The page is served by `warden up` on the console: /status, /api/v2/*.json,
    /// /history.atom and /history.rss.
    #[command(subcommand)]
    Status(status_cli::StatusCommand),
    /// Draft the postmortem of an incident from the event log and the stored series
    /// (`warden postmortem INCIDENT`: summary, root cause candidates with the
    /// dependency changes and memory evidence, timeline, resolution, checklist), or
    /// publish it on the status page (`warden postmortem publish INCIDENT`).
    Postmortem(postmortem_cli::PostmortemArgs),
    /// Benchmarks, side by side with their peers in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Practise a rollback: deploys a release that leaks, and times you (or, with
    /// --auto, itself) rolling back, while simulated users send requests. Exit 1
    /// when traffic did not get back to the good release or a request failed.
    Rollback(warden_deploy::drill::DrillRollbackArgs),
    /// Replay the outage Warden was built from: users on v1, then v2 — its JSON
    /// crate updated, leaking on every request — deployed with --force. Prints the
    /// timeline (leak alert, automatic rollback, incident opened, updated and
    /// resolved, subscribers notified, postmortem drafted) and a scorecard next to
    /// the original outage. Exit 1 when a goal is missed.
    Leak(warden_deploy::drill_leak::DrillLeakArgs),
}

/// How to reach the running `warden up`.
#[derive(clap::Args)]
struct ConsoleArgs {
    /// The console of the running `warden up`.
    #[arg(
        long,
        env = "WARDEN_CONSOLE",
        value_name = "ADDR",
        default_value = "127.0.0.1:8081"
    )]
    console: std::net::SocketAddr,
    /// Its data directory, where it keeps the admin token when WARDEN_ADMIN_TOKEN is
    /// not set.
    #[arg(
        long,
        env = "WARDEN_DATA_DIR",
        value_name = "DIR",
        default_value = "./warden-data"
    )]
    data_dir: PathBuf,
    /// The admin token (default: the one in the data directory).
    #[arg(
        long = "admin-token",
        env = "WARDEN_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// `warden deploy`'s flags.
#[derive(clap::Args)]
struct DeployArgs {
    /// The release to deploy (`warden release list`).
    release: String,
    /// Send this share of requests to the new release first, e.g. 10%.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    canary: Option<f64>,
    /// How long the canary runs before the full switch.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    canary_for: std::time::Duration,
    /// A `warden gate` report (gate.json) of the active release against this one.
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
    /// Deploy without a passing gate report, or a release marked bad. Recorded.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    console: ConsoleArgs,
}

/// `warden rollback`'s flags.
#[derive(clap::Args)]
struct RollbackArgs {
    /// The release to go back to [default: the warm one, else the last known good].
    #[arg(long, value_name = "RELEASE")]
    to: Option<String>,
    /// Why, for the event log and the bad mark on the release rolled back from.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    #[command(flatten)]
    console: ConsoleArgs,
}

/// A duration that must not be zero ("0s" would close every connection at once).
fn nonzero_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be greater than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// "10%" or "10" → 10.0.
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p < 100.0 => Ok(p),
        _ => Err(format!(
            "{text:?}: give a share between 0% and 100%, e.g. 10%"
        )),
    }
}

/// `warden up`'s flags.
#[derive(clap::Args)]
struct UpArgs {
    /// Where users reach the API: the front proxy.
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
    /// The release to run: a recorded one, or else this binary recorded under that
    /// name [default: the active release, else this binary as VERSION-COMMIT].
    #[arg(long, env = "WARDEN_RELEASE", value_name = "NAME")]
    release: Option<String>,
    /// Extra argument for the API instances of a release recorded by this command
    /// (repeatable), e.g. --api-arg=--chaos-leak-bytes-per-request=4096.
    #[arg(long = "api-arg", value_name = "ARG", allow_hyphen_values = true)]
    api_args: Vec<String>,
    /// API instances per release.
    #[arg(long, env = "WARDEN_REPLICAS", value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    replicas: u16,
    /// How long the previous release stays warm after a deploy, and how long a new
    /// release can be rolled back automatically.
    #[arg(long, env = "WARDEN_BAKE", value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    bake: std::time::Duration,
    /// How long old instances get to finish their requests after a switch.
    #[arg(long, env = "WARDEN_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: std::time::Duration,
    /// How long an instance gets to answer a request before the proxy answers 504
    /// (above the API's own --request-timeout: it catches a hung instance).
    #[arg(long, env = "WARDEN_UPSTREAM_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    upstream_timeout: std::time::Duration,
    /// A response slower than this (to its last byte) counts its user as affected,
    /// like a failed one, in warden_proxy_clients_affected and the stored windows
    /// the postmortem reads; the default is the LatencyHigh alert's threshold.
    #[arg(long, env = "WARDEN_LATENCY_OBJECTIVE", value_name = "DURATION", default_value = "500ms", value_parser = humantime::parse_duration)]
    latency_objective: std::time::Duration,
    /// The window the proxy counts distinct users in (1s to 1h, aligned to the
    /// clock); one row per window in the store.
    #[arg(long, env = "WARDEN_CLIENT_WINDOW", value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    client_window: std::time::Duration,
    /// How long a client has to send a complete request head to the proxy, the
    /// console or an API instance (from connecting, and from the first byte of each
    /// later request on a keep-alive connection) before the connection is closed.
    #[arg(long, env = "WARDEN_HEADER_READ_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = nonzero_duration)]
    header_read_timeout: std::time::Duration,
    /// How long a keep-alive connection to the proxy, the console or an API instance
    /// may wait for its next request before it is closed. The proxy drops its unused
    /// connections to the instances after half of it (at most 30 s).
    #[arg(long, env = "WARDEN_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = nonzero_duration)]
    idle_timeout: std::time::Duration,
    /// How long a new release's instances get to answer /readyz.
    #[arg(long, env = "WARDEN_READY_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    ready_timeout: std::time::Duration,
    /// Alerts that roll a release back automatically during its bake window
    /// (comma-separated); "none" turns automatic rollback off.
    #[arg(
        long,
        env = "WARDEN_ROLLBACK_ON",
        value_name = "ALERTS",
        value_delimiter = ',',
        default_value = "MemoryLeak,ErrorRatioHigh,LatencyHigh"
    )]
    rollback_on: Vec<String>,
    /// The admin token deploys and rollbacks must present [default: generated once,
    /// kept in DATA_DIR/admin-token].
    #[arg(
        long = "admin-token",
        env = "WARDEN_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
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
        /// The lockfile to record as its dependency set: a Cargo.lock, or any format
        /// `warden deps inventory` reads [default: the Cargo.lock the binary was
        /// built with, which it carries].
        #[arg(long, value_name = "FILE")]
        lockfile: Option<PathBuf>,
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
    /// Warden's front proxy next to nginx (Debian's package) in front of the same API
    /// instance, same load, interleaved rounds (goals: throughput ≥ 0.9 × nginx's,
    /// p99 ≤ 1.2 × nginx's).
    Proxy(warden_deploy::bench::BenchProxyArgs),
    /// Rollback time as users see it: from spawning `warden rollback` until every new
    /// request through the proxy is served by the old release, over repeated
    /// deploys and rollbacks of a scratch `warden up` (goal: median under 1 s).
    Rollback(warden_deploy::bench::BenchRollbackArgs),
    /// The status page under a herd of readers (1,000 connections, no cached ETag)
    /// next to nginx serving the exported page as a static file, same load,
    /// interleaved rounds (goals: throughput ≥ 0.5 × nginx's, p99 < 50 ms).
    Status(warden_status::bench::BenchStatusArgs),
}

/// Gives every long flag that has no variable of its own the conventional one,
/// WARDEN_ + its name in capitals with - as _, in every subcommand: the convention
/// then holds for flags added later without anyone remembering it.
/// A switch (--json) reads the usual spellings from its variable: 1/0, true/false,
/// yes/no, on/off. Hidden commands (build-info, which `warden release add` runs) read
/// none, so a variable meant for another command can never break them.
fn with_env(command: clap::Command) -> clap::Command {
    let mut command = command.mut_args(|arg| match arg.get_long() {
        Some(long) if arg.get_env().is_none() => {
            let name = format!("WARDEN_{}", long.to_ascii_uppercase().replace('-', "_"));
            let switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
            let arg = arg.env(name);
            if switch {
                arg.value_parser(clap::builder::BoolishValueParser::new())
            } else {
                arg
            }
        }
        _ => arg,
    });
    let names: Vec<String> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_env);
    }
    command
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&with_env(Cli::command()).get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };

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
            Command::Deploy(args) => deploy(args).await,
            Command::Rollback(args) => rollback(args).await,
            Command::Drill(DrillCommand::Rollback(args)) => {
                let report = warden_deploy::drill::run(&args, &std::env::current_exe()?).await?;
                if args.json {
                    warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
                } else {
                    warden_telemetry::out!("{}", warden_deploy::drill::render(&report))?;
                }
                Ok(verdict(report.passed))
            }
            Command::Drill(DrillCommand::Leak(args)) => {
                let card = warden_deploy::drill_leak::run(&args, &std::env::current_exe()?).await?;
                if args.json {
                    warden_telemetry::outln!("{}", serde_json::to_string_pretty(&card)?)?;
                } else {
                    warden_telemetry::out!("{}", warden_deploy::drill_leak::render(&card))?;
                }
                Ok(verdict(card.passed))
            }
            Command::BuildInfo { lockfile: false } => {
                warden_telemetry::outln!("{}", serde_json::to_string(&BUILD)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::BuildInfo { lockfile: true } => {
                warden_telemetry::out!("{CARGO_LOCK}")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Gate(args) => until_interrupted(gate(args)).await,
            Command::Deps(command) => deps::run(command),
            Command::Incident(command) => status_cli::incident(command).await,
            Command::Status(command) => status_cli::status(command).await,
            Command::Postmortem(args) => postmortem_cli::run(args).await,
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
            Command::Bench(BenchCommand::Proxy(args)) => {
                let exe = std::env::current_exe()?;
                until_interrupted(async {
                    warden_deploy::bench::run_proxy_bench(args, &exe)
                        .await
                        .map(verdict)
                })
                .await
            }
            Command::Bench(BenchCommand::Rollback(args)) => {
                let exe = std::env::current_exe()?;
                until_interrupted(async {
                    warden_deploy::bench::run_rollback_bench(args, &exe)
                        .await
                        .map(verdict)
                })
                .await
            }
            Command::Bench(BenchCommand::Status(args)) => {
                until_interrupted(async {
                    warden_status::bench::run_status_bench(args)
                        .await
                        .map(verdict)
                })
                .await
            }
        }
    });
    match result {
        Ok(code) => code,
        // The reader of stdout had enough (`| head`): stop quietly, like any Unix tool.
        Err(error) if error.is::<warden_telemetry::output::StdoutClosed>() => ExitCode::SUCCESS,
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
    warden_store::datadir::create_dir(&args.data_dir)
        .map_err(|e| anyhow::anyhow!("the data dir (--data-dir): {e}"))?;
    // One `warden up` per data dir: a second would share the store and the API's
    // database with the first. It is refused before it changes anything.
    let _lock = warden_store::datadir::Lock::acquire(
        &args.data_dir,
        "warden up",
        &format!("proxy {}, console {}", args.listen, args.console),
    )?;
    // Secrets live there (webhook secrets, the admin token, the API's users): owner
    // only, whatever the umask; a data dir open to others is tightened and logged.
    warden_store::datadir::prepare(&args.data_dir)
        .map_err(|e| anyhow::anyhow!("the data dir (--data-dir): {e}"))?;
    let api_data_dir = args.data_dir.join("api");
    warden_store::datadir::create_dir(&api_data_dir)
        .map_err(|e| anyhow::anyhow!("the data dir (--data-dir): {e}"))?;
    let store = warden_store::Store::open(&args.data_dir.join("control.db"))?;
    let exe = std::env::current_exe()?;
    let initial = warden_deploy::release::for_up(
        &store,
        &args.data_dir,
        args.release.as_deref(),
        &exe,
        &args.api_args,
    )?;
    let token = warden_deploy::admin::token(args.admin_token.as_deref(), &args.data_dir, true)?;
    let rollback_on = args
        .rollback_on
        .into_iter()
        .filter(|a| a != "none" && !a.is_empty())
        .collect();
    // The same deadlines for the proxy's clients, the console's and the instances'.
    let connection_timeouts = warden_telemetry::serve::Timeouts {
        header_read: args.header_read_timeout,
        idle: args.idle_timeout,
    };
    let proxy_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", args.listen))?;
    let console = tokio::net::TcpListener::bind(args.console)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--console): {e}", args.console))?;

    // After a crash, close what the crashed run left (its instances, dead or
    // orphaned) before this one starts its own; then record this start.
    let run = warden_deploy::recovery::Run {
        pid: std::process::id(),
        version: format!("{}-{}", BUILD.version, BUILD.git_commit),
        listen: args.listen.to_string(),
        console: args.console.to_string(),
    };
    let recovered = {
        let run = run.clone();
        store
            .blocking(move |s| warden_deploy::recovery::start(s, &run))
            .await?
    };
    if let Some(recovered) = &recovered {
        tracing::info!(event = recovered.event.id, "the restart is recorded");
    }
    let record_store = store.clone();

    let (targets, targets_rx) = tokio::sync::watch::channel(Vec::new());
    let status = warden_monitor::control::MonitorStatus::new()?;
    let placeholder = warden_deploy::proxy::Upstream::new(&initial.name, Vec::new());
    let counting = warden_deploy::proxy::ClientCounting {
        key: warden_deploy::proxy::client_key(&args.data_dir)?,
        latency_objective: args.latency_objective,
        window: args.client_window,
    };
    let proxy = warden_deploy::proxy::Proxy::with_clients(
        warden_deploy::proxy::Routes::to(placeholder),
        status.registry(),
        args.upstream_timeout,
        counting,
    )?;
    let context = warden_deploy::supervisor::Context {
        store: store.clone(),
        targets: std::sync::Arc::new(targets),
        proxy: proxy.clone(),
    };
    let settings = warden_deploy::controller::Settings {
        replicas: usize::from(args.replicas),
        api_data_dir,
        bake: args.bake,
        drain_timeout: args.drain_timeout,
        ready_timeout: args.ready_timeout,
        rollback_on,
        connection_timeouts,
    };
    // From here on every way out records the stop, so that only a crash is taken
    // for one.
    let outcome = async {
        let controller = warden_deploy::controller::Controller::start(context, settings, &initial)?;
        let alerts = status.transitions();
        let on_call = warden_monitor::control::dispatcher(&config, store.clone())?;
        let monitor = warden_monitor::control::run(
            config,
            store.clone(),
            targets_rx,
            status.clone(),
            on_call.clone(),
        );
        let status_page = status_cli::console(
            &args.data_dir,
            store.clone(),
            warden_status::Wiring {
                admin_token: token.clone(),
                base_url: format!("http://{}", args.console),
                on_call: Some(on_call),
            },
        )?;
        let console_routes = warden_monitor::control::console(store, status)
            .merge(warden_deploy::admin::router(controller.clone(), &token))
            .merge(status_page)
            .method_not_allowed_fallback(warden_api::routes::method_not_allowed);
        // Handlers get the client address (ConnectInfo), which limits sign-ups on
        // the status page. The console stops with the process: no graceful shutdown.
        let console = warden_telemetry::serve::serve(
            console,
            console_routes,
            connection_timeouts,
            std::future::pending(),
        );
        tokio::spawn(controller.clone().watch_alerts(alerts));
        tokio::spawn(
            controller
                .clone()
                .record_client_windows(std::time::Duration::from_secs(5)),
        );
        let proxy_threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let mut proxy_loops = proxy.spawn(
            proxy_listener.into_std()?,
            proxy_threads,
            connection_timeouts,
            connection_timeouts.idle,
        )?;
        tracing::info!(
            api = %args.listen,
            console = %args.console,
            release = %initial.name,
            "warden is up"
        );
        let outcome: anyhow::Result<()> = tokio::select! {
            result = proxy_loops.exited() => result,
            result = monitor => result,
            () = console => Err(anyhow::anyhow!("the console stopped")),
            () = warden_api::shutdown_signal() => Ok(()),
        };
        controller.shutdown().await;
        outcome
    }
    .await;
    // Last, after the instances' stops: the next start sees a clean stop.
    let error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    if let Err(error) = record_store
        .blocking(move |s| warden_deploy::recovery::stopped(s, &run, error.as_deref()))
        .await
    {
        tracing::error!(%error, "could not record the stop; the next start will take it for a crash");
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// `warden deploy`: asks the running `warden up` to deploy.
async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let gate_report = match &args.gate {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the gate report {}: {e}", path.display())
            })?;
            Some(serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a `warden gate` report (gate.json): {e}",
                    path.display()
                )
            })?)
        }
        None => None,
    };
    let request = warden_deploy::controller::DeployRequest {
        release: args.release,
        canary_percent: args.canary,
        canary_seconds: Some(args.canary_for.as_secs()),
        force: args.force,
        gate_report,
    };
    let client = console_client(&args.console)?;
    outcome(client.deploy(&request).await, args.console.json)
}

/// `warden rollback`: asks the running `warden up` to switch back.
async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let request = warden_deploy::controller::RollbackRequest {
        to: args.to,
        reason: args.reason,
    };
    let client = console_client(&args.console)?;
    outcome(client.rollback(&request).await, args.console.json)
}

fn console_client(args: &ConsoleArgs) -> anyhow::Result<warden_deploy::admin::Client> {
    let token = warden_deploy::admin::token(args.admin_token.as_deref(), &args.data_dir, false)?;
    // A cold start of a release can take the instances' ready timeout.
    warden_deploy::admin::Client::new(args.console, token, std::time::Duration::from_secs(180))
}

/// Prints a deploy or rollback outcome; a refusal is exit 1 with the reason.
fn outcome(
    result: anyhow::Result<warden_deploy::controller::Outcome>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(outcome) => {
            if json {
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&outcome)?)?;
            } else {
                warden_telemetry::outln!("{}", outcome.summary)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is::<warden_deploy::admin::Rejected>() => {
            eprintln!("refused, nothing changed: {error}");
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error),
    }
}

/// `warden release add|list`.
fn release(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    let open = |data_dir: &std::path::Path| -> anyhow::Result<warden_store::Store> {
        warden_store::datadir::prepare(data_dir)
            .map_err(|e| anyhow::anyhow!("the data dir (--data-dir): {e}"))?;
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
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&release)?)?;
            } else {
                warden_telemetry::outln!(
                    "release {} recorded: version {}, commit {}, {} packages, binary sha256 {}",
                    release.name,
                    release.version,
                    release.git_commit,
                    release.dependencies.len(),
                    release.binary_sha256
                )?;
            }
        }
        ReleaseCommand::List { data_dir, json } => {
            let store = open(&data_dir)?;
            let releases = store.releases()?;
            let states = warden_deploy::history::History::load(&store)?.states(&releases);
            if json {
                let list: Vec<_> = releases
                    .iter()
                    .zip(&states)
                    .map(|(release, state)| warden_deploy::history::Listed { release, state })
                    .collect();
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if releases.is_empty() {
                warden_telemetry::outln!("no releases yet: record one with `warden release add`")?;
            } else {
                warden_telemetry::out!("{}", warden_deploy::release::table(&releases, &states))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The convention the top-level help states: every flag of every command reads
    /// WARDEN_ + its name, so nothing needs remembering when a flag is added.
    #[test]
    fn every_flag_reads_its_warden_variable() {
        fn check(command: &clap::Command, path: &str, seen: &mut usize) {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let expected = format!("WARDEN_{}", long.to_ascii_uppercase().replace('-', "_"));
                let env = arg.get_env().and_then(|e| e.to_str());
                // A webhook's signing secret is too specific for WARDEN_SECRET.
                let exception = (path, long) == ("warden status subscriber add-webhook", "secret")
                    && env == Some("WARDEN_WEBHOOK_SECRET");
                assert!(
                    exception || env == Some(expected.as_str()),
                    "{path} --{long} reads {env:?}, not {expected}"
                );
                *seen += 1;
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                check(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let command = with_env(Cli::command());
        command.clone().debug_assert();
        let mut seen = 0;
        check(&command, "warden", &mut seen);
        assert!(seen > 100, "{seen} flags");
    }
}
