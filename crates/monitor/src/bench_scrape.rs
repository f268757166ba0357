//! `warden bench scrape`: what the control plane's monitoring costs at scale.
//!
//! A child process (this binary with `--serve`) exposes `--targets` loopback metric
//! endpoints of `--series` series each, in the same shape as an API instance's
//! (memory gauges, a request histogram by route and status). This process then runs
//! the real monitoring round every `--interval`: scrape and parse every target,
//! derive the traffic series, write what the monitor keeps to a store file, evaluate
//! the alert rules. It reads its own CPU time from
//! `/proc/self/stat` around each round, so the servers' work is not counted, and
//! reports the median share of one core over the rounds.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::rules::{AlertRules, Engine};
use crate::scrape::{Scraper, Target};

/// Flags of `warden bench scrape`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchScrapeArgs {
    /// Metric endpoints to scrape.
    #[arg(long, default_value_t = 100)]
    pub targets: usize,
    /// Series per endpoint.
    #[arg(long, default_value_t = 500)]
    pub series: usize,
    /// Time between rounds, as `warden up` would scrape.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Rounds measured (after one warm-up round).
    #[arg(long, default_value_t = 12)]
    pub rounds: usize,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Internal: serve the endpoints and print their ports (the bench's child).
    #[arg(long, hide = true)]
    pub serve: bool,
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct ScrapeBenchReport {
    /// Targets scraped per round.
    pub targets: usize,
    /// Series per target.
    pub series_per_target: usize,
    /// Samples stored per round (including `up` and derived series).
    pub samples_per_round: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Seconds between rounds.
    pub interval_s: f64,
    /// Median CPU seconds one round costs (scrape + parse + store + rules).
    pub median_round_cpu_s: f64,
    /// Median wall seconds one round takes.
    pub median_round_wall_s: f64,
    /// Median CPU per round divided by the interval: the share of one core.
    pub core_share: f64,
    /// Whether the share is under the 5% goal.
    pub passed: bool,
}

/// The body one endpoint serves: memory gauges plus a request histogram over enough
/// routes and statuses to reach `series` lines.
#[must_use]
pub fn exposition(series: usize, seed: usize) -> String {
    let mut out = String::from(
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 83886080\n\
         # TYPE warden_heap_bytes gauge\nwarden_heap_bytes{kind=\"allocated\"} 41943040\n\
         warden_heap_bytes{kind=\"resident\"} 62914560\n\
         # TYPE http_server_request_duration_seconds histogram\n",
    );
    let les = [
        "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf",
    ];
    let mut lines = 3;
    let mut route = 0;
    while lines < series {
        for status in ["200", "201", "404", "500"] {
            for (i, le) in les.iter().enumerate() {
                if lines >= series {
                    break;
                }
                out.push_str(&format!(
                    "http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/route{route}\",http_response_status_code=\"{status}\",le=\"{le}\"}} {}\n",
                    (seed + route) * 10 + i * 3
                ));
                lines += 1;
            }
        }
        route += 1;
    }
    out
}

/// The child: serves `targets` endpoints, prints one port per line, runs until killed.
pub async fn serve(args: &BenchScrapeArgs) -> anyhow::Result<()> {
    let mut ports = Vec::new();
    for seed in 0..args.targets {
        let body = exposition(args.series, seed);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = body.clone();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ports.push(listener.local_addr()?.port());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    warden_telemetry::outln!("{}", list.join(" "))?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs the bench against a child started from `exe`; prints the report and returns
/// whether the goal was met.
pub async fn run(args: &BenchScrapeArgs, exe: &std::path::Path) -> anyhow::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "scrape", "--serve"])
        .arg(format!("--targets={}", args.targets))
        .arg(format!("--series={}", args.series))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("the endpoint server has no stdout"))?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await?;
    let targets: Vec<Target> = line
        .split_whitespace()
        .map(|port| Target {
            instance: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}/metrics"),
            release: "bench".to_owned(),
            pid: None,
        })
        .collect();
    anyhow::ensure!(
        targets.len() == args.targets,
        "the endpoint server started {} of {} endpoints",
        targets.len(),
        args.targets
    );
    let dir = tempfile::tempdir()?;
    let store = warden_store::Store::open(&dir.path().join("bench.db"))?;
    let mut scraper = Scraper::new(Duration::from_secs(10), &[])?;
    let mut engine = Engine::new(AlertRules::default());
    let (mut cpu, mut wall, mut samples) = (Vec::new(), Vec::new(), 0);
    for round in 0..=args.rounds {
        let (cpu_before, started) = (cpu_seconds()?, Instant::now());
        let scrapes = scraper.scrape_all(&targets).await;
        let batch: Vec<_> = scrapes.iter().flat_map(|s| s.samples.clone()).collect();
        samples = batch.len();
        let at = warden_store::now_ms();
        store
            .blocking(move |s| s.append_samples(at, &batch))
            .await?;
        engine.evaluate(&scrapes);
        let down = scrapes.iter().filter(|s| !s.up).count();
        anyhow::ensure!(down == 0, "{down} endpoints did not answer");
        if round > 0 {
            cpu.push(cpu_seconds()? - cpu_before);
            wall.push(started.elapsed().as_secs_f64());
        }
        if round < args.rounds {
            tokio::time::sleep(args.interval.saturating_sub(started.elapsed())).await;
        }
    }
    let median_cpu = warden_memtest::stats::median(&mut cpu);
    let report = ScrapeBenchReport {
        targets: args.targets,
        series_per_target: args.series,
        samples_per_round: samples,
        rounds: args.rounds,
        interval_s: args.interval.as_secs_f64(),
        median_round_cpu_s: median_cpu,
        median_round_wall_s: warden_memtest::stats::median(&mut wall),
        core_share: median_cpu / args.interval.as_secs_f64(),
        passed: median_cpu / args.interval.as_secs_f64() < 0.05,
    };
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        warden_telemetry::outln!(
            "scraping {} targets × {} series ({} samples a round) every {:?}: \
             median {:.1} ms CPU and {:.1} ms wall per round = {:.2}% of one core (goal < 5%): {}",
            report.targets,
            report.series_per_target,
            report.samples_per_round,
            args.interval,
            report.median_round_cpu_s * 1000.0,
            report.median_round_wall_s * 1000.0,
            report.core_share * 100.0,
            if report.passed { "PASS" } else { "FAIL" }
        )?;
    }
    Ok(report.passed)
}

/// User + system CPU time of this process, from `/proc/self/stat`.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/stat"))?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 after the name; the
    // kernel counts them in USER_HZ, 100 on every Linux architecture Warden targets.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_exposition_has_the_requested_series_and_parses() {
        let body = super::exposition(500, 3);
        let lines = body.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(lines, 500);
        let parsed =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        assert!(!parsed.samples.is_empty());
    }
}
