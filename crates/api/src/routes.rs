//! The handlers. Each is thin: parse the input into domain types, call the store,
//! shape the answer.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::AppState;
use crate::auth::{AuthUser, new_token, token_digest};
use crate::db::now_ms;
use crate::error::{ApiError, Problem};
use crate::forwarded::ClientAddr;
use crate::json::ApiJson;
use crate::model::{
    Credentials, Email, Health, Item, ItemInput, ItemPage, ListParams, NewPassword, Session, Title,
    User, rfc3339,
};

/// Register a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses(
        (status = 201, description = "The user was created", body = User),
        (status = 409, description = "The email is already registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email or password", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let email = Email::parse(&body.email)?;
    let password = NewPassword::parse(body.password)?;
    let taken = || ApiError::Conflict(format!("`{}` is already registered", email.as_str()));
    if state.db.user_by_email(email.as_str()).await?.is_some() {
        return Err(taken());
    }
    let hash = state.passwords.hash(password.into_inner()).await?;
    match state.db.insert_user(email.as_str(), &hash).await? {
        Some(row) => Ok((StatusCode::CREATED, Json(row.into()))),
        None => Err(taken()),
    }
}

/// Log in: exchange email and password for a session token.
///
/// A wrong email and a wrong password get the same answer in about the same time.
/// Failed logins are throttled per account and client address, never per account
/// alone: see the 429 answer.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = Credentials,
    responses(
        (status = 201, description = "Logged in", body = Session),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins; retry after the Retry-After seconds. Failures are counted \
            per client address within a window (15 minutes by default, from the first failure): an address is refused \
            for an account after 5 failures on it, for every account after 20 failures in all, and for an account that \
            has had 50 failures from all addresses after failing on it once (defaults; see `warden api --help`). \
            An account is never locked as such: a correct password from an address that has not been failing on it \
            succeeds. Behind Warden's front proxy the client address is the one the proxy saw.",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn create_session(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let email = Email::normalise(&body.email);
    state.throttle.check(&email, client)?;
    let user = state.db.user_by_email(&email).await?;
    let (user_id, hash) = match user {
        Some(u) => (Some(u.id), Some(u.password_hash)),
        None => (None, None),
    };
    let valid = state.passwords.verify(hash, body.password).await?;
    let Some(user_id) = user_id.filter(|_| valid) else {
        state.throttle.record_failure(&email, client);
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    state.throttle.record_success(&email, client);
    let token = new_token();
    let ttl_ms = i64::try_from(state.token_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now_ms().saturating_add(ttl_ms);
    state
        .db
        .insert_session(&token_digest(&token), user_id, expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Session {
            token,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

/// Log out: revoke the token used for this request.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_session(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    state.db.delete_session(&user.token_digest).await?;
    state.sessions.revoke(&user.token_digest);
    Ok(StatusCode::NO_CONTENT)
}

/// The authenticated user.
#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<User>, ApiError> {
    match state.db.user_by_id(user.user_id).await? {
        Some(row) => Ok(Json(row.into())),
        None => Err(ApiError::Unauthorized("the account no longer exists")),
    }
}

/// Create an item.
#[utoipa::path(post, path = "/v1/items", tag = "items", request_body = ItemInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "The item was created", body = Item),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid title or body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_item(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ItemInput>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    let title = Title::parse(body.title)?;
    let row = state
        .db
        .insert_item(user.user_id, title.as_str(), body.data.get())
        .await?;
    Ok((StatusCode::CREATED, Json(row.try_into()?)))
}

/// List the caller's items, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/items", tag = "items", params(ListParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_items(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ItemPage>, ApiError> {
    let Query(params) = query?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be 1 to 100, got {limit}"
        )));
    }
    let before = match params.cursor.as_deref() {
        None => i64::MAX,
        Some(cursor) => decode_cursor(cursor)?,
    };
    let mut rows = state
        .db
        .items_before(user.user_id, before, limit + 1)
        .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(r.id)))
        .flatten();
    let items = rows
        .into_iter()
        .map(Item::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(ItemPage { items, next_cursor }))
}

/// Cursors are opaque to clients: the last id seen, base64-encoded.
fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(id.to_string())
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest("`cursor` is not a cursor this API returned".into()))
}

fn item_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    let Path(id) = path?;
    Ok(id)
}

fn no_item(id: i64) -> ApiError {
    ApiError::NotFound(format!("you have no item with id {id}"))
}

/// Get one of the caller's items. Another user's item is not found, never forbidden.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "items", params(("id" = i64, Path, description = "Item id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item of yours", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_item(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Item>, ApiError> {
    let id = item_id(path)?;
    let row = state
        .db
        .item(user.user_id, id)
        .await?
        .ok_or_else(|| no_item(id))?;
    Ok(Json(row.try_into()?))
}

/// Replace the title and data of one of the caller's items.
#[utoipa::path(put, path = "/v1/items/{id}", tag = "items", request_body = ItemInput, params(("id" = i64, Path, description = "Item id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated item", body = Item),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item of yours", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid title or body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_item(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<i64>, PathRejection>,
    ApiJson(body): ApiJson<ItemInput>,
) -> Result<Json<Item>, ApiError> {
    let id = item_id(path)?;
    let title = Title::parse(body.title)?;
    let row = state
        .db
        .update_item(user.user_id, id, title.as_str(), body.data.get())
        .await?
        .ok_or_else(|| no_item(id))?;
    Ok(Json(row.try_into()?))
}

/// Delete one of the caller's items.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "items", params(("id" = i64, Path, description = "Item id")), security(("bearer" = [])),
    responses(
        (status = 204, description = "The item is deleted"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item of yours", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_item(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = item_id(path)?;
    if state.db.delete_item(user.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_item(id))
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// How long readiness waits for the database. An orchestrator's probe gives up
/// after about a second (Kubernetes' default); a database that has not answered a
/// trivial query by then is as good as down, and saying so now beats waiting for
/// the pool's own acquire timeout (seconds) and answering nothing in time.
pub const READY_DB_TIMEOUT: Duration = Duration::from_millis(500);

/// Readiness: the database answers. Load balancers send traffic only when ready.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The database is unreachable or did not answer within 500 ms; \
            the detail says which. Answered within a second either way.",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let unreachable = |why: String| ApiError::Unavailable {
        detail: format!("the database is unreachable: {why}"),
        retry_after_secs: 1,
    };
    match tokio::time::timeout(READY_DB_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ready".into(),
        })),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {} ms",
            READY_DB_TIMEOUT.as_millis()
        ))),
    }
}

/// Prometheus metrics: requests, process, heap, database pool, build identity.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            warden_telemetry::Telemetry::CONTENT_TYPE,
        )],
        state.telemetry.render(),
    )
        .into_response()
}

/// Any path that matches no route.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// 405 as a problem document; the router adds the `Allow` header.
pub async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    crate::error::problem_response(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; the Allow header lists the methods that are",
            uri.path()
        ),
    )
}
