//! The console's status routes: public and read-only, or admin and authenticated.
//!
//! Public, no login (what users and their tools read):
//!
//! - `GET /status`: the status page; `GET /status/incidents/{id}`: one incident.
//! - `GET /api/v2/summary.json`, `status.json`, `components.json`,
//!   `incidents.json`, `incidents/unresolved.json`, `scheduled-maintenances.json`,
//!   `scheduled-maintenances/upcoming.json`, `scheduled-maintenances/active.json`:
//!   Statuspage's public API (see [`crate::statuspage`]).
//! - `GET /history.atom`, `GET /history.rss`: the incident history feeds.
//!
//! Each answer carries `Cache-Control: public, max-age=5` and an `ETag` that is a
//! hash of the body, so `If-None-Match` gets a 304 until something shown changes.
//!
//! Admin, `Authorization: Bearer <admin token>` (the token `warden up` uses for
//! deploys), JSON in and out, RFC 9457 problems on refusal:
//!
//! - `POST /api/admin/incidents` ([`OpenIncident`]) → 201 and the incident.
//! - `POST /api/admin/incidents/{id}/updates` ([`UpdateIncident`]) → the incident.
//! - `POST /api/admin/incidents/{id}/resolve` ([`UpdateIncident`]) → the incident.
//! - `PATCH /api/admin/components/{id}` ([`SetComponent`]) → the component.
//! - `POST /api/admin/maintenances` ([`ScheduleMaintenance`]) → 201 and the maintenance.
//! - `POST /api/admin/maintenances/{id}/updates` ([`UpdateMaintenance`]) → the maintenance.
//!
//! - `POST /api/alertmanager`: an Alertmanager webhook (version 4). Each alert in it
//!   is appended to the event log as `alert.firing` or `alert.resolved`, where the
//!   incident automation ([`crate::automation`]) treats it like one of Warden's own
//!   alerts: a Prometheus + Alertmanager setup drives the same incidents.
//!
//! Status codes: 400 malformed JSON, 401 no or wrong token, 404 unknown id, 409 a
//! change the current state does not allow, 422 a value to fix, 503 the store
//! failed (details in the log). A refused request changed nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use warden_store::{StatusIncident, Store};

use crate::components::SetComponent;
use crate::incidents::{OpenIncident, UpdateIncident};
use crate::maintenance::{ScheduleMaintenance, UpdateMaintenance};
use crate::statuspage::{Documents, Links, MaintenanceList, Snapshot};
use crate::{StatusConfig, StatusError};

/// A public document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// The HTML status page.
    Page,
    /// One incident's or maintenance's HTML page.
    Incident(String),
    /// `summary.json`.
    Summary,
    /// `status.json`.
    Status,
    /// `components.json`.
    Components,
    /// `incidents.json`.
    Incidents,
    /// `incidents/unresolved.json`.
    Unresolved,
    /// `scheduled-maintenances.json`.
    Maintenances,
    /// `scheduled-maintenances/upcoming.json`.
    Upcoming,
    /// `scheduled-maintenances/active.json`.
    Active,
    /// `history.atom`.
    Atom,
    /// `history.rss`.
    Rss,
}

impl Document {
    /// Every JSON document with its path under `api/v2/`.
    pub const JSON: [(Self, &'static str); 8] = [
        (Self::Summary, "summary.json"),
        (Self::Status, "status.json"),
        (Self::Components, "components.json"),
        (Self::Incidents, "incidents.json"),
        (Self::Unresolved, "incidents/unresolved.json"),
        (Self::Maintenances, "scheduled-maintenances.json"),
        (Self::Upcoming, "scheduled-maintenances/upcoming.json"),
        (Self::Active, "scheduled-maintenances/active.json"),
    ];
}

/// A rendered document.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: String,
}

