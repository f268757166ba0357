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
//!    A delivery tells of the update its event announces *as it was then*: the
//!    event carries the update's id and a snapshot of the incident, its components
//!    and the page's state, taken in the transaction that posted the update
//!    ([`as_of`]), so a delivery sent late or resent names the same update and
//!    shows the same incident as when it was due.
//! 2. **Send.** Due deliveries go out, each subscriber's strictly in order (the
//!    oldest unfinished one first, the next one as soon as it is delivered, so a
//!    burst of updates reaches a subscriber in one round), different subscribers
//!    side by side ([`CONCURRENCY`] at a time). A delivery
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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use warden_monitor::notify::{SIGNATURE_HEADER, signature_header, smtp_transport};
use warden_store::{
    Event, IncidentQuery, KIND_INCIDENT, KIND_MAINTENANCE, NewEvent, StatusIncident, Store,
    Subscriber, SubscriberDelivery,
};

use crate::model::{IncidentStatus, Indicator, MaintenanceStatus};
use crate::statuspage::{Documents, Links, Snapshot};
use crate::subscribers::{EMAIL, WEBHOOK};
use crate::{StatusConfig, human_time};

/// The cursor's name in the store.
pub const CURSOR: &str = "subscribers";
/// The header that carries a webhook delivery's id.
pub const DELIVERY_HEADER: &str = "x-warden-delivery";
/// The header that carries the id of the update a webhook delivery announces.
pub const UPDATE_HEADER: &str = "x-warden-update";
/// Bound on one attempt: one HTTP request, or one SMTP session.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read per step.
const BATCH: u32 = 500;
/// Subscribers served per step, and deliveries sent to one subscriber per step.
const SEND_BATCH: u32 = 64;
/// Subscribers sent to at the same time.
pub const CONCURRENCY: usize = 16;

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

/// What an update's event records for its deliveries (under `as_of`): the incident (or
/// maintenance) as the update left it, without its timeline (the updates are
/// never changed, so the timeline up to the update is read back when sending),
/// the state of every component, and the page's indicator. Called in the
/// transaction that posts the update.
///
/// # Errors
/// The store failed.
pub(crate) fn as_of(
    tx: &warden_store::StatusTx<'_>,
    incident: &StatusIncident,
    now_ms: i64,
) -> warden_store::Result<serde_json::Value> {
    let components: Vec<warden_store::StatusComponent> = tx
        .components()?
        .into_iter()
        .filter(|c| !c.archived)
        .collect();
    let open = |kind: &str, closed: &[&str]| {
        tx.incidents(&IncidentQuery {
            kind: Some(kind.into()),
            exclude_statuses: closed.iter().map(|s| (*s).to_owned()).collect(),
            ..IncidentQuery::default()
        })
    };
    let page = Snapshot {
        now_ms,
        components,
        changes: Vec::new(),
        incidents: open(KIND_INCIDENT, &["resolved", "postmortem"])?,
        maintenances: open(KIND_MAINTENANCE, &["completed"])?,
        postmortems: Vec::new(),
    };
    let header = StatusIncident {
        updates: Vec::new(),
        ..incident.clone()
    };
    Ok(serde_json::json!({
        "incident": header,
        "components": page
            .components
            .iter()
            .map(|c| (c.id.clone(), c.status.clone()))
            .collect::<BTreeMap<_, _>>(),
        "indicator": page.indicator(),
    }))
}

