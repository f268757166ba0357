//! A real Alertmanager (Debian's `prometheus-alertmanager`) posting to the status
//! page's receiver opens an incident and, once the alert resolves and recovery
//! holds, resolves it: a Prometheus + Alertmanager setup drives the same automation
//! as Warden's own rules.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_open_and_resolve_an_incident() {
    if Command::new("prometheus-alertmanager")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus-alertmanager is required in CI (Debian package prometheus-alertmanager)"
        );
        eprintln!("skipped: prometheus-alertmanager is not installed");
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

    let port = free_port();
    let config = format!(
        "route:\n  receiver: warden\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: warden\n    webhook_configs:\n      - url: http://127.0.0.1:{console}/api/alertmanager\n        \
         send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {token}\n"
    );
    std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
    let _alertmanager = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
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
