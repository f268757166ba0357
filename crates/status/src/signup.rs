//! The console's subscriber routes.
//!
//! Public (HTML forms that work without JavaScript; a small body limit):
//!
//! - `GET /subscribe`, `POST /subscribe` (`email`, `components`): email sign-up.
//!   The answer is the same whether or not the address is known.
//! - `GET|POST /subscriptions/{token}/confirm`: the double opt-in. `GET` shows a
//!   button (so a mail scanner that follows links confirms nothing), `POST` confirms
//!   (410 with the sign-up form again once the link has expired).
//! - `GET|POST /subscriptions/{token}/unsubscribe`: likewise; a `POST` is also the
//!   RFC 8058 one-click unsubscribe that mail clients send.
//!
//! Admin (`Authorization: Bearer <admin token>`, JSON):
//!
//! - `GET /api/admin/subscribers`: every subscriber (no secrets, no tokens).
//! - `POST /api/admin/subscribers` ([`AddWebhook`]) → 201, with the webhook's
//!   signing secret (shown this once).
//! - `DELETE /api/admin/subscribers/{id}`; `POST /api/admin/subscribers/{id}/reactivate`
//!   (after a quarantine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use warden_store::Store;

use crate::http::{answer, check_token, problem};
use crate::subscribers::{self, AddWebhook, SignUp, SignUpLimiter, SubscriberView};
use crate::{StatusConfig, StatusError};

#[derive(Clone)]
struct Shared {
    store: Store,
    config: Arc<StatusConfig>,
    token_sha256: [u8; 32],
    limiter: SignUpLimiter,
}

/// The subscriber routes, to merge into the console's router. The client address
/// that sign-ups are limited by comes from `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info`); without it, all clients share one limit.
pub fn router(store: Store, config: Arc<StatusConfig>, admin_token: &str) -> Router {
    let shared = Shared {
        limiter: SignUpLimiter::new(config.subscribers.signups_per_client_per_hour),
        store,
        config,
        token_sha256: Sha256::digest(admin_token.as_bytes()).into(),
    };
    let public = Router::new()
        .route("/subscribe", get(form).post(sign_up))
        .route(
            "/subscriptions/{token}/confirm",
            get(confirm_page).post(confirm),
        )
        .route(
            "/subscriptions/{token}/unsubscribe",
            get(unsubscribe_page).post(unsubscribe),
        )
        .layer(DefaultBodyLimit::max(4096));
    let admin = Router::new()
        .route("/api/admin/subscribers", get(list).post(add))
        .route("/api/admin/subscribers/{id}", axum::routing::delete(remove))
        .route("/api/admin/subscribers/{id}/reactivate", post(reactivate));
    public.merge(admin).with_state(shared)
}

// ---- public pages ----

struct BaseLinks {
    home: String,
    summary: String,
    atom: String,
    rss: String,
}

#[derive(Template)]
#[template(path = "subscribe.html")]
struct Page<'a> {
    page_name: &'a str,
    links: BaseLinks,
    title: &'a str,
    message: Vec<String>,
    /// `signup`, `confirm`, `unsubscribe` or empty.
    form: &'a str,
    action: String,
    email: String,
    components: Vec<(String, String)>,
}

impl<'a> Page<'a> {
    fn new(config: &'a StatusConfig, title: &'a str, message: &[&str]) -> Self {
        Self {
            page_name: &config.page.name,
            links: BaseLinks {
                home: "/status".into(),
                summary: "/api/v2/summary.json".into(),
                atom: "/history.atom".into(),
                rss: "/history.rss".into(),
            },
            title,
            message: message.iter().map(|m| (*m).to_owned()).collect(),
            form: "",
            action: String::new(),
            email: String::new(),
            components: Vec::new(),
        }
    }

    fn signup(config: &'a StatusConfig, message: &[&str], email: &str) -> Self {
        let mut page = Self::new(config, "Get status updates by email", message);
        page.form = "signup";
        page.action = "/subscribe".into();
        page.email = email.to_owned();
        page.components = config
            .components
            .iter()
            .map(|c| (c.id(), c.name.clone()))
            .collect();
        page
    }

