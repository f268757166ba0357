//! `warden up`'s data directory as the real binary leaves it: owner-only whatever
//! the umask, and held by one `warden up` at a time, whose crash the next one records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{free_port, wait_ready};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// `warden ARGS` under `umask 000`, so nothing but Warden's own modes keeps a
/// file private; no WARDEN_* variable of the test's environment leaks in. Stderr
/// goes to `stderr`.
fn warden_umask_000(args: &[&str], stderr: &Path) -> Child {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", WARDEN])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    for (key, _) in std::env::vars() {
        if key.starts_with("WARDEN_") {
            command.env_remove(key);
        }
    }
    command.env("WARDEN_LOG", "warn").spawn().unwrap()
}

/// A running `warden up` on free ports.
struct Running {
    child: Child,
    api: String,
    console: u16,
    stderr: PathBuf,
}

impl Running {
    fn start(data: &Path, stderr: PathBuf) -> Self {
        let (api, console) = (free_port(), free_port());
        let child = warden_umask_000(
            &[
                "up",
                "--listen",
                &format!("127.0.0.1:{api}"),
                "--console",
                &format!("127.0.0.1:{console}"),
                "--data-dir",
                data.to_str().unwrap(),
                "--replicas",
                "1",
                "--release",
                "v1",
            ],
            &stderr,
        );
        Self {
            child,
            api: format!("http://127.0.0.1:{api}"),
            console,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        signal("-TERM", self.child.id());
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "exit {status:?}: {}", self.stderr());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal("-TERM", self.child.id());
            let _ = wait_exit(&mut self.child, Duration::from_secs(15));
        }
    }
}

