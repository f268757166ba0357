//! The Statuspage-compatible JSON of `/api/v2/`: the same documents, field names
//! and values as Atlassian Statuspage's public API, so existing clients, widgets
//! and aggregators read Warden's page without changes.
//!
//! | path | document |
//! | --- | --- |
//! | `summary.json` | page, status, components, unresolved incidents, upcoming and active maintenances |
//! | `status.json` | page, status (indicator and description) |
//! | `components.json` | page, components |
//! | `incidents.json` | page, the 50 most recent incidents |
//! | `incidents/unresolved.json` | page, unresolved incidents |
//! | `scheduled-maintenances.json` | page, the 50 most recent maintenances |
//! | `scheduled-maintenances/upcoming.json` | page, maintenances not started |
//! | `scheduled-maintenances/active.json` | page, maintenances in progress or verifying |
//!
//! As on Statuspage, `incident_updates` are newest first, times are RFC 3339 with
//! milliseconds, and scheduled maintenances carry `scheduled_for` and
//! `scheduled_until` (incidents do not). `deliver_notifications` is `true`: every
//! update is sent to the subscribers of its components (see [`crate::deliver`]).
//! An incident whose postmortem is published also carries `postmortem_body`
//! (Markdown) and `postmortem_published_at`, the names Statuspage's manage API gives
//! them; until then they are absent.

use serde::{Deserialize, Serialize};
use warden_store::{
    ComponentChange, IncidentQuery, KIND_INCIDENT, KIND_MAINTENANCE, PublishedPostmortem,
    StatusComponent, StatusIncident, Store,
};

use crate::model::{ComponentStatus, Impact, IncidentStatus, Indicator, MaintenanceStatus};
use crate::uptime::DAYS;
use crate::{StatusConfig, json_time};

/// How many incidents (and maintenances) the lists hold, as on Statuspage.
pub const LIST_LIMIT: u32 = 50;

/// What the page and the JSON are rendered from: one read of the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was read (unix ms).
    pub now_ms: i64,
    /// Shown components and groups, in page order.
    pub components: Vec<StatusComponent>,
    /// State changes of the last [`DAYS`] days, plus each component's state before.
    pub changes: Vec<ComponentChange>,
    /// The most recent incidents plus every unresolved one, newest first.
    pub incidents: Vec<StatusIncident>,
    /// The most recent maintenances plus every unfinished one, newest first.
    pub maintenances: Vec<StatusIncident>,
    /// The published postmortems of those incidents.
    pub postmortems: Vec<PublishedPostmortem>,
}

