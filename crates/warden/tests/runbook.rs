//! docs/RUNBOOK.md is practised: its `sh` blocks run, in order and as written,
//! against a running `warden up` that has just deployed a bad release, and must end
//! with the good release active and the bad one marked bad.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod support;

use support::{Up, wait_ready};

/// The runbook's `sh` code blocks, in order.
fn runnable_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match (&mut current, trimmed.strip_prefix("```")) {
            (None, Some(info)) if info.trim() == "sh" => current = Some(String::new()),
            (Some(block), Some(_)) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(trimmed);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_commands_roll_back_a_bad_release() {
    let runbook = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/RUNBOOK.md"
    ))
    .unwrap();
    let blocks = runnable_blocks(&runbook);
    assert!(
        blocks.len() >= 3,
        "the runbook lost its commands: {blocks:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_up, api, console) = Up::start(
        dir.path(),
        "[monitor]\nscrape_interval = \"1s\"\n",
        false,
        &["--release", "v1", "--replicas", "1"],
    );
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{api}/readyz"),
    )
    .await;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_warden")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str| {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("WARDEN_DATA_DIR", &data)
            .env("WARDEN_CONSOLE", format!("127.0.0.1:{console}"))
            .env("WARDEN_LISTEN", format!("127.0.0.1:{api}"))
            .env("WARDEN_LOG", "warn")
            .output()
            .unwrap();
        let said = format!(
            "{script}\nexit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        said
    };
    // The situation the runbook is for: a new release just went out.
    run("warden release add --name v2 --api-arg=--token-ttl=2h && warden deploy v2");

    let outputs: Vec<String> = blocks.iter().map(|b| run(b)).collect();
    let all = outputs.join("\n");
    assert!(all.contains("rollback from v2 to v1"), "{all}");
    assert!(
        all.to_ascii_lowercase().contains("x-warden-release: v1"),
        "{all}"
    );
    let last = outputs.last().unwrap();
    assert!(
        last.lines()
            .any(|l| l.starts_with("v1") && l.contains("active"))
            && last
                .lines()
                .any(|l| l.starts_with("v2") && l.contains("bad")),
        "{last}"
    );
}

#[test]
fn only_sh_blocks_are_run() {
    let md = "x\n```sh\necho a\n```\n```bash\nkubectl b\n```\n   ```sh\n   echo c\n   ```\n";
    assert_eq!(runnable_blocks(md), ["echo a\n", "echo c\n"]);
}
