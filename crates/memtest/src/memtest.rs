//! `warden memtest`: does the API leak memory under a realistic workload?
//!
//! # Method
//!
//! The test starts the API (or attaches to a running one), registers a pool of users,
//! then runs the [scenario](crate::scenario) in rounds: one warm-up round, then
//! `--rounds` measured ones, all doing the same work. Between rounds, with no request
//! in flight and every connection closed, it reads the heap the program holds
//! (`warden_heap_bytes{kind="allocated"}` from `/metrics`, exact under jemalloc) —
//! the *quiet points*. A program without a leak holds the same memory at every quiet
//! point once warm; a leaking one holds a little more each time, in proportion to the
//! requests served.
//!
//! The verdict fits a Theil–Sen slope (bytes per request) to the quiet points, with
//! Sen's 95% confidence interval, and a Mann–Kendall test for an increasing trend.
//! The build fails when growth is significant (one-sided p < 0.01) **and** the
//! confidence interval reaches the threshold (default 16 B/request): a gate must not
//! pass a build unless it is confident the leak, if any, is below the line. A cache
//! filling to its bound or a warm-up shows up as an early rise that stops; the
//! warm-up round absorbs most of it and the median-based slope ignores the rest.
//!
//! When the target exports no heap figures (a build without jemalloc), RSS from
//! `/proc/PID/status` at the quiet points is used instead. It is much coarser: RSS
//! moves in pages, and an allocator keeps growing its arenas for a while, so a clean
//! build's RSS rises for minutes with a wide upper tail. RSS mode therefore has its
//! own threshold (`--rss-threshold`, default 512 B/request) and fails only when the
//! *lower* bound of the interval reaches it (docs/benchmarks.md gives its floor).
//! Peaks of RSS and heap, sampled every 100 ms, are checked against `--max-rss` and
//! `--max-heap` throughout.
//!
//! When it starts the API itself, the test turns jemalloc's per-thread caches off in
//! the child (`_RJEM_MALLOC_CONF=tcache:false`): objects parked in those caches count
//! as allocated and would add noise of hundreds of KiB between quiet points.
//!
//! # JSON report (`--json`, or `memtest.json` under `--report DIR`)
//!
//! ```json
//! {
//!   "verdict": "pass",                     // "pass" | "fail"
//!   "reasons": [],                         // why it failed, one sentence each
//!   "summary": "heap grows 0.41 B per request (95% CI -0.9 to 1.6) over 8 rounds: no leak",
//!   "target": "/path/to/warden",           // binary started, or the URL measured
//!   "basis": "heap",                       // "heap" | "pss" | "rss": what the quiet points measure
//!   "signal": "heap: warden_heap_bytes (Warden (jemalloc)) from /metrics",  // and why
//!   "threshold_bytes_per_request": 16.0,   // --rss-threshold when basis is "pss" or "rss"
//!   "requests": 181234,                    // all requests sent, setup included
//!   "errors": 0,                           // requests whose answer was not the expected one
//!   "duration_s": 58.2,
//!   "leak_bytes_per_request": {            // null when fewer than 3 quiet points
//!     "estimate": 0.41, "low": -0.9, "high": 1.6,
//!     "confidence": 0.95, "p_increasing": 0.35, "mann_kendall_s": 4
//!   },
//!   "peak_rss_bytes": 48234496,            // null without a pid
//!   "peak_heap_bytes": 9123456,            // null without heap metrics
//!   "latency_ms": { "p50": 0.9, "p99": 4.1 },   // of the measured rounds' mix
//!   "rounds": [                            // round 0 is the warm-up
//!     { "round": 0, "requests": 20000, "errors": 0, "cumulative_requests": 20140,
//!       "heap_bytes": 8012345, "rss_bytes": 40123456, "p50_ms": 0.9, "p99_ms": 4.0 }
//!   ],
//!   "chart": "memtest.svg"                 // null unless --report DIR was given
//! }
//! ```

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::chart;
use crate::load::LoadPlan;
use crate::scenario::World;
use crate::stats::{self, Trend};
use crate::target::{self, ServiceOptions, Target};

