//! The console's pages in a real browser, headless Chromium (Debian's `chromium`
//! package): the dashboard of `warden up` serving real traffic, and the status page
//! with an open incident whose title tries to inject markup.
//!
//! The screenshots are kept for a look by eye: `target/test-output/dashboard.png`
//! (laptop), `dashboard-phone.png`, `status-page.png` and `status-page-phone.png`,
//! with the DOM Chromium rendered beside them.
//! Without Chromium the test fails, unless WARDEN_TEST_ALLOW_SKIP=1 (never under
//! CI=true), as scripts/test does for every tool it needs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const CHROMIUM: &str = "chromium";
const PASSWORD: &str = "correct horse battery staple";
const CHARTS: [&str; 5] = ["rss", "heap", "request-rate", "error-ratio", "latency"];

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether Chromium can run here; panics when it must (CI, or no permission to
/// skip).
fn chromium_available() -> bool {
    if Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let allow_skip = std::env::var("WARDEN_TEST_ALLOW_SKIP").is_ok_and(|v| v == "1");
    assert!(
        !ci && allow_skip,
        "Chromium is not installed (Debian package `chromium`; scripts/test installs it \
         when run as root). Set WARDEN_TEST_ALLOW_SKIP=1 to skip this test outside CI."
    );
    eprintln!("skipping: chromium is not installed (WARDEN_TEST_ALLOW_SKIP=1)");
    false
}

/// `warden up` as a child process, stopped with SIGTERM (so it stops its API
/// instance too) when dropped.
struct Up {
    child: Child,
    api: String,
    console: String,
    log: PathBuf,
}

impl Up {
    fn start(data_dir: &Path, log: PathBuf) -> Self {
        let (api, console) = (free_addr(), free_addr());
        let mut cmd = Command::new(WARDEN);
        for (key, _) in std::env::vars() {
            if key.starts_with("WARDEN_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(["up", "--listen", &api.to_string()])
            .args(["--console", &console.to_string()])
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--scrape-interval", "1s"])
            .env("WARDEN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let up = Self {
            child,
            api: format!("http://{api}"),
            console: format!("http://{console}"),
            log,
        };
        up.wait_for(&format!("{}/readyz", up.api));
        up.wait_for(&format!("{}/api/alerts", up.console));
        up
    }

    fn wait_for(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::blocking::get(url).is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{url} did not answer 200 within 30 s; log:\n{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user session driving the API from a thread until stopped: item writes and
/// reads, what the dashboard's traffic charts show.
struct Traffic {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(api: &str) -> Self {
        let client = reqwest::blocking::Client::new();
        let creds = json!({"email": "dashboard@example.com", "password": PASSWORD});
        let created = client
            .post(format!("{api}/v1/users"))
            .json(&creds)
            .send()
            .unwrap();
        assert_eq!(created.status(), 201);
        let session: serde_json::Value = client
            .post(format!("{api}/v1/sessions"))
            .json(&creds)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let token = session["token"].as_str().unwrap().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, requests, api) = (stop.clone(), requests.clone(), api.to_owned());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let response = if n.is_multiple_of(4) {
                        client
                            .post(format!("{api}/v1/items"))
                            .bearer_auth(&token)
                            .json(&json!({"title": format!("item {n}"), "data": {"n": n}}))
                            .send()
                    } else {
                        client
                            .get(format!("{api}/v1/items"))
                            .bearer_auth(&token)
                            .send()
                    };
                    if response.is_ok_and(|r| r.status().is_success()) {
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    // A steady, modest rate: the charts need traffic, not a benchmark.
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The laptop rendering of each chart in a page: the `<svg class="chart
/// chart-wide" ...>...</svg>` inside `id="chart-{slug}"`.
fn wide_chart<'a>(page: &'a str, slug: &str) -> Option<&'a str> {
    let card = &page[page.find(&format!(r#"id="chart-{slug}""#))?..];
    let card = &card[..card.find("</article>")?];
    let svg = &card[card.find("chart chart-wide")?..];
    Some(&svg[..svg.find("</svg>")?])
}

/// The number of points of each data line of a chart.
fn line_points(svg: &str) -> Vec<usize> {
    svg.match_indices(r#"class="series" data-points=""#)
        .filter_map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// Whether every chart of the page draws a line of at least two points.
fn every_chart_has_lines(page: &str) -> bool {
    CHARTS.iter().all(|slug| {
        wide_chart(page, slug).is_some_and(|svg| line_points(svg).iter().any(|&n| n >= 2))
    })
}

/// Runs headless Chromium on `url` with `args`, in a fresh profile, within a minute.
fn chromium(url: &str, window: &str, args: &[String]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={window}"))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the pipes on threads so a large DOM cannot block Chromium.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

fn screenshot(url: &str, window: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    let out = chromium(url, window, &[format!("--screenshot={}", path.display())]);
    let png = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}); chromium said:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    let expected: Vec<u32> = window.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!([width, height], expected[..], "screenshot size");
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    println!("dashboard screenshot: {}", path.display());
}

/// `<target>/test-output`, kept after the test.
fn output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn chromium_renders_the_dashboard_of_a_running_warden_with_data_in_every_chart() {
    if !chromium_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(&data.path().join("data"), data.path().join("warden-up.log"));
    let traffic = Traffic::start(&up.api);

    // Scrapes every second: wait until each chart has a line, while traffic runs.
    let page_url = format!("{}/", up.console);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut page = String::new();
    while Instant::now() < deadline {
        page = reqwest::blocking::get(&page_url)
            .and_then(reqwest::blocking::Response::text)
            .unwrap_or_default();
        if every_chart_has_lines(&page) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // A few more scrapes so the lines have some length.
    std::thread::sleep(Duration::from_secs(3));
    let requests = traffic.stop();
    assert!(requests > 100, "only {requests} requests succeeded");
    assert!(
        every_chart_has_lines(&page),
        "the dashboard never showed data in all five charts; log:\n{}\npage:\n{page}",
        up.log_text()
    );

    let out_dir = output_dir();
    let dom = chromium(&page_url, "1280,2000", &["--dump-dom".to_owned()]);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed:\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    std::fs::write(out_dir.join("dashboard-dom.html"), &dom).unwrap();
    for slug in CHARTS {
        let svg = wide_chart(&dom, slug)
            .unwrap_or_else(|| panic!("chart {slug} missing from the rendered DOM"));
        let points = line_points(svg);
        assert!(
            points.iter().any(|&n| n >= 2),
            "chart {slug} has no data line in the DOM: {points:?}"
        );
        assert!(svg.contains(r#" d="M"#), "chart {slug}: no path");
        assert!(!svg.contains("No data in this range"), "chart {slug}");
    }
    for heading in ["Active alerts", "Alert history", "Instances"] {
        assert!(dom.contains(heading), "{heading} missing from the DOM");
    }
    assert!(
        dom.contains(r#"class="badge up""#),
        "the instance is shown up"
    );
    assert!(
        dom.contains("instance.started"),
        "the supervisor's event is listed"
    );

    // The shortest range, so the few seconds of data fill the charts.
    let page_url = format!("{page_url}?range=15m");
    screenshot(&page_url, "1280,2000", &out_dir.join("dashboard.png"));
    screenshot(&page_url, "390,1800", &out_dir.join("dashboard-phone.png"));
}

#[test]
fn chromium_renders_the_status_page_with_an_open_incident_escaped() {
    if !chromium_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let up = Up::start(&data_dir, data.path().join("warden-up.log"));
    let console = up.console.trim_start_matches("http://").to_owned();
    // An incident whose title tries to run a script.
    let opened = Command::new(WARDEN)
        .args([
            "incident",
            "open",
            "Sign-in fails <img src=x onerror=\"document.title='pwned'\">",
            "--component",
            "authentication=major_outage",
        ])
        .env("WARDEN_CONSOLE", &console)
        .env("WARDEN_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );

    let url = format!("{}/status", up.console);
    let dom = chromium(&url, "390,1600", &["--dump-dom".to_owned()]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    std::fs::write(output_dir().join("status-page.html"), &dom).unwrap();
    assert!(
        dom.contains("Major System Outage"),
        "the overall state: {dom}"
    );
    assert!(
        dom.contains("Sign-in fails &lt;img"),
        "the title is shown as text: {dom}"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "the title became an element: {dom}"
    );
    assert!(!dom.contains("<title>pwned"), "a script ran");
    assert!(dom.contains("Investigating"), "{dom}");
    assert!(
        dom.matches("uptime").count() >= 3,
        "uptime for every component: {dom}"
    );
    screenshot(
        &url,
        "390,1600",
        &output_dir().join("status-page-phone.png"),
    );
    screenshot(&url, "1280,1200", &output_dir().join("status-page.png"));
}
