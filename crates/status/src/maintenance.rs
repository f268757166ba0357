//! Scheduled maintenance: announced ahead, started and ended on time by a clock
//! in `warden up`, and never a reason to page anyone.
//!
//! When its window opens ([`tick`]) its components that are operational or
//! degraded go `under_maintenance` (an outage stays an outage: maintenance never
//! hides one) and the `maintenance_in_progress` template is posted; when it closes,
//! the components still under maintenance, and under no other open window, go back
//! to operational. Minutes under maintenance are not downtime. Someone may move it
//! along by hand: `verifying`, or `completed` early.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_store::{
    IncidentQuery, KIND_MAINTENANCE, NewEvent, StatusIncident, StatusTx, StatusUpdate, Store,
};

use crate::config::{TemplateValues, fill};
use crate::model::{ComponentStatus, MAINTENANCE_IMPACT, MaintenanceStatus};
use crate::{
    Result, StatusConfig, StatusError, check_body, check_name, components, human_time, new_id,
    parse_time,
};

/// The body of `POST /api/admin/maintenances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMaintenance {
    /// The title users see, e.g. "Database upgrade".
    pub name: String,
    /// When the window opens, RFC 3339 (`2025-01-02T22:00:00Z`).
    pub scheduled_for: String,
    /// When it closes, RFC 3339.
    pub scheduled_until: String,
    /// The components it concerns, by id.
    #[serde(default)]
    pub components: Vec<String>,
    /// What users are told [default: the `maintenance_scheduled` template].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The body of `POST /api/admin/maintenances/{id}/updates`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMaintenance {
    /// The new status [default: unchanged].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MaintenanceStatus>,
    /// What users are told [default: the status's template].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Announces a maintenance; records `maintenance.scheduled`.
