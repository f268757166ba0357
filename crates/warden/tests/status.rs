//! The status page end to end: the built `warden up` serves it on its console; an
//! incident opened, updated and resolved with the `warden incident` CLI (with an
//! XSS attempt in its text) shows escaped on the page, in Statuspage's JSON and
//! in the Atom feed (parsed by Python's feedparser when it is installed); the
//! admin API refuses writes without the token; ETag/304 works; a scheduled
//! maintenance starts and ends on time by itself; `warden status export` writes
//! the same page as files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::{Up, wait_ready};

const TOKEN: &str = "status-test-token";
const XSS: &str = "<script>alert(1)</script>";

fn warden(console: u16, data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .arg("--console")
        .arg(format!("127.0.0.1:{console}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("WARDEN_ADMIN_TOKEN", TOKEN)
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn python_with_feedparser() -> bool {
    Command::new("python3")
        .args(["-c", "import feedparser"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_from_the_cli_reach_the_page_json_and_feed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A status config in the data dir: a fast maintenance clock and a template.
    std::fs::write(
        data.join("status.toml"),
        "[page]\nname = \"Example API\"\n\n[maintenance]\ncheck_interval = \"200ms\"\n\n\
         [templates]\nresolved = \"All good again for {components}.\"\n",
    )
    .unwrap();
    let (_up, _api, console) = Up::start(
        dir.path(),
        "",
        false,
        &["--replicas", "1", "--admin-token", TOKEN],
    );
    let base = format!("http://127.0.0.1:{console}");
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("{base}/api/v2/status.json")).await;

    let status: serde_json::Value = http
        .get(format!("{base}/api/v2/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"]["indicator"], "none");
    assert_eq!(status["page"]["name"], "Example API");

    // Writes without the token are refused and change nothing.
    let refused = http
        .post(format!("{base}/api/admin/incidents"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A method a page does not take: a problem document and the Allow header.
    let wrong = http
        .delete(format!("{base}/api/v2/status.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert!(wrong.headers()["allow"].to_str().unwrap().contains("GET"));
    assert_eq!(wrong.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = wrong.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("DELETE"),
        "{problem}"
    );
    let refused = warden(
        console,
        &data,
        &["incident", "open", "x", "--admin-token", "wrong"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing changed"));

    // Open, update and resolve through the CLI.
    let name = format!("Sign-in errors {XSS}");
    let opened = ok(&warden(
        console,
        &data,
        &[
            "incident",
            "open",
            &name,
            "--message",
            &format!("We are looking into it {XSS}"),
            "--component",
            "authentication=major_outage",
            "--component",
            "data-retrieval=partial_outage",
            "--json",
        ],
    ));
    let incident: serde_json::Value = serde_json::from_str(&opened).unwrap();
    let id = incident["id"].as_str().unwrap().to_owned();
    assert_eq!(incident["impact"], "critical");
    assert_eq!(
        incident["name"],
        name.as_str(),
        "JSON carries the text as written"
    );

    let bad = warden(
        console,
        &data,
        &[
            "incident",
            "update",
            &id,
            "--component",
            "nope=major_outage",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("api, authentication, data-retrieval"),
        "{stderr}"
    );

    let page = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(XSS), "the page must escape user text");
    assert!(page.contains("Sign-in errors &"), "{page}");
    assert!(page.contains("Major System Outage"));

    let summary = http
        .get(format!("{base}/api/v2/summary.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(summary.headers()["cache-control"], "public, max-age=5");
    let etag = summary.headers()["etag"].to_str().unwrap().to_owned();
    let summary: serde_json::Value = summary.json().await.unwrap();
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["incidents"][0]["id"], id.as_str());
    let components: Vec<(String, String)> = summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(components.contains(&("authentication".into(), "major_outage".into())));
    assert!(components.contains(&("api".into(), "operational".into())));
    let not_modified = http
        .get(format!("{base}/api/v2/summary.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    ok(&warden(
        console,
        &data,
        &["incident", "update", &id, "--status", "identified"],
    ));
    let resolved = ok(&warden(console, &data, &["incident", "resolve", &id]));
    assert!(
        resolved.contains("All good again for Authentication and Data retrieval."),
        "{resolved}"
    );
    let changed = http
        .get(format!("{base}/api/v2/summary.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let list = ok(&warden(console, &data, &["incident", "list"]));
    assert!(list.contains(&id) && list.contains("resolved"), "{list}");
    let incidents: serde_json::Value = http
        .get(format!("{base}/api/v2/incidents.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let updates = incidents["incidents"][0]["incident_updates"]
        .as_array()
        .unwrap();
    let statuses: Vec<&str> = updates
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["resolved", "identified", "investigating"]);
    let unresolved: serde_json::Value = http
        .get(format!("{base}/api/v2/incidents/unresolved.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(unresolved["incidents"].as_array().unwrap().is_empty());

    // The Atom feed: well-formed, escaped, parsed by a real feed reader.
    let atom = http
        .get(format!("{base}/history.atom"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!atom.contains("<script"));
    if python_with_feedparser() {
        let file = dir.path().join("history.atom");
        std::fs::write(&file, &atom).unwrap();
        let parsed = Command::new("python3")
            .arg("-c")
            .arg(
                "import feedparser, json, sys\n\
                 d = feedparser.parse(sys.argv[1])\n\
                 print(json.dumps({'bozo': bool(d.bozo), 'version': d.version, \
                 'titles': [e.title for e in d.entries], \
                 'links': [e.link for e in d.entries], \
                 'content': [e.content[0].value for e in d.entries]}))",
            )
            .arg(&file)
            .output()
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&ok(&parsed)).unwrap();
        assert_eq!(parsed["bozo"], false, "{parsed}");
        assert_eq!(parsed["version"], "atom10");
        assert!(
            parsed["titles"][0]
                .as_str()
                .unwrap()
                .starts_with("Sign-in errors"),
            "{parsed}"
        );
        assert!(
            parsed["links"][0]
                .as_str()
                .unwrap()
                .ends_with(&format!("/status/incidents/{id}")),
            "{parsed}"
        );
        let content = parsed["content"][0].as_str().unwrap();
        assert!(!content.contains("<script"), "{content}");
        assert!(content.contains("All good again"), "{content}");
    } else {
        eprintln!("python3 with feedparser not found: the Atom feed is not parsed by a reader");
    }

    // A maintenance window opens and closes by itself.
    let scheduled = ok(&warden(
        console,
        &data,
        &[
            "status",
            "maintenance",
            "schedule",
            "Database upgrade",
            "--start",
            "+1s",
            "--duration",
            "2s",
            "--component",
            "api",
            "--json",
        ],
    ));
    let maintenance: serde_json::Value = serde_json::from_str(&scheduled).unwrap();
    assert_eq!(maintenance["status"], "scheduled");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let document: serde_json::Value = http
            .get(format!("{base}/api/v2/scheduled-maintenances.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = document["scheduled_maintenances"][0]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "maintenance went through {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains(&"in_progress".to_owned()), "{seen:?}");
    let components = ok(&warden(console, &data, &["status", "component", "list"]));
    assert!(components.contains("api") && !components.contains("under_maintenance"));

    // A component set by hand, then the export.
    ok(&warden(
        console,
        &data,
        &["status", "component", "set", "api", "degraded_performance"],
    ));
    let out = dir.path().join("site");
    let export = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "export"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    ok(&export);
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("Degraded performance"));
    assert!(!index.contains(XSS));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("api/v2/summary.json")).unwrap())
            .unwrap();
    assert_eq!(exported["status"]["indicator"], "minor");
    assert!(out.join(format!("incidents/{id}.html")).is_file());
}