impl Snapshot {
    /// Reads everything the page shows.
    ///
    /// # Errors
    /// The store failed.
    pub fn read(store: &Store, now_ms: i64) -> warden_store::Result<Self> {
        let window = now_ms - (DAYS as i64) * 86_400_000;
        let components = store
            .status_components()?
            .into_iter()
            .filter(|c| !c.archived)
            .collect();
        let list = |kind: &str, closed: &[&str]| -> warden_store::Result<Vec<StatusIncident>> {
            let mut recent = store.status_incidents(&IncidentQuery {
                kind: Some(kind.into()),
                limit: Some(LIST_LIMIT),
                ..IncidentQuery::default()
            })?;
            for open in store.status_incidents(&IncidentQuery {
                kind: Some(kind.into()),
                exclude_statuses: closed.iter().map(|s| (*s).to_owned()).collect(),
                ..IncidentQuery::default()
            })? {
                if !recent.iter().any(|i| i.id == open.id) {
                    recent.push(open);
                }
            }
            recent.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
            Ok(recent)
        };
        let incidents = list(KIND_INCIDENT, &["resolved", "postmortem"])?;
        let postmortems = match incidents.iter().map(|i| i.created_ms).min() {
            Some(oldest) => store
                .status_postmortems(oldest)?
                .into_iter()
                .filter(|p| incidents.iter().any(|i| i.id == p.incident_id))
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            now_ms,
            components,
            changes: store.status_component_changes(window)?,
            incidents,
            maintenances: list(KIND_MAINTENANCE, &["completed"])?,
            postmortems,
        })
    }

    /// The published postmortem of incident `id`, if it is in the snapshot.
    #[must_use]
    pub fn postmortem(&self, id: &str) -> Option<&PublishedPostmortem> {
        self.postmortems.iter().find(|p| p.incident_id == id)
    }

    /// The page's overall state: the worst of the component states, the impact of
    /// the unresolved incidents, and `maintenance` while a window is open.
    #[must_use]
    pub fn indicator(&self) -> Indicator {
        let components = self
            .components
            .iter()
            .filter(|c| !c.is_group)
            .filter_map(|c| c.status.parse::<ComponentStatus>().ok())
            .map(ComponentStatus::indicator);
        let incidents = self
            .unresolved_incidents()
            .filter_map(|i| i.impact.parse::<Impact>().ok())
            .map(Impact::indicator);
        let maintenance = self
            .active_maintenances()
            .next()
            .map(|_| Indicator::Maintenance);
        components
            .chain(incidents)
            .chain(maintenance)
            .max()
            .unwrap_or(Indicator::None)
    }

    /// Incidents not resolved yet, newest first.
    pub fn unresolved_incidents(&self) -> impl Iterator<Item = &StatusIncident> {
        self.incidents.iter().filter(|i| {
            !i.status
                .parse::<IncidentStatus>()
                .is_ok_and(IncidentStatus::is_closed)
        })
    }

    /// Maintenances whose window is open, newest first.
    pub fn active_maintenances(&self) -> impl Iterator<Item = &StatusIncident> {
        self.maintenances.iter().filter(|m| {
            m.status
                .parse::<MaintenanceStatus>()
                .is_ok_and(MaintenanceStatus::is_active)
        })
    }

    /// Maintenances announced and not started, soonest first.
    pub fn upcoming_maintenances(&self) -> Vec<&StatusIncident> {
        let mut upcoming: Vec<&StatusIncident> = self
            .maintenances
            .iter()
            .filter(|m| m.status == MaintenanceStatus::Scheduled.as_str())
            .collect();
        upcoming.sort_by_key(|m| m.scheduled_for_ms);
        upcoming
    }

    /// When anything on the page last changed (unix ms).
    #[must_use]
    pub fn updated_ms(&self) -> i64 {
        self.components
            .iter()
            .map(|c| c.updated_ms)
            .chain(self.incidents.iter().map(|i| i.updated_ms))
            .chain(self.maintenances.iter().map(|m| m.updated_ms))
            .max()
            .unwrap_or(0)
    }

    /// The state of component `id`; a group's is its worst component's.
    #[must_use]
    pub fn component_status(&self, component: &StatusComponent) -> ComponentStatus {
        if component.is_group {
            return self
                .components
                .iter()
                .filter(|c| c.group_id.as_deref() == Some(component.id.as_str()))
                .filter_map(|c| c.status.parse::<ComponentStatus>().ok())
                .max_by_key(|s| s.severity())
                .unwrap_or(ComponentStatus::Operational);
        }
        component
            .status
            .parse()
            .unwrap_or(ComponentStatus::Operational)
    }
}

/// Where links point: the page's public URL, or the console's address.
#[derive(Debug, Clone)]
pub struct Links {
    /// `https://status.example.com`, no trailing `/`; empty for relative links.
    pub base: String,
    /// Whether pages are static files (`incidents/ID.html`) rather than routes.
    pub static_files: bool,
}

impl Links {
    /// The page of incident `id`.
    #[must_use]
    pub fn incident(&self, id: &str) -> String {
        if self.static_files {
            format!("{}incidents/{id}.html", self.prefix())
        } else {
            format!("{}/status/incidents/{id}", self.base)
        }
    }

