//! The dashboard's router over a store filled with two releases' worth of samples
//! and events, called in-process with `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_monitor::dashboard::{DashboardState, router};
use warden_store::{Labels, NewEvent, Sample, Store};

const MINUTE: i64 = 60_000;
const V1: (&str, &str) = ("v1", "127.0.0.1:9001");
const V2: (&str, &str) = ("v2", "127.0.0.1:9002");
const CHARTS: [&str; 5] = ["rss", "heap", "request-rate", "error-ratio", "latency"];

fn labels((release, instance): (&str, &str), extra: &[(&str, &str)]) -> Labels {
    let mut labels = Labels::from([
        ("release".to_owned(), release.to_owned()),
        ("instance".to_owned(), instance.to_owned()),
        ("job".to_owned(), "api".to_owned()),
    ]);
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    labels
}

fn scrape(key: (&str, &str), i: i64, leak: f64) -> Vec<Sample> {
    let sample = |name: &str, extra: &[(&str, &str)], value: f64| Sample {
        name: name.to_owned(),
        labels: labels(key, extra),
        value,
    };
    let wave = ((i as f64) / 7.0).sin();
    vec![
        sample("up", &[], 1.0),
        sample(
            "process_resident_memory_bytes",
            &[],
            (2e6f64).mul_add(wave, 60e6 + leak * 2.0 * i as f64),
        ),
        sample(
            "warden_heap_bytes",
            &[("kind", "allocated")],
            (1e6f64).mul_add(wave, 20e6 + leak * i as f64),
        ),
        sample("warden_heap_bytes", &[("kind", "resident")], 45e6),
        sample("warden:request_rate", &[], 5.0f64.mul_add(wave, 40.0)),
        sample(
            "warden:error_ratio",
            &[],
            if leak > 0.0 { 0.02 } else { 0.0 },
        ),
        sample(
            "warden:latency_p50_seconds",
            &[],
            0.002f64.mul_add(wave, 0.012),
        ),
        sample(
            "warden:latency_p99_seconds",
            &[],
            0.01f64.mul_add(wave, 0.085),
        ),
    ]
}

fn event(store: &Store, at_ms: i64, kind: &str, release: &str, payload: Value) {
    store
        .append_event_at(
            at_ms,
            &NewEvent {
                kind: kind.to_owned(),
                release: Some(release.to_owned()),
                payload,
            },
        )
        .unwrap();
}

fn alert(
    store: &Store,
    at_ms: i64,
    kind: &str,
    (fingerprint, name, key): (&str, &str, (&str, &str)),
    summary: &str,
) {
    event(
        store,
        at_ms,
        kind,
        key.0,
        json!({
            "fingerprint": fingerprint,
            "alert": name,
            "severity": "critical",
            "instance": key.1,
            "release": key.0,
            "summary": summary,
            "description": "Heap grows 120 kB/s; exhausted in 14 min.",
        }),
    );
}

const LEAK: (&str, &str, (&str, &str)) = ("fp-leak", "MemoryLeak", V2);
const LATENCY: (&str, &str, (&str, &str)) = ("fp-latency", "LatencyHigh", V1);
const ERRORS: (&str, &str, (&str, &str)) = ("fp-errors", "ErrorRatioHigh", V2);
const FLAP: (&str, &str, (&str, &str)) = ("fp-flap", "TargetDown", V1);
const SCRIPT_SUMMARY: &str = "Heap of v2 grows <script>alert(1)</script>";