/// Renders `document`; `Ok(None)` when it names an incident that does not exist.
///
/// # Errors
/// A template or serializer failed (a bug, not bad input).
pub fn render(
    document: &Document,
    snapshot: &Snapshot,
    config: &StatusConfig,
    links: &Links,
) -> Result<Option<Rendered>, String> {
    let docs = Documents::new(snapshot, config, links);
    let html = |body: Result<String, askama::Error>| -> Result<Option<Rendered>, String> {
        Ok(Some(Rendered {
            content_type: "text/html; charset=utf-8",
            body: body.map_err(|e| e.to_string())?,
        }))
    };
    match document {
        Document::Page => html(crate::page::render_status(snapshot, config, links)),
        Document::Incident(id) => {
            let found = snapshot
                .incidents
                .iter()
                .chain(&snapshot.maintenances)
                .find(|i| &i.id == id);
            match found {
                Some(incident) => html(crate::page::render_incident(
                    snapshot, config, links, incident,
                )),
                None => Ok(None),
            }
        }
        Document::Summary => json_document(&docs.summary()),
        Document::Status => json_document(&docs.status_document()),
        Document::Components => json_document(&docs.components_document()),
        Document::Incidents => json_document(&docs.incidents_document(false)),
        Document::Unresolved => json_document(&docs.incidents_document(true)),
        Document::Maintenances => json_document(&docs.maintenances_document(MaintenanceList::All)),
        Document::Upcoming => json_document(&docs.maintenances_document(MaintenanceList::Upcoming)),
        Document::Active => json_document(&docs.maintenances_document(MaintenanceList::Active)),
        Document::Atom => Ok(Some(Rendered {
            content_type: "application/atom+xml; charset=utf-8",
            body: crate::feed::atom(snapshot, config, links),
        })),
        Document::Rss => Ok(Some(Rendered {
            content_type: "application/rss+xml; charset=utf-8",
            body: crate::feed::rss(snapshot, config, links),
        })),
    }
}

fn json_document<T: Serialize>(value: &T) -> Result<Option<Rendered>, String> {
    Ok(Some(Rendered {
        content_type: "application/json",
        body: serde_json::to_string(value).map_err(|e| e.to_string())?,
    }))
}

#[derive(Clone)]
struct Shared {
    store: Store,
    config: Arc<StatusConfig>,
    token_sha256: [u8; 32],
}

/// The status routes, public and admin, to merge into the console's router.
/// `admin_token` is the token every write must present.
pub fn router(store: Store, config: Arc<StatusConfig>, admin_token: &str) -> Router {
    let shared = Shared {
        store,
        config,
        token_sha256: Sha256::digest(admin_token.as_bytes()).into(),
    };
    let public = |document: Document| {
        move |state: State<Shared>, headers: HeaderMap| serve(state, headers, document.clone())
    };
    Router::new()
        .route("/status", get(public(Document::Page)))
        .route("/status/incidents/{id}", get(incident_page))
        .route("/api/v2/summary.json", get(public(Document::Summary)))
        .route("/api/v2/status.json", get(public(Document::Status)))
        .route("/api/v2/components.json", get(public(Document::Components)))
        .route("/api/v2/incidents.json", get(public(Document::Incidents)))
        .route(
            "/api/v2/incidents/unresolved.json",
            get(public(Document::Unresolved)),
        )
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(public(Document::Maintenances)),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(public(Document::Upcoming)),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(public(Document::Active)),
        )
        .route("/history.atom", get(public(Document::Atom)))
        .route("/history.rss", get(public(Document::Rss)))
        .route("/api/alertmanager", post(alertmanager))
        .route("/api/admin/incidents", post(open_incident))
        .route("/api/admin/incidents/{id}/updates", post(update_incident))
        .route("/api/admin/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/admin/components/{id}", patch(set_component))
        .route("/api/admin/maintenances", post(schedule_maintenance))
        .route(
            "/api/admin/maintenances/{id}/updates",
            post(update_maintenance),
        )
        .with_state(shared)
}

async fn incident_page(
    state: State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    serve(state, headers, Document::Incident(id)).await
}