    /// The page of incident `id`'s published postmortem.
    #[must_use]
    pub fn postmortem(&self, id: &str) -> String {
        if self.static_files {
            format!("{}postmortems/{id}.html", self.prefix())
        } else {
            format!("{}/status/incidents/{id}/postmortem", self.base)
        }
    }

    /// The status page.
    #[must_use]
    pub fn home(&self) -> String {
        if self.static_files {
            format!("{}index.html", self.prefix())
        } else {
            format!("{}/status", self.base)
        }
    }

    /// A file at the root: `history.atom`, `api/v2/summary.json`, ...
    #[must_use]
    pub fn root(&self, path: &str) -> String {
        if self.static_files {
            format!("{}{path}", self.prefix())
        } else {
            format!("{}/{path}", self.base)
        }
    }

    fn prefix(&self) -> String {
        if self.base.is_empty() {
            String::new()
        } else {
            format!("{}/", self.base)
        }
    }
}

/// `page`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageJson {
    /// The page's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its time zone (IANA name).
    pub time_zone: String,
    /// When anything on it last changed.
    pub updated_at: String,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusJson {
    /// `none`, `minor`, `major`, `critical` or `maintenance`.
    pub indicator: Indicator,
    /// "All Systems Operational", ...
    pub description: String,
}

/// A component or group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentJson {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state; a group's is its worst component's.
    pub status: ComponentStatus,
    /// When it was first recorded.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Order on the page.
    pub position: i64,
    /// Its description.
    pub description: Option<String>,
    /// Whether its uptime is shown.
    pub showcase: bool,
    /// The day it started being tracked (`YYYY-MM-DD`).
    pub start_date: Option<String>,
    /// The group it belongs to.
    pub group_id: Option<String>,
    /// The page's id.
    pub page_id: String,
    /// Whether it is a group.
    pub group: bool,
    /// Shown only while not operational.
    pub only_show_if_degraded: bool,
    /// A group's component ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

/// One entry of `affected_components`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedJson {
    /// The component's id.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Its state before.
    pub old_status: ComponentStatus,
    /// Its state after.
    pub new_status: ComponentStatus,
}

/// One entry of `incident_updates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentUpdateJson {
    /// Its id.
    pub id: String,
    /// The incident's status as of this update.
    pub status: String,
    /// The text (plain; escape it when showing it as HTML).
    pub body: String,
    /// The incident's id.
    pub incident_id: String,
    /// When it was written.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it is shown as having happened.
    pub display_at: String,
    /// Components it changed; `null` when none.
    pub affected_components: Option<Vec<AffectedJson>>,
    /// Whether subscribers were notified.
    pub deliver_notifications: bool,
    /// Always `null`.
    pub custom_tweet: Option<String>,
    /// Always `null`.
    pub tweet_id: Option<String>,
}

/// An incident or a scheduled maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentJson {
    /// Its id.
    pub id: String,
    /// Its title.
    pub name: String,
    /// Where it stands.
    pub status: String,
    /// When it was recorded.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it entered `monitoring`.
    pub monitoring_at: Option<String>,
    /// When it was resolved (or completed).
    pub resolved_at: Option<String>,
    /// `none`, `minor`, `major`, `critical`; `maintenance` for maintenances.
    pub impact: String,
    /// A link to its page.
    pub shortlink: String,
    /// When it started.
    pub started_at: String,
    /// The page's id.
    pub page_id: String,
    /// Its updates, newest first.
    pub incident_updates: Vec<IncidentUpdateJson>,
    /// The components it concerns.
    pub components: Vec<ComponentJson>,
    /// Maintenances: when the window opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// Maintenances: when the window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<String>,
    /// Incidents: the published postmortem (Markdown), as Statuspage's manage API
    /// names it; absent until published, so the public documents keep the public
    /// API's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem_body: Option<String>,
    /// Incidents: when the postmortem was published; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem_published_at: Option<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryJson {
    /// The page.
    pub page: PageJson,
    /// Every shown component and group.
    pub components: Vec<ComponentJson>,
    /// Unresolved incidents.
    pub incidents: Vec<IncidentJson>,
    /// Upcoming and active maintenances.
    pub scheduled_maintenances: Vec<IncidentJson>,
    /// The overall state.
    pub status: StatusJson,
}

