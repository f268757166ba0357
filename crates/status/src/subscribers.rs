//! Subscribers: people (email) and systems (webhooks) told of incidents and
//! maintenance as they happen, optionally only for the components they care about.
//!
//! - **Email, double opt-in.** The public form (`GET /subscribe`) asks for an address
//!   and, optionally, components. A sign-up is `pending` until the link in the
//!   confirmation email is followed; only then does anything else get sent. A link
//!   not followed within `[subscribers] confirm_within` expires: it confirms
//!   nothing, and [`run_expiry`] deletes the sign-up, so the address can sign up
//!   afresh. Every message carries an unsubscribe link (and `List-Unsubscribe`
//!   headers, one-click per RFC 8058).
//! - **Webhooks** are added by an operator through the admin API (a public form that
//!   makes the server POST to any URL would be an open relay). Each request is a
//!   Statuspage-style JSON payload signed with the subscriber's own secret, the way
//!   Warden's alert webhooks are (`X-Warden-Signature`, HMAC-SHA256).
//! - **Anti-abuse.** The form answers the same whatever the address (no way to learn
//!   who subscribed), asks again at most once per [`RESEND_AFTER_MS`] for one address,
//!   limits sign-ups per client address and per hour overall, has a hidden field
//!   that only robots fill, and takes a small body. No page shows subscriber data.
//!
//! Delivery — what is sent for which event, retries, quarantine — is
//! [`crate::deliver`]'s job. Every change here is one transaction that writes the
//! subscriber and appends an event (`subscriber.pending`, `subscriber.confirmed`,
//! `subscriber.expired`, `subscriber.unsubscribed`, `subscriber.added`,
//! `subscriber.removed`, `subscriber.reactivated`); the events name the subscriber
//! by id only.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_monitor::notify::SmtpTls;
use warden_store::{NewEvent, StatusTx, Store, Subscriber};

use crate::{Result, StatusConfig, StatusError};

/// A pending address is sent a new confirmation at most this often.
pub const RESEND_AFTER_MS: i64 = 10 * 60 * 1000;

/// `[subscribers]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscribersConfig {
    /// Offer the public sign-up form (it also needs `[subscribers.smtp]`).
    pub signup: bool,
    /// `[subscribers.smtp]`: the server that sends subscriber email. Without it
    /// there is no email subscription; webhooks still work.
    pub smtp: Option<SmtpConfig>,
    /// Attempts per notification, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Notifications given up on in a row before a subscriber is quarantined: no
    /// more attempts until an operator reactivates it.
    pub quarantine_after: u32,
    /// Sign-ups accepted from one client address per hour.
    pub signups_per_client_per_hour: u32,
    /// Confirmation emails sent per hour in all.
    pub signups_per_hour: u32,
    /// How long a confirmation link works, from when it was sent. A sign-up not
    /// confirmed by then is deleted; the address may sign up again.
    #[serde(with = "humantime_serde")]
    pub confirm_within: Duration,
}

impl Default for SubscribersConfig {
    fn default() -> Self {
        Self {
            signup: true,
            smtp: None,
            attempts: 6,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            quarantine_after: 3,
            signups_per_client_per_hour: 5,
            signups_per_hour: 200,
            confirm_within: Duration::from_secs(48 * 3600),
        }
    }
}

/// `[subscribers.smtp]`. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "smtp_port")]
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default = "no_tls")]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, e.g. `Example status <status@example.com>`.
    pub from: String,
}

fn smtp_port() -> u16 {
    25
}

