//! The scraper against real HTTP servers on loopback: parsing, derived traffic series,
//! `up = 0` for a target that does not answer, RSS from `/proc`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_monitor::scrape::{Scraper, Target, series};

/// Serves whatever `body` holds at /metrics.
async fn server(body: Arc<Mutex<String>>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

/// An exposition with `ok` 200s and `failed` 500s on /v1/items (all in the 10 ms
/// bucket for 200s, 1 s bucket for 500s) plus /metrics traffic that must be ignored.
fn exposition(ok: u64, failed: u64, heap: u64) -> String {
    let total = ok + failed;
    format!(
        "# TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes 52428800\n\
         # TYPE warden_heap_bytes gauge\n\
         warden_heap_bytes{{kind=\"allocated\"}} {heap}\n\
         warden_heap_bytes{{kind=\"resident\"}} 40000000\n\
         # TYPE warden_memory_limit_bytes gauge\n\
         warden_memory_limit_bytes 1073741824\n\
         # TYPE http_server_request_duration_seconds histogram\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"200\",le=\"0.01\"}} {ok}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"200\",le=\"1\"}} {ok}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"200\",le=\"+Inf\"}} {ok}\n\
         http_server_request_duration_seconds_sum{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"200\"}} 1\n\
         http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"200\"}} {ok}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"500\",le=\"0.01\"}} 0\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"500\",le=\"1\"}} {failed}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"500\",le=\"+Inf\"}} {failed}\n\
         http_server_request_duration_seconds_sum{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"500\"}} 1\n\
         http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/v1/items\",http_response_status_code=\"500\"}} {failed}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/metrics\",http_response_status_code=\"200\",le=\"0.01\"}} {total}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/metrics\",http_response_status_code=\"200\",le=\"1\"}} {total}\n\
         http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/metrics\",http_response_status_code=\"200\",le=\"+Inf\"}} {total}\n"
    )
}

#[tokio::test]
async fn derives_rate_errors_and_quantiles_between_scrapes() {
    let body = Arc::new(Mutex::new(exposition(0, 0, 1000)));
    let addr = server(body.clone()).await;
    let target = Target {
        instance: addr.clone(),
        url: format!("http://{addr}/metrics"),
        release: "v1".into(),
        pid: Some(std::process::id()),
    };
    let mut scraper = Scraper::new(
        Duration::from_secs(2),
        &["http_server_request_duration_seconds_bucket".to_owned()],
    )
    .unwrap();
    let first = scraper.scrape_all(std::slice::from_ref(&target)).await;
    assert!(first[0].up, "{:?}", first[0].error);
    assert_eq!(first[0].traffic, None, "no rate from a single scrape");
    assert_eq!(first[0].memory.heap_allocated, Some(1000.0));
    assert_eq!(first[0].memory.limit, Some(1_073_741_824.0));
    let own_rss = first[0].memory.rss.unwrap();
    assert!(
        own_rss > 1e6 && own_rss != 52_428_800.0,
        "RSS comes from /proc for a known pid"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    *body.lock().unwrap() = exposition(90, 10, 2000);
    let second = scraper.scrape_all(std::slice::from_ref(&target)).await;
    let traffic = second[0].traffic.expect("traffic between two scrapes");
    assert!((traffic.error_ratio - 0.1).abs() < 1e-9, "{traffic:?}");
    assert!(
        traffic.request_rate > 100.0 && traffic.request_rate < 250.0,
        "{traffic:?}"
    );
    // 90 requests under 10 ms and 10 between 10 ms and 1 s: the median is in the
    // first bucket, the 99th percentile 90% of the way through the second.
    assert!(traffic.p50.unwrap() <= 0.01);
    let p99 = traffic.p99.unwrap();
    assert!((p99 - (0.01 + 0.99 * 0.9)).abs() < 1e-6, "p99 {p99}");

    let names: Vec<&str> = second[0].samples.iter().map(|s| s.name.as_str()).collect();
    for name in [
        series::UP,
        series::RSS,
        series::PROC_RSS,
        series::HEAP,
        series::REQUEST_RATE,
        series::ERROR_RATIO,
        series::LATENCY_P50,
        series::LATENCY_P99,
        "http_server_request_duration_seconds_bucket",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let bucket = second[0]
        .samples
        .iter()
        .find(|s| {
            s.name.ends_with("_bucket") && s.labels.get("le").map(String::as_str) == Some("+Inf")
        })
        .unwrap();
    assert_eq!(bucket.labels["release"], "v1");
    assert_eq!(bucket.labels["instance"], addr);

    // A restart resets the counters: no negative rate, just no traffic figure.
    *body.lock().unwrap() = exposition(1, 0, 500);
    let third = scraper.scrape_all(std::slice::from_ref(&target)).await;
    assert_eq!(third[0].traffic, None);
}

#[tokio::test]
async fn a_silent_target_is_recorded_down_not_dropped() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let target = Target {
        instance: addr.clone(),
        url: format!("http://{addr}/metrics"),
        release: "v1".into(),
        pid: Some(std::process::id()),
    };
    let mut scraper = Scraper::new(Duration::from_secs(1), &[]).unwrap();
    let out = scraper.scrape_all(&[target]).await;
    assert!(!out[0].up);
    assert!(out[0].error.as_deref().unwrap().contains("cannot reach"));
    let up = out[0]
        .samples
        .iter()
        .find(|s| s.name == series::UP)
        .unwrap();
    assert_eq!(up.value, 0.0);
    assert!(
        out[0].memory.rss.is_some(),
        "RSS of a process Warden runs is read even when it is silent"
    );
}

#[tokio::test]
async fn a_body_without_metrics_is_a_failed_scrape() {
    let body = Arc::new(Mutex::new("this is { not metrics\n".to_owned()));
    let addr = server(body).await;
    let mut scraper = Scraper::new(Duration::from_secs(1), &[]).unwrap();
    let out = scraper
        .scrape_all(&[Target {
            instance: addr.clone(),
            url: format!("http://{addr}/metrics"),
            release: "v1".into(),
            pid: None,
        }])
        .await;
    assert!(!out[0].up);
    assert!(
        out[0].error.as_deref().unwrap().contains("no metrics"),
        "{:?}",
        out[0].error
    );
    assert!(
        out[0]
            .samples
            .iter()
            .all(|s| s.name == series::UP || s.name == series::SCRAPE_DURATION)
    );
}
