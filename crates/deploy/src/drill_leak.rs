//! `warden drill leak`: the replay of the outage Warden was built from, end to end.
//!
//! In a scratch data dir, on loopback, with the real commands:
//!
//! 1. Two releases are recorded: `v1`, this binary, and `v2`, the same binary run
//!    with `--chaos-leak-bytes-per-request` (2 KiB by default: about 12 MB/min at
//!    the users' ~100 requests/s). Each is recorded with a lockfile; `v2`'s differs
//!    from `v1`'s in one package, the JSON crate `serde_json` — the update that
//!    leaked on the day. (The lockfiles are fixtures written by the drill: the leak
//!    is simulated, the bookkeeping around it is real.)
//! 2. `warden up` starts with `v1` (memory limit 1 GiB, automatic rollback on), a
//!    webhook subscriber is added to the status page (a receiver in this process),
//!    and simulated users — each its own account — log in and read and write items.
//! 3. `v2` is deployed with `--force`, bypassing the update gate as happened then.
//! 4. The drill watches the event log and prints the timeline as it happens: the
//!    leak alert, the automatic rollback, the incident opened, updated and resolved,
//!    subscribers notified; then it drafts the postmortem with `warden postmortem`.
//! 5. It ends with a scorecard next to the original outage. `--json` prints it as
//!    one document; the exit code is 1 when a goal is missed.
//!
//! Leak onset is when `v2` started taking traffic (`deploy.completed`); the alert is
//! the first `MemoryLeak` firing on `v2`; "traffic back on v1" is the first response
//! the users got from `v1` after the alert; the first public update is the
//! incident's opening. The share of users affected is the proxy's count of distinct
//! clients with a failed or slow response over all clients seen from leak onset to
//! the end (`client_windows` in the store).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use warden_store::{Event, Store};

use crate::drill::{Up, Users, command, free_port};
use crate::history::{DEPLOYED, MARKED_BAD, ROLLED_BACK};

/// The goals of the scorecard.
pub const ALERT_GOAL_S: f64 = 180.0;
/// Alert → traffic on the good release.
pub const ROLLBACK_GOAL_S: f64 = 5.0;
/// First public update after the alert.
pub const UPDATE_GOAL_S: f64 = 60.0;
/// The package whose update the drill ships.
pub const CULPRIT: &str = "serde_json";

/// `warden drill leak`'s flags. The defaults are the reference scenario; CI runs a
/// shorter drill with a faster leak and shorter rule windows.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillLeakArgs {
    /// Simulated users, each with its own account.
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Requests per second from all users together (roughly).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// What v2 leaks per request (bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    pub leak_bytes_per_request: usize,
    /// The memory limit the leak is forecast against (bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub memory_limit: u64,
    /// How often the control plane scrapes the instances.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub scrape_interval: Duration,
    /// The leak rule's window (`[alerts.leak] window`).
    #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = humantime::parse_duration)]
    pub leak_window: Duration,
    /// The leak rule's `for` (`[alerts.leak] for`).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration)]
    pub leak_for: Duration,
    /// How long v1 serves the users before v2 is deployed. A young release's memory
    /// is compared with its predecessor's at the same age, so this is what v2 can be
    /// compared with; 0s leaves v2 to the leak detector alone.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration)]
    pub v1_serves: Duration,
    /// Start-up not compared (`[alerts.leak.compare] settle`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub compare_settle: Duration,
    /// Ages compared before a verdict (`[alerts.leak.compare] span`).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    pub compare_span: Duration,
    /// The comparison's `for` (`[alerts.leak.compare] for`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub compare_for: Duration,
    /// How long recovery must hold before the incident is resolved.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    pub resolve_after: Duration,
    /// Give up waiting for any one stage after this long.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Keep the drill's files here (a new or empty directory) instead of a scratch
    /// directory that is deleted at the end: its data dir (`DIR/data`) can then be
    /// looked at afterwards: `warden up --data-dir DIR/data` serves its dashboard and
    /// status page, `warden postmortem --data-dir DIR/data` drafts its postmortem.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
    /// Also write the drafted postmortem (Markdown) here.
    #[arg(long, value_name = "FILE")]
    pub postmortem: Option<std::path::PathBuf>,
    /// Print the scorecard as JSON (the timeline goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The scorecard.