/// Fifty minutes of scrapes every 10 s for v1 (steady) and v2 (leaking), three
/// hours old samples of v1, and the events of a deploy gone wrong: v2 deployed, its
/// leak fires, v1 latency fires and resolves, a rollback, another alert pending.
fn filled_store() -> (Store, i64) {
    let store = Store::in_memory().unwrap();
    let now = warden_store::now_ms();
    for i in 0..300 {
        let at = now - 50 * MINUTE + i * 10_000;
        let mut samples = scrape(V1, i, 0.0);
        if i >= 60 {
            samples.extend(scrape(V2, i, 100_000.0));
        }
        store.append_samples(at, &samples).unwrap();
    }
    for i in 0..30 {
        store
            .append_samples(now - 180 * MINUTE + i * 10_000, &scrape(V1, i, 0.0))
            .unwrap();
    }
    event(
        &store,
        now - 180 * MINUTE,
        "deploy.finished",
        "v1",
        json!({"summary": "v1 is live"}),
    );
    event(
        &store,
        now - 49 * MINUTE,
        "instance.started",
        "v1",
        json!({"instance": V1.1, "pid": 4242}),
    );
    event(
        &store,
        now - 40 * MINUTE,
        "deploy.finished",
        "v2",
        json!({"summary": "v2 is live (canary 100%)"}),
    );
    alert(
        &store,
        now - 20 * MINUTE,
        "alert.pending",
        LEAK,
        SCRIPT_SUMMARY,
    );
    alert(
        &store,
        now - 18 * MINUTE,
        "alert.firing",
        LEAK,
        SCRIPT_SUMMARY,
    );
    alert(
        &store,
        now - 16 * MINUTE,
        "alert.pending",
        FLAP,
        "v1 target down",
    );
    alert(
        &store,
        now - 15 * MINUTE,
        "alert.cancelled",
        FLAP,
        "v1 target down",
    );
    alert(
        &store,
        now - 10 * MINUTE,
        "alert.pending",
        LATENCY,
        "p99 above 500 ms",
    );
    alert(
        &store,
        now - 9 * MINUTE,
        "alert.firing",
        LATENCY,
        "p99 above 500 ms",
    );
    alert(
        &store,
        now - 5 * MINUTE,
        "alert.resolved",
        LATENCY,
        "p99 back to normal",
    );
    event(
        &store,
        now - 4 * MINUTE,
        "rollback.finished",
        "v1",
        json!({"summary": "rolled back from v2 to v1", "took_ms": 412}),
    );
    event(
        &store,
        now - 3 * MINUTE,
        "instance.exited",
        "v2",
        json!({"instance": V2.1, "summary": "<img src=x onerror=alert(2)>"}),
    );
    alert(
        &store,
        now - 2 * MINUTE,
        "alert.pending",
        ERRORS,
        "5xx above 1%",
    );
    (store, now)
}