/// `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDocument {
    /// The page.
    pub page: PageJson,
    /// The overall state.
    pub status: StatusJson,
}

/// `components.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentsDocument {
    /// The page.
    pub page: PageJson,
    /// Every shown component and group.
    pub components: Vec<ComponentJson>,
}

/// `incidents.json` and `incidents/unresolved.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentsDocument {
    /// The page.
    pub page: PageJson,
    /// The incidents, newest first.
    pub incidents: Vec<IncidentJson>,
}

/// `scheduled-maintenances.json`, `.../upcoming.json` and `.../active.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenancesDocument {
    /// The page.
    pub page: PageJson,
    /// The maintenances.
    pub scheduled_maintenances: Vec<IncidentJson>,
}

/// Builds the JSON documents from a snapshot.
#[derive(Debug)]
pub struct Documents<'a> {
    snapshot: &'a Snapshot,
    config: &'a StatusConfig,
    links: &'a Links,
}

impl<'a> Documents<'a> {
    /// Documents of `snapshot`, with links built from `links`.
    #[must_use]
    pub fn new(snapshot: &'a Snapshot, config: &'a StatusConfig, links: &'a Links) -> Self {
        Self {
            snapshot,
            config,
            links,
        }
    }

    /// `page`.
    #[must_use]
    pub fn page(&self) -> PageJson {
        PageJson {
            id: self.config.page.id.clone(),
            name: self.config.page.name.clone(),
            url: self.links.home(),
            time_zone: self.config.page.time_zone.clone(),
            updated_at: json_time(self.snapshot.updated_ms()),
        }
    }

    /// `status`.
    #[must_use]
    pub fn status(&self) -> StatusJson {
        let indicator = self.snapshot.indicator();
        StatusJson {
            indicator,
            description: indicator.description().to_owned(),
        }
    }

    /// Every shown component and group.
    #[must_use]
    pub fn components(&self) -> Vec<ComponentJson> {
        self.snapshot
            .components
            .iter()
            .map(|c| self.component(c))
            .collect()
    }

    fn component(&self, c: &StatusComponent) -> ComponentJson {
        ComponentJson {
            id: c.id.clone(),
            name: c.name.clone(),
            status: self.snapshot.component_status(c),
            created_at: json_time(c.created_ms),
            updated_at: json_time(c.updated_ms),
            position: c.position,
            description: c.description.clone(),
            showcase: c.showcase,
            start_date: crate::datetime(c.created_ms).map(|t| t.date().to_string()),
            group_id: c.group_id.clone(),
            page_id: self.config.page.id.clone(),
            group: c.is_group,
            only_show_if_degraded: c.only_show_if_degraded,
            components: c.is_group.then(|| {
                self.snapshot
                    .components
                    .iter()
                    .filter(|child| child.group_id.as_deref() == Some(c.id.as_str()))
                    .map(|child| child.id.clone())
                    .collect()
            }),
        }
    }

