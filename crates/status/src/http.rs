//! The console's status routes: public and read-only, or admin and authenticated.
//!
//! Public, no login (what users and their tools read):
//!
//! - `GET /status`: the status page; `GET /status/incidents/{id}`: one incident;
//!   `GET /status/incidents/{id}/postmortem`: its published postmortem, with the
//!   memory chart (see [`crate::postmortem`]).
//! - `GET /api/v2/summary.json`, `status.json`, `components.json`,
//!   `incidents.json`, `incidents/unresolved.json`, `scheduled-maintenances.json`,
//!   `scheduled-maintenances/upcoming.json`, `scheduled-maintenances/active.json`:
//!   Statuspage's public API (see [`crate::statuspage`]).
//! - `GET /history.atom`, `GET /history.rss`: the incident history feeds.
//!
//! Each answer carries `Cache-Control: public, max-age=5` and an `ETag` that is a
//! hash of the body, so `If-None-Match` gets a 304 until something shown changes.
//!
//! The public documents are rendered once and served from memory to every reader
//! until something changes (see [`PageCache`]): a herd of readers during an
//! incident costs no store read and no rendering per request. A write through
//! these routes shows on the very next request; a change recorded elsewhere (the
//! incident automation, the maintenance clock) within a quarter of a second; and
//! every document is rendered again at least every 5 s, as uptime moves with time.
//!
//! Admin, `Authorization: Bearer <admin token>` (the token `warden up` uses for
//! deploys), JSON in and out, RFC 9457 problems on refusal:
//!
//! - `POST /api/admin/incidents` ([`OpenIncident`]) → 201 and the incident.
//! - `POST /api/admin/incidents/{id}/updates` ([`UpdateIncident`]) → the incident.
//! - `POST /api/admin/incidents/{id}/resolve` ([`UpdateIncident`]) → the incident.
//! - `POST /api/admin/incidents/{id}/postmortem` ([`PublishPostmortem`]; an empty
//!   body publishes the draft) → the incident, now `postmortem`, with
//!   `postmortem_body` and `postmortem_published_at`.
//! - `PATCH /api/admin/components/{id}` ([`SetComponent`]) → the component.
//! - `POST /api/admin/maintenances` ([`ScheduleMaintenance`]) → 201 and the maintenance.
//! - `POST /api/admin/maintenances/{id}/updates` ([`UpdateMaintenance`]) → the maintenance.
//!
//! - `POST /api/alertmanager`: an Alertmanager webhook (version 4). Each alert in it
//!   is appended to the event log as `alert.firing` or `alert.resolved`, where the
//!   incident automation ([`crate::automation`]) treats it like one of Warden's own
//!   alerts: a Prometheus + Alertmanager setup drives the same incidents. A firing
//!   alert that opens no incident (a name not in `[automation.alerts]`, or the
//!   automation off) is also recorded as `automation.alert_ignored` with the reason,
//!   logged, and listed in the answer: `{"recorded": 2, "no_incident": [{"alert":
//!   "DiskFull", "reason": "..."}]}`.
//!
//! Status codes: 400 malformed JSON, 401 no or wrong token, 404 unknown id, 409 a
//! change the current state does not allow, 422 a value to fix, 503 the store
//! failed (details in the log). A refused request changed nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use warden_store::{StatusIncident, Store};

use crate::components::SetComponent;
use crate::incidents::{OpenIncident, UpdateIncident};
use crate::maintenance::{ScheduleMaintenance, UpdateMaintenance};
use crate::postmortem::PublishPostmortem;
use crate::statuspage::{Documents, Links, MaintenanceList, Snapshot};
use crate::{StatusConfig, StatusError};

/// A public document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    cache: Arc<PageCache>,
}

