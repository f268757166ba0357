//! A real Alertmanager (Debian's `prometheus-alertmanager`) posting to the status
//! page's receiver opens an incident and, once the alert resolves and recovery
//! holds, resolves it: a Prometheus + Alertmanager setup drives the same automation
//! as Warden's own rules. And every alert the shipped Prometheus rules fire, exactly
//! as promtool evaluates them, opens an incident through Alertmanager; an alert of
//! another name opens none and says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Up, free_port, wait_ready};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn incidents(console: u16) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{console}/api/v2/incidents.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Posts an alert to Alertmanager's API; `ends` in the past resolves it.
async fn post_alert(alertmanager: u16, ends: Option<&str>) {
    let mut alert = serde_json::json!({
        "labels": {"alertname": "ErrorRatioHigh", "release": "v1", "instance": "10.0.0.7:8080", "severity": "critical"},
        "annotations": {"summary": "5xx ratio 12% on 10.0.0.7:8080"},
    });
    if let Some(ends) = ends {
        alert["endsAt"] = ends.into();
    }
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{alertmanager}/api/v2/alerts"))
        .json(&serde_json::json!([alert]))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

/// Whether `program --version` runs; if not, fails under CI and says what is
/// skipped otherwise.
fn have(program: &str, package: &str) -> bool {
    if Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{program} is required in CI ({package})"
    );
    eprintln!("skipped: {program} is not installed ({package})");
    false
}