/// Links for a live request: the configured public URL, else the Host it came to.
fn live_links(config: &StatusConfig, headers: &HeaderMap) -> Links {
    let base = config.public_url().map_or_else(
        || {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                        })
                })
                .map_or_else(String::new, |host| format!("http://{host}"))
        },
        str::to_owned,
    );
    Links {
        base,
        static_files: false,
    }
}

async fn serve(State(shared): State<Shared>, headers: HeaderMap, document: Document) -> Response {
    let links = live_links(&shared.config, &headers);
    let config = shared.config.clone();
    let store = shared.store.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let snapshot =
            Snapshot::read(&store, warden_store::now_ms()).map_err(|e| (true, e.to_string()))?;
        render(&document, &snapshot, &config, &links).map_err(|e| (false, e))
    })
    .await;
    let rendered = match rendered {
        Ok(Ok(Some(rendered))) => rendered,
        Ok(Ok(None)) => {
            return problem(
                StatusCode::NOT_FOUND,
                "no such incident: the status page lists the current and recent ones",
            );
        }
        Ok(Err((true, error))) => {
            tracing::error!(%error, "status: cannot read the store");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the status page's store cannot be read right now; try again shortly",
            );
        }
        Ok(Err((false, error))) => {
            tracing::error!(%error, "status: cannot render");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            );
        }
        Err(error) => {
            tracing::error!(%error, "status: render task failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            );
        }
    };
    cached(&headers, rendered)
}

/// The strong ETag of a body: a hash of its bytes.
#[must_use]
pub fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether `If-None-Match` in `headers` matches `tag` (weak comparison, `*`).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

fn cached(request: &HeaderMap, rendered: Rendered) -> Response {
    let tag = etag(&rendered.body);
    let mut response = if not_modified(request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = rendered.body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rendered.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=5"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if rendered.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        );
    } else {
        // Statuspage's API is readable from any origin; so is this.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

// ---- admin ----

/// Checks the bearer token (in constant time), then parses the body.
fn authorized<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let ok = given.is_some_and(|token| {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every byte is compared, whatever the first difference.
        digest
            .iter()
            .zip(shared.token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "send the admin token as `Authorization: Bearer TOKEN` (WARDEN_ADMIN_TOKEN, or \
             the admin-token file in the data directory of `warden up`)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(Box::new(response));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid JSON for this request: {e}"),
        ))
    })
}

/// An Alertmanager webhook (version 4): only the fields used.
#[derive(serde::Deserialize)]
struct AlertmanagerWebhook {
    alerts: Vec<AlertmanagerAlert>,
}

#[derive(serde::Deserialize)]
struct AlertmanagerAlert {
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
}

/// `POST /api/alertmanager`: records each alert as an `alert.*` event.
async fn alertmanager(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let hook: AlertmanagerWebhook = match authorized(&shared, &headers, &body) {
        Ok(hook) => hook,
        Err(response) => return *response,
    };
    let mut events = Vec::new();
    for (n, alert) in hook.alerts.iter().enumerate() {
        let phase = match alert.status.as_str() {
            "firing" | "resolved" => alert.status.as_str(),
            other => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("alerts[{n}].status: {other:?} is neither firing nor resolved"),
                );
            }
        };
        let Some(name) = alert.labels.get("alertname").filter(|n| !n.is_empty()) else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("alerts[{n}].labels.alertname is missing"),
            );
        };
        let release = alert.labels.get("release").cloned();
        let fingerprint = if alert.fingerprint.is_empty() {
            format!(
                "alertmanager/{name}/{}",
                alert.labels.get("instance").map_or("", String::as_str)
            )
        } else {
            format!("alertmanager/{}", alert.fingerprint)
        };
        events.push(warden_store::NewEvent {
            kind: format!("alert.{phase}"),
            release: release.clone(),
            payload: serde_json::json!({
                "alert": name,
                "fingerprint": fingerprint,
                "release": release.unwrap_or_default(),
                "instance": alert.labels.get("instance"),
                "summary": alert.annotations.get("summary").unwrap_or(name),
                "description": alert.annotations.get("description"),
                "labels": alert.labels,
                "source": "alertmanager",
            }),
        });
    }
    let store = shared.store.clone();
    let count = events.len();
    let result = tokio::task::spawn_blocking(move || {
        events
            .iter()
            .try_for_each(|event| store.append_event(event).map(|_| ()))
    })
    .await;
    match result {
        Ok(Ok(())) => axum::Json(serde_json::json!({ "recorded": count })).into_response(),
        Ok(Err(error)) => {
            tracing::error!(%error, "could not record Alertmanager alerts");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the alerts could not be recorded; Alertmanager will send them again",
            )
        }
        Err(error) => {
            tracing::error!(%error, "the Alertmanager receiver failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "the receiver failed")
        }
    }
}

