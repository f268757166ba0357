//! Incidents that write themselves: the communication plan's first steps, taken by
//! the control plane from what it records.
//!
//! It follows the event log (every second in `warden up`), so it needs no wiring to
//! the monitor or the deploy controller and acts the same whoever caused an event:
//!
//! - an alert of `[automation] alerts` **firing** opens an incident "investigating"
//!   on the configured components, in the state the alert implies, worded from the
//!   templates — unless an incident it opened is still open;
//! - a **rollback** (`rollback.completed`, automatic or by hand) while that incident
//!   is open posts "identified" and then "monitoring", with the components back to
//!   operational, and forgets the alerts of the release rolled back from (its
//!   instances are gone);
//! - once no such alert has fired for `resolve_after`, the incident is **resolved**.
//!
//! People stay in charge: anything can be posted by hand at any time (the automatic
//! words are only the defaults of each stage), and an incident a person resolved is
//! left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_monitor::rules;
use warden_store::kinds::ROLLED_BACK;
use warden_store::{Event, EventFilter, Store};

use crate::config::{TemplateValues, fill};
use crate::incidents::{self, OpenIncident, UpdateIncident};
use crate::model::{ComponentStatus, IncidentStatus};
use crate::{Result, StatusConfig};

/// `[automation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutomationConfig {
    /// Open, move and resolve incidents from alerts and rollbacks.
    pub enabled: bool,
    /// The title of an incident it opens; `{components}` as in the templates.
    pub incident_name: String,
    /// The alerts that open an incident, with the state they put the components in
    /// [default: every alert of Warden's rules, which Prometheus' rules in
    /// `ops/prometheus` fire by the same names]. A firing alert not named here
    /// opens no incident; one from Alertmanager is then recorded as
    /// [`ALERT_IGNORED`] and the receiver's answer says why.
    pub alerts: BTreeMap<String, ComponentStatus>,
    /// The ids of the components an alert affects [default: every component].
    pub components: Vec<String>,
    /// How long no alert may fire before the incident is resolved.
    #[serde(with = "humantime_serde")]
    pub resolve_after: Duration,
    /// Remind the on-call channel (the monitor's `[[notifiers]]`) when an open
    /// incident has had no update for this long, and again each time as long
    /// again passes; `0s` turns reminders off. Applies to every incident, however
    /// it was opened, and also when `enabled` is false.
    #[serde(with = "humantime_serde")]
    pub remind_after: Duration,
}

impl Default for AutomationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            incident_name: "Errors and slow responses on {components}".into(),
            alerts: [
                (rules::MEMORY_LEAK, ComponentStatus::DegradedPerformance),
                (rules::MEMORY_HIGH, ComponentStatus::DegradedPerformance),
                (rules::LATENCY_HIGH, ComponentStatus::DegradedPerformance),
                (rules::ERROR_RATIO_HIGH, ComponentStatus::PartialOutage),
                (rules::TARGET_DOWN, ComponentStatus::PartialOutage),
            ]
            .into_iter()
            .map(|(a, s)| (a.to_owned(), s))
            .collect(),
            components: Vec::new(),
            resolve_after: Duration::from_secs(600),
            remind_after: Duration::from_secs(30 * 60),
        }
    }
}

/// The event recorded when a firing alert from Alertmanager opens no incident:
/// its name is not in `[automation] alerts`, or the automation is off.
pub const ALERT_IGNORED: &str = "automation.alert_ignored";