/// The status routes, public and admin, to merge into the console's router.
/// `admin_token` is the token every write must present.
pub fn router(store: Store, config: Arc<StatusConfig>, admin_token: &str) -> Router {
    let shared = Shared {
        store,
        config,
        token_sha256: Sha256::digest(admin_token.as_bytes()).into(),
        cache: Arc::new(PageCache::new()),
    };
    let cache = shared.cache.clone();
    let public = |document: Document| {
        move |state: State<Shared>, headers: HeaderMap| serve(state, headers, document.clone())
    };
    Router::new()
        .route("/status", get(public(Document::Page)))
        .route("/status/incidents/{id}", get(incident_page))
        .route("/status/incidents/{id}/postmortem", get(postmortem_page))
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
        .route(
            "/api/admin/incidents/{id}/postmortem",
            post(publish_postmortem),
        )
        .route("/api/admin/components/{id}", patch(set_component))
        .route("/api/admin/maintenances", post(schedule_maintenance))
        .route(
            "/api/admin/maintenances/{id}/updates",
            post(update_maintenance),
        )
        .layer(axum::middleware::from_fn_with_state(
            cache,
            invalidate_after_writes,
        ))
        .with_state(shared)
}

async fn incident_page(
    state: State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    serve(state, headers, Document::Incident(id)).await
}

/// `GET /status/incidents/{id}/postmortem`: the published postmortem.
async fn postmortem_page(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let links = live_links(&shared.config, &headers);
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let rendered = tokio::task::spawn_blocking(move || {
        crate::postmortem::published_page(&store, &config, &links, &id, warden_store::now_ms())
    })
    .await;
    match rendered {
        Ok(Ok(Some(body))) => cached(
            &headers,
            Rendered {
                content_type: "text/html; charset=utf-8",
                body,
            },
        ),
        Ok(Ok(None)) => problem(
            StatusCode::NOT_FOUND,
            "no published postmortem for this incident: the status page lists the incidents, \
             and a postmortem shows here once `warden postmortem publish` has published it",
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, "status: cannot show a postmortem");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the postmortem cannot be read right now; try again shortly",
            )
        }
        Err(error) => {
            tracing::error!(%error, "status: postmortem task failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
        }
    }
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
    let cache = &shared.cache;
    let key = (document, links.base.clone());
    if let Some(entry) = cache.get(&key).filter(|e| cache.usable(e)) {
        // Fresh, or another request is checking it right now: serve it as it is.
        if cache.fresh(&entry) || entry.checking.swap(true, Ordering::AcqRel) {
            return entry.answer(&headers);
        }
        // This request checks it; the others keep being served meanwhile.
        let _checking = Checking(&entry.checking);
        return match revalidate(&shared, key, links, Some(entry.clone())).await {
            Ok(entry) => entry.answer(&headers),
            Err(response) => response,
        };
    }
    // Nothing usable: one request renders it while the others wait for it.
    let _turn = cache.render.lock().await;
    if let Some(entry) = cache.get(&key).filter(|e| cache.fresh(e)) {
        return entry.answer(&headers);
    }
    match revalidate(&shared, key, links, None).await {
        Ok(entry) => entry.answer(&headers),
        Err(response) => response,
    }
}

/// How often a cached document is checked against the store's event log: a change
/// made elsewhere (the incident automation, the maintenance clock, another
/// process) shows within this.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long one rendering is served at most, even when nothing was recorded:
/// uptime figures move with time.
const RENDER_EVERY: Duration = Duration::from_secs(5);
/// How many documents are kept (one per document and host); past it the cache
/// starts over, since the Host header is the client's to choose.
const MAX_CACHED: usize = 64;

/// The public documents as last rendered, shared by every request, so that a herd
/// of readers does not read the store and render the page once each.
///
/// A document is rendered once, then served from memory with its ETag. When its
/// copy is older than [`CHECK_EVERY`], one request (the others are served the copy
/// meanwhile) asks the store for its newest event id, and the document is rendered
/// again if that changed or the copy is older than [`RENDER_EVERY`]. Every write
/// through this router (any method but GET and HEAD) starts a new generation
/// before it answers, which no older copy is served for: whoever changed
/// something sees it on the next request. While nothing usable is cached, one
/// request renders and the others wait for it.
struct PageCache {
    entries: std::sync::Mutex<HashMap<CacheKey, Arc<Cached>>>,
    generation: AtomicU64,
    render: tokio::sync::Mutex<()>,
    epoch: Instant,
}