/// Options of `warden memtest`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_long_help = "Exit status: 0 no leak and within limits; 1 a leak or a \
    limit was exceeded; 2 usage or start-up error.\n\nExamples:\n  \
    warden memtest                                   # this build, 60 s\n  \
    warden memtest --bin target/release/warden --report out/\n  \
    warden memtest --api-arg=--chaos-leak-bytes-per-request=256   # must fail\n  \
    warden memtest --url http://127.0.0.1:8080 --pid 4242 --duration 5m"
)]
pub struct MemtestArgs {
    /// The service to test, as a command line: `{port}` in it is replaced by a free
    /// loopback port, also in its environment as PORT. Split like a shell would,
    /// without running one. E.g. `--command "gunicorn -w 2 -b 127.0.0.1:{port} app:app"`.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["bin", "url", "api_args"])]
    pub command: Option<String>,
    #[command(flatten)]
    pub service: ServiceOptions,
    /// Warden's own API binary to start (on a fresh temporary data dir and a free
    /// loopback port). [default: this executable]
    #[arg(long = "bin", value_name = "PATH", conflicts_with = "url")]
    pub bin: Option<PathBuf>,
    /// Measure an API that is already running at this loopback URL instead.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Process id of the service at --url, to read its RSS from /proc.
    #[arg(long, value_name = "PID", requires = "url")]
    pub pid: Option<u32>,
    /// Argument passed to the API binary when it is started; repeat for several.
    #[arg(
        long = "api-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        conflicts_with = "url"
    )]
    pub api_args: Vec<String>,
    #[command(flatten)]
    pub workload: Workload,
    /// Fail if RSS ever exceeds this, e.g. `512MiB`.
    #[arg(long, value_name = "SIZE")]
    pub max_rss: Option<bytesize::ByteSize>,
    /// Fail if the heap ever exceeds this, e.g. `256MiB`.
    #[arg(long, value_name = "SIZE")]
    pub max_heap: Option<bytesize::ByteSize>,
    /// Write memtest.json and memtest.svg (memory against requests) into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// The workload and verdict settings, shared by `warden memtest` and `warden gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Workload {
    /// Time budget per API tested, setup included.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Measured rounds after the warm-up round (at least 4).
    #[arg(long, default_value_t = 8)]
    pub rounds: u32,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Send at this many requests per second instead of as fast as answers come.
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Users in the pool; the mix cycles through them, and every 200th operation
    /// logs one of them in and out again.
    #[arg(long, default_value_t = 4)]
    pub users: usize,
    /// Leak threshold in bytes per request: fail when significant heap growth
    /// reaches it.
    #[arg(long, default_value_t = 16.0)]
    pub threshold: f64,
    /// Leak threshold when only RSS can be read (no heap metrics): fail when the
    /// whole confidence interval of RSS growth is at or above it.
    #[arg(long, value_name = "BYTES", default_value_t = 512.0)]
    pub rss_threshold: f64,
}

/// The leak estimate of a report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeakEstimate {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
    pub p_increasing: f64,
    pub mann_kendall_s: i64,
}

/// One round in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundReport {
    pub round: u32,
    pub requests: u64,
    pub errors: u64,
    pub cumulative_requests: u64,
    pub heap_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Latency of the measured rounds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// The JSON report; its schema is in the module documentation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemtestReport {
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub summary: String,
    pub target: String,
    pub basis: &'static str,
    /// What the quiet points measure, and why that and not something else.
    pub signal: String,
    pub threshold_bytes_per_request: f64,
    pub requests: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub leak_bytes_per_request: Option<LeakEstimate>,
    pub peak_rss_bytes: Option<u64>,
    pub peak_heap_bytes: Option<u64>,
    pub latency_ms: Latency,
    pub rounds: Vec<RoundReport>,
    pub chart: Option<String>,
    /// Memory sampled while running, for the chart: (requests so far, bytes).
    #[serde(skip)]
    pub rss_samples: Vec<(f64, f64)>,
    #[serde(skip)]
    pub heap_samples: Vec<(f64, f64)>,
    /// The quiet-point readings the verdict was drawn from, and the fitted trend.
    #[serde(skip)]
    pub quiet_points: Vec<(f64, f64)>,
    #[serde(skip)]
    pub trend: Option<Trend>,
}

