//! `warden deps ...` with the real binary: audits of fixture lockfiles with known
//! vulnerable versions against the shared RustSec snapshot (the same advisories as
//! `cargo audit`), the project's own audit, lockfile diffs of files and git
//! revisions, and the update ledger's record/check/show cycle in a git repository;
//! then the same commands on Python, npm and Go lockfiles (the fixtures of
//! crates/audit/tests/fixtures/lockfiles and the example services' releases), with
//! OSV advisories from crates/audit/tests/fixtures/osv.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/advisory-db");

fn fixture(name: &str) -> PathBuf {
    Path::new(ROOT)
        .join("crates/audit/tests/fixtures")
        .join(name)
}

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `warden deps audit --json` of `lockfile` under `policy`: exit code and report.
fn audit(lockfile: &Path, policy: &Path) -> (i32, serde_json::Value) {
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--json",
            "--advisory-db",
            DB,
            "--lockfile",
            lockfile.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code().unwrap(), report)
}

/// The advisory IDs a report names (violations and warnings, not notices).
fn advisory_ids(report: &serde_json::Value) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["advisory"].as_object())
        .filter(|a| a["kind"] != "notice")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The advisory IDs `cargo audit` reports, or `None` when it is not installed (it
/// must be under CI; scripts/test installs it).
fn cargo_audit_ids(lockfile: &Path) -> Option<BTreeSet<String>> {
    let out = Command::new("cargo")
        .args(["audit", "--no-fetch", "--db", DB, "--json", "--file"])
        .arg(lockfile)
        .output();
    let out = match out {
        Ok(out) if !out.stdout.is_empty() => out,
        _ => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "cargo audit is required under CI (scripts/test installs it)"
            );
            eprintln!("cargo audit is not installed: comparison skipped");
            return None;
        }
    };
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: BTreeSet<String> = report["vulnerabilities"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["advisory"]["id"].as_str().unwrap().to_owned())
        .collect();
    for warnings in report["warnings"].as_object().unwrap().values() {
        for w in warnings.as_array().unwrap() {
            if let Some(id) = w["advisory"]["id"].as_str() {
                ids.insert(id.to_owned());
            }
        }
    }
    Some(ids)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn empty_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        "# defaults: unsound and unmaintained advisories fail\n",
    )
    .unwrap();
    path
}

#[test]
fn known_vulnerable_lockfiles_report_exactly_the_advisories_cargo_audit_reports() {
    let dir = tempfile::tempdir().unwrap();
    let policy = empty_policy(dir.path());
    let expected = [
        (
            "vulnerable-web.lock",
            set(&[
                "RUSTSEC-2020-0071",
                "RUSTSEC-2020-0159",
                "RUSTSEC-2021-0003",
                "RUSTSEC-2021-0072",
                "RUSTSEC-2021-0078",
                "RUSTSEC-2021-0079",
                "RUSTSEC-2021-0124",
                "RUSTSEC-2021-0139",
                "RUSTSEC-2021-0145",
                "RUSTSEC-2022-0013",
                "RUSTSEC-2022-0022",
                "RUSTSEC-2023-0001",
                "RUSTSEC-2023-0005",
                "RUSTSEC-2023-0034",
                "RUSTSEC-2024-0003",
                "RUSTSEC-2024-0332",
                "RUSTSEC-2024-0375",
                "RUSTSEC-2025-0009",
                "RUSTSEC-2025-0010",
                "RUSTSEC-2025-0023",
                "RUSTSEC-2026-0258",
            ]),
        ),
        (
            "vulnerable-tls.lock",
            set(&[
                "RUSTSEC-2018-0018",
                "RUSTSEC-2019-0009",
                "RUSTSEC-2019-0012",
                "RUSTSEC-2021-0003",
                "RUSTSEC-2023-0022",
                "RUSTSEC-2023-0023",
                "RUSTSEC-2023-0024",
                "RUSTSEC-2023-0044",
                "RUSTSEC-2023-0072",
                "RUSTSEC-2024-0336",
                "RUSTSEC-2024-0357",
                "RUSTSEC-2024-0421",
                "RUSTSEC-2025-0004",
                "RUSTSEC-2025-0022",
            ]),
        ),
    ];
    for (name, ids) in expected {
        let (code, report) = audit(&fixture(name), &policy);
        assert_eq!(code, 1, "{name}: vulnerabilities must fail the audit");
        assert_eq!(advisory_ids(&report), ids, "{name}");
        if let Some(theirs) = cargo_audit_ids(&fixture(name)) {
            assert_eq!(theirs, ids, "{name}: cargo audit disagrees");
        }
    }
    // A real project's lockfile of 566 packages (nushell, July 2022): no fixed list,
    // but the same set as cargo audit's.
    let (code, report) = audit(&fixture("large-566.lock"), &policy);
    assert_eq!(code, 1);
    let ours = advisory_ids(&report);
    assert!(ours.len() > 30, "{ours:?}");
    if let Some(theirs) = cargo_audit_ids(&fixture("large-566.lock")) {
        assert_eq!(ours, theirs);
    }
}

