//! The status routes through the real router: Statuspage's JSON checked field by
//! field against fixtures written from its documented fields, user text escaped
//! on the page, every write authenticated, bad requests refused with a problem
//! that says what to fix, and ETag/304.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use warden_status::config::ComponentConfig;
use warden_status::http::{Document, render};
use warden_status::incidents::{OpenIncident, UpdateIncident};
use warden_status::maintenance::ScheduleMaintenance;
use warden_status::statuspage::{Links, Snapshot};
use warden_status::{ComponentStatus, IncidentStatus, StatusConfig};
use warden_store::Store;

const TOKEN: &str = "test-admin-token";
const XSS: &str = "<script>alert('x')</script><img src=x onerror=alert(1)>";

fn config() -> StatusConfig {
    let mut config = StatusConfig::default();
    config.page.url = Some("https://status.example.com".into());
    config.components[0].group = Some("Backend".into());
    config.components.push(ComponentConfig {
        id: Some("quiet".into()),
        name: "Quiet".into(),
        description: None,
        group: None,
        showcase: false,
        only_show_if_degraded: true,
    });
    config
}

/// A store with a grouped component, an open incident that changed a component,
/// and a maintenance to come.
fn populated() -> (Store, StatusConfig) {
    let store = Store::in_memory().unwrap();
    let config = config();
    let now = warden_store::now_ms();
    warden_status::components::sync(&store, &config, now - 1000).unwrap();
    let incident = warden_status::incidents::open(
        &store,
        &config,
        &OpenIncident {
            name: "Elevated API errors".into(),
            components: BTreeMap::from([("api".into(), ComponentStatus::PartialOutage)]),
            ..OpenIncident::default()
        },
        now - 500,
    )
    .unwrap();
    warden_status::incidents::update(
        &store,
        &config,
        &incident.id,
        &UpdateIncident {
            status: Some(IncidentStatus::Identified),
            body: Some("We found the cause and are rolling back.".into()),
            ..UpdateIncident::default()
        },
        now - 400,
    )
    .unwrap();
    warden_status::maintenance::schedule(
        &store,
        &config,
        &ScheduleMaintenance {
            name: "Database upgrade".into(),
            scheduled_for: warden_status::json_time(now + 86_400_000),
            scheduled_until: warden_status::json_time(now + 90_000_000),
            components: vec!["data-retrieval".into()],
            body: None,
        },
        now - 300,
    )
    .unwrap();
    (store, config)
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/statuspage-summary.json")).unwrap()
}

/// Fields Statuspage documents as nullable.
const NULLABLE: [&str; 8] = [
    "description",
    "start_date",
    "group_id",
    "monitoring_at",
    "resolved_at",
    "affected_components",
    "custom_tweet",
    "tweet_id",
];

/// Compares `ours` with the documented example `fixture`: the same keys, the same
/// JSON types, nulls only where Statuspage allows them.
fn same_shape(path: &str, key: &str, ours: &Value, fixture: &Value, errors: &mut Vec<String>) {
    match (ours, fixture) {
        (Value::Object(a), Value::Object(f)) => {
            let (ka, kf): (BTreeSet<_>, BTreeSet<_>) = (a.keys().collect(), f.keys().collect());
            for missing in kf.difference(&ka) {
                errors.push(format!("{path}: missing field {missing}"));
            }
            for extra in ka.difference(&kf) {
                errors.push(format!("{path}: field {extra} is not Statuspage's"));
            }
            for (k, v) in a {
                if let Some(fv) = f.get(k) {
                    same_shape(&format!("{path}.{k}"), k, v, fv, errors);
                }
            }
        }
        (Value::Array(a), Value::Array(f)) => {
            for (i, v) in a.iter().enumerate() {
                // Components are compared with the example of their kind.
                let example = f
                    .iter()
                    .find(|e| e.get("group").is_none() || e.get("group") == v.get("group"));
                if let Some(example) = example {
                    same_shape(&format!("{path}[{i}]"), key, v, example, errors);
                }
            }
        }
        (Value::Null, _) if NULLABLE.contains(&key) => {}
        (_, Value::Null) if NULLABLE.contains(&key) => {}
        (a, f) if std::mem::discriminant(a) == std::mem::discriminant(f) => {}
        (a, f) => errors.push(format!("{path}: {a} is not of the type of {f}")),
    }
}