fn signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("pid {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every entry under `root` (itself included) with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.clone(),
            meta.permissions().mode() & 0o7777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

/// Directories must be 0700 and files 0600; a stored release binary, which its
/// owner runs, 0500. Returns the relative paths of the files seen.
fn assert_owner_only(root: &Path, when: &str) -> Vec<String> {
    let entries = modes(root);
    let offenders: Vec<String> = entries
        .iter()
        .filter(|(path, mode, dir)| {
            let binary = path
                .parent()
                .and_then(Path::parent)
                .map(|p| p.ends_with("releases"))
                == Some(true)
                && path.file_name().is_some_and(|n| n == "warden");
            let wanted = if *dir {
                0o700
            } else if binary {
                0o500
            } else {
                0o600
            };
            *mode != wanted
        })
        .map(|(path, mode, dir)| {
            format!(
                "{} {} is {mode:o}",
                if *dir { "dir" } else { "file" },
                path.strip_prefix(root).unwrap().display()
            )
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "{when}: entries of the data dir open to others:\n{}",
        offenders.join("\n")
    );
    entries
        .iter()
        .filter(|(_, _, dir)| !dir)
        .map(|(path, _, _)| path.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_warden_up_makes_is_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Running::start(&data, dir.path().join("up.stderr"));
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{}/readyz", up.api)).await;

    // A user through the proxy (the API's database), a webhook subscriber and its
    // signing secret through the admin API (the store).
    let created = client
        .post(format!("{}/v1/users", up.api))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let hook = Command::new(WARDEN)
        .args([
            "status",
            "subscriber",
            "add-webhook",
            "http://127.0.0.1:9/hook",
        ])
        .args(["--console", &format!("127.0.0.1:{}", up.console)])
        .arg("--data-dir")
        .arg(&data)
        .env("WARDEN_WEBHOOK_SECRET", "a-signing-secret-of-some-length")
        .env_remove("WARDEN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        hook.status.success(),
        "{}",
        String::from_utf8_lossy(&hook.stderr)
    );

    // While it runs: the SQLite files' -wal and -shm are there too.
    let files = assert_owner_only(&data, "while warden up runs");
    for expected in [
        "control.db",
        "control.db-wal",
        "control.db-shm",
        "admin-token",
        "client-key",
        "api/api.sqlite3",
        "api/api.sqlite3-wal",
        "api/api.sqlite3-shm",
        "api/api.sqlite3.migrate-lock",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} missing from {files:?}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("releases/") && f.ends_with("/warden")),
        "the release binary is stored: {files:?}"
    );
    up.stop();
    assert_owner_only(&data, "after warden up stopped");

    // A data dir left open to others (by an older Warden, or by hand) is tightened
    // on start, and the log says so.
    for (path, mode) in [
        (data.clone(), 0o755),
        (data.join("api"), 0o777),
        (data.join("control.db"), 0o644),
        (data.join("admin-token"), 0o664),
        (data.join("api/api.sqlite3"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let up = Running::start(&data, dir.path().join("up2.stderr"));
    wait_ready(&client, &format!("{}/readyz", up.api)).await;
    assert_owner_only(&data, "after a restart on a loose data dir");
    let log = up.stderr();
    assert!(
        log.contains("open to other users") && log.contains("control.db 644 → 600"),
        "{log}"
    );
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_api_alone_keeps_its_sqlite_data_dir_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("api-data");
    // Made by hand, open to everyone: tightened on start.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let stderr = dir.path().join("api.stderr");
    let mut api = warden_umask_000(
        &[
            "api",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &stderr,
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &format!("{base}/readyz")).await;
    let created = client
        .post(format!("{base}/v1/users"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let files = assert_owner_only(&data, "while warden api runs");
    for expected in ["api.sqlite3", "api.sqlite3-wal", "api.sqlite3-shm"] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} missing from {files:?}"
        );
    }
    signal("-TERM", api.id());
    assert!(wait_exit(&mut api, Duration::from_secs(30)).success());
    assert_owner_only(&data, "after warden api stopped");
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("open to other users"), "{log}");
}

/// `warden up` on `data` with stderr to `stderr`, under the usual umask.
fn up(data: &Path, stderr: &Path, release: &str, replicas: &str) -> (Child, String, u16) {
    let (api, console) = (free_port(), free_port());
    let mut command = Command::new(WARDEN);
    command
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--console",
            &format!("127.0.0.1:{console}"),
            "--replicas",
            replicas,
            "--release",
            release,
        ])
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    for (key, _) in std::env::vars() {
        if key.starts_with("WARDEN_") {
            command.env_remove(key);
        }
    }
    let child = command.env("WARDEN_LOG", "warn").spawn().unwrap();
    (child, format!("http://127.0.0.1:{api}"), console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_warden_up_on_the_same_data_dir_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let (mut first, first_api, _) = up(&data, &dir.path().join("first.stderr"), "v1", "1");
    let first_pid = first.id();
    wait_ready(&client, &format!("{first_api}/readyz")).await;

    let stderr = dir.path().join("second.stderr");
    let (mut second, second_api, _) = up(&data, &stderr, "v1", "1");
    let started = Instant::now();
    let status = wait_exit(&mut second, Duration::from_secs(10));
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}",
        started.elapsed()
    );
    assert!(
        said.contains("is in use by warden up")
            && said.contains(&format!("pid {first_pid}"))
            && said.contains("--data-dir"),
        "{said}"
    );
    assert!(
        client
            .get(format!("{second_api}/readyz"))
            .send()
            .await
            .is_err(),
        "the second one serves nothing"
    );
    // Commands that read the store directly still work beside the running one.
    let list = Command::new(WARDEN)
        .args(["release", "list", "--json"])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARDEN_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"v1\""));
    assert!(
        client
            .get(format!("{first_api}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // kill -9 leaves no stale lock: the next one starts.
    signal("-KILL", first_pid);
    wait_exit(&mut first, Duration::from_secs(10));
    let (mut third, third_api, _) = up(&data, &dir.path().join("third.stderr"), "v1", "1");
    wait_ready(&client, &format!("{third_api}/readyz")).await;
    signal("-TERM", third.id());
    assert!(wait_exit(&mut third, Duration::from_secs(30)).success());
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    })
}

