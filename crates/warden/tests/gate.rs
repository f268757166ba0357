//! `warden gate` against real builds: it must fail a candidate that leaks (the
//! chaos switch standing in for a leaking dependency update) and pass two identical
//! builds, naming the packages that changed between the lockfiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn lockfile(dir: &Path, name: &str, serde_json: &str) -> String {
    let path = dir.join(name);
    let text = format!(
        "version = 3\n\n[[package]]\nname = \"itoa\"\nversion = \"1.0.11\"\n\n\
         [[package]]\nname = \"serde_json\"\nversion = \"{serde_json}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn gate(args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_warden");
    Command::new(bin)
        .args([
            "gate",
            "--baseline",
            bin,
            "--candidate",
            bin,
            "--duration",
            "15s",
        ])
        .args(["--rounds", "6"])
        .args(args)
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST")
        .output()
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_leaking_candidate_fails_with_a_table_and_the_changed_packages() {
    let dir = tempfile::tempdir().unwrap();
    let old = lockfile(dir.path(), "old.lock", "1.0.120");
    let new = lockfile(dir.path(), "new.lock", "1.0.121");
    let reports = dir.path().join("gate");
    let out = gate(&[
        "--candidate-arg=--chaos-leak-bytes-per-request=256",
        "--baseline-lock",
        &old,
        "--candidate-lock",
        &new,
        "--report",
        reports.to_str().unwrap(),
        "--json",
    ]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["baseline"]["verdict"], "pass", "{r:#}");
    assert_eq!(r["candidate"]["verdict"], "fail", "{r:#}");
    let leak = r["candidate"]["leak_bytes_per_request"]["estimate"]
        .as_f64()
        .unwrap();
    assert!((200.0..=300.0).contains(&leak), "{r:#}");
    assert!(
        r["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("candidate: heap grows"),
        "{r:#}"
    );
    assert_eq!(
        r["dependency_changes"],
        serde_json::json!([{"name": "serde_json", "old": "1.0.120", "new": "1.0.121",
                            "kind": "upgraded", "bump": "patch"}])
    );
    let md = std::fs::read_to_string(reports.join("gate.md")).unwrap();
    assert!(md.starts_with("## warden gate: FAIL"), "{md}");
    assert!(md.contains("| leak |") && md.contains("**LEAK**"), "{md}");
    assert!(
        md.contains("- serde_json 1.0.120 → 1.0.121 (patch)"),
        "{md}"
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("gate.json")).unwrap()).unwrap();
    assert_eq!(saved["verdict"], "fail");
}

#[test]
fn identical_builds_pass() {
    let out = gate(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("## warden gate: PASS"), "{stdout}");
    assert!(!stdout.contains("Dependency changes"), "{stdout}");
}

#[test]
fn bad_usage_exits_2_before_any_load() {
    let bin = env!("CARGO_BIN_EXE_warden");
    for (args, needle) in [
        (
            vec![
                "--baseline-lock",
                "/nonexistent.lock",
                "--candidate-lock",
                "/nonexistent.lock",
            ],
            "/nonexistent.lock",
        ),
        (
            vec!["--baseline-lock", "/nonexistent.lock"],
            "--candidate-lock",
        ),
        (vec!["--max-p99-increase=-5"], "--max-p99-increase"),
    ] {
        let out = Command::new(bin)
            .args(["gate", "--baseline", bin, "--candidate", bin])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = Command::new(bin)
        .args([
            "gate",
            "--baseline",
            "/nonexistent/warden",
            "--candidate",
            bin,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("baseline") && stderr.contains("cannot start"),
        "{stderr}"
    );
}
