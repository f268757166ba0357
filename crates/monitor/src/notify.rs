//! Alert notifications: the alert rules decide *that* someone must know; this module
//! makes sure they do, over signed webhooks, Slack and email.
//!
//! # How a notification flows
//!
//! The rules engine calls [`Dispatcher::dispatch`] with a [`Notification`] each time an
//! alert fires or resolves (and may call it again on every evaluation while it keeps
//! firing). `dispatch` never blocks: it queues the notification on one *lane* per
//! (notifier, fingerprint) and returns. One task per busy lane delivers its queue in
//! order, so a `resolved` never overtakes its `firing`, while a notifier that is down
//! or slow for one alert holds up neither the other notifiers nor its other alerts.
//!
//! Each lane remembers what it last delivered. The same (fingerprint, status) is not
//! sent again within the dispatcher's `repeat_interval`; a change of status always
//! goes out. A failed attempt is retried with exponential backoff and jitter when
//! retrying can help: connection errors and timeouts, HTTP 5xx and 429 (a
//! `Retry-After` is honoured, up to the policy's `max_backoff`), SMTP 4xx replies. Other
//! answers (HTTP 3xx and 4xx, SMTP 5xx) are final. Every attempt, and every
//! notification not sent, becomes one [`Delivery`] record handed to the sink, which
//! is how the event log learns what was said to whom. Every network call is bounded
//! by a 10 s timeout.
//!
//! # Notifiers
//!
//! They are configured by the `[[notifiers]]` array of Warden's TOML config, one
//! [`ChannelConfig`] each:
//!
//! ```toml
//! [[notifiers]]
//! type = "webhook"            # Alertmanager webhook JSON, signed
//! name = "status-page"
//! url = "https://status.example.com/hooks/alerts"
//! secret = "…"                # optional; without it requests are unsigned
//!
//! [[notifiers]]
//! type = "slack"              # any Slack-compatible incoming webhook
//! name = "ops-chat"
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//!
//! [[notifiers]]
//! type = "email"
//! name = "on-call"
//! smtp_host = "smtp.example.com"
//! smtp_port = 587
//! tls = "starttls"            # none | starttls | tls
//! username = "warden"
//! password = "…"
//! from = "Warden <warden@example.com>"
//! to = ["oncall@example.com"]
//! ```
//!
//! Secrets — the webhook secret, the SMTP password and the Slack URL, which embeds a
//! token — never appear in logs, errors or `Debug` output.
//!
//! # Webhook payload
//!
//! A webhook receives the JSON body Alertmanager sends (`"version": "4"`), so any
//! receiver written for Alertmanager understands it: `status`, `receiver` (the
//! notifier's name), `groupKey`, `groupLabels`, `commonLabels`, `commonAnnotations`,
//! `externalURL` and one alert in `alerts` with its `status`, `labels` (including
//! `alertname` and `severity`), `annotations` (`summary`, `description`), `startsAt`,
//! `endsAt` (`0001-01-01T00:00:00Z` while firing), `generatorURL` and `fingerprint`.
//!
//! # Webhook signatures
//!
//! When the notifier has a `secret`, each request carries
//!
//! ```text
//! X-Warden-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! the scheme Stripe uses. The MAC covers the exact bytes of the body and the
//! timestamp, so a receiver that checks both (and that the timestamp is recent) rejects
//! tampered bodies and replays of old requests. Each retry is signed afresh. Receivers
//! written in Rust can call [`verify_signature`]; elsewhere: split the header on `,`,
//! take `t` and every `v1`, compute the HMAC of `t + "." + raw body` with the shared
//! secret, compare in constant time with any `v1`, and reject a `t` more than a few
//! minutes from now.

mod channel;
mod dispatch;
mod email;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use channel::{ChannelConfig, SmtpTls};
pub use dispatch::Dispatcher;
pub use email::smtp_transport;
pub use webhook::{SIGNATURE_HEADER, signature_header, verify_signature};

/// Bound on every network call a notifier makes: one HTTP request, or one whole SMTP
/// session.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an alert has started or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    /// `"firing"` or `"resolved"`, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    /// `"FIRING"` or `"RESOLVED"`, as in subjects and chat messages.
    fn shout(self) -> &'static str {
        match self {
            Self::Firing => "FIRING",
            Self::Resolved => "RESOLVED",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert changing state (or still firing), as every notifier will tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id of the alert (rule + instance): the de-duplication key, and the key
    /// that keeps one alert's notifications in order.
    pub fingerprint: String,
    pub status: AlertStatus,
    /// The rule's name, e.g. `MemoryLeak`.
    pub alert: String,
    /// `critical` or `warning`.
    pub severity: String,
    /// One line that says what is wrong and how bad it is.
    pub summary: String,
    pub description: String,
    /// `instance`, `release`, `evidence`, ...
    pub labels: BTreeMap<String, String>,
    /// When the alert started, unix milliseconds.
    pub starts_at_ms: i64,
    /// When it resolved, unix milliseconds.
    pub ends_at_ms: Option<i64>,
    /// Where a human sees the evidence.
    pub dashboard_url: Option<String>,
}

/// What happened to one notification on one notifier: one record per attempt, or one
/// for a notification that was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notifier's configured name.
    pub notifier: String,
    pub fingerprint: String,
    pub status: AlertStatus,
    /// 1 for the first attempt; 0 when no attempt was made (a
    /// [`DeliveryOutcome::Suppressed`], or no tokio runtime to send on).
    pub attempt: u32,
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// When the attempt ended, unix milliseconds.
    pub at_ms: i64,
    /// The receiver's HTTP status, when it answered one.
    pub http_status: Option<u16>,
}

/// How one attempt ended. Serialized flat into [`Delivery`]:
/// `"outcome": "failed", "error": "..."`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver accepted it (HTTP 2xx, SMTP 250).
    Delivered,
    /// This attempt failed; a later record says whether a retry did better.
    Failed { error: String },
    /// Not sent: the same status went out within the repeat interval, or a newer
    /// notification with the same status replaced it in the queue.
    Suppressed { reason: String },
}

/// How hard to try before giving up on one notification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time, with jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts, also the cap on a `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// The notification's labels with `alertname` and `severity` set from the
/// notification, as Alertmanager labels an alert.
fn alert_labels(n: &Notification) -> BTreeMap<String, String> {
    let mut labels = n.labels.clone();
    labels.insert("alertname".to_owned(), n.alert.clone());
    labels.insert("severity".to_owned(), n.severity.clone());
    labels
}

/// `2024-05-01T13:00:00.250Z`; the raw number when it is out of range.
fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

use crate::dashboard::time_text as human_time;

/// Now, unix milliseconds.
fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// At most `max` bytes of `s`, cut at a character boundary, with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
