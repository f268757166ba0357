//! The postmortem: a draft review of one incident, built from what the control plane
//! recorded and nothing else, in the structure of the review of the outage Warden was
//! built from.
//!
//! [`draft`] reads the incident, the event log, the release registry, the stored
//! memory series and the front proxy's client counts, and gathers:
//!
//! 1. **Issue summary**: start (the first alert or the incident's start, whichever
//!    is earlier), end (resolved), duration; impact: the measured share of users
//!    affected ([`Store::users_between`]) and the components with their worst state.
//! 2. **Root cause candidates**: the bad release (the one rolled back from, or marked
//!    bad, or the one the alerts named), the last good one (rolled back to, or the one
//!    it replaced), the packages whose versions differ between their recorded
//!    Cargo.lock files ([`warden_audit::lockdiff::diff_versions`], as `warden deps
//!    diff` compares them), ranked; and the memory evidence: the leak alert's rate,
//!    forecast and heap-versus-RSS verdicts, and the memory series around the
//!    incident (the chart).
//! 3. **Timeline**: every event from a little before the first alert to the end,
//!    with absolute and relative times.
//! 4. **Resolution**: the rollback (when, automatic or not, how fast), the time to
//!    the first public update, the resolution.
//! 5. **Corrective measures**: a checklist for people to fill, seeded with what the
//!    data suggests.
//!
//! Every figure carries its source ([`Source`]): an event of the log (`#12
//! alert.firing`), the release registry, a stored series or the proxy's client
//! windows, so a reader can check it. [`Postmortem::to_markdown`] writes the draft
//! people edit; [`render_html`] shows a Markdown postmortem (the draft, or the edited
//! and published one) as a page with the memory chart inline; [`publish`] stores a
//! postmortem on its incident and posts the `postmortem` update.
//!
//! # Choosing the culprit
//!
//! Nothing in the records says which package leaks, so the candidates are ranked by
//! what they can tell: packages whose version changed come first, then packages
//! added, then packages removed (code that left cannot leak), then by name. When
//! exactly one package changed it is the culprit; otherwise the first candidate is
//! named and the draft says how many others there are and how to tell them apart
//! (`warden gate` on each update alone). No package is special-cased by name.

use std::collections::BTreeMap;
use std::fmt;

use askama::Template;
use serde::{Deserialize, Serialize};
use warden_audit::lockdiff::{self, Bump, ChangeKind};
use warden_monitor::dashboard::chart::{self, Chart, Framing, Line, Marker, MarkerKind, Unit};
use warden_monitor::scrape::series;
use warden_store::kinds::{
    CANARY, CONTROL_RESTARTED, DEPLOY_STARTED, DEPLOYED, MARKED_BAD, ROLLED_BACK,
};
use warden_store::{Event, EventFilter, KIND_INCIDENT, NewEvent, Release, StatusUpdate, Store};

use crate::config::{TemplateValues, fill};
use crate::model::{ComponentStatus, IncidentStatus};
use crate::statuspage::Links;
use crate::{Result, StatusConfig, StatusError, components, new_id};

/// How long before the first alert the timeline and the chart start.
pub const LEAD_MS: i64 = 10 * MINUTE;
/// An alert that fired up to this long before the incident opened, and was still
/// firing when it did, belongs to it.
pub const ALERT_LOOKBACK_MS: i64 = 60 * MINUTE;
/// At most this many events are listed in the timeline; the rest are counted.
pub const TIMELINE_LIMIT: usize = 2_000;
/// The longest postmortem accepted for publishing, in characters.
pub const MAX_BODY_CHARS: usize = 200_000;

const MINUTE: i64 = 60_000;
const LEAK_ALERT: &str = warden_monitor::rules::MEMORY_LEAK;
/// How the internal draft begins; a text to publish must not hold it.
const DRAFT_MARK: &str = "_Internal draft";

/// Where a figure comes from: an event of the log, or another record of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The event's id in the log, when the figure comes from an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
    /// The event's kind, or the record read (`release registry`, a series, ...).
    pub record: String,
}

impl Source {
    fn event(event: &Event) -> Self {
        Self {
            event_id: Some(event.id),
            record: event.kind.clone(),
        }
    }

    fn record(what: impl Into<String>) -> Self {
        Self {
            event_id: None,
            record: what.into(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_id {
            Some(id) => write!(f, "#{id} {}", self.record),
            None => f.write_str(&self.record),
        }
    }
}

/// A draft postmortem: the facts of one incident, each with its source.
#[derive(Debug, Clone, Serialize)]
pub struct Postmortem {
    /// The incident.
    pub incident: IncidentFacts,
    /// Start, end, duration and impact.
    pub summary: Summary,
    /// The bad release and the last good one.
    pub releases: Releases,
    /// The dependency changes between the last good and the bad release, most
    /// likely culprit first.
    pub candidates: Vec<Candidate>,
    /// The top candidate's package name, if there is one.
    pub culprit: Option<String>,
    /// Why the culprit is named, or why none is (Markdown).
    pub culprit_basis: String,
    /// The memory evidence.
    pub memory: Memory,
    /// Every event of the incident's window, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Events of the window left out of the timeline ([`TIMELINE_LIMIT`]).
    pub timeline_omitted: usize,
    /// How it ended.
    pub resolution: Resolution,
    /// Suggested corrective measures, the checklist's seeds (Markdown).
    pub corrective_measures: Vec<String>,
    /// What the records do not say, so the reader knows what is missing (Markdown).
    pub gaps: Vec<String>,
    /// When the draft was made (unix ms).
    pub drafted_ms: i64,
    #[serde(skip)]
    chart: ChartData,
}

/// The incident as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentFacts {
    /// Its id.
    pub id: String,
    /// Its title.
    pub name: String,
    /// Where it stands.
    pub status: String,
    /// Its impact.
    pub impact: String,
    /// When it was opened (unix ms).
    pub opened_ms: i64,
    /// When it was resolved (unix ms).
    pub resolved_ms: Option<i64>,
    /// The components it concerned.
    pub components: Vec<ComponentImpact>,
    /// Where it was read: its `incident.opened` event.
    pub source: Source,
    /// The last update that set its impact.
    pub impact_source: Source,
}

/// A component the incident concerned and the worst state it put it in.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentImpact {
    /// The component's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The worst state an update of the incident set, `None` if none changed it.
    pub worst_status: Option<String>,
    /// The update's event that set it.
    pub source: Option<Source>,
}

/// Start, end, duration and impact.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// When it started (unix ms): the first alert or the incident's start.
    pub start_ms: i64,
    /// Which of them.
    pub start_source: Source,
    /// When it ended (unix ms), once resolved.
    pub end_ms: Option<i64>,
    /// The `incident.resolved` event.
    pub end_source: Option<Source>,
    /// How long it lasted (ms), once resolved.
    pub duration_ms: Option<i64>,
    /// The users affected.
    pub users: UsersImpact,
}

/// The users affected, as the front proxy counted them.
#[derive(Debug, Clone, Serialize)]
pub struct UsersImpact {
    /// Whether any client window of the period was recorded.
    pub measured: bool,
    /// Distinct clients seen.
    pub clients: u64,
    /// Distinct clients that got a failed or slow response.
    pub affected: u64,
    /// Client windows recorded in the period.
    pub windows: u64,
    /// `affected / clients`, when measured.
    pub share: Option<f64>,
    /// The period counted (unix ms).
    pub from_ms: i64,
    /// Its end (unix ms).
    pub to_ms: i64,
    /// The store's client windows.
    pub source: Source,
}

/// The releases involved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Releases {
    /// The release that went bad.
    pub bad: Option<ReleaseFacts>,
    /// The last good release before it.
    pub good: Option<ReleaseFacts>,
}

/// One release involved.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseFacts {
    /// Its name.
    pub name: String,
    /// The event that says what it was (rolled back from or to, marked bad, ...).
    pub source: Source,
    /// Whether it is in the release registry.
    pub recorded: bool,
    /// How many packages its recorded Cargo.lock lists.
    pub packages: usize,
    /// SHA-256 of its recorded Cargo.lock.
    pub lockfile_sha256: Option<String>,
}

/// A package whose version differs between the last good and the bad release.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// 1 for the most likely.
    pub rank: usize,
    /// The package.
    pub name: String,
    /// Its version in the last good release.
    pub old: Option<String>,
    /// Its version in the bad release.
    pub new: Option<String>,
    /// How it changed.
    pub change: ChangeKind,
    /// Which part of the version changed.
    pub bump: Option<Bump>,
}

impl Candidate {
    fn versions(&self) -> String {
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => format!("{old} → {new}"),
            (None, Some(new)) => format!("{new} (added)"),
            (Some(old), None) => format!("{old} (removed)"),
            (None, None) => String::new(),
        }
    }
}

/// The memory evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// The leak alert that fired, with the detector's evidence.
    pub leak_alert: Option<LeakEvidence>,
    /// The series' range (unix ms).
    pub from_ms: i64,
    /// Its end (unix ms).
    pub to_ms: i64,
    /// RSS and heap series of the releases involved in that range.
    pub series: Vec<SeriesFacts>,
}

/// What the leak detector recorded when its alert fired.
#[derive(Debug, Clone, Serialize)]
pub struct LeakEvidence {
    /// The `alert.firing` event.
    pub source: Source,
    /// When it fired (unix ms).
    pub at_ms: i64,
    /// The release it named.
    pub release: Option<String>,
    /// The instance it named.
    pub instance: Option<String>,
    /// `heap+rss`, `heap` or `rss`: which series leak.
    pub evidence: Option<String>,
    /// Growth rate of the leading series, MB (10^6 bytes) per minute.
    pub rate_mb_per_min: Option<f64>,
    /// Forecast time to the memory limit, seconds.
    pub exhaustion_in_s: Option<u64>,
    /// Forecast time of exhaustion (RFC 3339).
    pub exhausts_at: Option<String>,
    /// The limit forecast against, bytes.
    pub limit_bytes: Option<f64>,
    /// The detector's verdict on heap allocated.
    pub heap: Option<Assessed>,
    /// The detector's verdict on RSS.
    pub rss: Option<Assessed>,
    /// When the verdict came from comparing the release with the one it replaced at
    /// the same age (its rates are then how much faster it grew): that release.
    pub compared_with: Option<String>,
    /// The alert's one-line summary.
    pub summary: String,
    /// The alert's description.
    pub description: Option<String>,
}

/// The detector's verdict on one memory series.
#[derive(Debug, Clone, Serialize)]
pub struct Assessed {
    /// `leak`, `no_significant_growth`, ...
    pub verdict: Option<String>,
    /// Growth of its floor, MB per minute.
    pub rate_mb_per_min: Option<f64>,
    /// Its latest value, bytes.
    pub current_bytes: Option<f64>,
    /// One-sided Mann–Kendall p-value of the growth.
    pub p_value: Option<f64>,
}

/// One stored memory series in the chart's range.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesFacts {
    /// `process_resident_memory_bytes` or `warden_heap_bytes{kind="allocated"}`.
    pub metric: String,
    /// Its `release` label.
    pub release: String,
    /// Its `instance` label.
    pub instance: String,
    /// Points in the range.
    pub samples: usize,
    /// The first point: (unix ms, bytes).
    pub first: (i64, f64),
    /// The highest point.
    pub peak: (i64, f64),
    /// The last point.
    pub last: (i64, f64),
}

/// One event of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Its id in the log.
    pub event_id: i64,
    /// When (unix ms).
    pub at_ms: i64,
    /// Relative to the start (ms; negative before it).
    pub offset_ms: i64,
    /// Its kind.
    pub kind: String,
    /// The release it concerns.
    pub release: Option<String>,
    /// What happened, from its payload.
    pub text: String,
}

/// A moment of the incident.
#[derive(Debug, Clone, Serialize)]
pub struct Moment {
    /// When (unix ms).
    pub at_ms: i64,
    /// Relative to the start (ms).
    pub after_start_ms: i64,
    /// What happened.
    pub what: String,
    /// The event.
    pub source: Source,
}

/// The rollback.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackFacts {
    /// When.
    pub at: Moment,
    /// The release rolled back from.
    pub from: Option<String>,
    /// The release rolled back to.
    pub to: Option<String>,
    /// Whether Warden did it by itself.
    pub automatic: Option<bool>,
    /// Why.
    pub reason: Option<String>,
    /// How long the switch took (ms).
    pub switch_ms: Option<f64>,
}

/// How the incident went and ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resolution {
    /// When the bad release started taking traffic.
    pub bad_deployed: Option<Moment>,
    /// Whether that deploy was forced past refusals, and which.
    pub forced_past: Vec<String>,
    /// The `deploy.started` event that says so.
    pub forced_source: Option<Source>,
    /// The first alert.
    pub first_alert: Option<Moment>,
    /// Its name (`MemoryLeak`, ...).
    pub first_alert_name: Option<String>,
    /// The release it named.
    pub first_alert_release: Option<String>,
    /// The first public update (the incident opening on the status page).
    pub first_public_update: Option<Moment>,
    /// The rollback.
    pub rollback: Option<RollbackFacts>,
    /// The resolution.
    pub resolved: Option<Moment>,
}

#[derive(Debug, Clone, Default)]
struct ChartData {
    from_ms: i64,
    to_ms: i64,
    lines: Vec<ChartLine>,
    /// Described for the team: event ids, kinds, what the payload says.
    markers: Vec<Marker>,
    /// Described for users: what happened, in words.
    public_markers: Vec<Marker>,
}

/// A line of the chart, with its legend for the team (release and instance
/// address) and for users (release, instances numbered).
#[derive(Debug, Clone)]
struct ChartLine {
    line: Line,
    public_label: String,
}

/// The body of `POST /api/admin/incidents/{id}/postmortem`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishPostmortem {
    /// The postmortem, in Markdown (the edited draft) [default: the draft made from
    /// the store when publishing].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Drafts the postmortem of incident `incident_id` from the store, now.
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown incident (or a maintenance);
/// [`StatusError::Store`] when the store fails.
pub fn draft(store: &Store, incident_id: &str) -> Result<Postmortem> {
    draft_at(store, incident_id, warden_store::now_ms())
}