/// A document and the base of its links (the Host it was asked from, when no
/// public URL is configured).
type CacheKey = (Document, String);

/// One rendered document.
struct Cached {
    body: Bytes,
    etag: Option<HeaderValue>,
    content_type: &'static str,
    /// The store's newest event when it was rendered.
    event_id: Option<i64>,
    generation: u64,
    rendered: Instant,
    /// When it was last found current, in ms since the cache's epoch.
    checked_ms: AtomicU64,
    /// Whether a request is checking it now.
    checking: AtomicBool,
}

impl Cached {
    /// The answer to a request for it.
    fn answer(&self, request: &HeaderMap) -> Response {
        respond(
            request,
            self.content_type,
            self.etag.clone(),
            self.body.clone(),
        )
    }
}

/// Clears a [`Cached::checking`] flag when the check ends, even if the request
/// that made it went away.
struct Checking<'a>(&'a AtomicBool);

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PageCache {
    fn new() -> Self {
        Self {
            entries: std::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            render: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Cached>>> {
        // Nothing can be left half-done under this lock: a poisoned one is fine.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &CacheKey) -> Option<Arc<Cached>> {
        self.entries().get(key).cloned()
    }

    fn put(&self, key: CacheKey, entry: Arc<Cached>) {
        let mut entries = self.entries();
        if entries.len() >= MAX_CACHED && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, entry);
    }

    fn remove(&self, key: &CacheKey) {
        self.entries().remove(key);
    }

    /// Everything cached is stale from now on.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `entry` may be served (perhaps while it is checked).
    fn usable(&self, entry: &Cached) -> bool {
        entry.generation == self.generation.load(Ordering::Acquire)
    }

    /// Whether `entry` may be served without a check.
    fn fresh(&self, entry: &Cached) -> bool {
        self.usable(entry)
            && self
                .now_ms()
                .saturating_sub(entry.checked_ms.load(Ordering::Acquire))
                < CHECK_EVERY.as_millis() as u64
            && entry.rendered.elapsed() < RENDER_EVERY
    }
}

/// What a check found.
enum Checked {
    /// The previous rendering is still current.
    Current(Arc<Cached>),
    /// A new rendering (`None`: no such incident), as of this event.
    Rendered(Option<Rendered>, Option<i64>),
}

/// Renders `key`'s document, unless `previous` is still current (no new event and
/// young enough); caches and returns the result, or the error response.
async fn revalidate(
    shared: &Shared,
    key: CacheKey,
    links: Links,
    previous: Option<Arc<Cached>>,
) -> Result<Arc<Cached>, Response> {
    let cache = &shared.cache;
    // Taken before the store is read: a write that lands meanwhile makes the
    // result stale, never the other way round.
    let (generation, started_ms, started) = (
        cache.generation.load(Ordering::Acquire),
        cache.now_ms(),
        Instant::now(),
    );
    let (store, config, document) = (shared.store.clone(), shared.config.clone(), key.0.clone());
    let checked = tokio::task::spawn_blocking(move || {
        let event_id = store.last_event_id().map_err(|e| (true, e.to_string()))?;
        if let Some(previous) =
            previous.filter(|p| p.event_id == event_id && p.rendered.elapsed() < RENDER_EVERY)
        {
            return Ok(Checked::Current(previous));
        }
        let snapshot =
            Snapshot::read(&store, warden_store::now_ms()).map_err(|e| (true, e.to_string()))?;
        let rendered = render(&document, &snapshot, &config, &links).map_err(|e| (false, e))?;
        Ok(Checked::Rendered(rendered, event_id))
    })
    .await;
    let failed = match checked {
        Ok(Ok(Checked::Current(entry))) => {
            entry.checked_ms.store(started_ms, Ordering::Release);
            return Ok(entry);
        }
        Ok(Ok(Checked::Rendered(Some(rendered), event_id))) => {
            let tag = etag(&rendered.body);
            let entry = Arc::new(Cached {
                etag: HeaderValue::from_str(&tag).ok(),
                body: Bytes::from(rendered.body),
                content_type: rendered.content_type,
                event_id,
                generation,
                rendered: started,
                checked_ms: AtomicU64::new(started_ms),
                checking: AtomicBool::new(false),
            });
            cache.put(key, entry.clone());
            return Ok(entry);
        }
        Ok(Ok(Checked::Rendered(None, _))) => problem(
            StatusCode::NOT_FOUND,
            "no such incident: the status page lists the current and recent ones",
        ),
        Ok(Err((true, error))) => {
            tracing::error!(%error, "status: cannot read the store");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the status page's store cannot be read right now; try again shortly",
            )
        }
        Ok(Err((false, error))) => {
            tracing::error!(%error, "status: cannot render");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
        }
        Err(error) => {
            tracing::error!(%error, "status: render task failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
        }
    };
    // Nothing stale outlives a failure: the next request tries again.
    cache.remove(&key);
    Err(failed)
}

/// After a write through the admin routes (any method but GET and HEAD), whatever
/// is cached is stale; the new generation starts before the answer goes out.
async fn invalidate_after_writes(
    State(cache): State<Arc<PageCache>>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if write {
        cache.invalidate();
    }
    response
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
    let tag = HeaderValue::from_str(&etag(&rendered.body)).ok();
    respond(
        request,
        rendered.content_type,
        tag,
        Bytes::from(rendered.body),
    )
}

/// The answer with `body` (or a 304 when the request holds `tag`) and the public
/// documents' headers.
fn respond(
    request: &HeaderMap,
    content_type: &'static str,
    tag: Option<HeaderValue>,
    body: Bytes,
) -> Response {
    let unchanged = tag
        .as_ref()
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| not_modified(request, t));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let headers = response.headers_mut();
    if let Some(value) = tag {
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
    if content_type.starts_with("text/html") {
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

/// Checks the bearer token (in constant time), then parses the body; an empty body
/// is `{}` (resolve with the template, publish the draft).
fn authorized<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    check_token(&shared.token_sha256, headers)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid JSON for this request: {e}"),
        ))
    })
}

