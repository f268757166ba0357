//! `warden release add|list` with the real binary and the project's own Cargo.lock:
//! releases are recorded once, with their binary stored by hash, their build
//! identity and their dependency list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const LOCKFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");

fn warden(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn releases_are_recorded_with_binary_identity_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let v1 = json(&warden(
        &data,
        &[
            "release",
            "add",
            "--name",
            "v1",
            "--lockfile",
            LOCKFILE,
            "--json",
        ],
    ));
    assert_eq!(v1["name"], "v1");
    assert_eq!(v1["version"], env!("CARGO_PKG_VERSION"));
    // The binary is stored under its own hash and is the same bytes.
    let stored = Path::new(v1["binary_path"].as_str().unwrap());
    assert!(stored.starts_with(data.join("releases")));
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_warden")).unwrap()
    );
    let deps = v1["dependencies"].as_array().unwrap();
    assert!(deps.len() > 100, "{} packages", deps.len());
    assert!(deps.iter().any(|d| d[0] == "serde_json"));

    // v2: the same binary with a leak switch, recorded with a lockfile where a JSON
    // crate moved, as the incident drill does. Warden says the lockfile is not the
    // one the binary was built with, and records it anyway.
    let lock = std::fs::read_to_string(LOCKFILE).unwrap();
    let serde_json_version = deps.iter().find(|d| d[0] == "serde_json").unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned();
    let bumped = lock.replacen(
        &format!("name = \"serde_json\"\nversion = \"{serde_json_version}\""),
        "name = \"serde_json\"\nversion = \"1.0.999\"",
        1,
    );
    assert_ne!(bumped, lock, "the fixture changes serde_json");
    let fixture = dir.path().join("Cargo.lock");
    std::fs::write(&fixture, bumped).unwrap();
    let out = warden(
        &data,
        &[
            "release",
            "add",
            "--name",
            "v2",
            "--lockfile",
            fixture.to_str().unwrap(),
            "--api-arg=--chaos-leak-bytes-per-request=1024",
            "--json",
        ],
    );
    let v2 = json(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not the Cargo.lock this binary was built with")
    );
    assert_eq!(
        v2["binary_sha256"], v1["binary_sha256"],
        "one stored copy per binary"
    );
    assert_ne!(v2["lockfile_sha256"], v1["lockfile_sha256"]);
    assert_eq!(v2["args"][0], "--chaos-leak-bytes-per-request=1024");
    assert!(
        v2["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d[0] == "serde_json" && d[1] == "1.0.999")
    );

    let list = json(&warden(&data, &["release", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2"]);
    let table = warden(&data, &["release", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("RELEASE") && text.contains("v2") && text.contains("--chaos-leak"),
        "{text}"
    );
}

#[test]
fn a_release_never_changes_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(
        warden(
            &data,
            &["release", "add", "--name", "v1", "--lockfile", LOCKFILE]
        )
        .status
        .success()
    );
    let again = warden(
        &data,
        &["release", "add", "--name", "v1", "--lockfile", LOCKFILE],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );

    for (args, says) in [
        (
            vec!["--name", "v9", "--lockfile", "/nonexistent/Cargo.lock"],
            "cannot read the lockfile",
        ),
        (
            vec![
                "--name",
                "v9",
                "--bin",
                "/nonexistent/warden",
                "--lockfile",
                LOCKFILE,
            ],
            "cannot read the binary",
        ),
        (
            vec!["--name", "bad name/..", "--lockfile", LOCKFILE],
            "letters, digits",
        ),
        (
            vec!["--name", "v9", "--bin", "/bin/true", "--lockfile", LOCKFILE],
            "build identity",
        ),
    ] {
        let mut full = vec!["release", "add"];
        full.extend(args);
        let out = warden(&data, &full);
        assert_eq!(out.status.code(), Some(2), "{full:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{full:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = json(&warden(&data, &["release", "list", "--json"]));
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "failed adds recorded nothing"
    );
}

#[test]
fn a_release_added_anywhere_records_the_cargo_lock_the_binary_was_built_with() {
    // Started outside the repository, with no Cargo.lock in sight: the binary's own.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["release", "add", "--name", "v1", "--json", "--data-dir"])
        .arg(&data)
        .current_dir(dir.path())
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap();
    let v1 = json(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v1["lockfile_sha256"], v1["build_lockfile_sha256"]);
    let deps = v1["dependencies"].as_array().unwrap();
    let expected = std::fs::read_to_string(LOCKFILE)
        .unwrap()
        .matches("[[package]]")
        .count();
    assert_eq!(deps.len(), expected);
    assert!(deps.iter().any(|d| d[0] == "serde_json"));
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::io::Read;
    for args in [
        &["build-info", "--lockfile"][..],
        &["deps", "inventory", "--lockfile", LOCKFILE],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line's worth, as `| head -1` would, then hang up.
        let mut first = [0u8; 64];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_switch_reads_the_usual_spellings_from_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (value, json) in [
        ("1", true),
        ("yes", true),
        ("true", true),
        ("0", false),
        ("off", false),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["release", "list", "--data-dir"])
            .arg(dir.path())
            .env("WARDEN_JSON", value)
            .output()
            .unwrap();
        assert!(out.status.success(), "WARDEN_JSON={value}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim() == "[]", json, "WARDEN_JSON={value}: {stdout}");
    }
}