/// [`draft`] as of `now_ms` (an open incident's window runs until then).
///
/// # Errors
/// As [`draft`].
pub fn draft_at(store: &Store, incident_id: &str, now_ms: i64) -> Result<Postmortem> {
    let incident = match store.status_incident(incident_id)? {
        Some(incident) if incident.kind == KIND_INCIDENT => incident,
        Some(_) => {
            return Err(StatusError::NotFound(format!(
                "{incident_id} is a scheduled maintenance, not an incident: only incidents have a postmortem"
            )));
        }
        None => {
            return Err(StatusError::NotFound(format!(
                "no incident {incident_id:?}: `warden incident list` shows the recent ones \
                 (their ids are in the first column)"
            )));
        }
    };
    let mut gaps = Vec::new();
    let own = store
        .events(&EventFilter {
            since_ms: Some(incident.created_ms),
            kind_prefix: Some("incident.".into()),
            ..EventFilter::default()
        })?
        .into_iter()
        .filter(|e| e.payload["incident_id"].as_str() == Some(incident.id.as_str()))
        .collect::<Vec<_>>();
    let opened = own.iter().find(|e| e.kind == "incident.opened");
    let resolved = own.iter().find(|e| e.kind == "incident.resolved");
    let end_ms = incident.resolved_ms;
    let horizon = end_ms.unwrap_or(now_ms).max(incident.started_ms);
    let incident_source = opened.map_or_else(
        || Source::record(format!("incident {}", incident.id)),
        Source::event,
    );

    // The alerts of the incident: firing during it, or still firing when it opened.
    let alert_events = store.events(&EventFilter {
        since_ms: Some(incident.started_ms - ALERT_LOOKBACK_MS),
        until_ms: Some(horizon + 1),
        kind_prefix: Some("alert.".into()),
        ..EventFilter::default()
    })?;
    let firing = alerts_of_incident(&alert_events, incident.started_ms);
    let first_alert = firing.first().copied();
    let (start_ms, start_source) = match first_alert {
        Some(alert) if alert.at_ms <= incident.started_ms => (alert.at_ms, Source::event(alert)),
        _ => (incident.started_ms, incident_source.clone()),
    };
    let window_from = start_ms - LEAD_MS;
    let window = store.events(&EventFilter {
        since_ms: Some(window_from),
        until_ms: Some(horizon + 1),
        ..EventFilter::default()
    })?;

    // The releases: rolled back from and to, else marked bad, else named by alerts.
    // Only a rollback during the incident is its rollback, and only a release that
    // served users during it can have caused it: one rolled back (or replaced)
    // before the start is not blamed, however close.
    let serving = releases_serving(store, start_ms, horizon)?;
    let served = |name: &str| serving.as_ref().is_none_or(|s| s.contains(name));
    let rollback = window
        .iter()
        .find(|e| e.kind == ROLLED_BACK && e.at_ms >= start_ms);
    for early in window
        .iter()
        .filter(|e| e.kind == ROLLED_BACK && e.at_ms < start_ms)
    {
        gaps.push(format!(
            "The rollback from {} at {} [{}] came before the incident began: it is not \
             counted, and a release it took out of service is not blamed.",
            md_text(e_text(early, "from").unwrap_or("?")),
            clock_seconds(early.at_ms),
            Source::event(early)
        ));
    }
    // A crash of the control plane leaves a stretch with no records: say so.
    for restart in window.iter().filter(|e| e.kind == CONTROL_RESTARTED) {
        let from = restart.payload["last_seen_ms"]
            .as_i64()
            .unwrap_or(restart.at_ms);
        gaps.push(format!(
            "The control plane was down from about {} to {} [{}]: it had crashed, so no \
             series, alert or event was recorded in between. The instances it left are in \
             the timeline.",
            clock_seconds(from),
            clock_seconds(restart.at_ms),
            Source::event(restart)
        ));
    }
    let marked_bad = window
        .iter()
        .find(|e| e.kind == MARKED_BAD && e.release.as_deref().is_some_and(&served));
    let bad: Option<(String, Source)> = rollback
        .and_then(|e| Some((e.payload["from"].as_str()?.to_owned(), Source::event(e))))
        .or_else(|| marked_bad.and_then(|e| Some((e.release.clone()?, Source::event(e)))))
        .or_else(|| {
            firing.iter().find_map(|e| {
                alert_release(e)
                    .filter(|r| served(r))
                    .map(|r| (r, Source::event(e)))
            })
        });
    let deploys = match &bad {
        Some((name, _)) => deploys_of(store, name, start_ms, horizon)?,
        None => Deploys::default(),
    };
    let good: Option<(String, Source)> = rollback
        .and_then(|e| Some((e.release.clone()?, Source::event(e))))
        .or_else(|| {
            [deploys.started.as_ref(), deploys.activation.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|e| Some((e.payload["from"].as_str()?.to_owned(), Source::event(e))))
        });
    if bad.is_none() {
        gaps.push(format!(
            "No rollback, bad-release mark or alert naming a release is recorded between {} and {}: \
             the releases involved are not known.",
            clock(window_from),
            clock(horizon)
        ));
    }

    let registry = store.releases()?;
    let find = |name: &str| registry.iter().find(|r| r.name == name);
    let facts = |(name, source): &(String, Source)| {
        let release = find(name);
        ReleaseFacts {
            name: name.clone(),
            source: source.clone(),
            recorded: release.is_some(),
            packages: release.map_or(0, |r| r.dependencies.len()),
            lockfile_sha256: release.map(|r| r.lockfile_sha256.clone()),
        }
    };
    let releases = Releases {
        bad: bad.as_ref().map(facts),
        good: good.as_ref().map(facts),
    };
    let candidates = match (&bad, &good) {
        (Some((bad, _)), Some((good, _))) => {
            dependency_changes(find(good), find(bad), good, bad, &mut gaps)
        }
        (Some((bad, _)), None) => {
            gaps.push(format!(
                "No release before {} is recorded (no rollback to one, no deploy from one): \
                 there is nothing to compare its dependencies with.",
                md_text(bad)
            ));
            Vec::new()
        }
        _ => Vec::new(),
    };
    let (culprit, culprit_basis) = culprit(&candidates, &releases);

    // The memory evidence.
    let leak = firing
        .iter()
        .copied()
        .filter(|e| e.payload["alert"].as_str() == Some(LEAK_ALERT))
        .min_by_key(|e| {
            (
                bad.as_ref()
                    .is_none_or(|(name, _)| alert_release(e).as_deref() != Some(name.as_str())),
                e.id,
            )
        })
        .map(leak_evidence);
    let chart_from = deploys
        .activation
        .as_ref()
        .map_or(window_from, |e| (e.at_ms - 2 * MINUTE).min(window_from))
        .max(start_ms - 2 * 60 * MINUTE);
    let chart_to = (horizon + 5 * MINUTE).min(now_ms).max(horizon);
    let involved: Vec<&str> = [&bad, &good]
        .into_iter()
        .flatten()
        .map(|(name, _)| name.as_str())
        .collect();
    let (series_facts, lines) = memory_series(store, &involved, chart_from, chart_to)?;
    if series_facts.is_empty() {
        gaps.push(format!(
            "No memory series is stored from {} to {} (they are kept 7 days by default).",
            clock(chart_from),
            clock(chart_to)
        ));
    }

    // The timeline: the window, plus the bad release's deploy when it came earlier.
    let mut listed: Vec<&Event> = window.iter().collect();
    for early in [deploys.started.as_ref(), deploys.activation.as_ref()]
        .into_iter()
        .flatten()
    {
        if early.at_ms < window_from {
            listed.push(early);
        }
    }
    listed.sort_by_key(|e| (e.at_ms, e.id));
    listed.dedup_by_key(|e| e.id);
    let timeline_omitted = listed.len().saturating_sub(TIMELINE_LIMIT);
    let timeline = listed
        .iter()
        .take(TIMELINE_LIMIT)
        .map(|e| TimelineEntry {
            event_id: e.id,
            at_ms: e.at_ms,
            offset_ms: e.at_ms - start_ms,
            kind: e.kind.clone(),
            release: e.release.clone(),
            text: describe(e),
        })
        .collect();
    let (markers, public_markers): (Vec<Marker>, Vec<Marker>) = window
        .iter()
        .chain(
            deploys
                .activation
                .as_ref()
                .filter(|e| e.at_ms < window_from),
        )
        .filter(|e| (chart_from..=chart_to).contains(&e.at_ms))
        .filter_map(|e| {
            let kind = match e.kind.as_str() {
                DEPLOYED | CANARY => MarkerKind::Deploy,
                ROLLED_BACK => MarkerKind::Rollback,
                "alert.firing" => MarkerKind::AlertFiring,
                "alert.resolved" => MarkerKind::AlertResolved,
                CONTROL_RESTARTED => MarkerKind::Restart,
                _ => return None,
            };
            let marker = |description: String| Marker {
                at_ms: e.at_ms,
                kind,
                description,
            };
            Some((
                marker(format!(
                    "#{} {} at {}: {}",
                    e.id,
                    e.kind,
                    clock(e.at_ms),
                    describe(e)
                )),
                marker(format!("{} at {}", public_describe(e), clock(e.at_ms))),
            ))
        })
        .unzip();

    // How it went.
    let moment = |e: &Event, what: String| Moment {
        at_ms: e.at_ms,
        after_start_ms: e.at_ms - start_ms,
        what,
        source: Source::event(e),
    };
    let resolution = Resolution {
        bad_deployed: deploys.activation.as_ref().map(|e| moment(e, describe(e))),
        forced_past: deploys
            .started
            .as_ref()
            .filter(|e| e.payload["forced"].as_bool() == Some(true))
            .map(|e| {
                let overridden: Vec<String> = e.payload["overridden"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if overridden.is_empty() {
                    vec!["--force (nothing to override was recorded)".to_owned()]
                } else {
                    overridden
                }
            })
            .unwrap_or_default(),
        forced_source: deploys
            .started
            .as_ref()
            .filter(|e| e.payload["forced"].as_bool() == Some(true))
            .map(Source::event),
        first_alert: first_alert.map(|e| moment(e, describe(e))),
        first_alert_name: first_alert.and_then(|e| e_text(e, "alert").map(str::to_owned)),
        first_alert_release: first_alert.and_then(alert_release),
        first_public_update: opened.map(|e| {
            moment(
                e,
                format!(
                    "incident opened on the status page: {}",
                    e.payload["body"].as_str().unwrap_or_default()
                ),
            )
        }),
        rollback: rollback.map(|e| RollbackFacts {
            at: moment(e, describe(e)),
            from: e.payload["from"].as_str().map(str::to_owned),
            to: e.release.clone(),
            automatic: e.payload["automatic"].as_bool(),
            reason: e.payload["reason"].as_str().map(str::to_owned),
            switch_ms: e.payload["switch_ms"].as_f64(),
        }),
        resolved: resolved.map(|e| moment(e, "incident resolved".to_owned())),
    };
    if resolution.rollback.is_none() {
        gaps.push(format!(
            "No rollback is recorded between {} and {}.",
            clock(window_from),
            clock(horizon)
        ));
    }
    if end_ms.is_none() {
        gaps.push(format!(
            "The incident is not resolved yet: this draft runs until {}.",
            clock(horizon)
        ));
    }

    let seen = store.users_between(start_ms, horizon)?;
    let users = UsersImpact {
        measured: seen.windows > 0,
        clients: seen.clients,
        affected: seen.affected,
        windows: seen.windows,
        share: if seen.windows > 0 { seen.ratio() } else { None },
        from_ms: start_ms,
        to_ms: horizon,
        source: Source::record("client windows of the front proxy"),
    };
    let incident_facts = IncidentFacts {
        id: incident.id.clone(),
        name: incident.name.clone(),
        status: incident.status.clone(),
        impact: incident.impact.clone(),
        opened_ms: incident.started_ms,
        resolved_ms: incident.resolved_ms,
        components: component_impact(store, &incident.components, &own)?,
        impact_source: own
            .iter()
            .rev()
            .find(|e| e.payload["impact"].as_str() == Some(incident.impact.as_str()))
            .map_or_else(|| incident_source.clone(), Source::event),
        source: incident_source,
    };
    let mut postmortem = Postmortem {
        incident: incident_facts,
        summary: Summary {
            start_ms,
            start_source,
            end_ms,
            end_source: resolved.map(Source::event),
            duration_ms: end_ms.map(|end| end - start_ms),
            users,
        },
        releases,
        candidates,
        culprit,
        culprit_basis,
        memory: Memory {
            leak_alert: leak,
            from_ms: chart_from,
            to_ms: chart_to,
            series: series_facts,
        },
        timeline,
        timeline_omitted,
        resolution,
        corrective_measures: Vec::new(),
        gaps,
        drafted_ms: now_ms,
        chart: ChartData {
            from_ms: chart_from,
            to_ms: chart_to,
            lines,
            markers,
            public_markers,
        },
    };
    postmortem.corrective_measures = measures(&postmortem);
    Ok(postmortem)
}

/// A text field of an event's payload.
fn e_text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.payload[key].as_str().filter(|s| !s.is_empty())
}

/// The releases that served users at some time from `from_ms` to `to_ms`, as the
/// deploys, canaries and rollbacks of the log say; `None` when the log records none
/// (a deployment Warden does not run): then no release is ruled out.
fn releases_serving(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<std::collections::BTreeSet<String>>> {
    let mut switches: Vec<Event> = Vec::new();
    for prefix in ["deploy.", "rollback."] {
        switches.extend(
            store
                .events(&EventFilter {
                    until_ms: Some(to_ms + 1),
                    kind_prefix: Some(prefix.into()),
                    ..EventFilter::default()
                })?
                .into_iter()
                .filter(|e| matches!(e.kind.as_str(), DEPLOYED | CANARY | ROLLED_BACK)),
        );
    }
    if switches.is_empty() {
        return Ok(None);
    }
    switches.sort_by_key(|e| (e.at_ms, e.id));
    // What served just before `from_ms`: the active release and a canary beside it.
    let (mut active, mut canary): (Option<String>, Option<String>) = (None, None);
    let mut serving = std::collections::BTreeSet::new();
    let mut started = false;
    for event in &switches {
        if event.at_ms > from_ms && !started {
            started = true;
            serving.extend(active.clone().into_iter().chain(canary.clone()));
        }
        match event.kind.as_str() {
            CANARY => canary.clone_from(&event.release),
            _ => {
                active.clone_from(&event.release);
                canary = None;
            }
        }
        if started {
            serving.extend(event.release.clone());
        }
    }
    if !started {
        serving.extend(active.into_iter().chain(canary));
    }
    Ok(Some(serving))
}

/// The `alert.firing` events that belong to an incident opened at `opened_ms`:
/// those that fired after it opened, and those before that were still firing then.
fn alerts_of_incident(events: &[Event], opened_ms: i64) -> Vec<&Event> {
    let mut out = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if event.kind != "alert.firing" {
            continue;
        }
        if event.at_ms >= opened_ms {
            out.push(event);
            continue;
        }
        let fingerprint = alert_fingerprint(event);
        let ended_before = events[index + 1..].iter().any(|later| {
            later.at_ms <= opened_ms
                && matches!(later.kind.as_str(), "alert.resolved" | "alert.cancelled")
                && alert_fingerprint(later) == fingerprint
        });
        if !ended_before {
            out.push(event);
        }
    }
    out
}

fn alert_fingerprint(event: &Event) -> String {
    event.payload["fingerprint"].as_str().map_or_else(
        || {
            format!(
                "{}/{}",
                event.payload["alert"].as_str().unwrap_or_default(),
                event.payload["instance"].as_str().unwrap_or_default()
            )
        },
        str::to_owned,
    )
}

fn alert_release(event: &Event) -> Option<String> {
    event
        .release
        .clone()
        .or_else(|| event.payload["release"].as_str().map(str::to_owned))
        .filter(|r| !r.is_empty())
}

/// The deploy that put the bad release in front of users.
#[derive(Debug, Default)]
struct Deploys {
    /// Its `deploy.started`.
    started: Option<Event>,
    /// When traffic first moved to it: `deploy.canary` or `deploy.completed`.
    activation: Option<Event>,
}

fn deploys_of(store: &Store, release: &str, start_ms: i64, horizon: i64) -> Result<Deploys> {
    let events: Vec<Event> = store
        .events(&EventFilter {
            until_ms: Some(horizon + 1),
            kind_prefix: Some("deploy.".into()),
            ..EventFilter::default()
        })?
        .into_iter()
        .filter(|e| e.release.as_deref() == Some(release))
        .collect();
    let started = events
        .iter()
        .rev()
        .find(|e| e.kind == DEPLOY_STARTED && e.at_ms <= start_ms)
        .cloned();
    let activation = match &started {
        Some(started) => events
            .iter()
            .find(|e| e.id > started.id && matches!(e.kind.as_str(), DEPLOYED | CANARY))
            .cloned(),
        None => events
            .iter()
            .rev()
            .find(|e| e.kind == DEPLOYED && e.at_ms <= start_ms)
            .cloned(),
    };
    Ok(Deploys {
        started,
        activation,
    })
}

fn dependency_changes(
    good: Option<&Release>,
    bad: Option<&Release>,
    good_name: &str,
    bad_name: &str,
    gaps: &mut Vec<String>,
) -> Vec<Candidate> {
    let (Some(good), Some(bad)) = (good, bad) else {
        for (release, name) in [(good, good_name), (bad, bad_name)] {
            if release.is_none() {
                gaps.push(format!(
                    "Release {} is not in the release registry: its dependencies are not known.",
                    md_text(name)
                ));
            }
        }
        return Vec::new();
    };
    for release in [good, bad] {
        if release.dependencies.is_empty() {
            gaps.push(format!(
                "Release {} was recorded without a Cargo.lock: its dependencies are not known \
                 (record releases with `warden release add --lockfile`).",
                md_text(&release.name)
            ));
            return Vec::new();
        }
    }
    let changes = match lockdiff::diff_versions(
        good.dependencies
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
        bad.dependencies
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    ) {
        Ok(changes) => changes,
        Err(error) => {
            gaps.push(format!(
                "The dependencies of {} and {} could not be compared: {}",
                md_text(&good.name),
                md_text(&bad.name),
                md_text(&format!("{error:#}"))
            ));
            return Vec::new();
        }
    };
    if changes.is_empty() && good.lockfile_sha256 != bad.lockfile_sha256 {
        gaps.push(format!(
            "The Cargo.lock files of {} and {} differ, but no package version does \
             (sources or checksums changed).",
            md_text(&good.name),
            md_text(&bad.name)
        ));
    }
    let mut ranked: Vec<_> = changes.into_iter().collect();
    ranked.sort_by(|a, b| {
        kind_rank(a.kind)
            .cmp(&kind_rank(b.kind))
            .then_with(|| a.name.cmp(&b.name))
    });
    ranked
        .into_iter()
        .enumerate()
        .map(|(index, change)| Candidate {
            rank: index + 1,
            name: change.name,
            old: change.old,
            new: change.new,
            change: change.kind,
            bump: change.bump,
        })
        .collect()
}