const COMPONENT_STATUSES: &[&str] = &[
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
];
const INCIDENT_STATUSES: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
    "scheduled",
    "in_progress",
    "verifying",
    "completed",
];

/// Enum values from Statuspage's sets, times in its format.
fn check_values(path: &str, value: &Value, errors: &mut Vec<String>) {
    let one_of = |v: &Value, set: &[&str]| v.as_str().is_some_and(|s| set.contains(&s));
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{path}.{k}");
                let ok = match k.as_str() {
                    "status" if v.is_object() => true,
                    "status" => one_of(v, COMPONENT_STATUSES) || one_of(v, INCIDENT_STATUSES),
                    "old_status" | "new_status" => one_of(v, COMPONENT_STATUSES),
                    "indicator" => {
                        one_of(v, &["none", "minor", "major", "critical", "maintenance"])
                    }
                    "impact" => one_of(v, &["none", "minor", "major", "critical", "maintenance"]),
                    k if k.ends_with("_at") || k == "scheduled_for" || k == "scheduled_until" => {
                        v.is_null() || v.as_str().is_some_and(is_statuspage_time)
                    }
                    _ => true,
                };
                if !ok {
                    errors.push(format!("{p}: unexpected value {v}"));
                }
                check_values(&p, v, errors);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_values(&format!("{path}[{i}]"), v, errors);
            }
        }
        _ => {}
    }
}

/// `2024-03-07T15:41:18.124Z`.
fn is_statuspage_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn rendered(store: &Store, config: &StatusConfig, document: Document) -> Value {
    let snapshot = Snapshot::read(store, warden_store::now_ms()).unwrap();
    let links = Links {
        base: "https://status.example.com".into(),
        static_files: false,
    };
    let body = render(&document, &snapshot, config, &links)
        .unwrap()
        .unwrap()
        .body;
    serde_json::from_str(&body).unwrap()
}

#[test]
fn summary_has_statuspage_fields_types_and_values() {
    let (store, config) = populated();
    let summary = rendered(&store, &config, Document::Summary);
    let mut errors = Vec::new();
    same_shape("summary", "", &summary, &fixture(), &mut errors);
    check_values("summary", &summary, &mut errors);
    assert!(errors.is_empty(), "{errors:#?}\n{summary:#}");

    // And the values say what happened.
    assert_eq!(summary["page"]["id"], "warden");
    assert_eq!(summary["page"]["url"], "https://status.example.com/status");
    assert_eq!(summary["status"]["indicator"], "major");
    assert_eq!(summary["status"]["description"], "Partial System Outage");
    let components = summary["components"].as_array().unwrap();
    let names: Vec<&str> = components
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "backend",
            "api",
            "authentication",
            "data-retrieval",
            "quiet"
        ]
    );
    assert_eq!(components[0]["group"], true);
    assert_eq!(components[0]["components"], json!(["api"]));
    assert_eq!(
        components[0]["status"], "partial_outage",
        "a group shows its worst"
    );
    assert_eq!(components[1]["group_id"], "backend");
    let incident = &summary["incidents"][0];
    assert_eq!(incident["status"], "identified");
    assert_eq!(incident["impact"], "major");
    assert!(
        incident["shortlink"]
            .as_str()
            .unwrap()
            .starts_with("https://status.example.com/status/incidents/")
    );
    let updates = incident["incident_updates"].as_array().unwrap();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["status"], "identified", "newest first");
    assert_eq!(
        updates[1]["affected_components"][0]["old_status"],
        "operational"
    );
    assert_eq!(
        updates[1]["affected_components"][0]["new_status"],
        "partial_outage"
    );
    assert_eq!(updates[0]["affected_components"], Value::Null);
    assert_eq!(incident["components"][0]["id"], "api");
    let maintenance = &summary["scheduled_maintenances"][0];
    assert_eq!(maintenance["status"], "scheduled");
    assert_eq!(maintenance["impact"], "maintenance");
    assert!(maintenance["scheduled_for"].is_string());
    assert!(
        incident.get("scheduled_for").is_none(),
        "incidents carry no window"
    );
}