/// Checks the bearer token in `headers` against the SHA-256 of the admin token, in
/// constant time; the refusal is a 401 that says where the token is.
pub(crate) fn check_token(
    token_sha256: &[u8; 32],
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
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
            .zip(token_sha256.iter())
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
    Ok(())
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
    let mut no_incident = Vec::new();
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
        let ignored = (phase == "firing")
            .then(|| shared.config.automation.incident_state(name).err())
            .flatten();
        if let Some(why) = &ignored {
            tracing::warn!(alert = %name, %fingerprint, "Alertmanager receiver: {why}");
            no_incident.push(serde_json::json!({"alert": name, "reason": why}));
        }
        events.push(warden_store::NewEvent {
            kind: format!("alert.{phase}"),
            release: release.clone(),
            payload: serde_json::json!({
                "alert": name,
                "fingerprint": fingerprint,
                "release": release.clone().unwrap_or_default(),
                "instance": alert.labels.get("instance"),
                "summary": alert.annotations.get("summary").unwrap_or(name),
                "description": alert.annotations.get("description"),
                "labels": alert.labels,
                "source": "alertmanager",
            }),
        });
        if let Some(why) = ignored {
            events.push(warden_store::NewEvent {
                kind: crate::automation::ALERT_IGNORED.into(),
                release,
                payload: serde_json::json!({
                    "alert": name,
                    "fingerprint": fingerprint,
                    "reason": why,
                    "summary": why,
                    "source": "alertmanager",
                }),
            });
        }
    }
    let store = shared.store.clone();
    let count = hook.alerts.len();
    let result = tokio::task::spawn_blocking(move || {
        events
            .iter()
            .try_for_each(|event| store.append_event(event).map(|_| ()))
    })
    .await;
    match result {
        Ok(Ok(())) => axum::Json(serde_json::json!({
            "recorded": count,
            "no_incident": no_incident,
        }))
        .into_response(),
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
        postmortems: Vec::new(),
    })
}

