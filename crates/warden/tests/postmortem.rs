//! The postmortem of a real incident on a running `warden up`: two releases recorded
//! with lockfiles that differ in serde_json, the second deployed by force, a
//! MemoryLeak alert (through the Alertmanager receiver) that opens the incident, a
//! rollback, the incident resolved by hand; then `warden postmortem` drafts it from
//! the data dir and `warden postmortem publish` puts it on the status page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::{Up, wait_ready};

/// Runs `warden ARGS` against the `up` whose data dir is `data`.
fn warden(data: &Path, console: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_DATA_DIR", data)
        .env("WARDEN_CONSOLE", format!("127.0.0.1:{console}"))
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_ADMIN_TOKEN")
        .env_remove("WARDEN_STATUS_CONFIG")
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

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// This workspace's Cargo.lock.
const LOCKFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");

/// This workspace's Cargo.lock with serde_json at another version.
fn changed_lockfile(dir: &Path) -> std::path::PathBuf {
    let lock = std::fs::read_to_string(LOCKFILE).unwrap();
    let key = "name = \"serde_json\"\nversion = \"";
    let at = lock.find(key).unwrap() + key.len();
    let end = at + lock[at..].find('"').unwrap();
    let path = dir.join("changed.lock");
    std::fs::write(&path, format!("{}1.0.999{}", &lock[..at], &lock[end..])).unwrap();
    path
}

fn serde_json_version() -> String {
    let lock = std::fs::read_to_string(LOCKFILE).unwrap();
    let key = "name = \"serde_json\"\nversion = \"";
    let at = lock.find(key).unwrap() + key.len();
    lock[at..at + lock[at..].find('"').unwrap()].to_owned()
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postmortem_is_drafted_from_the_records_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let changed = changed_lockfile(dir.path());
    for (name, lock) in [("v1", Path::new(LOCKFILE)), ("v2", changed.as_path())] {
        ok(warden(
            &data,
            0,
            &[
                "release",
                "add",
                "--name",
                name,
                "--lockfile",
                lock.to_str().unwrap(),
            ],
        ));
    }
    // The incident is resolved by hand here, not by the automation.
    std::fs::write(
        data.join("status.toml"),
        "[automation]\nresolve_after = \"1h\"\n",
    )
    .unwrap();
    let (_up, api, console) = Up::start(
        dir.path(),
        "[monitor]\nscrape_interval = \"1s\"\n",
        false,
        &["--release", "v1", "--replicas", "1"],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{api}/readyz")).await;
    let base = format!("http://127.0.0.1:{console}");

    // v2's lockfile differs and there is no gate report: deployed by force.
    ok(warden(&data, console, &["deploy", "v2", "--force"]));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The leak alert, as Alertmanager would send it: the automation opens the incident.
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let response = client
        .post(format!("{base}/api/alertmanager"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({
            "version": "4",
            "status": "firing",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "MemoryLeak", "release": "v2", "instance": "127.0.0.1:1", "severity": "critical"},
                "annotations": {"summary": "memory leak in release v2: heap +9.8 MB/min"},
                "fingerprint": "postmortem-test",
            }],
        }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let list: serde_json::Value =
            serde_json::from_str(&ok(warden(&data, console, &["incident", "list", "--json"])))
                .unwrap();
        if let Some(id) = list[0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no incident opened: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Not before it is resolved.
    let early = warden(&data, console, &["postmortem", "publish", &id]);
    assert_eq!(early.status.code(), Some(2), "{}", text(&early));
    assert!(
        text(&early).contains("resolve it first"),
        "{}",
        text(&early)
    );

    ok(warden(
        &data,
        console,
        &["rollback", "--reason", "MemoryLeak on v2"],
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    ok(warden(
        &data,
        console,
        &[
            "incident",
            "resolve",
            &id,
            "-m",
            "Rolled back to v1; memory is flat.",
        ],
    ));

    // The draft, for machines: the culprit is the JSON crate whose version changed.
    let draft: serde_json::Value = serde_json::from_str(&ok(warden(
        &data,
        console,
        &["postmortem", &id, "--format", "json"],
    )))
    .unwrap();
    assert_eq!(draft["culprit"], "serde_json", "{draft:#}");
    assert_eq!(
        draft["candidates"].as_array().unwrap().len(),
        1,
        "{draft:#}"
    );
    assert_eq!(draft["candidates"][0]["old"], serde_json_version());
    assert_eq!(draft["candidates"][0]["new"], "1.0.999");
    assert_eq!(draft["releases"]["bad"]["name"], "v2");
    assert_eq!(draft["releases"]["good"]["name"], "v1");
    assert_eq!(
        draft["releases"]["bad"]["source"]["record"],
        "rollback.completed"
    );
    assert_eq!(draft["resolution"]["rollback"]["automatic"], false);
    assert!(
        !draft["resolution"]["forced_past"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{draft:#}"
    );
    assert_eq!(draft["memory"]["leak_alert"]["release"], "v2");
    let kinds: Vec<&str> = draft["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "deploy.started",
        "deploy.completed",
        "alert.firing",
        "incident.opened",
        "rollback.completed",
        "release.marked_bad",
        "incident.resolved",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }
    // Every timeline entry is an event of the log, at its time.
    let store = warden_store::Store::open(&data.join("control.db")).unwrap();
    let log = store.events(&warden_store::EventFilter::default()).unwrap();
    for entry in draft["timeline"].as_array().unwrap() {
        let event = log
            .iter()
            .find(|e| Some(e.id) == entry["event_id"].as_i64())
            .unwrap();
        assert_eq!(Some(event.at_ms), entry["at_ms"].as_i64());
        assert_eq!(Some(event.kind.as_str()), entry["kind"].as_str());
    }
    let series = draft["memory"]["series"].as_array().unwrap();
    assert!(
        series.iter().any(|s| s["release"] == "v2"),
        "the scraped memory of v2 is in the evidence: {series:?}"
    );
    let measures = draft["corrective_measures"].to_string();
    assert!(
        measures.contains("Gate the update of serde_json"),
        "{measures}"
    );
    assert!(measures.contains("Roll back automatically"), "{measures}");

    // The Markdown to edit, with its chart beside it; the HTML with the chart inline.
    let md_path = dir.path().join("postmortem.md");
    ok(warden(
        &data,
        console,
        &["postmortem", &id, "--out", md_path.to_str().unwrap()],
    ));
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.contains("## Root cause candidates"), "{md}");
    assert!(md.contains("serde_json"), "{md}");
    let chart = dir.path().join(format!("postmortem-{id}-memory.svg"));
    assert!(std::fs::read_to_string(&chart).unwrap().starts_with("<svg"));
    let html = ok(warden(
        &data,
        console,
        &["postmortem", &id, "--format", "html"],
    ));
    assert!(html.contains("<figure class=\"chart\"><svg"), "{html}");

    // A clear error for an unknown incident.
    let unknown = warden(&data, console, &["postmortem", "nosuchincident"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("warden incident list"),
        "{}",
        text(&unknown)
    );

    // Published: the incident is `postmortem`, its JSON carries it, its page shows it.
    let published: serde_json::Value = serde_json::from_str(&ok(warden(
        &data,
        console,
        &["postmortem", "publish", &id, "--json"],
    )))
    .unwrap();
    assert_eq!(published["status"], "postmortem", "{published:#}");
    let incidents: serde_json::Value = get(&format!("{base}/api/v2/incidents.json"))
        .await
        .json()
        .await
        .unwrap();
    let incident = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap();
    assert_eq!(incident["status"], "postmortem");
    assert_eq!(incident["incident_updates"][0]["status"], "postmortem");
    // No public address is configured: the update does not send users to the
    // console's; the incident's page links the postmortem.
    let update = incident["incident_updates"][0]["body"].as_str().unwrap();
    assert!(
        update.contains("Read it on this incident's page") && !update.contains("127.0.0.1"),
        "{update}"
    );
    // What is published is the public version: in words, nothing of the team's.
    let body = incident["postmortem_body"].as_str().unwrap();
    assert!(
        body.contains("serde_json") && body.contains("## What we are changing"),
        "{incident:#}"
    );
    for internal in [
        "127.0.0.1",
        "alert.firing",
        "process_resident_memory_bytes",
        "warden postmortem",
        "Internal draft",
    ] {
        assert!(!body.contains(internal), "{internal} in {body}");
    }
    assert!(incident["postmortem_published_at"].is_string());
    let page = get(&format!("{base}/status/incidents/{id}/postmortem")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("serde_json") && page.contains("<svg"),
        "{page}"
    );
    let incident_page = get(&format!("{base}/status/incidents/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        incident_page.contains("Read the postmortem"),
        "{incident_page}"
    );

    // The team's draft is not for users: publishing it is refused, saying why.
    let refused = warden(
        &data,
        console,
        &[
            "postmortem",
            "publish",
            &id,
            "--file",
            md_path.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("the draft's instructions") && text(&refused).contains("--public"),
        "{}",
        text(&refused)
    );
    // The public version, edited, is.
    let public = dir.path().join("public.md");
    ok(warden(
        &data,
        console,
        &[
            "postmortem",
            &id,
            "--public",
            "--out",
            public.to_str().unwrap(),
        ],
    ));
    let mut words = std::fs::read_to_string(&public).unwrap();
    assert!(
        !words.contains("127.0.0.1") && words.contains("serde_json"),
        "{words}"
    );
    words.push_str("\nWe are sorry for the trouble.\n");
    std::fs::write(&public, words).unwrap();
    ok(warden(
        &data,
        console,
        &[
            "postmortem",
            "publish",
            &id,
            "--file",
            public.to_str().unwrap(),
        ],
    ));
    let page = get(&format!("{base}/status/incidents/{id}/postmortem"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("We are sorry for the trouble."), "{page}");

    // The team's edit replaces it.
    let edited = dir.path().join("edited.md");
    std::fs::write(
        &edited,
        "# Postmortem\n\nserde_json 1.0.999 leaked; gated now.\n",
    )
    .unwrap();
    ok(warden(
        &data,
        console,
        &[
            "postmortem",
            "publish",
            &id,
            "--file",
            edited.to_str().unwrap(),
        ],
    ));
    let page = get(&format!("{base}/status/incidents/{id}/postmortem"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("gated now"), "{page}");
    let missing = get(&format!(
        "{base}/status/incidents/nosuchincident/postmortem"
    ))
    .await;
    assert_eq!(missing.status(), 404);
}
