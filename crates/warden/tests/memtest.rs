//! `warden memtest` against real API processes: it must pass a clean build, catch the
//! chaos build's leak, enforce limits, and refuse bad usage with exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn memtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("memtest")
        .args(args)
        .env("WARDEN_LOG", "warn")
        .env_remove("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST")
        .env_remove("WARDEN_DATABASE_URL")
        .output()
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_clean_build_passes_with_a_report_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = memtest(&[
        "--duration",
        "25s",
        "--json",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["basis"], "heap");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert!(r["requests"].as_u64().unwrap() > 2_000, "{r:#}");
    let leak = &r["leak_bytes_per_request"];
    assert!(leak["low"].as_f64().unwrap() <= leak["estimate"].as_f64().unwrap());
    assert!(leak["estimate"].as_f64().unwrap() <= leak["high"].as_f64().unwrap());
    assert!(leak["high"].as_f64().unwrap() < 16.0, "{r:#}");
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(r["peak_heap_bytes"].as_u64().unwrap() > 1 << 10);
    assert_eq!(r["rounds"].as_array().unwrap().len(), 9);
    assert!(r["summary"].as_str().unwrap().ends_with("no leak"), "{r:#}");

    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("memtest.json")).unwrap()).unwrap();
    assert_eq!(saved["verdict"], "pass");
    let svg = std::fs::read_to_string(dir.path().join("memtest.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("PASS"));
}

#[test]
fn the_chaos_build_leak_is_caught_and_measured() {
    let out = memtest(&[
        "--duration",
        "20s",
        "--json",
        "--api-arg=--chaos-leak-bytes-per-request=256",
    ]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["verdict"], "fail");
    let estimate = r["leak_bytes_per_request"]["estimate"].as_f64().unwrap();
    // Every /v1 request leaks 256 B; a few requests per round (readiness, metrics)
    // are not /v1, so the measured rate is just under 256.
    assert!((200.0..=300.0).contains(&estimate), "{r:#}");
    assert!(r["summary"].as_str().unwrap().ends_with(": LEAK"), "{r:#}");
    assert!(r["reasons"][0].as_str().unwrap().contains("significant"));
}

#[test]
fn exceeding_max_rss_fails_with_the_reason() {
    let out = memtest(&["--duration", "6s", "--rounds", "4", "--max-rss", "1MiB"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("exceeds --max-rss 1.0 MiB"), "{stdout}");
}

#[test]
fn usage_and_start_up_errors_exit_2_with_the_reason() {
    for (args, needle) in [
        (vec!["--rounds", "2"], "--rounds must be at least 4"),
        (
            vec!["--bin", "/nonexistent/warden"],
            "cannot start /nonexistent/warden",
        ),
        (
            vec!["--url", "http://192.0.2.1:8080"],
            "--url must be a loopback address",
        ),
        (vec!["--pid", "1"], "--url"),
        (vec!["--url", "http://127.0.0.1:1"], "cannot reach"),
        (vec!["--api-arg=--json-max-depth=0"], "exited"),
    ] {
        let out = memtest(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
}

#[test]
fn a_running_service_is_measured_by_url_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut api = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["api", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.path())
        .env("WARDEN_LOG", "warn")
        // Exact heap readings, as the memory test arranges for APIs it starts.
        .env("_RJEM_MALLOC_CONF", "tcache:false")
        .env_remove("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST")
        .env_remove("WARDEN_DATABASE_URL")
        .spawn()
        .unwrap();
    let url = format!("http://{addr}");
    let ready = (0..400).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        reqwest::blocking::get(format!("{url}/readyz")).is_ok_and(|r| r.status() == 200)
    });
    assert!(ready, "warden api did not become ready");
    let out = memtest(&[
        "--url",
        &url,
        "--pid",
        &api.id().to_string(),
        "--duration",
        "10s",
        "--rounds",
        "4",
        "--json",
    ]);
    let still_running = api.try_wait().unwrap().is_none();
    let _ = api.kill();
    let _ = api.wait();
    let r = report(&out);
    assert!(
        still_running,
        "memtest must leave a service it did not start running"
    );
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["target"], url);
    assert_eq!(r["basis"], "heap");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{r:#}");
}

/// Alive and not a zombie.
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn interrupting_memtest_stops_the_api_it_started() {
    let mut memtest = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["memtest", "--duration", "60s"])
        .env("WARDEN_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = memtest.id();
    let children = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let mut api = Vec::new();
    for _ in 0..200 {
        api = children();
        if !api.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!api.is_empty(), "memtest started no API");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(memtest.wait().unwrap().code(), Some(2));
    std::thread::sleep(std::time::Duration::from_millis(500));
    for child in &api {
        assert!(
            !running(child),
            "API process {child} outlived the memory test"
        );
    }
}

#[test]
fn any_command_is_started_on_a_free_port_and_its_tree_measured() {
    // Warden's API started as any program would be: by a command line with {port},
    // through a shell so the API is a child (a descendant), not the started process.
    let data = tempfile::tempdir().unwrap();
    let command = format!(
        "sh -c 'exec \"$0\" api --listen 127.0.0.1:$PORT --data-dir \"$1\"' {} {}",
        env!("CARGO_BIN_EXE_warden"),
        data.path().display()
    );
    let out = memtest(&[
        "--command",
        &command,
        "--ready",
        "/readyz",
        "--duration",
        "10s",
        "--rounds",
        "4",
        "--json",
    ]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["basis"], "heap");
    assert!(
        r["signal"].as_str().unwrap().contains("warden_heap_bytes"),
        "the report says what it judged: {r:#}"
    );
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 4 << 20, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
}

#[test]
fn a_command_that_cannot_start_is_a_start_up_error_naming_why() {
    let out = memtest(&["--command", "sh -c 'echo no such module >&2; exit 3'"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exited") && stderr.contains("no such module"),
        "{stderr}"
    );

    let out = memtest(&["--command", "/no/such/program --port {port}"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot start \"/no/such/program\""),
        "{stderr}"
    );

    let out = memtest(&["--command", "node 'server.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unclosed quote"), "{stderr}");

    let out = memtest(&["--command", "sleep 30", "--bin", "x"]);
    assert_eq!(out.status.code(), Some(2), "--command and --bin conflict");
}
