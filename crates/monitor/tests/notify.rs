//! Alert notifications delivered to real receivers on loopback: an axum HTTP server
//! that checks signatures like a webhook receiver would, a Slack-compatible endpoint,
//! and a real SMTP server (aiosmtpd, a child process writing to a maildir).
//!
//! aiosmtpd comes from PyPI; `scripts/test` installs it into `target/test-venv`.
//! Without it the email test fails, unless WARDEN_TEST_ALLOW_SKIP=1 is set outside
//! CI, in which case it is skipped with a note.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod smtp;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use smtp::SmtpServer;
use tokio::sync::mpsc;
use warden_monitor::notify::{
    AlertStatus, ChannelConfig, Delivery, DeliveryOutcome, Dispatcher, Notification, RetryPolicy,
    SIGNATURE_HEADER, signature_header, verify_signature,
};

const SECRET: &str = "whsec-test-5e6f";
const FINGERPRINT: &str = "MemoryLeak/127.0.0.1:9001";
const SUMMARY: &str = "memory leak in release v2 on 127.0.0.1:9001: heap +14.2 MB/min, \
                       exhausts the 2.0 GiB limit in 1h 12m";
/// 2024-05-01T13:00:00Z
const STARTS_AT_MS: i64 = 1_714_568_400_000;
const TOLERANCE: Duration = Duration::from_secs(300);

fn leak(status: AlertStatus) -> Notification {
    Notification {
        fingerprint: FINGERPRINT.to_owned(),
        status,
        alert: "MemoryLeak".to_owned(),
        severity: "critical".to_owned(),
        summary: SUMMARY.to_owned(),
        description: "The heap floor of 127.0.0.1:9001 grew steadily for 10 minutes \
                      since release v2 was deployed."
            .to_owned(),
        labels: BTreeMap::from([
            ("instance".to_owned(), "127.0.0.1:9001".to_owned()),
            ("release".to_owned(), "v2".to_owned()),
            (
                "evidence".to_owned(),
                "slope 14.2 MB/min, r2 0.98".to_owned(),
            ),
        ]),
        starts_at_ms: STARTS_AT_MS,
        ends_at_ms: (status == AlertStatus::Resolved).then_some(STARTS_AT_MS + 600_000),
        dashboard_url: Some("http://127.0.0.1:8081/dashboard?release=v2".to_owned()),
    }
}

/// Retries fast enough for a test.
fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

fn webhook(name: &str, url: &str) -> ChannelConfig {
    ChannelConfig::Webhook {
        name: name.to_owned(),
        url: url.to_owned(),
        secret: Some(SECRET.to_owned()),
    }
}

/// A dispatcher whose delivery records arrive on the returned channel.
fn dispatcher(
    channels: Vec<ChannelConfig>,
    retry: RetryPolicy,
    repeat_interval: Duration,
) -> (Dispatcher, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Arc::new(move |d: Delivery| {
        let _ = tx.send(d);
    });
    let d = Dispatcher::new(channels, retry, repeat_interval, sink).expect("valid config");
    (d, rx)
}