fn no_tls() -> SmtpTls {
    SmtpTls::None
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SubscribersConfig {
    /// Checks what serde cannot; the error names the key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.attempts == 0 || self.attempts > 20 {
            return Err("subscribers.attempts: use 1 to 20".into());
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(
                "subscribers.initial_backoff: must be above zero and at most max_backoff".into(),
            );
        }
        if self.quarantine_after == 0 {
            return Err("subscribers.quarantine_after: use 1 or more".into());
        }
        if self.signups_per_client_per_hour == 0 || self.signups_per_hour == 0 {
            return Err(
                "subscribers.signups_per_client_per_hour and signups_per_hour: use 1 or more \
                 (set signup = false to close the form)"
                    .into(),
            );
        }
        if self.confirm_within < Duration::from_secs(1) {
            return Err(
                "subscribers.confirm_within: use 1s or more, e.g. \"48h\" (how long a \
                 confirmation link works)"
                    .into(),
            );
        }
        if let Some(smtp) = &self.smtp {
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("subscribers.smtp.from: {:?}: {e}", smtp.from))?;
            if smtp.host.trim().is_empty() {
                return Err("subscribers.smtp.host: name the SMTP server".into());
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err("subscribers.smtp: set both username and password, or neither".into());
            }
        }
        Ok(())
    }

    /// Whether the public form takes sign-ups.
    #[must_use]
    pub fn email_signup_open(&self) -> bool {
        self.signup && self.smtp.is_some()
    }
}

/// `email`.
pub const EMAIL: &str = "email";
/// `webhook`.
pub const WEBHOOK: &str = "webhook";

/// A subscriber as the admin API shows it: no secret, no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberView {
    pub id: String,
    /// `email` or `webhook`.
    pub kind: String,
    pub address: String,
    /// Component ids; empty means all.
    pub components: Vec<String>,
    /// `pending`, `active`, `unsubscribed` or `quarantined`.
    pub state: String,
    pub created_at: String,
    pub confirmed_at: Option<String>,
    /// Notifications given up on in a row.
    pub failures: i64,
    pub last_error: Option<String>,
    /// Only when a webhook is added: its signing secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<&Subscriber> for SubscriberView {
    fn from(s: &Subscriber) -> Self {
        Self {
            id: s.id.clone(),
            kind: s.kind.clone(),
            address: s.address.clone(),
            components: s.components.clone(),
            state: s.state.clone(),
            created_at: crate::json_time(s.created_ms),
            confirmed_at: s.confirmed_ms.map(crate::json_time),
            failures: s.failures,
            last_error: s.last_error.clone(),
            secret: None,
        }
    }
}

/// `POST /api/admin/subscribers`: a webhook subscriber. `Debug` does not show the
/// secret.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddWebhook {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// Component ids [default: all].
    #[serde(default)]
    pub components: Vec<String>,
    /// The signing secret [default: a new random one, returned once].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for AddWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddWebhook")
            .field("url", &self.url)
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

/// A random secret for links and signatures: 32 lowercase hex characters.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn event(
    tx: &StatusTx<'_>,
    kind: &str,
    subscriber: &Subscriber,
    at_ms: i64,
) -> warden_store::Result<()> {
    tx.append_event_at(
        at_ms,
        &NewEvent {
            kind: kind.into(),
            release: None,
            payload: serde_json::json!({
                "subscriber_id": subscriber.id,
                "kind": subscriber.kind,
                "components": subscriber.components,
            }),
        },
    )?;
    Ok(())
}