#[test]
fn a_finding_names_crate_version_advisory_and_fixed_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--advisory-db",
            DB,
            "--lockfile",
            fixture("vulnerable-tls.lock").to_str().unwrap(),
            "--policy",
            empty_policy(dir.path()).to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("error: openssl 0.10.45: vulnerability RUSTSEC-2023-0044")
            && stdout.contains("fixed in >=0.10.55"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "error: patched-fork 0.1.0 comes from git+https://github.com/example/patched-fork?rev=0123456, not crates.io"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: smallvec is present in 2 versions (0.6.9, 1.13.2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("days old"),
        "the database's age is said: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("FAIL: 9 packages"),
        "{stdout}"
    );
}

#[test]
fn ignores_silence_an_advisory_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("regex.lock");
    std::fs::write(
        &lock,
        "version = 3\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    let with_ignore = |until: &str| {
        std::fs::write(
            &policy,
            format!(
                "[[advisories.ignore]]\nid = \"RUSTSEC-2022-0013\"\n\
                 reason = \"only trusted patterns are compiled\"\nuntil = \"{until}\"\n"
            ),
        )
        .unwrap();
    };
    with_ignore("2999-12-31");
    let (code, report) = audit(&lock, &policy);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ignored"][0]["id"], "RUSTSEC-2022-0013");

    with_ignore("2020-01-01");
    let (code, report) = audit(&lock, &policy);
    assert_eq!(code, 1);
    let message = report["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("the ignore of RUSTSEC-2022-0013 expired on 2020-01-01")
            && message.contains("fixed in >=1.5.5"),
        "{message}"
    );

    std::fs::write(
        &policy,
        "[[advisories.ignore]]\nid = \"RUSTSEC-2022-0013\"\n",
    )
    .unwrap();
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--advisory-db",
            DB,
            "--lockfile",
            lock.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "a bad policy is a usage error");
    assert!(text(&out).contains("policy.toml"), "{}", text(&out));
}

#[test]
fn the_projects_own_lockfile_passes_its_own_policy() {
    let out = warden(Path::new(ROOT), &["deps", "audit", "--advisory-db", DB]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("licenses from: cargo metadata"), "{stdout}");
    assert!(stdout.contains("PASS: "), "{stdout}");
}

#[test]
fn licenses_outside_the_allowed_list_fail() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("mit-only.toml");
    std::fs::write(
        &policy,
        "[licenses]\nallow = [\"MIT\"]\n[advisories]\ndeny_informational = []\n\
         [[advisories.ignore]]\nid = \"RUSTSEC-2023-0071\"\nreason = \"see ops/deps-policy.toml\"\nuntil = \"2999-01-01\"\n",
    )
    .unwrap();
    let (code, report) = audit(&Path::new(ROOT).join("Cargo.lock"), &policy);
    assert_eq!(code, 1);
    let licenses: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "license" && f["violation"] == true)
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        licenses
            .iter()
            .any(|m| m.starts_with("unicode-ident ") && m.contains("is not allowed by the policy")),
        "{licenses:#?}"
    );
    assert!(
        !licenses.iter().any(|m| m.starts_with("serde ")),
        "MIT OR Apache-2.0 passes"
    );
}

