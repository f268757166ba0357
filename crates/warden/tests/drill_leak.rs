//! The incident replay, shortened for CI: `warden drill leak` with a faster leak and
//! shorter rule windows (set by its flags), asserting the scorecard: the alert
//! fired, the rollback was automatic and no user request failed, the incident was
//! opened and resolved, subscribers were told, and the postmortem names the JSON
//! crate whose update leaked. Once as at the default settings, where v1 serves the
//! users first and v2 is found by comparing it with v1 at the same age, and once
//! with v2 deployed at once, left to the leak detector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Runs the drill with the shortened flags plus `extra`; returns the scorecard
/// after asserting what every drill must show.
fn drill(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "drill",
            "leak",
            "--users",
            "20",
            "--rate",
            "100",
            "--scrape-interval",
            "1s",
            "--leak-for",
            "5s",
            "--resolve-after",
            "10s",
            "--timeout",
            "3m",
            "--json",
        ])
        .args(extra)
        .env_remove("WARDEN_DATA_DIR")
        .env_remove("WARDEN_CONSOLE")
        .output()
        .unwrap();
    let timeline = String::from_utf8_lossy(&out.stderr);
    let card: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no scorecard ({e}); the drill said:\n{timeline}"));
    assert!(out.status.success(), "{card:#}\n{timeline}");
    assert_eq!(card["passed"], true, "{card:#}");
    assert!(
        card["alert_after_onset_s"].as_f64().unwrap() <= 180.0,
        "{card:#}"
    );
    assert!(
        card["rollback_after_alert_s"].as_f64().unwrap() <= 5.0,
        "{card:#}"
    );
    assert_eq!(card["rollback_automatic"], true);
    assert_eq!(card["failed_requests"], 0);
    assert!(card["total_requests"].as_u64().unwrap() > 100, "{card:#}");
    // Measured by the proxy (a slow response counts too, so not asserted as 0 on a
    // busy CI machine).
    assert!(card["users_affected_ratio"].is_number(), "{card:#}");
    assert!(card["users_seen"].as_u64().unwrap() >= 20, "{card:#}");
    assert!(card["first_update_after_alert_s"].as_f64().unwrap() <= 60.0);
    assert!(
        card["subscribers_notified_after_alert_s"].is_number(),
        "{card:#}"
    );
    assert_eq!(card["incident_resolved"], true);
    assert_eq!(card["culprit"], "serde_json");
    // The timeline was told as it happened.
    for step in [
        "ALERT MemoryLeak on v2",
        "rollback v2 → v1 (automatic)",
        "incident opened",
        "subscribers notified",
        "resolved",
        "culprit named: serde_json",
    ] {
        assert!(
            timeline.contains(step),
            "{step:?} missing from:\n{timeline}"
        );
    }
    card
}

#[test]
fn the_replayed_outage_is_caught_by_comparing_v2_with_v1() {
    // The detector's window is long enough that only the comparison can be quick:
    // 16 KiB × 100 requests/s more than v1, judged from 5 s of age over 15 s.
    let card = drill(&[
        "--leak-bytes-per-request",
        "16384",
        "--leak-window",
        "10m",
        "--v1-serves",
        "30s",
        "--compare-settle",
        "5s",
        "--compare-span",
        "15s",
        "--compare-for",
        "5s",
    ]);
    assert_eq!(card["alert_method"], "comparison", "{card:#}");
}

#[test]
fn the_replayed_outage_without_a_predecessor_to_compare_is_caught_by_the_detector() {
    let card = drill(&[
        "--leak-bytes-per-request",
        "65536",
        "--leak-window",
        "60s",
        "--v1-serves",
        "0s",
    ]);
    assert_eq!(card["alert_method"], "detector", "{card:#}");
}