impl MemtestReport {
    /// Whether the build passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// Errors that are the caller's fault or the environment's (exit 2), as opposed to a
/// failed check (exit 1, a report with verdict `fail`).
pub(crate) fn check_args(args: &Workload) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rounds >= 4,
        "--rounds must be at least 4 (got {})",
        args.rounds
    );
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(args.users >= 1, "--users must be at least 1");
    anyhow::ensure!(
        args.duration >= Duration::from_secs(5),
        "--duration must be at least 5s (got {})",
        humantime::format_duration(args.duration)
    );
    anyhow::ensure!(
        args.threshold.is_finite() && args.threshold > 0.0,
        "--threshold must be a positive number of bytes per request"
    );
    anyhow::ensure!(
        args.rss_threshold.is_finite() && args.rss_threshold > 0.0,
        "--rss-threshold must be a positive number of bytes per request"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of requests per second"
        );
    }
    Ok(())
}

/// Memory sampled in the background while rounds run.
#[derive(Default)]
struct Samples {
    peak_rss: Option<u64>,
    peak_heap: Option<u64>,
    rss: Vec<(f64, f64)>,
    heap: Vec<(f64, f64)>,
}

/// The environment a started API gets: jemalloc's thread caches off, so that the
/// heap read at quiet points is what the program holds (see the module docs).
pub(crate) const CHILD_ENV: &[(&str, &str)] = &[("_RJEM_MALLOC_CONF", "tcache:false")];

/// Runs the memory test and returns its report; `Err` is a usage or start-up error.
pub async fn run_memtest(args: &MemtestArgs) -> anyhow::Result<MemtestReport> {
    check_args(&args.workload)?;
    let started = Instant::now();
    let (target, name) = match (&args.command, &args.url) {
        (Some(command), _) => (
            Target::command(command, &args.service).await?,
            command.clone(),
        ),
        (None, Some(url)) => (Target::existing(url, args.pid).await?, url.clone()),
        (None, None) => {
            let bin = match &args.bin {
                Some(bin) => bin.clone(),
                None => target::this_executable()?,
            };
            let target = Target::start(&bin, &args.api_args, CHILD_ENV).await?;
            (target, bin.display().to_string())
        }
    };
    let w = &args.workload;
    let progress = Progress::new(w.rounds + 1, args.json);
    progress.message("registering users");
    let mut subject = Subject::start(target, name, w.users).await?;
    let plan = round_plan(w, started.elapsed(), 1);
    for round in 0..=w.rounds {
        progress.round(&subject.name, round, w.rounds);
        if let Err(error) = subject.round(round, plan).await {
            subject.stop().await;
            return Err(error);
        }
        progress.round_done(&subject, w.rounds);
    }
    progress.finish();
    let limits = (args.max_rss, args.max_heap);
    let mut report = subject.finish(w, limits, started).await;
    if let Some(dir) = &args.report {
        write_report(dir, &mut report)?;
    }
    Ok(report)
}

/// How long each round runs: what is left of the budget (`--duration` per API),
/// shared by `subjects` APIs' warm-up and measured rounds, less about half a second
/// per quiet point.
pub(crate) fn round_plan(args: &Workload, spent: Duration, subjects: u32) -> LoadPlan {
    let quiet_cost = Duration::from_millis(600);
    let rounds = (args.rounds + 1) * subjects;
    let left = (args.duration * subjects).saturating_sub(spent);
    LoadPlan {
        concurrency: args.concurrency,
        duration: (left.saturating_sub(quiet_cost * rounds) / rounds)
            .max(Duration::from_millis(500)),
        max_requests: u64::MAX,
        rate: args.rate,
    }
}

