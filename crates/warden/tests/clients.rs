//! `warden up` counts the users its proxy serves: distinct bearer tokens (else
//! addresses) per window on the console's /metrics, and every window in the store,
//! the last, partial one written at shutdown, for "users affected between A and B".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{Up, wait_ready};

/// The value of an unlabelled sample in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_counts_distinct_users_on_metrics_and_stores_their_windows() {
    let dir = tempfile::tempdir().unwrap();
    // Two-second windows so one ends soon; an objective of 1 ns makes every answer
    // slow, so every user is affected (with the default, 500 ms, none would be).
    let (mut up, api, console) = Up::start(
        dir.path(),
        "",
        false,
        &[
            "--replicas",
            "1",
            "--client-window",
            "2s",
            "--latency-objective",
            "1ns",
        ],
    );
    let started_ms = warden_store::now_ms();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    wait_ready(&client, &format!("{base}/readyz")).await;
    let tokens = ["token-a", "token-b", "token-c", "token-d", "token-e"];

    // Rounds of every user (five tokens, and the address of this test's requests
    // without one) until a whole window of them has ended and shows on /metrics.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        for token in tokens {
            // An unknown token is a 401 from the API: still a user, not affected
            // by a failure (only by the 1 ns objective).
            let response = client
                .get(format!("{base}/v1/items"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
        }
        assert!(
            client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let text = client
            .get(format!("http://127.0.0.1:{console}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if gauge(&text, "warden_proxy_clients") == Some(6.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "warden_proxy_clients never showed 6 users:\n{}",
            text.lines()
                .filter(|l| l.contains("warden_proxy_clients"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(gauge(&metrics, "warden_proxy_clients_affected"), Some(6.0));

    // A clean stop writes the last, partial window too.
    Command::new("kill")
        .arg("-TERM")
        .arg(up.0.id().to_string())
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || {
        let status = up.0.wait().unwrap();
        (up, status)
    });
    let (up, status) = tokio::time::timeout(Duration::from_secs(30), exit)
        .await
        .expect("warden up stops on SIGTERM")
        .unwrap();
    // Reaped: its Drop must not signal the pid again.
    std::mem::forget(up);
    assert!(status.success(), "{status}");

    let store = warden_store::Store::open(&dir.path().join("data/control.db")).unwrap();
    let seen = store
        .users_between(started_ms, warden_store::now_ms())
        .unwrap();
    assert_eq!((seen.clients, seen.affected), (6, 6), "{seen:?}");
    assert!(seen.windows >= 2, "{seen:?}");
    assert_eq!(seen.ratio(), Some(1.0));
    // Every window is at most two seconds, aligned to the clock.
    for window in store.client_windows(started_ms, i64::MAX).unwrap() {
        assert_eq!(window.start_ms % 2000, 0, "{window:?}");
        assert!(window.end_ms - window.start_ms <= 2000, "{window:?}");
    }
    // The key that names users is kept for the next start, owner-only.
    let key = dir.path().join("data/client-key");
    assert_eq!(std::fs::read_to_string(&key).unwrap().len(), 64);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
