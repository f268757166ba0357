//! Starts the real API on a random loopback port with a fresh database, SQLite or
//! PostgreSQL, and talks to it over real HTTP.

#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::{Value, json};
use warden_api::{ApiArgs, Application, Settings};
use warden_telemetry::BuildInfo;

pub const BUILD: BuildInfo = BuildInfo {
    version: "0.0.0-test",
    git_commit: "test",
    lockfile_sha256: "test",
};

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// Server URL from `WARDEN_TEST_POSTGRES_URL`; each app gets a new database on it.
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend, or `None` (with a note) when no server is configured.
    /// Under `CI=true` a missing server fails the test: nothing is skipped silently.
    pub fn postgres() -> Option<Self> {
        match std::env::var("WARDEN_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "CI=true but WARDEN_TEST_POSTGRES_URL is not set: PostgreSQL tests cannot run"
                )
            }
            _ => {
                eprintln!("skipping: set WARDEN_TEST_POSTGRES_URL to run the PostgreSQL tests");
                None
            }
        }
    }
}

/// A running API and an HTTP client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

async fn fresh_database(backend: &Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => warden_api::config::sqlite_url(&dir.join("api.sqlite3")),
        Backend::Postgres(server) => {
            use sqlx::Connection;
            let name = format!("warden_test_{}", rand_suffix());
            let mut conn = sqlx::PgConnection::connect(server)
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot reach PostgreSQL at WARDEN_TEST_POSTGRES_URL: {e}")
                });
            // The name is ours: a fixed prefix and digits.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
            format!("{base}/{name}")
        }
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Default test settings: the real defaults, on port 0.
pub fn settings() -> Settings {
    Settings::resolve(ApiArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ApiArgs::default()
    })
    .unwrap()
}

impl TestApp {
    pub async fn spawn(backend: &Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: &Backend, configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.database_url = fresh_database(backend, dir.path()).await;
        s.shutdown_timeout = std::time::Duration::from_secs(5);
        configure(&mut s);
        Self::start(s, dir).await
    }

    async fn start(settings: Settings, dir: tempfile::TempDir) -> Self {
        let database_url = settings.database_url.clone();
        let app = Application::build(settings, &BUILD)
            .await
            .expect("build app");
        let addr = app.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            database_url,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the app gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        let mut s = settings();
        s.database_url = self.database_url.clone();
        Self::start(s, dir).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn register(&self, email: &str) -> reqwest::Response {
        self.post_json(
            "/v1/users",
            &json!({"email": email, "password": PASSWORD}),
            None,
        )
        .await
    }

    /// A client whose connections come from `source`, another loopback address
    /// (127.0.0.2, ...), so the API sees a different client.
    pub fn client_from(source: [u8; 4]) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(source))
            .build()
            .unwrap()
    }

    /// Logs in with `client`.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/v1/sessions"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/sessions",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Registers `email` and returns a fresh token.
    pub async fn user(&self, email: &str) -> String {
        assert_eq!(self.register(email).await.status(), 201);
        let session: Value = self.login(email, PASSWORD).await.json().await.unwrap();
        session["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_item(&self, token: &str, title: &str, data: Value) -> Value {
        let r = self
            .post_json(
                "/v1/items",
                &json!({"title": title, "data": data}),
                Some(token),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Asserts an RFC 9457 problem answer with `status`; returns its detail.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
    let detail = body["detail"].as_str().expect("detail").to_owned();
    assert!(!detail.is_empty());
    detail
}