/// One API under test: its workload, memory samples and quiet-point readings.
pub(crate) struct Subject {
    pub name: String,
    target: Target,
    world: Arc<World>,
    probe: reqwest::Client,
    /// The runtime heap metric read at quiet points, if the target exports one.
    heap: Option<target::HeapMetric>,
    /// Whether PSS could be read for the whole process tree at start.
    pss: bool,
    sent: Arc<AtomicU64>,
    quiet: Arc<AtomicBool>,
    samples: Arc<std::sync::Mutex<Samples>>,
    sampler: tokio::task::JoinHandle<()>,
    rounds: Vec<RoundReport>,
    /// (requests so far, heap in use or RSS) at the quiet points after the warm-up.
    points: Vec<(f64, f64)>,
}

impl Subject {
    /// Checks that memory can be read, sets up the scenario's users and starts
    /// sampling.
    pub async fn start(target: Target, name: String, users: usize) -> anyhow::Result<Self> {
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        // A service without metrics is measured by its process tree's memory.
        let heap = target::read_heap(&probe, &target.base, &target.metrics_path)
            .await
            .ok()
            .flatten()
            .map(|h| h.source);
        let pss = target
            .pid
            .and_then(target::tree_memory)
            .is_some_and(|m| m.pss.is_some());
        anyhow::ensure!(
            heap.is_some() || target.pid.is_some(),
            "cannot measure memory: {}{} exports no heap metric ({}); pass --pid so the \
             process tree's memory can be read from /proc",
            target.base,
            target.metrics_path,
            target::HEAP_METRICS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let heap_available = heap.is_some();
        let world = Arc::new(
            World::setup(&target.base, users)
                .await
                .with_context(|| format!("setting up the scenario on {name}"))?,
        );
        let sent = Arc::new(AtomicU64::new(0));
        let quiet = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(std::sync::Mutex::new(Samples::default()));
        let sampler = tokio::spawn(sample(
            probe.clone(),
            target.base.clone(),
            target.pid,
            heap_available.then(|| target.metrics_path.clone()),
            Arc::clone(&sent),
            Arc::clone(&quiet),
            Arc::clone(&samples),
        ));
        Ok(Self {
            name,
            target,
            world,
            probe,
            heap,
            pss,
            sent,
            quiet,
            samples,
            sampler,
            rounds: Vec::new(),
            points: Vec::new(),
        })
    }

    fn basis(&self) -> &'static str {
        match (self.heap, self.pss) {
            (Some(_), _) => "heap",
            (None, true) => "pss",
            (None, false) => "rss",
        }
    }

    /// What the quiet points measure, and why, in one sentence.
    fn signal(&self) -> String {
        match self.heap {
            Some(metric) => format!(
                "heap: {}{} ({} runtime heap) from {}",
                metric.name,
                metric
                    .label
                    .map(|(k, v)| format!("{{{k}=\"{v}\"}}"))
                    .unwrap_or_default(),
                metric.runtime,
                self.target.metrics_path
            ),
            None => format!(
                "{} of the process tree (the service and its workers): {} exports no \
                 runtime heap metric",
                if self.pss { "PSS" } else { "RSS" },
                self.target.metrics_path
            ),
        }
    }

