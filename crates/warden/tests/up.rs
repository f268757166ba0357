//! `warden up` end to end: a release that leaks under real traffic is caught by the
//! control plane, which names the release, the rate and the forecast in a signed
//! webhook, records the transition in its event log, shows it on the console, and
//! resolves it once the leak stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod support;

use support::{Traffic, Up, child_of, wait_ready};
use warden_monitor::notify::{SIGNATURE_HEADER, verify_signature};
use warden_telemetry::probe::{get_on, until_closed};

const SECRET: &str = "test-webhook-secret";

/// Every webhook received: (signature header, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver keeping every (signature header, body) it gets.
async fn receiver() -> (String, Received) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let signature = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    keep.lock().unwrap().push((signature, body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Waits for a webhook whose first alert has `alertname` and `status`.
async fn wait_for_hook(
    got: &Received,
    alertname: &str,
    status: &str,
    within: Duration,
) -> (String, Vec<u8>, serde_json::Value) {
    let deadline = Instant::now() + within;
    loop {
        let found = got.lock().unwrap().iter().find_map(|(sig, body)| {
            let json: serde_json::Value = serde_json::from_slice(body).ok()?;
            let alert = &json["alerts"][0];
            (alert["labels"]["alertname"] == alertname && alert["status"] == status)
                .then(|| (sig.clone(), body.clone(), json))
        });
        if let Some(found) = found {
            return found;
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
                .collect();
            panic!("no {status} {alertname} webhook within {within:?}; received: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_release_is_alerted_named_recorded_and_resolved() {
    let (hook, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[monitor]\nscrape_interval = \"1s\"\n\n\
         [alerts.leak]\nwindow = \"60s\"\nfor = \"5s\"\nmemory_limit = 4000000000\n\n\
         [[notifiers]]\ntype = \"webhook\"\nname = \"on-call\"\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n"
    );
    // Config by environment: the API child must not read up's file.
    let (_up, api, console) = Up::start(
        dir.path(),
        &config,
        true,
        &[
            "--replicas",
            "1",
            "--release",
            "v2-leaky",
            "--api-arg=--chaos-leak-bytes-per-request=16384",
        ],
    );

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    wait_ready(&client, &format!("{base}/readyz")).await;

    // Real traffic: one user reading and writing items until told to stop; about
    // 200 requests/s, a leak of tens of MB a minute, not gigabytes.
    let traffic = Traffic::start(&base, 1, Duration::from_millis(5)).await;

    let (signature, body, json) =
        wait_for_hook(&got, "MemoryLeak", "firing", Duration::from_secs(150)).await;
    assert!(
        verify_signature(
            SECRET,
            &signature,
            &body,
            SystemTime::now(),
            Duration::from_secs(300)
        ),
        "the webhook is signed with the configured secret"
    );
    let alert = &json["alerts"][0];
    assert_eq!(alert["labels"]["release"], "v2-leaky");
    let instance = alert["labels"]["instance"].as_str().unwrap();
    assert!(
        instance.starts_with("127.0.0.1:") && instance != format!("127.0.0.1:{api}"),
        "the alert names the instance behind the proxy: {instance}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("memory leak in release v2-leaky"),
        "{summary}"
    );
    assert!(
        summary.contains("MB/min") && summary.contains("exhausts"),
        "{summary}"
    );
    assert!(
        alert["labels"]["evidence"]
            .as_str()
            .unwrap()
            .contains("heap"),
        "{alert}"
    );

    // The console shows it and the event log has the transition.
    let console = format!("http://127.0.0.1:{console}");
    let alerts: serde_json::Value = client
        .get(format!("{console}/api/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(alerts.to_string().contains("v2-leaky"), "{alerts}");
    let page = client
        .get(format!("{console}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("memory leak in release v2-leaky"),
        "the dashboard lists the alert"
    );

    // The leak stops with the traffic: the alert resolves.
    assert!(traffic.stop().await.sent > 100);
    let (_, _, resolved) =
        wait_for_hook(&got, "MemoryLeak", "resolved", Duration::from_secs(150)).await;
    assert_eq!(resolved["alerts"][0]["labels"]["release"], "v2-leaky");
    let store = warden_store::Store::open(&dir.path().join("data/control.db")).unwrap();
    let kinds: Vec<String> = store
        .events(&warden_store::EventFilter {
            kind_prefix: Some("alert.".into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter(|e| e.payload["alert"] == "MemoryLeak")
        .map(|e| e.kind)
        .collect();
    // Pending may lapse (cancelled) while the trend is still borderline; it fires
    // once and resolves once.
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("alert.pending"),
        "{kinds:?}"
    );
    let decisive: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| *k == "alert.firing" || *k == "alert.resolved")
        .collect();
    assert_eq!(decisive, ["alert.firing", "alert.resolved"], "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_recorded_and_alerted_as_down() {
    let (hook, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[monitor]\nscrape_interval = \"1s\"\n\n[alerts.target_down]\nfor = \"2s\"\n\n\
         [[notifiers]]\ntype = \"webhook\"\nname = \"on-call\"\nurl = \"{hook}\"\n"
    );
    let (up, api, console) = Up::start(
        dir.path(),
        &config,
        false,
        &[
            "--replicas",
            "1",
            "--release",
            "v1",
            "--api-arg=--token-ttl=1h",
        ],
    );
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{api}/readyz");
    wait_ready(&client, &ready).await;
    let first = child_of(up.0.id()).expect("warden up runs the API as its child");
    // Wait until the control plane scrapes the instance (it publishes it as a target
    // once it has seen it ready itself).
    let store = warden_store::Store::open(&dir.path().join("data/control.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .query("up", &[("release", "v1")], 0, i64::MAX)
        .unwrap()
        .iter()
        .all(|s| s.points.iter().all(|(_, v)| *v < 1.0))
    {
        assert!(Instant::now() < deadline, "the instance is never scraped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stop the instance hard and keep it stopped long enough to count as down, then
    // let the supervisor bring it back.
    Command::new("kill")
        .args(["-STOP", &first.to_string()])
        .status()
        .unwrap();
    let (_, _, down) = wait_for_hook(&got, "TargetDown", "firing", Duration::from_secs(30)).await;
    assert_eq!(down["alerts"][0]["labels"]["release"], "v1");
    // The control plane's own /metrics counts it.
    let metrics = client
        .get(format!("http://127.0.0.1:{console}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("warden_control_scrapes_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_alerts_active{phase=\"firing\"} 1"),
        "{metrics}"
    );
    Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    wait_ready(&client, &ready).await;
    let second = child_of(up.0.id()).expect("a new instance");
    assert_ne!(first, second, "the instance was restarted");
    wait_for_hook(&got, "TargetDown", "resolved", Duration::from_secs(30)).await;

    let store = warden_store::Store::open(&dir.path().join("data/control.db")).unwrap();
    let kinds: Vec<String> = store
        .events(&warden_store::EventFilter {
            kind_prefix: Some("instance.".into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["instance.started", "instance.exited", "instance.started"]
    );
}

/// Behind `warden up`'s proxy every connection to an instance comes from the proxy;
/// the login throttle must still tell users apart. An address hammering bob's
/// account (claiming other addresses in X-Forwarded-For, and presenting a forged
/// proxy secret) is throttled on every instance, and a user on another address
/// still logs in to ada and to bob with the right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_hammering_logins_through_the_proxy_locks_no_one_else_out() {
    let dir = tempfile::tempdir().unwrap();
    let (up, api, _console) = Up::start(dir.path(), "", false, &["--replicas", "2"]);
    let base = format!("http://127.0.0.1:{api}");
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (attacker, user) = (from([127, 0, 0, 2]), from([127, 0, 0, 3]));
    wait_ready(&user, &format!("{base}/readyz")).await;
    let password = "correct horse battery";
    for email in ["ada@example.com", "bob@example.com"] {
        let r = user
            .post(format!("{base}/v1/users"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let login = |client: &reqwest::Client, email: &str, password: &str| {
        client
            .post(format!("{base}/v1/sessions"))
            .json(&serde_json::json!({"email": email, "password": password}))
    };

    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for n in 0..40u8 {
        let r = login(&attacker, "bob@example.com", "wrong password!!")
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("x-warden-proxy-secret", "0123456789abcdef0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert!(
            !r.headers().contains_key("x-warden-proxy-secret"),
            "a response carried the proxy secret"
        );
        *statuses.entry(r.status().as_u16()).or_default() += 1;
    }
    // 5 failures for bob from this address per instance, then 429 on each.
    assert_eq!(statuses.get(&401), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&30), "{statuses:?}");

    // Another address logs in, to either account, on both instances.
    for email in [
        "ada@example.com",
        "ada@example.com",
        "bob@example.com",
        "bob@example.com",
    ] {
        let r = login(&user, email, password).send().await.unwrap();
        assert_eq!(r.status(), 201, "{email}: {}", r.text().await.unwrap());
    }
    // The attacker's address stays refused for bob, on both instances.
    for _ in 0..2 {
        let r = login(&attacker, "bob@example.com", password)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
    }

    // The instances got the secret in their environment, not on their command line.
    let instance = child_of(up.0.id()).expect("warden up runs the API as its child");
    let environ = std::fs::read(format!("/proc/{instance}/environ")).unwrap();
    let secret = environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"WARDEN_PROXY_SECRET="))
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .expect("the instance has WARDEN_PROXY_SECRET");
    assert_eq!(secret.len(), 64);
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{instance}/cmdline")).unwrap())
            .into_owned();
    assert!(!cmdline.contains(&secret), "{cmdline}");
}

/// Connections that send nothing or half a request head, or idle after a response,
/// are closed by every server `warden up` runs: the front proxy, the console, and
/// the API instance, which gets the deadlines from `warden up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_are_closed_by_the_proxy_the_console_and_the_instances() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (up, api, console) = Up::start(
        dir.path(),
        "",
        false,
        &[
            "--replicas",
            "1",
            "--header-read-timeout",
            "300ms",
            "--idle-timeout",
            "1s",
        ],
    );
    let (header_read, idle) = (Duration::from_millis(300), Duration::from_secs(1));
    let early = Duration::from_millis(10);
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{api}/readyz")).await;
    let pid = child_of(up.0.id()).expect("warden up runs the API as its child");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let instance = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("no --listen in {args:?}"))
        .clone();

    for (what, addr) in [
        ("proxy", format!("127.0.0.1:{api}")),
        ("console", format!("127.0.0.1:{console}")),
        ("instance", instance),
    ] {
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let after = until_closed(&mut silent, what).await;
        assert!(
            after >= header_read - early,
            "{what}: closed after {after:?}"
        );

        let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let after = until_closed(&mut half, what).await;
        assert!(
            after >= header_read - early,
            "{what}: closed after {after:?}"
        );

        let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert_eq!(
            get_on(&mut kept, "/healthz", what)
                .await
                .lines()
                .next()
                .unwrap_or_default(),
            "HTTP/1.1 200 OK",
            "{what}"
        );
        tokio::time::sleep(header_read * 2).await;
        assert_eq!(
            get_on(&mut kept, "/healthz", what)
                .await
                .lines()
                .next()
                .unwrap_or_default(),
            "HTTP/1.1 200 OK",
            "{what}: a keep-alive connection outlives the header timeout"
        );
        let after = until_closed(&mut kept, what).await;
        assert!(after >= idle - early, "{what}: closed after {after:?}");
    }
    // Requests through the proxy a whole idle timeout apart are all served: the
    // proxy drops its unused connections to the instance before the instance does.
    for _ in 0..3 {
        let r = client
            .get(format!("http://127.0.0.1:{api}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(idle).await;
    }
}