fn events(store: &warden_store::Store, prefix: &str) -> Vec<warden_store::Event> {
    store
        .events(&warden_store::EventFilter {
            kind_prefix: Some(prefix.into()),
            ..Default::default()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_warden_up_is_recorded_on_restart_with_the_instances_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let (mut first, api, _) = up(&data, &dir.path().join("first.stderr"), "v2", "2");
    let first_pid = first.id();
    wait_ready(&client, &format!("{api}/readyz")).await;
    let store = warden_store::Store::open(&data.join("control.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids: Vec<u32> = loop {
        let pids: Vec<u32> = events(&store, "instance.started")
            .iter()
            .map(|e| u32::try_from(e.payload["pid"].as_u64().unwrap()).unwrap())
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "instances: {pids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (dead, hung) = (pids[0], pids[1]);

    // One instance hangs, so it outlives its supervisor; the other notices the
    // supervisor is gone and exits by itself.
    signal("-STOP", hung);
    signal("-KILL", first_pid);
    wait_exit(&mut first, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(dead) {
        assert!(
            Instant::now() < deadline,
            "instance {dead} outlived warden up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alive(hung));

    let (mut second, api, console) = up(&data, &dir.path().join("second.stderr"), "v2", "2");
    wait_ready(&client, &format!("{api}/readyz")).await;
    assert!(!alive(hung), "the orphan {hung} was stopped");
    let restarts = events(&store, "control.restarted");
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    let p = &restarts[0].payload;
    assert_eq!(p["previous_pid"], first_pid);
    assert_eq!(p["clean_stop"], false);
    assert!(p["last_seen_ms"].as_i64().unwrap() >= p["previous_started_ms"].as_i64().unwrap());
    let mut left: Vec<(u64, &str, &str)> = p["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["pid"].as_u64().unwrap(),
                i["found"].as_str().unwrap(),
                i["release"].as_str().unwrap(),
            )
        })
        .collect();
    left.sort_unstable();
    let mut expected = vec![
        (u64::from(dead), "dead", "v2"),
        (u64::from(hung), "stopped", "v2"),
    ];
    expected.sort_unstable();
    assert_eq!(left, expected);
    let summary = p["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("control plane restarted after a crash")
            && summary.contains("1 instance of v2 found dead")
            && summary.contains("1 instance of v2 found still running (orphaned) and stopped"),
        "{summary}"
    );
    // Each instance is closed in the log too.
    let lost = events(&store, "instance.lost");
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].payload["pid"], dead);
    let stopped: Vec<_> = events(&store, "instance.stopped")
        .into_iter()
        .filter(|e| e.payload["orphan"] == true)
        .collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].payload["pid"], hung);

    // A postmortem drafted over that window tells of the restart.
    let opened = Command::new(WARDEN)
        .args(["incident", "open", "Sign-ins failing", "--json"])
        .args(["--console", &format!("127.0.0.1:{console}")])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARDEN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let incident: serde_json::Value = serde_json::from_slice(&opened.stdout).unwrap();
    let draft = Command::new(WARDEN)
        .args(["postmortem", incident["id"].as_str().unwrap()])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARDEN_STATUS_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&draft.stdout);
    assert!(
        draft.status.success(),
        "{}",
        String::from_utf8_lossy(&draft.stderr)
    );
    assert!(
        text.contains("control plane restarted after a crash"),
        "{text}"
    );
    assert!(text.contains("control plane was down"), "{text}");

    // The console's dashboard lists it with the deploys and instances.
    let page = client
        .get(format!("http://127.0.0.1:{console}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("control.restarted")
            && page.contains("control plane restarted after a crash"),
        "the dashboard lists the restart"
    );

    // A clean stop is not taken for a crash on the next start.
    signal("-TERM", second.id());
    assert!(wait_exit(&mut second, Duration::from_secs(30)).success());
    assert_eq!(events(&store, "control.stopped").len(), 1);
    let (mut third, api, _) = up(&data, &dir.path().join("third.stderr"), "v2", "1");
    wait_ready(&client, &format!("{api}/readyz")).await;
    assert_eq!(events(&store, "control.restarted").len(), 1);
    signal("-TERM", third.id());
    assert!(wait_exit(&mut third, Duration::from_secs(30)).success());
}
