//! `warden drill rollback`: practise a rollback on a scratch data dir.
//!
//! It runs the real commands, printing each one as the operator would type it:
//! records a good release (v1) and a leaking one (v2, the same binary run with
//! `--chaos-leak-bytes-per-request`), starts `warden up` on free loopback ports with
//! v1 and simulated users, deploys v2, and waits until v2's memory visibly climbs.
//! Then the operator rolls back from another terminal (or, with `--auto`, the drill
//! does), and the drill reports how long each step took and whether any user request
//! failed. Automatic rollback is off in the drill: the point is to practise by hand.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::proxy::RELEASE_HEADER;

/// `warden drill rollback`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillRollbackArgs {
    /// Roll back without waiting for a person (for CI, or to watch it once).
    #[arg(long)]
    pub auto: bool,
    /// How long to wait for your rollback before giving up.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// How much the leaking release leaks per request (bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 262_144)]
    pub leak_bytes_per_request: usize,
    /// Print the report as JSON (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// One timed step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub what: String,
    pub seconds: f64,
}

/// What the drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub steps: Vec<Step>,
    /// Time from the rollback command (or, by hand, from the leak being shown) until
    /// every new request was served by v1.
    pub rollback_seconds: f64,
    pub requests: u64,
    pub failed_requests: u64,
    pub passed: bool,
}

/// `warden up` as a child, stopped with SIGTERM when dropped.
pub(crate) struct Up(pub(crate) tokio::process::Child);