/// Version changes first, then additions, then removals (code that left cannot leak).
fn kind_rank(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Upgraded | ChangeKind::Downgraded => 0,
        ChangeKind::Added => 1,
        ChangeKind::Removed => 2,
    }
}

fn culprit(candidates: &[Candidate], releases: &Releases) -> (Option<String>, String) {
    let names = match (&releases.good, &releases.bad) {
        (Some(good), Some(bad)) => format!("{} and {}", md_text(&good.name), md_text(&bad.name)),
        _ => "the releases involved".to_owned(),
    };
    match candidates {
        [] => (
            None,
            format!("No dependency version differs between {names} (or they are not known)."),
        ),
        [only] => (
            Some(only.name.clone()),
            format!(
                "{} {} is the only dependency that changed between {names}.",
                md_text(&only.name),
                md_text(&only.versions())
            ),
        ),
        [first, rest @ ..] => (
            Some(first.name.clone()),
            format!(
                "{} {} is the first of {} changed dependencies between {names} (version \
                 changes rank before additions and removals, then by name); the records do \
                 not tell them apart: run `warden gate` on each update alone.",
                md_text(&first.name),
                md_text(&first.versions()),
                rest.len() + 1
            ),
        ),
    }
}

fn number(value: &serde_json::Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

fn leak_evidence(event: &Event) -> LeakEvidence {
    let details = &event.payload["details"];
    let assessed = |value: &serde_json::Value| {
        value.is_object().then(|| Assessed {
            verdict: value["verdict"].as_str().map(str::to_owned),
            rate_mb_per_min: number(&value["rate_bytes_per_s"]).map(|r| r * 60.0 / 1e6),
            current_bytes: number(&value["current_bytes"]),
            p_value: number(&value["p_value"]),
        })
    };
    LeakEvidence {
        source: Source::event(event),
        at_ms: event.at_ms,
        release: alert_release(event),
        instance: event.payload["instance"].as_str().map(str::to_owned),
        evidence: details["evidence"].as_str().map(str::to_owned),
        rate_mb_per_min: number(&details["rate_mb_per_min"]),
        exhaustion_in_s: details["exhaustion_in_s"].as_u64(),
        exhausts_at: details["exhausts_at"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        limit_bytes: number(&details["limit_bytes"]),
        heap: assessed(&details["heap"]),
        rss: assessed(&details["rss"]),
        compared_with: (details["method"] == "comparison")
            .then(|| {
                details["compared_with"]["release"]
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten(),
        summary: event.payload["summary"]
            .as_str()
            .unwrap_or(LEAK_ALERT)
            .to_owned(),
        description: event.payload["description"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    }
}

const PALETTE: [&str; 6] = [
    "#dc2626", "#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

/// RSS and heap series of the releases involved (all when none is known), with the
/// chart's lines: one colour per release and instance, heap dashed.
fn memory_series(
    store: &Store,
    releases: &[&str],
    from_ms: i64,
    to_ms: i64,
) -> Result<(Vec<SeriesFacts>, Vec<ChartLine>)> {
    let mut facts = Vec::new();
    let mut lines = Vec::new();
    let mut colors: BTreeMap<(String, String), &'static str> = BTreeMap::new();
    let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
    for (metric, matchers, label, dashed) in [
        (series::RSS, &[][..], series::RSS.to_owned(), false),
        (
            series::HEAP,
            &[("kind", "allocated")][..],
            format!("{}{{kind=\"allocated\"}}", series::HEAP),
            true,
        ),
    ] {
        let mut found = store.query(metric, matchers, from_ms, to_ms)?;
        found.retain(|s| {
            releases.is_empty()
                || s.labels
                    .get("release")
                    .is_some_and(|r| releases.contains(&r.as_str()))
        });
        found.sort_by(|a, b| a.labels.cmp(&b.labels));
        for data in found {
            let (Some(first), Some(last)) = (data.points.first(), data.points.last()) else {
                continue;
            };
            let peak = data
                .points
                .iter()
                .copied()
                .fold(*first, |best, p| if p.1 > best.1 { p } else { best });
            let release = data.labels.get("release").cloned().unwrap_or_default();
            let instance = data.labels.get("instance").cloned().unwrap_or_default();
            let next = PALETTE[colors.len() % PALETTE.len()];
            let color = *colors
                .entry((release.clone(), instance.clone()))
                .or_insert(next);
            let next = numbers.len() + 1;
            let number = *numbers.entry(instance.clone()).or_insert(next);
            lines.push(ChartLine {
                line: Line {
                    label: format!(
                        "{} {release} · {instance}",
                        if dashed { "heap" } else { "RSS" }
                    ),
                    color: color.to_owned(),
                    dashed,
                    points: data
                        .points
                        .iter()
                        .map(|&(t, v)| (t, Unit::Megabytes.convert(v)))
                        .collect(),
                },
                public_label: format!(
                    "{} · release {release} · server {number}",
                    if dashed { "live heap" } else { "memory in use" }
                ),
            });
            facts.push(SeriesFacts {
                metric: label.clone(),
                release,
                instance,
                samples: data.points.len(),
                first: *first,
                peak,
                last: *last,
            });
        }
    }
    Ok((facts, lines))
}

/// Each component of the incident with the worst state its updates set.
fn component_impact(store: &Store, ids: &[String], own: &[Event]) -> Result<Vec<ComponentImpact>> {
    let all = store.status_components()?;
    Ok(ids
        .iter()
        .map(|id| {
            let mut worst: Option<(u8, String, Source)> = None;
            for event in own {
                for change in event.payload["affected_components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if change["code"].as_str() != Some(id.as_str()) {
                        continue;
                    }
                    let Some(status) = change["new_status"].as_str() else {
                        continue;
                    };
                    let severity = status
                        .parse::<ComponentStatus>()
                        .map_or(0, ComponentStatus::severity);
                    if worst.as_ref().is_none_or(|(s, _, _)| severity > *s) {
                        worst = Some((severity, status.to_owned(), Source::event(event)));
                    }
                }
            }
            ComponentImpact {
                id: id.clone(),
                name: all
                    .iter()
                    .find(|c| &c.id == id)
                    .map_or_else(|| id.clone(), |c| c.name.clone()),
                worst_status: worst.as_ref().map(|(_, s, _)| s.clone()),
                source: worst.map(|(_, _, source)| source),
            }
        })
        .collect())
}

/// What an event says, in one line, from its payload.
fn describe(event: &Event) -> String {
    let p = &event.payload;
    let text = |key: &str| p[key].as_str().filter(|s| !s.is_empty());
    let line = if event.kind.starts_with("incident.") {
        format!(
            "{} — {}: {}",
            text("name").unwrap_or("incident"),
            text("status").unwrap_or("update"),
            text("body").unwrap_or_default()
        )
    } else if event.kind == "component.status" {
        format!(
            "{}: {} → {}",
            text("name").or(text("component")).unwrap_or("component"),
            text("old_status").unwrap_or("?"),
            text("new_status").unwrap_or("?")
        )
    } else if event.kind.starts_with("maintenance.") {
        format!(
            "maintenance {} — {}: {}",
            text("name").unwrap_or_default(),
            text("status").unwrap_or_default(),
            text("body").unwrap_or_default()
        )
    } else if event.kind == "notification.delivery" {
        let mut line = format!(
            "notification of {} ({}) to {}: {}",
            text("fingerprint").unwrap_or("an alert"),
            text("status").unwrap_or("?"),
            text("notifier").unwrap_or("?"),
            text("outcome").unwrap_or("?")
        );
        if let Some(why) = text("error").or(text("reason")) {
            line.push_str(&format!(" ({why})"));
        }
        line
    } else if let Some(summary) = text("summary") {
        summary.to_owned()
    } else if event.kind.starts_with("alert.") {
        format!(
            "{} {} on {}",
            text("alert").unwrap_or("alert"),
            event.kind.trim_start_matches("alert."),
            text("instance").unwrap_or("?")
        )
    } else {
        let mut compact = p.to_string();
        if compact == "null" || compact == "{}" {
            compact.clear();
        }
        compact
    };
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&line, 300)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The checklist's seeds, from the data.
fn measures(p: &Postmortem) -> Vec<String> {
    let mut out = Vec::new();
    let names = match (&p.releases.good, &p.releases.bad) {
        (Some(good), Some(bad)) => Some((md_text(&good.name), md_text(&bad.name))),
        _ => None,
    };
    match (p.candidates.as_slice(), names) {
        ([only], Some((good, bad))) => out.push(format!(
            "Gate the update of {} ({}): run `warden gate` with the lockfiles of {good} and \
             {bad}, and record its measured impact in the dependency ledger (`warden deps \
             ledger record`) before it ships again.",
            md_text(&only.name),
            md_text(&only.versions())
        )),
        ([first, ..], Some((good, bad))) => out.push(format!(
            "Find which of the {} dependency changes between {good} and {bad} leaks: gate \
             each update alone with `warden gate`, starting with the update of {} ({}), and \
             record the results in the dependency ledger.",
            p.candidates.len(),
            md_text(&first.name),
            md_text(&first.versions())
        )),
        _ => {}
    }
    if let (Some(started), false) = (
        &p.resolution.forced_source,
        p.resolution.forced_past.is_empty(),
    ) {
        out.push(format!(
            "The deploy of {} was forced past: {} [{}]. Require a passing `warden gate` \
             report for dependency updates, and a second person for --force.",
            p.releases
                .bad
                .as_ref()
                .map_or_else(|| "the bad release".to_owned(), |b| md_text(&b.name)),
            md_text(&p.resolution.forced_past.join("; ")),
            started
        ));
    }
    match &p.resolution.rollback {
        Some(rollback) if rollback.automatic == Some(false) => out.push(format!(
            "Roll back automatically: the rollback came {}, by hand [{}]; add the alert \
             that fired to `warden up --rollback-on`.",
            relative(rollback.at.after_start_ms, "the start"),
            rollback.at.source
        )),
        None => out.push(
            "No rollback is recorded: write down how the incident was mitigated, and \
             practise the rollback (`warden drill rollback`)."
                .to_owned(),
        ),
        _ => {}
    }
    if let (Some(deployed), Some(alert)) = (&p.resolution.bad_deployed, &p.resolution.first_alert) {
        let ran = alert.at_ms - deployed.at_ms;
        if ran > 15 * MINUTE {
            out.push(format!(
                "Detect sooner: the bad release served users for {} before the first alert \
                 [{}, {}]; review the leak rule's window and `for` ([alerts.leak]).",
                span(ran),
                deployed.source,
                alert.source
            ));
        }
    }
    if p.resolution.first_alert.is_none() {
        out.push(
            "No alert fired for this incident: find out why monitoring did not see it, and \
             add the rule that would have."
                .to_owned(),
        );
    }
    if let Some(update) = &p.resolution.first_public_update
        && update.after_start_ms > MINUTE
    {
        out.push(format!(
            "Tell users sooner: the first status page update came {} after the start [{}] \
             (the plan's target is a minute); check the [automation] alerts of the status \
             config.",
            span(update.after_start_ms),
            update.source
        ));
    }
    if !p.summary.users.measured {
        out.push(
            "Measure the users affected: the front proxy recorded no client windows for this \
             period."
                .to_owned(),
        );
    }
    out
}

// ---- rendering ----

impl Postmortem {
    /// The file name the Markdown draft gives its memory chart, and the target the
    /// page replaces with the chart itself.
    #[must_use]
    pub fn chart_file(incident_id: &str) -> String {
        format!("postmortem-{incident_id}-memory.svg")
    }

    /// The memory chart (RSS solid, heap allocated dashed, with deploys, rollbacks
    /// and alerts marked) as a standalone SVG document.
    #[must_use]
    pub fn chart_svg(&self) -> String {
        chart::render(
            &Chart {
                title: "Memory around the incident: RSS (solid) and heap allocated (dashed)",
                unit: Unit::Megabytes,
                zero_based: true,
                clip_outliers: false,
                limit: None,
                from_ms: self.chart.from_ms,
                to_ms: self.chart.to_ms,
                lines: self.chart.lines.iter().map(|l| l.line.clone()).collect(),
                markers: &self.chart.markers,
            },
            Framing::Standalone,
        )
    }

    /// The memory chart for the published postmortem: the same lines, the servers
    /// numbered instead of addressed, the markers in words.
    #[must_use]
    pub fn public_chart_svg(&self) -> String {
        chart::render(
            &Chart {
                title: "Memory used by the service around the incident",
                unit: Unit::Megabytes,
                zero_based: true,
                clip_outliers: false,
                limit: None,
                from_ms: self.chart.from_ms,
                to_ms: self.chart.to_ms,
                lines: self
                    .chart
                    .lines
                    .iter()
                    .map(|l| Line {
                        label: l.public_label.clone(),
                        ..l.line.clone()
                    })
                    .collect(),
                markers: &self.chart.public_markers,
            },
            Framing::Standalone,
        )
    }

    /// The draft as Markdown: the text people edit before publishing.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let mut md = String::with_capacity(16 * 1024);
        let i = &self.incident;
        let s = &self.summary;
        md.push_str(&format!("# Postmortem: {}\n\n", md_text(&i.name)));
        md.push_str(&format!(
            "{DRAFT_MARK} of {} from Warden's records of incident `{}`, for the team. Every \
             figure cites its record: `#12 alert.firing` is event 12 of the event log. \
             Users read the public version instead (`warden postmortem {} --public`): \
             `warden postmortem publish {}` publishes it as it is, or edit it and publish \
             it with `--file FILE`._\n\n",
            clock(self.drafted_ms),
            i.id,
            i.id,
            i.id
        ));

        md.push_str("## Issue summary\n\n");
        md.push_str(&format!(
            "- **Start:** {} [{}]\n",
            clock(s.start_ms),
            s.start_source
        ));
        match (s.end_ms, &s.end_source) {
            (Some(end), Some(source)) => {
                md.push_str(&format!("- **End:** {} [{source}]\n", clock(end)));
            }
            (Some(end), None) => md.push_str(&format!("- **End:** {}\n", clock(end))),
            _ => md.push_str("- **End:** not resolved yet\n"),
        }
        if let Some(duration) = s.duration_ms {
            md.push_str(&format!("- **Duration:** {}\n", span(duration)));
        }
        md.push_str(&format!("- **Impact:** {}\n", self.users_line()));
        let components: Vec<String> = i
            .components
            .iter()
            .map(|c| match (&c.worst_status, &c.source) {
                (Some(status), Some(source)) => {
                    format!("{} ({}) [{source}]", md_text(&c.name), label(status))
                }
                _ => format!("{} (state not changed)", md_text(&c.name)),
            })
            .collect();
        md.push_str(&format!(
            "- **Components:** {}; incident impact {} [{}]\n",
            if components.is_empty() {
                "none named".to_owned()
            } else {
                components.join(", ")
            },
            md_text(&i.impact),
            i.impact_source
        ));
        if let Some(culprit) = self.candidates.first() {
            md.push_str(&format!(
                "- **Root cause (candidate):** {} {} in release {}\n",
                md_text(&culprit.name),
                md_text(&culprit.versions()),
                self.releases
                    .bad
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |b| md_text(&b.name))
            ));
        }
        md.push('\n');

        md.push_str("## Root cause candidates\n\n");
        match (&self.releases.bad, &self.releases.good) {
            (Some(bad), Some(good)) => md.push_str(&format!(
                "The bad release is **{}** [{}]; the last good release is **{}** [{}]. Their \
                 recorded Cargo.lock files (release registry, as `warden deps diff` compares \
                 them) differ in:\n\n",
                md_text(&bad.name),
                bad.source,
                md_text(&good.name),
                good.source
            )),
            (Some(bad), None) => md.push_str(&format!(
                "The bad release is **{}** [{}]; no earlier good release is recorded.\n\n",
                md_text(&bad.name),
                bad.source
            )),
            _ => md.push_str("The records do not name the releases involved.\n\n"),
        }
        if !self.candidates.is_empty() {
            let (good, bad) = (
                self.releases
                    .good
                    .as_ref()
                    .map_or_else(String::new, |r| md_text(&r.name)),
                self.releases
                    .bad
                    .as_ref()
                    .map_or_else(String::new, |r| md_text(&r.name)),
            );
            md.push_str(&format!(
                "| # | Package | {good} (good) | {bad} (bad) | Change |\n|---|---|---|---|---|\n"
            ));
            for c in &self.candidates {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    c.rank,
                    md_cell(&c.name),
                    md_cell(c.old.as_deref().unwrap_or("—")),
                    md_cell(c.new.as_deref().unwrap_or("—")),
                    change_text(c)
                ));
            }
            md.push('\n');
        }
        md.push_str(&format!(
            "**Culprit:** {}{}\n\n",
            self.culprit.as_deref().map_or_else(
                || "none named. ".to_owned(),
                |c| format!("{}. ", md_text(c))
            ),
            self.culprit_basis
        ));

        md.push_str("### Memory evidence\n\n");
        match &self.memory.leak_alert {
            Some(leak) => self.leak_markdown(&mut md, leak),
            None => md.push_str("- No MemoryLeak alert fired during this incident.\n"),
        }
        if !self.memory.series.is_empty() {
            md.push_str(&format!(
                "\nStored series from {} to {} (MB = 10^6 bytes):\n\n\
                 | Series | Release | Instance | First | Peak | Last | Samples |\n\
                 |---|---|---|---|---|---|---|\n",
                clock(self.memory.from_ms),
                clock(self.memory.to_ms)
            ));
            for f in &self.memory.series {
                md.push_str(&format!(
                    "| {} | {} | {} | {} at {} | {} at {} | {} at {} | {} |\n",
                    md_cell(&f.metric),
                    md_cell(&f.release),
                    md_cell(&f.instance),
                    mb(f.first.1),
                    clock_time(f.first.0),
                    mb(f.peak.1),
                    clock_time(f.peak.0),
                    mb(f.last.1),
                    clock_time(f.last.0),
                    f.samples
                ));
            }
        }
        md.push_str(&format!(
            "\n![Memory around the incident: RSS (solid) and heap allocated (dashed)]({})\n\n",
            Self::chart_file(&i.id)
        ));

        md.push_str("## Timeline\n\n");
        md.push_str(&format!(
            "Every event of the log from {} (ten minutes before the start) to {}{}; T is \
             the start ({}).\n\n",
            clock(s.start_ms - LEAD_MS),
            s.end_ms.map_or_else(|| "now".to_owned(), clock),
            if self
                .timeline
                .first()
                .is_some_and(|e| e.at_ms < s.start_ms - LEAD_MS)
            {
                ", with the bad release's deploy before that"
            } else {
                ""
            },
            clock(s.start_ms)
        ));
        md.push_str(
            "| Time (UTC) | T | Event | Release | What happened |\n|---|---|---|---|---|\n",
        );
        for e in &self.timeline {
            md.push_str(&format!(
                "| {} | {} | #{} {} | {} | {} |\n",
                clock_seconds(e.at_ms),
                offset(e.offset_ms),
                e.event_id,
                md_cell(&e.kind),
                md_cell(e.release.as_deref().unwrap_or("")),
                md_cell(&e.text)
            ));
        }
        if self.timeline_omitted > 0 {
            md.push_str(&format!(
                "\n{} later events are not listed (the timeline stops at {TIMELINE_LIMIT}).\n",
                self.timeline_omitted
            ));
        }
        md.push('\n');

        md.push_str("## Resolution\n\n");
        let r = &self.resolution;
        if let Some(deployed) = &r.bad_deployed {
            md.push_str(&format!(
                "- **Bad release deployed:** {} ({}): {} [{}]\n",
                clock_seconds(deployed.at_ms),
                offset(deployed.after_start_ms),
                md_text(&deployed.what),
                deployed.source
            ));
        }
        if let (Some(source), false) = (&r.forced_source, r.forced_past.is_empty()) {
            md.push_str(&format!(
                "- **Deploy forced past:** {} [{source}]\n",
                md_text(&r.forced_past.join("; "))
            ));
        }
        if let Some(alert) = &r.first_alert {
            md.push_str(&format!(
                "- **First alert:** {} ({}): {} [{}]\n",
                clock_seconds(alert.at_ms),
                offset(alert.after_start_ms),
                md_text(&alert.what),
                alert.source
            ));
        }
        if let Some(update) = &r.first_public_update {
            md.push_str(&format!(
                "- **Users first told:** {}, {}, on the status page [{}]\n",
                clock_seconds(update.at_ms),
                relative(update.after_start_ms, "the start"),
                update.source
            ));
        }
        match &r.rollback {
            Some(rb) => {
                let how = match rb.automatic {
                    Some(true) => "automatic",
                    Some(false) => "by hand",
                    None => "by unrecorded means",
                };
                md.push_str(&format!(
                    "- **Rollback:** {} ({}), from {} to {}, {how}{}{} [{}]\n",
                    clock_seconds(rb.at.at_ms),
                    offset(rb.at.after_start_ms),
                    md_text(rb.from.as_deref().unwrap_or("?")),
                    md_text(rb.to.as_deref().unwrap_or("?")),
                    rb.switch_ms
                        .map_or_else(String::new, |ms| format!(", switched in {ms:.2} ms")),
                    rb.reason
                        .as_deref()
                        .map_or_else(String::new, |why| format!(": {}", md_text(why))),
                    rb.at.source
                ));
            }
            None => md.push_str("- **Rollback:** none recorded\n"),
        }
        match &r.resolved {
            Some(resolved) => md.push_str(&format!(
                "- **Resolved:** {} ({}) [{}]\n",
                clock_seconds(resolved.at_ms),
                offset(resolved.after_start_ms),
                resolved.source
            )),
            None => md.push_str("- **Resolved:** not yet\n"),
        }
        md.push('\n');

        md.push_str("## Corrective measures\n\n");
        md.push_str(
            "Suggested by the records; fill in an owner and a due date for each, add the \
             rest, strike what does not apply.\n\n",
        );
        for measure in &self.corrective_measures {
            md.push_str(&format!("- [ ] {measure}\n"));
        }
        md.push_str("- [ ] _(measure, owner, due date)_\n");

        if !self.gaps.is_empty() {
            md.push_str("\n## What the records do not say\n\n");
            for gap in &self.gaps {
                md.push_str(&format!("- {gap}\n"));
            }
        }
        md
    }

    fn users_line(&self) -> String {
        let u = &self.summary.users;
        let period = format!("{} to {}", clock(u.from_ms), clock(u.to_ms));
        match (u.measured, u.share) {
            (true, Some(share)) => format!(
                "{:.1}% of users affected: {} of {} distinct clients got a failed or slow \
                 response ({} windows, {period}) [{}]",
                share * 100.0,
                group(u.affected),
                group(u.clients),
                group(u.windows),
                u.source
            ),
            (true, None) => format!(
                "no clients were seen ({} windows, {period}) [{}]",
                group(u.windows),
                u.source
            ),
            _ => format!(
                "the share of users affected was not measured: the front proxy recorded no \
                 client windows from {period}"
            ),
        }
    }

    fn leak_markdown(&self, md: &mut String, leak: &LeakEvidence) {
        md.push_str(&format!(
            "- **Alert:** {} at {}: {} [{}]\n",
            LEAK_ALERT,
            clock_seconds(leak.at_ms),
            md_text(&leak.summary),
            leak.source
        ));
        if let Some(description) = &leak.description {
            md.push_str(&format!("- **Evidence:** {}\n", md_text(description)));
        }
        if let Some(rate) = leak.rate_mb_per_min {
            let mut line = format!(
                "- **Rate:** +{rate:.2} MB/min ({}",
                leak.evidence
                    .as_deref()
                    .map_or("leading series", |e| match e {
                        "heap+rss" => "heap allocated and RSS both grow",
                        "heap" => "heap allocated grows",
                        "rss" => "RSS grows, heap allocated does not",
                        _ => "leading series",
                    })
            );
            if let Some(previous) = &leak.compared_with {
                line.push_str(&format!(
                    ", faster than {} at the same age",
                    md_text(previous)
                ));
            }
            line.push(')');
            if let Some(seconds) = leak.exhaustion_in_s {
                line.push_str(&format!(
                    "; forecast: the {} limit is reached in {}{}",
                    leak.limit_bytes.map_or_else(
                        || "memory".to_owned(),
                        |b| format!("{} MB", group((b / 1e6).round() as u64))
                    ),
                    span(
                        i64::try_from(seconds)
                            .unwrap_or(i64::MAX / 2)
                            .saturating_mul(1000)
                    ),
                    leak.exhausts_at
                        .as_deref()
                        .map_or_else(String::new, |at| format!(" (at {})", md_text(at)))
                ));
            }
            md.push_str(&format!("{line} [{}]\n", leak.source));
        }
        for (name, assessed) in [("Heap allocated", &leak.heap), ("RSS", &leak.rss)] {
            let Some(a) = assessed else { continue };
            let mut parts = Vec::new();
            if let Some(verdict) = &a.verdict {
                parts.push(md_text(&verdict.replace('_', " ")));
            }
            if let Some(rate) = a.rate_mb_per_min {
                parts.push(match &leak.compared_with {
                    Some(previous) => format!("{rate:+.2} MB/min over {}", md_text(previous)),
                    None => format!("floor {rate:+.2} MB/min"),
                });
            }
            if let Some(p) = a.p_value {
                parts.push(format!("p = {p:.1e}"));
            }
            if let Some(now) = a.current_bytes {
                parts.push(format!("{} when it fired", mb(now)));
            }
            md.push_str(&format!(
                "- **{name}:** {} [{}]\n",
                parts.join(", "),
                leak.source
            ));
        }
    }
}

// ---- the public version ----

impl Postmortem {
    /// The postmortem for users, in Markdown: what happened, when, to whom, why, how
    /// it was fixed and what changes, in words. Unlike the draft it cites no record
    /// and names no event, server address, metric or command; it is what
    /// [`publish`] publishes when given no text.
    #[must_use]
    pub fn to_public_markdown(&self) -> String {
        let mut md = String::with_capacity(8 * 1024);
        let i = &self.incident;
        let s = &self.summary;
        let r = &self.resolution;
        md.push_str(&format!("# Postmortem: {}\n\n", md_text(&i.name)));

        md.push_str("## Summary\n\n");
        let when = match s.end_ms {
            Some(end) if day(end) == day(s.start_ms) => format!(
                "On {}, from {} to {} UTC ({})",
                day(s.start_ms),
                clock_time_minutes(s.start_ms),
                clock_time_minutes(end),
                span(end - s.start_ms)
            ),
            Some(end) => format!(
                "From {} {} to {} {} UTC ({})",
                day(s.start_ms),
                clock_time_minutes(s.start_ms),
                day(end),
                clock_time_minutes(end),
                span(end - s.start_ms)
            ),
            None => format!("Since {}", clock(s.start_ms)),
        };
        // The components by the worst state they were in, the worst first: "API and
        // Authentication had a major outage and Data retrieval slow responses".
        let mut by_state: Vec<(ComponentStatus, Vec<String>)> = Vec::new();
        for c in &i.components {
            let Some(state) = c
                .worst_status
                .as_deref()
                .and_then(|s| s.parse::<ComponentStatus>().ok())
                .filter(|s| *s != ComponentStatus::Operational)
            else {
                continue;
            };
            match by_state.iter_mut().find(|(s, _)| *s == state) {
                Some((_, names)) => names.push(md_text(&c.name)),
                None => by_state.push((state, vec![md_text(&c.name)])),
            }
        }
        by_state.sort_by_key(|(state, _)| std::cmp::Reverse(state.severity()));
        let affected: Vec<String> = by_state
            .iter()
            .map(|(state, names)| format!("{} had {}", and_list(names), public_state(*state)))
            .collect();
        md.push_str(&if affected.is_empty() {
            format!("{when}, some of our services did not work as they should.")
        } else {
            format!("{when}, {}.", and_list(&affected))
        });
        let u = &s.users;
        if let (true, Some(share)) = (u.measured, u.share) {
            md.push_str(&format!(
                " About {:.0}% of the people who used the service in that time ({} of {}) \
                 saw requests fail or slow down.",
                share * 100.0,
                group(u.affected),
                group(u.clients)
            ));
        }
        md.push_str("\n\n");

        md.push_str("## What happened\n\n| Time (UTC) | Event |\n|---|---|\n");
        for (at, what) in self.public_timeline() {
            md.push_str(&format!(
                "| {} | {} |\n",
                clock_time_minutes(at),
                md_cell(&what)
            ));
        }
        md.push('\n');

        md.push_str("## Why it happened\n\n");
        md.push_str(&self.public_cause());
        md.push_str("\n\n");
        if !self.memory.series.is_empty() {
            md.push_str(&format!(
                "![Memory used by the service around the incident]({})\n\n",
                Self::chart_file(&i.id)
            ));
        }

        md.push_str("## How we fixed it\n\n");
        match &r.rollback {
            Some(rb) => {
                let to = rb.to.as_deref().map_or_else(
                    || "the previous release".to_owned(),
                    |to| format!("release {}", md_text(to)),
                );
                let how = match (rb.automatic, &r.first_alert) {
                    (Some(true), Some(alert)) => format!(
                        "automatically, {}",
                        relative(rb.at.at_ms - alert.at_ms, "our monitoring noticed it")
                    ),
                    (Some(true), None) => "automatically".to_owned(),
                    _ => relative(rb.at.after_start_ms, "the problem began"),
                };
                md.push_str(&format!(
                    "We rolled the service back to {to}, the last release that worked, {how}."
                ));
            }
            None => md.push_str("We fixed the problem without rolling back a release."),
        }
        match &r.resolved {
            Some(resolved) => md.push_str(&format!(
                " Everything worked normally again by {} UTC.\n\n",
                clock_time_minutes(resolved.at_ms)
            )),
            None => md.push_str(" We are still watching that the fix holds.\n\n"),
        }

        md.push_str("## What we are changing\n\n");
        let changes = self.public_measures();
        if changes.is_empty() {
            md.push_str("We are reviewing what to change and will add it here.\n");
        }
        for change in changes {
            md.push_str(&format!("- {change}\n"));
        }
        md
    }

    /// The moments users care about, oldest first: the bad release going live, the
    /// detection, the first update here, the rollback, the resolution.
    fn public_timeline(&self) -> Vec<(i64, String)> {
        let r = &self.resolution;
        let bad = self.releases.bad.as_ref().map(|b| b.name.as_str());
        let mut moments = Vec::new();
        if let (Some(deployed), Some(bad)) = (&r.bad_deployed, bad) {
            moments.push((deployed.at_ms, format!("Release {bad} went live.")));
        }
        if let Some(alert) = &r.first_alert {
            let what = alert_words(r.first_alert_name.as_deref().unwrap_or_default());
            moments.push((
                alert.at_ms,
                match &r.first_alert_release {
                    Some(release) => {
                        format!("Our monitoring detected {what} in release {release}.")
                    }
                    None => format!("Our monitoring detected {what}."),
                },
            ));
        }
        if let Some(update) = &r.first_public_update {
            moments.push((
                update.at_ms,
                "We posted the first update on this status page.".to_owned(),
            ));
        }
        if let Some(rb) = &r.rollback {
            moments.push((
                rb.at.at_ms,
                match (rb.to.as_deref(), rb.automatic) {
                    (Some(to), Some(true)) => {
                        format!("The service rolled itself back to release {to}.")
                    }
                    (Some(to), _) => format!("We rolled the service back to release {to}."),
                    (None, _) => "We rolled the service back.".to_owned(),
                },
            ));
        }
        if let Some(resolved) = &r.resolved {
            moments.push((resolved.at_ms, "The incident was resolved.".to_owned()));
        }
        moments.sort_by_key(|(at, _)| *at);
        moments
    }

    /// Why it happened, as far as the records tell, in words.
    fn public_cause(&self) -> String {
        let Some(bad) = &self.releases.bad else {
            return "We are still establishing the cause, and will add it here.".to_owned();
        };
        let bad = md_text(&bad.name);
        let leak = self.memory.leak_alert.as_ref().map(|leak| {
            leak.rate_mb_per_min.map_or_else(
                || {
                    " With it, the service's memory kept growing while it served requests: \
                    a memory leak."
                        .to_owned()
                },
                |rate| {
                    format!(
                        " With it, the service's memory kept growing while it served \
                         requests, by about {rate:.1} MB a minute: a memory leak."
                    )
                },
            )
        });
        let leak = leak.unwrap_or_default();
        match self.candidates.as_slice() {
            [] => format!(
                "The problem came with release {bad}; we are still establishing which of its \
                 changes caused it.{leak}"
            ),
            [only] => format!(
                "Release {bad} updated the third-party library {} ({}), the only library \
                 that changed.{leak}",
                md_text(&only.name),
                md_text(&only.versions())
            ),
            [first, rest @ ..] => format!(
                "Release {bad} changed {} third-party libraries. The most likely cause is \
                 the update of {} ({}); we are testing each change alone to be sure.{leak}",
                rest.len() + 1,
                md_text(&first.name),
                md_text(&first.versions())
            ),
        }
    }

    /// What changes, for users: the corrective measures the records suggest, in
    /// words.
    fn public_measures(&self) -> Vec<String> {
        let r = &self.resolution;
        let mut out = Vec::new();
        if let Some(first) = self.candidates.first() {
            out.push(format!(
                "We will test every update of a third-party library, {} included, for memory \
                 leaks under realistic load before it ships, and record what each one does \
                 to memory and speed.",
                md_text(&first.name)
            ));
        }
        if !r.forced_past.is_empty() {
            out.push(
                "A release that fails those tests will not ship on one person's say-so.".to_owned(),
            );
        }
        if r.rollback
            .as_ref()
            .is_some_and(|rb| rb.automatic == Some(false))
        {
            out.push(
                "The service will roll itself back as soon as our monitoring detects a \
                 problem like this one, instead of waiting for a person."
                    .to_owned(),
            );
        }
        if let (Some(deployed), Some(alert)) = (&r.bad_deployed, &r.first_alert) {
            let ran = alert.at_ms - deployed.at_ms;
            if ran > 15 * MINUTE {
                out.push(format!(
                    "We will detect this kind of problem sooner: the faulty release served \
                     requests for {} before our monitoring noticed.",
                    span(ran)
                ));
            }
        }
        if r.first_alert.is_none() {
            out.push(
                "We will add monitoring for this kind of problem: no alert fired for it."
                    .to_owned(),
            );
        }
        if let Some(update) = &r.first_public_update
            && update.after_start_ms > MINUTE
        {
            out.push(format!(
                "We will tell you sooner: our first update here came {}; we aim for \
                 within a minute.",
                relative(update.after_start_ms, "the problem began")
            ));
        }
        out
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What a component's state meant for users: "a major outage", ...
fn public_state(state: ComponentStatus) -> &'static str {
    match state {
        ComponentStatus::MajorOutage => "a major outage",
        ComponentStatus::PartialOutage => "a partial outage",
        ComponentStatus::DegradedPerformance => "slow responses",
        ComponentStatus::UnderMaintenance => "maintenance",
        ComponentStatus::Operational => "no problem",
    }
}

/// What an alert means, in words, from its name.
fn alert_words(alert: &str) -> &'static str {
    use warden_monitor::rules::{ERROR_RATIO_HIGH, LATENCY_HIGH, MEMORY_HIGH, TARGET_DOWN};
    match alert {
        LEAK_ALERT => "a memory leak",
        MEMORY_HIGH => "high memory use",
        LATENCY_HIGH => "slow responses",
        ERROR_RATIO_HIGH => "failing requests",
        TARGET_DOWN => "a server not responding",
        _ => "a problem",
    }
}

/// What a deploy, rollback or alert event meant, in words (the chart's markers for
/// users).
fn public_describe(event: &Event) -> String {
    let release = event.release.as_deref().unwrap_or("?");
    match event.kind.as_str() {
        DEPLOYED => format!("release {release} went live"),
        CANARY => format!("release {release} took a share of the traffic"),
        ROLLED_BACK => format!("rolled back to release {release}"),
        "alert.firing" => format!(
            "alert: {}",
            alert_words(e_text(event, "alert").unwrap_or_default())
        ),
        "alert.resolved" => format!(
            "alert cleared: {}",
            alert_words(e_text(event, "alert").unwrap_or_default())
        ),
        CONTROL_RESTARTED => "our monitoring restarted after an interruption".to_owned(),
        _ => String::new(),
    }
}

/// `2025-01-02`.
fn day(ms: i64) -> String {
    crate::datetime(ms).map_or_else(|| format!("{ms} ms"), |t| t.date().to_string())
}

/// `13:04`.
fn clock_time_minutes(ms: i64) -> String {
    crate::datetime(ms)
        .and_then(|t| {
            t.format(time::macros::format_description!("[hour]:[minute]"))
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What in `text` (a postmortem to publish) is for the team and not for users: the
/// draft's instructions, addresses of this network (loopback, private, link-local,
/// `localhost`, the console's own address), metric names. One line each, naming the
/// line; empty when there is nothing.
fn team_only(text: &str, console: &str) -> Vec<String> {
    const METRICS: [&str; 8] = [
        series::RSS,
        series::PROC_RSS,
        series::HEAP,
        series::LIMIT,
        "http_server_request_duration_seconds",
        "http_server_active_requests",
        "warden_build_info",
        "process_start_time_seconds",
    ];
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = n + 1;
        if line.trim_start().starts_with(DRAFT_MARK)
            || line.contains("Edit it, fill the checklist")
            || line.contains("warden postmortem publish")
        {
            found.push(format!("line {at}: the draft's instructions"));
        }
        let lower = line.to_lowercase();
        let address = line
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|word| word.trim_matches('.').parse::<std::net::Ipv4Addr>().ok())
            .find(|ip| {
                ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
            })
            .map(|ip| ip.to_string())
            .or_else(|| lower.contains("localhost").then(|| "localhost".to_owned()))
            .or_else(|| lower.contains("[::1]").then(|| "[::1]".to_owned()))
            .or_else(|| {
                (!console.is_empty() && line.contains(console)).then(|| console.to_owned())
            });
        if let Some(address) = address {
            found.push(format!("line {at}: the internal address {address}"));
        }
        let metric = METRICS
            .iter()
            .find(|m| line.contains(**m))
            .map(|m| (*m).to_owned())
            .or_else(|| {
                ["warden:", "warden_release:"].iter().find_map(|prefix| {
                    let at = line.find(prefix)?;
                    let next = line[at + prefix.len()..].chars().next()?;
                    (next.is_ascii_lowercase() || next == '_').then(|| (*prefix).to_owned())
                })
            });
        if let Some(metric) = metric {
            found.push(format!("line {at}: the metric name {metric}"));
        }
    }
    found
}

fn change_text(c: &Candidate) -> String {
    let kind = match c.change {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Upgraded => "upgraded",
        ChangeKind::Downgraded => "downgraded",
    };
    match c.bump {
        Some(Bump::Major) => format!("{kind} (major)"),
        Some(Bump::Minor) => format!("{kind} (minor)"),
        Some(Bump::Patch) => format!("{kind} (patch)"),
        Some(Bump::Other) => format!("{kind} (pre-release)"),
        None => kind.to_owned(),
    }
}

fn label(status: &str) -> String {
    status
        .parse::<ComponentStatus>()
        .map_or_else(|_| status.replace('_', " "), |s| s.label().to_lowercase())
}

/// Text from the records as Markdown that shows as itself: one line, with the
/// characters Markdown would read as markup escaped.
fn md_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
    {
        if matches!(c, '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn md_cell(text: &str) -> String {
    md_text(text)
}

/// `2025-01-02 13:04 UTC`.
fn clock(ms: i64) -> String {
    crate::human_time(ms)
}

/// `2025-01-02 13:04:05`.
fn clock_seconds(ms: i64) -> String {
    crate::datetime(ms)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// `13:04:05`.
fn clock_time(ms: i64) -> String {
    crate::datetime(ms)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A length of time: `850 ms`, `42 s`, `3 min 5 s`, `1 h 45 min`. Never negative:
/// a length below zero is shown as `0 s` (say "before" with [`relative`] instead).
fn span(ms: i64) -> String {
    let ms = ms.max(0).unsigned_abs();
    if ms == 0 {
        "0 s".to_owned()
    } else if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{} s", ms / 1_000)
    } else if ms < 3_600_000 {
        let s = ms / 1_000;
        if s.is_multiple_of(60) {
            format!("{} min", s / 60)
        } else {
            format!("{} min {} s", s / 60, s % 60)
        }
    } else {
        let m = ms / 60_000;
        if m.is_multiple_of(60) {
            format!("{} h", m / 60)
        } else {
            format!("{} h {} min", m / 60, m % 60)
        }
    }
}

/// Relative to the start: `T+3 min 5 s`, `T−2 min` (a point in time, not a length).
fn offset(ms: i64) -> String {
    if ms < 0 {
        format!("T−{}", span(ms.saturating_neg()))
    } else {
        format!("T+{}", span(ms))
    }
}

/// When something came, relative to `what` began (`ms` after it): "3 min after
/// the start", "2 min before the start", "at the start".
fn relative(ms: i64, what: &str) -> String {
    match ms.cmp(&0) {
        std::cmp::Ordering::Less => format!("{} before {what}", span(ms.saturating_neg())),
        std::cmp::Ordering::Equal => format!("at {what}"),
        std::cmp::Ordering::Greater => format!("{} after {what}", span(ms)),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- the page ----

struct BaseLinks {
    home: String,
    summary: String,
    atom: String,
    rss: String,
}

#[derive(Template)]
#[template(path = "postmortem.html")]
struct PostmortemPage<'a> {
    page_name: &'a str,
    links: BaseLinks,
    title: String,
    back_href: String,
    back_text: String,
    published_text: String,
    body: String,
    /// What the page says of where it comes from: the draft cites records, the
    /// public version does not.
    footer: &'static str,
}

/// Which version of a postmortem a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The internal draft, for the team.
    Team,
    /// The public version, for users.
    Users,
}

/// A Markdown postmortem as an HTML page of the status page: `markdown` shown
/// through [`markdown_to_html`] (which escapes every text), with `chart` (an SVG
/// document drawn by Warden) in place of the image `Postmortem::chart_file(id)`.
///
/// # Errors
/// The template failed to render.
#[allow(clippy::too_many_arguments)]
pub fn render_html(
    config: &StatusConfig,
    links: &Links,
    incident_id: &str,
    incident_name: &str,
    markdown: &str,
    chart: Option<&str>,
    published_ms: Option<i64>,
    audience: Audience,
) -> std::result::Result<String, askama::Error> {
    let body = markdown_to_html(markdown, &Postmortem::chart_file(incident_id), chart);
    PostmortemPage {
        page_name: &config.page.name,
        links: BaseLinks {
            home: links.home(),
            summary: links.root("api/v2/summary.json"),
            atom: links.root("history.atom"),
            rss: links.root("history.rss"),
        },
        title: format!("Postmortem: {incident_name}"),
        back_href: links.incident(incident_id),
        back_text: incident_name.to_owned(),
        published_text: published_ms.map_or_else(
            || "Draft: not published.".to_owned(),
            |ms| format!("Published {}.", crate::human_time(ms)),
        ),
        body,
        footer: match audience {
            Audience::Team => {
                "Drafted by Warden from its event log and stored series; every figure cites \
                 its record (#N is event N of the log)."
            }
            Audience::Users => "",
        },
    }
    .render()
}

impl Postmortem {
    /// The draft as an HTML page, with the memory chart inline.
    ///
    /// # Errors
    /// The template failed to render.
    pub fn to_html(
        &self,
        config: &StatusConfig,
        links: &Links,
    ) -> std::result::Result<String, askama::Error> {
        render_html(
            config,
            links,
            &self.incident.id,
            &self.incident.name,
            &self.to_markdown(),
            Some(&self.chart_svg()),
            None,
            Audience::Team,
        )
    }
}

impl Postmortem {
    /// The public version ([`Postmortem::to_public_markdown`]) as an HTML page,
    /// with the public memory chart inline: the page it makes once published.
    ///
    /// # Errors
    /// The template failed to render.
    pub fn to_public_html(
        &self,
        config: &StatusConfig,
        links: &Links,
    ) -> std::result::Result<String, askama::Error> {
        render_html(
            config,
            links,
            &self.incident.id,
            &self.incident.name,
            &self.to_public_markdown(),
            Some(&self.public_chart_svg()),
            None,
            Audience::Users,
        )
    }
}

/// The published postmortem page of incident `id`, or `None` when it has none.
///
/// # Errors
/// The store or the template failed.
pub fn published_page(
    store: &Store,
    config: &StatusConfig,
    links: &Links,
    id: &str,
    now_ms: i64,
) -> std::result::Result<Option<String>, String> {
    let Some(published) = store.status_postmortem(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let Some(incident) = store.status_incident(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // The chart is drawn from the stored series each time; it says so when they
    // have expired.
    let chart = published
        .body
        .contains(&Postmortem::chart_file(id))
        .then(|| draft_at(store, id, now_ms).map(|p| p.public_chart_svg()))
        .transpose()
        .map_err(|e| e.to_string())?;
    render_html(
        config,
        links,
        id,
        &incident.name,
        &published.body,
        chart.as_deref(),
        Some(published.published_ms),
        Audience::Users,
    )
    .map(Some)
    .map_err(|e| e.to_string())
}

// ---- publishing ----

/// Publishes the postmortem of incident `id`: `body` (Markdown), or the draft from
/// the store when `None`. On a resolved incident it stores the postmortem, moves the
/// incident to `postmortem` and posts the update that links to it (event
/// `incident.postmortem`); publishing again replaces the text (event
/// `postmortem.published` with `revised`).
///
/// # Errors
/// [`StatusError::NotFound`] for an unknown incident, [`StatusError::Conflict`] for
/// one not resolved yet, [`StatusError::Invalid`] for an empty or too long text.
pub fn publish(
    store: &Store,
    config: &StatusConfig,
    links: &Links,
    id: &str,
    body: Option<&str>,
    now_ms: i64,
) -> Result<warden_store::StatusIncident> {
    let body = match body {
        Some(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Err(StatusError::Invalid(
                    "body: the postmortem is empty; leave it out to publish the draft".into(),
                ));
            }
            if text.chars().count() > MAX_BODY_CHARS {
                return Err(StatusError::Invalid(format!(
                    "body: at most {MAX_BODY_CHARS} characters"
                )));
            }
            let console = if config.public_url() == Some(links.base.as_str()) {
                ""
            } else {
                links.base.as_str()
            };
            let found = team_only(text, console);
            if !found.is_empty() {
                return Err(StatusError::Invalid(format!(
                    "body: the published postmortem is for users, and this one holds what \
                     is for the team — {}. Remove it, or start from the public version \
                     (`warden postmortem {id} --public`, or publish with no text)",
                    found.join("; ")
                )));
            }
            text.to_owned()
        }
        None => {
            // Refuse before drafting; the write checks again.
            publishable(store.status_incident(id)?, id)?;
            draft_at(store, id, now_ms)?.to_public_markdown()
        }
    };
    // The update links to the postmortem only at the page's public address: an
    // address this request came to (the console's) is no use to subscribers or in
    // an export, and the incident's page links the postmortem anyway.
    let public_link = config.public_url().map(|base| {
        Links {
            base: base.to_owned(),
            static_files: false,
        }
        .postmortem(id)
    });
    let link = public_link.clone().unwrap_or_else(|| links.postmortem(id));
    store.status_write(|tx| {
        let (mut incident, status) = publishable(tx.incident(id)?, id)?;
        match status {
            IncidentStatus::Resolved => {
                tx.set_postmortem(id, &body, now_ms)?;
                incident.status = IncidentStatus::Postmortem.as_str().into();
                incident.updated_ms = now_ms;
                tx.put_incident(&incident)?;
                let all = tx.components()?;
                let text = fill(
                    config.templates.for_incident(IncidentStatus::Postmortem),
                    &TemplateValues {
                        name: incident.name.clone(),
                        components: components::names(&all, &incident.components),
                        ..TemplateValues::default()
                    },
                );
                let update = StatusUpdate {
                    id: new_id(),
                    incident_id: id.to_owned(),
                    status: IncidentStatus::Postmortem.as_str().into(),
                    body: match &public_link {
                        Some(link) => format!("{}\n\nRead it: {link}", text.trim()),
                        None => format!("{}\n\nRead it on this incident's page.", text.trim()),
                    },
                    affected: Vec::new(),
                    created_ms: now_ms,
                    display_ms: now_ms,
                };
                tx.add_update(&update)?;
                crate::incidents::record(tx, "incident.postmortem", &incident, &update)?;
            }
            // `postmortem`: already published (or posted by hand); replace the text.
            _ => {
                let revised = tx.postmortem(id)?.is_some();
                tx.set_postmortem(id, &body, now_ms)?;
                incident.updated_ms = now_ms;
                tx.put_incident(&incident)?;
                tx.append_event_at(
                    now_ms,
                    &NewEvent {
                        kind: "postmortem.published".into(),
                        release: None,
                        payload: serde_json::json!({
                            "incident_id": id,
                            "name": incident.name,
                            "revised": revised,
                            "link": link,
                            "summary": format!(
                                "postmortem of {} {}",
                                incident.name,
                                if revised { "revised" } else { "published" }
                            ),
                        }),
                    },
                )?;
            }
        }
        tx.incident(id)?
            .ok_or_else(|| StatusError::NotFound(format!("incident {id} vanished while writing")))
    })
}

/// The incident, if a postmortem can be published on it: one that is resolved (or
/// already has its postmortem).
fn publishable(
    incident: Option<warden_store::StatusIncident>,
    id: &str,
) -> Result<(warden_store::StatusIncident, IncidentStatus)> {
    let incident = match incident {
        Some(incident) if incident.kind == KIND_INCIDENT => incident,
        Some(_) => {
            return Err(StatusError::NotFound(format!(
                "{id} is a scheduled maintenance, not an incident: only incidents have a postmortem"
            )));
        }
        None => {
            return Err(StatusError::NotFound(format!(
                "no incident {id:?}: `warden incident list` shows the recent ones"
            )));
        }
    };
    let status: IncidentStatus = incident.status.parse().map_err(StatusError::Invalid)?;
    if !status.is_closed() {
        return Err(StatusError::Conflict(format!(
            "incident {id} is {status}: resolve it first (`warden incident resolve {id}`), \
             then publish its postmortem"
        )));
    }
    Ok((incident, status))
}

// ---- Markdown to HTML ----

/// Shows Markdown as HTML: headings, paragraphs, lists and task lists, tables, block
/// quotes, code, `**bold**`, `_emphasis_` and links (http, https and site-relative
/// only). Every piece of text is HTML-escaped, and raw HTML in the Markdown is shown
/// as text, so a postmortem cannot inject markup. The image whose target is
/// `chart_target` becomes `chart` (an SVG drawn by Warden); other images show as
/// their description (the page loads nothing from elsewhere).
#[must_use]
pub fn markdown_to_html(markdown: &str, chart_target: &str, chart: Option<&str>) -> String {
    let lines: Vec<&str> = markdown.lines().map(str::trim_end).collect();
    let mut out = String::with_capacity(markdown.len() * 2);
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, out: &mut String| {
        if !paragraph.is_empty() {
            out.push_str("<p>");
            out.push_str(&inline(&paragraph.join(" ")));
            out.push_str("</p>\n");
            paragraph.clear();
        }
    };
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            flush(&mut paragraph, &mut out);
            index += 1;
            continue;
        }
        if let Some((level, text)) = heading(trimmed) {
            flush(&mut paragraph, &mut out);
            out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            index += 1;
            continue;
        }
        if trimmed.starts_with("```") {
            flush(&mut paragraph, &mut out);
            index += 1;
            let mut code = Vec::new();
            while index < lines.len() && !lines[index].trim_start().starts_with("```") {
                code.push(lines[index]);
                index += 1;
            }
            index += 1;
            out.push_str(&format!(
                "<pre><code>{}</code></pre>\n",
                crate::page::escape(&code.join("\n"))
            ));
            continue;
        }
        if matches!(trimmed, "---" | "***" | "___") {
            flush(&mut paragraph, &mut out);
            out.push_str("<hr>\n");
            index += 1;
            continue;
        }
        if let Some((alt, target)) = image(trimmed) {
            flush(&mut paragraph, &mut out);
            match chart {
                Some(svg) if target == chart_target => out.push_str(&format!(
                    "<figure class=\"chart\">{svg}<figcaption>{}</figcaption></figure>\n",
                    inline(alt)
                )),
                _ => out.push_str(&format!(
                    "<p class=\"image\">[image: {}]</p>\n",
                    inline(alt)
                )),
            }
            index += 1;
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut paragraph, &mut out);
            let mut rows = Vec::new();
            while index < lines.len() && lines[index].trim_start().starts_with('|') {
                rows.push(lines[index].trim());
                index += 1;
            }
            table(&rows, &mut out);
            continue;
        }
        if list_item(trimmed).is_some() {
            flush(&mut paragraph, &mut out);
            let mut items: Vec<String> = Vec::new();
            while index < lines.len() {
                let current = lines[index];
                if let Some(item) = list_item(current.trim_start()) {
                    items.push(item.to_owned());
                } else if current.starts_with("  ") && !current.trim().is_empty() {
                    if let Some(last) = items.last_mut() {
                        last.push(' ');
                        last.push_str(current.trim());
                    }
                } else {
                    break;
                }
                index += 1;
            }
            let tasks = items.iter().any(|i| task(i).is_some());
            out.push_str(if tasks {
                "<ul class=\"checklist\">\n"
            } else {
                "<ul>\n"
            });
            for item in &items {
                match task(item) {
                    Some((done, text)) => out.push_str(&format!(
                        "<li><input type=\"checkbox\" disabled{}> {}</li>\n",
                        if done { " checked" } else { "" },
                        inline(text)
                    )),
                    None => out.push_str(&format!("<li>{}</li>\n", inline(item))),
                }
            }
            out.push_str("</ul>\n");
            continue;
        }
        if trimmed.starts_with('>') {
            flush(&mut paragraph, &mut out);
            let mut quoted = Vec::new();
            while index < lines.len() && lines[index].trim_start().starts_with('>') {
                quoted.push(lines[index].trim_start()[1..].trim());
                index += 1;
            }
            out.push_str(&format!(
                "<blockquote><p>{}</p></blockquote>\n",
                inline(&quoted.join(" "))
            ));
            continue;
        }
        paragraph.push(trimmed);
        index += 1;
    }
    flush(&mut paragraph, &mut out);
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if rest.is_empty() {
        return Some((level, ""));
    }
    rest.strip_prefix(' ')
        .map(|text| (level, text.trim().trim_end_matches('#').trim_end()))
}

fn list_item(line: &str) -> Option<&str> {
    line.strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))
        .or_else(|| line.strip_prefix("+ "))
}