    /// One incident or maintenance.
    #[must_use]
    pub fn incident(&self, incident: &StatusIncident) -> IncidentJson {
        let maintenance = incident.kind == KIND_MAINTENANCE;
        IncidentJson {
            id: incident.id.clone(),
            name: incident.name.clone(),
            status: incident.status.clone(),
            created_at: json_time(incident.created_ms),
            updated_at: json_time(incident.updated_ms),
            monitoring_at: incident.monitoring_ms.map(json_time),
            resolved_at: incident.resolved_ms.map(json_time),
            impact: incident.impact.clone(),
            shortlink: self.links.incident(&incident.id),
            started_at: json_time(incident.started_ms),
            page_id: self.config.page.id.clone(),
            incident_updates: incident
                .updates
                .iter()
                .rev()
                .map(|u| IncidentUpdateJson {
                    id: u.id.clone(),
                    status: u.status.clone(),
                    body: u.body.clone(),
                    incident_id: u.incident_id.clone(),
                    created_at: json_time(u.created_ms),
                    updated_at: json_time(u.created_ms),
                    display_at: json_time(u.display_ms),
                    affected_components: (!u.affected.is_empty()).then(|| {
                        u.affected
                            .iter()
                            .map(|a| AffectedJson {
                                code: a.code.clone(),
                                name: a.name.clone(),
                                old_status: a
                                    .old_status
                                    .parse()
                                    .unwrap_or(ComponentStatus::Operational),
                                new_status: a
                                    .new_status
                                    .parse()
                                    .unwrap_or(ComponentStatus::Operational),
                            })
                            .collect()
                    }),
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                })
                .collect(),
            components: incident
                .components
                .iter()
                .filter_map(|id| self.snapshot.components.iter().find(|c| &c.id == id))
                .map(|c| self.component(c))
                .collect(),
            scheduled_for: maintenance
                .then_some(incident.scheduled_for_ms)
                .flatten()
                .map(json_time),
            scheduled_until: maintenance
                .then_some(incident.scheduled_until_ms)
                .flatten()
                .map(json_time),
            postmortem_body: self
                .snapshot
                .postmortem(&incident.id)
                .map(|p| p.body.clone()),
            postmortem_published_at: self
                .snapshot
                .postmortem(&incident.id)
                .map(|p| json_time(p.published_ms)),
        }
    }

    /// `summary.json`.
    #[must_use]
    pub fn summary(&self) -> SummaryJson {
        let mut maintenances: Vec<&StatusIncident> = self.snapshot.active_maintenances().collect();
        maintenances.extend(self.snapshot.upcoming_maintenances());
        SummaryJson {
            page: self.page(),
            components: self.components(),
            incidents: self
                .snapshot
                .unresolved_incidents()
                .map(|i| self.incident(i))
                .collect(),
            scheduled_maintenances: maintenances.into_iter().map(|m| self.incident(m)).collect(),
            status: self.status(),
        }
    }

    /// `status.json`.
    #[must_use]
    pub fn status_document(&self) -> StatusDocument {
        StatusDocument {
            page: self.page(),
            status: self.status(),
        }
    }

    /// `components.json`.
    #[must_use]
    pub fn components_document(&self) -> ComponentsDocument {
        ComponentsDocument {
            page: self.page(),
            components: self.components(),
        }
    }

    /// `incidents.json` (`unresolved_only`: `incidents/unresolved.json`).
    #[must_use]
    pub fn incidents_document(&self, unresolved_only: bool) -> IncidentsDocument {
        let incidents: Vec<IncidentJson> = if unresolved_only {
            self.snapshot
                .unresolved_incidents()
                .map(|i| self.incident(i))
                .collect()
        } else {
            self.snapshot
                .incidents
                .iter()
                .map(|i| self.incident(i))
                .collect()
        };
        IncidentsDocument {
            page: self.page(),
            incidents,
        }
    }

    /// `scheduled-maintenances.json` and its `upcoming` and `active` subsets.
    #[must_use]
    pub fn maintenances_document(&self, which: MaintenanceList) -> MaintenancesDocument {
        let list: Vec<&StatusIncident> = match which {
            MaintenanceList::All => self.snapshot.maintenances.iter().collect(),
            MaintenanceList::Upcoming => self.snapshot.upcoming_maintenances(),
            MaintenanceList::Active => self.snapshot.active_maintenances().collect(),
        };
        MaintenancesDocument {
            page: self.page(),
            scheduled_maintenances: list.into_iter().map(|m| self.incident(m)).collect(),
        }
    }
}

/// Which maintenances a document lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceList {
    /// The most recent ones.
    All,
    /// Not started.
    Upcoming,
    /// In progress or verifying.
    Active,
}