///
/// # Errors
/// [`StatusError::Invalid`] / [`StatusError::NotFound`] naming what to fix.
pub fn schedule(
    store: &Store,
    config: &StatusConfig,
    request: &ScheduleMaintenance,
    now_ms: i64,
) -> Result<StatusIncident> {
    let name = check_name("name", &request.name)?;
    let start = parse_time("scheduled_for", &request.scheduled_for)?;
    let end = parse_time("scheduled_until", &request.scheduled_until)?;
    if end <= start {
        return Err(StatusError::Invalid(
            "scheduled_until: must be after scheduled_for".into(),
        ));
    }
    if end <= now_ms {
        return Err(StatusError::Invalid(format!(
            "scheduled_until: {} is already past; schedule a window that ends in the future",
            request.scheduled_until
        )));
    }
    let body = check_body(request.body.as_deref())?;
    store.status_write(|tx| {
        let all = tx.components()?;
        let mut ids: Vec<String> = Vec::new();
        for id in &request.components {
            components::find(&all, id)?;
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        let maintenance = StatusIncident {
            id: new_id(),
            kind: KIND_MAINTENANCE.into(),
            name: name.clone(),
            status: MaintenanceStatus::Scheduled.as_str().into(),
            impact: MAINTENANCE_IMPACT.into(),
            components: ids,
            created_ms: now_ms,
            updated_ms: now_ms,
            started_ms: start,
            monitoring_ms: None,
            resolved_ms: None,
            scheduled_for_ms: Some(start),
            scheduled_until_ms: Some(end),
            updates: Vec::new(),
        };
        tx.put_incident(&maintenance)?;
        post(
            tx,
            config,
            &maintenance,
            MaintenanceStatus::Scheduled,
            body.clone(),
            Vec::new(),
            now_ms,
            "maintenance.scheduled",
        )?;
        read_back(tx, &maintenance.id)
    })
}

/// Moves maintenance `id` along by hand, or posts a message to it.
///
/// # Errors
/// [`StatusError::NotFound`], [`StatusError::Conflict`] (it is completed, or the
/// step goes backwards), [`StatusError::Invalid`] (nothing to update).
pub fn update(
    store: &Store,
    config: &StatusConfig,
    id: &str,
    request: &UpdateMaintenance,
    now_ms: i64,
) -> Result<StatusIncident> {
    let body = check_body(request.body.as_deref())?;
    if request.status.is_none() && body.is_none() {
        return Err(StatusError::Invalid(
            "nothing to update: give a status or a body".into(),
        ));
    }
    store.status_write(|tx| {
        let maintenance = match tx.incident(id)? {
            Some(m) if m.kind == KIND_MAINTENANCE => m,
            Some(_) => {
                return Err(StatusError::NotFound(format!(
                    "{id} is an incident, not a maintenance: update it under /api/admin/incidents/{id}"
                )));
            }
            None => return Err(StatusError::NotFound(format!("no maintenance {id:?}"))),
        };
        let current: MaintenanceStatus =
            maintenance.status.parse().map_err(StatusError::Invalid)?;
        let next = request.status.unwrap_or(current);
        if current.is_closed() {
            return Err(StatusError::Conflict(format!(
                "maintenance {id} is completed; schedule a new one"
            )));
        }
        if next == MaintenanceStatus::Scheduled && current != MaintenanceStatus::Scheduled {
            return Err(StatusError::Conflict(format!(
                "maintenance {id} has started; it can go on to verifying or completed"
            )));
        }
        transition(tx, config, maintenance, current, next, body.clone(), now_ms)?;
        read_back(tx, id)
    })
}

/// Opens the windows whose time has come and closes the ones that are over, as of
/// `now_ms`. Returns how many maintenances changed.
///
/// # Errors
/// The store failed; whatever had changed before is kept.
pub fn tick(store: &Store, config: &StatusConfig, now_ms: i64) -> Result<usize> {
    let open = store.status_incidents(&IncidentQuery {
        kind: Some(KIND_MAINTENANCE.into()),
        exclude_statuses: vec![MaintenanceStatus::Completed.as_str().into()],
        ..IncidentQuery::default()
    })?;
    let mut changed = 0;
    for maintenance in open {
        let (Some(start), Some(end)) =
            (maintenance.scheduled_for_ms, maintenance.scheduled_until_ms)
        else {
            continue;
        };
        let due = |m: &StatusIncident| {
            let status = m.status.parse::<MaintenanceStatus>().ok()?;
            match status {
                MaintenanceStatus::Scheduled if now_ms >= end => Some(MaintenanceStatus::Completed),
                MaintenanceStatus::Scheduled if now_ms >= start => {
                    Some(MaintenanceStatus::InProgress)
                }
                MaintenanceStatus::InProgress | MaintenanceStatus::Verifying if now_ms >= end => {
                    Some(MaintenanceStatus::Completed)
                }
                _ => None,
            }
        };
        if due(&maintenance).is_none() {
            continue;
        }
        let id = maintenance.id.clone();
        store.status_write(|tx| {
            // Read again inside the transaction: someone may have moved it by hand.
            let Some(mut current) = tx.incident(&id)? else {
                return Ok::<_, StatusError>(());
            };
            while let Some(next) = due(&current) {
                let status = current.status.parse().map_err(StatusError::Invalid)?;
                // A window that passed entirely (Warden was down) still opens and
                // closes, so its history reads right.
                let next = if status == MaintenanceStatus::Scheduled {
                    MaintenanceStatus::InProgress
                } else {
                    next
                };
                let at = if next == MaintenanceStatus::InProgress {
                    start
                } else {
                    end
                };
                transition(tx, config, current, status, next, None, at.min(now_ms))?;
                current = read_back(tx, &id)?;
            }
            Ok(())
        })?;
        changed += 1;
    }
    Ok(changed)
}

/// Runs [`tick`] every `config.maintenance.check_interval` until the task is
/// dropped. A failing store is logged and retried; it never stops the clock.
pub async fn run_clock(store: Store, config: std::sync::Arc<StatusConfig>) {
    let mut interval = tokio::time::interval(config.maintenance.check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let (store, config) = (store.clone(), config.clone());
        let result =
            tokio::task::spawn_blocking(move || tick(&store, &config, warden_store::now_ms()))
                .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(changed = n, "status: maintenance windows moved"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "status: cannot check scheduled maintenance");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(error) => tracing::error!(%error, "status: maintenance clock task failed"),
        }
    }
}

