//! Delivering notifications to subscribers: an outbox fed by the event log.
//!
//! # How a notification flows
//!
//! 1. **Follow.** Every second, the events after the `subscribers` cursor are read.
//!    `incident.opened`, `incident.updated`, `incident.resolved`,
//!    `incident.postmortem`, `maintenance.scheduled`, `maintenance.started` and
//!    `maintenance.completed` owe one delivery to each active subscriber who
//!    confirmed before the event and wants one of its components (or all);
//!    `subscriber.pending` owes that subscriber its confirmation email. The
//!    deliveries and the cursor's new position are written in one transaction, and a
//!    (subscriber, event) pair can be queued only once, so a restart neither repeats
//!    nor skips an event.
//! 2. **Send.** Due deliveries go out, each subscriber's strictly in order (the
//!    oldest unfinished one first), different subscribers side by side. A delivery
//!    is marked `sending` before the attempt and `delivered` after it. If the
//!    process dies in between, the delivery is sent again at the next start with
//!    the same id (`X-Warden-Delivery` for webhooks, the `Message-ID` of an email),
//!    so a receiver can drop the repeat: nothing is lost, and nothing is sent twice
//!    that was recorded as sent.
//! 3. **Retry or give up.** Connection errors, timeouts, HTTP 408, 429 and 5xx, and
//!    SMTP 4xx replies are retried with exponential backoff (`[subscribers]
//!    attempts`, `initial_backoff`, `max_backoff`); other answers are final. A
//!    delivery given up on counts against its subscriber; after `quarantine_after`
//!    in a row the subscriber is **quarantined**: what was queued for it is dropped
//!    and nothing more is queued until an operator reactivates it. A delivery that
//!    succeeds resets the count.
//!
//! Every attempt is an event (`subscriber.notified`, `subscriber.delivery_failed`,
//! `subscriber.quarantined`), naming the subscriber by id only: the postmortem's
//! timeline shows when users were told.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use warden_monitor::notify::{SIGNATURE_HEADER, signature_header, smtp_transport};
use warden_store::{
    Event, KIND_MAINTENANCE, NewEvent, StatusIncident, Store, Subscriber, SubscriberDelivery,
};

use crate::model::{IncidentStatus, MaintenanceStatus};
use crate::statuspage::{Documents, Links, Snapshot};
use crate::subscribers::{EMAIL, WEBHOOK};
use crate::{StatusConfig, human_time};

/// The cursor's name in the store.
pub const CURSOR: &str = "subscribers";
/// The header that carries a webhook delivery's id.
pub const DELIVERY_HEADER: &str = "x-warden-delivery";
/// Bound on one attempt: one HTTP request, or one SMTP session.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read per step.
const BATCH: u32 = 500;
/// Deliveries attempted per step.
const SEND_BATCH: u32 = 64;

/// The event kinds subscribers are told of.
pub const NOTIFIED_KINDS: [&str; 7] = [
    "incident.opened",
    "incident.updated",
    "incident.resolved",
    "incident.postmortem",
    "maintenance.scheduled",
    "maintenance.started",
    "maintenance.completed",
];

/// Whom an event is owed to.
fn recipients(tx: &warden_store::StatusTx<'_>, event: &Event) -> warden_store::Result<Vec<String>> {
    if event.kind == "subscriber.pending" {
        let id = event.payload["subscriber_id"].as_str().unwrap_or_default();
        return Ok(tx
            .subscriber(id)?
            .filter(|s| s.state == "pending" && s.kind == EMAIL)
            .map(|s| vec![s.id])
            .unwrap_or_default());
    }
    if !NOTIFIED_KINDS.contains(&event.kind.as_str()) {
        return Ok(Vec::new());
    }
    let components: Vec<&str> = event.payload["components"]
        .as_array()
        .map(|list| list.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    Ok(tx
        .active_subscribers()?
        .into_iter()
        .filter(|s| s.confirmed_ms.is_some_and(|at| at <= event.at_ms))
        .filter(|s| {
            s.components.is_empty()
                || components.is_empty()
                || s.components
                    .iter()
                    .any(|c| components.contains(&c.as_str()))
        })
        .map(|s| s.id)
        .collect())
}

/// Turns the events after the cursor into deliveries; returns how many events were
/// read.
///
/// # Errors
/// The store failed; nothing was written and the same events are read next time.
pub fn follow(store: &Store, now_ms: i64) -> warden_store::Result<usize> {
    let after = store.cursor(CURSOR)?;
    let events = store.events_after(after, BATCH)?;
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(0);
    };
    store.status_write(|tx| {
        for event in &events {
            let owed = recipients(tx, event)?;
            if !owed.is_empty() {
                tx.enqueue_deliveries(event.id, &owed, now_ms)?;
            }
        }
        tx.set_cursor(CURSOR, last)
    })?;
    Ok(events.len())
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Delivered,
    Failed { error: String, retry: bool },
}

