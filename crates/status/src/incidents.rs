//! Incidents: opening one, posting updates to its timeline, resolving it, and
//! the postmortem that closes it.
//!
//! The rules: an incident opens as `investigating`, `identified` or `monitoring`;
//! it moves between those freely (a fix that did not hold goes back to
//! `investigating`); `resolved` ends it; after that it only takes one `postmortem`
//! update. A problem that comes back is a new incident. Every update may change
//! component states; each change is recorded with its old and new state. An update
//! without text gets the template of its status (see [`crate::config::Templates`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_store::{KIND_INCIDENT, NewEvent, StatusIncident, StatusTx, StatusUpdate, Store};

use crate::config::{TemplateValues, fill};
use crate::model::{ComponentStatus, Impact, IncidentStatus};
use crate::{Result, StatusConfig, StatusError, check_body, check_name, components, new_id};

/// The body of `POST /api/admin/incidents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenIncident {
    /// The title users see, e.g. "Elevated errors on sign-in".
    pub name: String,
    /// Where it stands [default: investigating].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IncidentStatus>,
    /// How bad it is [default: implied by the component states, else minor].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// What users are told [default: the status's template].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Components and the state they are in now, by id.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentStatus>,
}

/// The body of `POST /api/admin/incidents/{id}/updates` (and of `.../resolve`,
/// whose status is always `resolved`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncident {
    /// The new status [default: unchanged].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IncidentStatus>,
    /// A new impact [default: unchanged].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// What users are told [default: the status's template].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Components whose state changes, by id. On resolving, components of the
    /// incident not named here go back to operational.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentStatus>,
}

/// Opens an incident; records `incident.opened` and a `component.status` event per
/// component it changes.
///
/// # Errors
/// [`StatusError::Invalid`] or [`StatusError::NotFound`] naming what to fix;
/// nothing is written then.
pub fn open(
    store: &Store,
    config: &StatusConfig,
    request: &OpenIncident,
    now_ms: i64,
) -> Result<StatusIncident> {
    let name = check_name("name", &request.name)?;
    let status = request.status.unwrap_or(IncidentStatus::Investigating);
    if status.is_closed() {
        return Err(StatusError::Invalid(format!(
            "status: an incident opens as investigating, identified or monitoring, not {status}; \
             resolve it with an update afterwards"
        )));
    }
    let body = check_body(request.body.as_deref())?;
    let impact = request
        .impact
        .or_else(|| Impact::implied_by(request.components.values().copied()))
        .unwrap_or(Impact::Minor);
    store.status_write(|tx| {
        let id = new_id();
        let affected = components::apply(tx, &request.components, now_ms, Some(&id))?;
        let incident = StatusIncident {
            id: id.clone(),
            kind: KIND_INCIDENT.into(),
            name: name.clone(),
            status: status.as_str().into(),
            impact: impact.as_str().into(),
            components: request.components.keys().cloned().collect(),
            created_ms: now_ms,
            updated_ms: now_ms,
            started_ms: now_ms,
            monitoring_ms: (status == IncidentStatus::Monitoring).then_some(now_ms),
            resolved_ms: None,
            scheduled_for_ms: None,
            scheduled_until_ms: None,
            updates: Vec::new(),
        };
        tx.put_incident(&incident)?;
        let body = body
            .clone()
            .unwrap_or_else(|| template_text(tx, config, &incident, status).unwrap_or_default());
        let update = StatusUpdate {
            id: new_id(),
            incident_id: id.clone(),
            status: status.as_str().into(),
            body,
            affected,
            created_ms: now_ms,
            display_ms: now_ms,
        };
        tx.add_update(&update)?;
        record(tx, "incident.opened", &incident, &update)?;
        read_back(tx, &id)
    })
}