/// Starts Alertmanager in `dir` on a free port, posting every group (one per alert
/// name, at once) to the status receiver of the console on `console` with `token`.
async fn alertmanager(dir: &std::path::Path, console: u16, token: &str) -> (Killed, u16) {
    let port = free_port();
    let config = format!(
        "route:\n  receiver: warden\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: warden\n    webhook_configs:\n      - url: http://127.0.0.1:{console}/api/alertmanager\n        \
         send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {token}\n"
    );
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let child = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/-/ready"),
    )
    .await;
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_open_and_resolve_an_incident() {
    if !have(
        "prometheus-alertmanager",
        "Debian package prometheus-alertmanager",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("status.toml"),
        "[automation]\nresolve_after = \"2s\"\n",
    )
    .unwrap();
    let (_up, api, console) = Up::start(dir.path(), "", false, &["--replicas", "1"]);
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{api}/readyz"),
    )
    .await;
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();

    // Without the token the receiver refuses.
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{console}/api/alertmanager"))
        .json(&serde_json::json!({"alerts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (_alertmanager, port) = alertmanager(dir.path(), console, &token).await;

    post_alert(port, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = loop {
        let list = incidents(console).await;
        if list["incidents"][0]["status"] == "investigating" {
            break list["incidents"][0].clone();
        }
        assert!(Instant::now() < deadline, "no incident opened: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let components: Vec<&str> = opened["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(
        !components.is_empty() && components.iter().all(|s| *s == "partial_outage"),
        "{opened}"
    );

    // Resolved in Alertmanager: after recovery holds, resolved on the page.
    let past = time_now_minus_seconds(1);
    post_alert(port, Some(&past)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = incidents(console).await;
        if list["incidents"][0]["status"] == "resolved" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the incident was not resolved: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = warden_store::Store::open(&data.join("control.db")).unwrap();
    let alerts = store
        .events(&warden_store::EventFilter {
            kind_prefix: Some("alert.".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|e| e.kind == "alert.firing" && e.payload["source"] == "alertmanager")
    );
    assert!(alerts.iter().any(|e| e.kind == "alert.resolved"));
}

/// RFC 3339 for now minus `seconds`, via `date` (no time crate in this test).
fn time_now_minus_seconds(seconds: u64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("-{seconds} seconds"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../ops/prometheus/warden-rules.yml"
);
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/prometheus/tests");

/// The `alert:` names of the rules file and, for each, the first alert its promtool
/// tests expect it to fire: `{"alerts": [NAME], "expected": {NAME: {"labels",
/// "annotations"}}}`, read with Python's YAML parser (the one `check.py` uses).
fn expected_alerts(tests: &[std::path::PathBuf]) -> Option<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
alerts = sorted({r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r})
expected = {}
for path in sys.argv[2:]:
    for test in yaml.safe_load(open(path))["tests"]:
        for case in test.get("alert_rule_test") or []:
            for alert in case.get("exp_alerts") or []:
                expected.setdefault(case["alertname"], {
                    "labels": {k: str(v) for k, v in (alert.get("exp_labels") or {}).items()},
                    "annotations": {k: str(v) for k, v in (alert.get("exp_annotations") or {}).items()},
                })
json.dump({"alerts": alerts, "expected": expected}, sys.stdout)
"#;
    let output = match Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(RULES)
        .args(tests)
        .output()
    {
        Ok(output) if output.status.success() => output,
        outcome => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 with PyYAML is required in CI: {outcome:?}"
            );
            eprintln!("skipped: python3 with PyYAML (pip install pyyaml) is not available");
            return None;
        }
    };
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_of_the_shipped_rules_opens_an_incident_through_alertmanager() {
    if !have(
        "prometheus-alertmanager",
        "Debian package prometheus-alertmanager",
    ) || !have("promtool", "Debian package prometheus")
    {
        return;
    }
    // The alerts promtool's tests expect, and promtool says the rules fire exactly
    // them: same names, labels and annotations.
    let mut tests: Vec<std::path::PathBuf> = std::fs::read_dir(RULE_TESTS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    tests.sort();
    let promtool = Command::new("promtool")
        .args(["test", "rules"])
        .args(&tests)
        .output()
        .unwrap();
    assert!(
        promtool.status.success(),
        "promtool test rules: {}",
        String::from_utf8_lossy(&promtool.stdout)
    );
    let Some(rules) = expected_alerts(&tests) else {
        return;
    };
    let names: Vec<&str> = rules["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{rules}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("status.toml"),
        "[automation]\nresolve_after = \"1h\"\n",
    )
    .unwrap();
    let (_up, api, console) = Up::start(dir.path(), "", false, &["--replicas", "1"]);
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{api}/readyz")).await;
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let token = token.trim();
    let (_alertmanager, port) = alertmanager(dir.path(), console, token).await;
    let store = warden_store::Store::open(&data.join("control.db")).unwrap();
    let count = |list: &serde_json::Value| list["incidents"].as_array().unwrap().len();

    for (n, name) in names.iter().enumerate() {
        let expected = &rules["expected"][name];
        assert!(
            expected.is_object(),
            "{name}: no promtool test expects it to fire in {RULE_TESTS}"
        );
        let mut labels = expected["labels"].clone();
        labels["alertname"] = (*name).into();
        let response = client
            .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
            .json(&serde_json::json!([{"labels": labels, "annotations": expected["annotations"]}]))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{name}");

        // It opens an incident of its own (the one before was resolved by hand).
        let deadline = Instant::now() + Duration::from_secs(30);
        let opened = loop {
            let list = incidents(console).await;
            if count(&list) == n + 1 && list["incidents"][0]["status"] == "investigating" {
                break list["incidents"][0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{name} opened no incident: {list}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let log = store.events(&warden_store::EventFilter::default()).unwrap();
        let fired = log
            .iter()
            .find(|e| {
                e.kind == "alert.firing"
                    && e.payload["alert"] == *name
                    && e.payload["source"] == "alertmanager"
            })
            .unwrap_or_else(|| panic!("no alert.firing of {name} from Alertmanager"));
        assert_eq!(fired.payload["labels"]["service"], "warden");
        let incident_opened = log
            .iter()
            .find(|e| e.kind == "incident.opened" && e.payload["incident_id"] == opened["id"])
            .unwrap();
        assert!(incident_opened.id > fired.id, "{name}");
        assert!(
            log.iter()
                .all(|e| e.kind != warden_status::automation::ALERT_IGNORED),
            "{name}"
        );

        let id = opened["id"].as_str().unwrap();
        let resolved = client
            .post(format!(
                "http://127.0.0.1:{console}/api/admin/incidents/{id}/resolve"
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert!(resolved.status().is_success(), "{name}");
    }

    // An alert of another name: recorded, and no incident.
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .json(&serde_json::json!([{"labels": {"alertname": "WardenErrorRateHigh", "service": "warden", "release": "v1"}}]))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let ignored = loop {
        let found = store
            .events(&warden_store::EventFilter {
                kind_prefix: Some(warden_status::automation::ALERT_IGNORED.into()),
                ..Default::default()
            })
            .unwrap();
        if let Some(event) = found.into_iter().next() {
            break event;
        }
        assert!(Instant::now() < deadline, "the unknown alert left no trace");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ignored.payload["alert"], "WardenErrorRateHigh");
    assert!(
        ignored.payload["reason"]
            .as_str()
            .unwrap()
            .contains("opens no incident"),
        "{}",
        ignored.payload
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&incidents(console).await), names.len());
}
