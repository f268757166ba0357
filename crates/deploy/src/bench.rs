//! `warden bench proxy` and `warden bench rollback`: the front proxy next to nginx,
//! and how long a rollback takes to reach users.
//!
//! **Proxy.** One API instance (`warden api`, a child process on a fresh SQLite data
//! dir) sits behind two reverse proxies at once: Warden's [`Proxy`] (in this process,
//! on a Tokio runtime of its own with `--workers` threads, as if it were a process of
//! its own) and nginx (`--workers` worker processes, keep-alive to the instance, no
//! access log). The in-repo load generator (`warden_memtest::load`, closed loop over
//! `--concurrency` keep-alive connections) drives the same request through each in
//! interleaved rounds — the order of the two proxies alternates from round to round,
//! so machine noise falls on both — and, for reference, the instance directly. The
//! request is an authenticated `GET /v1/items/{id}` (bearer token, session check,
//! SQLite read, 238-byte JSON). Figures are medians over rounds; the goal is Warden's
//! throughput ≥ 0.9 × nginx's and its p99 ≤ 1.2 × nginx's.
//!
//! **Rollback.** In a scratch data dir, releases `v1` and `v2` of this binary (with
//! different, harmless `--token-ttl`) are recorded and `warden up --release v1` is
//! started (one replica, a one-hour bake so the previous release stays warm). Then,
//! `--rollbacks` times: `warden deploy v2 --force` (untimed), then the clock starts
//! as the real `warden rollback` CLI process is spawned, while `GET /healthz` is sent
//! through the proxy in a tight loop; the proxy names the release that served each
//! response (`x-warden-release`). The rollback time is when the first of
//! `--confirm` consecutive responses from `v1` was *answered* (an upper bound on
//! when the switch happened). The goal is a median under one second.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
pub use warden_memtest::load::Side;
use warden_memtest::load::{self, LoadPlan, LoadReport, summarise};
pub use warden_memtest::nginx::find_nginx;
use warden_memtest::nginx::{Nginx, nginx_version, stop_child};
use warden_memtest::target::{Target, free_port};

use crate::proxy::{Backend, Proxy, RELEASE_HEADER, Routes, Upstream};

/// Throughput at least this share of nginx's.
pub const THROUGHPUT_RATIO_GOAL: f64 = 0.9;
/// p99 latency at most this multiple of nginx's.
pub const P99_RATIO_GOAL: f64 = 1.2;
/// Median rollback time under this.
pub const ROLLBACK_GOAL_MS: f64 = 1000.0;