/// Posts an update to incident `id`: a new status, new component states, new text
/// or impact. Records `incident.updated`, `incident.resolved` or
/// `incident.postmortem`.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown incident, [`StatusError::Conflict`] for
/// a change the incident's state does not allow, [`StatusError::Invalid`] for a bad
/// or empty request.
pub fn update(
    store: &Store,
    config: &StatusConfig,
    id: &str,
    request: &UpdateIncident,
    now_ms: i64,
) -> Result<StatusIncident> {
    let body = check_body(request.body.as_deref())?;
    if request.status.is_none()
        && request.impact.is_none()
        && request.components.is_empty()
        && body.is_none()
    {
        return Err(StatusError::Invalid(
            "nothing to update: give a status, a body, an impact or component states".into(),
        ));
    }
    store.status_write(|tx| {
        let mut incident = load(tx, id)?;
        let current: IncidentStatus = incident.status.parse().map_err(StatusError::Invalid)?;
        let status = request.status.unwrap_or(current);
        check_transition(id, current, status, request)?;

        let mut changes = request.components.clone();
        if status == IncidentStatus::Resolved && current != IncidentStatus::Resolved {
            // Everything the incident touched that is still down comes back, unless
            // the request says otherwise.
            let states = tx.components()?;
            for component_id in &incident.components {
                let down = states.iter().any(|c| {
                    &c.id == component_id
                        && !c.archived
                        && c.status != ComponentStatus::Operational.as_str()
                        && c.status != ComponentStatus::UnderMaintenance.as_str()
                });
                if down {
                    changes
                        .entry(component_id.clone())
                        .or_insert(ComponentStatus::Operational);
                }
            }
        }
        let affected = components::apply(tx, &changes, now_ms, Some(id))?;
        for component_id in changes.keys() {
            if !incident.components.contains(component_id) {
                incident.components.push(component_id.clone());
            }
        }
        incident.status = status.as_str().into();
        if let Some(impact) = request.impact {
            incident.impact = impact.as_str().into();
        }
        incident.updated_ms = now_ms;
        if status == IncidentStatus::Monitoring && incident.monitoring_ms.is_none() {
            incident.monitoring_ms = Some(now_ms);
        }
        if status == IncidentStatus::Resolved {
            incident.resolved_ms = Some(now_ms);
        }
        tx.put_incident(&incident)?;
        let body = body
            .clone()
            .unwrap_or_else(|| template_text(tx, config, &incident, status).unwrap_or_default());
        let update = StatusUpdate {
            id: new_id(),
            incident_id: id.to_owned(),
            status: status.as_str().into(),
            body,
            affected,
            created_ms: now_ms,
            display_ms: now_ms,
        };
        tx.add_update(&update)?;
        let kind = match status {
            IncidentStatus::Resolved if current != IncidentStatus::Resolved => "incident.resolved",
            IncidentStatus::Postmortem => "incident.postmortem",
            _ => "incident.updated",
        };
        record(tx, kind, &incident, &update)?;
        read_back(tx, id)
    })
}

/// Resolves incident `id`: [`update`] with status `resolved`.
///
/// # Errors
/// As [`update`].
pub fn resolve(
    store: &Store,
    config: &StatusConfig,
    id: &str,
    request: &UpdateIncident,
    now_ms: i64,
) -> Result<StatusIncident> {
    if request
        .status
        .is_some_and(|s| s != IncidentStatus::Resolved)
    {
        return Err(StatusError::Invalid(
            "status: resolving sets the status to resolved; leave it out or post an update instead"
                .into(),
        ));
    }
    let request = UpdateIncident {
        status: Some(IncidentStatus::Resolved),
        ..request.clone()
    };
    update(store, config, id, &request, now_ms)
}

fn check_transition(
    id: &str,
    current: IncidentStatus,
    next: IncidentStatus,
    request: &UpdateIncident,
) -> Result<()> {
    match (current, next) {
        (IncidentStatus::Postmortem, _) => Err(StatusError::Conflict(format!(
            "incident {id} is closed with its postmortem; open a new incident if the problem is back"
        ))),
        (IncidentStatus::Resolved, IncidentStatus::Resolved) => Err(StatusError::Conflict(
            format!("incident {id} is already resolved; it takes a postmortem update now"),
        )),
        (IncidentStatus::Resolved, IncidentStatus::Postmortem)
            if !request.components.is_empty() =>
        {
            Err(StatusError::Conflict(format!(
                "incident {id} is resolved: a postmortem does not change components; \
                 set them with `warden status component set`, or open a new incident"
            )))
        }
        (IncidentStatus::Resolved, IncidentStatus::Postmortem) => Ok(()),
        (IncidentStatus::Resolved, _) => Err(StatusError::Conflict(format!(
            "incident {id} is resolved; open a new incident if the problem is back"
        ))),
        (_, IncidentStatus::Postmortem) => Err(StatusError::Conflict(format!(
            "incident {id} is {current}: resolve it before posting its postmortem"
        ))),
        _ => Ok(()),
    }
}

