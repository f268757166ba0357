//! The status page's records: components and their state changes, incidents and
//! scheduled maintenances with their timelines of updates.
//!
//! This module only stores; what a valid status is, which transitions are allowed
//! and how the page shows them is the `warden-status` crate's job. The status values
//! are kept as the strings of Statuspage's vocabulary (`major_outage`, `identified`,
//! ...), so the rows read the same as the public JSON.
//!
//! Every change goes through [`Store::status_write`]: one transaction in which the
//! caller reads, checks, writes rows *and* appends the matching events to the event
//! log, so the log and the tables can never disagree, and two writers cannot both
//! pass a check that only one of them should.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Event, NewEvent, Result, Store};

/// A component of the status page (`API`, `Authentication`, ...) or a group of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusComponent {
    /// Stable identifier, e.g. `api`; what commands and the JSON name it by.
    pub id: String,
    /// Name shown to users.
    pub name: String,
    /// One sentence shown under the name, if any.
    pub description: Option<String>,
    /// The group it belongs to (a component whose `is_group` is set), if any.
    pub group_id: Option<String>,
    /// Whether this is a group of components rather than a component.
    pub is_group: bool,
    /// Order on the page, smallest first.
    pub position: i64,
    /// `operational`, `degraded_performance`, `partial_outage`, `major_outage` or
    /// `under_maintenance`.
    pub status: String,
    /// Whether its uptime is shown.
    pub showcase: bool,
    /// Shown only while not operational.
    pub only_show_if_degraded: bool,
    /// No longer configured: kept for its history, not shown.
    pub archived: bool,
    /// When it was first recorded (unix ms).
    pub created_ms: i64,
    /// When its row last changed (unix ms).
    pub updated_ms: i64,
}

/// One change of a component's status: the raw material of uptime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentChange {
    /// The component.
    pub component_id: String,
    /// When (unix ms).
    pub at_ms: i64,
    /// Status before; equal to `new_status` for the first record of a component.
    pub old_status: String,
    /// Status after.
    pub new_status: String,
    /// The incident or maintenance that changed it, if any.
    pub incident_id: Option<String>,
}

/// A component an update changed, as Statuspage's `affected_components` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedComponent {
    /// The component's id.
    pub code: String,
    /// Its name at the time.
    pub name: String,
    /// Status before the update.
    pub old_status: String,
    /// Status after the update.
    pub new_status: String,
}

/// One entry of an incident's or maintenance's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// Identifier.
    pub id: String,
    /// The incident it belongs to.
    pub incident_id: String,
    /// The incident's status as of this update.
    pub status: String,
    /// What users are told (plain text).
    pub body: String,
    /// Components this update changed.
    pub affected: Vec<AffectedComponent>,
    /// When it was written (unix ms).
    pub created_ms: i64,
    /// When it is shown as having happened (unix ms).
    pub display_ms: i64,
}

/// Whether a record is an incident or a scheduled maintenance.
pub const KIND_INCIDENT: &str = "incident";
/// See [`KIND_INCIDENT`].
pub const KIND_MAINTENANCE: &str = "maintenance";

/// An incident or a scheduled maintenance, with its updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusIncident {
    /// Identifier.
    pub id: String,
    /// [`KIND_INCIDENT`] or [`KIND_MAINTENANCE`].
    pub kind: String,
    /// Title shown to users.
    pub name: String,
    /// Incidents: `investigating`, `identified`, `monitoring`, `resolved`,
    /// `postmortem`; maintenances: `scheduled`, `in_progress`, `verifying`,
    /// `completed`.
    pub status: String,
    /// `none`, `minor`, `major`, `critical` (or `maintenance`).
    pub impact: String,
    /// The components it concerns.
    pub components: Vec<String>,
    /// When it was recorded (unix ms).
    pub created_ms: i64,
    /// When it last changed (unix ms).
    pub updated_ms: i64,
    /// When it started (unix ms).
    pub started_ms: i64,
    /// When it first entered `monitoring` (unix ms).
    pub monitoring_ms: Option<i64>,
    /// When it was resolved or completed (unix ms).
    pub resolved_ms: Option<i64>,
    /// Maintenances: when the window opens (unix ms).
    pub scheduled_for_ms: Option<i64>,
    /// Maintenances: when the window closes (unix ms).
    pub scheduled_until_ms: Option<i64>,
    /// Its timeline, oldest first.
    pub updates: Vec<StatusUpdate>,
}

