//! Deploys and rollbacks through `warden up`'s front proxy, with users sending
//! requests the whole time: a deploy, a refused deploy, a deploy of a release that
//! never gets ready, a rollback while the store is failing, an automatic rollback of
//! a leaking release, and an instance killed under load. Users must see no failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::{Traffic, Up, wait_ready};

/// Runs `warden ARGS` against the `up` whose data dir is `data`.
fn warden(data: &Path, console: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_DATA_DIR", data)
        .env("WARDEN_CONSOLE", format!("127.0.0.1:{console}"))
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn deploy_state(console: u16) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{console}/api/deploy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn events(data: &Path, prefix: &str) -> Vec<warden_store::Event> {
    warden_store::Store::open(&data.join("control.db"))
        .unwrap()
        .events(&warden_store::EventFilter {
            kind_prefix: Some(prefix.into()),
            ..Default::default()
        })
        .unwrap()
}

/// This workspace's Cargo.lock.
const LOCKFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");

/// Records this binary as release `name` with the workspace's lockfile.
fn record(data: &Path, name: &str, args: &[&str]) {
    std::fs::create_dir_all(data).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["release", "add", "--name", name, "--lockfile", LOCKFILE])
        .args(args.iter().map(|a| format!("--api-arg={a}")))
        .env("WARDEN_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// This workspace's Cargo.lock with one package's version changed: another
/// release's dependency set.
fn changed_lockfile(dir: &Path) -> std::path::PathBuf {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let at = lock.find("name = \"serde_json\"\nversion = \"").unwrap()
        + "name = \"serde_json\"\nversion = \"".len();
    let end = at + lock[at..].find('"').unwrap();
    let changed = format!("{}1.0.999{}", &lock[..at], &lock[end..]);
    let path = dir.join("changed.lock");
    std::fs::write(&path, changed).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_rollbacks_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    record(&data, "v1", &[]);
    let (_up, api, console) = Up::start(
        dir.path(),
        "[monitor]\nscrape_interval = \"1s\"\n",
        false,
        &["--release", "v1", "--replicas", "2", "--bake", "10m"],
    );
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{base}/readyz")).await;
    let users = Traffic::start(&base, 4, Duration::from_millis(5)).await;

    // v2 changes a dependency; "broken" cannot start.
    let lock = changed_lockfile(dir.path());
    let add = |name: &str, arg: &str, lock: &Path| {
        let out = warden(
            &data,
            console,
            &[
                "release",
                "add",
                "--name",
                name,
                &format!("--api-arg={arg}"),
                "--lockfile",
                lock.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    add("v2", "--token-ttl=2h", &lock);
    add(
        "broken",
        "--no-such-flag",
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")),
    );

    // A dependency change without a gate report is refused, and nothing changes.
    let refused = warden(&data, console, &["deploy", "v2"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("serde_json") && said.contains("--gate") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(deploy_state(console).await["active"], "v1");

    // Forced, it goes out and is recorded as forced; v1 stays warm.
    let deployed = warden(&data, console, &["deploy", "v2", "--force", "--json"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    let state = deploy_state(console).await;
    assert_eq!(state["active"], "v2", "{state}");
    assert_eq!(state["warm"], "v1", "{state}");
    assert_eq!(state["ready_instances"], 2, "{state}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A release that never gets ready is never switched to, and the error says why.
    let failed = warden(&data, console, &["deploy", "broken", "--force"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let said = text(&failed);
    assert!(
        said.contains("did not get ready") && said.contains("traffic stays on v2"),
        "{said}"
    );
    assert!(
        said.contains("--no-such-flag"),
        "the instance's own error is quoted: {said}"
    );
    let state = deploy_state(console).await;
    assert_eq!(
        (state["active"].as_str(), state["warm"].as_str()),
        (Some("v2"), Some("v1")),
        "{state}"
    );

    // Roll back while the store cannot be written: another connection holds its
    // write lock (chmod alone would not stop root, who runs CI).
    let db = data.join("control.db");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let started = Instant::now();
    let rolled = warden(&data, console, &["rollback", "--reason", "drill", "--json"]);
    let took = started.elapsed();
    assert!(rolled.status.success(), "{}", text(&rolled));
    let outcome: serde_json::Value = serde_json::from_slice(&rolled.stdout).unwrap();
    assert_eq!(
        (outcome["from"].as_str(), outcome["to"].as_str()),
        (Some("v2"), Some("v1"))
    );
    assert_eq!(outcome["warm"], true);
    assert_eq!(deploy_state(console).await["active"], "v1");
    eprintln!("rollback with the store locked took {took:?} end to end");
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocker.execute_batch("ROLLBACK;").unwrap();
    drop(blocker);

    let seen = users.stop().await;
    assert!(seen.sent > 200, "{seen:?}");
    assert!(
        seen.failed.is_empty(),
        "users saw failures: {:?}",
        seen.failed
    );

    // The proxy counts requests per release on the console's /metrics.
    let metrics = client
        .get(format!("http://127.0.0.1:{console}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for release in ["v1", "v2"] {
        assert!(
            metrics.contains(&format!(
                "warden_proxy_requests_total{{code=\"200\",release=\"{release}\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "warden_proxy_request_duration_seconds_count{{release=\"{release}\"}}"
            )),
            "{metrics}"
        );
    }

    // Once the store works again the history catches up, in order, with the times
    // things happened.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&data, "release.")
        .iter()
        .any(|e| e.kind == "release.marked_bad")
    {
        assert!(
            Instant::now() < deadline,
            "the rollback never reached the event log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kinds: Vec<(String, Option<String>)> = events(&data, "deploy.")
        .into_iter()
        .chain(events(&data, "rollback."))
        .map(|e| (e.kind, e.release))
        .collect();
    for expected in [
        ("deploy.completed", "v1"),
        ("deploy.started", "v2"),
        ("deploy.completed", "v2"),
        ("deploy.failed", "broken"),
        ("rollback.completed", "v1"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_owned(), Some(expected.1.to_owned()))),
            "{expected:?} missing from {kinds:?}"
        );
    }
    let forced = events(&data, "deploy.started");
    assert_eq!(forced[0].payload["forced"], true, "{:?}", forced[0]);
    let list = warden(&data, console, &["release", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let states: Vec<(&str, &str)> = list
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("v1", "active"), ("v2", "bad"), ("broken", "recorded")]
    );
    assert_eq!(list[1]["bad_reason"], "drill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_release_is_rolled_back_automatically_in_its_bake_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    record(&data, "v1", &[]);
    record(&data, "v2-leaky", &["--chaos-leak-bytes-per-request=16384"]);
    // The status page resolves the incident once recovery holds for 3 s.
    std::fs::write(
        data.join("status.toml"),
        "[automation]\nresolve_after = \"3s\"\n",
    )
    .unwrap();
    let config = "[monitor]\nscrape_interval = \"1s\"\n\n\
         [alerts.leak]\nwindow = \"60s\"\nfor = \"5s\"\nmemory_limit = 4000000000\n";
    let (_up, api, console) = Up::start(
        dir.path(),
        config,
        false,
        &["--release", "v1", "--replicas", "1", "--bake", "10m"],
    );
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{base}/readyz")).await;
    let users = Traffic::start(&base, 2, Duration::from_millis(5)).await;
    let out = warden(&data, console, &["deploy", "v2-leaky"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(deploy_state(console).await["active"], "v2-leaky");

    let deadline = Instant::now() + Duration::from_secs(150);
    let state = loop {
        let state = deploy_state(console).await;
        if state["active"] == "v1" {
            break state;
        }
        assert!(Instant::now() < deadline, "never rolled back: {state}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        state["bad"]["v2-leaky"]
            .as_str()
            .unwrap()
            .contains("MemoryLeak"),
        "{state}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = users.stop().await;
    assert!(
        seen.failed.is_empty(),
        "users saw failures: {:?}",
        seen.failed
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let rollback = loop {
        if let Some(e) = events(&data, "rollback.").pop() {
            break e;
        }
        assert!(Instant::now() < deadline, "no rollback event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rollback.payload["automatic"], true, "{rollback:?}");
    assert_eq!(rollback.payload["from"], "v2-leaky");
    let fired = events(&data, "alert.firing");
    assert!(
        fired.iter().any(|e| e.payload["alert"] == "MemoryLeak" && e.release.as_deref() == Some("v2-leaky")),
        "{fired:?}"
    );
    assert!(fired.iter().all(|e| e.at_ms <= rollback.at_ms));

    // Users were told: an incident opened from the alert, moved on by the rollback,
    // and resolved once recovery held.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let incidents: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{console}/api/v2/incidents.json"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let first = incidents["incidents"][0].clone();
        if first["status"] == "resolved" {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "the incident was not resolved: {incidents}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stages: Vec<&str> = incident["incident_updates"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["investigating", "identified", "monitoring", "resolved"],
        "{incident}"
    );
    let opened = events(&data, "incident.opened");
    let first_alert = fired.iter().map(|e| e.at_ms).min().unwrap();
    assert!(
        opened[0].at_ms - first_alert < 30_000,
        "users are told within 30 s of the alert: {} ms",
        opened[0].at_ms - first_alert
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_is_replaced_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (up, api, console) = Up::start(
        dir.path(),
        "[monitor]\nscrape_interval = \"1s\"\n",
        false,
        &["--release", "v1", "--replicas", "2"],
    );
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{base}/readyz")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while deploy_state(console).await["ready_instances"] != 2 {
        assert!(Instant::now() < deadline, "the instances never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let users = Traffic::start(&base, 4, Duration::from_millis(5)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = support::child_of(up.0.id()).unwrap();
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();

    // The proxy takes it out at once, the supervisor starts a new one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(&data, "instance.")
        .iter()
        .filter(|e| e.kind == "instance.started")
        .count()
        < 3
        || deploy_state(console).await["ready_instances"] != 2
    {
        assert!(
            Instant::now() < deadline,
            "the killed instance was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = users.stop().await;
    // Reads in flight on the dead instance are retried on the other; a write that
    // was in flight there may be lost (the proxy cannot know whether it was applied),
    // at most one per user.
    assert!(
        seen.failed.iter().all(|f| f.starts_with("POST")) && seen.failed.len() <= 4,
        "{:?}",
        seen.failed
    );
    let exited = events(&data, "instance.exited");
    assert_eq!(exited.len(), 1, "{exited:?}");
    assert_eq!(
        exited[0].payload["exit_code"],
        serde_json::Value::Null,
        "killed by a signal"
    );
}

#[test]
fn the_rollback_drill_runs_the_procedure_and_times_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["drill", "rollback", "--auto", "--json"])
        .current_dir(dir.path())
        .env("WARDEN_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["failed_requests"], 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["what"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert!(report["rollback_seconds"].as_f64().unwrap() >= 0.0);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("$ warden rollback --reason 'drill: v2 leaks memory'"),
        "the drill shows the commands as typed: {said}"
    );
}

/// The releases that served `n` requests to `/healthz`, counted.
async fn served_by(base: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let client = reqwest::Client::new();
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let response = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(response.status().is_success());
        let release = response.headers()["x-warden-release"]
            .to_str()
            .unwrap()
            .to_owned();
        *counts.entry(release).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_share_then_the_whole_or_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    record(&data, "v1", &[]);
    record(&data, "v2", &["--token-ttl=2h"]);
    let (_up, api, console) = Up::start(
        dir.path(),
        "[monitor]\nscrape_interval = \"1s\"\n",
        false,
        &["--release", "v1", "--replicas", "1"],
    );
    let base = format!("http://127.0.0.1:{api}");
    wait_ready(&reqwest::Client::new(), &format!("{base}/readyz")).await;

    // A canary that is rolled back: v2 got its tenth, then none.
    let out = warden(
        &data,
        console,
        &["deploy", "v2", "--canary", "10%", "--canary-for", "10m"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let counts = served_by(&base, 100).await;
    assert_eq!(counts.get("v2"), Some(&10), "{counts:?}");
    let state = deploy_state(console).await;
    assert_eq!(
        (state["active"].as_str(), state["canary"].as_str()),
        (Some("v1"), Some("v2")),
        "{state}"
    );
    let out = warden(&data, console, &["rollback", "--reason", "canary errors"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(served_by(&base, 20).await.get("v1"), Some(&20));
    let state = deploy_state(console).await;
    assert_eq!(state["canary"], serde_json::Value::Null, "{state}");
    assert_eq!(state["bad"]["v2"], "canary errors", "{state}");

    // A bad release needs --force; this canary is promoted after its time.
    let refused = warden(&data, console, &["deploy", "v2", "--canary", "50%"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("marked bad"), "{}", text(&refused));
    let out = warden(
        &data,
        console,
        &[
            "deploy",
            "v2",
            "--force",
            "--canary",
            "50%",
            "--canary-for",
            "2s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while deploy_state(console).await["active"] != "v2" {
        assert!(Instant::now() < deadline, "the canary was never promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_by(&base, 20).await.get("v2"), Some(&20));
    assert_eq!(deploy_state(console).await["warm"], "v1");
}