/// Checks component ids against the configured components.
fn check_components(config: &StatusConfig, components: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> = config
        .components
        .iter()
        .map(crate::config::ComponentConfig::id)
        .collect();
    let mut out = Vec::new();
    for id in components {
        let id = id.trim();
        if !known.iter().any(|k| k == id) {
            return Err(StatusError::Invalid(format!(
                "components: {id:?} is not a component; use one of {}",
                known.join(", ")
            )));
        }
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// Checks and normalises an email address (lowercased, at most 254 characters).
fn check_email(address: &str) -> Result<String> {
    let address = address.trim().to_lowercase();
    if address.len() > 254 || address.parse::<lettre::Address>().is_err() {
        return Err(StatusError::Invalid(
            "email: give an address like name@example.com".into(),
        ));
    }
    Ok(address)
}

/// What a sign-up did; the form says the same thing in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUp {
    /// A confirmation email is on its way.
    ConfirmationQueued,
    /// Nothing to do: already subscribed, or asked again too soon.
    Unchanged,
    /// Too many sign-ups this hour in all.
    Busy,
}

/// Signs `address` up for email (pending until confirmed).
///
/// # Errors
/// A bad address or component ([`StatusError::Invalid`]), or the store failed.
pub fn sign_up_email(
    store: &Store,
    config: &StatusConfig,
    address: &str,
    components: &[String],
    now_ms: i64,
) -> Result<SignUp> {
    let address = check_email(address)?;
    let components = check_components(config, components)?;
    store.status_write(|tx| {
        let mut existing = tx.subscriber_at(EMAIL, &address)?;
        if let Some(s) = existing.take_if(|s| link_expired(s, &config.subscribers, now_ms)) {
            // What the sweep would have done by now; then this is a new sign-up.
            expire(tx, &s, now_ms)?;
        }
        if let Some(s) = &existing {
            let asked_recently = s.state == "pending" && now_ms - s.updated_ms < RESEND_AFTER_MS;
            if s.state == "active" || asked_recently {
                return Ok(SignUp::Unchanged);
            }
        }
        if tx.sign_ups_since(now_ms - 3_600_000)? >= i64::from(config.subscribers.signups_per_hour)
        {
            return Ok(SignUp::Busy);
        }
        let subscriber = Subscriber {
            id: existing
                .as_ref()
                .map_or_else(crate::new_id, |s| s.id.clone()),
            kind: EMAIL.into(),
            address,
            components,
            secret: None,
            token: random_token(),
            state: "pending".into(),
            created_ms: existing.as_ref().map_or(now_ms, |s| s.created_ms),
            confirmed_ms: None,
            updated_ms: now_ms,
            failures: 0,
            last_error: None,
        };
        tx.put_subscriber(&subscriber)?;
        event(tx, "subscriber.pending", &subscriber, now_ms)?;
        Ok(SignUp::ConfirmationQueued)
    })
}

/// Follows a confirmation link: the subscriber becomes active.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown or spent link, [`StatusError::Expired`]
/// for one not followed within `[subscribers] confirm_within` (nothing changes; the
/// sweep deletes the sign-up).
pub fn confirm(
    store: &Store,
    config: &StatusConfig,
    token: &str,
    now_ms: i64,
) -> Result<Subscriber> {
    by_token(store, token, |tx, mut s| {
        match s.state.as_str() {
            "active" => {}
            "pending" if link_expired(&s, &config.subscribers, now_ms) => {
                return Err(StatusError::Expired(format!(
                    "this confirmation link has expired (links work for {}); sign up again \
                     from the status page",
                    humantime::format_duration(config.subscribers.confirm_within)
                )));
            }
            "pending" => {
                s.state = "active".into();
                s.confirmed_ms = Some(now_ms);
                s.updated_ms = now_ms;
                tx.put_subscriber(&s)?;
                event(tx, "subscriber.confirmed", &s, now_ms)?;
            }
            _ => return Err(spent()),
        }
        Ok(s)
    })
}

/// Follows an unsubscribe link: nothing more is sent.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown link.
pub fn unsubscribe(store: &Store, token: &str, now_ms: i64) -> Result<Subscriber> {
    by_token(store, token, |tx, mut s| {
        if s.state != "unsubscribed" {
            s.state = "unsubscribed".into();
            s.updated_ms = now_ms;
            tx.put_subscriber(&s)?;
            tx.drop_pending_deliveries(&s.id)?;
            event(tx, "subscriber.unsubscribed", &s, now_ms)?;
        }
        Ok(s)
    })
}

/// `confirm_within` in milliseconds.
fn confirm_within_ms(config: &SubscribersConfig) -> i64 {
    i64::try_from(config.confirm_within.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `subscriber` is a sign-up whose confirmation link, sent when its row last
/// changed, has expired at `now_ms`.
fn link_expired(subscriber: &Subscriber, config: &SubscribersConfig, now_ms: i64) -> bool {
    subscriber.state == "pending"
        && now_ms.saturating_sub(subscriber.updated_ms) > confirm_within_ms(config)
}

/// Deletes an expired sign-up (and the confirmation queued for it) with its event.
fn expire(tx: &StatusTx<'_>, subscriber: &Subscriber, now_ms: i64) -> warden_store::Result<()> {
    tx.delete_subscriber(&subscriber.id)?;
    event(tx, "subscriber.expired", subscriber, now_ms)
}

/// Deletes every sign-up whose confirmation link has expired (not followed within
/// `[subscribers] confirm_within` of being sent), each with a `subscriber.expired`
/// event, in one transaction; returns how many.
///
/// # Errors
/// The store failed; nothing changed, and the next sweep finds the same sign-ups.
pub fn expire_unconfirmed(
    store: &Store,
    config: &StatusConfig,
    now_ms: i64,
) -> warden_store::Result<usize> {
    let before = now_ms.saturating_sub(confirm_within_ms(&config.subscribers));
    store.status_write(|tx| {
        let expired = tx.pending_subscribers_before(before)?;
        for subscriber in &expired {
            expire(tx, subscriber, now_ms)?;
        }
        Ok(expired.len())
    })
}

/// Sweeps expired sign-ups until the task is dropped: every minute, or every half
/// `confirm_within` when that is shorter.
pub async fn run_expiry(store: Store, config: Arc<StatusConfig>) {
    let every = (config.subscribers.confirm_within / 2)
        .clamp(Duration::from_millis(500), Duration::from_secs(60));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let config = config.clone();
        match store
            .blocking(move |s| expire_unconfirmed(s, &config, warden_store::now_ms()))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "status: deleted sign-ups never confirmed"),
            Err(error) => tracing::warn!(%error, "status: the expiry of sign-ups will retry"),
        }
    }
}