/// Options of `warden bench proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchProxyArgs {
    /// Length of each measurement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Interleaved rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// nginx worker processes, and threads of Warden's proxy runtime
    /// [default: the number of CPUs, as nginx's `worker_processes auto` and
    /// `warden up` do].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The nginx binary [default: `nginx` on PATH, else /usr/sbin/nginx].
    #[arg(long, value_name = "PATH")]
    pub nginx: Option<PathBuf>,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `warden bench rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchRollbackArgs {
    /// Rollbacks to time (each after a deploy of v2).
    #[arg(long, default_value_t = 20)]
    pub rollbacks: usize,
    /// Consecutive responses from the old release that confirm a rollback.
    #[arg(long, default_value_t = 20)]
    pub confirm: usize,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The report of `warden bench proxy`.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyBenchReport {
    pub request: String,
    pub response_bytes: usize,
    pub concurrency: usize,
    pub duration_s: f64,
    pub rounds: usize,
    pub workers: usize,
    pub nginx_version: String,
    /// The API instance without a proxy, for reference.
    pub direct: Side,
    pub nginx: Side,
    pub warden: Side,
    /// Warden's median throughput / nginx's.
    pub throughput_ratio: f64,
    /// Warden's median p99 / nginx's.
    pub p99_ratio: f64,
    pub throughput_ratio_goal: f64,
    pub p99_ratio_goal: f64,
    /// Both ratios within their goals and no failed request through Warden.
    pub passed: bool,
}

/// One timed rollback.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackSample {
    /// Spawning `warden rollback` → the first of the confirming responses answered.
    pub ms: f64,
    /// Spawning `warden rollback` → the command exited.
    pub command_ms: f64,
    /// The console's own figure: request received → proxy switched.
    pub switch_ms: f64,
    /// Whether the old release was still warm (no cold start).
    pub warm: bool,
}

/// The report of `warden bench rollback`.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackBenchReport {
    pub rollbacks: usize,
    pub confirm: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    pub median_command_ms: f64,
    pub median_switch_ms: f64,
    /// Requests through the proxy that did not get a 200 while rolling back.
    pub failed_requests: u64,
    /// Requests sent through the proxy while rolling back.
    pub requests: u64,
    pub samples: Vec<RollbackSample>,
    pub goal_ms: f64,
    /// Median under the goal, every rollback warm, no failed request.
    pub passed: bool,
}

// ---------------------------------------------------------------- proxy bench

/// Runs `warden bench proxy` with `exe` as the API; true when the goals are met.
pub async fn run_proxy_bench(args: BenchProxyArgs, exe: &Path) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.concurrency > 0 && args.rounds > 0,
        "--concurrency and --rounds must be at least 1"
    );
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be more than 0 s");
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    anyhow::ensure!(
        (1..=256).contains(&workers),
        "--workers must be between 1 and 256"
    );
    let nginx_bin = find_nginx(args.nginx.as_deref())?;
    let nginx_version = nginx_version(&nginx_bin)?;

    eprintln!("starting the API instance ({})", exe.display());
    let api = Target::start(exe, &[], &[]).await?;
    let setup = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (token, item_id) =
        warden_memtest::bench::sign_up_with_item(&setup, &api.base, "bench-proxy@example.com")
            .await?;
    let backend: SocketAddr = api
        .base
        .trim_start_matches("http://")
        .parse()
        .context("the API's address")?;

    let warden = InProcessProxy::start(backend, workers)?;
    eprintln!(
        "Warden's proxy on {} ({workers} runtime threads)",
        warden.addr
    );
    let nginx = Nginx::start(&nginx_bin, workers, NGINX_WORKER_CONNECTIONS, |listen| {
        proxy_site(listen, backend, args.concurrency)
    })?;
    eprintln!("{nginx_version} on {} ({workers} workers)", nginx.addr);

    let path = format!("/v1/items/{item_id}");
    let auth = format!("Bearer {token}");
    let targets = [
        ("direct".to_owned(), format!("{}{path}", api.base)),
        ("nginx".to_owned(), format!("http://{}{path}", nginx.addr)),
        ("warden".to_owned(), format!("http://{}{path}", warden.addr)),
    ];
    // One client per target, so no target reuses another's connections.
    let clients = targets
        .iter()
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(args.concurrency)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;

    nginx
        .wait_until_answering(&clients[1], &targets[1].1)
        .await?;
    // Every side must answer the same bytes.
    let mut response_bytes = 0;
    for ((name, url), client) in targets.iter().zip(&clients) {
        let response = client
            .get(url)
            .header(AUTHORIZATION, &auth)
            .send()
            .await
            .with_context(|| format!("{name}: GET {path}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "{name} answered GET {path} with {status}"
        );
        if response_bytes == 0 {
            response_bytes = body.len();
        } else {
            anyhow::ensure!(
                body.len() == response_bytes,
                "{name} answered {} bytes, the API {response_bytes}",
                body.len()
            );
        }
    }

    let plan = LoadPlan {
        concurrency: args.concurrency,
        duration: args.duration,
        max_requests: u64::MAX,
        rate: None,
    };
    let warm_up = LoadPlan {
        max_requests: u64::try_from(args.concurrency.saturating_mul(50)).unwrap_or(u64::MAX),
        ..plan
    };
    for ((name, url), client) in targets.iter().zip(&clients) {
        eprintln!("warming up: {name}");
        measure(client, warm_up, url, &auth).await?;
    }
    let mut runs: Vec<Vec<LoadReport>> = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds {
        // The direct reference first, then the two proxies, alternating which goes
        // first.
        let order: [usize; 3] = if round % 2 == 1 { [0, 1, 2] } else { [0, 2, 1] };
        for t in order {
            let (name, url) = &targets[t];
            let report = measure(&clients[t], plan, url, &auth).await?;
            eprintln!("{}", report.round_line(round, args.rounds, name));
            runs[t].push(report);
        }
    }
    drop(nginx);
    drop(warden);
    api.stop().await;

    let side = |t: usize| summarise(&targets[t].0, &runs[t]);
    let (direct, nginx, warden) = (side(0), side(1), side(2));
    let throughput_ratio = warden.requests_per_s / nginx.requests_per_s.max(f64::EPSILON);
    let p99_ratio = warden.p99_ms / nginx.p99_ms.max(f64::EPSILON);
    let passed = throughput_ratio >= THROUGHPUT_RATIO_GOAL
        && p99_ratio <= P99_RATIO_GOAL
        && warden.errors == 0;
    let report = ProxyBenchReport {
        request: "GET /v1/items/{id} with a bearer token".to_owned(),
        response_bytes,
        concurrency: args.concurrency,
        duration_s: args.duration.as_secs_f64(),
        rounds: args.rounds,
        workers,
        nginx_version,
        direct,
        nginx,
        warden,
        throughput_ratio,
        p99_ratio,
        throughput_ratio_goal: THROUGHPUT_RATIO_GOAL,
        p99_ratio_goal: P99_RATIO_GOAL,
        passed,
    };
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_proxy_table(&report)?;
    }
    Ok(passed)
}

fn print_proxy_table(r: &ProxyBenchReport) -> anyhow::Result<()> {
    warden_telemetry::outln!(
        "warden bench proxy: {}, {} connections, {} s per measurement, median of {} rounds, \
         {} workers per proxy, {}-byte response",
        r.request,
        r.concurrency,
        r.duration_s,
        r.rounds,
        r.workers,
        r.response_bytes
    )?;
    warden_telemetry::outln!(
        "{:<28} {:>10} {:>8} {:>8} {:>8}",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors"
    )?;
    for (label, side) in [
        ("API directly (reference)", &r.direct),
        (r.nginx_version.as_str(), &r.nginx),
        ("warden proxy", &r.warden),
    ] {
        warden_telemetry::outln!(
            "{label:<28} {:>10.0} {:>8.2} {:>8.2} {:>8}",
            side.requests_per_s,
            side.p50_ms,
            side.p99_ms,
            side.errors
        )?;
    }
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    warden_telemetry::outln!(
        "throughput warden/nginx: {:.3} (goal ≥ {}: {})",
        r.throughput_ratio,
        r.throughput_ratio_goal,
        mark(r.throughput_ratio >= r.throughput_ratio_goal)
    )?;
    warden_telemetry::outln!(
        "p99 warden/nginx:        {:.3} (goal ≤ {}: {})",
        r.p99_ratio,
        r.p99_ratio_goal,
        mark(r.p99_ratio <= r.p99_ratio_goal)
    )?;
    if r.warden.errors > 0 {
        warden_telemetry::outln!("{} requests through Warden's proxy failed", r.warden.errors)?;
    }
    Ok(())
}

/// One closed-loop run of authenticated GETs of `url`.
async fn measure(
    client: &reqwest::Client,
    plan: LoadPlan,
    url: &str,
    auth: &str,
) -> anyhow::Result<LoadReport> {
    let (client, url, auth) = (client.clone(), url.to_owned(), auth.to_owned());
    load::run(plan, move |_| {
        let request = client.get(&url).header(AUTHORIZATION, &auth).send();
        async move {
            match request.await {
                Ok(response) => {
                    let ok = response.status() == StatusCode::OK;
                    response.bytes().await.is_ok() && ok
                }
                Err(_) => false,
            }
        }
    })
    .await
}

fn median(mut values: Vec<f64>) -> f64 {
    warden_memtest::stats::median(&mut values)
}

/// The nearest-rank `q` quantile.
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    warden_memtest::stats::quantile(&mut values, q)
}

/// Warden's proxy in this process, on event-loop threads of its own (like a
/// separate process), routing everything to one ready backend.
struct InProcessProxy {
    addr: SocketAddr,
    threads: Option<crate::proxy::ProxyThreads>,
}

impl InProcessProxy {
    fn start(backend: SocketAddr, workers: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let instance = Backend::new("bench", backend);
        instance.set_ready(true);
        let registry = prometheus::Registry::new();
        let proxy = Proxy::new(
            Routes::to(Upstream::new("bench", vec![instance])),
            &registry,
            Duration::from_secs(60),
        )?;
        // The instance runs with the default idle timeout.
        let threads = proxy.spawn(
            listener,
            workers,
            warden_telemetry::serve::Timeouts::default(),
            warden_telemetry::serve::Timeouts::DEFAULT_IDLE,
        )?;
        Ok(Self {
            addr,
            threads: Some(threads),
        })
    }
}

impl Drop for InProcessProxy {
    fn drop(&mut self) {
        if let Some(threads) = self.threads.take() {
            threads.stop();
        }
    }
}

/// nginx's connections per worker: each proxied connection takes two.
const NGINX_WORKER_CONNECTIONS: usize = 4096;

/// nginx as a reverse proxy to one backend: one upstream with keep-alive
/// connections, HTTP/1.1 to it, the client's address in X-Forwarded-For (as
/// Warden's proxy adds it), and keep-alive limits high enough that neither side of
/// nginx reconnects during a run (Warden's proxy has no such limit). The rest of
/// the config is [`warden_memtest::nginx::config`]: no access log, and so on.
fn proxy_site(listen: SocketAddr, backend: SocketAddr, concurrency: usize) -> String {
    let keepalive = concurrency.max(64);
    format!(
        r#"    upstream api {{
        server {backend};
        keepalive {keepalive};
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"#
    )
}

// ------------------------------------------------------------- rollback bench

/// `warden up` started by the benchmark, stopped (SIGTERM, so it stops its API
/// instances) when dropped.
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// An error when it has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("warden up exited ({status}): {}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(15));
    }
}

/// A command of this binary with no WARDEN_* settings from the caller's environment.
fn warden_command(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARDEN_") {
            command.env_remove(key);
        }
    }
    command.env("WARDEN_LOG", "warn").stdin(Stdio::null());
    command
}

/// The release that served `response`, from the proxy's header.
fn served_by(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get(RELEASE_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// Runs `warden bench rollback` with `exe` as both releases; true when the goal is met.
pub async fn run_rollback_bench(args: BenchRollbackArgs, exe: &Path) -> anyhow::Result<bool> {
    anyhow::ensure!(
        (1..=1000).contains(&args.rollbacks),
        "--rollbacks must be between 1 and 1000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.confirm),
        "--confirm must be between 1 and 10000"
    );
    let dir = tempfile::Builder::new()
        .prefix("warden-bench-rollback-")
        .tempdir()?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    {
        let store = warden_store::Store::open(&data_dir.join("control.db"))?;
        for (name, ttl) in [("v1", "1h"), ("v2", "2h")] {
            let new = crate::release::NewRelease {
                bin: exe.to_owned(),
                name: Some(name.to_owned()),
                lockfile: None,
                args: vec![format!("--token-ttl={ttl}")],
            };
            crate::release::add(&store, &data_dir, &new)?;
        }
    }
    let listen = free_port()?;
    let console = free_port()?;
    let log = dir.path().join("up.log");
    let child = warden_command(exe)
        .arg("up")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--console")
        .arg(console.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--replicas",
            "1",
            "--bake",
            "1h",
            "--release",
            "v1",
            "--rollback-on",
            "none",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {} up", exe.display()))?;
    let mut up = Up { child, log };
    eprintln!("warden up: proxy on {listen}, console on {console}, release v1");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .timeout(Duration::from_secs(10))
        .build()?;
    let health = format!("http://{listen}/healthz");
    wait_for_release(&client, &health, "v1", &mut up, Duration::from_secs(120)).await?;

    let mut samples = Vec::new();
    let (mut requests, mut failed) = (0u64, 0u64);
    for n in 1..=args.rollbacks {
        // Deploy v2 (untimed); --force because the last rollback marked it bad.
        let deploy = warden_command(exe)
            .args(["deploy", "v2", "--force", "--json", "--console"])
            .arg(console.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .context("cannot run warden deploy")?;
        anyhow::ensure!(
            deploy.status.success(),
            "warden deploy v2 failed ({}): {}",
            deploy.status,
            String::from_utf8_lossy(&deploy.stderr).trim()
        );
        wait_for_release(&client, &health, "v2", &mut up, Duration::from_secs(30)).await?;
        let snapshot: serde_json::Value = client
            .get(format!("http://{console}/api/deploy"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(
            snapshot["active"] == "v2" && snapshot["warm"] == "v1",
            "after the deploy, expected v2 active and v1 warm; the console says {snapshot}"
        );
        // Let the new instance's start-up settle before timing.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        let rollback = tokio::process::Command::from(warden_command(exe))
            .args([
                "rollback",
                "--json",
                "--reason",
                "warden bench rollback",
                "--console",
            ])
            .arg(console.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run warden rollback")?;
        let command = tokio::spawn(async move {
            let output = rollback.wait_with_output().await;
            (Instant::now(), output)
        });

        let (mut streak, mut first_v1) = (0usize, None);
        let deadline = started + Duration::from_secs(60);
        while streak < args.confirm {
            anyhow::ensure!(
                Instant::now() < deadline,
                "rollback {n}: the proxy did not serve v1 within 60 s: {}",
                up.log_tail()
            );
            requests += 1;
            let answer = match client.get(&health).send().await {
                Ok(response) => {
                    let release = served_by(&response).map(str::to_owned);
                    let ok = response.status() == StatusCode::OK;
                    (response.bytes().await.is_ok() && ok).then_some(release)
                }
                Err(_) => None,
            };
            match answer {
                Some(Some(release)) if release == "v1" => {
                    if streak == 0 {
                        first_v1 = Some(Instant::now());
                    }
                    streak += 1;
                }
                Some(_) => streak = 0,
                None => {
                    failed += 1;
                    streak = 0;
                }
            }
        }
        let (exited, output) = command.await.context("the rollback command's waiter")?;
        let output = output.context("cannot wait for warden rollback")?;
        anyhow::ensure!(
            output.status.success(),
            "warden rollback failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let outcome: crate::controller::Outcome = serde_json::from_slice(&output.stdout)
            .context("warden rollback --json printed something unexpected")?;
        anyhow::ensure!(
            outcome.to == "v1",
            "warden rollback went to {}, not v1",
            outcome.to
        );
        let ms = first_v1.map_or(0.0, |t| millis(t.duration_since(started)));
        let sample = RollbackSample {
            ms,
            command_ms: millis(exited.duration_since(started)),
            switch_ms: outcome.switch_ms,
            warm: outcome.warm,
        };
        eprintln!(
            "rollback {n}/{}: {:.1} ms to v1 for every new request (command exited after \
             {:.1} ms, console switched in {:.2} ms{})",
            args.rollbacks,
            sample.ms,
            sample.command_ms,
            sample.switch_ms,
            if sample.warm { "" } else { ", cold start" }
        );
        samples.push(sample);
        up.check_running()?;
    }
    drop(up);

    let times: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let median_ms = median(times.clone());
    let report = RollbackBenchReport {
        rollbacks: samples.len(),
        confirm: args.confirm,
        median_ms,
        p90_ms: quantile(times.clone(), 0.9),
        max_ms: times.iter().copied().fold(0.0, f64::max),
        median_command_ms: median(samples.iter().map(|s| s.command_ms).collect()),
        median_switch_ms: median(samples.iter().map(|s| s.switch_ms).collect()),
        failed_requests: failed,
        requests,
        passed: median_ms < ROLLBACK_GOAL_MS && failed == 0 && samples.iter().all(|s| s.warm),
        samples,
        goal_ms: ROLLBACK_GOAL_MS,
    };
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        warden_telemetry::outln!(
            "warden bench rollback: {} rollbacks (warden rollback spawned → {} consecutive \
             responses from the old release)",
            report.rollbacks,
            report.confirm
        )?;
        warden_telemetry::outln!(
            "median {:.1} ms, p90 {:.1} ms, max {:.1} ms (goal: median < {} ms: {})",
            report.median_ms,
            report.p90_ms,
            report.max_ms,
            report.goal_ms,
            if report.median_ms < report.goal_ms {
                "met"
            } else {
                "NOT met"
            }
        )?;
        warden_telemetry::outln!(
            "median time until the command exited {:.1} ms; the console's switch {:.2} ms; \
             {} of {} requests failed during the rollbacks",
            report.median_command_ms,
            report.median_switch_ms,
            report.failed_requests,
            report.requests
        )?;
    }
    Ok(report.passed)
}

/// Polls `url` until a 200 comes from `release`.
async fn wait_for_release(
    client: &reqwest::Client,
    url: &str,
    release: &str,
    up: &mut Up,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == StatusCode::OK
            && served_by(&response) == Some(release)
        {
            return Ok(());
        }
        up.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the proxy at {url} did not serve {release} within {}: {}",
            humantime::format_duration(within),
            up.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((median(values.clone()) - 10.5).abs() < 1e-9);
        assert!((quantile(values.clone(), 0.9) - 18.0).abs() < 1e-9);
        assert!((quantile(values, 1.0) - 20.0).abs() < 1e-9);
        assert!(quantile(Vec::new(), 0.9).abs() < 1e-9);
    }

    #[test]
    fn the_nginx_config_keeps_connections_to_the_instance() {
        let site = proxy_site(
            SocketAddr::from(([127, 0, 0, 1], 1000)),
            SocketAddr::from(([127, 0, 0, 1], 2000)),
            16,
        );
        let config = warden_memtest::nginx::config("/tmp/x", 2, NGINX_WORKER_CONNECTIONS, &site);
        assert!(config.contains("worker_processes 2;"));
        assert!(config.contains("server 127.0.0.1:2000;"));
        assert!(config.contains("keepalive 64;"));
        assert!(config.contains("proxy_set_header Connection \"\";"));
        assert!(config.contains("access_log off;"));
        assert!(config.contains("listen 127.0.0.1:1000;"));
    }
}