/// Which incidents to read.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Only this kind ([`KIND_INCIDENT`] or [`KIND_MAINTENANCE`]); both when unset.
    pub kind: Option<String>,
    /// Only those whose status is not one of these.
    pub exclude_statuses: Vec<String>,
    /// Only those created at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

impl Store {
    /// Runs `work` in one transaction over the status tables and the event log;
    /// everything it wrote is committed when it returns `Ok`, nothing when it
    /// returns `Err`.
    pub fn status_write<T, E, F>(&self, work: F) -> std::result::Result<T, E>
    where
        E: From<Error>,
        F: FnOnce(&StatusTx<'_>) -> std::result::Result<T, E>,
    {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(Error::from)?;
        let status_tx = StatusTx { tx };
        let value = work(&status_tx)?;
        status_tx.tx.commit().map_err(Error::from)?;
        Ok(value)
    }

    /// Every component and group, archived ones included, in page order.
    pub fn status_components(&self) -> Result<Vec<StatusComponent>> {
        components(&self.conn())
    }

    /// The component changes at or after `since_ms`, plus each component's last
    /// change before it (its state when the window opens), oldest first.
    pub fn status_component_changes(&self, since_ms: i64) -> Result<Vec<ComponentChange>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT component_id, at_ms, old_status, new_status, incident_id
             FROM status_component_changes
             WHERE at_ms >= ?1 OR id IN (
                SELECT MAX(id) FROM status_component_changes WHERE at_ms < ?1
                GROUP BY component_id)
             ORDER BY at_ms, id",
        )?;
        let rows = stmt
            .query_map(params![since_ms], |row| {
                Ok(ComponentChange {
                    component_id: row.get(0)?,
                    at_ms: row.get(1)?,
                    old_status: row.get(2)?,
                    new_status: row.get(3)?,
                    incident_id: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Incidents and maintenances matching `query`, newest first, with their updates.
    pub fn status_incidents(&self, query: &IncidentQuery) -> Result<Vec<StatusIncident>> {
        incidents(&self.conn(), query)
    }

    /// One incident or maintenance with its updates.
    pub fn status_incident(&self, id: &str) -> Result<Option<StatusIncident>> {
        incident(&self.conn(), id)
    }

    /// The published postmortem of incident `id`, if it has one.
    pub fn status_postmortem(&self, id: &str) -> Result<Option<PublishedPostmortem>> {
        postmortem(&self.conn(), id)
    }

    /// The published postmortems of the incidents created at or after `since_ms`.
    pub fn status_postmortems(&self, since_ms: i64) -> Result<Vec<PublishedPostmortem>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, postmortem_body, postmortem_published_ms FROM status_incidents
             WHERE postmortem_published_ms IS NOT NULL AND postmortem_body IS NOT NULL
               AND created_ms >= ?1
             ORDER BY created_ms DESC, id DESC",
        )?;
        let rows = stmt
            .query_map(params![since_ms], postmortem_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// An incident's published postmortem (Statuspage's `postmortem_body` and
/// `postmortem_published_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPostmortem {
    /// The incident it belongs to.
    pub incident_id: String,
    /// The text (Markdown).
    pub body: String,
    /// When it was (last) published (unix ms).
    pub published_ms: i64,
}

fn postmortem_row(row: &Row<'_>) -> rusqlite::Result<PublishedPostmortem> {
    Ok(PublishedPostmortem {
        incident_id: row.get(0)?,
        body: row.get(1)?,
        published_ms: row.get(2)?,
    })
}

fn postmortem(conn: &Connection, id: &str) -> Result<Option<PublishedPostmortem>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, postmortem_body, postmortem_published_ms FROM status_incidents
             WHERE id = ?1 AND postmortem_published_ms IS NOT NULL
               AND postmortem_body IS NOT NULL",
        )?
        .query_row(params![id], postmortem_row)
        .optional()?)
}

/// The status tables inside one transaction of [`Store::status_write`].
pub struct StatusTx<'a> {
    pub(crate) tx: Transaction<'a>,
}

impl std::fmt::Debug for StatusTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusTx").finish_non_exhaustive()
    }
}

