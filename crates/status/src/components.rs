//! Components: bringing the store in line with the configuration, and changing a
//! component's state (by hand, or as part of an incident or maintenance).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_store::{AffectedComponent, NewEvent, StatusComponent, StatusTx, Store};

use crate::model::{ComponentStatus, slug};
use crate::{Result, StatusConfig, StatusError};

/// Makes the store's components match `config`: new ones start operational, known
/// ones keep their state and history, ones no longer configured are archived
/// (hidden, history kept). Groups are components with `is_group` set.
///
/// # Errors
/// The store failed.
pub fn sync(store: &Store, config: &StatusConfig, now_ms: i64) -> Result<()> {
    store.status_write(|tx| {
        let existing = tx.components()?;
        let mut wanted: Vec<StatusComponent> = Vec::new();
        let mut position = 0;
        for component in &config.components {
            let group_id = component.group.as_deref().map(slug);
            if let (Some(group), Some(group_id)) = (&component.group, &group_id)
                && !wanted.iter().any(|c| &c.id == group_id)
            {
                position += 1;
                wanted.push(row(group_id, group, None, None, true, position, now_ms));
            }
            position += 1;
            let mut child = row(
                &component.id(),
                &component.name,
                component.description.clone(),
                group_id,
                false,
                position,
                now_ms,
            );
            child.showcase = component.showcase;
            child.only_show_if_degraded = component.only_show_if_degraded;
            wanted.push(child);
        }
        for mut component in wanted.iter().cloned() {
            if let Some(old) = existing.iter().find(|c| c.id == component.id) {
                if same_configuration(old, &component) {
                    continue;
                }
                component.created_ms = old.created_ms;
            }
            tx.put_component(&component)?;
        }
        for old in existing {
            if !old.archived && !wanted.iter().any(|c| c.id == old.id) {
                tx.put_component(&StatusComponent {
                    archived: true,
                    updated_ms: now_ms,
                    ..old
                })?;
            }
        }
        Ok(())
    })
}

fn row(
    id: &str,
    name: &str,
    description: Option<String>,
    group_id: Option<String>,
    is_group: bool,
    position: i64,
    now_ms: i64,
) -> StatusComponent {
    StatusComponent {
        id: id.to_owned(),
        name: name.to_owned(),
        description,
        group_id,
        is_group,
        position,
        status: ComponentStatus::Operational.as_str().to_owned(),
        showcase: true,
        only_show_if_degraded: false,
        archived: false,
        created_ms: now_ms,
        updated_ms: now_ms,
    }
}

fn same_configuration(old: &StatusComponent, new: &StatusComponent) -> bool {
    old.name == new.name
        && old.description == new.description
        && old.group_id == new.group_id
        && old.is_group == new.is_group
        && old.position == new.position
        && old.showcase == new.showcase
        && old.only_show_if_degraded == new.only_show_if_degraded
        && !old.archived
}

/// The body of `PATCH /api/admin/components/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetComponent {
    /// The new state.
    pub status: ComponentStatus,
}

/// Sets one component's state by hand, outside any incident; records a
/// `component.status` event when it changed. Returns the component as stored.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown component (the message lists the known
/// ones), [`StatusError::Invalid`] for a group (its state follows its components).
pub fn set_status(
    store: &Store,
    id: &str,
    status: ComponentStatus,
    now_ms: i64,
) -> Result<StatusComponent> {
    store.status_write(|tx| {
        let changes = BTreeMap::from([(id.to_owned(), status)]);
        apply(tx, &changes, now_ms, None)?;
        tx.components()?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| StatusError::NotFound(format!("no component {id:?}")))
    })
}

/// Applies `changes` inside `tx`: checks every id first, then sets each state,
/// appending a `component.status` event per actual change. Returns what changed,
/// as an update's `affected_components`.
pub(crate) fn apply(
    tx: &StatusTx<'_>,
    changes: &BTreeMap<String, ComponentStatus>,
    at_ms: i64,
    incident_id: Option<&str>,
) -> Result<Vec<AffectedComponent>> {
    let components = tx.components()?;
    let mut checked = Vec::new();
    for id in changes.keys() {
        checked.push(find(&components, id)?);
    }
    let mut affected = Vec::new();
    for component in checked {
        let Some(new) = changes.get(&component.id) else {
            continue;
        };
        let old = tx
            .set_component_status(&component.id, new.as_str(), at_ms, incident_id)?
            .unwrap_or_default();
        if old == new.as_str() {
            continue;
        }
        tx.append_event_at(
            at_ms,
            &NewEvent {
                kind: "component.status".into(),
                release: None,
                payload: serde_json::json!({
                    "component": component.id,
                    "name": component.name,
                    "old_status": old,
                    "new_status": new.as_str(),
                    "incident_id": incident_id,
                }),
            },
        )?;
        affected.push(AffectedComponent {
            code: component.id.clone(),
            name: component.name.clone(),
            old_status: old,
            new_status: new.as_str().to_owned(),
        });
    }
    Ok(affected)
}