/// Waits for every queued notification to be done, then returns the records so far.
async fn settle(d: &Dispatcher, rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Vec<Delivery> {
    tokio::time::timeout(Duration::from_secs(20), d.idle())
        .await
        .expect("deliveries finish");
    let mut out = Vec::new();
    while let Ok(delivery) = rx.try_recv() {
        out.push(delivery);
    }
    out
}

fn summary_of(
    deliveries: &[Delivery],
) -> Vec<(String, AlertStatus, u32, &'static str, Option<u16>)> {
    deliveries
        .iter()
        .map(|d| {
            let outcome = match d.outcome {
                DeliveryOutcome::Delivered => "delivered",
                DeliveryOutcome::Failed { .. } => "failed",
                DeliveryOutcome::Suppressed { .. } => "suppressed",
            };
            (
                d.notifier.clone(),
                d.status,
                d.attempt,
                outcome,
                d.http_status,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// An HTTP receiver on loopback.

#[derive(Clone, Copy)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
}

const fn reply(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
    }
}

struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
    signature_ok: bool,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct ReceiverLog {
    replies: VecDeque<Reply>,
    requests: Vec<Received>,
}

/// Answers each POST with the next scripted reply (200 when the script runs out),
/// after checking its signature like a webhook receiver would: a request whose
/// signature does not verify gets 401.
struct Receiver {
    url: String,
    log: Arc<Mutex<ReceiverLog>>,
}

impl Receiver {
    async fn start(replies: &[Reply], check_signature: bool) -> Self {
        let log = Arc::new(Mutex::new(ReceiverLog {
            replies: replies.iter().copied().collect(),
            requests: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state((Arc::clone(&log), check_signature));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            log,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&[Received]) -> T) -> T {
        f(&self.log.lock().unwrap().requests)
    }
}

async fn receive(
    State((log, check_signature)): State<(Arc<Mutex<ReceiverLog>>, bool)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature_ok = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| verify_signature(SECRET, h, &body, SystemTime::now(), TOLERANCE));
    let mut log = log.lock().unwrap();
    let reply = log.replies.pop_front().unwrap_or(reply(200));
    log.requests.push(Received {
        at: Instant::now(),
        headers,
        body,
        signature_ok,
    });
    if check_signature && !signature_ok {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    match reply.retry_after {
        Some(after) => (status, [("retry-after", after)], "try later").into_response(),
        None => (status, "ok").into_response(),
    }
}

/// An address where nothing listens.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------
// Webhooks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_sends_signed_alertmanager_json() {
    let receiver = Receiver::start(&[], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    assert_eq!(
        summary_of(&deliveries),
        [(
            "status-page".into(),
            AlertStatus::Firing,
            1,
            "delivered",
            Some(200)
        )]
    );
    assert_eq!(deliveries[0].fingerprint, FINGERPRINT);

    let (body, headers) = receiver.with(|r| {
        assert_eq!(r.len(), 1);
        assert!(r[0].signature_ok, "the signature verifies");
        (r[0].body.clone(), r[0].headers.clone())
    });
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("warden/")
    );

    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["receiver"], "status-page");
    assert!(payload["groupKey"].as_str().unwrap().contains(FINGERPRINT));
    assert_eq!(payload["truncatedAlerts"], 0);
    assert_eq!(payload["groupLabels"], json!({ "alertname": "MemoryLeak" }));
    let labels = json!({
        "alertname": "MemoryLeak",
        "severity": "critical",
        "instance": "127.0.0.1:9001",
        "release": "v2",
        "evidence": "slope 14.2 MB/min, r2 0.98",
    });
    assert_eq!(payload["commonLabels"], labels);
    assert_eq!(payload["commonAnnotations"]["summary"], SUMMARY);
    assert_eq!(
        payload["externalURL"],
        "http://127.0.0.1:8081/dashboard?release=v2"
    );
    let alerts = payload["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"], labels);
    assert_eq!(alert["annotations"]["summary"], SUMMARY);
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .starts_with("The heap floor")
    );
    assert_eq!(alert["startsAt"], "2024-05-01T13:00:00Z");
    assert_eq!(
        alert["endsAt"], "0001-01-01T00:00:00Z",
        "Alertmanager's 'not ended'"
    );
    assert_eq!(alert["fingerprint"], FINGERPRINT);
    assert_eq!(
        alert["generatorURL"],
        "http://127.0.0.1:8081/dashboard?release=v2"
    );

    // What a receiver must reject.
    let header = headers[SIGNATURE_HEADER].to_str().unwrap();
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    let now = SystemTime::now();
    assert!(verify_signature(SECRET, header, &body, now, TOLERANCE));
    let tampered = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("critical", "warning");
    assert!(
        !verify_signature(SECRET, header, tampered.as_bytes(), now, TOLERANCE),
        "a tampered body fails"
    );
    assert!(
        !verify_signature("another-secret", header, &body, now, TOLERANCE),
        "another secret fails"
    );
    let later = now + Duration::from_secs(3600);
    assert!(
        !verify_signature(SECRET, header, &body, later, TOLERANCE),
        "a replay an hour later fails"
    );
    let t = header.split(',').next().unwrap();
    assert!(
        !verify_signature(SECRET, t, &body, now, TOLERANCE),
        "no v1, no trust"
    );
    assert!(!verify_signature(SECRET, "", &body, now, TOLERANCE));
    assert!(!verify_signature(
        SECRET,
        "t=abc,v1=zz",
        &body,
        now,
        TOLERANCE
    ));
}

#[test]
fn signatures_allow_several_v1_for_secret_rotation() {
    let body = br#"{"status":"firing"}"#;
    let at = SystemTime::now();
    let old = signature_header("old-secret", body, at);
    let new = signature_header("new-secret", body, at);
    let v1_new = new.split_once(",v1=").unwrap().1;
    let both = format!("{old},v1={v1_new}");
    assert!(verify_signature("old-secret", &both, body, at, TOLERANCE));
    assert!(verify_signature("new-secret", &both, body, at, TOLERANCE));
    assert!(!verify_signature(
        "third-secret",
        &both,
        body,
        at,
        TOLERANCE
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered() {
    let receiver = Receiver::start(&[reply(503), reply(503), reply(200)], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(5),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    let name = || "status-page".to_owned();
    assert_eq!(
        summary_of(&deliveries),
        [
            (name(), AlertStatus::Firing, 1, "failed", Some(503)),
            (name(), AlertStatus::Firing, 2, "failed", Some(503)),
            (name(), AlertStatus::Firing, 3, "delivered", Some(200)),
        ]
    );
    let DeliveryOutcome::Failed { error } = &deliveries[0].outcome else {
        unreachable!()
    };
    assert!(error.contains("503"), "{error}");
    assert!(deliveries.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    receiver.with(|r| {
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|r| r.signature_ok), "each retry is signed");
        assert!(r[1].at - r[0].at >= Duration::from_millis(10), "backed off");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let receiver = Receiver::start(&[reply(400), reply(200)], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(5),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    assert_eq!(
        summary_of(&deliveries),
        [(
            "status-page".into(),
            AlertStatus::Firing,
            1,
            "failed",
            Some(400)
        )]
    );
    receiver.with(|r| assert_eq!(r.len(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let receiver = Receiver::start(
        &[Reply {
            status: 429,
            retry_after: Some("1"),
        }],
        true,
    )
    .await;
    let retry = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
    };
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        retry,
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    let name = || "status-page".to_owned();
    assert_eq!(
        summary_of(&deliveries),
        [
            (name(), AlertStatus::Firing, 1, "failed", Some(429)),
            (name(), AlertStatus::Firing, 2, "delivered", Some(200)),
        ]
    );
    receiver.with(|r| {
        let waited = r[1].at - r[0].at;
        assert!(
            waited >= Duration::from_millis(950),
            "waited {waited:?}, asked 1 s"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_receivers_are_retried_then_given_up() {
    let nowhere = closed_port();
    let (d, mut rx) = dispatcher(
        vec![
            webhook("status-page", &format!("http://{nowhere}/hook")),
            ChannelConfig::Email {
                name: "on-call".into(),
                smtp_host: "127.0.0.1".into(),
                smtp_port: nowhere.port(),
                tls: warden_monitor::notify::SmtpTls::None,
                username: None,
                password: None,
                from: "warden@example.com".into(),
                to: vec!["oncall@example.com".into()],
            },
        ],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    for notifier in ["status-page", "on-call"] {
        let mine: Vec<_> = deliveries
            .iter()
            .filter(|d| d.notifier == notifier)
            .collect();
        let attempts: Vec<u32> = mine.iter().map(|d| d.attempt).collect();
        assert_eq!(attempts, [1, 2, 3], "{notifier}");
        for d in mine {
            let DeliveryOutcome::Failed { error } = &d.outcome else {
                panic!("{notifier}: {d:?}")
            };
            assert!(!error.is_empty());
            assert_eq!(d.http_status, None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_notifier_does_not_hold_up_another() {
    let receiver = Receiver::start(&[], true).await;
    let retry = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(400),
        max_backoff: Duration::from_millis(800),
    };
    let (d, mut rx) = dispatcher(
        vec![
            webhook("broken", &format!("http://{}/hook", closed_port())),
            webhook("status-page", &receiver.url),
        ],
        retry,
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let mut broken_attempts = 0;
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if d.notifier == "broken" {
            broken_attempts += 1;
        } else {
            assert_eq!(d.outcome, DeliveryOutcome::Delivered);
            break;
        }
    }
    assert!(
        broken_attempts < 3,
        "delivered while the other still retries"
    );
    let rest = settle(&d, &mut rx).await;
    assert_eq!(broken_attempts + rest.len(), 3);
}

// ---------------------------------------------------------------------------------
// De-duplication and order

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_status_within_repeat_interval_is_suppressed_and_resolution_goes_out() {
    let receiver = Receiver::start(&[], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    settle(&d, &mut rx).await;
    d.dispatch(leak(AlertStatus::Firing));
    let again = settle(&d, &mut rx).await;
    assert_eq!(
        summary_of(&again),
        [(
            "status-page".into(),
            AlertStatus::Firing,
            0,
            "suppressed",
            None
        )]
    );
    let DeliveryOutcome::Suppressed { reason } = &again[0].outcome else {
        unreachable!()
    };
    assert!(reason.contains("repeat interval"), "{reason}");

    d.dispatch(leak(AlertStatus::Resolved));
    let resolved = settle(&d, &mut rx).await;
    assert_eq!(
        summary_of(&resolved),
        [(
            "status-page".into(),
            AlertStatus::Resolved,
            1,
            "delivered",
            Some(200)
        )]
    );
    receiver.with(|r| {
        let statuses: Vec<Value> = r.iter().map(|r| r.json()["status"].clone()).collect();
        assert_eq!(statuses, ["firing", "resolved"]);
        let resolved = r[1].json();
        assert_eq!(resolved["alerts"][0]["endsAt"], "2024-05-01T13:10:00Z");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_status_after_repeat_interval_is_sent_again() {
    let receiver = Receiver::start(&[], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(3),
        Duration::from_millis(200),
    );
    d.dispatch(leak(AlertStatus::Firing));
    settle(&d, &mut rx).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.dispatch(leak(AlertStatus::Firing));
    let again = settle(&d, &mut rx).await;
    assert_eq!(again[0].outcome, DeliveryOutcome::Delivered);
    receiver.with(|r| assert_eq!(r.len(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_never_overtakes_its_firing() {
    // The firing needs two tries; the resolution is dispatched meanwhile.
    let receiver = Receiver::start(&[reply(503), reply(200), reply(200)], true).await;
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    d.dispatch(leak(AlertStatus::Resolved));
    let deliveries = settle(&d, &mut rx).await;
    let name = || "status-page".to_owned();
    assert_eq!(
        summary_of(&deliveries),
        [
            (name(), AlertStatus::Firing, 1, "failed", Some(503)),
            (name(), AlertStatus::Firing, 2, "delivered", Some(200)),
            (name(), AlertStatus::Resolved, 1, "delivered", Some(200)),
        ]
    );
    receiver.with(|r| {
        let statuses: Vec<Value> = r.iter().map(|r| r.json()["status"].clone()).collect();
        assert_eq!(statuses, ["firing", "firing", "resolved"]);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_firings_queued_behind_a_retry_collapse_into_one() {
    let receiver = Receiver::start(&[reply(503), reply(200), reply(200)], true).await;
    let retry = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(200),
    };
    let (d, mut rx) = dispatcher(
        vec![webhook("status-page", &receiver.url)],
        retry,
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    // Let the first attempt fail, then keep re-dispatching while it backs off.
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.http_status, Some(503));
    for _ in 0..5 {
        d.dispatch(leak(AlertStatus::Firing));
    }
    let rest = settle(&d, &mut rx).await;
    let outcomes: Vec<_> = summary_of(&rest).into_iter().map(|s| (s.2, s.3)).collect();
    // Four are replaced by the newest; the newest is a repeat of what was delivered.
    assert_eq!(
        outcomes,
        [
            (0, "suppressed"),
            (0, "suppressed"),
            (0, "suppressed"),
            (0, "suppressed"),
            (2, "delivered"),
            (0, "suppressed"),
        ]
    );
    receiver.with(|r| assert_eq!(r.len(), 2));
}

// ---------------------------------------------------------------------------------
// Slack

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_text_line_and_mrkdwn_blocks() {
    let receiver = Receiver::start(&[], false).await;
    let (d, mut rx) = dispatcher(
        vec![ChannelConfig::Slack {
            name: "ops-chat".into(),
            url: receiver.url.clone(),
        }],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    let mut n = leak(AlertStatus::Firing);
    n.labels.insert("note".into(), "heap <b> & co".into());
    d.dispatch(n);
    let deliveries = settle(&d, &mut rx).await;
    assert_eq!(deliveries[0].outcome, DeliveryOutcome::Delivered);

    let (message, headers) = receiver.with(|r| (r[0].json(), r[0].headers.clone()));
    assert!(headers.get(SIGNATURE_HEADER).is_none());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        message["text"],
        format!("[FIRING] MemoryLeak (critical): {SUMMARY}")
    );
    let blocks = message["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "header", "section", "section", "section", "section", "context"
        ]
    );
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "[FIRING] MemoryLeak");
    let mrkdwn: Vec<String> = blocks
        .iter()
        .flat_map(|b| {
            let mut texts = vec![b["text"]["text"].as_str().unwrap_or_default().to_owned()];
            for f in b["fields"].as_array().into_iter().flatten() {
                assert_eq!(f["type"], "mrkdwn");
                texts.push(f["text"].as_str().unwrap().to_owned());
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                texts.push(e["text"].as_str().unwrap().to_owned());
            }
            texts
        })
        .collect();
    let all = mrkdwn.join("\n");
    assert!(all.contains(&format!("*{SUMMARY}*")), "{all}");
    assert!(all.contains("*Severity*\ncritical"), "{all}");
    assert!(all.contains("*Status*\nFIRING"), "{all}");
    assert!(all.contains("*Started*\n2024-05-01 13:00:00 UTC"), "{all}");
    assert!(all.contains("• `instance`: 127.0.0.1:9001"), "{all}");
    assert!(
        all.contains("• `note`: heap &lt;b&gt; &amp; co"),
        "escaped: {all}"
    );
    assert!(
        all.contains("<http://127.0.0.1:8081/dashboard?release=v2|Open the dashboard>"),
        "{all}"
    );
    assert!(
        all.contains(&format!("Fingerprint `{FINGERPRINT}`")),
        "{all}"
    );
}

// ---------------------------------------------------------------------------------
// Email through a real SMTP server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_arrives_through_a_real_smtp_server() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let (d, mut rx) = dispatcher(
        vec![ChannelConfig::Email {
            name: "on-call".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: smtp.port,
            tls: warden_monitor::notify::SmtpTls::None,
            username: None,
            password: None,
            from: "Warden <warden@example.com>".into(),
            to: vec!["oncall@example.com".into(), "sre@example.com".into()],
        }],
        quick_retries(3),
        Duration::from_secs(3600),
    );
    d.dispatch(leak(AlertStatus::Firing));
    let deliveries = settle(&d, &mut rx).await;
    assert_eq!(
        summary_of(&deliveries),
        [("on-call".into(), AlertStatus::Firing, 1, "delivered", None)]
    );
    d.dispatch(leak(AlertStatus::Resolved));
    settle(&d, &mut rx).await;

    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let (headers, body) = messages
        .iter()
        .find(|(headers, _)| headers.contains("Subject: [FIRING]"))
        .unwrap_or_else(|| panic!("no firing message in {messages:#?}"));
    for header in [
        format!("Subject: [FIRING] MemoryLeak: {SUMMARY}\n"),
        "From: Warden <warden@example.com>\n".to_owned(),
        "To: oncall@example.com, sre@example.com\n".to_owned(),
        "Content-Type: text/plain; charset=utf-8\n".to_owned(),
        "X-MailFrom: warden@example.com\n".to_owned(),
        "X-RcptTo: oncall@example.com, sre@example.com\n".to_owned(),
        "Message-ID: <".to_owned(),
        "Date: ".to_owned(),
    ] {
        assert!(headers.contains(&header), "{header:?} not in\n{headers}");
    }
    for line in [
        "FIRING: MemoryLeak (critical)\n",
        &format!("\n{SUMMARY}\n"),
        "\nThe heap floor of 127.0.0.1:9001 grew steadily for 10 minutes since release v2 was deployed.\n",
        "\nLabels:\n  evidence: slope 14.2 MB/min, r2 0.98\n  instance: 127.0.0.1:9001\n  release: v2\n",
        "\nStarted: 2024-05-01 13:00:00 UTC\n",
        "\nDashboard: http://127.0.0.1:8081/dashboard?release=v2\n",
        &format!("\nFingerprint: {FINGERPRINT}\n"),
    ] {
        assert!(body.contains(line), "{line:?} not in\n{body}");
    }
    assert!(!body.contains("Ended:"), "{body}");
    let (headers, resolved) = messages
        .iter()
        .find(|(headers, _)| headers.contains("Subject: [RESOLVED] MemoryLeak: "))
        .unwrap_or_else(|| panic!("no resolved message in {messages:#?}"));
    assert!(
        resolved.starts_with("RESOLVED: MemoryLeak (critical)\n"),
        "{headers}{resolved}"
    );
    assert!(
        resolved.contains("\nEnded: 2024-05-01 13:10:00 UTC\n"),
        "{resolved}"
    );
}

// ---------------------------------------------------------------------------------
// Configuration and secrets

#[derive(serde::Deserialize)]
struct Config {
    notifiers: Vec<ChannelConfig>,
}

#[test]
fn notifiers_are_read_from_toml() {
    let config: Config = toml::from_str(
        r#"
        [[notifiers]]
        type = "webhook"
        name = "status-page"
        url = "https://status.example.com/hooks/alerts"
        secret = "s3cret"

        [[notifiers]]
        type = "slack"
        name = "ops-chat"
        url = "https://hooks.slack.com/services/T000/B000/XXXX"

        [[notifiers]]
        type = "email"
        name = "on-call"
        smtp_host = "smtp.example.com"
        smtp_port = 587
        tls = "starttls"
        username = "warden"
        password = "hunter2"
        from = "Warden <warden@example.com>"
        to = ["oncall@example.com"]
        "#,
    )
    .unwrap();
    let names: Vec<&str> = config.notifiers.iter().map(ChannelConfig::name).collect();
    assert_eq!(names, ["status-page", "ops-chat", "on-call"]);
    let sink = Arc::new(|_: Delivery| {});
    Dispatcher::new(
        config.notifiers,
        RetryPolicy::default(),
        Duration::from_secs(3600),
        sink,
    )
    .expect("a valid config");

    let typo = toml::from_str::<Config>(
        r#"
        [[notifiers]]
        type = "webhook"
        name = "status-page"
        url = "https://status.example.com/hooks/alerts"
        secert = "s3cret"
        "#,
    )
    .err()
    .expect("an unknown key is an error");
    assert!(typo.to_string().contains("secert"), "{typo}");

    let unknown_type = toml::from_str::<Config>(
        r#"
        [[notifiers]]
        type = "pager"
        name = "x"
        "#,
    )
    .err()
    .expect("an unknown type is an error");
    assert!(unknown_type.to_string().contains("pager"), "{unknown_type}");
}

fn config_error(channels: Vec<ChannelConfig>) -> String {
    let sink = Arc::new(|_: Delivery| {});
    let err = Dispatcher::new(
        channels,
        RetryPolicy::default(),
        Duration::from_secs(60),
        sink,
    )
    .expect_err("an invalid config");
    format!("{err:#}")
}

fn email(name: &str) -> ChannelConfig {
    ChannelConfig::Email {
        name: name.into(),
        smtp_host: "smtp.example.com".into(),
        smtp_port: 587,
        tls: warden_monitor::notify::SmtpTls::Starttls,
        username: Some("warden".into()),
        password: Some("hunter2-pass".into()),
        from: "warden@example.com".into(),
        to: vec!["oncall@example.com".into()],
    }
}

#[test]
fn config_errors_name_the_notifier_and_the_field() {
    let err = config_error(vec![webhook("status-page", "status.example.com/hook")]);
    assert!(
        err.contains(r#"notifier "status-page""#) && err.contains("`url`"),
        "{err}"
    );

    let err = config_error(vec![webhook("a", "ftp://example.com/hook")]);
    assert!(err.contains("`url`") && err.contains("http"), "{err}");

    let err = config_error(vec![ChannelConfig::Webhook {
        name: "status-page".into(),
        url: "https://example.com/hook".into(),
        secret: Some(String::new()),
    }]);
    assert!(err.contains("`secret`"), "{err}");

    let err = config_error(vec![
        webhook("same", "https://example.com/a"),
        webhook("same", "https://example.com/b"),
    ]);
    assert!(
        err.contains(r#"notifier "same""#) && err.contains("unique"),
        "{err}"
    );

    let err = config_error(vec![webhook(" ", "https://example.com/a")]);
    assert!(
        err.contains("notifiers[0]") && err.contains("`name`"),
        "{err}"
    );

    let mut bad_to = email("on-call");
    if let ChannelConfig::Email { to, .. } = &mut bad_to {
        to.push("not an address".into());
    }
    let err = config_error(vec![bad_to]);
    assert!(
        err.contains(r#"notifier "on-call""#) && err.contains("`to[1]`"),
        "{err}"
    );

    let mut no_recipients = email("on-call");
    if let ChannelConfig::Email { to, .. } = &mut no_recipients {
        to.clear();
    }
    assert!(config_error(vec![no_recipients]).contains("`to`"));

    let mut clear_text = email("on-call");
    if let ChannelConfig::Email { tls, .. } = &mut clear_text {
        *tls = warden_monitor::notify::SmtpTls::None;
    }
    let err = config_error(vec![clear_text]);
    assert!(
        err.contains("`tls`") && !err.contains("hunter2-pass"),
        "{err}"
    );

    let mut half_credentials = email("on-call");
    if let ChannelConfig::Email { password, .. } = &mut half_credentials {
        *password = None;
    }
    assert!(config_error(vec![half_credentials]).contains("`password`"));

    let sink = Arc::new(|_: Delivery| {});
    let no_attempts = RetryPolicy {
        attempts: 0,
        ..RetryPolicy::default()
    };
    let err = Dispatcher::new(vec![], no_attempts, Duration::from_secs(60), sink)
        .expect_err("zero attempts is invalid");
    assert!(err.to_string().contains("`attempts`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_debug_output_and_errors() {
    let slack_token = "XOXB-TOKEN-9f8e7d";
    let nowhere = closed_port();
    let configs = vec![
        webhook(
            "status-page",
            &format!("http://user:pa55word@{nowhere}/hook?token=q-token"),
        ),
        ChannelConfig::Slack {
            name: "ops-chat".into(),
            url: format!("http://{nowhere}/services/T000/B000/{slack_token}"),
        },
        email("on-call"),
    ];
    let secrets = [SECRET, slack_token, "hunter2-pass", "pa55word", "q-token"];
    let debug = format!("{configs:?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(
        debug.contains("status-page") && debug.contains("<redacted>"),
        "{debug}"
    );

    let (d, mut rx) = dispatcher(configs, quick_retries(1), Duration::from_secs(3600));
    let debug = format!("{d:?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    let mut n = leak(AlertStatus::Firing);
    n.fingerprint = "secrets".into();
    d.dispatch(n);
    let deliveries = settle(&d, &mut rx).await;
    let records = serde_json::to_string(&deliveries).unwrap();
    assert!(records.contains("failed"), "{records}");
    for secret in secrets {
        assert!(!records.contains(secret), "{secret} in {records}");
    }

    let err = config_error(vec![ChannelConfig::Slack {
        name: "ops-chat".into(),
        url: format!("hooks.slack.com/services/T000/B000/{slack_token}"),
    }]);
    assert!(err.contains("`url`") && !err.contains(slack_token), "{err}");
}

#[test]
fn a_delivery_record_serializes_flat() {
    let delivery = Delivery {
        notifier: "status-page".into(),
        fingerprint: FINGERPRINT.into(),
        status: AlertStatus::Firing,
        attempt: 2,
        outcome: DeliveryOutcome::Failed {
            error: "HTTP 503 Service Unavailable".into(),
        },
        at_ms: STARTS_AT_MS,
        http_status: Some(503),
    };
    let value = serde_json::to_value(&delivery).unwrap();
    assert_eq!(
        value,
        json!({
            "notifier": "status-page",
            "fingerprint": FINGERPRINT,
            "status": "firing",
            "attempt": 2,
            "outcome": "failed",
            "error": "HTTP 503 Service Unavailable",
            "at_ms": STARTS_AT_MS,
            "http_status": 503,
        })
    );
    assert_eq!(serde_json::from_value::<Delivery>(value).unwrap(), delivery);
}
