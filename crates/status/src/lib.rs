//! Telling users what is happening while it happens: the components they depend on
//! and their state, incidents with a timeline of updates, scheduled maintenance,
//! and the public faces that show them.
//!
//! # Layout
//!
//! - [`model`]: the vocabulary (component states, incident and maintenance states,
//!   impact, the page indicator), spelled exactly as Statuspage spells it.
//! - [`config`]: the page's identity, its components and the message templates of
//!   the communication plan (docs/COMMUNICATION.md).
//! - [`components`], [`incidents`], [`maintenance`]: every change. Each one is a
//!   single transaction of the control plane's store that writes the rows and
//!   appends the matching events (`incident.opened`, `component.status`,
//!   `maintenance.started`, ...) to the event log, so the log is the history.
//! - [`uptime`]: 90 days of uptime per component from its recorded state changes.
//! - [`statuspage`]: the Statuspage-compatible JSON documents (`/api/v2/...`).
//! - [`page`] and [`feed`]: the HTML status page and the Atom/RSS history feeds.
//! - [`http`]: the console's routes: the public, read-only faces and the admin API
//!   (bearer token) that changes things; [`client`] is what the CLI calls it with.
//! - [`export`]: the same page and JSON as static files.
//!
//! # How a change flows
//!
//! `warden incident open` → `POST /api/admin/incidents` → [`incidents::open`]
//! checks the request, and in one transaction sets the components' states, records
//! the incident and its first update, and appends the events. The next request for
//! `/status` reads a [`statuspage::Snapshot`] of the store and renders it; its ETag
//! is a hash of what it rendered, so an unchanged page is a 304.
//!
//! Automation to come (alert → incident, rollback → identified/monitoring,
//! subscribers) calls the same functions with their own requests: the store and the
//! event log do not care who writes.

pub mod automation;
pub mod bench;
pub mod client;
pub mod components;
pub mod config;
pub mod deliver;
pub mod export;
pub mod feed;
pub mod http;
pub mod incidents;
pub mod maintenance;
pub mod model;
pub mod page;
pub mod postmortem;
pub mod reminders;
pub mod signup;
pub mod statuspage;
pub mod subscribers;
pub mod uptime;

pub use config::StatusConfig;
pub use model::{ComponentStatus, Impact, IncidentStatus, Indicator, MaintenanceStatus};

/// Why a change was refused or failed. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The request is not acceptable as it stands; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// No incident, maintenance or component by that id.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. updating a resolved
    /// incident).
    #[error("{0}")]
    Conflict(String),
    /// It came too late (e.g. a confirmation link followed after it expired).
    #[error("{0}")]
    Expired(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] warden_store::Error),
}

/// Result type of changes.
pub type Result<T, E = StatusError> = std::result::Result<T, E>;

/// A new identifier for an incident, maintenance or update: 12 lowercase letters
/// and digits, like Statuspage's.
#[must_use]
pub fn new_id() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = rand::random::<u64>();
    let mut out = String::with_capacity(12);
    for _ in 0..12 {
        out.push(char::from(ALPHABET[(n % 36) as usize]));
        n /= 36;
    }
    out
}

/// Checks a title: 1 to 200 characters after trimming.
pub(crate) fn check_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StatusError::Invalid(format!(
            "{field}: give a title of 1 to 200 characters"
        )));
    }
    Ok(name.to_owned())
}

/// Checks an update's text: at most 10 000 characters; empty means "use the
/// template".
pub(crate) fn check_body(body: Option<&str>) -> Result<Option<String>> {
    let Some(body) = body.map(str::trim).filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    if body.chars().count() > 10_000 {
        return Err(StatusError::Invalid(
            "body: at most 10000 characters; link to a longer write-up instead".into(),
        ));
    }
    Ok(Some(body.to_owned()))
}

/// Unix milliseconds as `2025-01-02 13:04 UTC`, how the page and templates show time.
#[must_use]
pub fn human_time(ms: i64) -> String {
    datetime(ms)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Unix milliseconds as RFC 3339 with milliseconds, `2025-01-02T13:04:05.123Z`,
/// how Statuspage's JSON writes time.
#[must_use]
pub fn json_time(ms: i64) -> String {
    datetime(ms)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// Parses an RFC 3339 time (`2025-01-02T13:00:00Z`) to unix milliseconds.
///
/// # Errors
/// Names `field` and the expected form.
pub fn parse_time(field: &str, text: &str) -> Result<i64> {
    let parsed =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                StatusError::Invalid(format!(
                    "{field}: {text:?} is not an RFC 3339 time like 2025-01-02T13:00:00Z ({e})"
                ))
            })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| StatusError::Invalid(format!("{field}: {text:?} is out of range")))
}

pub(crate) fn datetime(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// What [`start`] connects the status page to.
pub struct Wiring {
    /// The token every admin request must present.
    pub admin_token: String,
    /// Where links in notifications point when `[page] url` is not set: the
    /// console's address, e.g. `http://127.0.0.1:8081`.
    pub base_url: String,
    /// The on-call channel (the monitor's notifiers), reminded of incidents that
    /// wait for an update.
    pub on_call: Option<warden_monitor::notify::Dispatcher>,
}

/// Everything `warden up` needs for the status page: brings the stored components
/// in line with `config`, starts the maintenance clock, the incident automation,
/// the update reminders, subscriber delivery and the expiry of unconfirmed
/// sign-ups (tasks on the current runtime), and returns the console's routes.
///
/// # Errors
/// The components cannot be recorded, or the subscriber email settings are unusable.
pub fn start(
    store: warden_store::Store,
    config: StatusConfig,
    wiring: Wiring,
) -> anyhow::Result<axum::Router> {
    let config = std::sync::Arc::new(config);
    components::sync(&store, &config, warden_store::now_ms())
        .map_err(|e| anyhow::anyhow!("status page: cannot record the components: {e}"))?;
    let sender = deliver::Sender::new(config.clone(), &wiring.base_url)?;
    tokio::spawn(maintenance::run_clock(store.clone(), config.clone()));
    tokio::spawn(automation::run(store.clone(), config.clone()));
    tokio::spawn(deliver::run(store.clone(), sender));
    tokio::spawn(subscribers::run_expiry(store.clone(), config.clone()));
    if let Some(on_call) = wiring.on_call {
        tokio::spawn(reminders::run(
            store.clone(),
            config.clone(),
            on_call,
            wiring.base_url.clone(),
        ));
    }
    Ok(
        http::router(store.clone(), config.clone(), &wiring.admin_token).merge(signup::router(
            store,
            config,
            &wiring.admin_token,
        )),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_are_twelve_base36_characters_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 12);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn times_format_and_parse() {
        assert_eq!(json_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(human_time(1_700_000_000_123), "2023-11-14 22:13 UTC");
        assert_eq!(
            parse_time("t", "2023-11-14T23:13:20.123+01:00").unwrap(),
            1_700_000_000_123
        );
        let error = parse_time("scheduled_for", "tomorrow")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("scheduled_for") && error.contains("RFC 3339"),
            "{error}"
        );
    }

    #[test]
    fn names_and_bodies_are_checked() {
        assert!(check_name("name", "  ").is_err());
        assert_eq!(check_name("name", " API down ").unwrap(), "API down");
        assert_eq!(check_body(Some("  ")).unwrap(), None);
        assert!(check_body(Some(&"x".repeat(10_001))).is_err());
    }
}