#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    /// Leak onset (v2 taking traffic) → the leak alert firing.
    pub alert_after_onset_s: Option<f64>,
    /// What found the leak: `comparison` (v2 against v1 at the same age) or
    /// `detector` (v2's memory on its own).
    pub alert_method: Option<String>,
    /// The alert → the users' first response from v1.
    pub rollback_after_alert_s: Option<f64>,
    /// Whether the rollback was Warden's own (not a person's).
    pub rollback_automatic: bool,
    pub failed_requests: u64,
    pub total_requests: u64,
    /// Share of distinct clients with a failed or slow response, as the proxy
    /// counted them from onset to the end; null when nothing was counted.
    pub users_affected_ratio: Option<f64>,
    /// Distinct clients the proxy saw from onset to the end.
    pub users_seen: u64,
    /// The alert → the incident's first public update.
    pub first_update_after_alert_s: Option<f64>,
    /// The alert → the first subscriber notified.
    pub subscribers_notified_after_alert_s: Option<f64>,
    pub incident: Option<String>,
    pub incident_resolved: bool,
    /// The package the postmortem names as the likely culprit.
    pub culprit: Option<String>,
    pub passed: bool,
    /// The goals missed, in words.
    pub missed: Vec<String>,
}

/// A webhook receiver on loopback standing in for a subscriber's system.
async fn receiver() -> anyhow::Result<(String, Arc<Mutex<Vec<i64>>>)> {
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<i64>>>>| async move {
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(warden_store::now_ms());
                    }
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

/// A minimal lockfile: what `release add --lockfile` records for a release.
fn lockfile(serde_json: &str) -> String {
    let package = |name: &str, version: &str| {
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n"
        )
    };
    let mut out = String::from("version = 4\n\n");
    for (name, version) in [
        ("itoa", "1.0.15"),
        ("memchr", "2.7.5"),
        ("ryu", "1.0.20"),
        ("serde", "1.0.219"),
        ("serde_json", serde_json),
    ] {
        out.push_str(&package(name, version));
    }
    out.push_str("[[package]]\nname = \"warden\"\nversion = \"0.1.0\"\ndependencies = [\n \"serde\",\n \"serde_json\",\n]\n");
    out
}