impl StatusTx<'_> {
    /// Every component and group, archived ones included, in page order.
    pub fn components(&self) -> Result<Vec<StatusComponent>> {
        components(&self.tx)
    }

    /// Inserts `component`, or updates everything but its status and creation
    /// time when its id is known. A new component's first status is recorded as
    /// a change, so its uptime counts from then.
    pub fn put_component(&self, component: &StatusComponent) -> Result<()> {
        let known: Option<String> = self
            .tx
            .query_row(
                "SELECT status FROM status_components WHERE id = ?1",
                params![component.id],
                |row| row.get(0),
            )
            .optional()?;
        if known.is_some() {
            self.tx.execute(
                "UPDATE status_components SET name = ?2, description = ?3, group_id = ?4,
                 is_group = ?5, position = ?6, showcase = ?7, only_show_if_degraded = ?8,
                 archived = ?9, updated_ms = ?10 WHERE id = ?1",
                params![
                    component.id,
                    component.name,
                    component.description,
                    component.group_id,
                    component.is_group,
                    component.position,
                    component.showcase,
                    component.only_show_if_degraded,
                    component.archived,
                    component.updated_ms,
                ],
            )?;
            return Ok(());
        }
        self.tx.execute(
            "INSERT INTO status_components (id, name, description, group_id, is_group,
             position, status, showcase, only_show_if_degraded, archived, created_ms,
             updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                component.id,
                component.name,
                component.description,
                component.group_id,
                component.is_group,
                component.position,
                component.status,
                component.showcase,
                component.only_show_if_degraded,
                component.archived,
                component.created_ms,
                component.updated_ms,
            ],
        )?;
        self.record_change(&ComponentChange {
            component_id: component.id.clone(),
            at_ms: component.created_ms,
            old_status: component.status.clone(),
            new_status: component.status.clone(),
            incident_id: None,
        })
    }

    /// Sets a component's status at `at_ms` and records the change; returns the
    /// status it had, or `None` when there is no such component. Setting the
    /// status it already has records nothing.
    pub fn set_component_status(
        &self,
        id: &str,
        status: &str,
        at_ms: i64,
        incident_id: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(old) = self
            .tx
            .query_row(
                "SELECT status FROM status_components WHERE id = ?1",
                params![id],
                |row| row.get::<_, String>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        if old != status {
            self.tx.execute(
                "UPDATE status_components SET status = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, status, at_ms],
            )?;
            self.record_change(&ComponentChange {
                component_id: id.to_owned(),
                at_ms,
                old_status: old.clone(),
                new_status: status.to_owned(),
                incident_id: incident_id.map(str::to_owned),
            })?;
        }
        Ok(Some(old))
    }

    fn record_change(&self, change: &ComponentChange) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO status_component_changes (component_id, at_ms, old_status,
                 new_status, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                change.component_id,
                change.at_ms,
                change.old_status,
                change.new_status,
                change.incident_id,
            ])?;
        Ok(())
    }

    /// One incident or maintenance with its updates.
    pub fn incident(&self, id: &str) -> Result<Option<StatusIncident>> {
        incident(&self.tx, id)
    }

    /// Incidents and maintenances matching `query`, newest first, with updates.
    pub fn incidents(&self, query: &IncidentQuery) -> Result<Vec<StatusIncident>> {
        incidents(&self.tx, query)
    }

    /// Inserts or replaces an incident's row (its `updates` are not written: add
    /// them with [`StatusTx::add_update`]).
    pub fn put_incident(&self, incident: &StatusIncident) -> Result<()> {
        self.tx.execute(
            "INSERT INTO status_incidents (id, kind, name, status, impact, components,
             created_ms, updated_ms, started_ms, monitoring_ms, resolved_ms,
             scheduled_for_ms, scheduled_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,
             status = excluded.status, impact = excluded.impact,
             components = excluded.components, updated_ms = excluded.updated_ms,
             started_ms = excluded.started_ms, monitoring_ms = excluded.monitoring_ms,
             resolved_ms = excluded.resolved_ms,
             scheduled_for_ms = excluded.scheduled_for_ms,
             scheduled_until_ms = excluded.scheduled_until_ms",
            params![
                incident.id,
                incident.kind,
                incident.name,
                incident.status,
                incident.impact,
                serde_json::to_string(&incident.components)?,
                incident.created_ms,
                incident.updated_ms,
                incident.started_ms,
                incident.monitoring_ms,
                incident.resolved_ms,
                incident.scheduled_for_ms,
                incident.scheduled_until_ms,
            ],
        )?;
        Ok(())
    }

    /// Appends an update to an incident's timeline; fails with [`Error::Exists`]
    /// when an update with its id is already recorded.
    pub fn add_update(&self, update: &StatusUpdate) -> Result<()> {
        let inserted = self.tx.execute(
            "INSERT OR IGNORE INTO status_incident_updates (id, incident_id, status, body,
             affected_components, created_ms, display_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                update.id,
                update.incident_id,
                update.status,
                update.body,
                serde_json::to_string(&update.affected)?,
                update.created_ms,
                update.display_ms,
            ],
        )?;
        if inserted == 0 {
            return Err(Error::Exists(format!("incident update {:?}", update.id)));
        }
        Ok(())
    }

    /// The published postmortem of incident `id`, if it has one.
    pub fn postmortem(&self, id: &str) -> Result<Option<PublishedPostmortem>> {
        postmortem(&self.tx, id)
    }

    /// Stores the postmortem of incident `id` as published at `published_ms`,
    /// replacing an earlier one; returns false when there is no such incident.
    pub fn set_postmortem(&self, id: &str, body: &str, published_ms: i64) -> Result<bool> {
        let changed = self.tx.execute(
            "UPDATE status_incidents SET postmortem_body = ?2, postmortem_published_ms = ?3
             WHERE id = ?1",
            params![id, body, published_ms],
        )?;
        Ok(changed > 0)
    }

    /// Appends an event to the log, in this transaction.
    pub fn append_event_at(&self, at_ms: i64, event: &NewEvent) -> Result<Event> {
        let payload = serde_json::to_string(&event.payload)?;
        self.tx
            .prepare_cached(
                "INSERT INTO events (at_ms, kind, release, payload) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![at_ms, event.kind, event.release, payload])?;
        Ok(Event {
            id: self.tx.last_insert_rowid(),
            at_ms,
            kind: event.kind.clone(),
            release: event.release.clone(),
            payload: event.payload.clone(),
        })
    }
}

