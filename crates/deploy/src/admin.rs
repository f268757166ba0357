//! The console's deploy endpoints and the client `warden deploy` and `warden rollback`
//! use to call them.
//!
//! - `POST /api/admin/deploy` ([`DeployRequest`]) and `POST /api/admin/rollback`
//!   ([`RollbackRequest`]) need `Authorization: Bearer <admin token>`; they answer an
//!   [`Outcome`], or an RFC 9457 problem saying why nothing changed.
//! - `GET /api/deploy` is the read-only [`Snapshot`].
//!
//! The admin token is `WARDEN_ADMIN_TOKEN`, or else the one `warden up` writes to
//! `DATA_DIR/admin-token` (readable by its owner only) on first start, so commands run
//! on the same machine need no setup.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::controller::{Controller, DeployRequest, Outcome, Refusal, RollbackRequest};

/// The file `warden up` keeps its generated admin token in.
pub const TOKEN_FILE: &str = "admin-token";

#[derive(Clone)]
struct Admin {
    controller: Arc<Controller>,
    token_sha256: [u8; 32],
}

/// The deploy routes, for the console.
pub fn router(controller: Arc<Controller>, token: &str) -> axum::Router {
    use axum::routing::{get, post};
    let state = Admin {
        controller,
        token_sha256: Sha256::digest(token.as_bytes()).into(),
    };
    axum::Router::new()
        .route("/api/admin/deploy", post(deploy))
        .route("/api/admin/rollback", post(rollback))
        .route("/api/deploy", get(snapshot))
        .with_state(state)
}

async fn snapshot(State(admin): State<Admin>) -> Response {
    Json(admin.controller.snapshot().await).into_response()
}

async fn deploy(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: DeployRequest = match authorized(&admin, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    answer(admin.controller.deploy(request).await)
}

async fn rollback(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: RollbackRequest = match authorized(&admin, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    answer(admin.controller.rollback(request, false).await)
}

/// Checks the bearer token, then parses the body.
fn authorized<T: serde::de::DeserializeOwned>(
    admin: &Admin,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Comparing digests keeps the comparison's timing independent of the token.
    let ok =
        given.is_some_and(|t| <[u8; 32]>::from(Sha256::digest(t.as_bytes())) == admin.token_sha256);
    if !ok {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "send the admin token as `Authorization: Bearer TOKEN` (WARDEN_ADMIN_TOKEN, or DATA_DIR/admin-token)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Err(Box::new(response));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid: {e}"),
        ))
    })
}

fn answer(result: Result<Outcome, Refusal>) -> Response {
    match result {
        Ok(outcome) => Json(outcome).into_response(),
        Err(refusal) => {
            let status = match &refusal {
                Refusal::NotFound(_) => StatusCode::NOT_FOUND,
                Refusal::Conflict(_) => StatusCode::CONFLICT,
                Refusal::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::Failed(_) => StatusCode::BAD_GATEWAY,
            };
            problem(status, &refusal.to_string())
        }
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The admin token for `data_dir`: `WARDEN_ADMIN_TOKEN` when given, else the token
/// file, created (random, owner-only) when `create` is set.
pub fn token(given: Option<&str>, data_dir: &Path, create: bool) -> anyhow::Result<String> {
    if let Some(token) = given.filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    anyhow::ensure!(
        create,
        "no admin token: set WARDEN_ADMIN_TOKEN, or point --data-dir at the directory of \
         the running `warden up` (it keeps its token in {TOKEN_FILE} there)"
    );
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// Calls the console of a running `warden up`.
pub struct Client {
    console: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the console at `console` (`host:port`).
    pub fn new(
        console: std::net::SocketAddr,
        token: String,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            console: format!("http://{console}"),
            token,
            http: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }

    /// `POST /api/admin/deploy`.
    pub async fn deploy(&self, request: &DeployRequest) -> anyhow::Result<Outcome> {
        self.post("/api/admin/deploy", request).await
    }

    /// `POST /api/admin/rollback`.
    pub async fn rollback(&self, request: &RollbackRequest) -> anyhow::Result<Outcome> {
        self.post("/api/admin/rollback", request).await
    }

    async fn post<T: serde::Serialize>(&self, path: &str, body: &T) -> anyhow::Result<Outcome> {
        let response = self
            .http
            .post(format!("{}{path}", self.console))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the console at {}: is `warden up` running (--console)?",
                    self.console
                )
            })?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("the console answered {path} with something unexpected"));
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(Rejected {
            status: status.as_u16(),
            detail,
        }
        .into())
    }
}

/// The console refused a request: nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Rejected {
    pub status: u16,
    pub detail: String,
}