#[test]
fn a_missing_advisory_database_is_an_environment_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--advisory-db",
            dir.path().join("none").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("pass --advisory-db DIR"),
        "{}",
        text(&out)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["deps", "audit", "--no-fetch"])
        .current_dir(ROOT)
        .env("CARGO_HOME", dir.path())
        .env_remove("WARDEN_ADVISORY_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out);
    assert!(
        err.contains("advisory-db") && err.contains("--advisory-db DIR"),
        "{err}"
    );
}

#[test]
fn inventory_lists_members_licenses_and_who_pulls_each_package_in() {
    let out = warden(Path::new(ROOT), &["deps", "inventory", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let inventory: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = inventory["packages"].as_array().unwrap();
    let find = |name: &str| packages.iter().find(|p| p["name"] == name).unwrap();
    let rustsec = find("rustsec");
    assert_eq!(rustsec["direct"], true);
    assert_eq!(rustsec["source"], "crates.io");
    assert!(rustsec["checksum"].as_str().unwrap().len() == 64);
    assert!(rustsec["license"].as_str().unwrap().contains("MIT"));
    let by: Vec<&str> = rustsec["pulled_in_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        by.contains(&"warden-audit") && by.contains(&"warden"),
        "{by:?}"
    );
    assert_eq!(find("warden-audit")["member"], true);

    let out = warden(Path::new(ROOT), &["deps", "inventory", "--markdown"]);
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("| package | version | kind | source | license | pulled in by | checksum |")
    );
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "inventory",
            "--lockfile",
            fixture("large-566.lock").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("566 packages in"));
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Warden Test",
            "-c",
            "user.email=test@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

fn lockfile(packages: &[(&str, &str)]) -> String {
    let mut text = String::from("version = 3\n");
    for (name, version) in packages {
        text.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
        ));
    }
    text
}

#[test]
fn diff_compares_files_and_git_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(
        repo.join("Cargo.lock"),
        lockfile(&[
            ("serde_json", "1.0.120"),
            ("tokio", "1.40.0"),
            ("gone", "0.1.0"),
        ]),
    )
    .unwrap();
    git(repo, &["add", "Cargo.lock"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    std::fs::copy(repo.join("Cargo.lock"), repo.join("old.lock")).unwrap();
    std::fs::write(
        repo.join("Cargo.lock"),
        lockfile(&[
            ("serde_json", "1.0.121"),
            ("tokio", "2.0.0"),
            ("memchr", "2.7.4"),
        ]),
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "two"]);

    let expected = "gone 0.1.0 (removed)\nmemchr 2.7.4 (added)\nserde_json 1.0.120 → 1.0.121 (patch)\n\
                    tokio 1.40.0 → 2.0.0 (major)\n\n1 added, 1 removed, 2 upgraded, 0 downgraded\n";
    for (old, new) in [
        ("old.lock", "Cargo.lock"),
        ("HEAD~1", "HEAD"),
        ("HEAD~1:Cargo.lock", "Cargo.lock"),
    ] {
        let out = warden(repo, &["deps", "diff", old, new]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{old} {new}"
        );
    }
    let out = warden(repo, &["deps", "diff", "--json", "HEAD~1", "HEAD"]);
    let changes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changes[3]["bump"], "major");
    assert_eq!(changes[3]["kind"], "upgraded");

    let out = warden(repo, &["deps", "diff", "no-such-rev", "HEAD"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("neither a file nor a git revision"),
        "{}",
        text(&out)
    );
}

