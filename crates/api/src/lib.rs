//! The primary API service: user authentication and per-user data retrieval.
//!
//! This is the service whose failure Warden exists to prevent: a JSON API over HTTP
//! (axum) backed by SQLite or PostgreSQL (sqlx).
//!
//! How a request flows, outside in:
//!
//! 1. [`tower_http::catch_panic`] turns a panic into a 500 problem document.
//! 2. [`warden_telemetry::http::track_requests`] times it by route template.
//! 3. API routes only: load shedding (503 + `Retry-After` when
//!    `max-concurrent-requests` are already in flight) and the request timeout (503).
//!    Operational routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) skip
//!    both, so monitoring keeps working under overload.
//! 4. The handler in [`routes`]: [`auth::AuthUser`] resolves the bearer token,
//!    [`json::ApiJson`] parses the body under the JSON limits, [`db::Db`] stores.
//! 5. Errors become RFC 9457 problem documents ([`error::ApiError`]).
//!
//! [`Application::build`] binds the listener (port 0 works: tests read
//! [`Application::local_addr`]) and [`Application::run_until`] serves until a shutdown
//! signal, then lets in-flight requests finish within the shutdown deadline. A
//! connection that is slow to send a request head, or idle for too long between
//! requests, is closed ([`warden_telemetry::serve`]).

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod forwarded;
pub mod json;
pub mod model;
pub mod private;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warden_telemetry::{BuildInfo, Telemetry};

pub use config::{ApiArgs, Settings};
use error::{ApiError, problem_response};
use json::JsonLimits;

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: db::Db,
    pub passwords: auth::Passwords,
    pub throttle: Arc<auth::LoginThrottle>,
    pub trusted_proxy: forwarded::TrustedProxy,
    pub sessions: auth::SessionCache,
    pub limits: JsonLimits,
    pub token_ttl: Duration,
    pub telemetry: Telemetry,
}

impl FromRef<AppState> for db::Db {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for auth::SessionCache {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
}

impl FromRef<AppState> for forwarded::TrustedProxy {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxy.clone()
    }
}

impl FromRef<AppState> for JsonLimits {
    fn from_ref(state: &AppState) -> Self {
        state.limits
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden API",
        description = "User authentication and per-user data retrieval. Errors are RFC 9457 \
                       problem documents (`application/problem+json`)."
    ),
    modifiers(&Conventions),
    tags(
        (name = "users", description = "Registration and the current user"),
        (name = "sessions", description = "Log in and out"),
        (name = "items", description = "Each user's own JSON items"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme, and the error answers any
/// route can give (bad input, body limits, overload, internal error), so clients and
/// schema-driven testers know every status the API can return.
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from POST /v1/sessions"))
                    .build(),
            ),
        );
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let has_body = op.request_body.is_some();
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                if has_body {
                    add(
                        "400",
                        "Malformed request: a bad parameter, or a body that is not JSON every \
                         parser reads back the same: bad syntax, nesting deeper than the \
                         limit, a string with a lone UTF-16 surrogate escape, a number that \
                         is not a finite IEEE 754 double or has more than 100 characters \
                         (RFC 8259, I-JSON RFC 7493). The detail names the problem and its \
                         byte offset.",
                    );
                    add("413", "Request body larger than the limit");
                    add("415", "Content-Type is not application/json");
                    add(
                        "422",
                        "Well-formed JSON of the wrong shape: unknown, missing or mistyped fields",
                    );
                } else {
                    add("400", "Malformed request: bad parameter");
                }
                add("500", "Internal error (logged, not detailed)");
                add(
                    "503",
                    "Overloaded, timed out or database unavailable; see Retry-After",
                );
            }
        }
    }
}

/// The API's router and its OpenAPI document.
pub fn router(state: AppState, settings: &Settings) -> (Router, utoipa::openapi::OpenApi) {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::create_user))
        .routes(routes!(routes::me))
        .routes(routes!(routes::create_session))
        .routes(routes!(routes::delete_session))
        .routes(routes!(routes::create_item, routes::list_items))
        .routes(routes!(
            routes::get_item,
            routes::update_item,
            routes::delete_item
        ))
        .split_for_parts();
    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .split_for_parts();
    doc.merge(ops_doc);
    utoipa::Modify::modify(&Conventions, &mut doc);

    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        settings.max_concurrent_requests,
    ));
    let api = api.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overload_or_timeout))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
            .timeout(settings.request_timeout),
    );
    let chaos = settings.chaos_leak_bytes_per_request;
    let api = if chaos > 0 {
        api.layer(axum::middleware::map_request(
            move |request: axum::extract::Request| async move {
                json::chaos_leak(chaos);
                request
            },
        ))
    } else {
        api
    };
    let spec = Arc::new(doc.clone());
    let telemetry = state.telemetry.clone();
    let router = api
        .merge(ops)
        .route(
            "/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            telemetry,
            warden_telemetry::http::track_requests,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ));
    (router, doc)
}