    fn answer(&self, status: StatusCode) -> Response {
        let mut response = match self.render() {
            Ok(html) => (status, html).into_response(),
            Err(error) => {
                tracing::error!(%error, "status: cannot render a subscription page");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                );
            }
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // The URL may hold a subscriber's token: never cache it, never send it on.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 base-uri 'none'; frame-ancestors 'none'",
            ),
        );
        response
    }
}

const CLOSED: &str = "Email updates are not offered here. Follow the Atom or RSS feed, or \
    read the JSON, linked below.";

async fn form(State(shared): State<Shared>) -> Response {
    if !shared.config.subscribers.email_signup_open() {
        return Page::new(&shared.config, "Email updates", &[CLOSED]).answer(StatusCode::NOT_FOUND);
    }
    Page::signup(
        &shared.config,
        &[
            "Get an email when an incident is opened, updated or resolved, and when \
           scheduled maintenance starts and ends.",
        ],
        "",
    )
    .answer(StatusCode::OK)
}

/// The client's address, when the server records it.
struct ClientAddr(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

async fn sign_up(
    State(shared): State<Shared>,
    ClientAddr(client): ClientAddr,
    body: Bytes,
) -> Response {
    let config = shared.config.clone();
    if !config.subscribers.email_signup_open() {
        return Page::new(&config, "Email updates", &[CLOSED]).answer(StatusCode::NOT_FOUND);
    }
    let mut email = String::new();
    let mut components = Vec::new();
    let mut robot = false;
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "email" => email = value.into_owned(),
            "components" => components.push(value.into_owned()),
            "website" => robot |= !value.trim().is_empty(),
            _ => {}
        }
    }
    let sent = [
        "If this address can receive our email, a message with a confirmation link is on \
         its way. Follow the link to start receiving updates; until then nothing else is \
         sent.",
    ];
    if robot {
        // Looks like success, does nothing.
        return Page::new(&config, "Check your inbox", &sent).answer(StatusCode::OK);
    }
    if !shared.limiter.allow(client) {
        return busy(&config);
    }
    let store = shared.store.clone();
    let request = (config.clone(), email.clone());
    let result = tokio::task::spawn_blocking(move || {
        let (config, email) = request;
        subscribers::sign_up_email(&store, &config, &email, &components, warden_store::now_ms())
    })
    .await;
    match result {
        Ok(Ok(SignUp::ConfirmationQueued | SignUp::Unchanged)) => {
            Page::new(&config, "Check your inbox", &sent).answer(StatusCode::OK)
        }
        Ok(Ok(SignUp::Busy)) => busy(&config),
        Ok(Err(StatusError::Invalid(message))) => {
            Page::signup(&config, &[&message], &email).answer(StatusCode::UNPROCESSABLE_ENTITY)
        }
        Ok(Err(error)) => unavailable(&config, &error.to_string()),
        Err(error) => unavailable(&config, &error.to_string()),
    }
}

fn busy(config: &StatusConfig) -> Response {
    let mut response = Page::new(
        config,
        "Please try again later",
        &["We have had many sign-ups in the last hour. Please try again in an hour."],
    )
    .answer(StatusCode::TOO_MANY_REQUESTS);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
    response
}

fn unavailable(config: &StatusConfig, error: &str) -> Response {
    tracing::error!(%error, "status: a subscription change failed");
    Page::new(
        config,
        "Please try again shortly",
        &["Your request could not be recorded just now; nothing changed."],
    )
    .answer(StatusCode::SERVICE_UNAVAILABLE)
}

async fn confirm_page(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    link_page(&shared, &token, "confirm", "Confirm your subscription")
}

async fn unsubscribe_page(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    link_page(&shared, &token, "unsubscribe", "Unsubscribe")
}

/// The button page of a link; the token is only echoed back when it has the shape
/// of one.
fn link_page(shared: &Shared, token: &str, form: &'static str, title: &'static str) -> Response {
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return gone(&shared.config, form == "confirm");
    }
    let mut page = Page::new(&shared.config, title, &[]);
    page.form = form;
    page.action = format!("/subscriptions/{token}/{form}");
    page.answer(StatusCode::OK)
}

