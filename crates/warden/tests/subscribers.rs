//! Status page subscribers end to end, against a real `warden up`: email through a
//! real SMTP server (aiosmtpd) with double opt-in and unsubscribe links, signed
//! webhooks to an HTTP receiver, a failing webhook quarantined, each update
//! delivered exactly once across a restart, the update-cadence reminder reaching
//! the on-call notifier, and the sign-up form's anti-abuse limits; then
//! `warden status subscriber ...` managing webhooks, and unconfirmed sign-ups
//! expiring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../monitor/tests/smtp/mod.rs"]
mod smtp;
mod support;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use smtp::SmtpServer;
use support::{Up, wait_ready};

const TOKEN: &str = "subscriber-test-admin-token";

/// What the HTTP receiver got: (path, headers, body).
type Received = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

/// An HTTP receiver on loopback: `/broken` answers 500, anything else 200.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{path}",
            axum::routing::post(
                |State(seen): State<Received>,
                 Path(path): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    seen.lock().unwrap().push((path.clone(), headers, body));
                    if path == "broken" {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

fn bodies(received: &Received, path: &str) -> Vec<(HeaderMap, Value)> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == path)
        .map(|(_, h, b)| (h.clone(), serde_json::from_slice(b).unwrap()))
        .collect()
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first `/subscriptions/<token>/<action>` link in `text`.
fn link(text: &str, action: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains("/subscriptions/") && w.ends_with(action))
        .unwrap_or_else(|| panic!("no {action} link in {text}"))
        .to_owned()
}

struct Console {
    http: reqwest::Client,
    base: String,
}

impl Console {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn subscriber_state(&self, kind: &str, address: &str) -> String {
        let list = self
            .admin(reqwest::Method::GET, "/api/admin/subscribers", None)
            .await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind && s["address"] == address)
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    async fn sign_up(&self, form: &str) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}/subscribe", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