async fn overload_or_timeout(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable {
            detail: "the server is at its concurrency limit; retry shortly".into(),
            retry_after_secs: 1,
        }
        .into_response()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Unavailable {
            detail: "the request took longer than the server's timeout".into(),
            retry_after_secs: 1,
        }
        .into_response()
    } else {
        ApiError::Internal(anyhow::anyhow!("middleware error: {error}")).into_response()
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "an internal error occurred; it has been logged".into(),
    )
}

/// A bound, ready-to-serve API.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: db::Db,
    settings: Settings,
}

impl Application {
    /// Connects to the database (running migrations), builds the router, and binds
    /// the listen address.
    pub async fn build(settings: Settings, build: &BuildInfo) -> anyhow::Result<Self> {
        let db = db::Db::connect(&settings.database_url, settings.db_max_connections).await?;
        let telemetry = Telemetry::new(build)?;
        register_gauges(&telemetry, &db, &settings)?;
        if settings.chaos_leak_bytes_per_request > 0 {
            tracing::warn!(
                bytes_per_request = settings.chaos_leak_bytes_per_request,
                "CHAOS: this process leaks memory on every /v1 request on purpose \
                 (--chaos-leak-bytes-per-request); never run it in production"
            );
        }
        let state = AppState {
            db: db.clone(),
            passwords: auth::Passwords::new(settings.password_hash_concurrency)?,
            throttle: Arc::new(auth::LoginThrottle::new(
                settings.login_throttle_window,
                settings.login_failures_per_account,
                settings.login_failures_per_address,
                settings.login_failures_per_account_all_addresses,
            )),
            trusted_proxy: forwarded::TrustedProxy(settings.proxy_secret.clone()),
            sessions: auth::SessionCache::new(settings.session_cache_ttl),
            limits: JsonLimits {
                max_bytes: settings.body_limit_bytes,
                max_depth: settings.json_max_depth,
            },
            token_ttl: settings.token_ttl,
            telemetry,
        };
        let (router, _) = router(state, &settings);
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        Ok(Self {
            listener,
            router,
            db,
            settings,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight
    /// requests finish for up to the shutdown timeout, and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, backend = ?self.db.backend(), "serving the API");
        let memory_log = warden_telemetry::spawn_memory_log(self.settings.memory_log_interval);
        let purge = spawn_session_purge(self.db.clone());
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(true);
        };
        // Handlers read the client's address with ConnectInfo<SocketAddr>.
        let server = warden_telemetry::serve::serve(
            self.listener,
            self.router,
            self.settings.connection_timeouts,
            signal,
        );
        let deadline = self.settings.shutdown_timeout;
        let give_up = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(deadline).await;
        };
        tokio::select! {
            () = server => {}
            () = give_up => tracing::warn!(?deadline, "shutdown deadline passed; abandoning in-flight requests"),
        }
        memory_log.abort();
        purge.abort();
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn register_gauges(telemetry: &Telemetry, db: &db::Db, settings: &Settings) -> anyhow::Result<()> {
    let pool = db.clone();
    telemetry.register_gauge(
        "warden_db_pool_connections",
        "Database connections open (idle and in use).",
        move || pool.pool_stats().map(|(open, _)| i64::from(open)),
    )?;
    let pool = db.clone();
    telemetry.register_gauge(
        "warden_db_pool_idle_connections",
        "Database connections open and idle.",
        move || pool.pool_stats().map(|(_, idle)| i64::from(idle)),
    )?;
    let max = i64::from(settings.db_max_connections);
    telemetry.register_gauge(
        "warden_db_pool_max_connections",
        "Largest number of database connections the pool may open.",
        move || Some(max),
    )?;
    let chaos = i64::try_from(settings.chaos_leak_bytes_per_request).ok();
    telemetry.register_gauge(
        "warden_chaos_leak_bytes_per_request",
        "Bytes leaked on purpose per JSON request (fault injection). Non-zero means a chaos build.",
        move || chaos,
    )?;
    Ok(())
}

/// Deletes expired sessions hourly so the table does not grow without bound.
fn spawn_session_purge(db: db::Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(3600));
        loop {
            ticker.tick().await;
            match db.purge_expired_sessions().await {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "purged expired sessions"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not purge expired sessions"),
            }
        }
    })
}

/// Completes when this process's parent is no longer `supervisor` (it exited, even by
/// kill -9, and the process was re-parented), checking twice a second; never when
/// `supervisor` is `None`. A supervised instance uses it so that it does not outlive
/// the `warden up` that started it.
pub async fn supervisor_gone(supervisor: Option<u32>) {
    let Some(supervisor) = supervisor else {
        return std::future::pending().await;
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        if std::os::unix::process::parent_id() != supervisor {
            tracing::warn!(supervisor, "the supervisor is gone; shutting down");
            return;
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