fn transition(
    tx: &StatusTx<'_>,
    config: &StatusConfig,
    mut maintenance: StatusIncident,
    current: MaintenanceStatus,
    next: MaintenanceStatus,
    body: Option<String>,
    at_ms: i64,
) -> Result<()> {
    let mut changes = BTreeMap::new();
    let states = tx.components()?;
    let state_of = |id: &str| {
        states
            .iter()
            .find(|c| c.id == id && !c.archived)
            .and_then(|c| c.status.parse::<ComponentStatus>().ok())
    };
    if next.is_active() && !current.is_active() {
        for id in &maintenance.components {
            if matches!(
                state_of(id),
                Some(ComponentStatus::Operational | ComponentStatus::DegradedPerformance)
            ) {
                changes.insert(id.clone(), ComponentStatus::UnderMaintenance);
            }
        }
        maintenance.started_ms = at_ms;
    }
    if next.is_closed() {
        let others = tx.incidents(&IncidentQuery {
            kind: Some(KIND_MAINTENANCE.into()),
            exclude_statuses: vec![
                MaintenanceStatus::Scheduled.as_str().into(),
                MaintenanceStatus::Completed.as_str().into(),
            ],
            ..IncidentQuery::default()
        })?;
        for id in &maintenance.components {
            let still_held = others
                .iter()
                .any(|m| m.id != maintenance.id && m.components.contains(id));
            if state_of(id) == Some(ComponentStatus::UnderMaintenance) && !still_held {
                changes.insert(id.clone(), ComponentStatus::Operational);
            }
        }
        maintenance.resolved_ms = Some(at_ms);
    }
    let affected = components::apply(tx, &changes, at_ms, Some(&maintenance.id))?;
    maintenance.status = next.as_str().into();
    maintenance.updated_ms = at_ms;
    tx.put_incident(&maintenance)?;
    let kind = match next {
        MaintenanceStatus::InProgress if current != next => "maintenance.started",
        MaintenanceStatus::Completed => "maintenance.completed",
        _ => "maintenance.updated",
    };
    post(tx, config, &maintenance, next, body, affected, at_ms, kind)
}

#[allow(clippy::too_many_arguments)]
fn post(
    tx: &StatusTx<'_>,
    config: &StatusConfig,
    maintenance: &StatusIncident,
    status: MaintenanceStatus,
    body: Option<String>,
    affected: Vec<warden_store::AffectedComponent>,
    at_ms: i64,
    kind: &str,
) -> Result<()> {
    let body = match body {
        Some(body) => body,
        None => {
            let all = tx.components()?;
            fill(
                config.templates.for_maintenance(status),
                &TemplateValues {
                    name: maintenance.name.clone(),
                    components: components::names(&all, &maintenance.components),
                    start: maintenance
                        .scheduled_for_ms
                        .map(human_time)
                        .unwrap_or_default(),
                    end: maintenance
                        .scheduled_until_ms
                        .map(human_time)
                        .unwrap_or_default(),
                },
            )
        }
    };
    let update = StatusUpdate {
        id: new_id(),
        incident_id: maintenance.id.clone(),
        status: status.as_str().into(),
        body,
        affected,
        created_ms: at_ms,
        display_ms: at_ms,
    };
    tx.add_update(&update)?;
    let as_of = crate::deliver::as_of(tx, maintenance, at_ms)?;
    tx.append_event_at(
        at_ms,
        &NewEvent {
            kind: kind.into(),
            release: None,
            payload: serde_json::json!({
                "maintenance_id": maintenance.id,
                "update_id": update.id,
                "name": maintenance.name,
                "status": update.status,
                "body": update.body,
                "components": maintenance.components,
                "scheduled_for_ms": maintenance.scheduled_for_ms,
                "scheduled_until_ms": maintenance.scheduled_until_ms,
                "affected_components": update.affected,
                "as_of": as_of,
            }),
        },
    )?;
    Ok(())
}