const GATE_REPORT: &str = r#"{
  "verdict": "pass",
  "reasons": [],
  "thresholds": { "leak_bytes_per_request": 16.0, "peak_heap_increase_pct": 10.0, "p99_increase_pct": 20.0 },
  "comparison": { "peak_heap_delta_pct": 2.5, "peak_rss_delta_pct": -1.0, "p50_delta_pct": 0.5, "p99_delta_pct": 4.0 },
  "dependency_changes": [{ "name": "serde_json", "old": "1.0.120", "new": "1.0.121", "kind": "upgraded", "bump": "patch" }],
  "baseline": { "verdict": "pass", "reasons": [], "summary": "heap grows 0.3 B per request (95% CI -0.2 B to 0.8 B) over 8 rounds: no leak",
                "target": "/tmp/base", "basis": "heap", "threshold_bytes_per_request": 16.0, "requests": 40000, "errors": 0,
                "duration_s": 60.0, "leak_bytes_per_request": null, "peak_rss_bytes": 41943040, "peak_heap_bytes": 20971520,
                "latency_ms": { "p50": 1.0, "p99": 5.0 }, "rounds": [{ "round": 1, "requests": 5000, "errors": 0,
                "cumulative_requests": 5000, "heap_bytes": 10485760, "rss_bytes": 41943040, "p50_ms": 1.0, "p99_ms": 5.0 }], "chart": null },
  "candidate": { "verdict": "pass", "reasons": [], "summary": "heap grows 0.1 B per request (95% CI -0.4 B to 0.6 B) over 8 rounds: no leak",
                "target": "/tmp/cand", "basis": "heap", "threshold_bytes_per_request": 16.0, "requests": 40000, "errors": 0,
                "duration_s": 60.0, "leak_bytes_per_request": null, "peak_rss_bytes": 41523200, "peak_heap_bytes": 21495808,
                "latency_ms": { "p50": 1.0, "p99": 5.2 }, "rounds": [{ "round": 1, "requests": 5000, "errors": 0,
                "cumulative_requests": 5000, "heap_bytes": 10747904, "rss_bytes": 41523200, "p50_ms": 1.0, "p99_ms": 5.2 }], "chart": null }
}"#;

