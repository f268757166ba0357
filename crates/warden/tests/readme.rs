//! The README's commands run as written: every `sh` block, in order, in one shell, in
//! a fresh clone of this repository, with `warden` on PATH (what `cargo install` gives
//! a reader) and a `warden up` running — the Quick start's first command.
//!
//! What the environment adds, and nothing else: the ports of that `warden up` (the
//! README's `localhost:8080` and `localhost:8081` are its defaults, rewritten to the
//! free ports the test took, and `WARDEN_LISTEN`/`WARDEN_CONSOLE`/`WARDEN_DATA_DIR`
//! point the commands at it), a shorter memory test (`WARDEN_DURATION`, the documented
//! variable of `--duration`), and the advisory database snapshot beside the repository
//! (`WARDEN_ADVISORY_DB`) instead of a download.
//!
//! A block may be skipped only with a `<!-- readme-test: skip: REASON -->` line right
//! above it, and only the Quick start is: CI runs `scripts/test` itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod support;

use support::{Up, wait_ready};

const SKIP: &str = "<!-- readme-test: skip:";

/// The README's `sh` blocks, in order, and the skipped ones with their reasons.
fn blocks(markdown: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    let mut current: Option<(String, Option<String>)> = None;
    let mut previous = "";
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some("sh")) => {
                let skip = previous
                    .strip_prefix(SKIP)
                    .and_then(|rest| rest.strip_suffix("-->"))
                    .map(|reason| reason.trim().to_owned());
                current = Some((String::new(), skip));
            }
            (Some(_), Some("")) => {
                if let Some((block, skip)) = current.take() {
                    match skip {
                        Some(reason) => skipped.push((block, reason)),
                        None => run.push(block),
                    }
                }
            }
            (Some((block, _)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
        previous = line;
    }
    (run, skipped)
}

#[test]
fn blocks_are_found_and_skips_need_a_reason() {
    let md = "a\n```sh\necho 1\n```\n<!-- readme-test: skip: CI does it -->\n```sh\nscripts/test\n```\n```bash\nno\n```\n";
    let (run, skipped) = blocks(md);
    assert_eq!(run, ["echo 1\n"]);
    assert_eq!(
        skipped,
        [("scripts/test\n".to_owned(), "CI does it".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_commands_run_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let (run, skipped) = blocks(&readme);
    assert!(run.len() >= 6, "the README lost its commands: {run:?}");
    assert_eq!(
        skipped.len(),
        1,
        "only the Quick start may be skipped: {skipped:?}"
    );
    assert!(
        skipped[0].0.contains("cargo run --release -- up") && skipped[0].0.contains("scripts/test"),
        "{skipped:?}"
    );
    assert!(
        std::fs::metadata(repo.join("scripts/test"))
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0),
        "the Quick start's scripts/test is not an executable script"
    );

    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("warden");
    let cloned = Command::new("git")
        .args(["clone", "--quiet", "--local"])
        .arg(&repo)
        .arg(&clone)
        .status()
        .unwrap();
    assert!(cloned.success(), "cannot clone the repository");
    let data = dir.path().join("data");
    let (_up, api, console) = Up::start(dir.path(), "", false, &["--replicas", "1"]);
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{api}/readyz"),
    )
    .await;

    let script: String = run
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let block = block
                .replace("localhost:8080", &format!("127.0.0.1:{api}"))
                .replace("localhost:8081", &format!("127.0.0.1:{console}"));
            format!("echo '::: README block {}' >&2\n{block}", i + 1)
        })
        .collect();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_warden")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&clone)
        .env("PATH", &path)
        .env("WARDEN_DATA_DIR", &data)
        .env("WARDEN_CONSOLE", format!("127.0.0.1:{console}"))
        .env("WARDEN_LISTEN", format!("127.0.0.1:{api}"))
        .env("WARDEN_DURATION", "8s")
        .env("WARDEN_ADVISORY_DB", repo.join("../shared/advisory-db"))
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!(
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(out.status.success(), "{said}");
    // What each part should have shown.
    for expected in [
        "ada@example.com",     // the API
        "notes",               // an item round trip
        "leak caught: exit 1", // memtest catches the chaos build
        "PASS",                // the gate passes an identical build
        "rollback",            // deploy, then roll back
        "serde_json",          // the inventory
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in\n{said}");
    }
    for written in [
        "out/memtest.json",
        "gate/gate.json",
        "postmortem.md",
        "site",
    ] {
        assert!(clone.join(written).exists(), "no {written}\n{said}");
    }
}