fn app(store: Store) -> Router {
    router(DashboardState::new(store))
}

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The part of the page between `start` and the next `end`.
fn section<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page"));
    let rest = &page[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The wide (laptop) rendering of a chart in the page.
fn chart<'a>(page: &'a str, slug: &str) -> &'a str {
    let card = section(page, &format!(r#"id="chart-{slug}""#), "</article>");
    section(card, "chart chart-wide", "</svg>")
}

/// The narrow (phone) rendering of a chart in the page.
fn narrow_chart<'a>(page: &'a str, slug: &str) -> &'a str {
    let card = section(page, &format!(r#"id="chart-{slug}""#), "</article>");
    section(card, "chart chart-narrow", "</svg>")
}

/// The number of points of each drawn line.
fn line_points(svg: &str) -> Vec<usize> {
    svg.match_indices(r#"class="series" data-points=""#)
        .map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

async fn json(app: &Router, uri: &str) -> Value {
    let (status, headers, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(content_type(&headers).starts_with("application/json"));
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn every_chart_draws_one_line_per_release_and_instance() {
    let (store, _) = filled_store();
    let app = app(store);
    let (status, headers, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "text/html; charset=utf-8");
    // Kept for a look at the page: target/tmp/dashboard-synthetic.html.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-synthetic.html");
    std::fs::write(&out, &page).unwrap();
    eprintln!("page written to {}", out.display());

    for (slug, lines) in [
        ("rss", 2),
        // Only kind="allocated": the resident heap series is not drawn.
        ("heap", 2),
        ("request-rate", 2),
        ("error-ratio", 2),
        // p99 and p50 for each.
        ("latency", 4),
    ] {
        let svg = chart(&page, slug);
        assert!(svg.contains(r#"viewBox="0 0 640 "#), "{slug}: no svg");
        let points = line_points(svg);
        assert_eq!(points.len(), lines, "{slug}: {points:?}");
        // v1 has 50 minutes of samples, v2 40; the 3-hour-old ones are out of range.
        assert!(
            points.iter().all(|&n| n == 300 || n == 240),
            "{slug}: {points:?}"
        );
        assert!(svg.contains(r#"d="M"#), "{slug}");
        assert!(svg.contains("v1 · 127.0.0.1:9001"), "{slug}: legend");
        assert!(svg.contains("v2 · 127.0.0.1:9002"), "{slug}: legend");
        assert!(!svg.contains("No data in this range"), "{slug}");
    }
    assert!(chart(&page, "rss").contains(" MB</text>"), "axis in MB");
    assert!(chart(&page, "request-rate").contains(" req/s</text>"));
    assert!(chart(&page, "error-ratio").contains("%</text>"));
    assert!(chart(&page, "latency").contains(" ms</text>"));
    assert!(chart(&page, "latency").contains("p50 · v1 · 127.0.0.1:9001"));
    assert!(
        chart(&page, "latency").contains("stroke-dasharray=\"6 4\""),
        "p50 dashed"
    );
    for slug in CHARTS {
        let narrow = narrow_chart(&page, slug);
        assert!(narrow.contains(r#"viewBox="0 0 360 "#), "{slug}");
        assert_eq!(
            line_points(narrow),
            line_points(chart(&page, slug)),
            "{slug}"
        );
    }

    // The instances table: both, up, with their latest readings.
    let instances = section(&page, r#"id="instances""#, "</section>");
    assert!(instances.contains("127.0.0.1:9001") && instances.contains("127.0.0.1:9002"));
    assert_eq!(instances.matches(r#"class="badge up""#).count(), 2);
    assert!(instances.contains(" req/s</td>"));
}

#[tokio::test]
async fn deploys_rollbacks_and_alerts_are_marked_on_every_chart() {
    let (store, _) = filled_store();
    let app = app(store);
    let (_, _, page) = get(&app, "/").await;
    for slug in CHARTS {
        let svg = chart(&page, slug);
        assert_eq!(svg.matches("marker marker-deploy").count(), 1, "{slug}");
        assert_eq!(svg.matches("marker marker-rollback").count(), 1, "{slug}");
        // Leak and latency fired; pending and cancelled are not markers.
        assert_eq!(
            svg.matches("marker marker-alert-firing").count(),
            2,
            "{slug}"
        );
        assert_eq!(
            svg.matches("marker marker-alert-resolved").count(),
            1,
            "{slug}"
        );
        assert!(svg.contains("rollback.finished · v1 · rolled back from v2 to v1"));
    }
    // One legend for the markers of every chart.
    let legend = section(&page, r#"class="legend-markers""#, "</div>");
    for label in [
        ">deploy<",
        ">rollback<",
        ">alert firing<",
        ">alert resolved<",
    ] {
        assert!(legend.contains(label), "legend {label}");
    }
    // Distinct colours per kind.
    let svg = chart(&page, "rss");
    for color in ["#0369a1", "#7c3aed", "#dc2626", "#16a34a"] {
        assert!(
            svg.contains(&format!(r#"stroke="{color}" stroke-width="1.5""#)),
            "{color}"
        );
    }
}

#[tokio::test]
async fn a_restart_of_the_control_plane_is_marked_and_listed() {
    let (store, now) = filled_store();
    store
        .append_event_at(
            now - 30 * MINUTE,
            &NewEvent {
                kind: "control.restarted".into(),
                release: None,
                payload: json!({
                    "summary": "control plane restarted after a crash (its last record was 42s before); 2 instances of v2 found dead",
                }),
            },
        )
        .unwrap();
    let app = app(store);
    let (_, _, page) = get(&app, "/").await;
    for slug in CHARTS {
        let svg = chart(&page, slug);
        assert_eq!(svg.matches("marker marker-restart").count(), 1, "{slug}");
        assert!(svg.contains("control.restarted · control plane restarted after a crash"));
    }
    let legend = section(&page, r#"class="legend-markers""#, "</div>");
    assert!(legend.contains(">control plane restart<"), "{legend}");
    let events = section(&page, r#"id="events""#, "</section>");
    assert!(
        events.contains(r#"kind-control">control.restarted<"#)
            && events.contains("2 instances of v2 found dead"),
        "{events}"
    );
}

#[tokio::test]
async fn active_alerts_are_those_whose_latest_event_is_pending_or_firing() {
    let (store, _) = filled_store();
    let app = app(store);
    let doc = json(&app, "/api/alerts").await;
    let active: Vec<(&str, &str)> = doc["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["fingerprint"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(active, [("fp-leak", "firing"), ("fp-errors", "pending")]);
    assert_eq!(doc["active"][0]["summary"], SCRIPT_SUMMARY);
    assert_eq!(doc["active"][0]["instance"], V2.1);
    assert_eq!(doc["range"], "1h");

    let (_, _, page) = get(&app, "/").await;
    let listed = section(&page, r#"id="active-alerts""#, "</section>");
    assert!(listed.contains("Active alerts <span class=\"count\">(2)</span>"));
    assert!(listed.contains("MemoryLeak") && listed.contains("ErrorRatioHigh"));
    assert!(!listed.contains("LatencyHigh") && !listed.contains("TargetDown"));
    assert!(
        listed.find("MemoryLeak") < listed.find("ErrorRatioHigh"),
        "firing first"
    );
    assert!(listed.contains("Heap grows 120 kB/s"), "description shown");
}

#[tokio::test]
async fn alert_history_lists_alert_events_newest_first_with_times() {
    let (store, now) = filled_store();
    let app = app(store);
    let doc = json(&app, "/api/alerts").await;
    let history: Vec<(&str, &str)> = doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["alert"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("ErrorRatioHigh", "pending"),
            ("LatencyHigh", "resolved"),
            ("LatencyHigh", "firing"),
            ("LatencyHigh", "pending"),
            ("TargetDown", "cancelled"),
            ("TargetDown", "pending"),
            ("MemoryLeak", "firing"),
            ("MemoryLeak", "pending"),
        ]
    );
    assert_eq!(doc["history"][0]["at_ms"], now - 2 * MINUTE);

    let (_, _, page) = get(&app, "/").await;
    let table = section(&page, r#"id="alert-history""#, "</section>");
    assert_eq!(table.matches("<tr>").count(), 1 + 8, "header and 8 events");
    assert!(table.contains(r#"<time datetime=""#));
    assert!(table.contains(" UTC\">"), "full time on hover");
    let resolved = table.find("state-resolved").unwrap();
    let cancelled = table.find("state-cancelled").unwrap();
    assert!(resolved < cancelled, "newest first");

    let events = section(&page, r#"id="events""#, "</section>");
    assert!(events.contains("rollback.finished") && events.contains("deploy.finished"));
    assert!(events.contains("instance.started"));
    assert!(events.contains("v2 is live (canary 100%)"));
    assert!(
        !events.contains("v1 is live"),
        "three hours ago is out of range"
    );
}

#[tokio::test]
async fn strings_from_the_store_are_escaped() {
    let (store, _) = filled_store();
    // A label with markup: its legend entry must be text, not markup.
    store
        .append_samples(
            warden_store::now_ms(),
            &[Sample {
                name: "process_resident_memory_bytes".into(),
                labels: labels(("<b>v3</b>", "127.0.0.1:9003\"><svg onload=x>"), &[]),
                value: 1e6,
            }],
        )
        .unwrap();
    let app = app(store);
    let (_, _, page) = get(&app, "/").await;
    assert!(
        !page.contains("<script>alert(1)"),
        "alert summary not escaped"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            || page.contains("&#60;script&#62;alert(1)")
    );
    assert!(!page.contains("<img src=x"), "event summary not escaped");
    assert!(!page.contains("<b>v3</b>"), "release label not escaped");
    assert!(!page.contains("<svg onload"), "instance label not escaped");
    assert_eq!(page.matches("<script").count(), 1, "only the reload script");

    let (_, _, svg) = get(&app, "/charts/rss.svg").await;
    assert!(!svg.contains("<b>v3</b>") && !svg.contains("<svg onload"));
    assert!(svg.contains("&lt;b&gt;v3&lt;/b&gt;"));
}

#[tokio::test]
async fn the_range_selects_the_window_and_a_bad_range_is_refused() {
    let (store, _) = filled_store();
    let app = app(store);

    let (status, _, page) = get(&app, "/?range=6h").await;
    assert_eq!(status, StatusCode::OK);
    let rss = chart(&page, "rss");
    assert_eq!(
        rss.matches("marker marker-deploy").count(),
        2,
        "v1's deploy too"
    );
    assert!(line_points(rss).contains(&330), "v1's older samples too");
    assert!(page.contains(r#"aria-current="page">6h<"#));
    assert!(section(&page, r#"id="events""#, "</section>").contains("v1 is live"));

    for range in ["15m", "1h", "24h", "7d"] {
        let (status, _, page) = get(&app, &format!("/?range={range}")).await;
        assert_eq!(status, StatusCode::OK, "{range}");
        assert!(page.contains(&format!(r#"aria-current="page">{range}<"#)));
    }
    let (_, _, page) = get(&app, "/?range=15m").await;
    assert_eq!(
        chart(&page, "rss").matches("marker marker-deploy").count(),
        0
    );
    assert_eq!(
        chart(&page, "rss")
            .matches("marker marker-rollback")
            .count(),
        1
    );
    let (_, _, page) = get(&app, "/").await;
    assert!(
        page.contains(r#"aria-current="page">1h<"#),
        "1 hour by default"
    );

    let (status, headers, page) = get(&app, "/?range=2y").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(content_type(&headers).starts_with("text/html"));
    assert!(
        page.contains("unknown range &quot;2y&quot;: use one of 15m, 1h, 6h, 24h, 7d")
            || page.contains("unknown range &#34;2y&#34;: use one of 15m, 1h, 6h, 24h, 7d"),
        "{page}"
    );
    assert!(page.contains(r#"href="?range=1h""#));

    let (status, headers, body) = get(&app, "/api/alerts?range=%3Cx%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&headers), "application/problem+json");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("use one of"));
    let (status, _, _) = get(&app, "/charts/rss.svg?range=1w").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn filters_narrow_the_charts_to_a_release_or_instance() {
    let (store, _) = filled_store();
    let app = app(store);
    let (status, _, page) = get(&app, "/?release=v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(line_points(chart(&page, "rss")), [240]);
    assert_eq!(line_points(chart(&page, "latency")).len(), 2);
    // v1's rollback and latency alert are about v1: not on v2's charts.
    let rss = chart(&page, "rss");
    assert_eq!(rss.matches("marker marker-rollback").count(), 0);
    assert_eq!(rss.matches("marker marker-alert-firing").count(), 1);
    assert_eq!(rss.matches("marker marker-deploy").count(), 1);
    // The filter's choices still list every release, the chosen one selected.
    assert!(page.contains(r#"<option value="v1">v1</option>"#));
    assert!(page.contains(r#"<option value="v2" selected>v2</option>"#));
    assert!(page.contains("clear filters"));
    // Range links keep the filter.
    assert!(page.contains(r#"href="?range=6h&#38;release=v2""#));

    let (_, _, page) = get(&app, "/?instance=127.0.0.1%3A9001&release=").await;
    assert_eq!(line_points(chart(&page, "heap")), [300]);
    // A filter that matches nothing: no data, not an error.
    let (status, _, page) = get(&app, "/?release=nope").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("No data in this range").count(), 2 * 5);
}

#[tokio::test]
async fn an_empty_store_says_there_is_no_data_in_each_chart() {
    let app = app(Store::in_memory().unwrap());
    let (status, _, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    for slug in CHARTS {
        assert!(
            chart(&page, slug).contains("No data in this range"),
            "{slug}"
        );
    }
    assert!(!page.contains(r#"class="series""#));
    assert!(page.contains("No active alerts."));
    assert!(page.contains("No alert events in this range."));
    assert!(page.contains("No instance reported data in this range."));
    let doc = json(&app, "/api/alerts").await;
    assert_eq!(doc["active"], json!([]));
    assert_eq!(doc["history"], json!([]));
    let (status, _, svg) = get(&app, "/charts/latency.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert!(svg.contains("No data in this range"));
}

#[tokio::test]
async fn a_failing_store_gives_a_page_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let store = Store::open(&path).unwrap();
    store.append_samples(1, &scrape(V1, 0, 0.0)).unwrap();
    // Another process breaks the file under the dashboard's feet.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE samples; DROP TABLE rollups; DROP TABLE series; DROP TABLE events;",
        )
        .unwrap();
    let app = app(store);

    let (status, headers, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(content_type(&headers).starts_with("text/html"));
    assert!(page.contains("Store unavailable"));
    assert!(page.contains("could not be read"));
    for slug in CHARTS {
        assert!(chart(&page, slug).contains("Data unavailable"), "{slug}");
    }
    assert!(
        !page.contains("no such table"),
        "details go to the log, not the page"
    );

    let (status, headers, body) = get(&app, "/api/alerts").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type(&headers), "application/problem+json");
    assert!(body.contains("could not be read"));

    let (status, headers, svg) = get(&app, "/charts/heap.svg").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type(&headers), "image/svg+xml");
    assert!(svg.contains("Data unavailable"));
}

#[tokio::test]
async fn each_chart_is_also_an_svg_image_of_its_own() {
    let (store, _) = filled_store();
    let app = app(store);
    for slug in CHARTS {
        let (status, headers, svg) = get(&app, &format!("/charts/{slug}.svg?range=6h")).await;
        assert_eq!(status, StatusCode::OK, "{slug}");
        assert_eq!(content_type(&headers), "image/svg+xml", "{slug}");
        assert!(
            svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#),
            "{slug}"
        );
        assert!(svg.contains(r#" width="640""#), "{slug}: sized when alone");
        assert!(svg.ends_with("</svg>"));
        assert!(!line_points(&svg).is_empty(), "{slug}");
        assert!(svg.contains("marker marker-deploy"), "{slug}");
    }
    let (_, _, svg) = get(&app, "/charts/heap.svg").await;
    assert!(svg.contains(">Heap allocated</text>"), "titled when alone");
    // Kept for a look: target/tmp/dashboard-synthetic-heap.svg.
    let out =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-synthetic-heap.svg");
    std::fs::write(&out, &svg).unwrap();
    for label in [
        ">deploy<",
        ">rollback<",
        ">alert firing<",
        ">alert resolved<",
    ] {
        assert!(svg.contains(label), "marker legend when alone: {label}");
    }

    let (status, headers, body) = get(&app, "/charts/disk.svg").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type(&headers), "application/problem+json");
    assert!(body.contains("rss.svg"), "lists the charts: {body}");
    let (status, _, _) = get(&app, "/charts/rss").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_needs_no_javascript_and_nothing_from_the_network() {
    let (store, _) = filled_store();
    let app = app(store.clone());
    let (status, headers, page) = get(&app, "/dashboard?range=15m").await;
    assert_eq!(status, StatusCode::OK);
    // Plain links and a GET form choose the range and the filters.
    assert!(page.contains(r#"<form class="filters" method="get">"#));
    assert!(page.contains(r#"<input type="hidden" name="range" value="15m">"#));
    for range in ["15m", "1h", "6h", "24h", "7d"] {
        assert!(
            page.contains(&format!(r#"href="?range={range}""#)),
            "{range}"
        );
    }
    // Nothing loaded from elsewhere: every chart is inline.
    assert!(!page.contains(" src=\""));
    assert!(!page.contains("<link"));
    assert!(!page.contains("https://"));
    // The charts, inline, each laid out for a laptop and for a phone.
    assert_eq!(page.matches("<svg xmlns").count(), 2 * 5);
    assert_eq!(page.matches(r#"class="chart chart-wide""#).count(), 5);
    assert_eq!(page.matches(r#"class="chart chart-narrow""#).count(), 5);
    // Only the reload script may run, by its hash.
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(page.contains(r#"data-refresh="15""#));
    let script = section(&page, "<script>", "</script>")
        .strip_prefix("<script>")
        .unwrap();
    let hash = base64(&<sha2::Sha256 as sha2::Digest>::digest(script.as_bytes()));
    assert!(
        csp.contains(&format!("'sha256-{hash}'")),
        "the reload script may run"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");

    let quiet = router(DashboardState {
        refresh_seconds: 0,
        ..DashboardState::new(store)
    });
    let (_, _, page) = get(&quiet, "/").await;
    assert!(!page.contains("<script"));
    assert!(!page.contains("refreshes every"));
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// A store with `minutes` of scrapes every 5 s, ending now, from each key's
/// `scrape`, plus `warden_memory_limit_bytes` of `limit` bytes.
fn store_with(keys: &[(&str, &str)], minutes: i64, limit: f64) -> (Store, i64) {
    let store = Store::in_memory().unwrap();
    let now = warden_store::now_ms();
    let count = minutes * 12;
    for i in 0..count {
        let at = now - (count - 1 - i) * 5_000;
        let mut samples = Vec::new();
        for &key in keys {
            samples.extend(scrape(key, i, 0.0));
            samples.push(Sample {
                name: "warden_memory_limit_bytes".to_owned(),
                labels: labels(key, &[]),
                value: limit,
            });
        }
        store.append_samples(at, &samples).unwrap();
    }
    (store, now)
}

/// The status badge of `instance`'s row in the instances table.
fn status_of<'a>(page: &'a str, instance: &str) -> &'a str {
    let table = section(page, r#"id="instances""#, "</section>");
    let row = section(
        table,
        &format!(r#"<td class="code">{instance}</td>"#),
        "</tr>",
    );
    let badge = section(row, r#"<span class="badge "#, "</span>");
    &badge[badge.find('>').unwrap() + 1..]
}

#[tokio::test]
async fn a_stopped_or_silent_instance_is_not_shown_up() {
    const V3: (&str, &str) = ("v3", "127.0.0.1:9003");
    let (store, now) = store_with(&[V1, V2], 20, 2e9);
    // v3 was scraped until 2 minutes ago, then nothing: no longer known to be up.
    for i in 0..12 {
        store
            .append_samples(now - 3 * MINUTE + i * 5_000, &scrape(V3, i, 0.0))
            .unwrap();
    }
    let app = app(store.clone());
    let (_, _, page) = get(&app, "/").await;
    assert_eq!(status_of(&page, V1.1), "up");
    assert_eq!(status_of(&page, V2.1), "up");
    assert_eq!(status_of(&page, V3.1), "stale");

    // The supervisor stops v2 (a rollback): its last sample said up, the event wins.
    event(
        &store,
        warden_store::now_ms(),
        "instance.stopped",
        V2.0,
        json!({"instance": V2.1, "pid": 77}),
    );
    let (_, _, page) = get(&app, "/").await;
    assert_eq!(status_of(&page, V2.1), "stopped");
    assert_eq!(
        status_of(&page, V1.1),
        "up",
        "only v2's event counts for v2"
    );

    // Started again and scraped: up again.
    event(
        &store,
        warden_store::now_ms(),
        "instance.started",
        V2.0,
        json!({"instance": V2.1, "pid": 78}),
    );
    store
        .append_samples(warden_store::now_ms() + 1, &scrape(V2, 0, 0.0))
        .unwrap();
    let (_, _, page) = get(&app, "/").await;
    assert_eq!(status_of(&page, V2.1), "up");
}

/// The labels of the y axis of a chart, bottom first.
fn y_labels(svg: &str) -> Vec<String> {
    let axis = section(svg, r#"<g class="y-axis">"#, "</g>");
    axis.split("<text ")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_owned())
        .collect()
}

#[tokio::test]
async fn memory_charts_start_at_zero_and_draw_the_memory_limit() {
    // RSS about 60 MB, 1-2 MB of wave: on an axis from 0 it reads flat, as it is.
    let (store, _) = store_with(&[V1], 30, 100e6);
    let (_, _, page) = get(&app(store), "/").await;
    for slug in ["rss", "heap"] {
        let svg = chart(&page, slug);
        let labels = y_labels(svg);
        assert_eq!(
            labels.first().map(String::as_str),
            Some("0 MB"),
            "{slug}: {labels:?}"
        );
        assert!(
            svg.contains("memory limit 100 MB"),
            "{slug}: the limit is named"
        );
    }
    let svg = chart(&page, "rss");
    assert!(svg.contains(r#"<g class="limit">"#), "the limit is drawn");
    let top: f64 = y_labels(svg)
        .last()
        .unwrap()
        .trim_end_matches(" MB")
        .parse()
        .unwrap();
    assert!(top >= 100.0, "the axis reaches the limit: top {top}");

    // A limit far above the values (a machine's RAM) would flatten every line: it is
    // named, not drawn.
    let (store, _) = store_with(&[V1], 30, 24e9);
    let (_, _, page) = get(&app(store), "/").await;
    let svg = chart(&page, "rss");
    assert!(!svg.contains(r#"<g class="limit">"#));
    assert!(
        svg.contains("memory limit 24,000 MB: far above this axis"),
        "{svg}"
    );
    let top: f64 = y_labels(svg)
        .last()
        .unwrap()
        .trim_end_matches(" MB")
        .parse()
        .unwrap();
    assert!(top < 100.0, "the axis fits the values, not the RAM");
}

/// `scrape`'s p99 replaced by `p99` for the `i`th sample.
fn latency_store(p99: impl Fn(i64) -> f64) -> Store {
    let store = Store::in_memory().unwrap();
    let now = warden_store::now_ms();
    for i in 0..360 {
        let mut samples = scrape(V1, i, 0.0);
        for s in &mut samples {
            if s.name == "warden:latency_p99_seconds" {
                s.value = p99(i);
            }
        }
        store
            .append_samples(now - (359 - i) * 10_000, &samples)
            .unwrap();
    }
    store
}

#[tokio::test]
async fn a_lone_start_up_spike_does_not_set_the_latency_axis() {
    // 85 ms all along, 3 s for the first scrape after start.
    let store = latency_store(|i| if i == 2 { 3.0 } else { 0.085 });
    let (_, _, page) = get(&app(store), "/").await;
    let svg = chart(&page, "latency");
    let top: f64 = y_labels(svg)
        .last()
        .unwrap()
        .trim_end_matches(" ms")
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(top <= 200.0, "the axis fits 85 ms, not 3 s: top {top}");
    assert!(
        svg.contains("↑ 1 value above the axis, up to 3,000 ms"),
        "the spike is named: {svg}"
    );

    // A sustained rise is what the chart is for: never cut.
    let store = latency_store(|i| if i >= 300 { 0.9 } else { 0.085 });
    let (_, _, page) = get(&app(store), "/").await;
    let svg = chart(&page, "latency");
    assert!(!svg.contains("above the axis"), "{svg}");
    let top: f64 = y_labels(svg)
        .last()
        .unwrap()
        .trim_end_matches(" ms")
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(top >= 900.0, "the rise is on the axis: top {top}");
}

/// The x coordinate where the first line of `svg` starts.
fn first_x(svg: &str) -> f64 {
    let path = section(svg, r#"class="series""#, "/>");
    let d = section(path, r#"d="M"#, " ");
    d[4..].parse().unwrap()
}

#[tokio::test]
async fn a_new_installs_first_minutes_fill_the_default_range() {
    let (store, _) = store_with(&[V1], 8, 2e9);
    let app = app(store);
    let (_, _, page) = get(&app, "/").await;
    assert!(
        page.contains(r#"<span class="fitted">since the first sample"#),
        "the page says the range was fitted"
    );
    assert!(
        !page.contains(r#"aria-current="page""#),
        "no range is current"
    );
    let svg = chart(&page, "rss");
    assert!(
        first_x(svg) < 160.0,
        "the line starts near the left edge, not at the right: {}",
        first_x(svg)
    );
    // Its own image fits the same way.
    let (_, _, alone) = get(&app, "/charts/rss.svg").await;
    assert!(first_x(&alone) < 160.0);

    // A range asked for is kept as asked.
    let (_, _, page) = get(&app, "/?range=1h").await;
    assert!(!page.contains(r#"class="fitted""#));
    assert!(page.contains(r#"aria-current="page">1h<"#));
    assert!(first_x(chart(&page, "rss")) > 500.0, "8 minutes of an hour");
}

#[tokio::test]
async fn no_two_series_share_a_colour() {
    let keys: Vec<(String, String)> = (0..30)
        .map(|i| (format!("v{}", i % 3), format!("127.0.0.1:{}", 9000 + i)))
        .collect();
    let keys: Vec<(&str, &str)> = keys.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
    let (store, _) = store_with(&keys, 2, 2e9);
    let (_, _, page) = get(&app(store), "/?range=15m").await;
    let svg = chart(&page, "rss");
    let colours: Vec<&str> = svg
        .match_indices(r#"class="series""#)
        .map(|(i, _)| {
            let stroke = section(&svg[i..], r#"stroke=""#, "\" ");
            &stroke[8..]
        })
        .collect();
    assert_eq!(colours.len(), 30);
    let distinct: std::collections::BTreeSet<&str> = colours.iter().copied().collect();
    assert_eq!(distinct.len(), 30, "{colours:?}");
}
