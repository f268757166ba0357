//! The `warden` binary as a real child process: configuration, signals, logs,
//! durability, and schemathesis against its OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const PASSWORD: &str = "correct horse battery staple";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn warden(args: &[&str]) -> Command {
    let mut cmd = Command::new(WARDEN);
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("WARDEN_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A `warden api` child on a free port with its own data dir.
struct Api {
    child: Child,
    addr: SocketAddr,
    base: String,
}

impl Api {
    fn start(data_dir: &Path) -> Self {
        Self::start_cmd(data_dir, "api")
    }

    fn start_cmd(data_dir: &Path, subcommand: &str) -> Self {
        let addr = free_addr();
        let child = warden(&[
            subcommand,
            "--listen",
            &addr.to_string(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
        .args(if subcommand == "up" {
            vec!["--console".to_owned(), free_addr().to_string()]
        } else {
            Vec::new()
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let api = Self {
            child,
            addr,
            base: format!("http://{addr}"),
        };
        api.wait_ready();
        api
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(format!("{}/readyz", self.base))
                && r.status() == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("warden api did not become ready");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return (status, stderr);
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn post(&self, path: &str, body: &Value, token: Option<&str>) -> reqwest::blocking::Response {
        let client = reqwest::blocking::Client::new();
        let mut r = client.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    }

    fn user(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": PASSWORD});
        assert_eq!(self.post("/v1/users", &creds, None).status(), 201);
        let session: Value = self.post("/v1/sessions", &creds, None).json().unwrap();
        session["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn api_help_documents_every_setting() {
    let out = run(&mut warden(&["api", "--help"]));
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for setting in [
        "listen",
        "data-dir",
        "database-url",
        "config",
        "db-max-connections",
        "token-ttl",
        "session-cache-ttl",
        "body-limit-bytes",
        "json-max-depth",
        "request-timeout",
        "max-concurrent-requests",
        "password-hash-concurrency",
        "login-failures-per-account",
        "login-failures-per-address",
        "login-throttle-window",
        "shutdown-timeout",
        "memory-log-interval",
        "chaos-leak-bytes-per-request",
    ] {
        assert!(
            help.contains(&format!("--{setting}")),
            "--{setting} missing from help"
        );
        let env = format!("WARDEN_{}", setting.to_uppercase().replace('-', "_"));
        assert!(help.contains(&env), "{env} missing from help");
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"));
}

#[test]
fn invalid_settings_fail_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(&mut warden(&[
        "api",
        "--data-dir",
        data,
        "--json-max-depth",
        "0",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("json-max-depth"));

    let out = run(warden(&["api", "--data-dir", data]).env("WARDEN_LISTEN", "nowhere"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let config = dir.path().join("warden.toml");
    std::fs::write(&config, "request-timeout = \"soon\"\n").unwrap();
    let out = run(&mut warden(&[
        "api",
        "--data-dir",
        data,
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("request-timeout"));
}

/// Sends a POST whose body is not finished yet, so the request is in flight.
fn half_sent_post(addr: SocketAddr, token: &str) -> (TcpStream, Vec<u8>) {
    let body = br#"{"title":"in flight","data":[1,2,3]}"#;
    let (head, rest) = body.split_at(12);
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/items HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(head).unwrap();
    stream.flush().unwrap();
    (stream, rest.to_vec())
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    let token = api.user("ada@example.com");
    let (mut stream, rest) = half_sent_post(api.addr, &token);
    std::thread::sleep(Duration::from_millis(200));
    api.signal("-TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown has begun...
    assert!(TcpStream::connect_timeout(&api.addr, Duration::from_secs(1)).is_err());
    // ...but the request already in flight completes.
    stream.write_all(&rest).unwrap();
    let mut response = String::new();
    BufReader::new(&stream).read_line(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let (status, stderr) = api.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("finishing in-flight requests"));
}

#[test]
fn logs_are_json_lines_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.signal("-INT");
    let (status, stderr) = api.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "serving the API"));
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
}

#[test]
fn writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    let token = api.user("ada@example.com");
    let item: Value = api
        .post(
            "/v1/items",
            &json!({"title": "durable", "data": {"n": 1}}),
            Some(&token),
        )
        .json()
        .unwrap();
    api.signal("-KILL");
    let (status, _) = api.wait_exit(Duration::from_secs(5));
    assert!(!status.success());
    let api = Api::start(dir.path());
    let got: Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/items/{}", api.base, item["id"]))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got, item);
}

#[test]
fn up_serves_the_api_with_data_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("warden-data");
    let api = Api::start_cmd(&data, "up");
    api.user("ada@example.com");
    assert!(data.join("api/api.sqlite3").exists(), "the API's database");
    assert!(
        data.join("control.db").exists(),
        "the control plane's store"
    );
    // kill -9 of `warden up` must not leave its API instance running.
    let pid = api.child.id();
    let port = api.addr;
    drop(api);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(port).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the API outlived `warden up` (pid {pid})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[test]
fn schemathesis_finds_no_server_errors_or_schema_violations() {
    if Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !ci(),
            "CI=true but schemathesis is not installed (pip install schemathesis)"
        );
        eprintln!("skipping: schemathesis is not installed (pip install schemathesis)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    let token = api.user("schemathesis@example.com");
    let out = Command::new("schemathesis")
        .current_dir(dir.path())
        .args(["run", &format!("{}/openapi.json", api.base)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Logging out would revoke the token the rest of the run depends on;
        // revocation has its own tests.
        .args(["--exclude-path", "/v1/sessions/current"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
        ])
        .args([
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--generation-database",
            "none",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
}

#[test]
fn the_chaos_switch_is_loud_and_visible_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let child = warden(&[
        "api",
        "--listen",
        &addr.to_string(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .env("WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST", "64")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let api = Api {
        child,
        addr,
        base: format!("http://{addr}"),
    };
    api.wait_ready();
    let metrics = reqwest::blocking::get(format!("{}/metrics", api.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("warden_chaos_leak_bytes_per_request 64"),
        "{metrics}"
    );
    api.signal("-TERM");
    let (status, stderr) = api.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    let warning = stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("CHAOS"))
        })
        .unwrap_or_else(|| panic!("no CHAOS warning in {stderr}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["bytes_per_request"], 64);
}