fn spent() -> StatusError {
    StatusError::NotFound("this link is no longer valid; sign up again from the status page".into())
}

fn by_token<T>(
    store: &Store,
    token: &str,
    work: impl FnOnce(&StatusTx<'_>, Subscriber) -> Result<T>,
) -> Result<T> {
    let token = token.trim();
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(spent());
    }
    // Found outside the transaction by its unique token, then re-read inside it.
    let found = store.subscriber_by_token(token)?.ok_or_else(spent)?;
    store.status_write(|tx| {
        let current = tx
            .subscriber(&found.id)?
            .filter(|s| s.token == token)
            .ok_or_else(spent)?;
        work(tx, current)
    })
}

/// Adds a webhook subscriber, active at once (an operator added it). The answer
/// holds its secret, the only time it is shown.
///
/// # Errors
/// A bad URL, component or secret ([`StatusError::Invalid`]), a URL already
/// subscribed ([`StatusError::Conflict`]), or the store failed.
pub fn add_webhook(
    store: &Store,
    config: &StatusConfig,
    request: &AddWebhook,
    now_ms: i64,
) -> Result<SubscriberView> {
    let url = request.url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| StatusError::Invalid("url: give an http:// or https:// URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(StatusError::Invalid(
            "url: give an http:// or https:// URL with a host".into(),
        ));
    }
    let secret = match request.secret.as_deref().map(str::trim) {
        Some(s) if s.len() < 16 => {
            return Err(StatusError::Invalid(
                "secret: use at least 16 characters, or leave it out for a random one".into(),
            ));
        }
        Some(s) => s.to_owned(),
        None => random_token(),
    };
    let components = check_components(config, &request.components)?;
    store.status_write(|tx| {
        if tx.subscriber_at(WEBHOOK, url)?.is_some() {
            return Err(StatusError::Conflict(
                "url: this webhook is already subscribed; remove it first to change it".into(),
            ));
        }
        let subscriber = Subscriber {
            id: crate::new_id(),
            kind: WEBHOOK.into(),
            address: url.to_owned(),
            components,
            secret: Some(secret.clone()),
            token: random_token(),
            state: "active".into(),
            created_ms: now_ms,
            confirmed_ms: Some(now_ms),
            updated_ms: now_ms,
            failures: 0,
            last_error: None,
        };
        tx.put_subscriber(&subscriber)?;
        event(tx, "subscriber.added", &subscriber, now_ms)?;
        let mut view = SubscriberView::from(&subscriber);
        view.secret = Some(secret);
        Ok(view)
    })
}

