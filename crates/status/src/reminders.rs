//! The update cadence of the communication plan: when an open incident has had no
//! public update for `[automation] remind_after` (30 minutes by default), the
//! on-call channel — the monitor's `[[notifiers]]`: webhook, Slack, email — is
//! reminded, and again each time as long again passes without one.
//!
//! Each reminder is an `incident.reminder` event; its fingerprint
//! (`incident-update-due/<incident>/<last update>/<n>`) is what keeps it from being
//! sent twice, across restarts too. Maintenance does not remind: it pages no one.

use std::sync::Arc;
use std::time::Duration;

use warden_monitor::notify::{AlertStatus, Dispatcher, Notification};
use warden_store::{EventFilter, IncidentQuery, KIND_INCIDENT, NewEvent, Store};

use crate::model::IncidentStatus;
use crate::statuspage::Links;
use crate::{StatusConfig, human_time};

/// The alert name reminders carry.
pub const ALERT: &str = "IncidentUpdateDue";

/// Reminds of every open incident whose last update is older than `remind_after`;
/// returns the reminders due now, each already recorded as an event.
///
/// # Errors
/// The store failed; the same reminders are found due next time.
pub fn due(
    store: &Store,
    config: &StatusConfig,
    base_url: &str,
    now_ms: i64,
) -> warden_store::Result<Vec<Notification>> {
    let every = i64::try_from(config.automation.remind_after.as_millis()).unwrap_or(i64::MAX);
    if every == 0 {
        return Ok(Vec::new());
    }
    let open = store.status_incidents(&IncidentQuery {
        kind: Some(KIND_INCIDENT.into()),
        exclude_statuses: vec![
            IncidentStatus::Resolved.as_str().into(),
            IncidentStatus::Postmortem.as_str().into(),
        ],
        ..IncidentQuery::default()
    })?;
    let links = Links {
        base: config.public_url().unwrap_or(base_url).to_owned(),
        static_files: false,
    };
    let mut out = Vec::new();
    for incident in open {
        let Some(last) = incident.updates.iter().max_by_key(|u| u.created_ms) else {
            continue;
        };
        let waited = now_ms - last.created_ms;
        if waited < every {
            continue;
        }
        let n = waited / every;
        let fingerprint = format!("incident-update-due/{}/{}/{n}", incident.id, last.id);
        let sent = store
            .events(&EventFilter {
                since_ms: Some(last.created_ms),
                kind_prefix: Some("incident.reminder".into()),
                ..EventFilter::default()
            })?
            .iter()
            .any(|e| e.payload["fingerprint"] == fingerprint.as_str());
        if sent {
            continue;
        }
        let minutes = waited / 60_000;
        let notification = Notification {
            fingerprint: fingerprint.clone(),
            status: AlertStatus::Firing,
            alert: ALERT.into(),
            severity: "warning".into(),
            summary: format!(
                "incident \"{}\" has had no public update for {minutes} min",
                incident.name
            ),
            description: format!(
                "The last update ({}, {}) was posted {}. The communication plan promises \
                 an update every {}: post one with `warden incident update {} --status \
                 <status> --body <text>`, even if nothing changed.",
                last.status,
                last.id,
                human_time(last.created_ms),
                humantime::format_duration(config.automation.remind_after),
                incident.id
            ),
            labels: [
                ("incident".to_owned(), incident.id.clone()),
                ("status".to_owned(), incident.status.clone()),
            ]
            .into_iter()
            .collect(),
            starts_at_ms: last.created_ms + n * every,
            ends_at_ms: None,
            dashboard_url: Some(links.incident(&incident.id)),
        };
        store.append_event_at(
            now_ms,
            &NewEvent {
                kind: "incident.reminder".into(),
                release: None,
                payload: serde_json::json!({
                    "incident_id": incident.id,
                    "name": incident.name,
                    "fingerprint": fingerprint,
                    "last_update_id": last.id,
                    "minutes_since_update": minutes,
                }),
            },
        )?;
        out.push(notification);
    }
    Ok(out)
}

/// Checks every 15 s (or `remind_after`, if shorter) until the task is dropped.
pub async fn run(store: Store, config: Arc<StatusConfig>, on_call: Dispatcher, base_url: String) {
    let every = config.automation.remind_after;
    if every.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(every.min(Duration::from_secs(15)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (config, base) = (config.clone(), base_url.clone());
        match store
            .blocking(move |s| due(s, &config, &base, warden_store::now_ms()))
            .await
        {
            Ok(reminders) => {
                for reminder in reminders {
                    tracing::info!(summary = %reminder.summary, "status: reminding on-call");
                    on_call.dispatch(reminder);
                }
            }
            Err(error) => tracing::warn!(%error, "status: update reminders will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::incidents::{self, OpenIncident, UpdateIncident};

    #[test]
    fn an_incident_without_updates_is_reminded_once_per_period() {
        let store = Store::in_memory().unwrap();
        let mut config = StatusConfig::default();
        config.automation.remind_after = Duration::from_secs(60);
        let request: OpenIncident =
            serde_json::from_value(serde_json::json!({"name": "Slow API"})).unwrap();
        let id = incidents::open(&store, &config, &request, 0).unwrap().id;
        let at = |ms| due(&store, &config, "http://127.0.0.1:8081", ms).unwrap();
        assert!(at(59_000).is_empty());
        let first = at(60_000);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].alert, ALERT);
        assert!(
            first[0].summary.contains("Slow API"),
            "{}",
            first[0].summary
        );
        assert_eq!(
            first[0].dashboard_url.as_deref(),
            Some(format!("http://127.0.0.1:8081/status/incidents/{id}").as_str())
        );
        assert!(at(61_000).is_empty(), "already reminded this period");
        assert_eq!(at(120_000).len(), 1, "reminded again a period later");
        // An update restarts the clock; resolving ends the reminders.
        let more = UpdateIncident {
            body: Some("Still looking.".into()),
            ..UpdateIncident::default()
        };
        incidents::update(&store, &config, &id, &more, 130_000).unwrap();
        assert!(at(189_000).is_empty());
        assert_eq!(at(190_000).len(), 1);
        incidents::resolve(&store, &config, &id, &UpdateIncident::default(), 200_000).unwrap();
        assert!(at(1_000_000).is_empty());
        config.automation.remind_after = Duration::ZERO;
        let request: OpenIncident =
            serde_json::from_value(serde_json::json!({"name": "Again"})).unwrap();
        incidents::open(&store, &config, &request, 0).unwrap();
        assert!(due(&store, &config, "", 10_000_000).unwrap().is_empty());
    }
}