#[test]
fn every_json_document_has_the_page_and_its_list() {
    let (store, config) = populated();
    let fixture = fixture();
    for (document, path) in Document::JSON {
        let value = rendered(&store, &config, document.clone());
        let mut errors = Vec::new();
        same_shape(path, "", &value["page"], &fixture["page"], &mut errors);
        check_values(path, &value, &mut errors);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let expected: &[&str] = match document {
            Document::Summary => &[
                "components",
                "incidents",
                "page",
                "scheduled_maintenances",
                "status",
            ],
            Document::Status => &["page", "status"],
            Document::Components => &["components", "page"],
            Document::Incidents | Document::Unresolved => &["incidents", "page"],
            _ => &["page", "scheduled_maintenances"],
        };
        assert_eq!(keys, expected, "{path}");
        for list in ["incidents", "scheduled_maintenances"] {
            for item in value[list].as_array().into_iter().flatten() {
                same_shape(path, "", item, &fixture[list][0], &mut errors);
            }
        }
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }
    assert_eq!(
        rendered(&store, &config, Document::Upcoming)["scheduled_maintenances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        rendered(&store, &config, Document::Active)["scheduled_maintenances"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        rendered(&store, &config, Document::Unresolved)["incidents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn app(store: &Store, config: &StatusConfig) -> axum::Router {
    warden_status::http::router(store.clone(), Arc::new(config.clone()), TOKEN)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "console.test:8081");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn writes_need_the_token_and_change_nothing_without_it() {
    let store = Store::in_memory().unwrap();
    let config = StatusConfig::default();
    warden_status::components::sync(&store, &config, 0).unwrap();
    let app = app(&store, &config);
    let open = json!({"name": "Down", "components": {"api": "major_outage"}});
    for token in [None, Some("wrong"), Some("")] {
        let (status, headers, body) = call(
            &app,
            "POST",
            "/api/admin/incidents",
            token,
            Some(open.clone()),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    }
    for (method, uri) in [
        ("PATCH", "/api/admin/components/api"),
        ("POST", "/api/admin/incidents/x/updates"),
        ("POST", "/api/admin/incidents/x/resolve"),
        ("POST", "/api/admin/maintenances"),
        ("POST", "/api/admin/maintenances/x/updates"),
    ] {
        let (status, _, _) = call(
            &app,
            method,
            uri,
            None,
            Some(json!({"status": "major_outage"})),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    assert_eq!(store.last_event_id().unwrap(), None);
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/admin/incidents",
        Some(TOKEN),
        Some(open),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let incident: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["impact"], "critical");
    assert!(
        incident["shortlink"]
            .as_str()
            .unwrap()
            .starts_with("http://console.test:8081/status/incidents/")
    );
}

#[tokio::test]
async fn an_alert_that_opens_no_incident_is_recorded_and_the_answer_says_why() {
    let store = Store::in_memory().unwrap();
    let config = StatusConfig::default();
    let app = app(&store, &config);
    let alert = |name: &str, status: &str| json!({"status": status, "labels": {"alertname": name, "instance": "10.0.0.7:8080"}, "fingerprint": name});
    let hook = json!({"version": "4", "alerts": [
        alert("ErrorRatioHigh", "firing"),
        alert("WardenErrorRateHigh", "firing"),
        alert("DiskFull", "resolved"),
    ]});
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/alertmanager",
        Some(TOKEN),
        Some(hook),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["recorded"], 3, "{answer}");
    let ignored = answer["no_incident"].as_array().unwrap();
    assert_eq!(
        ignored.len(),
        1,
        "only the firing alert of an unknown name: {answer}"
    );
    assert_eq!(ignored[0]["alert"], "WardenErrorRateHigh");
    let why = ignored[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("opens no incident") && why.contains("ErrorRatioHigh"),
        "{why}"
    );
    let events = store.events(&warden_store::EventFilter::default()).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "alert.firing",
            "alert.firing",
            warden_status::automation::ALERT_IGNORED,
            "alert.resolved"
        ]
    );
    assert_eq!(events[2].payload["alert"], "WardenErrorRateHigh");
    assert_eq!(events[2].payload["reason"], why);
}

#[tokio::test]
async fn bad_requests_are_problems_that_say_what_to_fix() {
    let store = Store::in_memory().unwrap();
    let config = StatusConfig::default();
    warden_status::components::sync(&store, &config, 0).unwrap();
    let app = app(&store, &config);
    let cases = [
        (
            "POST",
            "/api/admin/incidents",
            json!({"name": "x", "components": {"api": "down"}}),
            StatusCode::BAD_REQUEST,
            "major_outage",
        ),
        (
            "POST",
            "/api/admin/incidents",
            json!({"name": "x", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "POST",
            "/api/admin/incidents",
            json!({"name": "x", "components": {"apy": "major_outage"}}),
            StatusCode::NOT_FOUND,
            "api, authentication, data-retrieval",
        ),
        (
            "POST",
            "/api/admin/incidents",
            json!({"name": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "POST",
            "/api/admin/incidents",
            json!({"name": "x", "status": "resolved"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "opens as",
        ),
        (
            "POST",
            "/api/admin/incidents/nope/updates",
            json!({"body": "hi"}),
            StatusCode::NOT_FOUND,
            "no incident",
        ),
        (
            "PATCH",
            "/api/admin/components/nope",
            json!({"status": "major_outage"}),
            StatusCode::NOT_FOUND,
            "the components are",
        ),
        (
            "POST",
            "/api/admin/maintenances",
            json!({"name": "m", "scheduled_for": "tonight", "scheduled_until": "2030-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "RFC 3339",
        ),
    ];
    for (method, uri, body, expected, hint) in cases {
        let (status, headers, text) =
            call(&app, method, uri, Some(TOKEN), Some(body.clone()), &[]).await;
        assert_eq!(status, expected, "{method} {uri} {body}: {text}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert!(problem["detail"].as_str().unwrap().contains(hint), "{text}");
    }
    let (status, _, _) = call(&app, "POST", "/api/admin/incidents", Some(TOKEN), None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(store.last_event_id().unwrap(), None, "nothing changed");
}

#[tokio::test]
async fn the_page_escapes_user_text_and_answers_304_until_it_changes() {
    let store = Store::in_memory().unwrap();
    let config = StatusConfig::default();
    warden_status::components::sync(&store, &config, 0).unwrap();
    let app = app(&store, &config);
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/admin/incidents",
        Some(TOKEN),
        Some(json!({"name": format!("Outage {XSS}"), "body": format!("Details {XSS}"), "components": {"authentication": "major_outage"}})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for uri in ["/status".to_owned(), format!("/status/incidents/{id}")] {
        let (status, headers, page) = call(&app, "GET", &uri, None, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(!page.contains("<script"), "{uri} has a raw script tag");
        assert!(!page.contains("<img"), "{uri} has a raw img tag");
        assert!(
            page.contains("&lt;script&gt;") || page.contains("&#60;script&#62;"),
            "{uri} shows the text escaped"
        );
        assert!(page.contains("Major outage"));
    }
    let (_, _, page) = call(&app, "GET", "/status", None, None, &[]).await;
    assert!(page.contains("Major System Outage"));
    assert!(page.contains("30% down"), "the page says how uptime counts");
    assert_eq!(
        page.matches("<rect").count(),
        90 * 3,
        "90 bars per component"
    );

    let (status, headers, _) = call(&app, "GET", "/api/v2/summary.json", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=5");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let tag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, again, body) = call(
        &app,
        "GET",
        "/api/v2/summary.json",
        None,
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(again[header::ETAG].to_str().unwrap(), tag);
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/v2/summary.json",
        None,
        None,
        &[("if-none-match", &format!("W/{tag}, \"other\""))],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_MODIFIED,
        "weak and listed tags match"
    );

    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/api/admin/incidents/{id}/resolve"),
        Some(TOKEN),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = call(
        &app,
        "GET",
        "/api/v2/summary.json",
        None,
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "changed, so the old tag no longer matches"
    );
    assert_ne!(headers[header::ETAG].to_str().unwrap(), tag);
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["status"]["indicator"], "none");
    assert_eq!(summary["status"]["description"], "All Systems Operational");

    let (status, _, _) = call(&app, "GET", "/status/incidents/nope", None, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn feeds_escape_text_twice_and_list_incidents() {
    let (store, config) = populated();
    warden_status::incidents::open(
        &store,
        &config,
        &OpenIncident {
            name: format!("Feed {XSS}"),
            ..OpenIncident::default()
        },
        warden_store::now_ms(),
    )
    .unwrap();
    let app = app(&store, &config);
    let (status, headers, atom) = call(&app, "GET", "/history.atom", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/atom+xml")
    );
    assert_eq!(
        atom.matches("<entry>").count(),
        3,
        "two incidents and a maintenance"
    );
    assert!(atom.contains("<title>Feed &lt;script&gt;"));
    assert!(!atom.contains("<script"));
    assert!(atom.contains("href=\"https://status.example.com/status/incidents/"));
    let (status, _, rss) = call(&app, "GET", "/history.rss", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rss.matches("<item>").count(), 3);
    assert!(!rss.contains("<script"));
}

#[test]
fn export_writes_the_page_json_and_feeds_with_relative_links() {
    let (store, mut config) = populated();
    config.page.url = None;
    let dir = tempfile::tempdir().unwrap();
    let written =
        warden_status::export::export(&store, &config, dir.path(), warden_store::now_ms(), None)
            .unwrap();
    for file in [
        "index.html",
        "history.atom",
        "history.rss",
        "api/v2/summary.json",
        "api/v2/incidents/unresolved.json",
        "api/v2/scheduled-maintenances/upcoming.json",
    ] {
        assert!(
            dir.path().join(file).is_file(),
            "{file} missing; wrote {written:?}"
        );
    }
    let index = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        index.contains("href=\"incidents/"),
        "relative incident links"
    );
    assert!(index.contains("href=\"api/v2/summary.json\""));
    let incidents: Vec<_> = std::fs::read_dir(dir.path().join("incidents"))
        .unwrap()
        .collect();
    assert_eq!(incidents.len(), 2, "an incident and a maintenance");
    let page = std::fs::read_to_string(incidents[0].as_ref().unwrap().path()).unwrap();
    assert!(page.contains("href=\"../index.html\""));
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("api/v2/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["incidents"].as_array().unwrap().len(), 1);
}

#[test]
fn export_has_the_published_postmortems_and_no_link_to_the_console() {
    let store = Store::in_memory().unwrap();
    let config = StatusConfig::default();
    let now = warden_store::now_ms();
    warden_status::components::sync(&store, &config, now - 10_000).unwrap();
    let incident = warden_status::incidents::open(
        &store,
        &config,
        &OpenIncident {
            name: "Errors on sign-in".into(),
            components: BTreeMap::from([("authentication".into(), ComponentStatus::MajorOutage)]),
            ..OpenIncident::default()
        },
        now - 9_000,
    )
    .unwrap();
    let id = incident.id.clone();
    warden_status::incidents::resolve(
        &store,
        &config,
        &id,
        &UpdateIncident::default(),
        now - 8_000,
    )
    .unwrap();
    // Published through the console, which knows itself by its own address.
    let console = Links {
        base: "http://console.test:8081".into(),
        static_files: false,
    };
    warden_status::postmortem::publish(&store, &config, &console, &id, None, now - 7_000).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let written = warden_status::export::export(&store, &config, dir.path(), now, None).unwrap();
    let postmortem = dir.path().join(format!("postmortems/{id}.html"));
    assert!(written.contains(&postmortem), "{written:?}");
    let page = std::fs::read_to_string(&postmortem).unwrap();
    assert!(page.contains("Postmortem: Errors on sign-in"), "{page}");
    assert!(
        page.contains(&format!("href=\"../incidents/{id}.html\"")),
        "{page}"
    );
    assert!(page.contains("href=\"../index.html\""), "{page}");
    let incident_page =
        std::fs::read_to_string(dir.path().join(format!("incidents/{id}.html"))).unwrap();
    assert!(
        incident_page.contains(&format!(
            "href=\"../postmortems/{id}.html\">Read the postmortem"
        )),
        "{incident_page}"
    );
    for path in &written {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            !text.contains("console.test") && !text.contains("/status/incidents/"),
            "{} links to the console: {text}",
            path.display()
        );
    }

    // With a base URL, every link is absolute on it.
    let dir = tempfile::tempdir().unwrap();
    let base = "https://status.example.com";
    warden_status::export::export(&store, &config, dir.path(), now, Some(base)).unwrap();
    let index = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        index.contains(&format!("href=\"{base}/incidents/{id}.html\"")),
        "{index}"
    );
    let incident_page =
        std::fs::read_to_string(dir.path().join(format!("incidents/{id}.html"))).unwrap();
    assert!(incident_page.contains(&format!("href=\"{base}/postmortems/{id}.html\"")));
    let summary = std::fs::read_to_string(dir.path().join("api/v2/summary.json")).unwrap();
    assert!(
        summary.contains(&format!("\"url\":\"{base}/index.html\"")),
        "{summary}"
    );
    let error =
        warden_status::export::export(&store, &config, dir.path(), now, Some("status.example.com"))
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("--base-url") && error.contains("https://"),
        "{error}"
    );
}

/// A form post to the subscriber routes.
async fn post_form(app: &axum::Router, uri: &str, form: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn an_expired_confirmation_link_says_so_changes_nothing_and_the_address_signs_up_again() {
    let store = Store::in_memory().unwrap();
    let config: StatusConfig = toml::from_str(
        "[subscribers]\nconfirm_within = \"1h\"\n\n[subscribers.smtp]\nhost = \"127.0.0.1\"\n\
         from = \"Status <status@example.com>\"\n",
    )
    .unwrap();
    config.validate().unwrap();
    let app = warden_status::signup::router(store.clone(), Arc::new(config.clone()), TOKEN);
    let now = warden_store::now_ms();
    let subscriber = |address: &str| {
        store
            .subscribers()
            .unwrap()
            .into_iter()
            .find(|s| s.address == address)
    };
    let kinds = || -> Vec<String> {
        store
            .events(&warden_store::EventFilter {
                kind_prefix: Some("subscriber.".into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    };

    // A sign-up from two hours ago: its link has expired.
    warden_status::subscribers::sign_up_email(
        &store,
        &config,
        "ann@example.com",
        &[],
        now - 7_200_000,
    )
    .unwrap();
    let old = subscriber("ann@example.com").unwrap();
    let confirm = format!("/subscriptions/{}/confirm", old.token);
    let (status, page) = post_form(&app, &confirm, "").await;
    assert_eq!(status, StatusCode::GONE, "{page}");
    assert!(
        page.contains("This confirmation link has expired"),
        "{page}"
    );
    assert!(page.contains("work for 1h"), "{page}");
    assert!(page.contains("Sign up again below"), "{page}");
    assert!(
        page.contains("action=\"/subscribe\""),
        "the form to sign up again"
    );
    assert_eq!(
        subscriber("ann@example.com"),
        Some(old.clone()),
        "nothing changed"
    );
    assert_eq!(kinds(), ["subscriber.pending"]);

    // The sweep deletes it; the link is then unknown, and the page still says why.
    assert_eq!(
        warden_status::subscribers::expire_unconfirmed(&store, &config, now).unwrap(),
        1
    );
    assert_eq!(subscriber("ann@example.com"), None);
    assert_eq!(kinds(), ["subscriber.pending", "subscriber.expired"]);
    let (status, page) = post_form(&app, &confirm, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert!(
        page.contains("no longer valid") && page.contains("work for 1h"),
        "{page}"
    );

    // The same address signs up again on the form and confirms its new link.
    let (status, page) = post_form(&app, "/subscribe", "email=ann%40example.com").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let new = subscriber("ann@example.com").unwrap();
    assert_eq!(new.state, "pending");
    assert_ne!(new.token, old.token);
    let (status, page) =
        post_form(&app, &format!("/subscriptions/{}/confirm", new.token), "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("You are subscribed"), "{page}");
    assert_eq!(subscriber("ann@example.com").unwrap().state, "active");
    // Nothing left for the sweep.
    assert_eq!(
        warden_status::subscribers::expire_unconfirmed(&store, &config, now + 7_200_000).unwrap(),
        0
    );
}