/// The incident as the update of `event` left it, with its timeline up to that
/// update, and the component states and page indicator of then; from the event's
/// snapshot ([`as_of`]), or, for an event recorded before snapshots were, from
/// `current` cut at the update.
fn as_announced(
    event: &Event,
    current: StatusIncident,
) -> (StatusIncident, BTreeMap<String, String>, Option<Indicator>) {
    let update_id = event.payload["update_id"].as_str();
    let position = current
        .updates
        .iter()
        .position(|u| Some(u.id.as_str()) == update_id);
    let mut updates = current.updates.clone();
    match position {
        Some(at) => updates.truncate(at + 1),
        None => updates.retain(|u| u.created_ms <= event.at_ms),
    }
    let snapshot = &event.payload["as_of"];
    let header = serde_json::from_value::<StatusIncident>(snapshot["incident"].clone()).ok();
    let states = serde_json::from_value(snapshot["components"].clone()).unwrap_or_default();
    let indicator = serde_json::from_value(snapshot["indicator"].clone()).ok();
    let mut incident = header.unwrap_or(current);
    incident.updates = updates;
    (incident, states, indicator)
}

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
                    // Only a webhook's payload shows the page: its components, and
                    // a postmortem published by the time of the update.
                    let page = match (&subscriber, &event) {
                        (Some(x), Some(event)) if x.kind == WEBHOOK => {
                            let mut page = Snapshot::read(s, warden_store::now_ms())?;
                            page.postmortems.retain(|p| p.published_ms <= event.at_ms);
                            Some(page)
                        }
                        _ => None,
                    };
                    Ok((subscriber, event, incident, page))
                }
            })
            .await;
        let (subscriber, event, incident, page) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => return Attempt::retry(format!("store: {error}")),
        };
        let (Some(subscriber), Some(event)) = (subscriber, event) else {
            return Attempt::fatal("the subscriber or the event is gone");
        };
        let content = if event.kind == "subscriber.pending" {
            Content::Confirmation
        } else if let Some(incident) = incident {
            let (incident, states, indicator) = as_announced(&event, incident);
            Content::Update(Box::new(Announced {
                update_id: event.payload["update_id"].as_str().map(str::to_owned),
                incident,
                states,
                indicator,
            }))
        } else {
            return Attempt::fatal("the incident of this event is gone");
        };
        match (subscriber.kind.as_str(), page) {
            (WEBHOOK, Some(page)) => {
                self.webhook(&subscriber, delivery, &event, &content, page)
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
        mut page: Snapshot,
    ) -> Attempt {
        let Content::Update(announced) = content else {
            return Attempt::fatal("webhooks are not sent confirmations");
        };
        // The components as the update left them.
        for component in &mut page.components {
            if let Some(status) = announced.states.get(&component.id) {
                component.status.clone_from(status);
            }
        }
        let indicator = announced.indicator.unwrap_or_else(|| page.indicator());
        let docs = Documents::new(&page, &self.config, &self.links);
        let incident = docs.incident(&announced.incident);
        // Statuspage lists updates newest first: the announced one is the first.
        let update = incident.incident_updates.first().cloned();
        let body = serde_json::json!({
            "meta": {
                "unsubscribe": self.unsubscribe_link(subscriber),
                "documentation": format!("{}/status", self.links.base),
                "generated_at": crate::json_time(warden_store::now_ms()),
                "delivery_id": delivery.id,
                "event": event.kind,
                "event_at": crate::json_time(event.at_ms),
                "update_id": announced.update_id,
            },
            "page": {
                "id": self.config.page.id,
                "status_indicator": indicator,
                "status_description": indicator.description(),
            },
            "update": update,
            "incident": incident,
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
        if let Some(update_id) = &announced.update_id {
            request = request.header(UPDATE_HEADER, update_id);
        }
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
            Content::Update(announced) => self.update_text(announced, subscriber),
        };
        let unsubscribe = self.unsubscribe_link(subscriber);
        let mut message = Message::builder();
        if let Content::Update(announced) = content
            && let Some(update_id) = &announced.update_id
        {
            message = message.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Warden-Update"),
                update_id.clone(),
            ));
        }
        let message = message
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
    fn update_text(&self, announced: &Announced, subscriber: &Subscriber) -> (String, String) {
        let page = &self.config.page.name;
        let incident = &announced.incident;
        // The timeline ends with the announced update.
        let update = incident.updates.last();
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
            text.push_str(&format!(
                "\n\nPosted {}. Update ID: {}.",
                human_time(update.display_ms),
                update.id
            ));
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
    Update(Box<Announced>),
}

/// An update as it was announced.
struct Announced {
    /// The update's id, from the event.
    update_id: Option<String>,
    /// The incident as of the update, its timeline ending with it.
    incident: StatusIncident,
    /// Every component's state as of the update (empty for old events).
    states: BTreeMap<String, String>,
    /// The page's indicator as of the update (none for old events).
    indicator: Option<Indicator>,
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
/// Each subscriber with something due gets one task that sends its deliveries one
/// after the other, oldest first, until none is due, one fails (it waits for its
/// retry, and so does everything queued after it) or [`SEND_BATCH`] went out;
/// [`CONCURRENCY`] such tasks run at a time.
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
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for first in due {
        let (store, sender, permits) = (store.clone(), sender.clone(), permits.clone());
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return Ok(0);
            };
            drain(&store, &sender, first).await
        });
    }
    let mut attempts = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => attempts += result?,
            Err(error) => tracing::error!(%error, "status: a delivery task failed"),
        }
    }
    Ok(attempts)
}