/// The answer to an admin change run on a blocking task: `status` with the result as
/// JSON, or the refusal.
pub(crate) fn answer<T: Serialize>(
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

pub(crate) fn refusal(error: &StatusError) -> Response {
    match error {
        StatusError::Invalid(m) => problem(StatusCode::UNPROCESSABLE_ENTITY, m),
        StatusError::NotFound(m) => problem(StatusCode::NOT_FOUND, m),
        StatusError::Conflict(m) => problem(StatusCode::CONFLICT, m),
        StatusError::Expired(m) => problem(StatusCode::GONE, m),
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
    let request: UpdateIncident = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    write_incident(shared, &headers, false, move |store, config, now| {
        crate::incidents::resolve(store, config, &id, &request, now)
    })
    .await
}

/// `POST /api/admin/incidents/{id}/postmortem`: publishes the postmortem.
async fn publish_postmortem(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: PublishPostmortem = match authorized(&shared, &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let links = live_links(&shared.config, &headers);
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let result = tokio::task::spawn_blocking(move || {
        let now = warden_store::now_ms();
        let incident =
            crate::postmortem::publish(&store, &config, &links, &id, request.body.as_deref(), now)?;
        let mut snapshot = components_only(&store)?;
        snapshot.postmortems = store.status_postmortem(&id)?.into_iter().collect();
        Ok::<_, StatusError>(Documents::new(&snapshot, &config, &links).incident(&incident))
    })
    .await;
    answer(result, StatusCode::OK)
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

pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
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

#[cfg(test)]
mod cache_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::ComponentStatus;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, String, String) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "console.test")
            .header(header::AUTHORIZATION, "Bearer token")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let tag = response
            .headers()
            .get(header::ETAG)
            .map(|t| t.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, tag, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_page_is_served_from_memory_and_follows_every_change() {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        crate::components::sync(&store, &config, 0).unwrap();
        let app = router(store.clone(), Arc::new(config), "token");

        let (status, first, page) = call(&app, "GET", "/status", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("All Systems Operational"));
        let (_, again, same) = call(&app, "GET", "/status", "").await;
        assert_eq!((&again, &same), (&first, &page), "the same rendering");

        // Written straight to the store, as the incident automation does: shows
        // once the copy is due for a check.
        crate::components::set_status(
            &store,
            "api",
            ComponentStatus::MajorOutage,
            warden_store::now_ms(),
        )
        .unwrap();
        tokio::time::sleep(CHECK_EVERY + Duration::from_millis(50)).await;
        let (_, changed, page) = call(&app, "GET", "/status", "").await;
        assert_ne!(changed, first);
        assert!(page.contains("Major System Outage"), "{page}");

        // Written through the routes: shows on the very next request.
        let (status, _, body) = call(
            &app,
            "PATCH",
            "/api/admin/components/api",
            r#"{"status": "operational"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, back, page) = call(&app, "GET", "/status", "").await;
        assert_ne!(back, changed);
        assert!(page.contains("All Systems Operational"));

        // Unknown incidents are not kept, and still a 404.
        let (status, _, _) = call(&app, "GET", "/status/incidents/nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_documents() {
        let cache = PageCache::new();
        for n in 0..(MAX_CACHED * 3) {
            let entry = Arc::new(Cached {
                body: Bytes::from_static(b"x"),
                etag: None,
                content_type: "text/plain",
                event_id: None,
                generation: 0,
                rendered: Instant::now(),
                checked_ms: AtomicU64::new(cache.now_ms()),
                checking: AtomicBool::new(false),
            });
            cache.put((Document::Page, format!("http://host-{n}")), entry);
            assert!(cache.entries().len() <= MAX_CACHED);
        }
        let key = (
            Document::Page,
            format!("http://host-{}", MAX_CACHED * 3 - 1),
        );
        let entry = cache.get(&key).unwrap();
        assert!(cache.fresh(&entry));
        cache.invalidate();
        assert!(!cache.usable(&entry), "a write makes every copy stale");
    }
}