fn task(item: &str) -> Option<(bool, &str)> {
    if let Some(text) = item.strip_prefix("[ ] ") {
        Some((false, text))
    } else {
        item.strip_prefix("[x] ")
            .or_else(|| item.strip_prefix("[X] "))
            .map(|text| (true, text))
    }
}

/// `![alt](target)` alone on a line.
fn image(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("![")?;
    let (alt, rest) = rest.split_once("](")?;
    let target = rest.strip_suffix(')')?;
    (!target.contains(char::is_whitespace)).then_some((alt, target))
}

fn table(rows: &[&str], out: &mut String) {
    let cells = |row: &str| -> Vec<String> {
        let inner = row.trim();
        let inner = inner.strip_prefix('|').unwrap_or(inner);
        let inner = inner
            .strip_suffix('|')
            .filter(|_| !inner.ends_with("\\|"))
            .unwrap_or(inner);
        let mut cells = Vec::new();
        let mut current = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    current.push_str("\\|");
                    chars.next();
                }
                '|' => cells.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        cells.push(current);
        cells.into_iter().map(|c| c.trim().to_owned()).collect()
    };
    let separator = |row: &str| {
        cells(row).iter().all(|c| {
            let c = c.trim_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
    };
    out.push_str("<div class=\"table\"><table>\n");
    let (head, body) = match rows {
        [head, sep, rest @ ..] if separator(sep) => (Some(*head), rest),
        _ => (None, rows),
    };
    if let Some(head) = head {
        out.push_str("<thead><tr>");
        for cell in cells(head) {
            out.push_str(&format!("<th>{}</th>", inline(&cell)));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in body {
        out.push_str("<tr>");
        for cell in cells(row) {
            out.push_str(&format!("<td>{}</td>", inline(&cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

/// Inline Markdown to escaped HTML.
fn inline(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut strong = false;
    let mut emphasis = false;
    let closes = |from: usize, pattern: &[char]| {
        (from..chars.len()).any(|k| chars[k..].starts_with(pattern))
    };
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        match c {
            '\\' if chars.get(index + 1).is_some_and(char::is_ascii_punctuation) => {
                push_escaped(&mut out, chars[index + 1]);
                index += 2;
            }
            '`' => match (index + 1..chars.len()).find(|&k| chars[k] == '`') {
                Some(end) => {
                    let code: String = chars[index + 1..end].iter().collect();
                    out.push_str(&format!("<code>{}</code>", crate::page::escape(&code)));
                    index = end + 1;
                }
                None => {
                    push_escaped(&mut out, c);
                    index += 1;
                }
            },
            '*' if chars.get(index + 1) == Some(&'*') => {
                if strong {
                    out.push_str("</strong>");
                    strong = false;
                } else if closes(index + 2, &['*', '*']) {
                    out.push_str("<strong>");
                    strong = true;
                } else {
                    out.push_str("**");
                }
                index += 2;
            }
            '_' if (emphasis && !chars.get(index + 1).is_some_and(|n| n.is_alphanumeric()))
                || (!emphasis
                    && (index == 0 || !chars[index - 1].is_alphanumeric())
                    && chars.get(index + 1).is_some_and(|n| !n.is_whitespace())
                    && closes(index + 1, &['_'])) =>
            {
                out.push_str(if emphasis { "</em>" } else { "<em>" });
                emphasis = !emphasis;
                index += 1;
            }
            '[' => match link(&chars, index) {
                Some((label, url, end)) => {
                    if safe_url(&url) {
                        out.push_str(&format!(
                            "<a href=\"{}\">{}</a>",
                            crate::page::escape(&url),
                            inline(&label)
                        ));
                    } else {
                        out.push_str(&format!(
                            "{} ({})",
                            inline(&label),
                            crate::page::escape(&url)
                        ));
                    }
                    index = end;
                }
                None => {
                    push_escaped(&mut out, c);
                    index += 1;
                }
            },
            c => {
                push_escaped(&mut out, c);
                index += 1;
            }
        }
    }
    if emphasis {
        out.push_str("</em>");
    }
    if strong {
        out.push_str("</strong>");
    }
    out
}

/// `[label](url)` at `start`: the label, the url and the index after it.
fn link(chars: &[char], start: usize) -> Option<(String, String, usize)> {
    let close = (start + 1..chars.len()).find(|&k| chars[k] == ']')?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = (close + 2..chars.len()).find(|&k| chars[k] == ')')?;
    let label: String = chars[start + 1..close].iter().collect();
    let url: String = chars[close + 2..end].iter().collect();
    Some((label, url, end + 1))
}

fn safe_url(url: &str) -> bool {
    let allowed = url.starts_with("https://")
        || url.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//"))
        || url.starts_with('#');
    allowed && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use warden_store::{Labels, Sample};

    use super::*;
    use crate::incidents::{self, OpenIncident, UpdateIncident};

    const T0: i64 = 1_700_000_000_000;
    const LEAK_RATE: f64 = 9.8;

    fn release(name: &str, dependencies: &[(&str, &str)]) -> Release {
        Release {
            name: name.into(),
            added_ms: T0 - 3_600_000,
            version: "0.1.0".into(),
            git_commit: format!("commit-{name}"),
            build_lockfile_sha256: format!("lock-{name}"),
            lockfile_sha256: format!("lock-{name}"),
            binary_sha256: format!("bin-{name}"),
            binary_path: format!("/data/releases/{name}/warden"),
            args: Vec::new(),
            dependencies: dependencies
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn event(
        store: &Store,
        at: i64,
        kind: &str,
        release: Option<&str>,
        payload: serde_json::Value,
    ) -> Event {
        store
            .append_event_at(
                at,
                &NewEvent {
                    kind: kind.into(),
                    release: release.map(str::to_owned),
                    payload,
                },
            )
            .unwrap()
    }

    fn memory(store: &Store, at: i64, release: &str, instance: &str, heap: f64) {
        let labels = |extra: Option<(&str, &str)>| {
            let mut labels = Labels::from([
                ("instance".to_owned(), instance.to_owned()),
                ("release".to_owned(), release.to_owned()),
            ]);
            if let Some((k, v)) = extra {
                labels.insert(k.to_owned(), v.to_owned());
            }
            labels
        };
        store
            .append_samples(
                at,
                &[
                    Sample {
                        name: series::RSS.into(),
                        labels: labels(None),
                        value: heap + 50e6,
                    },
                    Sample {
                        name: series::HEAP.into(),
                        labels: labels(Some(("kind", "allocated"))),
                        value: heap,
                    },
                ],
            )
            .unwrap();
    }

    /// What the scenario recorded, to check the draft against.
    struct Recorded {
        incident: String,
        deploy_started: Event,
        deployed: Event,
        pending: Event,
        firing: Event,
        rollback: Event,
        opened_ms: i64,
        resolved_ms: i64,
        v2_rss_peak: (i64, f64),
    }

    /// The reference incident, recorded through the real functions: v1 runs, v2
    /// (serde_json 1.0.120 → 1.0.121) is deployed by force, leaks, the MemoryLeak
    /// alert fires, the incident opens, Warden rolls back, the incident resolves.
    fn scenario(name: &str) -> (Store, StatusConfig, Recorded) {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        components::sync(&store, &config, T0 - 3_600_000).unwrap();
        let deps = [
            ("itoa", "1.0.11"),
            ("serde", "1.0.200"),
            ("serde_json", "1.0.120"),
        ];
        store.add_release(&release("v1", &deps)).unwrap();
        let mut leaky = deps;
        leaky[2] = ("serde_json", "1.0.121");
        store.add_release(&release("v2", &leaky)).unwrap();

        let minute = MINUTE;
        event(
            &store,
            T0,
            DEPLOYED,
            Some("v1"),
            serde_json::json!({"summary": "v1 started by warden up", "from": null}),
        );
        let deploy_started = event(
            &store,
            T0 + 10 * minute,
            DEPLOY_STARTED,
            Some("v2"),
            serde_json::json!({
                "summary": "deploy of v2 started (from v1)",
                "from": "v1",
                "forced": true,
                "overridden": ["the Cargo.lock differs from v1's and no passing gate report was given"],
                "canary_percent": null,
            }),
        );
        let deployed = event(
            &store,
            T0 + 10 * minute + 2_000,
            DEPLOYED,
            Some("v2"),
            serde_json::json!({
                "summary": "v2 is live (switch in 0.31 ms); v1 stays warm for 30m",
                "from": "v1",
                "switch_ms": 0.31,
            }),
        );
        // Memory: v1 flat; v2 grows LEAK_RATE MB a minute while it serves.
        let mut v2_rss_peak = (0, 0.0);
        for step in 0..=120 {
            let at = T0 + 5 * minute + step * 30_000;
            memory(&store, at, "v1", "127.0.0.1:9000", 150e6);
            if (T0 + 10 * minute..=T0 + 45 * minute).contains(&at) {
                let minutes = (at - T0 - 10 * minute) as f64 / minute as f64;
                let heap = 150e6 + LEAK_RATE * 1e6 * minutes;
                memory(&store, at, "v2", "127.0.0.1:9001", heap);
                v2_rss_peak = (at, heap + 50e6);
            }
        }
        let fingerprint = "MemoryLeak/127.0.0.1:9001";
        let pending = event(
            &store,
            T0 + 40 * minute,
            "alert.pending",
            Some("v2"),
            serde_json::json!({
                "fingerprint": fingerprint, "alert": "MemoryLeak", "severity": "critical",
                "instance": "127.0.0.1:9001", "release": "v2",
                "summary": "memory leak in release v2 on 127.0.0.1:9001: heap +9.8 MB/min",
            }),
        );
        let assessment = |current: f64| {
            serde_json::json!({
                "leaking": true, "verdict": "leak", "rate_bytes_per_s": LEAK_RATE * 1e6 / 60.0,
                "rate_low": 150_000.0, "rate_high": 170_000.0, "p_value": 1.5e-9,
                "current_bytes": current, "exhaustion_in": "6h 2m",
            })
        };
        let firing = event(
            &store,
            T0 + 43 * minute,
            "alert.firing",
            Some("v2"),
            serde_json::json!({
                "fingerprint": fingerprint, "alert": "MemoryLeak", "severity": "critical",
                "instance": "127.0.0.1:9001", "release": "v2",
                "summary": "memory leak in release v2 on 127.0.0.1:9001: heap +9.8 MB/min, exhausts the 3815 MiB limit in about 6h 2m",
                "description": "heap allocated and RSS both grow: live objects are accumulating.",
                "labels": {"evidence": "heap+rss"},
                "details": {
                    "evidence": "heap+rss", "rate_mb_per_min": LEAK_RATE,
                    "exhaustion_in_s": 21_720, "exhausts_at": "2023-11-15T05:05:20Z",
                    "limit_bytes": 4e9,
                    "heap": assessment(473.4e6), "rss": assessment(523.4e6),
                },
                "dashboard_url": null,
            }),
        );
        let opened = incidents::open(
            &store,
            &config,
            &OpenIncident {
                name: name.into(),
                components: BTreeMap::from([
                    ("authentication".into(), ComponentStatus::MajorOutage),
                    ("data-retrieval".into(), ComponentStatus::PartialOutage),
                ]),
                ..OpenIncident::default()
            },
            T0 + 43 * minute + 1_000,
        )
        .unwrap();
        event(
            &store,
            T0 + 43 * minute + 1_500,
            "notification.delivery",
            None,
            serde_json::json!({
                "notifier": "oncall", "fingerprint": fingerprint, "status": "firing",
                "attempt": 1, "outcome": "delivered", "at_ms": T0 + 43 * minute + 1_500,
            }),
        );
        let rollback = event(
            &store,
            T0 + 45 * minute,
            ROLLED_BACK,
            Some("v1"),
            serde_json::json!({
                "summary": "automatic rollback from v2 to v1 in 0.42 ms: MemoryLeak fired",
                "from": "v2", "automatic": true, "reason": "MemoryLeak fired",
                "switch_ms": 0.42, "warm": true,
            }),
        );
        event(
            &store,
            T0 + 45 * minute,
            MARKED_BAD,
            Some("v2"),
            serde_json::json!({"summary": "v2 marked bad: MemoryLeak fired", "reason": "MemoryLeak fired", "automatic": true}),
        );
        for (at, status) in [
            (46, IncidentStatus::Identified),
            (47, IncidentStatus::Monitoring),
        ] {
            incidents::update(
                &store,
                &config,
                &opened.id,
                &UpdateIncident {
                    status: Some(status),
                    ..UpdateIncident::default()
                },
                T0 + at * minute,
            )
            .unwrap();
        }
        event(
            &store,
            T0 + 46 * minute,
            "alert.resolved",
            Some("v2"),
            serde_json::json!({"fingerprint": fingerprint, "alert": "MemoryLeak", "instance": "127.0.0.1:9001", "release": "v2", "summary": "MemoryLeak resolved"}),
        );
        let resolved_ms = T0 + 58 * minute;
        incidents::resolve(
            &store,
            &config,
            &opened.id,
            &UpdateIncident::default(),
            resolved_ms,
        )
        .unwrap();
        (
            store,
            config,
            Recorded {
                incident: opened.id,
                deploy_started,
                deployed,
                pending,
                firing,
                rollback,
                opened_ms: T0 + 43 * minute + 1_000,
                resolved_ms,
                v2_rss_peak,
            },
        )
    }

    fn cite(event: &Event) -> String {
        format!("#{} {}", event.id, event.kind)
    }

    #[test]
    fn the_summary_is_the_first_alert_to_the_resolution_with_components() {
        let (store, _, r) = scenario("Errors on sign-in and data retrieval");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        assert_eq!(p.summary.start_ms, r.firing.at_ms, "the alert came first");
        assert_eq!(p.summary.start_source.event_id, Some(r.firing.id));
        assert_eq!(p.summary.end_ms, Some(r.resolved_ms));
        assert_eq!(
            p.summary.end_source.as_ref().unwrap().record,
            "incident.resolved"
        );
        assert_eq!(p.summary.duration_ms, Some(15 * MINUTE));
        assert_eq!(p.incident.opened_ms, r.opened_ms);
        let components: Vec<(&str, Option<&str>)> = p
            .incident
            .components
            .iter()
            .map(|c| (c.id.as_str(), c.worst_status.as_deref()))
            .collect();
        assert_eq!(
            components,
            [
                ("authentication", Some("major_outage")),
                ("data-retrieval", Some("partial_outage"))
            ]
        );
        assert_eq!(
            p.incident.components[0].source.as_ref().unwrap().record,
            "incident.opened"
        );
        // No client windows recorded: the share is not measured, and the draft says so.
        assert!(!p.summary.users.measured);
        assert_eq!(p.summary.users.share, None);
        let md = p.to_markdown();
        assert!(md.contains("was not measured"), "{md}");
        assert!(
            md.contains(&format!(
                "- **Start:** {} [{}]",
                clock(r.firing.at_ms),
                cite(&r.firing)
            )),
            "{md}"
        );
        assert!(md.contains("- **Duration:** 15 min"), "{md}");
        assert!(md.contains("Authentication (major outage) [#"), "{md}");
    }

    #[test]
    fn the_share_of_users_affected_comes_from_the_proxys_client_windows() {
        let (store, _, r) = scenario("Errors");
        // Two windows inside the incident: 10 clients, 6 of them affected; client 3
        // comes back in the second window and counts once.
        for (start, clients, affected) in [
            (r.firing.at_ms, 0..7_u64, 0..4_u64),
            (r.firing.at_ms + MINUTE, 3..10, 3..6),
        ] {
            let mut window = warden_store::ClientWindow::new(start, start + MINUTE);
            clients.for_each(|c| window.clients.insert(c));
            affected.for_each(|c| window.affected.insert(c));
            store.record_client_window(&window).unwrap();
        }
        // One long before does not count.
        let mut early = warden_store::ClientWindow::new(T0, T0 + MINUTE);
        (100..200_u64).for_each(|c| early.clients.insert(c));
        store.record_client_window(&early).unwrap();
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let users = &p.summary.users;
        assert!(users.measured);
        assert_eq!((users.clients, users.affected, users.windows), (10, 6, 2));
        assert_eq!(users.share, Some(0.6));
        let md = p.to_markdown();
        assert!(
            md.contains("- **Impact:** 60.0% of users affected: 6 of 10 distinct clients got a failed or slow response (2 windows,"),
            "{md}"
        );
        assert!(
            !p.corrective_measures
                .iter()
                .any(|m| m.contains("Measure the users"))
        );
    }

    #[test]
    fn the_culprit_is_the_only_changed_dependency_between_the_releases() {
        let (store, _, r) = scenario("Errors");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let bad = p.releases.bad.as_ref().unwrap();
        let good = p.releases.good.as_ref().unwrap();
        assert_eq!((bad.name.as_str(), good.name.as_str()), ("v2", "v1"));
        assert_eq!(bad.source.event_id, Some(r.rollback.id), "rolled back from");
        assert!(bad.recorded && bad.packages == 3);
        assert_eq!(p.candidates.len(), 1);
        let c = &p.candidates[0];
        assert_eq!(
            (
                c.name.as_str(),
                c.old.as_deref(),
                c.new.as_deref(),
                c.change,
                c.bump
            ),
            (
                "serde_json",
                Some("1.0.120"),
                Some("1.0.121"),
                ChangeKind::Upgraded,
                Some(Bump::Patch)
            )
        );
        assert_eq!(p.culprit.as_deref(), Some("serde_json"));
        assert!(
            p.culprit_basis.contains("only dependency"),
            "{}",
            p.culprit_basis
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["culprit"], "serde_json");
        assert_eq!(json["candidates"][0]["change"], "upgraded");
        let md = p.to_markdown();
        assert!(
            md.contains("| 1 | serde_json | 1.0.120 | 1.0.121 | upgraded (patch) |"),
            "{md}"
        );
        assert!(
            md.contains("**Root cause (candidate):** serde_json 1.0.120 → 1.0.121 in release v2"),
            "{md}"
        );
        assert!(
            md.contains("- [ ] Gate the update of serde_json (1.0.120 → 1.0.121)"),
            "{md}"
        );
    }

    #[test]
    fn candidates_rank_version_changes_before_additions_and_removals() {
        let good = release(
            "v1",
            &[
                ("zlib", "1.0.0"),
                ("gone", "0.1.0"),
                ("serde_json", "1.0.120"),
            ],
        );
        let bad = release(
            "v3",
            &[
                ("zlib", "1.1.0"),
                ("fresh", "0.2.0"),
                ("serde_json", "1.0.121"),
            ],
        );
        let mut gaps = Vec::new();
        let ranked = dependency_changes(Some(&good), Some(&bad), "v1", "v3", &mut gaps);
        let names: Vec<(usize, &str)> = ranked.iter().map(|c| (c.rank, c.name.as_str())).collect();
        assert_eq!(
            names,
            [(1, "serde_json"), (2, "zlib"), (3, "fresh"), (4, "gone")]
        );
        assert!(gaps.is_empty());
        let releases = Releases {
            bad: None,
            good: None,
        };
        let (culprit, basis) = culprit(&ranked, &releases);
        assert_eq!(culprit.as_deref(), Some("serde_json"));
        assert!(basis.contains("first of 4"), "{basis}");
        // A release recorded without its lockfile is said, not guessed at.
        let bare = release("v4", &[]);
        let none = dependency_changes(Some(&good), Some(&bare), "v1", "v4", &mut gaps);
        assert!(none.is_empty());
        assert!(gaps[0].contains("without a Cargo.lock"), "{gaps:?}");
    }

    #[test]
    fn a_python_services_releases_name_the_changed_package_by_pep_440() {
        // As `warden release add --lockfile requirements.txt` records them.
        let good = release(
            "py-v1",
            &[("PyPI:flask", "3.1.3"), ("PyPI:jsonfast", "1.0.9")],
        );
        let bad = release(
            "py-v2",
            &[("PyPI:flask", "3.1.3"), ("PyPI:jsonfast", "1.0.10")],
        );
        let mut gaps = Vec::new();
        let ranked = dependency_changes(Some(&good), Some(&bad), "py-v1", "py-v2", &mut gaps);
        assert!(gaps.is_empty(), "{gaps:?}");
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].name, "jsonfast");
        assert_eq!(
            ranked[0].change,
            ChangeKind::Upgraded,
            "1.0.10 is after 1.0.9"
        );
        assert_eq!(ranked[0].versions(), "1.0.9 → 1.0.10");
    }

    #[test]
    fn the_memory_evidence_comes_from_the_alert_and_the_stored_series() {
        let (store, _, r) = scenario("Errors");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let leak = p.memory.leak_alert.as_ref().unwrap();
        assert_eq!(leak.source.event_id, Some(r.firing.id));
        assert_eq!(leak.evidence.as_deref(), Some("heap+rss"));
        assert_eq!(leak.rate_mb_per_min, Some(LEAK_RATE));
        assert_eq!(leak.exhaustion_in_s, Some(21_720));
        let heap = leak.heap.as_ref().unwrap();
        assert_eq!(heap.verdict.as_deref(), Some("leak"));
        assert!((heap.rate_mb_per_min.unwrap() - LEAK_RATE).abs() < 1e-9);
        assert_eq!(heap.current_bytes, Some(473.4e6));
        // Both releases' RSS and heap, from before the deploy to after the end.
        assert_eq!(p.memory.series.len(), 4, "{:?}", p.memory.series);
        assert!(p.memory.from_ms <= r.deployed.at_ms && p.memory.to_ms >= r.resolved_ms);
        let v2_rss = p
            .memory
            .series
            .iter()
            .find(|s| s.metric == series::RSS && s.release == "v2")
            .unwrap();
        assert_eq!(v2_rss.peak, r.v2_rss_peak);
        assert_eq!(v2_rss.instance, "127.0.0.1:9001");
        let md = p.to_markdown();
        assert!(
            md.contains("+9.80 MB/min (heap allocated and RSS both grow)"),
            "{md}"
        );
        assert!(
            md.contains(&format!(
                "{} at {}",
                mb(r.v2_rss_peak.1),
                clock_time(r.v2_rss_peak.0)
            )),
            "{md}"
        );
        assert!(md.contains(&format!("- **Heap allocated:** leak, floor +9.80 MB/min, p = 1.5e-9, 473.4 MB when it fired [{}]", cite(&r.firing))), "{md}");
        assert!(md.contains(&Postmortem::chart_file(&r.incident)));
        let svg = p.chart_svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("marker-rollback") && svg.contains("marker-alert-firing"));
        assert!(svg.contains("RSS v2 · 127.0.0.1:9001"));
    }

    #[test]
    fn a_leak_found_by_comparison_names_the_release_compared_with() {
        let event = |method: &str| Event {
            id: 7,
            at_ms: T0,
            kind: "alert.firing".into(),
            release: Some("v2".into()),
            payload: serde_json::json!({
                "alert": "MemoryLeak", "release": "v2",
                "details": {"method": method, "compared_with": {"release": "v1"}},
            }),
        };
        assert_eq!(
            leak_evidence(&event("comparison")).compared_with.as_deref(),
            Some("v1")
        );
        assert_eq!(leak_evidence(&event("detector")).compared_with, None);
    }

    #[test]
    fn the_timeline_lists_every_event_with_absolute_and_relative_times() {
        let (store, _, r) = scenario("Errors");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let kinds: Vec<&str> = p.timeline.iter().map(|e| e.kind.as_str()).collect();
        // The bad release's deploy, though earlier than the window, leads it.
        assert_eq!(&kinds[..2], [DEPLOY_STARTED, DEPLOYED]);
        assert_eq!(p.timeline[0].event_id, r.deploy_started.id);
        for kind in [
            "alert.pending",
            "alert.firing",
            "component.status",
            "incident.opened",
            "notification.delivery",
            ROLLED_BACK,
            MARKED_BAD,
            "incident.updated",
            "alert.resolved",
            "incident.resolved",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert_eq!(kinds.last(), Some(&"incident.resolved"));
        let firing = p
            .timeline
            .iter()
            .find(|e| e.event_id == r.firing.id)
            .unwrap();
        assert_eq!(firing.offset_ms, 0);
        let pending = p
            .timeline
            .iter()
            .find(|e| e.event_id == r.pending.id)
            .unwrap();
        assert_eq!(pending.offset_ms, -3 * MINUTE);
        // Every event of the window is there, in time order.
        let all = store
            .events(&EventFilter {
                since_ms: Some(r.firing.at_ms - LEAD_MS),
                until_ms: Some(r.resolved_ms + 1),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(p.timeline.len(), all.len() + 2);
        assert!(p.timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let md = p.to_markdown();
        assert!(
            md.contains(&format!(
                "| {} | T−3 min | {} | v2 |",
                clock_seconds(r.pending.at_ms),
                cite(&r.pending)
            )),
            "{md}"
        );
        assert!(
            md.contains("notification of MemoryLeak/127.0.0.1:9001 (firing) to oncall: delivered"),
            "{md}"
        );
    }

    #[test]
    fn the_resolution_says_how_and_when_with_sources() {
        let (store, _, r) = scenario("Errors");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        if std::env::var_os("POSTMORTEM_PRINT").is_some() {
            println!("{}", p.to_markdown());
        }
        let rollback = p.resolution.rollback.as_ref().unwrap();
        assert_eq!(rollback.at.source.event_id, Some(r.rollback.id));
        assert_eq!(rollback.at.after_start_ms, 2 * MINUTE);
        assert_eq!(rollback.automatic, Some(true));
        assert_eq!(rollback.switch_ms, Some(0.42));
        assert_eq!(rollback.from.as_deref(), Some("v2"));
        let told = p.resolution.first_public_update.as_ref().unwrap();
        assert_eq!(told.after_start_ms, 1_000);
        assert_eq!(told.source.record, "incident.opened");
        assert_eq!(
            p.resolution.bad_deployed.as_ref().unwrap().source.event_id,
            Some(r.deployed.id)
        );
        assert_eq!(p.resolution.forced_past.len(), 1);
        assert_eq!(
            p.resolution.forced_source.as_ref().unwrap().event_id,
            Some(r.deploy_started.id)
        );
        let md = p.to_markdown();
        assert!(md.contains(&format!("- **Rollback:** {} (T+2 min), from v2 to v1, automatic, switched in 0.42 ms: MemoryLeak fired [{}]", clock_seconds(r.rollback.at_ms), cite(&r.rollback))), "{md}");
        assert!(
            md.contains("- **Users first told:**") && md.contains("1 s after the start"),
            "{md}"
        );
        // The checklist: seeded from the data, with a line for people.
        let measures = p.corrective_measures.join("\n");
        assert!(
            measures.contains(&format!(
                "was forced past: the Cargo.lock differs from v1's and no passing gate report was given [{}]",
                cite(&r.deploy_started)
            )),
            "{measures}"
        );
        assert!(
            measures.contains("Detect sooner: the bad release served users for 32 min 58 s"),
            "{measures}"
        );
        assert!(
            !measures.contains("Roll back automatically"),
            "it was automatic: {measures}"
        );
        assert!(md.contains("- [ ] _(measure, owner, due date)_"));
    }

    #[test]
    fn an_incident_without_records_around_it_is_drafted_with_what_is_missing() {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        components::sync(&store, &config, 0).unwrap();
        let opened = incidents::open(
            &store,
            &config,
            &OpenIncident {
                name: "Slow pages".into(),
                ..OpenIncident::default()
            },
            T0,
        )
        .unwrap();
        let p = draft_at(&store, &opened.id, T0 + MINUTE).unwrap();
        assert_eq!(p.culprit, None);
        assert!(p.candidates.is_empty());
        assert_eq!(p.summary.end_ms, None);
        assert!(
            p.gaps.iter().any(|g| g.contains("not resolved yet")),
            "{:?}",
            p.gaps
        );
        assert!(
            p.gaps
                .iter()
                .any(|g| g.contains("releases involved are not known"))
        );
        let md = p.to_markdown();
        assert!(md.contains("- **End:** not resolved yet"));
        assert!(md.contains("No alert fired for this incident"), "{md}");
        assert_eq!(
            serde_json::to_value(&p).unwrap()["culprit"],
            serde_json::Value::Null
        );
        assert!(
            p.to_html(&config, &links())
                .unwrap()
                .contains("No data in this range")
        );
    }

    #[test]
    fn an_unknown_incident_says_how_to_find_one() {
        let store = Store::in_memory().unwrap();
        let error = draft(&store, "nope").unwrap_err();
        assert!(matches!(error, StatusError::NotFound(_)));
        assert!(
            error.to_string().contains("warden incident list"),
            "{error}"
        );
    }

    fn links() -> Links {
        Links {
            base: "http://127.0.0.1:8081".into(),
            static_files: false,
        }
    }

    #[test]
    fn the_html_escapes_every_text_and_embeds_the_chart() {
        let name = "Errors on <script>alert(1)</script> & \"sign-in\"";
        let (store, config, r) = scenario(name);
        // A person's update with markup in it.
        store
            .status_write(|tx| {
                tx.append_event_at(
                    r.firing.at_ms + 500,
                    &NewEvent {
                        kind: "alert.firing".into(),
                        release: Some("v2".into()),
                        payload: serde_json::json!({"alert": "Custom", "summary": "<img src=x onerror=alert(2)> [x](javascript:alert(3))"}),
                    },
                )
            })
            .unwrap();
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let html = p.to_html(&config, &links()).unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("href=\"javascript"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp;"),
            "{html}"
        );
        assert!(
            html.contains("<figure class=\"chart\"><svg"),
            "the chart is inline"
        );
        assert!(html.contains("<input type=\"checkbox\" disabled> Gate the update of serde_json"));
        assert!(
            !html.contains("src=\"http"),
            "nothing loaded from elsewhere"
        );
        assert!(html.contains("<table>"));
    }

    #[test]
    fn markdown_shows_as_escaped_html() {
        let md = "# Title <b>\n\nSome **bold** and `co<de>` and _it_ with snake_case.\n\n\
                  - [ ] todo <i>\n- [x] done\n\n- plain [link](https://example.com/a?b=\"c\") \
                  [bad](javascript:alert(1)) [#12 alert.firing]\n\n| a | b \\| c |\n|---|---|\n| <x> | 2 |\n\n\
                  > quoted\n\n![alt](other.svg)\n![chart](c.svg)\n";
        let html = markdown_to_html(md, "c.svg", Some("<svg>CHART</svg>"));
        assert!(html.contains("<h1>Title &lt;b&gt;</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<code>co&lt;de&gt;</code>"));
        assert!(html.contains("<em>it</em> with snake_case."), "{html}");
        assert!(html.contains("<ul class=\"checklist\">"));
        assert!(html.contains("<input type=\"checkbox\" disabled> todo &lt;i&gt;"));
        assert!(html.contains("<input type=\"checkbox\" disabled checked> done"));
        assert!(
            html.contains("<a href=\"https://example.com/a?b=&quot;c&quot;\">link</a>"),
            "{html}"
        );
        assert!(html.contains("bad (javascript:alert(1))"), "{html}");
        assert!(html.contains("[#12 alert.firing]"));
        assert!(html.contains("<th>a</th><th>b | c</th>"), "{html}");
        assert!(html.contains("<td>&lt;x&gt;</td>"));
        assert!(html.contains("<blockquote><p>quoted</p></blockquote>"));
        assert!(html.contains("[image: alt]"));
        assert!(html.contains("<figure class=\"chart\"><svg>CHART</svg>"));
        assert_eq!(
            md_text("a|b <c> [d] *e* `f`"),
            "a\\|b \\<c\\> \\[d\\] \\*e\\* \\`f\\`"
        );
        let round = markdown_to_html(&md_text("a|b <c> [d](x) *e* `f`"), "", None);
        assert_eq!(round, "<p>a|b &lt;c&gt; [d](x) *e* `f`</p>\n");
    }

    #[test]
    fn publishing_stores_it_posts_the_update_and_shows_it() {
        let (store, config, r) = scenario("Errors");
        let links = links();
        // Not before the incident is resolved.
        let open = incidents::open(
            &store,
            &config,
            &OpenIncident {
                name: "Still open".into(),
                ..OpenIncident::default()
            },
            T0 + 100 * MINUTE,
        )
        .unwrap();
        let early = publish(&store, &config, &links, &open.id, None, T0 + 101 * MINUTE);
        assert!(matches!(early, Err(StatusError::Conflict(_))), "{early:?}");
        assert!(publish(&store, &config, &links, &r.incident, Some("  "), T0).is_err());

        let at = T0 + 3 * 24 * 60 * MINUTE;
        let published = publish(&store, &config, &links, &r.incident, None, at).unwrap();
        assert_eq!(published.status, "postmortem");
        let update = published.updates.last().unwrap();
        assert_eq!(update.status, "postmortem");
        // No page URL is configured: the update does not carry the console's.
        assert!(
            update.body.ends_with("Read it on this incident's page.")
                && !update.body.contains("127.0.0.1"),
            "{}",
            update.body
        );
        let stored = store.status_postmortem(&r.incident).unwrap().unwrap();
        assert_eq!(stored.published_ms, at);
        // The public version, not the team's draft.
        let draft = draft_at(&store, &r.incident, at).unwrap();
        assert_eq!(stored.body.trim(), draft.to_public_markdown().trim());
        assert!(stored.body.contains("serde_json (1.0.120 → 1.0.121)"));
        assert_eq!(team_only(&stored.body, &links.base), Vec::<String>::new());
        let kinds: Vec<String> = store
            .events(&EventFilter {
                since_ms: Some(at),
                ..EventFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["incident.postmortem"]);

        // The Statuspage JSON and the page show it.
        let snapshot = crate::statuspage::Snapshot::read(&store, at).unwrap();
        let docs = crate::statuspage::Documents::new(&snapshot, &config, &links);
        let json = docs.incidents_document(false);
        let incident = json.incidents.iter().find(|i| i.id == r.incident).unwrap();
        assert_eq!(
            incident.postmortem_body.as_deref(),
            Some(stored.body.as_str())
        );
        assert_eq!(
            incident.postmortem_published_at.as_deref(),
            Some(crate::json_time(at).as_str())
        );
        let other = json.incidents.iter().find(|i| i.id == open.id).unwrap();
        assert_eq!(other.postmortem_body, None);
        let page = published_page(&store, &config, &links, &r.incident, at)
            .unwrap()
            .unwrap();
        assert!(page.contains("<figure class=\"chart\"><svg"), "{page}");
        assert!(page.contains("serde_json"));
        assert!(page.contains(&format!("Published {}", crate::human_time(at))));
        for internal in [
            "127.0.0.1:9001",
            "alert.firing",
            "process_resident_memory_bytes",
            "warden_heap_bytes",
            "Drafted by Warden",
            "warden postmortem",
        ] {
            assert!(!page.contains(internal), "{internal} in {page}");
        }
        let incident_page = crate::page::render_incident(
            &snapshot,
            &config,
            &links,
            snapshot
                .incidents
                .iter()
                .find(|i| i.id == r.incident)
                .unwrap(),
        )
        .unwrap();
        assert!(incident_page.contains("/postmortem\">Read the postmortem</a>"));
        assert_eq!(
            published_page(&store, &config, &links, &open.id, at).unwrap(),
            None
        );

        // The team's draft is refused as it is, saying what to take out; nothing
        // changes.
        let before = store.last_event_id().unwrap();
        let refused = publish(
            &store,
            &config,
            &links,
            &r.incident,
            Some(&draft.to_markdown()),
            at + 500,
        )
        .unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, StatusError::Invalid(_)), "{message}");
        for what in [
            "line 3: the draft's instructions",
            "the internal address 127.0.0.1",
            "the metric name process_resident_memory_bytes",
            "--public",
        ] {
            assert!(message.contains(what), "{what} not in {message}");
        }
        assert_eq!(store.last_event_id().unwrap(), before);
        assert_eq!(
            store.status_postmortem(&r.incident).unwrap().unwrap(),
            stored
        );

        // Publishing again replaces the text, without a second update.
        let edited = "# Postmortem\n\nEdited by the team: serde_json leaked.\n";
        let again = publish(
            &store,
            &config,
            &links,
            &r.incident,
            Some(edited),
            at + 1_000,
        )
        .unwrap();
        assert_eq!(again.updates.len(), published.updates.len());
        assert_eq!(
            store.status_postmortem(&r.incident).unwrap().unwrap().body,
            edited.trim()
        );
        let last = store
            .events(&EventFilter {
                newest: Some(1),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(last[0].kind, "postmortem.published");
        assert_eq!(last[0].payload["revised"], true);
        let page = published_page(&store, &config, &links, &r.incident, at)
            .unwrap()
            .unwrap();
        assert!(page.contains("Edited by the team") && !page.contains("<figure"));
    }

    #[test]
    fn the_public_version_tells_users_what_happened_without_the_teams_records() {
        let (store, config, r) = scenario("Errors on sign-in and data retrieval");
        let p = draft_at(&store, &r.incident, T0 + 120 * MINUTE).unwrap();
        let md = p.to_public_markdown();
        if std::env::var_os("POSTMORTEM_PRINT").is_some() {
            println!("{md}");
        }
        for expected in [
            "# Postmortem: Errors on sign-in and data retrieval",
            &format!(
                "On {}, from {} to {} UTC (15 min), Authentication had a major outage and \
                 Data retrieval had a partial outage.",
                day(r.firing.at_ms),
                clock_time_minutes(r.firing.at_ms),
                clock_time_minutes(r.resolved_ms)
            ),
            &format!(
                "| {} | Release v2 went live. |",
                clock_time_minutes(r.deployed.at_ms)
            ),
            &format!(
                "| {} | Our monitoring detected a memory leak in release v2. |",
                clock_time_minutes(r.firing.at_ms)
            ),
            "| The service rolled itself back to release v1. |",
            "Release v2 updated the third-party library serde_json (1.0.120 → 1.0.121), the \
             only library that changed. With it, the service's memory kept growing while it \
             served requests, by about 9.8 MB a minute: a memory leak.",
            "We rolled the service back to release v1, the last release that worked, \
             automatically, 2 min after our monitoring noticed it.",
            "We will test every update of a third-party library, serde_json included",
            "will not ship on one person's say-so",
            "We will detect this kind of problem sooner: the faulty release served requests \
             for 32 min 58 s",
            &format!("]({})", Postmortem::chart_file(&r.incident)),
        ] {
            assert!(md.contains(expected), "{expected:?} not in\n{md}");
        }
        // Nothing for the team only: no record citations, server addresses, metric
        // names or commands; the draft has them all.
        assert_eq!(
            team_only(&md, "http://127.0.0.1:8081"),
            Vec::<String>::new()
        );
        for internal in ["#", "[#", "alert.firing", "127.0.0.1", "warden ", "`"] {
            let body = md.trim_start_matches("# Postmortem");
            let body = body.replace("## ", "");
            assert!(!body.contains(internal), "{internal:?} in\n{md}");
        }
        let found = team_only(&p.to_markdown(), "");
        assert!(
            found.iter().any(|f| f.contains("instructions")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("127.0.0.1:9001") || f.contains("127.0.0.1")),
            "{found:?}"
        );
        assert!(found.iter().any(|f| f.contains("metric name")), "{found:?}");
        // The chart for users: the servers numbered, the markers in words.
        let chart = p.public_chart_svg();
        assert!(chart.starts_with("<svg"));
        assert!(
            !chart.contains("127.0.0.1") && !chart.contains("alert.firing"),
            "{chart}"
        );
        assert!(chart.contains("release v2 · server"), "{chart}");
        assert!(chart.contains("alert: a memory leak at"), "{chart}");
        assert!(p.chart_svg().contains("127.0.0.1:9001"));
        let html = p.to_public_html(&config, &links()).unwrap();
        assert!(!html.contains("Drafted by Warden") && !html.contains("127.0.0.1:9001"));
        assert!(
            p.to_html(&config, &links())
                .unwrap()
                .contains("Drafted by Warden")
        );
    }

    #[test]
    fn a_release_rolled_back_before_the_incident_is_not_blamed() {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        components::sync(&store, &config, T0 - 3_600_000).unwrap();
        let deps = [("serde", "1.0.200"), ("serde_json", "1.0.120")];
        store.add_release(&release("v1", &deps)).unwrap();
        store
            .add_release(&release(
                "v2",
                &[("serde", "1.0.200"), ("serde_json", "1.0.121")],
            ))
            .unwrap();
        event(
            &store,
            T0,
            DEPLOYED,
            Some("v1"),
            serde_json::json!({"from": null}),
        );
        event(
            &store,
            T0 + 10 * MINUTE,
            DEPLOYED,
            Some("v2"),
            serde_json::json!({"from": "v1"}),
        );
        // v2 is rolled back by hand; 37 s later an unrelated alert fires on v1, which
        // serves everyone, and the incident opens.
        let start = T0 + 20 * MINUTE;
        let early = event(
            &store,
            start - 37_000,
            ROLLED_BACK,
            Some("v1"),
            serde_json::json!({"from": "v2", "automatic": false, "reason": "by hand"}),
        );
        event(
            &store,
            start - 37_000,
            MARKED_BAD,
            Some("v2"),
            serde_json::json!({"reason": "by hand"}),
        );
        event(
            &store,
            start,
            "alert.firing",
            Some("v1"),
            serde_json::json!({"alert": "ErrorRatioHigh", "fingerprint": "ErrorRatioHigh/a", "instance": "127.0.0.1:9000", "release": "v1", "summary": "5xx ratio 12% on v1"}),
        );
        let opened = incidents::open(
            &store,
            &config,
            &OpenIncident {
                name: "Errors".into(),
                components: BTreeMap::from([("api".into(), ComponentStatus::PartialOutage)]),
                ..OpenIncident::default()
            },
            start + 1_000,
        )
        .unwrap();
        incidents::resolve(
            &store,
            &config,
            &opened.id,
            &UpdateIncident::default(),
            start + 10 * MINUTE,
        )
        .unwrap();
        let p = draft_at(&store, &opened.id, start + 60 * MINUTE).unwrap();
        assert!(
            p.resolution.rollback.is_none(),
            "the rollback came before the start"
        );
        assert_eq!(
            p.releases.bad.as_ref().map(|b| b.name.as_str()),
            Some("v1"),
            "v2 served no one during the incident"
        );
        assert!(p.candidates.is_empty() && p.culprit.is_none());
        assert!(
            p.gaps
                .iter()
                .any(|g| g.contains("came before the incident began") && g.contains(&cite(&early))),
            "{:?}",
            p.gaps
        );
        // No length of time below zero, in the draft or the public version.
        for md in [p.to_markdown(), p.to_public_markdown()] {
            for (at, _) in md.match_indices('−') {
                assert!(md[..at].ends_with('T'), "a negative length in\n{md}");
            }
            assert!(!md.contains("came −") && !md.contains("v2 updated"), "{md}");
        }
        assert!(
            !p.corrective_measures
                .iter()
                .any(|m| m.contains("Roll back automatically")),
            "{:?}",
            p.corrective_measures
        );
    }

    #[test]
    fn durations_and_offsets_read_naturally() {
        assert_eq!(span(-37_000), "0 s", "never a negative length");
        assert_eq!(relative(-37_000, "the start"), "37 s before the start");
        assert_eq!(relative(0, "the start"), "at the start");
        assert_eq!(relative(90_000, "the start"), "1 min 30 s after the start");
        assert_eq!(span(850), "850 ms");
        assert_eq!(span(42_000), "42 s");
        assert_eq!(span(185_000), "3 min 5 s");
        assert_eq!(span(6_300_000), "1 h 45 min");
        assert_eq!(offset(-120_000), "T−2 min");
        assert_eq!(offset(0), "T+0 s");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