/// The shown, non-group component `id`, or an error that lists the valid ids.
pub(crate) fn find<'a>(components: &'a [StatusComponent], id: &str) -> Result<&'a StatusComponent> {
    let known = || {
        components
            .iter()
            .filter(|c| !c.archived && !c.is_group)
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match components.iter().find(|c| c.id == id && !c.archived) {
        Some(c) if c.is_group => Err(StatusError::Invalid(format!(
            "{id:?} is a group: its state follows its components; set one of them ({})",
            known()
        ))),
        Some(c) => Ok(c),
        None => Err(StatusError::NotFound(format!(
            "no component {id:?}: the components are {}",
            known()
        ))),
    }
}

/// The names of `ids`, for a template's `{components}` and `{are}` (see
/// [`crate::config::fill`]).
pub(crate) fn names(components: &[StatusComponent], ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            components
                .iter()
                .find(|c| &c.id == id)
                .map_or_else(|| id.clone(), |c| c.name.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::ComponentConfig;

    #[test]
    fn sync_adds_groups_keeps_states_and_archives_what_is_gone() {
        let store = Store::in_memory().unwrap();
        let mut config = StatusConfig::default();
        sync(&store, &config, 1_000).unwrap();
        set_status(&store, "api", ComponentStatus::PartialOutage, 2_000).unwrap();

        config.components.truncate(2);
        for c in &mut config.components {
            c.group = Some("Core services".into());
        }
        sync(&store, &config, 3_000).unwrap();
        let all = store.status_components().unwrap();
        let ids: Vec<_> = all.iter().map(|c| (c.id.as_str(), c.archived)).collect();
        assert_eq!(
            ids,
            [
                ("core-services", false),
                ("api", false),
                ("authentication", false),
                ("data-retrieval", true)
            ]
        );
        assert!(all[0].is_group);
        assert_eq!(all[1].group_id.as_deref(), Some("core-services"));
        assert_eq!(all[1].status, "partial_outage", "state survives a resync");
        assert_eq!(all[1].created_ms, 1_000);
    }

    #[test]
    fn setting_a_state_records_an_event_once() {
        let store = Store::in_memory().unwrap();
        sync(&store, &StatusConfig::default(), 1_000).unwrap();
        set_status(
            &store,
            "authentication",
            ComponentStatus::MajorOutage,
            2_000,
        )
        .unwrap();
        set_status(
            &store,
            "authentication",
            ComponentStatus::MajorOutage,
            3_000,
        )
        .unwrap();
        let events = store.events(&warden_store::EventFilter::default()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "component.status");
        assert_eq!(events[0].payload["old_status"], "operational");
        assert_eq!(events[0].payload["new_status"], "major_outage");
    }

    #[test]
    fn unknown_components_and_groups_are_refused_with_the_valid_ids() {
        let store = Store::in_memory().unwrap();
        let mut config = StatusConfig::default();
        config.components.push(ComponentConfig {
            id: Some("db".into()),
            name: "Database".into(),
            description: None,
            group: Some("Backend".into()),
            showcase: true,
            only_show_if_degraded: false,
        });
        sync(&store, &config, 1_000).unwrap();
        let error = set_status(&store, "apy", ComponentStatus::MajorOutage, 2_000).unwrap_err();
        assert!(matches!(error, StatusError::NotFound(_)));
        assert!(
            error
                .to_string()
                .contains("api, authentication, data-retrieval, db"),
            "{error}"
        );
        let error = set_status(&store, "backend", ComponentStatus::MajorOutage, 2_000).unwrap_err();
        assert!(matches!(error, StatusError::Invalid(_)), "{error}");
        assert_eq!(store.last_event_id().unwrap(), None, "nothing changed");
    }

    #[test]
    fn names_read_as_a_sentence() {
        let store = Store::in_memory().unwrap();
        sync(&store, &StatusConfig::default(), 1_000).unwrap();
        let all = store.status_components().unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let read = |v: &[&str]| {
            crate::config::fill(
                "{components} {are} fine",
                &crate::config::TemplateValues {
                    components: names(&all, &ids(v)),
                    ..Default::default()
                },
            )
        };
        assert_eq!(read(&[]), "our services are fine");
        assert_eq!(read(&["api"]), "API is fine");
        assert_eq!(
            read(&["api", "authentication", "data-retrieval"]),
            "API, Authentication and Data retrieval are fine"
        );
    }
}
