//! The leak detector reading a real Prometheus server (Debian's `prometheus`
//! package) that scrapes real API instances, one leaking and one clean, gives the
//! same verdicts as the detector on Warden's own scrapes of the same instances.
//!
//! Without the `prometheus` binary this test fails, unless WARDEN_TEST_ALLOW_SKIP=1
//! is set outside CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{free_port, wait_ready};
use warden_monitor::detector::{self, LeakRule};
use warden_monitor::prometheus::PrometheusSource;
use warden_monitor::scrape::{Scraper, Target};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_available() -> bool {
    if Command::new("prometheus").arg("--version").output().is_ok() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let allow_skip = std::env::var("WARDEN_TEST_ALLOW_SKIP").is_ok_and(|v| v == "1");
    assert!(
        !ci && allow_skip,
        "prometheus is not installed (Debian package `prometheus`); install it, or set \
         WARDEN_TEST_ALLOW_SKIP=1 outside CI to skip this test"
    );
    eprintln!("skipping: prometheus is not installed");
    false
}

fn api(port: u16, data: &std::path::Path, leak: Option<u32>) -> Killed {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_DATABASE_URL")
        .env_remove("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST")
        .stdout(Stdio::null());
    if let Some(bytes) = leak {
        command.arg(format!("--chaos-leak-bytes-per-request={bytes}"));
    }
    Killed(command.spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_own_scrapes_give_the_same_leak_verdicts() {
    if !prometheus_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (leaky, clean, prom) = (free_port(), free_port(), free_port());
    let _leaky = api(leaky, &dir.path().join("leaky"), Some(4096));
    let _clean = api(clean, &dir.path().join("clean"), None);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: warden\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{leaky}']\n        labels: {{release: leaky}}\n\
             \x20     - targets: ['127.0.0.1:{clean}']\n        labels: {{release: clean}}\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    for port in [leaky, clean] {
        wait_ready(&client, &format!("http://127.0.0.1:{port}/readyz")).await;
    }
    wait_ready(&client, &format!("http://127.0.0.1:{prom}/-/ready")).await;

    // Read-only traffic to both instances; Warden's scraper samples them meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for port in [leaky, clean] {
        let (client, stop) = (client.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client
                    .get(format!("http://127.0.0.1:{port}/v1/items"))
                    .send()
                    .await;
                // About 200 requests/s: a leak of tens of MB a minute, not gigabytes.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let targets: Vec<Target> = [(leaky, "leaky"), (clean, "clean")]
        .iter()
        .map(|(port, release)| Target {
            instance: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}/metrics"),
            release: (*release).into(),
            pid: None,
        })
        .collect();
    let mut scraper = Scraper::new(Duration::from_secs(2), &[]).unwrap();
    let mut own: Vec<Vec<(f64, f64)>> = vec![Vec::new(), Vec::new()];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(70) {
        for (i, s) in scraper.scrape_all(&targets).await.into_iter().enumerate() {
            if let Some(heap) = s.memory.heap_allocated {
                own[i].push((s.at_ms as f64 / 1000.0, heap));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let rule = LeakRule {
        window: Duration::from_secs(60),
        ..LeakRule::default()
    };
    let limit = 4e9;
    let end = own[0].last().unwrap().0;
    let source = PrometheusSource::new(
        &format!("http://127.0.0.1:{prom}"),
        "job=\"warden\"",
        Duration::from_secs(5),
    )
    .unwrap();
    let history = source
        .memory_history(end, rule.window, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for (i, target) in targets.iter().enumerate() {
        let from_prometheus = history
            .iter()
            .find(|h| h.instance == target.instance)
            .unwrap();
        assert_eq!(from_prometheus.release, target.release);
        let theirs = detector::assess(&from_prometheus.heap, limit, &rule);
        let ours = detector::assess(&own[i], limit, &rule);
        eprintln!(
            "{}: own scrapes: {}\n  Prometheus: {}",
            target.release,
            ours.summary(),
            theirs.summary()
        );
        assert_eq!(
            ours.verdict, theirs.verdict,
            "{}: same verdict from both sources",
            target.release
        );
        assert_eq!(
            ours.leaking,
            target.release == "leaky",
            "{}",
            target.release
        );
        if ours.leaking {
            let ratio = theirs.rate_bytes_per_s / ours.rate_bytes_per_s;
            assert!((0.7..1.4).contains(&ratio), "rates agree: {ratio}");
        }
    }

    // The instant-query path the control loop uses sees both instances as up, with
    // their releases and memory.
    let now = source.scrape().await.unwrap();
    assert_eq!(now.len(), 2);
    assert!(
        now.iter()
            .all(|s| s.up && s.memory.heap_allocated.is_some() && s.memory.rss.is_some())
    );
    assert!(now.iter().any(|s| s.target.release == "leaky"));
}