impl Attempt {
    fn retry(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retry: true,
        }
    }

    fn fatal(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retry: false,
        }
    }
}

/// What it takes to send: an HTTP client, the SMTP transport if configured, and
/// where links point.
#[derive(Clone)]
pub struct Sender {
    config: Arc<StatusConfig>,
    links: Links,
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Sender {
    /// `base` is where links in messages point when `[page] url` is not set (the
    /// console's address).
    ///
    /// # Errors
    /// The SMTP settings cannot make a transport, or no HTTP client can be built.
    pub fn new(config: Arc<StatusConfig>, base: &str) -> anyhow::Result<Self> {
        let smtp = match &config.subscribers.smtp {
            None => None,
            Some(smtp) => {
                let credentials = smtp.username.clone().zip(smtp.password.clone());
                let transport = smtp_transport(&smtp.host, smtp.port, smtp.tls, credentials)
                    .map_err(|e| anyhow::anyhow!("subscribers.smtp: {e}"))?;
                let from = smtp
                    .from
                    .parse::<Mailbox>()
                    .map_err(|e| anyhow::anyhow!("subscribers.smtp.from: {e}"))?;
                Some((transport, from))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warden-status/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let links = Links {
            base: config
                .public_url()
                .unwrap_or(base)
                .trim_end_matches('/')
                .to_owned(),
            static_files: false,
        };
        Ok(Self {
            config,
            links,
            http,
            smtp,
        })
    }

    fn unsubscribe_link(&self, subscriber: &Subscriber) -> String {
        format!(
            "{}/subscriptions/{}/unsubscribe",
            self.links.base, subscriber.token
        )
    }

    fn confirm_link(&self, subscriber: &Subscriber) -> String {
        format!(
            "{}/subscriptions/{}/confirm",
            self.links.base, subscriber.token
        )
    }

    async fn send(&self, store: &Store, delivery: &SubscriberDelivery) -> Attempt {
        let loaded = store
            .blocking({
                let (subscriber, event) = (delivery.subscriber_id.clone(), delivery.event_id);
                move |s| {
                    let subscriber = s.status_write(|tx| tx.subscriber(&subscriber))?;
                    let event = s
                        .events_after(event - 1, 1)?
                        .into_iter()
                        .find(|e| e.id == event);
                    let incident = match event.as_ref().and_then(incident_id) {
                        Some(id) => s.status_incident(&id)?,
                        None => None,
                    };
                    // Only a webhook's payload shows the page's state.
                    let snapshot = match &subscriber {
                        Some(x) if x.kind == WEBHOOK => {
                            Some(Snapshot::read(s, warden_store::now_ms())?)
                        }
                        _ => None,
                    };
                    Ok((subscriber, event, incident, snapshot))
                }
            })
            .await;
        let (subscriber, event, incident, snapshot) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => return Attempt::retry(format!("store: {error}")),
        };
        let (Some(subscriber), Some(event)) = (subscriber, event) else {
            return Attempt::fatal("the subscriber or the event is gone");
        };
        let content = if event.kind == "subscriber.pending" {
            Content::Confirmation
        } else if let Some(incident) = incident {
            Content::Update {
                incident: Box::new(incident),
                update_id: event.payload["update_id"].as_str().map(str::to_owned),
            }
        } else {
            return Attempt::fatal("the incident of this event is gone");
        };
        match (subscriber.kind.as_str(), snapshot) {
            (WEBHOOK, Some(snapshot)) => {
                self.webhook(&subscriber, delivery, &event, &content, &snapshot)
                    .await
            }
            (EMAIL, _) => self.email(&subscriber, delivery, &content).await,
            (other, _) => Attempt::fatal(format!("unknown subscriber kind {other:?}")),
        }
    }

    async fn webhook(
        &self,
        subscriber: &Subscriber,
        delivery: &SubscriberDelivery,
        event: &Event,
        content: &Content,
        snapshot: &Snapshot,
    ) -> Attempt {
        let Content::Update { incident, .. } = content else {
            return Attempt::fatal("webhooks are not sent confirmations");
        };
        let docs = Documents::new(snapshot, &self.config, &self.links);
        let status = docs.status();
        let body = serde_json::json!({
            "meta": {
                "unsubscribe": self.unsubscribe_link(subscriber),
                "documentation": format!("{}/status", self.links.base),
                "generated_at": crate::json_time(warden_store::now_ms()),
                "delivery_id": delivery.id,
                "event": event.kind,
            },
            "page": {
                "id": self.config.page.id,
                "status_indicator": status.indicator,
                "status_description": status.description,
            },
            "incident": docs.incident(incident),
        });
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => return Attempt::fatal(format!("cannot encode the payload: {error}")),
        };
        let mut request = self
            .http
            .post(&subscriber.address)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery.id.to_string());
        if let Some(secret) = &subscriber.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature_header(secret, &body, std::time::SystemTime::now()),
            );
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => {
                let code = response.status();
                let error = format!("HTTP {code}");
                if code.is_server_error() || matches!(code.as_u16(), 408 | 429) {
                    Attempt::retry(error)
                } else {
                    Attempt::fatal(error)
                }
            }
            // The error names the URL, which is the subscriber's and may hold a token.
            Err(error) => Attempt::retry(if error.is_timeout() {
                "timed out".to_owned()
            } else if error.is_connect() {
                "cannot connect".to_owned()
            } else {
                "the request failed".to_owned()
            }),
        }
    }

    async fn email(
        &self,
        subscriber: &Subscriber,
        delivery: &SubscriberDelivery,
        content: &Content,
    ) -> Attempt {
        let Some((transport, from)) = &self.smtp else {
            return Attempt::fatal("no [subscribers.smtp] server is configured");
        };
        let to = match subscriber.address.parse::<Mailbox>() {
            Ok(to) => to,
            Err(error) => return Attempt::fatal(format!("bad address: {error}")),
        };
        let page = &self.config.page.name;
        let domain = self
            .config
            .public_url()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "warden.invalid".into());
        let (subject, text) = match content {
            Content::Confirmation => (
                format!("Confirm your subscription to {page} status updates"),
                format!(
                    "Someone, hopefully you, asked to receive {page} status updates by email \
                     at this address.\n\nTo confirm, open:\n{}\n\nThe link works for {}. \
                     If you did not ask for this, ignore this message: nothing will be sent \
                     unless you confirm.\n",
                    self.confirm_link(subscriber),
                    humantime::format_duration(self.config.subscribers.confirm_within)
                ),
            ),
            Content::Update {
                incident,
                update_id,
            } => self.update_text(incident, update_id.as_deref(), subscriber),
        };
        let unsubscribe = self.unsubscribe_link(subscriber);
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<delivery-{}.event-{}@{domain}>",
                delivery.id, delivery.event_id
            )))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{unsubscribe}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(text);
        let message = match message {
            Ok(message) => message,
            Err(error) => return Attempt::fatal(format!("cannot build the email: {error}")),
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_)) => Attempt::Delivered,
            Ok(Err(error)) if error.is_permanent() || error.is_client() => {
                Attempt::fatal(format!("SMTP: {error}"))
            }
            Ok(Err(error)) => Attempt::retry(format!("SMTP: {error}")),
            Err(_) => Attempt::retry("SMTP: timed out"),
        }
    }

    /// Subject and plain text of an incident or maintenance update.
    fn update_text(
        &self,
        incident: &StatusIncident,
        update_id: Option<&str>,
        subscriber: &Subscriber,
    ) -> (String, String) {
        let page = &self.config.page.name;
        let update = incident
            .updates
            .iter()
            .find(|u| Some(u.id.as_str()) == update_id)
            .or_else(|| incident.updates.iter().max_by_key(|u| u.created_ms));
        let maintenance = incident.kind == KIND_MAINTENANCE;
        let label = |status: &str| {
            if maintenance {
                status
                    .parse::<MaintenanceStatus>()
                    .map_or("Update", MaintenanceStatus::label)
            } else {
                status
                    .parse::<IncidentStatus>()
                    .map_or("Update", IncidentStatus::label)
            }
        };
        let status = update.map_or(incident.status.as_str(), |u| u.status.as_str());
        let what = if maintenance { "Maintenance: " } else { "" };
        let subject = format!("[{page}] {what}{}: {}", incident.name, label(status));
        let mut text = format!("{}\n\n", label(status));
        if let Some(update) = update {
            text.push_str(&update.body);
            text.push_str(&format!("\n\nPosted {}.", human_time(update.display_ms)));
        }
        if let (Some(from), Some(until)) = (incident.scheduled_for_ms, incident.scheduled_until_ms)
        {
            text.push_str(&format!(
                "\nScheduled from {} to {}.",
                human_time(from),
                human_time(until)
            ));
        }
        text.push_str(&format!(
            "\nDetails and updates: {}\n\n--\nYou receive this because you subscribed to {page} \
             status updates.\nUnsubscribe: {}\n",
            self.links.incident(&incident.id),
            self.unsubscribe_link(subscriber)
        ));
        (subject, text)
    }
}