impl AutomationConfig {
    /// The state a firing alert named `alert` puts the components in when it opens
    /// an incident (or joins the one open); otherwise why it opens none.
    ///
    /// # Errors
    /// Why the alert opens no incident, in a sentence that says what to change.
    pub fn incident_state(&self, alert: &str) -> std::result::Result<ComponentStatus, String> {
        if !self.enabled {
            return Err(format!(
                "alert {alert:?} opens no incident: status automation is off ([automation] \
                 enabled = false in the status config)"
            ));
        }
        self.alerts.get(alert).copied().ok_or_else(|| {
            format!(
                "alert {alert:?} opens no incident: the status config's [automation.alerts] \
                 names only {}; add `{alert} = \"partial_outage\"` (or another component \
                 state) there, or give the alert one of those names",
                self.alerts
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The state of the automation between steps.
pub struct Automation {
    config: Arc<StatusConfig>,
    last_id: i64,
    last_ms: i64,
    /// The incident it opened and still looks after.
    incident: Option<String>,
    /// Alerts firing now: fingerprint → release.
    firing: BTreeMap<String, String>,
    /// Since when nothing has fired (unix ms).
    clear_since: Option<i64>,
}

impl Automation {
    /// Starts after the event `after_id` (so a restart does not replay history).
    #[must_use]
    pub fn new(config: Arc<StatusConfig>, after_id: i64, now_ms: i64) -> Self {
        Self {
            config,
            last_id: after_id,
            last_ms: now_ms - 60_000,
            incident: None,
            firing: BTreeMap::new(),
            clear_since: None,
        }
    }

    /// Reads the events since the last step and acts on them; returns what it did.
    ///
    /// # Errors
    /// The store failed; the step is retried from the same place next time.
    pub fn step(&mut self, store: &Store, now_ms: i64) -> Result<Vec<String>> {
        let events = store.events(&EventFilter {
            since_ms: Some(self.last_ms),
            ..EventFilter::default()
        })?;
        let mut done = Vec::new();
        let after = self.last_id;
        for event in events.into_iter().filter(|e| e.id > after) {
            self.handle(store, &event, &mut done)?;
            self.last_id = event.id;
            self.last_ms = event.at_ms;
        }
        if let Some(id) = self.incident.clone() {
            if !is_open(store, &id)? {
                // Resolved by a person: theirs now.
                self.incident = None;
            } else if self.firing.is_empty()
                && self.clear_since.is_some_and(|since| {
                    now_ms - since >= millis(self.config.automation.resolve_after)
                })
            {
                incidents::resolve(store, &self.config, &id, &UpdateIncident::default(), now_ms)?;
                done.push(format!("resolved incident {id}: recovery held"));
                self.incident = None;
            }
        }
        Ok(done)
    }

    fn handle(&mut self, store: &Store, event: &Event, done: &mut Vec<String>) -> Result<()> {
        let text = |key: &str| event.payload[key].as_str().unwrap_or_default().to_owned();
        match event.kind.as_str() {
            "alert.firing" => {
                let state = match self.config.automation.incident_state(&text("alert")) {
                    Ok(state) => state,
                    Err(why) => {
                        tracing::info!("status automation: {why}");
                        return Ok(());
                    }
                };
                self.firing.insert(text("fingerprint"), text("release"));
                self.clear_since = None;
                if let Some(id) = &self.incident
                    && !is_open(store, id)?
                {
                    // Resolved by a person since: this alert is news again.
                    self.incident = None;
                }
                if self.incident.is_none() {
                    let components: BTreeMap<String, ComponentStatus> =
                        self.affected().into_iter().map(|c| (c, state)).collect();
                    let names = self.names(&components);
                    let request = OpenIncident {
                        name: fill(
                            &self.config.automation.incident_name,
                            &TemplateValues {
                                components: names,
                                ..TemplateValues::default()
                            },
                        ),
                        components,
                        ..OpenIncident::default()
                    };
                    let incident = incidents::open(store, &self.config, &request, event.at_ms)?;
                    done.push(format!(
                        "opened incident {} for {}",
                        incident.id,
                        text("summary")
                    ));
                    self.incident = Some(incident.id);
                }
            }
            "alert.resolved" | "alert.cancelled" => {
                self.firing.remove(&text("fingerprint"));
                self.cleared(event.at_ms);
            }
            ROLLED_BACK => {
                let to = event.release.clone().unwrap_or_default();
                self.firing.retain(|_, release| *release == to);
                self.cleared(event.at_ms);
                if let Some(id) = self.incident.clone() {
                    let incident = store.status_incident(&id)?;
                    let status = incident
                        .as_ref()
                        .and_then(|i| i.status.parse::<IncidentStatus>().ok());
                    if status == Some(IncidentStatus::Investigating) {
                        let identified = UpdateIncident {
                            status: Some(IncidentStatus::Identified),
                            ..UpdateIncident::default()
                        };
                        incidents::update(store, &self.config, &id, &identified, event.at_ms)?;
                    }
                    if matches!(
                        status,
                        Some(IncidentStatus::Investigating | IncidentStatus::Identified)
                    ) {
                        let recovered = incident
                            .map(|i| {
                                i.components
                                    .into_iter()
                                    .map(|c| (c, ComponentStatus::Operational))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let monitoring = UpdateIncident {
                            status: Some(IncidentStatus::Monitoring),
                            components: recovered,
                            ..UpdateIncident::default()
                        };
                        incidents::update(store, &self.config, &id, &monitoring, event.at_ms)?;
                        done.push(format!(
                            "incident {id}: identified and monitoring after the rollback to {to}"
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn cleared(&mut self, at_ms: i64) {
        if self.firing.is_empty() && self.clear_since.is_none() {
            self.clear_since = Some(at_ms);
        }
    }

    /// The components an alert affects.
    fn affected(&self) -> Vec<String> {
        if self.config.automation.components.is_empty() {
            self.config
                .components
                .iter()
                .map(crate::config::ComponentConfig::id)
                .collect()
        } else {
            self.config.automation.components.clone()
        }
    }

    fn names(&self, components: &BTreeMap<String, ComponentStatus>) -> Vec<String> {
        self.config
            .components
            .iter()
            .filter(|c| components.contains_key(&c.id()))
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Whether incident `id` is still open (not resolved, by anyone).
fn is_open(store: &Store, id: &str) -> Result<bool> {
    Ok(store.status_incident(id)?.is_some_and(|i| {
        !i.status
            .parse::<IncidentStatus>()
            .is_ok_and(IncidentStatus::is_closed)
    }))
}

/// Runs the automation until the task is dropped, one step a second.
pub async fn run(store: Store, config: Arc<StatusConfig>) {
    if !config.automation.enabled {
        return;
    }
    let after = store.last_event_id().ok().flatten().unwrap_or(0);
    let mut automation = Automation::new(config, after, warden_store::now_ms());
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = automation.step(&store, warden_store::now_ms());
            (automation, result)
        })
        .await;
        match result {
            Ok((back, outcome)) => {
                automation = back;
                match outcome {
                    Ok(done) => done
                        .iter()
                        .for_each(|d| tracing::info!("status automation: {d}")),
                    Err(error) => tracing::warn!(%error, "status automation: will retry"),
                }
            }
            Err(error) => {
                tracing::error!(%error, "status automation stopped");
                return;
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use warden_store::NewEvent;

    fn alert(store: &Store, at: i64, phase: &str, alert: &str, release: &str) {
        store
            .append_event_at(
                at,
                &NewEvent {
                    kind: format!("alert.{phase}"),
                    release: Some(release.into()),
                    payload: serde_json::json!({
                        "alert": alert,
                        "fingerprint": format!("{alert}/127.0.0.1:1"),
                        "release": release,
                        "summary": format!("{alert} on {release}"),
                    }),
                },
            )
            .unwrap();
    }

    fn status(store: &Store, id: &str) -> (String, Vec<String>) {
        let incident = store.status_incident(id).unwrap().unwrap();
        let updates = incident.updates.iter().map(|u| u.status.clone()).collect();
        (incident.status, updates)
    }

    #[test]
    fn an_alert_opens_a_rollback_moves_and_recovery_resolves_the_incident() {
        let store = Store::in_memory().unwrap();
        let config = Arc::new(StatusConfig::default());
        crate::components::sync(&store, &config, 0).unwrap();
        let mut automation = Automation::new(config, 0, 0);

        alert(&store, 1_000, "pending", "MemoryLeak", "v2");
        assert!(
            automation.step(&store, 1_000).unwrap().is_empty(),
            "pending is not news"
        );
        alert(&store, 2_000, "firing", "MemoryLeak", "v2");
        let done = automation.step(&store, 2_500).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let id = automation.incident.clone().unwrap();
        let incident = store.status_incident(&id).unwrap().unwrap();
        assert_eq!(incident.status, "investigating");
        assert_eq!(
            incident.name,
            "Errors and slow responses on API, Authentication and Data retrieval"
        );
        let component = store.status_components().unwrap();
        assert!(
            component.iter().all(|c| c.status == "degraded_performance"),
            "{component:?}"
        );

        // A second alert does not open a second incident.
        alert(&store, 3_000, "firing", "LatencyHigh", "v2");
        assert!(automation.step(&store, 3_000).unwrap().is_empty());

        store
            .append_event_at(
                4_000,
                &NewEvent {
                    kind: "rollback.completed".into(),
                    release: Some("v1".into()),
                    payload: serde_json::json!({"from": "v2", "automatic": true}),
                },
            )
            .unwrap();
        automation.step(&store, 4_000).unwrap();
        assert_eq!(
            status(&store, &id),
            (
                "monitoring".into(),
                vec![
                    "investigating".into(),
                    "identified".into(),
                    "monitoring".into()
                ]
            )
        );
        assert!(
            store
                .status_components()
                .unwrap()
                .iter()
                .all(|c| c.status == "operational")
        );

        // The rolled-back release's alerts are gone with it; recovery must hold.
        let resolve_after = millis(Duration::from_secs(600));
        assert!(
            automation
                .step(&store, 4_000 + resolve_after - 1)
                .unwrap()
                .is_empty()
        );
        automation.step(&store, 4_000 + resolve_after).unwrap();
        assert_eq!(status(&store, &id).0, "resolved");
        assert!(automation.incident.is_none());
    }

    /// The `alert:` names of a Prometheus rules file.
    fn prometheus_alerts(rules: &str) -> std::collections::BTreeSet<String> {
        rules
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("- alert:"))
            .map(|name| name.trim().trim_matches(['"', '\'']).to_owned())
            .collect()
    }

    #[test]
    fn every_alert_of_the_shipped_prometheus_rules_opens_an_incident_by_default() {
        let rules = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../ops/prometheus/warden-rules.yml"
        ))
        .unwrap();
        let alerts = prometheus_alerts(&rules);
        let config = AutomationConfig::default();
        assert!(!alerts.is_empty());
        for alert in &alerts {
            assert!(
                rules::ALERTS.contains(&alert.as_str()),
                "{alert} is not the name of one of Warden's own alert rules {:?}",
                rules::ALERTS
            );
            assert!(config.incident_state(alert).is_ok(), "{alert}");
        }
        // And every one of Warden's own alerts has its Prometheus twin.
        for alert in rules::ALERTS {
            assert!(alerts.contains(alert), "{alert} is missing from the rules");
            assert!(config.incident_state(alert).is_ok(), "{alert}");
        }
    }

    #[test]
    fn an_alert_outside_the_policy_says_why_it_opens_no_incident() {
        let mut config = AutomationConfig::default();
        let why = config.incident_state("WardenErrorRateHigh").unwrap_err();
        assert!(
            why.contains("WardenErrorRateHigh") && why.contains("ErrorRatioHigh"),
            "{why}"
        );
        config.enabled = false;
        let why = config.incident_state("ErrorRatioHigh").unwrap_err();
        assert!(why.contains("enabled = false"), "{why}");
    }

    #[test]
    fn alerts_outside_the_policy_and_incidents_people_resolved_are_left_alone() {
        let store = Store::in_memory().unwrap();
        let config = Arc::new(StatusConfig::default());
        crate::components::sync(&store, &config, 0).unwrap();
        let mut automation = Automation::new(config.clone(), 0, 0);
        alert(&store, 1_000, "firing", "DiskFull", "v1");
        assert!(automation.step(&store, 1_000).unwrap().is_empty());
        alert(&store, 2_000, "firing", "ErrorRatioHigh", "v1");
        automation.step(&store, 2_000).unwrap();
        let id = automation.incident.clone().unwrap();
        incidents::resolve(&store, &config, &id, &UpdateIncident::default(), 3_000).unwrap();
        automation.step(&store, 3_500).unwrap();
        assert!(automation.incident.is_none(), "a person resolved it");
        // Still firing, but the person decided; a new alert opens a new incident.
        alert(&store, 4_000, "firing", "LatencyHigh", "v1");
        automation.step(&store, 4_000).unwrap();
        let second = automation.incident.clone().unwrap();
        assert_ne!(second, id);
        // Resolved by hand and an alert in the same step: a new incident too, not
        // one joined to the resolved incident.
        incidents::resolve(&store, &config, &second, &UpdateIncident::default(), 5_000).unwrap();
        alert(&store, 5_500, "firing", "TargetDown", "v1");
        let done = automation.step(&store, 5_500).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let third = automation.incident.clone().unwrap();
        assert!(third != id && third != second);
    }
}