/// An unknown link; for a confirmation link, most likely one that expired and
/// whose sign-up was deleted since.
fn gone(config: &StatusConfig, confirming: bool) -> Response {
    let expired = format!(
        "Confirmation links work for {}; a sign-up not confirmed in time is deleted.",
        humantime::format_duration(config.subscribers.confirm_within)
    );
    let again = "Sign up again from the status page if you want updates.";
    let message: &[&str] = if confirming {
        &[&expired, again]
    } else {
        &[again]
    };
    Page::new(config, "This link is no longer valid", message).answer(StatusCode::NOT_FOUND)
}

/// A confirmation link followed too late: nothing changed; the form to sign up
/// again, when it is open.
fn expired(config: &StatusConfig) -> Response {
    let within = humantime::format_duration(config.subscribers.confirm_within);
    let mut page = if config.subscribers.email_signup_open() {
        Page::signup(
            config,
            &[&format!(
                "Confirmation links work for {within}, and this one was not followed in \
                 time, so you are not subscribed. Sign up again below to get a new link."
            )],
            "",
        )
    } else {
        Page::new(
            config,
            "",
            &[&format!(
                "Confirmation links work for {within}, and this one was not followed in \
                 time, so you are not subscribed."
            )],
        )
    };
    page.title = "This confirmation link has expired";
    page.answer(StatusCode::GONE)
}

async fn confirm(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    follow_link(shared, token, true).await
}

async fn unsubscribe(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    follow_link(shared, token, false).await
}

async fn follow_link(shared: Shared, token: String, confirming: bool) -> Response {
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let result = tokio::task::spawn_blocking(move || {
        let now = warden_store::now_ms();
        if confirming {
            subscribers::confirm(&store, &config, &token, now)
        } else {
            subscribers::unsubscribe(&store, &token, now)
        }
    })
    .await;
    let config = &shared.config;
    match result {
        Ok(Ok(_)) if confirming => Page::new(
            config,
            "You are subscribed",
            &[
                "You will get an email when an incident is opened, updated or resolved. \
               Each one has a link to unsubscribe.",
            ],
        )
        .answer(StatusCode::OK),
        Ok(Ok(_)) => Page::new(
            config,
            "You are unsubscribed",
            &["We will not email you again."],
        )
        .answer(StatusCode::OK),
        Ok(Err(StatusError::NotFound(_))) => gone(config, confirming),
        Ok(Err(StatusError::Expired(_))) => expired(config),
        Ok(Err(error)) => unavailable(config, &error.to_string()),
        Err(error) => unavailable(config, &error.to_string()),
    }
}

// ---- admin ----

async fn admin<T: serde::Serialize + Send + 'static>(
    shared: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    work: impl FnOnce(&Store, &StatusConfig, i64) -> crate::Result<T> + Send + 'static,
) -> Response {
    if let Err(response) = check_token(&shared.token_sha256, headers) {
        return *response;
    }
    let (store, config) = (shared.store.clone(), shared.config.clone());
    let result =
        tokio::task::spawn_blocking(move || work(&store, &config, warden_store::now_ms())).await;
    answer(result, status)
}

async fn list(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    admin(&shared, &headers, StatusCode::OK, |store, _, _| {
        Ok(store
            .subscribers()?
            .iter()
            .map(SubscriberView::from)
            .collect::<Vec<_>>())
    })
    .await
}

async fn add(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = check_token(&shared.token_sha256, &headers) {
        return *response;
    }
    let request: AddWebhook = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body is not a webhook subscription (`url`, `components`, `secret`): {error}"
                ),
            );
        }
    };
    admin(
        &shared,
        &headers,
        StatusCode::CREATED,
        move |store, config, now| subscribers::add_webhook(store, config, &request, now),
    )
    .await
}

async fn remove(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin(&shared, &headers, StatusCode::OK, move |store, _, now| {
        subscribers::remove(store, &id, now)
    })
    .await
}

async fn reactivate(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin(&shared, &headers, StatusCode::OK, move |store, _, now| {
        subscribers::reactivate(store, &id, now)
    })
    .await
}