impl Up {
    /// Runs `warden UP_ARGS` (a `warden up` command line, shown with `say`) on `data`
    /// and `console`, and waits up to a minute for `base` to answer `/readyz`.
    pub(crate) async fn start(
        exe: &Path,
        data: &Path,
        console: &std::net::SocketAddr,
        up_args: &[&str],
        http: &reqwest::Client,
        base: &str,
        say: &impl Fn(&str),
    ) -> anyhow::Result<Self> {
        say(&format!("  $ warden {}", shell(up_args)));
        let child = tokio::process::Command::new(exe)
            .args(up_args)
            .env("WARDEN_DATA_DIR", data)
            .env("WARDEN_CONSOLE", console.to_string())
            .env("WARDEN_LOG", "error")
            .env_remove("WARDEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let up = Self(child);
        wait_until(Duration::from_secs(60), || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
        .context("warden up did not get ready within a minute")?;
        Ok(up)
    }

    /// Stops it (SIGTERM, so it records what it still holds) and waits up to 30 s.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.0.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.0.wait()).await;
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Runs the drill with `exe` (this `warden` binary).
pub async fn run(args: &DrillRollbackArgs, exe: &Path) -> anyhow::Result<DrillReport> {
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let data = scratch.path().join("data");
    std::fs::create_dir_all(&data)?;
    let listen = free_port()?;
    let console = free_port()?;
    let say = |line: &str| eprintln!("{line}");
    let mut steps = Vec::new();
    let drill_started = Instant::now();

    say("▶ 1. Record two releases: v1 (good) and v2 (leaks memory on every request).");
    let leak = format!(
        "--api-arg=--chaos-leak-bytes-per-request={}",
        args.leak_bytes_per_request
    );
    command(
        exe,
        &data,
        &console,
        &["release", "add", "--name", "v1"],
        &say,
    )
    .await?;
    command(
        exe,
        &data,
        &console,
        &["release", "add", "--name", "v2", &leak],
        &say,
    )
    .await?;

    say("▶ 2. Start Warden with v1 (automatic rollback off: you are practising).");
    let started = Instant::now();
    let listen_text = listen.to_string();
    let up_args = [
        "up",
        "--listen",
        &listen_text,
        "--release",
        "v1",
        "--replicas",
        "1",
        "--rollback-on",
        "none",
    ];
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let _up = Up::start(exe, &data, &console, &up_args, &http, &base, &say).await?;
    steps.push(step("warden up serving v1", started));

    let users = Users::start(&http, &base, 4, Duration::from_millis(10)).await?;
    say("▶ 3. Deploy v2, the release with the leak.");
    let started = Instant::now();
    command(exe, &data, &console, &["deploy", "v2"], &say).await?;
    steps.push(step("deploy v2 (ready, switched, v1 kept warm)", started));

    say("▶ 4. Watch v2's memory climb.");
    let started = Instant::now();
    let baseline = rss(&http, &base).await.unwrap_or(0.0);
    wait_until(Duration::from_secs(120), || async {
        rss(&http, &base)
            .await
            .is_some_and(|now| now > baseline + 64.0 * 1024.0 * 1024.0)
    })
    .await
    .context("v2's memory did not climb; is the API leaking as configured?")?;
    let now = rss(&http, &base).await.unwrap_or(0.0);
    say(&format!(
        "  v2's RSS went from {:.0} MB to {:.0} MB: this is the outage starting.",
        baseline / 1e6,
        now / 1e6
    ));
    steps.push(step("leak visible on v2", started));

    say("▶ 5. Roll back to v1.");
    let rollback_started = warden_store::now_ms();
    let rollback_args = ["rollback", "--reason", "drill: v2 leaks memory"];
    if args.auto {
        command(exe, &data, &console, &rollback_args, &say).await?;
    } else {
        say(&format!(
            "  Your turn. In another terminal run:\n\n    warden {} --data-dir {} --console {console}\n\n  \
             (waiting up to {})",
            shell(&rollback_args),
            data.display(),
            humantime::format_duration(args.timeout)
        ));
    }
    let back = users.all_on("v1", args.timeout).await;
    let all_on_v1 = back.is_some();
    let rollback_seconds = back.map_or(f64::NAN, |at| {
        (at - rollback_started).max(0) as f64 / 1000.0
    });
    if all_on_v1 {
        say(&format!(
            "  Every new request is served by v1 again, {rollback_seconds:.2} s after the rollback started."
        ));
    } else {
        say("  No rollback seen in time.");
    }
    steps.push(Step {
        what: "traffic back on v1".to_owned(),
        seconds: rollback_seconds,
    });
    let tally = users.stop().await;
    steps.push(step("whole drill", drill_started));
    Ok(DrillReport {
        steps,
        rollback_seconds,
        requests: tally.requests,
        failed_requests: tally.failed,
        passed: all_on_v1 && tally.failed == 0,
    })
}

/// Prints the report for people.
#[must_use]
pub fn render(report: &DrillReport) -> String {
    let mut out = String::from("\nDrill report\n");
    for s in &report.steps {
        out.push_str(&format!("  {:<44} {:>8.2} s\n", s.what, s.seconds));
    }
    out.push_str(&format!(
        "  {} requests by simulated users, {} failed\n  {}\n",
        report.requests,
        report.failed_requests,
        if report.passed {
            "PASSED: rolled back with no failed request"
        } else {
            "FAILED: see above"
        }
    ));
    out
}

pub(crate) fn step(what: &str, since: Instant) -> Step {
    Step {
        what: what.to_owned(),
        seconds: since.elapsed().as_secs_f64(),
    }
}

/// Runs `warden ARGS` against the drill's `up`, printing it first.
pub(crate) async fn command(
    exe: &Path,
    data: &Path,
    console: &std::net::SocketAddr,
    args: &[&str],
    say: &impl Fn(&str),
) -> anyhow::Result<()> {
    say(&format!("  $ warden {}", shell(args)));
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env("WARDEN_DATA_DIR", data)
        .env("WARDEN_CONSOLE", console.to_string())
        .env("WARDEN_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", exe.display()))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        say(&format!("    {line}"));
    }
    anyhow::ensure!(
        out.status.success(),
        "`warden {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The arguments as one would type them in a shell.
pub(crate) fn shell(args: &[&str]) -> String {
    shlex::try_join(args.iter().copied()).unwrap_or_else(|_| args.join(" "))
}

pub(crate) fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {}",
            humantime::format_duration(limit)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The serving instance's RSS, read from its /metrics through the proxy.
async fn rss(http: &reqwest::Client, base: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

/// Simulated users, each with an account of its own, reading its items in a loop
/// and now and then adding one; every response's release is noted.
pub(crate) struct Users {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Users that saw at least one failed request.
    failed_users: Arc<AtomicU64>,
    /// (unix ms, release) of each response, newest last (bounded).
    served: Arc<Mutex<Vec<(i64, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    count: usize,
}

/// What the users saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Tally {
    pub requests: u64,
    pub failed: u64,
    pub users: u64,
    pub users_failed: u64,
}

impl Users {
    /// Signs `count` users up and starts them; each waits `pause` between requests.
    pub(crate) async fn start(
        http: &reqwest::Client,
        base: &str,
        count: usize,
        pause: Duration,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failed_users = Arc::new(AtomicU64::new(0));
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..count {
            let user = serde_json::json!({
                "email": format!("drill{n}@example.com"),
                "password": "correct horse battery staple",
            });
            http.post(format!("{base}/v1/users"))
                .json(&user)
                .send()
                .await?
                .error_for_status()?;
            let session: serde_json::Value = http
                .post(format!("{base}/v1/sessions"))
                .json(&user)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let token = session["token"]
                .as_str()
                .context("the API gave no session token")?
                .to_owned();
            let (http, base) = (http.clone(), base.to_owned());
            let (stop, sent, failed, failed_users, served) = (
                stop.clone(),
                sent.clone(),
                failed.clone(),
                failed_users.clone(),
                served.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut round = 0u64;
                let mut saw_failure = false;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let request = if round.is_multiple_of(10) {
                        http.post(format!("{base}/v1/items"))
                            .json(&serde_json::json!({"title": format!("note {round}"), "data": {"n": round}}))
                    } else {
                        http.get(format!("{base}/v1/items"))
                    };
                    let response = request.bearer_auth(&token).send().await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let release = r
                                .headers()
                                .get(RELEASE_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let mut served = served.lock().await;
                            if served.len() > 10_000 {
                                served.drain(..5_000);
                            }
                            served.push((warden_store::now_ms(), release));
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if !saw_failure {
                                saw_failure = true;
                                failed_users.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        Ok(Self {
            stop,
            sent,
            failed,
            failed_users,
            served,
            tasks,
            count,
        })
    }

    /// Waits until the last 20 responses all came from `release`; returns when (unix
    /// ms) the first response of that unbroken run arrived.
    pub(crate) async fn all_on(&self, release: &str, limit: Duration) -> Option<i64> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let served = self.served.lock().await;
                let run = served
                    .iter()
                    .rev()
                    .take_while(|(_, r)| r == release)
                    .count();
                if run >= 20 {
                    return Some(served[served.len() - run].0);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When (unix ms) the first response from `release` at or after `since_ms` arrived.
    pub(crate) async fn first_from(&self, release: &str, since_ms: i64) -> Option<i64> {
        self.served
            .lock()
            .await
            .iter()
            .find(|(at, r)| *at >= since_ms && r == release)
            .map(|(at, _)| *at)
    }

    /// Requests so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        Tally {
            requests: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            users: self.count as u64,
            users_failed: self.failed_users.load(Ordering::Relaxed),
        }
    }
}