/// Sends `first`, then the same subscriber's next due deliveries in order, until
/// none is due, one fails, or [`SEND_BATCH`] were attempted; returns the attempts.
async fn drain(
    store: &Store,
    sender: &Sender,
    first: SubscriberDelivery,
) -> warden_store::Result<usize> {
    let subscriber = first.subscriber_id.clone();
    let mut next = Some(first);
    let mut attempts = 0;
    while let Some(due) = next.take() {
        let Some(delivery) = store.blocking(move |s| claim(s, due.id)).await? else {
            break;
        };
        let attempt = sender.send(store, &delivery).await;
        attempts += 1;
        let failed = matches!(attempt, Attempt::Failed { .. });
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
            .await?;
        if failed || attempts >= SEND_BATCH as usize {
            break;
        }
        let subscriber = subscriber.clone();
        next = store
            .blocking(move |s| s.next_due_delivery(&subscriber, warden_store::now_ms()))
            .await?;
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

    /// What a webhook receiver on loopback got: (headers, payload), in order.
    type Received = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, serde_json::Value)>>>;

    /// A webhook receiver on loopback. It answers 500 to the first request that
    /// announces the `fail_once`-th update it hears of (0 for the first), 200 to
    /// everything else.
    async fn receiver(fail_once: Option<usize>) -> (String, Received) {
        let received: Received = Arc::default();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let received = received.clone();
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let mut seen = received.lock().unwrap();
                    let update = payload["meta"]["update_id"].clone();
                    let mut heard: Vec<&serde_json::Value> = Vec::new();
                    for (_, earlier) in seen.iter() {
                        if !heard.contains(&&earlier["meta"]["update_id"]) {
                            heard.push(&earlier["meta"]["update_id"]);
                        }
                    }
                    let position = heard
                        .iter()
                        .position(|u| **u == update)
                        .unwrap_or(heard.len());
                    seen.push((headers, payload));
                    if Some(position) == fail_once
                        && !failed.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, received)
    }

    /// A store with a webhook subscriber at `url`, and a sender.
    fn subscribed(url: &str) -> (Store, Arc<StatusConfig>, Sender) {
        let store = Store::in_memory().unwrap();
        let mut config = StatusConfig::default();
        config.subscribers.initial_backoff = Duration::from_millis(100);
        crate::components::sync(&store, &config, 0).unwrap();
        let request = AddWebhook {
            url: url.into(),
            ..AddWebhook::default()
        };
        subscribers::add_webhook(&store, &config, &request, warden_store::now_ms()).unwrap();
        let config = Arc::new(config);
        let sender = Sender::new(config.clone(), "http://status.invalid").unwrap();
        (store, config, sender)
    }

    /// Opens an incident on the API and posts `more` updates to it at once, each
    /// with its own text and, in turn, identified, monitoring and investigating;
    /// returns the incident and its updates' (id, status, body), oldest first.
    fn burst(
        store: &Store,
        config: &StatusConfig,
        more: usize,
    ) -> (String, Vec<(String, String, String)>) {
        let id = open(store, config, &["api"], warden_store::now_ms());
        let statuses = [
            IncidentStatus::Identified,
            IncidentStatus::Monitoring,
            IncidentStatus::Investigating,
        ];
        for n in 0..more {
            let update = UpdateIncident {
                status: Some(statuses[n % 3]),
                body: Some(format!("Update number {}.", n + 1)),
                ..UpdateIncident::default()
            };
            incidents::update(store, config, &id, &update, warden_store::now_ms()).unwrap();
        }
        let incident = store.status_incident(&id).unwrap().unwrap();
        let updates = incident
            .updates
            .iter()
            .map(|u| (u.id.clone(), u.status.clone(), u.body.clone()))
            .collect();
        (id, updates)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_updates_reaches_a_webhook_in_one_round_in_order_each_naming_its_update() {
        let (url, received) = receiver(None).await;
        let (store, config, sender) = subscribed(&url);
        let (_, updates) = burst(&store, &config, 9);
        assert_eq!(updates.len(), 10);

        // One round sends them all, one after the other (not one a round).
        assert_eq!(step(&store, &sender).await.unwrap(), 10);
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 10);
        for (n, ((headers, payload), (id, status, body))) in got.iter().zip(&updates).enumerate() {
            assert_eq!(payload["meta"]["update_id"], id.as_str(), "delivery {n}");
            assert_eq!(headers[UPDATE_HEADER], id.as_str());
            assert_eq!(payload["update"]["id"], id.as_str());
            assert_eq!(payload["update"]["body"], body.as_str());
            // The incident as that update left it: its status, its timeline up to
            // that update, newest first.
            let incident = &payload["incident"];
            assert_eq!(incident["status"], status.as_str(), "delivery {n}");
            let timeline = incident["incident_updates"].as_array().unwrap();
            assert_eq!(timeline.len(), n + 1, "delivery {n}");
            assert_eq!(timeline[0]["id"], id.as_str());
        }
        assert_eq!(step(&store, &sender).await.unwrap(), 0, "nothing repeated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_delivery_still_names_its_update_and_later_ones_wait_behind_it() {
        // The second update's first delivery fails.
        let (url, received) = receiver(Some(1)).await;
        let (store, config, sender) = subscribed(&url);
        let (id, updates) = burst(&store, &config, 2);

        // The first update goes out; the second fails and waits for its retry, and
        // the third waits behind it: a subscriber hears of updates in order.
        assert_eq!(step(&store, &sender).await.unwrap(), 2);
        assert_eq!(received.lock().unwrap().len(), 2);

        // Meanwhile the incident moves on: resolved, the API operational again.
        incidents::resolve(
            &store,
            &config,
            &id,
            &UpdateIncident::default(),
            warden_store::now_ms(),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(step(&store, &sender).await.unwrap(), 3);
        let got = received.lock().unwrap().clone();
        let named: Vec<&str> = got
            .iter()
            .map(|(_, p)| p["meta"]["update_id"].as_str().unwrap())
            .collect();
        let ids: Vec<&str> = updates.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(named[..2], ids[..2]);
        assert_eq!(named[2], ids[1], "the retry names the update it announces");
        assert_eq!(named[3], ids[2]);
        assert_eq!(got.len(), 5, "then the resolution");
        let (first_try, retry) = (&got[1], &got[2]);
        assert_eq!(
            first_try.0[DELIVERY_HEADER], retry.0[DELIVERY_HEADER],
            "the same delivery, sent again"
        );
        let incident = &retry.1["incident"];
        assert_eq!(incident["status"], "identified", "not the current resolved");
        assert_eq!(incident["incident_updates"].as_array().unwrap().len(), 2);
        assert_eq!(incident["resolved_at"], serde_json::Value::Null);
        assert_eq!(incident["components"][0]["status"], "degraded_performance");
        assert_eq!(retry.1["page"]["status_indicator"], "minor");
        assert_eq!(got[4].1["page"]["status_indicator"], "none");
        assert_eq!(got[4].1["incident"]["status"], "resolved");
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