fn components(conn: &Connection) -> Result<Vec<StatusComponent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, group_id, is_group, position, status, showcase,
         only_show_if_degraded, archived, created_ms, updated_ms
         FROM status_components ORDER BY position, id",
    )?;
    let rows = stmt
        .query_map([], |row| {
            Ok(StatusComponent {
                id: row.get(0)?,
                name: row.get(1)?,
                description: row.get(2)?,
                group_id: row.get(3)?,
                is_group: row.get(4)?,
                position: row.get(5)?,
                status: row.get(6)?,
                showcase: row.get(7)?,
                only_show_if_degraded: row.get(8)?,
                archived: row.get(9)?,
                created_ms: row.get(10)?,
                updated_ms: row.get(11)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

const INCIDENT_COLUMNS: &str = "id, kind, name, status, impact, components, created_ms,
    updated_ms, started_ms, monitoring_ms, resolved_ms, scheduled_for_ms, scheduled_until_ms";

/// An incident row without its updates, and its components still as JSON.
fn incident_row(row: &Row<'_>) -> rusqlite::Result<(StatusIncident, String)> {
    Ok((
        StatusIncident {
            id: row.get(0)?,
            kind: row.get(1)?,
            name: row.get(2)?,
            status: row.get(3)?,
            impact: row.get(4)?,
            components: Vec::new(),
            created_ms: row.get(6)?,
            updated_ms: row.get(7)?,
            started_ms: row.get(8)?,
            monitoring_ms: row.get(9)?,
            resolved_ms: row.get(10)?,
            scheduled_for_ms: row.get(11)?,
            scheduled_until_ms: row.get(12)?,
            updates: Vec::new(),
        },
        row.get(5)?,
    ))
}

fn incident(conn: &Connection, id: &str) -> Result<Option<StatusIncident>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM status_incidents WHERE id = ?1"
        ))?
        .query_row(params![id], incident_row)
        .optional()?;
    row.map(|row| complete(conn, row)).transpose()
}

fn incidents(conn: &Connection, query: &IncidentQuery) -> Result<Vec<StatusIncident>> {
    // `,resolved,postmortem,`: a status is excluded when `,status,` is in it.
    let excluded = format!(",{},", query.exclude_statuses.join(","));
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM status_incidents
             WHERE (?1 IS NULL OR kind = ?1)
               AND instr(?2, ',' || status || ',') = 0
               AND created_ms >= ?3
             ORDER BY created_ms DESC, id DESC LIMIT ?4"
        ))?
        .query_map(
            params![
                query.kind,
                excluded,
                query.since_ms.unwrap_or(i64::MIN),
                query.limit.map_or(-1, i64::from),
            ],
            incident_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|row| complete(conn, row)).collect()
}