    /// Runs one round (round 0 is the warm-up) and reads memory at the quiet point
    /// after it.
    pub async fn round(&mut self, round: u32, plan: LoadPlan) -> anyhow::Result<()> {
        let load = self
            .world
            .round(round, plan, Arc::clone(&self.sent))
            .await
            .with_context(|| format!("round {round} on {} could not run", self.name))?;
        self.quiet.store(true, Ordering::SeqCst);
        let (heap, rss) = quiet_point(&self.probe, &self.target, self.heap.is_some()).await;
        self.quiet.store(false, Ordering::SeqCst);
        let cumulative = self.sent.load(Ordering::Relaxed);
        if let Some(v) = if self.heap.is_some() { heap } else { rss } {
            // The quiet point after the warm-up is where the measured series starts.
            self.points.push((cumulative as f64, v as f64));
        }
        self.rounds.push(RoundReport {
            round,
            requests: load.requests,
            errors: load.errors,
            cumulative_requests: cumulative,
            heap_bytes: heap,
            rss_bytes: rss,
            p50_ms: load.load.p50_ms,
            p99_ms: load.load.p99_ms,
        });
        Ok(())
    }

    async fn stop(self) {
        self.sampler.abort();
        self.target.stop().await;
    }

    /// Stops sampling (and the API, if started here) and judges what was seen.
    pub async fn finish(
        self,
        args: &Workload,
        (max_rss, max_heap): (Option<bytesize::ByteSize>, Option<bytesize::ByteSize>),
        started: Instant,
    ) -> MemtestReport {
        self.sampler.abort();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let requests = self.sent.load(Ordering::Relaxed);
        let errors = self.rounds.iter().map(|r| r.errors).sum();
        let trend = stats::trend(&self.points, 0.95);
        let basis = self.basis();
        let judged = judge(&Evidence {
            basis,
            trend,
            rounds: args.rounds,
            threshold: if basis == "heap" {
                args.threshold
            } else {
                args.rss_threshold
            },
            requests,
            errors,
            peak_rss: samples.peak_rss,
            peak_heap: samples.peak_heap,
            max_rss: max_rss.map(|b| b.as_u64()),
            max_heap: max_heap.map(|b| b.as_u64()),
        });
        let measured = || self.rounds.iter().filter(|r| r.round > 0);
        let mut p50s: Vec<f64> = measured().map(|r| r.p50_ms).collect();
        let mut p99s: Vec<f64> = measured().map(|r| r.p99_ms).collect();
        let report = MemtestReport {
            verdict: if judged.reasons.is_empty() {
                "pass"
            } else {
                "fail"
            },
            reasons: judged.reasons,
            summary: judged.summary,
            signal: self.signal(),
            target: self.name,
            basis,
            threshold_bytes_per_request: if basis == "heap" {
                args.threshold
            } else {
                args.rss_threshold
            },
            requests,
            errors,
            duration_s: started.elapsed().as_secs_f64(),
            leak_bytes_per_request: trend.map(|t| LeakEstimate {
                estimate: t.slope,
                low: t.low,
                high: t.high,
                confidence: 0.95,
                p_increasing: t.p_increasing,
                mann_kendall_s: t.mann_kendall_s,
            }),
            peak_rss_bytes: samples.peak_rss,
            peak_heap_bytes: samples.peak_heap,
            latency_ms: Latency {
                p50: stats::median(&mut p50s),
                p99: stats::median(&mut p99s),
            },
            rounds: self.rounds,
            chart: None,
            rss_samples: samples.rss,
            heap_samples: samples.heap,
            quiet_points: self.points,
            trend,
        };
        self.target.stop().await;
        report
    }
}