#[test]
fn the_ledger_records_each_update_with_its_impact_and_check_holds_ci_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(
        repo.join("Cargo.lock"),
        lockfile(&[("serde_json", "1.0.120"), ("itoa", "1.0.11")]),
    )
    .unwrap();
    git(repo, &["add", "Cargo.lock"]);
    git(repo, &["commit", "-q", "-m", "one"]);

    let out = warden(repo, &["deps", "ledger", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("has no entries"), "{}", text(&out));

    let out = warden(
        repo,
        &["deps", "ledger", "record", "--reason", "first entry"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(repo.join("ops/dependency-ledger.toml").exists());
    let out = warden(repo, &["deps", "ledger", "check"]);
    assert!(out.status.success(), "{}", text(&out));

    // An update, committed: check fails and names the package, found through git.
    std::fs::write(
        repo.join("Cargo.lock"),
        lockfile(&[("serde_json", "1.0.121"), ("itoa", "1.0.11")]),
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "bump serde_json"]);
    let out = warden(repo, &["deps", "ledger", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("serde_json 1.0.120 → 1.0.121 (patch)")
            && err.contains("warden deps ledger record"),
        "{err}"
    );

    std::fs::write(repo.join("gate.json"), GATE_REPORT).unwrap();
    let out = warden(
        repo,
        &[
            "deps",
            "ledger",
            "record",
            "--reason",
            "serde_json patch release",
            "--gate",
            "gate.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("serde_json 1.0.120 → 1.0.121 (patch)"));
    let out = warden(repo, &["deps", "ledger", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = warden(repo, &["deps", "ledger", "record"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing recorded"));

    let out = warden(repo, &["deps", "ledger", "show"]);
    let history = String::from_utf8_lossy(&out.stdout).into_owned();
    let newest = history.find("serde_json patch release").unwrap();
    let oldest = history.find("first entry").unwrap();
    assert!(newest < oldest, "newest first: {history}");
    assert!(
        history.contains("impact: gate PASS; heap +2.5% (+256.0 KiB), RSS -1.0% (-410.0 KiB), p99 +4.0%; heap grows 0.1 B per request"),
        "{history}"
    );
    let out = warden(repo, &["deps", "ledger", "show", "--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["impact"]["tests_passed"], true);
    assert_eq!(entries[0]["changes"][0]["new"], "1.0.121");
    assert_eq!(entries[1]["reason"], "first entry");

    // A bad gate report changes nothing.
    std::fs::write(
        repo.join("Cargo.lock"),
        lockfile(&[("serde_json", "1.0.122"), ("itoa", "1.0.11")]),
    )
    .unwrap();
    let before = std::fs::read(repo.join("ops/dependency-ledger.toml")).unwrap();
    let out = warden(
        repo,
        &[
            "deps",
            "ledger",
            "record",
            "--gate",
            "Cargo.lock",
            "--previous",
            "HEAD",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is not a `warden gate` JSON report"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(repo.join("ops/dependency-ledger.toml")).unwrap(),
        before
    );
}

// ---------------------------------------------------------------- other ecosystems

const OSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crates/audit/tests/fixtures/osv"
);

fn lockfile_fixture(path: &str) -> String {
    fixture("lockfiles").join(path).display().to_string()
}

#[test]
fn inventory_of_python_and_npm_lockfiles_lists_ecosystem_and_source() {
    let python = lockfile_fixture("pip/v1/requirements.txt");
    let out = warden(
        Path::new(ROOT),
        &["deps", "inventory", "--lockfile", &python],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("PACKAGE             VERSION    ECOSYSTEM  SOURCE\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\npydantic            2.10.0rc1  PyPI       registry\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("17 packages in ") && stdout.contains("(17 PyPI)"),
        "{stdout}"
    );
    assert!(!stdout.contains("LICENSE"), "{stdout}");

    let npm = Path::new(ROOT).join("examples/node/releases/v1/package-lock.json");
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "inventory",
            "--json",
            "--lockfile",
            npm.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let inventory: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inventory["cargo_details"], false);
    let packages = inventory["packages"].as_array().unwrap();
    let jsonfast = packages.iter().find(|p| p["name"] == "jsonfast").unwrap();
    assert_eq!(jsonfast["ecosystem"], "npm");
    assert_eq!(jsonfast["version"], "1.0.0");
    assert_eq!(jsonfast["source"], "file:../../packages/jsonfast-1.0.0.tgz");
    assert!(jsonfast["license"].is_null());
    let express = packages.iter().find(|p| p["name"] == "express").unwrap();
    assert!(express["checksum"].as_str().unwrap().starts_with("sha512-"));

    let out = warden(
        Path::new(ROOT),
        &["deps", "inventory", "--markdown", "--lockfile", &python],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("| package | version | ecosystem | source | checksum |"),
        "{}",
        text(&out)
    );
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "inventory",
            "--lockfile",
            &lockfile_fixture("npm/lockfile-v1/package-lock.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("npm 7 or newer"), "{}", text(&out));
}

#[test]
fn diff_of_the_example_services_names_jsonfast() {
    for service in [
        "python/releases/v1/requirements.txt",
        "node/releases/v1/package-lock.json",
    ] {
        let old = format!("examples/{service}");
        let new = old.replace("/v1/", "/v2/");
        let out = warden(Path::new(ROOT), &["deps", "diff", &old, &new]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "jsonfast 1.0.0 → 1.0.1 (patch)\n\n0 added, 0 removed, 1 upgraded, 0 downgraded\n",
            "{service}"
        );
    }
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "diff",
            "--json",
            "examples/python/releases/v1/requirements.txt",
            "examples/python/releases/v2/requirements.txt",
        ],
    );
    let changes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changes[0]["ecosystem"], "PyPI");
    assert_eq!(changes[0]["kind"], "upgraded");
}

#[test]
fn diff_of_a_requirements_file_against_a_git_revision_reads_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::create_dir(repo.join("svc")).unwrap();
    std::fs::write(repo.join("svc/base.txt"), "idna==3.7\n").unwrap();
    std::fs::write(
        repo.join("svc/requirements.txt"),
        "-r base.txt\nrequests==2.31.0\nurllib3==2.2.3\n",
    )
    .unwrap();
    git(repo, &["add", "svc"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    std::fs::write(repo.join("svc/base.txt"), "idna==3.10\n").unwrap();
    std::fs::write(
        repo.join("svc/requirements.txt"),
        "-r base.txt\nrequests==2.32.3\nurllib3==2.2.3\n",
    )
    .unwrap();
    let expected = "idna 3.7 → 3.10 (minor)\nrequests 2.31.0 → 2.32.3 (minor)\n\n\
                    0 added, 0 removed, 2 upgraded, 0 downgraded\n";
    for (old, new) in [
        ("HEAD", "svc/requirements.txt"),
        ("HEAD:svc/requirements.txt", "svc/requirements.txt"),
    ] {
        let out = warden(repo, &["deps", "diff", old, new]);
        assert!(out.status.success(), "{old}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{old}");
    }
    // In the subdirectory, the relative path is read there.
    let out = warden(
        &repo.join("svc"),
        &["deps", "diff", "HEAD", "requirements.txt"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        text(&out)
    );

    std::fs::write(repo.join("svc/requirements.txt"), "requests>=2\n").unwrap();
    let out = warden(repo, &["deps", "diff", "HEAD", "svc/requirements.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("svc/requirements.txt:1: `requests>=2` is not pinned"),
        "{}",
        text(&out)
    );
}

/// `warden deps audit --json --osv-db` of `lockfile`: exit code and report.
fn osv_audit(lockfile: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = empty_policy(dir.path());
    let mut args = vec![
        "deps",
        "audit",
        "--osv-db",
        OSV,
        "--lockfile",
        lockfile,
        "--policy",
        policy.to_str().unwrap(),
    ];
    args.extend(extra);
    let human = warden(Path::new(ROOT), &args);
    args.push("--json");
    let out = warden(Path::new(ROOT), &args);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(human.status.code(), out.status.code());
    (out.status.code().unwrap(), report, text(&human))
}

#[test]
fn osv_audit_of_python_and_npm_lockfiles_reports_and_fails_on_a_finding() {
    let (code, report, human) = osv_audit(&lockfile_fixture("pip/v2/requirements.txt"), &[]);
    assert_eq!(code, 1, "{human}");
    assert_eq!(advisory_ids(&report), set(&["WARDEN-TEST-0001"]));
    let advisory = &report["findings"][0]["advisory"];
    assert_eq!(advisory["aliases"][0], "WARDEN-TEST-ALIAS-0001");
    assert_eq!(advisory["ecosystem"], "PyPI");
    assert_eq!(advisory["patched"][0], "2.2.3");
    assert!(report["database"].is_null());
    assert_eq!(report["osv"]["advisories"], 3);
    assert!(
        human.contains(
            "error: urllib3 (PyPI) 2.2.2: vulnerability WARDEN-TEST-0001 (aka WARDEN-TEST-ALIAS-0001) \
             (Fictional: urllib3 2.0.0 to 2.2.2 mishandle a test header): fixed in 2.2.3 \
             <https://example.org/warden-test-advisories/WARDEN-TEST-0001>"
        ),
        "{human}"
    );
    assert!(human.contains("FAIL: 19 packages in "), "{human}");

    let (code, report, human) = osv_audit(&lockfile_fixture("npm/v1/package-lock.json"), &[]);
    assert_eq!(code, 1, "{human}");
    assert_eq!(
        advisory_ids(&report),
        set(&["WARDEN-TEST-0004", "WARDEN-TEST-0005"])
    );
    assert!(
        human.contains("error: ms (npm) 3.0.0-beta.1: vulnerability WARDEN-TEST-0005"),
        "{human}"
    );

    for clean in ["npm/v2/package-lock.json", "uv/v2/uv.lock", "go/v2/go.mod"] {
        let (code, report, human) = osv_audit(&lockfile_fixture(clean), &[]);
        assert_eq!(code, 0, "{clean}: {human}");
        assert!(advisory_ids(&report).is_empty(), "{clean}");
        assert!(human.contains("PASS: "), "{human}");
    }
    // The example services' jsonfast is local: an advisory about a registry
    // package of that name would not be about it.
    let (code, _, human) = osv_audit("examples/node/releases/v2/package-lock.json", &[]);
    assert_eq!(code, 0, "{human}");
}

#[test]
fn osv_audit_honours_the_policys_ignores_by_id_or_alias() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[advisories.ignore]]\nid = \"WARDEN-TEST-ALIAS-0004\"\n\
         reason = \"a test: debug's namespace printing is not used\"\nuntil = \"2999-01-01\"\n",
    )
    .unwrap();
    let npm = lockfile_fixture("npm/v1/package-lock.json");
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--json",
            "--osv-db",
            OSV,
            "--lockfile",
            &npm,
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(advisory_ids(&report), set(&["WARDEN-TEST-0005"]));
    assert_eq!(report["ignored"][0]["id"], "WARDEN-TEST-0004");
}

#[test]
fn a_lockfile_without_rustsec_coverage_needs_an_osv_db() {
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--lockfile",
            "examples/python/releases/v1/requirements.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("pass --osv-db DIR, a directory of OSV advisories for PyPI"),
        "{}",
        text(&out)
    );
    let out = warden(
        Path::new(ROOT),
        &[
            "deps",
            "audit",
            "--osv-db",
            "/nonexistent-osv",
            "--lockfile",
            "examples/python/releases/v1/requirements.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent-osv"), "{}", text(&out));
}

#[test]
fn a_cargo_lock_gets_rustsec_and_osv_advisories_together() {
    let (code, report, human) = osv_audit(
        fixture("vulnerable-tls.lock").to_str().unwrap(),
        &["--advisory-db", DB],
    );
    assert_eq!(code, 1, "{human}");
    let ids = advisory_ids(&report);
    assert!(ids.contains("WARDEN-TEST-0008"), "{ids:?}");
    assert!(ids.contains("RUSTSEC-2023-0044"), "{ids:?}");
    assert!(report["database"]["path"].is_string());
    assert!(
        human.contains("error: smallvec 0.6.9: vulnerability WARDEN-TEST-0008"),
        "{human}"
    );
}

#[test]
fn the_ledger_records_a_requirements_file_by_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(
        repo.join("requirements.txt"),
        "Flask==3.0.3\nurllib3==2.2.3\n",
    )
    .unwrap();
    git(repo, &["add", "requirements.txt"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    let lock = ["--lockfile", "requirements.txt"];
    let run = |args: &[&str]| warden(repo, &[&["deps", "ledger"], args, &lock].concat());
    let out = run(&["record", "--reason", "first"]);
    assert!(out.status.success(), "{}", text(&out));
    let ledger = std::fs::read_to_string(repo.join("ops/dependency-ledger.toml")).unwrap();
    assert!(
        ledger.contains("one entry per change of requirements.txt")
            && ledger.contains("warden deps ledger check --lockfile requirements.txt"),
        "{ledger}"
    );
    assert!(run(&["check"]).status.success());

    std::fs::write(
        repo.join("requirements.txt"),
        "Flask==3.0.3\nurllib3==2.2.10\n",
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "two"]);
    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("urllib3 2.2.3 → 2.2.10 (patch)"),
        "{}",
        text(&out)
    );
    let out = run(&["record", "--reason", "urllib3 patch"]);
    assert!(out.status.success(), "{}", text(&out));
    let ledger = std::fs::read_to_string(repo.join("ops/dependency-ledger.toml")).unwrap();
    assert!(
        ledger.contains(
            "{ name = \"urllib3\", ecosystem = \"PyPI\", old = \"2.2.3\", new = \"2.2.10\", \
             kind = \"upgraded\", bump = \"patch\" }"
        ),
        "{ledger}"
    );
    assert!(run(&["check"]).status.success());
    let out = warden(repo, &["deps", "ledger", "show", "--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["changes"][0]["ecosystem"], "PyPI");

    let out = warden(repo, &["deps", "ledger", "check", "--lockfile", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is a directory"), "{}", text(&out));
}