/// Fills in an incident's components and updates.
fn complete(
    conn: &Connection,
    (mut incident, components): (StatusIncident, String),
) -> Result<StatusIncident> {
    incident.components = serde_json::from_str(&components)?;
    let rows = conn
        .prepare_cached(
            "SELECT id, incident_id, status, body, affected_components, created_ms, display_ms
             FROM status_incident_updates WHERE incident_id = ?1
             ORDER BY created_ms, rowid",
        )?
        .query_map(params![incident.id], |row| {
            Ok((
                StatusUpdate {
                    id: row.get(0)?,
                    incident_id: row.get(1)?,
                    status: row.get(2)?,
                    body: row.get(3)?,
                    affected: Vec::new(),
                    created_ms: row.get(5)?,
                    display_ms: row.get(6)?,
                },
                row.get::<_, String>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    incident.updates = rows
        .into_iter()
        .map(|(mut update, affected)| {
            update.affected = serde_json::from_str(&affected)?;
            Ok::<_, Error>(update)
        })
        .collect::<Result<_>>()?;
    Ok(incident)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::EventFilter;

    fn component(id: &str, position: i64) -> StatusComponent {
        StatusComponent {
            id: id.into(),
            name: id.to_uppercase(),
            description: None,
            group_id: None,
            is_group: false,
            position,
            status: "operational".into(),
            showcase: true,
            only_show_if_degraded: false,
            archived: false,
            created_ms: 1_000,
            updated_ms: 1_000,
        }
    }

    fn incident(id: &str, created_ms: i64, status: &str) -> StatusIncident {
        StatusIncident {
            id: id.into(),
            kind: KIND_INCIDENT.into(),
            name: format!("incident {id}"),
            status: status.into(),
            impact: "major".into(),
            components: vec!["api".into()],
            created_ms,
            updated_ms: created_ms,
            started_ms: created_ms,
            monitoring_ms: None,
            resolved_ms: None,
            scheduled_for_ms: None,
            scheduled_until_ms: None,
            updates: Vec::new(),
        }
    }

    #[test]
    fn components_keep_their_status_when_reconfigured_and_record_changes() {
        let store = Store::in_memory().unwrap();
        store
            .status_write(|tx| {
                tx.put_component(&component("auth", 2))?;
                tx.put_component(&component("api", 1))
            })
            .unwrap();
        let old = store
            .status_write(|tx| tx.set_component_status("api", "major_outage", 5_000, Some("i1")))
            .unwrap();
        assert_eq!(old.as_deref(), Some("operational"));
        // Reconfiguring renames it but keeps the status it has.
        store
            .status_write(|tx| {
                tx.put_component(&StatusComponent {
                    name: "Public API".into(),
                    ..component("api", 1)
                })
            })
            .unwrap();
        let all = store.status_components().unwrap();
        assert_eq!(
            all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["api", "auth"]
        );
        assert_eq!(all[0].name, "Public API");
        assert_eq!(all[0].status, "major_outage");
        let unknown = store
            .status_write(|tx| tx.set_component_status("nope", "major_outage", 6_000, None))
            .unwrap();
        assert_eq!(unknown, None);

        let changes = store.status_component_changes(0).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(changes[2].new_status, "major_outage");
        assert_eq!(changes[2].incident_id.as_deref(), Some("i1"));
        // From a later start: each component's state when the window opens.
        let later = store.status_component_changes(10_000).unwrap();
        assert_eq!(later.len(), 2);
        assert!(
            later
                .iter()
                .any(|c| c.component_id == "api" && c.new_status == "major_outage")
        );
    }

    #[test]
    fn incidents_round_trip_with_updates_and_filter() {
        let store = Store::in_memory().unwrap();
        store
            .status_write(|tx| {
                tx.put_component(&component("api", 1))?;
                tx.put_incident(&incident("a", 10, "resolved"))?;
                tx.put_incident(&incident("b", 20, "investigating"))?;
                for (id, at) in [("u2", 30), ("u1", 21)] {
                    tx.add_update(&StatusUpdate {
                        id: id.into(),
                        incident_id: "b".into(),
                        status: "investigating".into(),
                        body: format!("body {id}"),
                        affected: vec![AffectedComponent {
                            code: "api".into(),
                            name: "API".into(),
                            old_status: "operational".into(),
                            new_status: "major_outage".into(),
                        }],
                        created_ms: at,
                        display_ms: at,
                    })?;
                }
                tx.append_event_at(
                    20,
                    &NewEvent {
                        kind: "incident.opened".into(),
                        release: None,
                        payload: serde_json::json!({"id": "b"}),
                    },
                )?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let b = store.status_incident("b").unwrap().unwrap();
        assert_eq!(b.components, ["api"]);
        assert_eq!(
            b.updates.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["u1", "u2"],
            "oldest first"
        );
        assert_eq!(b.updates[0].affected[0].new_status, "major_outage");
        let open = store
            .status_incidents(&IncidentQuery {
                kind: Some(KIND_INCIDENT.into()),
                exclude_statuses: vec!["resolved".into(), "postmortem".into()],
                ..IncidentQuery::default()
            })
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, "b");
        let all = store.status_incidents(&IncidentQuery::default()).unwrap();
        assert_eq!(
            all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let events = store.events(&EventFilter::default()).unwrap();
        assert_eq!(events[0].kind, "incident.opened");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let store = Store::in_memory().unwrap();
        let result: Result<()> = store.status_write(|tx| {
            tx.put_incident(&incident("a", 10, "investigating"))?;
            tx.append_event_at(10, &NewEvent::default())?;
            Err(Error::Exists("stop".into()))
        });
        assert!(result.is_err());
        assert!(store.status_incident("a").unwrap().is_none());
        assert_eq!(store.last_event_id().unwrap(), None);
    }

    #[test]
    fn an_update_id_is_used_once() {
        let store = Store::in_memory().unwrap();
        let update = StatusUpdate {
            id: "u".into(),
            incident_id: "a".into(),
            status: "investigating".into(),
            body: "b".into(),
            affected: Vec::new(),
            created_ms: 1,
            display_ms: 1,
        };
        let result = store.status_write(|tx| {
            tx.put_incident(&incident("a", 1, "investigating"))?;
            tx.add_update(&update)?;
            tx.add_update(&update)
        });
        assert!(matches!(result, Err(Error::Exists(_))));
    }

    #[test]
    fn a_postmortem_is_stored_replaced_and_listed() {
        let store = Store::in_memory().unwrap();
        store
            .status_write(|tx| {
                tx.put_incident(&incident("a", 10, "resolved"))?;
                tx.put_incident(&incident("b", 20, "resolved"))
            })
            .unwrap();
        assert_eq!(store.status_postmortem("a").unwrap(), None);
        let missing = store
            .status_write(|tx| tx.set_postmortem("nope", "# x", 30))
            .unwrap();
        assert!(!missing);
        store
            .status_write(|tx| tx.set_postmortem("a", "# first", 30))
            .unwrap();
        store
            .status_write(|tx| tx.set_postmortem("a", "# second", 40))
            .unwrap();
        let stored = store.status_postmortem("a").unwrap().unwrap();
        assert_eq!(
            (stored.body.as_str(), stored.published_ms),
            ("# second", 40)
        );
        assert_eq!(
            store.status_postmortems(0).unwrap(),
            std::slice::from_ref(&stored)
        );
        assert!(store.status_postmortems(15).unwrap().is_empty());
        // Reading the incident itself is unchanged by it.
        assert_eq!(
            store.status_incident("a").unwrap().unwrap().status,
            "resolved"
        );
        let in_tx = store.status_write(|tx| tx.postmortem("a")).unwrap();
        assert_eq!(in_tx, Some(stored));
    }
}
