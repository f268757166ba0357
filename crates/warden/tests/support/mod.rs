//! Helpers shared by the tests that run `warden` processes over loopback.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to a minute for `url` to answer 2xx.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `warden up`, stopped with SIGTERM (so it stops its API child) when dropped.
pub struct Up(pub Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

impl Up {
    /// Starts `warden up` on free ports with `config` (TOML text) written into `dir`,
    /// plus `args`. With `config_by_env` the file is named in WARDEN_CONFIG, as a
    /// deployment would; otherwise with --config. Returns it with the API and console
    /// ports.
    pub fn start(
        dir: &std::path::Path,
        config: &str,
        config_by_env: bool,
        args: &[&str],
    ) -> (Self, u16, u16) {
        let file = dir.join("warden.toml");
        std::fs::write(&file, config).unwrap();
        let (api, console) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .args([
                "up",
                "--listen",
                &format!("127.0.0.1:{api}"),
                "--console",
                &format!("127.0.0.1:{console}"),
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .env("WARDEN_LOG", "warn")
            .env_remove("WARDEN_DATABASE_URL")
            .stdout(Stdio::null());
        if config_by_env {
            command.env("WARDEN_CONFIG", &file);
        } else {
            command.arg("--config").arg(&file);
        }
        (Self(command.spawn().unwrap()), api, console)
    }
}

/// The child process of `parent` (from any of its threads, in `/proc`).
pub fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{parent}/task"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .find_map(|children| children.split_whitespace().next()?.parse().ok())
}

/// Simulated users sending requests through the proxy until stopped: each creates an
/// account, logs in, then lists its items and now and then adds one.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

/// What the users saw: requests sent and the ones that failed, described.
#[derive(Debug)]
pub struct Seen {
    pub sent: u64,
    pub failed: Vec<String>,
}

impl Traffic {
    /// Starts `users` users against `base` (`http://host:port`), each pausing `pause`
    /// between requests.
    pub async fn start(base: &str, users: usize, pause: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..users {
            let client = reqwest::Client::new();
            let user = serde_json::json!({
                "email": format!("user{n}-{}@example.com", std::process::id()),
                "password": "correct horse battery",
            });
            let created = client
                .post(format!("{base}/v1/users"))
                .json(&user)
                .send()
                .await
                .unwrap();
            assert!(
                created.status().is_success(),
                "{}",
                created.text().await.unwrap()
            );
            let session: serde_json::Value = client
                .post(format!("{base}/v1/sessions"))
                .json(&user)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = session["token"].as_str().unwrap().to_owned();
            let (base, stop) = (base.to_owned(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut sent, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (what, request) = if sent % 10 == 0 {
                        (
                            "POST /v1/items",
                            client
                                .post(format!("{base}/v1/items"))
                                .json(&serde_json::json!({"title": "t", "data": {"n": sent}})),
                        )
                    } else {
                        ("GET /v1/items", client.get(format!("{base}/v1/items")))
                    };
                    match request.bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => failed.push(format!("{what}: {}", r.status())),
                        Err(e) => failed.push(format!("{what}: {e}")),
                    }
                    sent += 1;
                    tokio::time::sleep(pause).await;
                }
                (sent, failed)
            }));
        }
        Self { stop, tasks }
    }

    /// Stops the users and says what they saw.
    pub async fn stop(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut seen = Seen {
            sent: 0,
            failed: Vec::new(),
        };
        for task in self.tasks {
            let (sent, failed) = task.await.unwrap();
            seen.sent += sent;
            seen.failed.extend(failed);
        }
        seen
    }
}