/// Heap in use and RSS once the server is idle: no request in flight, connections
/// closed. The smallest of three heap readings, to skip a reading taken while the
/// server was still tearing a connection down.
async fn quiet_point(
    probe: &reqwest::Client,
    target: &Target,
    heap_available: bool,
) -> (Option<u64>, Option<u64>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut heap: Option<u64> = None;
    if heap_available {
        for _ in 0..3 {
            if let Ok(Some(reading)) =
                target::read_heap(probe, &target.base, &target.metrics_path).await
            {
                let v = reading.in_use();
                heap = Some(heap.map_or(v, |h| h.min(v)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let memory = target.pid.and_then(target::tree_memory);
    (heap, memory.map(|m| m.judged()))
}

async fn sample(
    probe: reqwest::Client,
    base: String,
    pid: Option<u32>,
    metrics_path: Option<String>,
    sent: Arc<AtomicU64>,
    quiet: Arc<AtomicBool>,
    samples: Arc<std::sync::Mutex<Samples>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let x = sent.load(Ordering::Relaxed) as f64;
        if let Some(memory) = pid.and_then(target::tree_memory) {
            let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
            s.peak_rss = Some(s.peak_rss.map_or(memory.rss, |p| p.max(memory.rss)));
            s.rss.push((x, memory.judged() as f64));
        }
        if let Some(path) = &metrics_path
            && !quiet.load(Ordering::SeqCst)
            && let Ok(Some(heap)) = target::read_heap(&probe, &base, path).await
        {
            let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
            s.peak_heap = Some(
                s.peak_heap
                    .map_or(heap.allocated, |p| p.max(heap.allocated)),
            );
            s.heap.push((x, heap.allocated as f64));
        }
    }
}

/// What the verdict is drawn from.
pub(crate) struct Evidence {
    basis: &'static str,
    trend: Option<Trend>,
    rounds: u32,
    threshold: f64,
    requests: u64,
    errors: u64,
    peak_rss: Option<u64>,
    peak_heap: Option<u64>,
    max_rss: Option<u64>,
    max_heap: Option<u64>,
}

pub(crate) struct Judgement {
    reasons: Vec<String>,
    summary: String,
}

/// Growth this unlikely under "no trend" counts as significant (one-sided).
const SIGNIFICANCE: f64 = 0.01;
/// Share of requests with an unexpected answer beyond which the run proves nothing.
const MAX_ERROR_RATIO: f64 = 0.01;

pub(crate) fn judge(e: &Evidence) -> Judgement {
    let mut reasons = Vec::new();
    let summary = match e.trend {
        None => {
            reasons.push(format!(
                "too few quiet-point readings of {} to judge a trend",
                e.basis
            ));
            format!(
                "{} could not be read at enough quiet points: no verdict",
                e.basis
            )
        }
        Some(t) => {
            let rate = format!(
                "{} grows {} per request (95% CI {} to {}) over {} rounds",
                e.basis,
                bytes(t.slope),
                bytes(t.low),
                bytes(t.high),
                e.rounds
            );
            let significant = t.p_increasing < SIGNIFICANCE;
            // Heap readings are exact: fail unless confident the leak is below the
            // line. RSS and PSS overstate growth (pages, arenas): fail only when
            // confident it is above.
            let bound = if e.basis == "heap" { t.high } else { t.low };
            if significant && bound >= e.threshold {
                reasons.push(format!(
                    "{rate}, significant (p = {:.2e}) and reaching the threshold of {}/request",
                    t.p_increasing,
                    bytes(e.threshold)
                ));
                format!("{rate}: LEAK")
            } else if significant {
                format!(
                    "{rate}, below the threshold of {}/request: no leak",
                    bytes(e.threshold)
                )
            } else {
                format!(
                    "{rate}, no significant growth (p = {:.2}): no leak",
                    t.p_increasing
                )
            }
        }
    };
    if let (Some(peak), Some(max)) = (e.peak_rss, e.max_rss)
        && peak > max
    {
        reasons.push(format!(
            "peak RSS {} exceeds --max-rss {}",
            bytesize::ByteSize(peak),
            bytesize::ByteSize(max)
        ));
    }
    if let Some(max) = e.max_heap {
        match e.peak_heap {
            Some(peak) if peak > max => reasons.push(format!(
                "peak heap {} exceeds --max-heap {}",
                bytesize::ByteSize(peak),
                bytesize::ByteSize(max)
            )),
            Some(_) => {}
            None => {
                reasons.push("--max-heap was given but the target exports no heap figures".into())
            }
        }
    }
    if e.max_rss.is_some() && e.peak_rss.is_none() {
        reasons.push("--max-rss was given but RSS could not be read (pass --pid)".into());
    }
    if e.errors as f64 > MAX_ERROR_RATIO * e.requests.max(1) as f64 {
        reasons.push(format!(
            "{} of {} requests got an unexpected answer: the scenario did not run as designed",
            e.errors, e.requests
        ));
    }
    Judgement { reasons, summary }
}

/// Bytes with a binary unit, signed, to three significant figures.
fn bytes(v: f64) -> String {
    let a = v.abs();
    if a >= 1024.0 * 1024.0 {
        format!("{:.3} MiB", v / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.3} KiB", v / 1024.0)
    } else {
        format!("{v:.2} B")
    }
}

fn write_report(dir: &Path, report: &mut MemtestReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let svg = report_chart(report)?;
    let chart_path = dir.join("memtest.svg");
    std::fs::write(&chart_path, svg)
        .with_context(|| format!("cannot write {}", chart_path.display()))?;
    report.chart = Some("memtest.svg".into());
    let json_path = dir.join("memtest.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    Ok(())
}

/// The SVG chart of a report: memory sampled while running, the quiet points and the
/// fitted trend, against requests.
pub(crate) fn report_chart(report: &MemtestReport) -> anyhow::Result<String> {
    chart::memory_chart(
        &format!(
            "warden memtest: {} — {}",
            report.target,
            report.verdict.to_uppercase()
        ),
        &[
            chart::Series {
                name: if report.basis == "pss" {
                    "PSS of the process tree (sampled)"
                } else {
                    "RSS of the process tree (sampled)"
                },
                points: &report.rss_samples,
            },
            chart::Series {
                name: "heap allocated (sampled)",
                points: &report.heap_samples,
            },
        ],
        &[chart::Series {
            name: match report.basis {
                "heap" => "heap in use at quiet points",
                "pss" => "PSS at quiet points",
                _ => "RSS at quiet points",
            },
            points: &report.quiet_points,
        }],
        report.trend.map(|t| (t.intercept, t.slope)),
    )
}

/// Prints the report on stdout: JSON with `--json`, else the human summary.
pub fn print_report(report: &MemtestReport, args: &MemtestArgs) -> anyhow::Result<()> {
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else {
        print_summary(report, args.report.as_deref())?;
    }
    Ok(())
}

fn print_summary(report: &MemtestReport, report_dir: Option<&Path>) -> anyhow::Result<()> {
    warden_telemetry::outln!("warden memtest: {}", report.verdict.to_uppercase())?;
    warden_telemetry::outln!("  {}", report.summary)?;
    warden_telemetry::outln!("  measured: {}", report.signal)?;
    for reason in &report.reasons {
        warden_telemetry::outln!("  ✗ {reason}")?;
    }
    warden_telemetry::outln!(
        "  {} requests ({} unexpected answers) in {:.1} s; latency p50 {:.2} ms, p99 {:.2} ms",
        report.requests,
        report.errors,
        report.duration_s,
        report.latency_ms.p50,
        report.latency_ms.p99
    )?;
    let peak = |v: Option<u64>| v.map_or("n/a".to_owned(), |b| bytesize::ByteSize(b).to_string());
    warden_telemetry::outln!(
        "  peak RSS {}, peak heap {}",
        peak(report.peak_rss_bytes),
        peak(report.peak_heap_bytes)
    )?;
    if let Some(dir) = report_dir {
        warden_telemetry::outln!(
            "  report: {}, chart: {}",
            dir.join("memtest.json").display(),
            dir.join("memtest.svg").display()
        )?;
    }
    Ok(())
}

/// A progress bar on a terminal, plain lines otherwise (both on stderr).
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(rounds: u32, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(u64::from(rounds));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "memtest [{bar:30}] {pos}/{len} rounds · {elapsed} · {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    pub(crate) fn message(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None => eprintln!("memtest: {text}"),
        }
    }

    pub(crate) fn round(&self, name: &str, round: u32, rounds: u32) {
        let text = if round == 0 {
            format!("{name}: warm-up round")
        } else {
            format!("{name}: round {round}/{rounds}")
        };
        self.message(&text);
    }

    pub(crate) fn round_done(&self, subject: &Subject, rounds: u32) {
        let Some(last) = subject.rounds.last() else {
            return;
        };
        let mib = |v: Option<u64>| {
            v.map_or("n/a".to_owned(), |b| {
                format!("{:.2} MiB", b as f64 / 1048576.0)
            })
        };
        let text = format!(
            "{}: {} done: {} requests, heap in use {}, RSS {}",
            subject.name,
            if last.round == 0 {
                "warm-up".to_owned()
            } else {
                format!("round {}/{rounds}", last.round)
            },
            last.cumulative_requests,
            mib(last.heap_bytes),
            mib(last.rss_bytes)
        );
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(text);
            }
            None => eprintln!("memtest: {text}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(slope: f64, low: f64, high: f64, p: f64) -> Evidence {
        Evidence {
            basis: "heap",
            trend: Some(Trend {
                slope,
                low,
                high,
                intercept: 0.0,
                mann_kendall_s: 20,
                p_increasing: p,
                points: 9,
            }),
            rounds: 8,
            threshold: 16.0,
            requests: 100_000,
            errors: 0,
            peak_rss: Some(50 << 20),
            peak_heap: Some(10 << 20),
            max_rss: None,
            max_heap: None,
        }
    }

    #[test]
    fn a_significant_trend_reaching_the_threshold_is_a_leak() {
        let j = judge(&evidence(1044.0, 1003.0, 1075.0, 1e-5));
        assert_eq!(j.reasons.len(), 1);
        assert!(j.summary.ends_with(": LEAK"), "{}", j.summary);
        assert!(j.summary.contains("1.020 KiB per request"), "{}", j.summary);
        // A true leak at the threshold whose estimate lands just below it still fails.
        assert!(!judge(&evidence(15.2, 14.1, 16.4, 1e-4)).reasons.is_empty());
    }

    #[test]
    fn rss_growth_must_clear_the_threshold_with_its_whole_interval() {
        let mut e = evidence(664.0, 34.0, 3482.0, 1e-4);
        e.basis = "rss";
        e.threshold = 512.0;
        assert!(judge(&e).reasons.is_empty(), "a clean build's RSS creep");
        e.trend = e.trend.map(|t| Trend {
            slope: 1229.0,
            low: 1149.0,
            high: 4540.0,
            ..t
        });
        let j = judge(&e);
        assert!(
            j.summary.starts_with("rss grows") && j.summary.ends_with(": LEAK"),
            "{}",
            j.summary
        );
    }

    #[test]
    fn small_or_insignificant_growth_passes() {
        let bounded = judge(&evidence(2.0, 1.0, 3.0, 1e-4));
        assert!(bounded.reasons.is_empty());
        assert!(
            bounded.summary.contains("below the threshold"),
            "{}",
            bounded.summary
        );
        let noise = judge(&evidence(40.0, -30.0, 90.0, 0.2));
        assert!(noise.reasons.is_empty());
        assert!(
            noise.summary.contains("no significant growth"),
            "{}",
            noise.summary
        );
    }

    #[test]
    fn limits_and_errors_fail_with_their_reason() {
        let mut e = evidence(0.0, -1.0, 1.0, 0.5);
        e.max_rss = Some(10 << 20);
        e.max_heap = Some(100 << 20);
        e.errors = 5_000;
        let j = judge(&e);
        assert_eq!(j.reasons.len(), 2, "{:?}", j.reasons);
        assert!(j.reasons[0].contains("--max-rss"));
        assert!(j.reasons[1].contains("unexpected answer"));
        e.trend = None;
        assert!(!judge(&e).reasons.is_empty());
    }
}