fn start(dir: &std::path::Path, receiver: &str) -> (Up, String) {
    let config = format!(
        "[[notifiers]]\ntype = \"webhook\"\nname = \"on-call\"\nurl = \"{receiver}/oncall\"\n"
    );
    let args = ["--admin-token", TOKEN, "--replicas", "1"];
    let (up, _api, console) = Up::start(dir, &config, false, &args);
    (up, format!("http://127.0.0.1:{console}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_of_each_update_exactly_once_across_a_restart() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let (hooks, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/status.toml"),
        format!(
            "[automation]\nremind_after = \"3s\"\n\n\
             [subscribers]\nattempts = 2\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n\
             quarantine_after = 2\nsignups_per_client_per_hour = 4\n\n\
             [subscribers.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
             from = \"Warden status <status@example.com>\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let (up, base) = start(dir.path(), &hooks);
    let console = Console {
        http: reqwest::Client::new(),
        base,
    };
    wait_ready(&console.http, &format!("{}/status", console.base)).await;

    // Double opt-in: the sign-up only sends a confirmation.
    let (status, page) = console
        .sign_up("email=Ann%40Example.com&components=api&website=")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Check your inbox"), "{page}");
    let (_, confirmation) = eventually("the confirmation email", || {
        smtp.messages().into_iter().next()
    })
    .await;
    assert_eq!(
        console.subscriber_state("email", "ann@example.com").await,
        "pending"
    );
    let confirm = link(&confirmation, "confirm");
    // Following the link shows a button; only the POST confirms.
    let page = console.http.get(&confirm).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        console.subscriber_state("email", "ann@example.com").await,
        "pending"
    );
    let done = console.http.post(&confirm).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        console.subscriber_state("email", "ann@example.com").await,
        "active"
    );

    // Webhooks are added by an operator; the secret is shown once.
    let hook = console
        .admin(
            reqwest::Method::POST,
            "/api/admin/subscribers",
            Some(
                json!({"url": format!("{hooks}/hook"), "secret": "a-shared-secret-of-some-length"}),
            ),
        )
        .await;
    assert_eq!(hook["secret"], "a-shared-secret-of-some-length");
    let other_component = console
        .admin(
            reqwest::Method::POST,
            "/api/admin/subscribers",
            Some(json!({"url": format!("{hooks}/auth-only"), "components": ["authentication"]})),
        )
        .await;
    assert_eq!(other_component["state"], "active");
    console
        .admin(
            reqwest::Method::POST,
            "/api/admin/subscribers",
            Some(json!({"url": format!("{hooks}/broken")})),
        )
        .await;

    // No subscriber data on the public faces.
    let page = console
        .http
        .get(format!("{}/status", console.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("/subscribe\">Get email updates</a>"),
        "{page}"
    );
    for path in [
        "/status",
        "/api/v2/summary.json",
        "/history.atom",
        "/subscribe",
    ] {
        let text = console
            .http
            .get(format!("{}{path}", console.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains("ann@example.com") && !text.contains(&hooks),
            "{path}"
        );
    }
    let anonymous = console
        .http
        .get(format!("{}/api/admin/subscribers", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // An incident on the API: the email and the API's webhooks hear of it.
    let incident = console
        .admin(
            reqwest::Method::POST,
            "/api/admin/incidents",
            Some(json!({"name": "Errors on the API", "components": {"api": "partial_outage"}})),
        )
        .await;
    let id = incident["id"].as_str().unwrap().to_owned();
    eventually("the first webhook", || {
        (bodies(&received, "hook").len() == 1).then_some(())
    })
    .await;
    let (headers, payload) = bodies(&received, "hook").remove(0);
    assert_eq!(payload["incident"]["id"], id.as_str());
    assert_eq!(payload["incident"]["status"], "investigating");
    assert_ne!(payload["page"]["status_indicator"], "none");
    assert!(
        payload["meta"]["unsubscribe"]
            .as_str()
            .unwrap()
            .contains("/subscriptions/")
    );
    let raw = received
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, _)| p == "hook")
        .map(|(_, _, b)| b.clone())
        .unwrap();
    let signature = headers["x-warden-signature"].to_str().unwrap();
    assert!(warden_monitor::notify::verify_signature(
        "a-shared-secret-of-some-length",
        signature,
        &raw,
        std::time::SystemTime::now(),
        Duration::from_secs(300),
    ));
    let (headers, body) =
        eventually("the incident email", || smtp.messages().into_iter().nth(1)).await;
    assert!(
        headers.contains("Subject: [Warden] Errors on the API: Investigating"),
        "{headers}"
    );
    assert!(headers.contains("List-Unsubscribe: <http"), "{headers}");
    assert!(
        headers.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{headers}"
    );
    assert!(body.contains(&format!("/status/incidents/{id}")), "{body}");
    assert!(body.contains("/subscriptions/"), "{body}");
    // The email names the update it tells of.
    let first_update = incident["incident_updates"][0]["id"].as_str().unwrap();
    assert!(
        body.contains(&format!("Update ID: {first_update}")),
        "{body}"
    );
    assert!(
        headers.contains(&format!("X-Warden-Update: {first_update}")),
        "{headers}"
    );

    // The update-cadence reminder reaches the on-call notifier.
    let (_, reminder) = eventually("the on-call reminder", || {
        bodies(&received, "oncall").into_iter().next()
    })
    .await;
    assert_eq!(
        reminder["alerts"][0]["labels"]["alertname"],
        "IncidentUpdateDue"
    );
    assert_eq!(reminder["alerts"][0]["labels"]["incident"], id.as_str());

    // The broken webhook is tried `attempts` times per delivery, then quarantined.
    eventually("the quarantine", || {
        let tries = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "broken")
            .count();
        (tries >= 2).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while console
        .subscriber_state("webhook", &format!("{hooks}/broken"))
        .await
        != "quarantined"
    {
        assert!(
            Instant::now() < deadline,
            "the broken webhook was not quarantined"
        );
        // Another update gives it another delivery to fail.
        console
            .admin(
                reqwest::Method::POST,
                &format!("/api/admin/incidents/{id}/updates"),
                Some(json!({"status": "identified"})),
            )
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let broken_tries = || {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "broken")
            .count()
    };
    let quarantined_at = broken_tries();

    // Restart, then more updates.
    let settled = |n: usize| {
        let hooks_seen = bodies(&received, "hook").len();
        (hooks_seen == n).then_some(())
    };
    let updates_so_far = console
        .admin(reqwest::Method::GET, "/api/v2/incidents.json", None)
        .await["incidents"][0]["incident_updates"]
        .as_array()
        .unwrap()
        .len();
    eventually("every update before the restart", || {
        settled(updates_so_far)
    })
    .await;
    drop(up);
    let (_up, base) = start(dir.path(), &hooks);
    let console = Console {
        http: console.http,
        base,
    };
    wait_ready(&console.http, &format!("{}/status", console.base)).await;
    console
        .admin(
            reqwest::Method::POST,
            &format!("/api/admin/incidents/{id}/updates"),
            Some(json!({"status": "monitoring", "components": {"api": "operational"}})),
        )
        .await;
    console
        .admin(
            reqwest::Method::POST,
            &format!("/api/admin/incidents/{id}/resolve"),
            Some(json!({})),
        )
        .await;
    let total = updates_so_far + 2;
    eventually("every update after the restart", || settled(total)).await;
    let expected_emails = 1 + total;
    eventually("every email", || {
        (smtp.messages().len() == expected_emails).then_some(())
    })
    .await;
    // A little longer: nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Exactly once: one webhook and one email per update, none repeated.
    let hook_updates: Vec<String> = bodies(&received, "hook")
        .iter()
        .map(|(h, p)| {
            format!(
                "{}:{}",
                h["x-warden-delivery"].to_str().unwrap(),
                p["incident"]["incident_updates"][0]["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(hook_updates.len(), total, "{hook_updates:?}");
    assert_eq!(
        hook_updates.iter().collect::<BTreeSet<_>>().len(),
        total,
        "{hook_updates:?}"
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), expected_emails);
    let ids: BTreeSet<String> = messages
        .iter()
        .filter_map(|(h, _)| {
            h.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), expected_emails, "{ids:?}");
    assert!(
        messages
            .last()
            .unwrap()
            .0
            .contains("Errors on the API: Resolved")
    );
    // The authentication-only webhook heard nothing of an API incident; the
    // quarantined one was not tried again.
    assert!(bodies(&received, "auth-only").is_empty());
    assert_eq!(broken_tries(), quarantined_at);

    // One-click unsubscribe (the link of the last email: the console moved to
    // another port on restart): nothing more by email; webhooks still hear.
    let unsubscribe = link(&messages.last().unwrap().1, "unsubscribe");
    let gone = console.http.post(&unsubscribe).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::OK);
    console
        .admin(
            reqwest::Method::POST,
            "/api/admin/incidents",
            Some(json!({"name": "Slow sign-in", "components": {"authentication": "degraded_performance"}})),
        )
        .await;
    eventually("the auth-only webhook", || {
        (!bodies(&received, "auth-only").is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), expected_emails);

    // Anti-abuse: a filled hidden field changes nothing; a client gets a few
    // sign-ups an hour (this one has used one), then a 429.
    let (status, _) = console
        .sign_up("email=robot%40example.com&website=http%3A%2F%2Fspam")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        console.subscriber_state("email", "robot@example.com").await,
        ""
    );
    let (status, page) = console.sign_up("email=not-an-address").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    let mut codes = Vec::new();
    for n in 0..5 {
        codes.push(
            console
                .sign_up(&format!("email=user{n}%40example.com"))
                .await
                .0
                .as_u16(),
        );
    }
    // Four an hour: the bad address used one (every attempt counts; the count is
    // in memory, so the restart forgot Ann's).
    assert_eq!(codes, [200, 200, 200, 429, 429]);
}

/// `warden status subscriber ARGS` against the console at `base`, with `env` (the
/// admin token only when given there).
fn subscriber_cli(
    base: &str,
    data: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "subscriber"])
        .args(args)
        .args(["--console", base.trim_start_matches("http://")])
        .arg("--data-dir")
        .arg(data)
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_ADMIN_TOKEN")
        .env_remove("WARDEN_WEBHOOK_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Stdout of a command that must succeed.
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

/// Stderr of a command that must fail with exit code 2.
fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_cli_manages_webhooks_and_unconfirmed_sign_ups_expire() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let (hooks, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("status.toml"),
        format!(
            "[subscribers]\nattempts = 1\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\n\
             quarantine_after = 1\nconfirm_within = \"5s\"\n\n\
             [subscribers.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
             from = \"Warden status <status@example.com>\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let (_up, base) = start(dir.path(), &hooks);
    let console = Console {
        http: reqwest::Client::new(),
        base,
    };
    wait_ready(&console.http, &format!("{}/status", console.base)).await;
    let admin = [("WARDEN_ADMIN_TOKEN", TOKEN)];
    let cli = |env: &[(&str, &str)], args: &[&str]| subscriber_cli(&console.base, &data, env, args);
    let list = || -> Vec<Value> {
        serde_json::from_str::<Value>(&ok(&cli(&admin, &["list", "--json"])))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };

    assert_eq!(ok(&cli(&admin, &["list"])), "no subscribers\n");
    // No token, or a wrong one: refused, saying how to give it.
    let stderr = refused(&cli(&[], &["list"]));
    assert!(
        stderr.contains("no admin token") && stderr.contains("WARDEN_ADMIN_TOKEN"),
        "{stderr}"
    );
    let stderr = refused(&cli(&[("WARDEN_ADMIN_TOKEN", "wrong")], &["list"]));
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("admin token"),
        "{stderr}"
    );

    // Webhooks: the secret from the environment or the flag, never printed.
    let secret = "a-shared-secret-of-some-length";
    let hook_url = format!("{hooks}/hook");
    let output = ok(&cli(
        &[admin[0], ("WARDEN_WEBHOOK_SECRET", secret)],
        &["add-webhook", &hook_url, "--component", "api", "--json"],
    ));
    assert!(
        !output.contains(secret) && !output.contains("\"secret\""),
        "{output}"
    );
    let hook: Value = serde_json::from_str(&output).unwrap();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&hook["kind"], &hook["address"], &hook["state"]),
        (&json!("webhook"), &json!(hook_url), &json!("active"))
    );
    assert_eq!(hook["components"], json!(["api"]));
    let broken_url = format!("{hooks}/broken");
    let output = ok(&cli(
        &admin,
        &[
            "add-webhook",
            &broken_url,
            "--secret",
            "another-secret-of-some-length",
        ],
    ));
    assert!(
        output.contains(" added: webhook ") && output.contains(&broken_url),
        "{output}"
    );
    assert!(!output.contains("another-secret"), "{output}");
    let broken_id = output.split_whitespace().next().unwrap().to_owned();
    // Bad input is refused and changes nothing.
    let stderr = refused(&cli(
        &admin,
        &["add-webhook", &format!("{hooks}/x"), "--secret", "short"],
    ));
    assert!(
        stderr.contains("at least 16 characters") && !stderr.contains("short"),
        "{stderr}"
    );
    let stderr = refused(&cli(&admin, &["add-webhook", &format!("{hooks}/x")]));
    assert!(stderr.contains("--secret"), "{stderr}");
    let stderr = refused(&cli(
        &admin,
        &["add-webhook", &hook_url, "--secret", secret],
    ));
    assert!(
        stderr.contains("HTTP 409") && stderr.contains("already subscribed"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
    let stderr = refused(&cli(
        &admin,
        &["add-webhook", "ftp://example.com", "--secret", secret],
    ));
    assert!(
        stderr.contains("HTTP 422") && stderr.contains("url"),
        "{stderr}"
    );
    assert_eq!(list().len(), 2);

    // The table: one line each, addresses and components shown, secrets not.
    let table = ok(&cli(&admin, &["list"]));
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} in {table}"))
            .to_owned()
    };
    assert!(table.starts_with("ID "), "{table}");
    let hook_line = line(&hook_id);
    assert!(
        hook_line.contains("webhook")
            && hook_line.contains("active")
            && hook_line.contains(&hook_url),
        "{hook_line}"
    );
    assert!(hook_line.ends_with(" api"), "{hook_line}");
    assert!(line(&broken_id).ends_with(" all"), "{table}");
    assert!(
        !table.contains(secret) && !table.contains("another-secret"),
        "{table}"
    );

    // Only a quarantined subscriber is reactivated.
    let stderr = refused(&cli(&admin, &["reactivate", &hook_id]));
    assert!(
        stderr.contains("HTTP 409") && stderr.contains("quarantined"),
        "{stderr}"
    );
    console
        .admin(
            reqwest::Method::POST,
            "/api/admin/incidents",
            Some(json!({"name": "Errors on the API", "components": {"api": "partial_outage"}})),
        )
        .await;
    eventually("the webhook", || {
        (!bodies(&received, "hook").is_empty()).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while list()
        .iter()
        .find(|s| s["id"] == broken_id.as_str())
        .unwrap()["state"]
        != "quarantined"
    {
        assert!(
            Instant::now() < deadline,
            "the broken webhook was not quarantined"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table = ok(&cli(&admin, &["list"]));
    assert!(
        table.contains("1 notifications given up on in a row; last error: "),
        "{table}"
    );
    let output = ok(&cli(&admin, &["reactivate", &broken_id]));
    assert!(
        output.contains(&format!(
            "{broken_id} reactivated: webhook {broken_url} (active"
        )),
        "{output}"
    );
    let again = list();
    let broken = again
        .iter()
        .find(|s| s["id"] == broken_id.as_str())
        .unwrap();
    assert_eq!(
        (&broken["state"], &broken["failures"]),
        (&json!("active"), &json!(0))
    );

    // Remove: gone from the list; a second time, a clear 404.
    let output = ok(&cli(&admin, &["remove", &hook_id, "--json"]));
    let removed: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(removed["id"], hook_id.as_str());
    assert!(list().iter().all(|s| s["id"] != hook_id.as_str()));
    let stderr = refused(&cli(&admin, &["remove", &hook_id]));
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("no subscriber"),
        "{stderr}"
    );

    // An email sign-up not confirmed within confirm_within (5 s) expires: the
    // sweep deletes it with an event, and its link confirms nothing.
    let (status, page) = console.sign_up("email=late%40example.com").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, confirmation) = eventually("the confirmation email", || {
        smtp.messages().into_iter().next()
    })
    .await;
    assert!(
        confirmation.contains("The link works for 5s."),
        "{confirmation}"
    );
    let confirm = link(&confirmation, "confirm");
    let pending = list()
        .into_iter()
        .find(|s| s["address"] == "late@example.com")
        .expect("the sign-up, listed with its address");
    assert_eq!(pending["state"], "pending");
    assert!(ok(&cli(&admin, &["list"])).contains("late@example.com"));
    eventually("the expiry", || {
        list()
            .iter()
            .all(|s| s["address"] != "late@example.com")
            .then_some(())
    })
    .await;
    let page = console.http.post(&confirm).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("no longer valid") && page.contains("work for 5s"),
        "{page}"
    );
    assert!(list().iter().all(|s| s["address"] != "late@example.com"));
    let expired = warden_store::Store::open(&data.join("control.db"))
        .unwrap()
        .events(&warden_store::EventFilter {
            kind_prefix: Some("subscriber.expired".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].payload["subscriber_id"], pending["id"]);
    assert!(
        !expired[0].payload.to_string().contains("late@"),
        "ids only in the log"
    );

    // The address signs up again, and this time confirms in time.
    let (status, _) = console.sign_up("email=late%40example.com").await;
    assert_eq!(status, StatusCode::OK);
    let (_, confirmation) = eventually("the second confirmation", || {
        smtp.messages().into_iter().nth(1)
    })
    .await;
    let done = console
        .http
        .post(link(&confirmation, "confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        console.subscriber_state("email", "late@example.com").await,
        "active"
    );
}

/// What a timed receiver got: (path, arrival, headers, payload), in order.
type Arrivals = Arc<Mutex<Vec<(String, Instant, HeaderMap, Value)>>>;

/// An HTTP receiver on loopback that notes when each request arrived: `/flaky`
/// answers 500 to its second request, everything else 200.
async fn timed_receiver() -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{path}",
            axum::routing::post(
                |State(seen): State<Arrivals>,
                 Path(path): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let mut seen = seen.lock().unwrap();
                    let before = seen.iter().filter(|(p, ..)| *p == path).count();
                    let payload = serde_json::from_slice(&body).unwrap();
                    seen.push((path.clone(), Instant::now(), headers, payload));
                    if path == "flaky" && before == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_updates_reaches_webhooks_in_order_each_naming_its_update() {
    let (hooks, arrivals) = timed_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/status.toml"),
        "[subscribers]\nattempts = 3\ninitial_backoff = \"300ms\"\nmax_backoff = \"1s\"\n",
    )
    .unwrap();
    let (_up, base) = start(dir.path(), &hooks);
    let console = Console {
        http: reqwest::Client::new(),
        base,
    };
    wait_ready(&console.http, &format!("{}/status", console.base)).await;
    for path in ["burst", "flaky"] {
        console
            .admin(
                reqwest::Method::POST,
                "/api/admin/subscribers",
                Some(json!({"url": format!("{hooks}/{path}")})),
            )
            .await;
    }

    // An incident and nine more updates, posted as fast as the API takes them.
    let incident = console
        .admin(
            reqwest::Method::POST,
            "/api/admin/incidents",
            Some(json!({"name": "Errors on the API", "components": {"api": "partial_outage"}})),
        )
        .await;
    let id = incident["id"].as_str().unwrap().to_owned();
    let statuses = ["identified", "monitoring", "investigating"];
    for n in 1..10 {
        console
            .admin(
                reqwest::Method::POST,
                &format!("/api/admin/incidents/{id}/updates"),
                Some(json!({"status": statuses[n % 3], "body": format!("Update number {n}.")})),
            )
            .await;
    }
    let listed = console
        .admin(reqwest::Method::GET, "/api/v2/incidents.json", None)
        .await;
    let mut updates: Vec<Value> = listed["incidents"][0]["incident_updates"]
        .as_array()
        .unwrap()
        .clone();
    updates.reverse();
    assert_eq!(updates.len(), 10);
    let of = |path: &str| -> Vec<(Instant, HeaderMap, Value)> {
        arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, at, h, v)| (*at, h.clone(), v.clone()))
            .collect()
    };
    eventually("every update at both webhooks", || {
        (of("burst").len() == 10 && of("flaky").len() == 11).then_some(())
    })
    .await;

    // In order, each naming its own update and showing the incident as that
    // update left it.
    let burst = of("burst");
    for (n, ((_, headers, payload), update)) in burst.iter().zip(&updates).enumerate() {
        assert_eq!(payload["meta"]["update_id"], update["id"], "delivery {n}");
        assert_eq!(headers["x-warden-update"].to_str().unwrap(), update["id"]);
        assert_eq!(payload["update"]["body"], update["body"], "delivery {n}");
        assert_eq!(
            payload["incident"]["status"], update["status"],
            "delivery {n}"
        );
        assert_eq!(
            payload["incident"]["incident_updates"][0]["id"], update["id"],
            "delivery {n}"
        );
    }
    // Within seconds, not one a second: ten deliveries paced a second apart take
    // nine seconds from the first to the last.
    let spread = burst[9].0 - burst[0].0;
    assert!(
        spread < Duration::from_secs(5),
        "the burst took {spread:?} to arrive"
    );

    // The flaky receiver failed the second update once: its retry names the same
    // update, with the incident as of then, and the updates after it waited.
    let flaky = of("flaky");
    let named: Vec<&Value> = flaky
        .iter()
        .map(|(_, _, p)| &p["meta"]["update_id"])
        .collect();
    let mut expected: Vec<&Value> = updates.iter().map(|u| &u["id"]).collect();
    expected.insert(2, &updates[1]["id"]);
    assert_eq!(named, expected);
    let (failed, retried) = (&flaky[1], &flaky[2]);
    assert_eq!(
        failed.1["x-warden-delivery"],
        retried.1["x-warden-delivery"]
    );
    assert_eq!(retried.2["incident"]["status"], updates[1]["status"]);
    assert_eq!(retried.2["update"]["body"], "Update number 1.");
    assert_eq!(
        retried.2["incident"]["incident_updates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