/// Runs the drill with `exe` (this `warden` binary). Progress and the timeline go
/// to stderr.
///
/// # Errors
/// A step could not run (a command failed, `warden up` did not start, a stage timed
/// out); a missed goal is not an error but a failing scorecard.
#[allow(clippy::too_many_lines)]
pub async fn run(args: &DrillLeakArgs, exe: &Path) -> anyhow::Result<Scorecard> {
    anyhow::ensure!(args.users > 0, "--users: use 1 or more");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate: use a positive number of requests per second"
    );
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let root = match &args.keep {
        Some(dir) => {
            anyhow::ensure!(
                std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none()),
                "--keep {}: use a new or empty directory",
                dir.display()
            );
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--keep {}: cannot create it", dir.display()))?;
            dir.clone()
        }
        None => scratch.path().to_owned(),
    };
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let (listen, console) = (free_port()?, free_port()?);
    let say = |line: &str| eprintln!("{line}");

    say("▶ 1. Record v1 (good) and v2 (its JSON crate updated; leaks on every request).");
    for (name, version) in [("v1", "1.0.140"), ("v2", "1.0.141")] {
        std::fs::write(root.join(format!("{name}.lock")), lockfile(version))?;
    }
    let v1_lock = root.join("v1.lock");
    let v2_lock = root.join("v2.lock");
    let leak = format!(
        "--api-arg=--chaos-leak-bytes-per-request={}",
        args.leak_bytes_per_request
    );
    let (v1_lock, v2_lock) = (v1_lock.to_string_lossy(), v2_lock.to_string_lossy());
    command(
        exe,
        &data,
        &console,
        &["release", "add", "--name", "v1", "--lockfile", &v1_lock],
        &say,
    )
    .await?;
    command(
        exe,
        &data,
        &console,
        &[
            "release",
            "add",
            "--name",
            "v2",
            "--lockfile",
            &v2_lock,
            &leak,
        ],
        &say,
    )
    .await?;

    say("▶ 2. Start Warden with v1; subscribe a webhook to the status page; start the users.");
    let config = root.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[monitor]\nscrape_interval = \"{}\"\n\n[alerts.leak]\nwindow = \"{}\"\nfor = \"{}\"\nmemory_limit = {}\n\n\
             [alerts.leak.compare]\nsettle = \"{}\"\nspan = \"{}\"\nfor = \"{}\"\n",
            humantime::format_duration(args.scrape_interval),
            humantime::format_duration(args.leak_window),
            humantime::format_duration(args.leak_for),
            args.memory_limit,
            humantime::format_duration(args.compare_settle),
            humantime::format_duration(args.compare_span),
            humantime::format_duration(args.compare_for),
        ),
    )?;
    std::fs::write(
        data.join("status.toml"),
        format!(
            "[automation]\nresolve_after = \"{}\"\n",
            humantime::format_duration(args.resolve_after)
        ),
    )?;
    let listen_text = listen.to_string();
    let config_text = config.to_string_lossy();
    // One instance, so it takes all the users' requests: the leak of the reference
    // scenario is 2 KiB × ~100 requests/s ≈ 12 MB/min in one process.
    let up_args = [
        "up",
        "--listen",
        &listen_text,
        "--release",
        "v1",
        "--replicas",
        "1",
        "--config",
        &config_text,
    ];
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let up = Up::start(exe, &data, &console, &up_args, &http, &base, &say).await?;
    let (hook, notified) = receiver().await?;
    let token = std::fs::read_to_string(data.join("admin-token"))
        .context("warden up wrote no admin token")?;
    http.post(format!("http://{console}/api/admin/subscribers"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "url": hook }))
        .send()
        .await?
        .error_for_status()
        .context("cannot subscribe the drill's webhook")?;
    let pause = Duration::from_secs_f64(args.users as f64 / args.rate);
    let users = Users::start(&http, &base, args.users, pause).await?;
    say(&format!(
        "  {} users, about {:.0} requests/s in all.",
        args.users, args.rate
    ));

    if !args.v1_serves.is_zero() {
        say(&format!(
            "  v1 serves them for {} (what v2's memory is compared with).",
            humantime::format_duration(args.v1_serves)
        ));
        tokio::time::sleep(args.v1_serves).await;
    }

    say("▶ 3. Deploy v2 with --force, past the update gate, as on the day.");
    command(exe, &data, &console, &["deploy", "v2", "--force"], &say).await?;

    say("▶ 4. Watch.");
    let store = Store::open(&data.join("control.db"))?;
    let mut timeline = Timeline::default();
    let deadline = Instant::now() + args.timeout;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut back_on_v1_ms = None;
    while timeline.resolved_ms.is_none() {
        let fresh = store.events_after(timeline.last_id, 500)?;
        for event in &fresh {
            timeline.see(event, &say);
        }
        if fresh.is_empty() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the drill stopped at: {} (gave up after {})",
                timeline.waiting_for(),
                humantime::format_duration(args.timeout)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let (Some(alert), None) = (timeline.alert_ms, back_on_v1_ms) {
            back_on_v1_ms = users.first_from("v1", alert).await;
            if let Some(at) = back_on_v1_ms {
                say(&format!(
                    "  {} {:>+8.1} s  users served by v1 again",
                    clock(at),
                    timeline.offset(at)
                ));
            }
        }
        if timeline.alert_ms.is_none() && last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            say(&format!(
                "  … {:.0} s since v2 went live, {} requests so far, waiting for the leak alert",
                started.elapsed().as_secs_f64(),
                users.sent()
            ));
        }
    }
    let tally = users.stop().await;
    let end_ms = warden_store::now_ms();

    say("▶ 5. Draft the postmortem.");
    let mut culprit = None;
    if let Some(incident) = &timeline.incident {
        let out = tokio::process::Command::new(exe)
            .args(["postmortem", incident, "--format", "json"])
            .env("WARDEN_DATA_DIR", &data)
            .env("WARDEN_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "`warden postmortem {incident}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let draft: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("`warden postmortem --format json` printed no JSON")?;
        culprit = draft["culprit"].as_str().map(str::to_owned);
        say(&format!(
            "  $ warden postmortem {incident}\n  culprit named: {}",
            culprit.as_deref().unwrap_or("none")
        ));
        if let Some(path) = &args.postmortem {
            command(
                exe,
                &data,
                &console,
                &["postmortem", incident, "--out", &path.to_string_lossy()],
                &say,
            )
            .await?;
        }
    }
    // Stopped first: it records the proxy's last, partial window of clients.
    up.stop().await;
    let seen = match timeline.onset_ms {
        Some(onset) => Some(store.users_between(onset, end_ms)?),
        None => None,
    };

    let seconds = |from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(a), Some(b)) => Some((b - a).max(0) as f64 / 1000.0),
        _ => None,
    };
    let first_notified = timeline.alert_ms.and_then(|alert| {
        notified
            .lock()
            .ok()
            .and_then(|n| n.iter().copied().find(|at| *at >= alert))
    });
    let mut card = Scorecard {
        alert_after_onset_s: seconds(timeline.onset_ms, timeline.alert_ms),
        alert_method: timeline.alert_method.clone(),
        rollback_after_alert_s: seconds(timeline.alert_ms, back_on_v1_ms),
        rollback_automatic: timeline.rollback_automatic,
        failed_requests: tally.failed,
        total_requests: tally.requests,
        users_affected_ratio: seen.and_then(|s| s.ratio()),
        users_seen: seen.map_or(0, |s| s.clients),
        first_update_after_alert_s: seconds(timeline.alert_ms, timeline.opened_ms),
        subscribers_notified_after_alert_s: seconds(timeline.alert_ms, first_notified),
        incident: timeline.incident.clone(),
        incident_resolved: timeline.resolved_ms.is_some(),
        culprit,
        passed: false,
        missed: Vec::new(),
    };
    card.missed = missed(&card);
    card.passed = card.missed.is_empty();
    Ok(card)
}

/// The goals `card` misses, in words.
fn missed(card: &Scorecard) -> Vec<String> {
    let mut out = Vec::new();
    let within = |value: Option<f64>, goal: f64| value.is_some_and(|v| v <= goal);
    if !within(card.alert_after_onset_s, ALERT_GOAL_S) {
        out.push(format!("leak onset → alert within {ALERT_GOAL_S} s"));
    }
    if !within(card.rollback_after_alert_s, ROLLBACK_GOAL_S) || !card.rollback_automatic {
        out.push(format!(
            "automatic rollback within {ROLLBACK_GOAL_S} s of the alert"
        ));
    }
    if card.failed_requests > 0 {
        out.push("no failed user request".into());
    }
    if !within(card.first_update_after_alert_s, UPDATE_GOAL_S) {
        out.push(format!(
            "first public update within {UPDATE_GOAL_S} s of the alert"
        ));
    }
    if !card.incident_resolved {
        out.push("the incident resolved".into());
    }
    if card.culprit.as_deref() != Some(CULPRIT) {
        out.push(format!("{CULPRIT} named as the culprit"));
    }
    out
}

/// What the event log has said so far, and the timeline printed from it.
#[derive(Default)]
struct Timeline {
    last_id: i64,
    onset_ms: Option<i64>,
    alert_ms: Option<i64>,
    alert_method: Option<String>,
    rollback_ms: Option<i64>,
    rollback_automatic: bool,
    incident: Option<String>,
    opened_ms: Option<i64>,
    resolved_ms: Option<i64>,
    notified: bool,
}

impl Timeline {
    fn see(&mut self, event: &Event, say: &impl Fn(&str)) {
        self.last_id = event.id;
        let p = &event.payload;
        let at = event.at_ms;
        let release = event.release.as_deref().unwrap_or_default();
        let line = match event.kind.as_str() {
            DEPLOYED if release == "v2" && self.onset_ms.is_none() => {
                self.onset_ms = Some(at);
                Some("v2 takes all traffic: the leak starts".to_owned())
            }
            "alert.firing" if p["alert"] == "MemoryLeak" && self.alert_ms.is_none() => {
                self.alert_ms = Some(at);
                self.alert_method = p["details"]["method"].as_str().map(str::to_owned);
                Some(format!(
                    "ALERT MemoryLeak on {release}: {}",
                    p["summary"].as_str().unwrap_or_default()
                ))
            }
            ROLLED_BACK if self.rollback_ms.is_none() => {
                self.rollback_ms = Some(at);
                self.rollback_automatic = p["automatic"].as_bool().unwrap_or(false);
                Some(format!(
                    "rollback {} → {release} ({})",
                    p["from"].as_str().unwrap_or("?"),
                    if self.rollback_automatic {
                        "automatic"
                    } else {
                        "by hand"
                    }
                ))
            }
            MARKED_BAD => Some(format!("release {release} marked bad")),
            "incident.opened" if self.incident.is_none() => {
                self.incident = p["incident_id"].as_str().map(str::to_owned);
                self.opened_ms = Some(at);
                Some(format!(
                    "status page: incident opened, investigating — \"{}\"",
                    p["name"].as_str().unwrap_or_default()
                ))
            }
            "incident.updated" => Some(format!(
                "status page: {}",
                p["status"].as_str().unwrap_or("update")
            )),
            "incident.resolved" if self.resolved_ms.is_none() => {
                self.resolved_ms = Some(at);
                Some("status page: resolved".to_owned())
            }
            "subscriber.notified" if !self.notified => {
                self.notified = true;
                Some("subscribers notified".to_owned())
            }
            _ => None,
        };
        if let Some(line) = line {
            say(&format!(
                "  {} {:>+8.1} s  {line}",
                clock(at),
                self.offset(at)
            ));
        }
    }

    /// Seconds since leak onset (0 before it).
    fn offset(&self, at: i64) -> f64 {
        self.onset_ms
            .map_or(0.0, |onset| (at - onset) as f64 / 1000.0)
    }

    fn waiting_for(&self) -> &'static str {
        if self.onset_ms.is_none() {
            "v2 taking traffic"
        } else if self.alert_ms.is_none() {
            "the leak alert"
        } else if self.rollback_ms.is_none() {
            "the rollback"
        } else if self.incident.is_none() {
            "the incident"
        } else {
            "the incident's resolution"
        }
    }
}

/// `HH:MM:SS` (UTC) of unix milliseconds.
fn clock(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.get(11..19).unwrap_or(&text).to_owned()
}

/// Prints the scorecard next to the original outage.
#[must_use]
pub fn render(card: &Scorecard) -> String {
    let s = |v: Option<f64>| {
        v.map_or_else(
            || "—".to_owned(),
            |v| {
                if v < 10.0 {
                    format!("{v:.2} s")
                } else {
                    format!("{v:.0} s")
                }
            },
        )
    };
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    let within = |v: Option<f64>, goal: f64| v.is_some_and(|v| v <= goal);
    let rows = [
        (
            "leak onset → alert",
            "~60 min to find the cause",
            "≤ 3 min",
            format!(
                "{}{}",
                s(card.alert_after_onset_s),
                match card.alert_method.as_deref() {
                    Some("comparison") => " (v2 against v1 at the same age)",
                    Some("detector") => " (the leak detector)",
                    _ => "",
                }
            ),
            within(card.alert_after_onset_s, ALERT_GOAL_S),
        ),
        (
            "alert → traffic on the good release",
            "45 min",
            "≤ 5 s",
            format!(
                "{}{}",
                s(card.rollback_after_alert_s),
                if card.rollback_automatic {
                    " (automatic)"
                } else {
                    ""
                }
            ),
            within(card.rollback_after_alert_s, ROLLBACK_GOAL_S) && card.rollback_automatic,
        ),
        (
            "failed user requests",
            "~60% of users affected",
            "0",
            format!(
                "{} of {} ({} of users affected)",
                card.failed_requests,
                card.total_requests,
                card.users_affected_ratio.map_or_else(
                    || "not measured".to_owned(),
                    |r| format!("{:.1}%", r * 100.0)
                )
            ),
            card.failed_requests == 0,
        ),
        (
            "first public update",
            "none planned",
            "≤ 1 min after the alert",
            s(card.first_update_after_alert_s),
            within(card.first_update_after_alert_s, UPDATE_GOAL_S),
        ),
        (
            "culprit named",
            "by hand, after a false lead",
            "automatically",
            card.culprit.clone().unwrap_or_else(|| "none".into()),
            card.culprit.as_deref() == Some(CULPRIT),
        ),
    ];
    let mut out = String::from("\nScorecard\n");
    out.push_str(&format!(
        "  {:<36} {:<28} {:<24} {}\n",
        "", "the outage", "goal", "this drill"
    ));
    for (what, then, goal, now, ok) in rows {
        out.push_str(&format!(
            "  {what:<36} {then:<28} {goal:<24} {} {now}\n",
            mark(ok)
        ));
    }
    out.push_str(&format!(
        "  subscribers notified {} after the alert; incident {}\n  {}\n",
        s(card.subscribers_notified_after_alert_s),
        if card.incident_resolved {
            "resolved"
        } else {
            "NOT resolved"
        },
        if card.passed {
            "PASSED".to_owned()
        } else {
            format!("FAILED: missed {}", card.missed.join("; "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_fixture_lockfiles_differ_in_the_json_crate_only() {
        let dir = tempfile::tempdir().unwrap();
        let load = |version: &str| {
            let path = dir.path().join(format!("{version}.lock"));
            std::fs::write(&path, lockfile(version)).unwrap();
            warden_audit::lockdiff::load(&path).unwrap()
        };
        let changes = warden_audit::lockdiff::diff(&load("1.0.140"), &load("1.0.141"));
        let names: Vec<_> = changes.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, [CULPRIT]);
    }

    #[test]
    fn a_scorecard_misses_what_it_misses() {
        let mut card = Scorecard {
            alert_after_onset_s: Some(100.0),
            alert_method: Some("comparison".into()),
            rollback_after_alert_s: Some(0.2),
            rollback_automatic: true,
            failed_requests: 0,
            total_requests: 1000,
            users_affected_ratio: Some(0.0),
            users_seen: 50,
            first_update_after_alert_s: Some(2.0),
            subscribers_notified_after_alert_s: Some(3.0),
            incident: Some("x".into()),
            incident_resolved: true,
            culprit: Some(CULPRIT.into()),
            passed: false,
            missed: Vec::new(),
        };
        assert!(missed(&card).is_empty());
        card.failed_requests = 1;
        card.culprit = None;
        card.alert_after_onset_s = None;
        let missed = missed(&card);
        assert_eq!(missed.len(), 3, "{missed:?}");
        assert!(render(&card).contains("✗"));
    }
}