fn load(tx: &StatusTx<'_>, id: &str) -> Result<StatusIncident> {
    match tx.incident(id)? {
        Some(incident) if incident.kind == KIND_INCIDENT => Ok(incident),
        Some(_) => Err(StatusError::NotFound(format!(
            "{id} is a scheduled maintenance, not an incident: update it under /api/admin/maintenances/{id}"
        ))),
        None => Err(StatusError::NotFound(format!(
            "no incident {id:?}: `warden incident list` shows the open ones"
        ))),
    }
}

fn read_back(tx: &StatusTx<'_>, id: &str) -> Result<StatusIncident> {
    tx.incident(id)?
        .ok_or_else(|| StatusError::NotFound(format!("incident {id} vanished while writing")))
}

fn template_text(
    tx: &StatusTx<'_>,
    config: &StatusConfig,
    incident: &StatusIncident,
    status: IncidentStatus,
) -> Result<String> {
    let all = tx.components()?;
    Ok(fill(
        config.templates.for_incident(status),
        &TemplateValues {
            name: incident.name.clone(),
            components: components::names(&all, &incident.components),
            ..TemplateValues::default()
        },
    ))
}

/// Appends the incident event: what a postmortem timeline and notifiers read, with
/// the snapshot its subscriber deliveries show ([`crate::deliver::as_of`]).
pub(crate) fn record(
    tx: &StatusTx<'_>,
    kind: &str,
    incident: &StatusIncident,
    update: &StatusUpdate,
) -> Result<()> {
    let as_of = crate::deliver::as_of(tx, incident, update.created_ms)?;
    tx.append_event_at(
        update.created_ms,
        &NewEvent {
            kind: kind.into(),
            release: None,
            payload: serde_json::json!({
                "incident_id": incident.id,
                "update_id": update.id,
                "name": incident.name,
                "status": update.status,
                "impact": incident.impact,
                "body": update.body,
                "components": incident.components,
                "affected_components": update.affected,
                "as_of": as_of,
            }),
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use warden_store::EventFilter;

    fn setup() -> (Store, StatusConfig) {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        crate::components::sync(&store, &config, 1_000).unwrap();
        (store, config)
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

    fn kinds(store: &Store) -> Vec<String> {
        store
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn the_reference_incident_runs_from_investigating_to_postmortem() {
        let (store, config) = setup();
        let opened = open(
            &store,
            &config,
            &OpenIncident {
                name: "Errors on sign-in and data retrieval".into(),
                components: BTreeMap::from([
                    ("authentication".into(), ComponentStatus::MajorOutage),
                    ("data-retrieval".into(), ComponentStatus::PartialOutage),
                ]),
                ..OpenIncident::default()
            },
            10_000,
        )
        .unwrap();
        assert_eq!(opened.status, "investigating");
        assert_eq!(opened.impact, "critical", "implied by the major outage");
        assert_eq!(opened.updates.len(), 1);
        let first = &opened.updates[0];
        assert!(
            first.body.contains("Authentication and Data retrieval"),
            "the template names the components: {}",
            first.body
        );
        assert_eq!(first.affected.len(), 2);
        assert_eq!(first.affected[0].old_status, "operational");
        assert_eq!(status_of(&store, "authentication"), "major_outage");

        let identified = update(
            &store,
            &config,
            &opened.id,
            &UpdateIncident {
                status: Some(IncidentStatus::Identified),
                body: Some("A JSON library update leaks memory; rolling back.".into()),
                ..UpdateIncident::default()
            },
            20_000,
        )
        .unwrap();
        assert_eq!(
            identified.updates[1].body,
            "A JSON library update leaks memory; rolling back."
        );
        let monitoring = update(
            &store,
            &config,
            &opened.id,
            &UpdateIncident {
                status: Some(IncidentStatus::Monitoring),
                components: BTreeMap::from([(
                    "authentication".into(),
                    ComponentStatus::DegradedPerformance,
                )]),
                ..UpdateIncident::default()
            },
            30_000,
        )
        .unwrap();
        assert_eq!(monitoring.monitoring_ms, Some(30_000));

        let resolved = resolve(
            &store,
            &config,
            &opened.id,
            &UpdateIncident::default(),
            40_000,
        )
        .unwrap();
        assert_eq!(resolved.status, "resolved");
        assert_eq!(resolved.resolved_ms, Some(40_000));
        // Both components the incident touched are back.
        assert_eq!(status_of(&store, "authentication"), "operational");
        assert_eq!(status_of(&store, "data-retrieval"), "operational");
        let last = resolved.updates.last().unwrap();
        assert_eq!(last.affected.len(), 2);
        assert!(last.body.contains("resolved"), "{}", last.body);

        let postmortem = update(
            &store,
            &config,
            &opened.id,
            &UpdateIncident {
                status: Some(IncidentStatus::Postmortem),
                body: Some("What happened: ...".into()),
                ..UpdateIncident::default()
            },
            50_000,
        )
        .unwrap();
        assert_eq!(postmortem.status, "postmortem");
        assert_eq!(postmortem.updates.len(), 5);
        assert_eq!(
            kinds(&store),
            [
                "component.status",
                "component.status",
                "incident.opened",
                "incident.updated",
                "component.status",
                "incident.updated",
                "component.status",
                "component.status",
                "incident.resolved",
                "incident.postmortem",
            ]
        );
    }

    #[test]
    fn closed_incidents_refuse_further_changes() {
        let (store, config) = setup();
        let opened = open(
            &store,
            &config,
            &OpenIncident {
                name: "Slow".into(),
                ..OpenIncident::default()
            },
            10_000,
        )
        .unwrap();
        assert_eq!(opened.impact, "minor");
        let early = update(
            &store,
            &config,
            &opened.id,
            &UpdateIncident {
                status: Some(IncidentStatus::Postmortem),
                body: Some("x".into()),
                ..UpdateIncident::default()
            },
            11_000,
        );
        assert!(matches!(early, Err(StatusError::Conflict(_))), "{early:?}");
        resolve(
            &store,
            &config,
            &opened.id,
            &UpdateIncident::default(),
            12_000,
        )
        .unwrap();
        let again = resolve(
            &store,
            &config,
            &opened.id,
            &UpdateIncident::default(),
            13_000,
        );
        assert!(matches!(again, Err(StatusError::Conflict(_))), "{again:?}");
        let reopen = update(
            &store,
            &config,
            &opened.id,
            &UpdateIncident {
                status: Some(IncidentStatus::Investigating),
                ..UpdateIncident::default()
            },
            14_000,
        );
        let message = reopen.unwrap_err().to_string();
        assert!(message.contains("open a new incident"), "{message}");
    }

    #[test]
    fn bad_requests_change_nothing() {
        let (store, config) = setup();
        let before = store.last_event_id().unwrap();
        let unknown = open(
            &store,
            &config,
            &OpenIncident {
                name: "Down".into(),
                components: BTreeMap::from([
                    ("api".into(), ComponentStatus::MajorOutage),
                    ("nope".into(), ComponentStatus::MajorOutage),
                ]),
                ..OpenIncident::default()
            },
            10_000,
        );
        assert!(
            matches!(unknown, Err(StatusError::NotFound(_))),
            "{unknown:?}"
        );
        assert_eq!(
            status_of(&store, "api"),
            "operational",
            "the valid part is not applied either"
        );
        let resolved = open(
            &store,
            &config,
            &OpenIncident {
                name: "Down".into(),
                status: Some(IncidentStatus::Resolved),
                ..OpenIncident::default()
            },
            10_000,
        );
        assert!(matches!(resolved, Err(StatusError::Invalid(_))));
        let nameless = open(&store, &config, &OpenIncident::default(), 10_000);
        assert!(matches!(nameless, Err(StatusError::Invalid(_))));
        let empty = update(&store, &config, "x", &UpdateIncident::default(), 10_000);
        assert!(matches!(empty, Err(StatusError::Invalid(_))));
        let missing = update(
            &store,
            &config,
            "nope",
            &UpdateIncident {
                body: Some("hello".into()),
                ..UpdateIncident::default()
            },
            10_000,
        );
        assert!(matches!(missing, Err(StatusError::NotFound(_))));
        assert_eq!(store.last_event_id().unwrap(), before);
    }
}