fn read_back(tx: &StatusTx<'_>, id: &str) -> Result<StatusIncident> {
    tx.incident(id)?
        .ok_or_else(|| StatusError::NotFound(format!("maintenance {id} vanished while writing")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use warden_store::EventFilter;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_700_000_000_000;

    fn setup() -> (Store, StatusConfig) {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        crate::components::sync(&store, &config, T0 - 10 * HOUR).unwrap();
        (store, config)
    }

    fn window(components: &[&str], from: i64, until: i64) -> ScheduleMaintenance {
        ScheduleMaintenance {
            name: "Database upgrade".into(),
            scheduled_for: crate::json_time(from),
            scheduled_until: crate::json_time(until),
            components: components.iter().map(|s| (*s).to_owned()).collect(),
            body: None,
        }
    }

    fn status_of(store: &Store, id: &str) -> String {
        store
            .status_components()
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
            .status
    }

    #[test]
    fn a_window_opens_and_closes_on_time() {
        let (store, config) = setup();
        let m = schedule(
            &store,
            &config,
            &window(&["api", "data-retrieval"], T0 + HOUR, T0 + 2 * HOUR),
            T0,
        )
        .unwrap();
        assert_eq!(m.status, "scheduled");
        assert_eq!(m.impact, "maintenance");
        assert!(
            m.updates[0].body.contains("API and Data retrieval"),
            "{}",
            m.updates[0].body
        );
        assert!(
            m.updates[0].body.contains("2023-11-14 23:13 UTC"),
            "{}",
            m.updates[0].body
        );
        // An outage is not hidden by the maintenance.
        crate::components::set_status(&store, "data-retrieval", ComponentStatus::MajorOutage, T0)
            .unwrap();

        assert_eq!(tick(&store, &config, T0 + HOUR - 1).unwrap(), 0);
        assert_eq!(tick(&store, &config, T0 + HOUR).unwrap(), 1);
        assert_eq!(status_of(&store, "api"), "under_maintenance");
        assert_eq!(status_of(&store, "data-retrieval"), "major_outage");
        let started = store.status_incident(&m.id).unwrap().unwrap();
        assert_eq!(started.status, "in_progress");
        assert_eq!(started.updates[1].affected.len(), 1);

        assert_eq!(
            tick(&store, &config, T0 + HOUR + 10).unwrap(),
            0,
            "nothing to do twice"
        );
        assert_eq!(tick(&store, &config, T0 + 2 * HOUR + 5).unwrap(), 1);
        let done = store.status_incident(&m.id).unwrap().unwrap();
        assert_eq!(done.status, "completed");
        assert_eq!(done.resolved_ms, Some(T0 + 2 * HOUR));
        assert_eq!(status_of(&store, "api"), "operational");
        let kinds: Vec<String> = store
            .events(&EventFilter {
                kind_prefix: Some("maintenance.".into()),
                ..EventFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "maintenance.scheduled",
                "maintenance.started",
                "maintenance.completed"
            ]
        );
    }

    #[test]
    fn a_window_missed_entirely_still_opens_and_closes() {
        let (store, config) = setup();
        let m = schedule(
            &store,
            &config,
            &window(&["api"], T0 + HOUR, T0 + 2 * HOUR),
            T0,
        )
        .unwrap();
        assert_eq!(tick(&store, &config, T0 + 5 * HOUR).unwrap(), 1);
        let done = store.status_incident(&m.id).unwrap().unwrap();
        let statuses: Vec<&str> = done.updates.iter().map(|u| u.status.as_str()).collect();
        assert_eq!(statuses, ["scheduled", "in_progress", "completed"]);
        assert_eq!(done.updates[1].created_ms, T0 + HOUR);
        assert_eq!(done.updates[2].created_ms, T0 + 2 * HOUR);
        assert_eq!(status_of(&store, "api"), "operational");
    }

    #[test]
    fn overlapping_windows_keep_a_component_under_maintenance() {
        let (store, config) = setup();
        let short = schedule(
            &store,
            &config,
            &window(&["api"], T0 + HOUR, T0 + 2 * HOUR),
            T0,
        )
        .unwrap();
        schedule(
            &store,
            &config,
            &window(&["api"], T0 + HOUR, T0 + 3 * HOUR),
            T0,
        )
        .unwrap();
        tick(&store, &config, T0 + HOUR).unwrap();
        tick(&store, &config, T0 + 2 * HOUR).unwrap();
        assert_eq!(
            store.status_incident(&short.id).unwrap().unwrap().status,
            "completed"
        );
        assert_eq!(status_of(&store, "api"), "under_maintenance");
        tick(&store, &config, T0 + 3 * HOUR).unwrap();
        assert_eq!(status_of(&store, "api"), "operational");
    }

    #[test]
    fn by_hand_it_can_verify_and_complete_but_not_go_back() {
        let (store, config) = setup();
        let m = schedule(&store, &config, &window(&["api"], T0, T0 + HOUR), T0).unwrap();
        tick(&store, &config, T0).unwrap();
        let verifying = update(
            &store,
            &config,
            &m.id,
            &UpdateMaintenance {
                status: Some(MaintenanceStatus::Verifying),
                body: None,
            },
            T0 + 10,
        )
        .unwrap();
        assert_eq!(verifying.status, "verifying");
        let back = update(
            &store,
            &config,
            &m.id,
            &UpdateMaintenance {
                status: Some(MaintenanceStatus::Scheduled),
                body: None,
            },
            T0 + 20,
        );
        assert!(matches!(back, Err(StatusError::Conflict(_))));
        update(
            &store,
            &config,
            &m.id,
            &UpdateMaintenance {
                status: Some(MaintenanceStatus::Completed),
                body: Some("Done early.".into()),
            },
            T0 + 30,
        )
        .unwrap();
        assert_eq!(status_of(&store, "api"), "operational");
        let after = update(
            &store,
            &config,
            &m.id,
            &UpdateMaintenance {
                status: None,
                body: Some("More".into()),
            },
            T0 + 40,
        );
        assert!(matches!(after, Err(StatusError::Conflict(_))));
    }

    #[test]
    fn bad_windows_are_refused() {
        let (store, config) = setup();
        let inverted = schedule(&store, &config, &window(&["api"], T0 + HOUR, T0), T0);
        assert!(matches!(inverted, Err(StatusError::Invalid(_))));
        let past = schedule(
            &store,
            &config,
            &window(&["api"], T0 - 2 * HOUR, T0 - HOUR),
            T0,
        );
        assert!(matches!(past, Err(StatusError::Invalid(_))));
        let unknown = schedule(
            &store,
            &config,
            &window(&["db"], T0 + HOUR, T0 + 2 * HOUR),
            T0,
        );
        assert!(matches!(unknown, Err(StatusError::NotFound(_))));
        let garbled = schedule(
            &store,
            &config,
            &ScheduleMaintenance {
                scheduled_for: "soon".into(),
                ..window(&[], T0, T0 + HOUR)
            },
            T0,
        );
        assert!(garbled.unwrap_err().to_string().contains("scheduled_for"));
        assert_eq!(store.last_event_id().unwrap(), None);
    }
}
