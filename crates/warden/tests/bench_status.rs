//! `warden bench status` runs end to end with tiny settings: a scratch status page
//! served by the console's routes, the same page exported and served by real nginx
//! (Debian's package), and the load generator reading both. The goals are not
//! asserted here (speed goals live in benchmarks, not in timed tests), only that it
//! measures something sane, every reader got the whole page, and the report is as
//! documented.
//!
//! Without nginx the test fails, unless WARDEN_TEST_ALLOW_SKIP=1 (never under
//! CI=true), as scripts/test does for every tool it needs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::process::Command;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

fn nginx_available() -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()))
        .unwrap_or(false)
        || std::path::Path::new("/usr/sbin/nginx").is_file();
    if found {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let allow_skip = std::env::var("WARDEN_TEST_ALLOW_SKIP").is_ok_and(|v| v == "1");
    assert!(
        !ci && allow_skip,
        "nginx is not installed (Debian package `nginx`; scripts/test installs it when \
         run as root). Set WARDEN_TEST_ALLOW_SKIP=1 to skip this test outside CI."
    );
    eprintln!("skipping: nginx is not installed (WARDEN_TEST_ALLOW_SKIP=1)");
    false
}

fn assert_side(side: &serde_json::Value, name: &str) {
    assert_eq!(side["name"], name, "{side}");
    let rps = side["requests_per_s"].as_f64().unwrap();
    let p50 = side["p50_ms"].as_f64().unwrap();
    let p99 = side["p99_ms"].as_f64().unwrap();
    assert!(rps > 10.0, "{name}: {rps} req/s");
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 30_000.0, "{name}: {side}");
    assert_eq!(
        side["errors"], 0,
        "{name}: every reader gets the page: {side}"
    );
    assert!(side["requests"].as_u64().unwrap() > 10, "{name}: {side}");
    assert_eq!(side["rounds_requests_per_s"].as_array().unwrap().len(), 1);
    assert_eq!(side["rounds_p99_ms"].as_array().unwrap().len(), 1);
}

#[test]
fn bench_status_reads_the_page_from_warden_and_nginx_side_by_side() {
    if !nginx_available() {
        return;
    }
    let mut command = Command::new(WARDEN);
    for (key, _) in std::env::vars() {
        if key.starts_with("WARDEN_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args([
            "bench",
            "status",
            "--duration",
            "1s",
            "--rounds",
            "1",
            "--concurrency",
            "50",
            "--workers",
            "2",
            "--rate",
            "200",
            "--conditional",
            "--json",
        ])
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit 0 (goals met) or 1 (not met) are both fine here; 2 is an error.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "exit {:?}: {stderr}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    assert_side(&report["nginx"], "nginx");
    assert_side(&report["warden"], "warden");
    let paced = &report["paced"];
    assert_eq!(paced["rate"], 200.0, "{report}");
    assert_side(&paced["nginx"], "nginx");
    assert_side(&paced["warden"], "warden");
    // The goal's p99 is the paced one.
    assert_eq!(report["p99_ms"], paced["warden"]["p99_ms"], "{report}");
    let conditional = &report["conditional"];
    assert_side(&conditional["nginx"], "nginx");
    assert_side(&conditional["warden"], "warden");
    for share in ["nginx_not_modified_share", "warden_not_modified_share"] {
        let value = conditional[share].as_f64().unwrap();
        assert!(value > 0.5 && value <= 1.0, "{share}: {conditional}");
    }
    assert_eq!(report["concurrency"], 50);
    assert_eq!(report["rounds"], 1);
    assert_eq!(report["workers"], 2);
    assert!(
        report["nginx_version"]
            .as_str()
            .unwrap()
            .starts_with("nginx/"),
        "{report}"
    );
    // A realistic page: incidents with their updates, 90 uptime bars per component.
    for page in ["warden_page_bytes", "nginx_page_bytes"] {
        assert!(report[page].as_u64().unwrap() > 20_000, "{page}: {report}");
    }
    for ratio in ["throughput_ratio", "p99_ratio"] {
        let value = report[ratio].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{ratio}: {value}");
    }
    assert_eq!(report["throughput_ratio_goal"], 0.5);
    assert_eq!(report["p99_goal_ms"], 50.0);
    assert_eq!(
        report["passed"].as_bool().unwrap(),
        output.status.code() == Some(0)
    );
}