enum Content {
    Confirmation,
    Update {
        incident: Box<StatusIncident>,
        update_id: Option<String>,
    },
}

fn incident_id(event: &Event) -> Option<String> {
    ["incident_id", "maintenance_id"]
        .iter()
        .find_map(|key| event.payload[*key].as_str().map(str::to_owned))
}

/// Claims a due delivery (`sending`, one more attempt); `None` when someone else
/// got there first.
fn claim(store: &Store, id: i64) -> warden_store::Result<Option<SubscriberDelivery>> {
    store.status_write(|tx| {
        let Some(mut delivery) = tx.delivery(id)?.filter(|d| d.state == "pending") else {
            return Ok(None);
        };
        delivery.state = "sending".into();
        delivery.attempts += 1;
        tx.put_delivery(&delivery)?;
        Ok(Some(delivery))
    })
}

/// Records how an attempt ended: the delivery's new state, the subscriber's
/// failure count and quarantine, and the event.
fn settle(
    store: &Store,
    config: &StatusConfig,
    mut delivery: SubscriberDelivery,
    attempt: &Attempt,
    now_ms: i64,
) -> warden_store::Result<()> {
    let policy = &config.subscribers;
    store.status_write(|tx| {
        let Some(mut subscriber) = tx.subscriber(&delivery.subscriber_id)? else {
            return Ok(());
        };
        let mut payload = serde_json::json!({
            "delivery_id": delivery.id,
            "subscriber_id": subscriber.id,
            "kind": subscriber.kind,
            "event_id": delivery.event_id,
            "attempt": delivery.attempts,
        });
        let kind = match attempt {
            Attempt::Delivered => {
                delivery.state = "delivered".into();
                delivery.delivered_ms = Some(now_ms);
                delivery.last_error = None;
                subscriber.failures = 0;
                subscriber.last_error = None;
                "subscriber.notified"
            }
            Attempt::Failed { error, retry } => {
                payload["error"] = error.clone().into();
                delivery.last_error = Some(error.clone());
                subscriber.last_error = Some(error.clone());
                if *retry && delivery.attempts < i64::from(policy.attempts) {
                    delivery.state = "pending".into();
                    delivery.next_attempt_ms = now_ms + backoff_ms(policy, delivery.attempts);
                    payload["retry_at"] = crate::json_time(delivery.next_attempt_ms).into();
                } else {
                    delivery.state = "failed".into();
                    subscriber.failures += 1;
                    payload["gave_up"] = true.into();
                }
                "subscriber.delivery_failed"
            }
        };
        subscriber.updated_ms = now_ms;
        tx.put_delivery(&delivery)?;
        tx.append_event_at(
            now_ms,
            &NewEvent {
                kind: kind.into(),
                release: None,
                payload,
            },
        )?;
        if subscriber.state == "active" && subscriber.failures >= i64::from(policy.quarantine_after)
        {
            subscriber.state = "quarantined".into();
            let dropped = tx.drop_pending_deliveries(&subscriber.id)?;
            tx.append_event_at(
                now_ms,
                &NewEvent {
                    kind: "subscriber.quarantined".into(),
                    release: None,
                    payload: serde_json::json!({
                        "subscriber_id": subscriber.id,
                        "kind": subscriber.kind,
                        "failures": subscriber.failures,
                        "dropped": dropped,
                    }),
                },
            )?;
        }
        tx.put_subscriber(&subscriber)
    })
}