/// Runs a write on a blocking thread and answers with the incident it returns.
async fn write_incident(
    shared: Shared,
    headers: &HeaderMap,
    created: bool,
    write: impl FnOnce(&Store, &StatusConfig, i64) -> crate::Result<StatusIncident> + Send + 'static,
) -> Response {
    let links = live_links(&shared.config, headers);
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let result = tokio::task::spawn_blocking(move || {
        let incident = write(&store, &config, warden_store::now_ms())?;
        let snapshot = components_only(&store)?;
        Ok::<_, StatusError>(Documents::new(&snapshot, &config, &links).incident(&incident))
    })
    .await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(result, status)
}

/// A snapshot holding only the components (enough to describe one incident).
fn components_only(store: &Store) -> crate::Result<Snapshot> {
    Ok(Snapshot {
        now_ms: warden_store::now_ms(),
        components: store.status_components()?,
        changes: Vec::new(),
        incidents: Vec::new(),
        maintenances: Vec::new(),
    })
}

fn answer<T: Serialize>(
    result: Result<crate::Result<T>, tokio::task::JoinError>,
    status: StatusCode,
) -> Response {
    match result {
        Ok(Ok(value)) => (status, axum::Json(value)).into_response(),
        Ok(Err(error)) => refusal(&error),
        Err(error) => {
            tracing::error!(%error, "status: write task failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the change could not be made; nothing changed",
            )
        }
    }
}

fn refusal(error: &StatusError) -> Response {
    match error {
        StatusError::Invalid(m) => problem(StatusCode::UNPROCESSABLE_ENTITY, m),
        StatusError::NotFound(m) => problem(StatusCode::NOT_FOUND, m),
        StatusError::Conflict(m) => problem(StatusCode::CONFLICT, m),
        StatusError::Store(error) => {
            tracing::error!(%error, "status: store failed during a change");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the control plane's store failed; nothing changed; details are in Warden's log",
            )
        }
    }
}

async fn open_incident(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request: OpenIncident = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, true, move |store, config, now| {
        crate::incidents::open(store, config, &request, now)
    })
    .await
}

async fn update_incident(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: UpdateIncident = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, false, move |store, config, now| {
        crate::incidents::update(store, config, &id, &request, now)
    })
    .await
}

async fn resolve_incident(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // An empty body means "resolve with the template".
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    let request: UpdateIncident = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, false, move |store, config, now| {
        crate::incidents::resolve(store, config, &id, &request, now)
    })
    .await
}

async fn schedule_maintenance(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: ScheduleMaintenance = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, true, move |store, config, now| {
        crate::maintenance::schedule(store, config, &request, now)
    })
    .await
}

async fn update_maintenance(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: UpdateMaintenance = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, false, move |store, config, now| {
        crate::maintenance::update(store, config, &id, &request, now)
    })
    .await
}

async fn set_component(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: SetComponent = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let links = live_links(&shared.config, &headers);
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let result = tokio::task::spawn_blocking(move || {
        let component =
            crate::components::set_status(&store, &id, request.status, warden_store::now_ms())?;
        let snapshot = components_only(&store)?;
        let docs = Documents::new(&snapshot, &config, &links);
        Ok::<_, StatusError>(docs.components().into_iter().find(|c| c.id == component.id))
    })
    .await;
    answer(result, StatusCode::OK)
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