/// Removes subscriber `id` and what was queued for it.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown id.
pub fn remove(store: &Store, id: &str, now_ms: i64) -> Result<SubscriberView> {
    store.status_write(|tx| {
        let subscriber = tx.subscriber(id)?.ok_or_else(|| unknown(id))?;
        tx.delete_subscriber(id)?;
        event(tx, "subscriber.removed", &subscriber, now_ms)?;
        Ok(SubscriberView::from(&subscriber))
    })
}

/// Lets a quarantined subscriber receive again (from the next notification on).
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown id, [`StatusError::Conflict`] when it
/// is not quarantined.
pub fn reactivate(store: &Store, id: &str, now_ms: i64) -> Result<SubscriberView> {
    store.status_write(|tx| {
        let mut subscriber = tx.subscriber(id)?.ok_or_else(|| unknown(id))?;
        if subscriber.state != "quarantined" {
            return Err(StatusError::Conflict(format!(
                "subscriber {id} is {}; only a quarantined one is reactivated",
                subscriber.state
            )));
        }
        subscriber.state = "active".into();
        subscriber.failures = 0;
        subscriber.updated_ms = now_ms;
        tx.put_subscriber(&subscriber)?;
        event(tx, "subscriber.reactivated", &subscriber, now_ms)?;
        Ok(SubscriberView::from(&subscriber))
    })
}

fn unknown(id: &str) -> StatusError {
    StatusError::NotFound(format!(
        "no subscriber {id:?}; `warden status subscriber list` (`GET \
         /api/admin/subscribers`) lists them"
    ))
}