/// Wait before attempt `attempts + 1`: `initial_backoff × 2^(attempts − 1)`, at most
/// `max_backoff`.
fn backoff_ms(policy: &crate::subscribers::SubscribersConfig, attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let wait = policy
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(policy.max_backoff);
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// One round: queue what the log owes, then send what is due. Returns the number of
/// attempts made.
///
/// # Errors
/// The store failed; the round is tried again later from the same place.
pub async fn step(store: &Store, sender: &Sender) -> warden_store::Result<usize> {
    while store
        .blocking(|s| follow(s, warden_store::now_ms()))
        .await?
        == BATCH as usize
    {}
    let due = store
        .blocking(|s| s.due_deliveries(warden_store::now_ms(), SEND_BATCH))
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for delivery in due {
        let Some(delivery) = store.blocking(move |s| claim(s, delivery.id)).await? else {
            continue;
        };
        let (store, sender) = (store.clone(), sender.clone());
        tasks.spawn(async move {
            let attempt = sender.send(&store, &delivery).await;
            if let Attempt::Failed { error, .. } = &attempt {
                tracing::warn!(
                    delivery = delivery.id,
                    subscriber = %delivery.subscriber_id,
                    attempt = delivery.attempts,
                    %error,
                    "status: a subscriber notification failed"
                );
            }
            let config = sender.config.clone();
            store
                .blocking(move |s| settle(s, &config, delivery, &attempt, warden_store::now_ms()))
                .await
        });
    }
    let mut attempts = 0;
    while let Some(done) = tasks.join_next().await {
        attempts += 1;
        match done {
            Ok(result) => result?,
            Err(error) => tracing::error!(%error, "status: a delivery task failed"),
        }
    }
    Ok(attempts)
}

/// Delivers until the task is dropped: a round every second.
pub async fn run(store: Store, sender: Sender) {
    match store.blocking(|s| s.requeue_interrupted_deliveries()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "status: resending deliveries interrupted by a stop"),
        Err(error) => tracing::warn!(%error, "status: cannot requeue interrupted deliveries"),
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = step(&store, &sender).await {
            tracing::warn!(%error, "status: subscriber delivery will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::incidents::{self, OpenIncident, UpdateIncident};
    use crate::subscribers::{self, AddWebhook};

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = crate::subscribers::SubscribersConfig {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        };
        let waits: Vec<i64> = (1..=5).map(|a| backoff_ms(&policy, a) / 1000).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
    }

    fn open(store: &Store, config: &StatusConfig, components: &[&str], at: i64) -> String {
        let request: OpenIncident = serde_json::from_value(serde_json::json!({
            "name": "Slow API",
            "components": components.iter().map(|c| (c.to_string(), "degraded_performance")).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap();
        incidents::open(store, config, &request, at).unwrap().id
    }

    #[test]
    fn events_are_owed_once_to_confirmed_subscribers_of_their_components() {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        crate::components::sync(&store, &config, 0).unwrap();
        let hook = |url: &str, components: &[&str]| {
            subscribers::add_webhook(
                &store,
                &config,
                &AddWebhook {
                    url: url.into(),
                    components: components.iter().map(|c| (*c).to_owned()).collect(),
                    secret: None,
                },
                1_000,
            )
            .unwrap()
            .id
        };
        let all = hook("http://127.0.0.1:9/all", &[]);
        let api = hook("http://127.0.0.1:9/api", &["api"]);
        let auth = hook("http://127.0.0.1:9/auth", &["authentication"]);
        subscribers::sign_up_email(&store, &config, "a@example.com", &[], 1_500).unwrap();
        let id = open(&store, &config, &["api"], 2_000);
        let more = UpdateIncident {
            body: Some("Still looking.".into()),
            ..UpdateIncident::default()
        };
        incidents::update(&store, &config, &id, &more, 3_000).unwrap();
        follow(&store, 4_000).unwrap();
        // Following again (as after a restart) queues nothing new.
        follow(&store, 5_000).unwrap();
        let due = store.due_deliveries(10_000, 100).unwrap();
        // Each subscriber's oldest unfinished delivery only, in order.
        let mut owed: Vec<&str> = due.iter().map(|d| d.subscriber_id.as_str()).collect();
        owed.sort_unstable();
        let pending = store
            .subscribers()
            .unwrap()
            .into_iter()
            .find(|s| s.kind == EMAIL)
            .unwrap();
        let mut expected = vec![all.as_str(), api.as_str(), pending.id.as_str()];
        expected.sort_unstable();
        assert_eq!(owed, expected, "not {auth}");
        let events = store.events_after(0, 100).unwrap();
        let opened = events.iter().find(|e| e.kind == "incident.opened").unwrap();
        assert_eq!(store.deliveries_of_event(opened.id).unwrap().len(), 2);
    }
}