/// Per-client limit on sign-ups, in memory (a restart forgets it, which is fine for
/// a limit counted in hours).
#[derive(Clone)]
pub(crate) struct SignUpLimiter {
    limiter: Arc<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

impl SignUpLimiter {
    pub(crate) fn new(per_hour: u32) -> Self {
        let per_hour = NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_hour(
                per_hour,
            ))),
        }
    }

    /// Whether `client` may sign up now; forgets idle clients so memory stays small.
    pub(crate) fn allow(&self, client: IpAddr) -> bool {
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The kinds of the subscriber events recorded so far, in order.
    fn event_kinds(store: &Store) -> Vec<String> {
        store
            .events(&warden_store::EventFilter {
                kind_prefix: Some("subscriber.".into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    fn config() -> StatusConfig {
        StatusConfig::default()
    }

    #[test]
    fn email_sign_up_is_pending_until_confirmed_and_asks_again_only_after_a_while() {
        let store = Store::in_memory().unwrap();
        let config = config();
        let up = |address: &str, at| sign_up_email(&store, &config, address, &[], at).unwrap();
        assert_eq!(up(" Ann@Example.com ", 1_000), SignUp::ConfirmationQueued);
        assert_eq!(up("ann@example.com", 2_000), SignUp::Unchanged, "too soon");
        let subscriber = store.subscribers().unwrap().remove(0);
        assert_eq!(
            (subscriber.address.as_str(), subscriber.state.as_str()),
            ("ann@example.com", "pending")
        );
        assert_eq!(
            up("ann@example.com", 1_000 + RESEND_AFTER_MS),
            SignUp::ConfirmationQueued
        );
        let subscriber = store.subscribers().unwrap().remove(0);
        let confirmed = confirm(&store, &config, &subscriber.token, 5).unwrap();
        assert_eq!(confirmed.state, "active");
        assert_eq!(
            up("ann@example.com", 10 * RESEND_AFTER_MS),
            SignUp::Unchanged
        );
        let gone = unsubscribe(&store, &subscriber.token, 6).unwrap();
        assert_eq!(gone.state, "unsubscribed");
        assert!(matches!(
            confirm(&store, &config, &subscriber.token, 7),
            Err(StatusError::NotFound(_))
        ));
        let kinds = event_kinds(&store);
        assert_eq!(
            kinds,
            [
                "subscriber.pending",
                "subscriber.pending",
                "subscriber.confirmed",
                "subscriber.unsubscribed"
            ]
        );
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let store = Store::in_memory().unwrap();
        let config = config();
        for address in [
            "",
            "not an address",
            "a@",
            &format!("{}@x.io", "a".repeat(260)),
        ] {
            assert!(matches!(
                sign_up_email(&store, &config, address, &[], 1),
                Err(StatusError::Invalid(_))
            ));
        }
        let error = sign_up_email(&store, &config, "a@example.com", &["nope".into()], 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope") && error.contains("api"), "{error}");
        for token in ["", "zz", &"0".repeat(32), "<script>"] {
            assert!(matches!(
                confirm(&store, &config, token, 1),
                Err(StatusError::NotFound(_))
            ));
        }
        for url in ["ftp://x", "not a url", "http://"] {
            let request = AddWebhook {
                url: url.into(),
                ..AddWebhook::default()
            };
            assert!(add_webhook(&store, &config, &request, 1).is_err(), "{url}");
        }
        assert!(store.subscribers().unwrap().is_empty());
    }

    #[test]
    fn an_unconfirmed_sign_up_expires_and_the_address_can_sign_up_again() {
        let store = Store::in_memory().unwrap();
        let mut config = config();
        config.subscribers.confirm_within = Duration::from_secs(3600);
        let hour = 3_600_000;
        let up = |address: &str, at| sign_up_email(&store, &config, address, &[], at).unwrap();
        assert_eq!(up("ann@example.com", 0), SignUp::ConfirmationQueued);
        assert_eq!(up("bob@example.com", hour / 2), SignUp::ConfirmationQueued);
        let ann = store.subscribers().unwrap().remove(0);
        assert_eq!(ann.address, "ann@example.com");

        // Within the hour nothing expires; just after it, Ann's link is refused and
        // nothing changes.
        assert_eq!(expire_unconfirmed(&store, &config, hour).unwrap(), 0);
        let error = confirm(&store, &config, &ann.token, hour + 1).unwrap_err();
        assert!(matches!(error, StatusError::Expired(_)), "{error:?}");
        assert!(error.to_string().contains("1h") && error.to_string().contains("sign up again"));
        assert_eq!(store.subscribers().unwrap()[0], ann);
        assert_eq!(
            event_kinds(&store),
            ["subscriber.pending", "subscriber.pending"]
        );

        // The sweep deletes Ann's sign-up (not Bob's, still in time), with an event.
        assert_eq!(expire_unconfirmed(&store, &config, hour + 1).unwrap(), 1);
        let left = store.subscribers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].address, "bob@example.com");
        assert!(matches!(
            confirm(&store, &config, &ann.token, hour + 2),
            Err(StatusError::NotFound(_))
        ));
        let events = store
            .events(&warden_store::EventFilter {
                kind_prefix: Some("subscriber.expired".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload["subscriber_id"], ann.id.as_str());
        assert_eq!(events[0].at_ms, hour + 1);
        assert!(!events[0].payload.to_string().contains("ann@"));

        // Ann signs up again: a new sign-up with a new link, which works.
        assert_eq!(up("ann@example.com", hour + 3), SignUp::ConfirmationQueued);
        let again = store
            .subscribers()
            .unwrap()
            .into_iter()
            .find(|s| s.address == "ann@example.com")
            .unwrap();
        assert_ne!(again.token, ann.token);
        assert_ne!(again.id, ann.id);
        assert_eq!(again.created_ms, hour + 3);
        assert_eq!(
            confirm(&store, &config, &again.token, hour + 4)
                .unwrap()
                .state,
            "active"
        );
        // Confirmed subscribers never expire; Bob's sign-up, left alone, does.
        assert_eq!(expire_unconfirmed(&store, &config, 100 * hour).unwrap(), 1);
        let left = store.subscribers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].address.as_str(), left[0].state.as_str()),
            ("ann@example.com", "active")
        );
    }

    #[test]
    fn a_sign_up_again_after_its_link_expired_starts_afresh_before_the_sweep() {
        let store = Store::in_memory().unwrap();
        let mut config = config();
        // Shorter than the wait before a confirmation is sent again.
        config.subscribers.confirm_within = Duration::from_secs(60);
        let first = sign_up_email(&store, &config, "ann@example.com", &[], 0).unwrap();
        assert_eq!(first, SignUp::ConfirmationQueued);
        let old = store.subscribers().unwrap().remove(0);
        assert_eq!(
            sign_up_email(&store, &config, "ann@example.com", &[], 60_001).unwrap(),
            SignUp::ConfirmationQueued,
            "an expired link is not a recent one"
        );
        let new = store.subscribers().unwrap().remove(0);
        assert_ne!(new.id, old.id);
        assert!(matches!(
            confirm(&store, &config, &old.token, 60_002),
            Err(StatusError::NotFound(_))
        ));
        assert_eq!(
            confirm(&store, &config, &new.token, 60_002).unwrap().state,
            "active"
        );
        let kinds = event_kinds(&store);
        assert_eq!(
            kinds,
            [
                "subscriber.pending",
                "subscriber.expired",
                "subscriber.pending",
                "subscriber.confirmed"
            ]
        );
    }

    #[test]
    fn the_hourly_cap_holds_sign_ups_back() {
        let store = Store::in_memory().unwrap();
        let mut config = config();
        config.subscribers.signups_per_hour = 2;
        let up = |a: &str| sign_up_email(&store, &config, a, &[], 1_000).unwrap();
        assert_eq!(up("a@example.com"), SignUp::ConfirmationQueued);
        assert_eq!(up("b@example.com"), SignUp::ConfirmationQueued);
        assert_eq!(up("c@example.com"), SignUp::Busy);
        assert_eq!(store.subscribers().unwrap().len(), 2);
    }

    #[test]
    fn webhooks_get_a_secret_once_and_can_be_quarantined_and_reactivated() {
        let store = Store::in_memory().unwrap();
        let config = config();
        let request = AddWebhook {
            url: "http://127.0.0.1:9/hook".into(),
            components: vec!["api".into()],
            secret: None,
        };
        let added = add_webhook(&store, &config, &request, 1).unwrap();
        assert_eq!(added.secret.as_ref().map(String::len), Some(32));
        assert!(matches!(
            add_webhook(&store, &config, &request, 2),
            Err(StatusError::Conflict(_))
        ));
        assert!(matches!(
            reactivate(&store, &added.id, 3),
            Err(StatusError::Conflict(_))
        ));
        let listed = SubscriberView::from(&store.subscribers().unwrap()[0]);
        assert_eq!(listed.secret, None);
        assert!(!serde_json::to_string(&listed).unwrap().contains("secret"));
        remove(&store, &added.id, 4).unwrap();
        assert!(matches!(
            remove(&store, &added.id, 5),
            Err(StatusError::NotFound(_))
        ));
    }

    #[test]
    fn the_per_client_limit_counts_each_address_apart() {
        let limiter = SignUpLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.allow(a) && limiter.allow(a));
        assert!(!limiter.allow(a));
        assert!(limiter.allow(b));
    }
}
