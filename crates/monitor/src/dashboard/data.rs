//! What the dashboard shows, read from the store in one go: the series of each
//! chart, the markers, the alerts and the other events of the range.
//!
//! Alerts are a view of the event log: an alert is *active* when the latest event
//! with its fingerprint is `alert.pending` or `alert.firing`, so nothing but the log
//! is needed to know what is going on, and a restart of the control plane forgets
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use warden_store::{Event, EventFilter, SeriesData, Store};

use super::chart::{Marker, MarkerKind, Unit};

/// One chart of the dashboard and the series it draws.
#[derive(Debug)]
pub struct ChartSpec {
    /// The name in `/charts/{slug}.svg`.
    pub slug: &'static str,
    /// The title.
    pub title: &'static str,
    /// What the chart tells you, shown under the title.
    pub caption: &'static str,
    /// The y axis' unit.
    pub unit: Unit,
    /// Whether the y axis starts at zero.
    pub zero_based: bool,
    /// Whether a few extreme values may run off the top of the axis.
    pub clip_outliers: bool,
    /// A metric whose latest value is drawn as a limit line (`memory limit`).
    pub limit: Option<(&'static str, &'static str)>,
    /// The metrics drawn.
    pub queries: &'static [MetricQuery],
}

/// A metric drawn on a chart.
#[derive(Debug)]
pub struct MetricQuery {
    /// The series' name.
    pub name: &'static str,
    /// Labels the series must have besides the page's filters.
    pub matchers: &'static [(&'static str, &'static str)],
    /// A prefix for its lines' labels when a chart draws several metrics (`p99`).
    pub variant: Option<&'static str>,
    /// Drawn dashed.
    pub dashed: bool,
}

const fn metric(name: &'static str) -> MetricQuery {
    MetricQuery {
        name,
        matchers: &[],
        variant: None,
        dashed: false,
    }
}

/// The memory limit each instance reports (its cgroup's, or the machine's RAM).
const MEMORY_LIMIT: &str = "warden_memory_limit_bytes";

/// The dashboard's charts, in page order.
pub const CHARTS: &[ChartSpec] = &[
    ChartSpec {
        slug: "rss",
        title: "Resident memory (RSS)",
        caption: "What the kernel holds for each instance, against its memory limit.",
        unit: Unit::Megabytes,
        zero_based: true,
        clip_outliers: false,
        limit: Some((MEMORY_LIMIT, "memory limit")),
        queries: &[metric("process_resident_memory_bytes")],
    },
    ChartSpec {
        slug: "heap",
        title: "Heap allocated",
        caption: "Live heap allocations (jemalloc). A leak is a floor that keeps rising.",
        unit: Unit::Megabytes,
        zero_based: true,
        clip_outliers: false,
        limit: Some((MEMORY_LIMIT, "memory limit")),
        queries: &[MetricQuery {
            matchers: &[("kind", "allocated")],
            ..metric("warden_heap_bytes")
        }],
    },
    ChartSpec {
        slug: "request-rate",
        title: "Request rate",
        caption: "Requests served per second.",
        clip_outliers: false,
        limit: None,
        unit: Unit::RequestsPerSecond,
        zero_based: true,
        queries: &[metric("warden:request_rate")],
    },
    ChartSpec {
        slug: "error-ratio",
        title: "5xx ratio",
        caption: "Share of responses that were server errors.",
        clip_outliers: false,
        limit: None,
        unit: Unit::Percent,
        zero_based: true,
        queries: &[metric("warden:error_ratio")],
    },
    ChartSpec {
        slug: "latency",
        title: "Latency p50 / p99",
        caption: "Response time: p99 solid, p50 dashed. A lone spike (start-up) runs off the top.",
        unit: Unit::Milliseconds,
        zero_based: true,
        clip_outliers: true,
        limit: None,
        queries: &[
            MetricQuery {
                variant: Some("p99"),
                ..metric("warden:latency_p99_seconds")
            },
            MetricQuery {
                variant: Some("p50"),
                dashed: true,
                ..metric("warden:latency_p50_seconds")
            },
        ],
    },
];

/// Finds a chart by its slug.
#[must_use]
pub fn chart_spec(slug: &str) -> Option<&'static ChartSpec> {
    CHARTS.iter().find(|c| c.slug == slug)
}

/// Which data to read: a time range and optional label filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Start of the range (unix ms).
    pub from_ms: i64,
    /// End of the range (unix ms), normally now.
    pub to_ms: i64,
    /// Only this release.
    pub release: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
}

impl Selection {
    fn matchers(&self) -> Vec<(&str, &str)> {
        let mut matchers = Vec::new();
        if let Some(r) = &self.release {
            matchers.push(("release", r.as_str()));
        }
        if let Some(i) = &self.instance {
            matchers.push(("instance", i.as_str()));
        }
        matchers
    }

    /// Whether an event about `release` and `instance` passes the filters; an event
    /// that does not name one passes that filter.
    fn admits(&self, release: Option<&str>, instance: Option<&str>) -> bool {
        let pass = |filter: &Option<String>, value: Option<&str>| match (filter, value) {
            (Some(f), Some(v)) => f == v,
            _ => true,
        };
        pass(&self.release, release) && pass(&self.instance, instance)
    }
}

/// Where a series comes from: the dashboard draws one line per key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SeriesKey {
    /// The `release` label (empty if absent).
    pub release: String,
    /// The `instance` label (empty if absent).
    pub instance: String,
}

impl SeriesKey {
    fn of(series: &SeriesData) -> Self {
        let label = |name: &str| series.labels.get(name).cloned().unwrap_or_default();
        Self {
            release: label("release"),
            instance: label("instance"),
        }
    }

    /// `release · instance`, as in legends.
    #[must_use]
    pub fn label(&self) -> String {
        match (self.release.is_empty(), self.instance.is_empty()) {
            (false, false) => format!("{} · {}", self.release, self.instance),
            (false, true) => self.release.clone(),
            (true, false) => self.instance.clone(),
            (true, true) => "(no labels)".to_owned(),
        }
    }
}

/// Series colours: distinct on a white background and from the marker colours
/// (which are dashed, so they read as events, not data).
const PALETTE: [&str; 10] = [
    "#2563eb", "#ea580c", "#0d9488", "#db2777", "#ca8a04", "#0891b2", "#92400e", "#6366f1",
    "#4d7c0f", "#9333ea",
];

/// The colour of the `index`th series: the palette, then hues a golden angle apart
/// at two lightnesses, so no two series of a page share a colour however many
/// there are.
fn color_of(index: usize) -> String {
    if let Some(color) = PALETTE.get(index) {
        return (*color).to_owned();
    }
    let n = (index - PALETTE.len()) as f64;
    let hue = n.mul_add(137.507_764, 17.0) % 360.0;
    let lightness = if index.is_multiple_of(2) { 36.0 } else { 48.0 };
    format!("hsl({hue:.1} 70% {lightness:.0}%)")
}

/// The colour of each series key, stable across the page's charts and filters.
#[derive(Debug, Clone, Default)]
pub struct Colors(BTreeMap<SeriesKey, String>);

impl Colors {
    fn new<'k>(keys: impl IntoIterator<Item = &'k SeriesKey>) -> Self {
        let keys: BTreeSet<&SeriesKey> = keys.into_iter().collect();
        Self(
            keys.into_iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), color_of(i)))
                .collect(),
        )
    }

    /// The colour of `key`.
    #[must_use]
    pub fn of(&self, key: &SeriesKey) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| color_of(0))
    }
}

/// The series of one chart, as read.
#[derive(Debug, Clone)]
pub struct ChartData {
    /// Which chart.
    pub spec: &'static ChartSpec,
    /// Per query of the spec, its series.
    pub series: Vec<(&'static MetricQuery, Vec<SeriesData>)>,
    /// The spec's limit: the lowest latest value of its metric (base units).
    pub limit: Option<f64>,
}

impl ChartData {
    /// The chart's lines in its unit, coloured by key, sorted by key then variant.
    #[must_use]
    pub fn lines(&self, colors: &Colors) -> Vec<super::chart::Line> {
        let mut lines: Vec<(SeriesKey, usize, super::chart::Line)> = Vec::new();
        for (index, (query, series)) in self.series.iter().enumerate() {
            for s in series {
                let key = SeriesKey::of(s);
                let label = match query.variant {
                    Some(v) => format!("{v} · {}", key.label()),
                    None => key.label(),
                };
                lines.push((
                    key.clone(),
                    index,
                    super::chart::Line {
                        label,
                        color: colors.of(&key),
                        dashed: query.dashed,
                        points: s
                            .points
                            .iter()
                            .map(|&(t, v)| (t, self.spec.unit.convert(v)))
                            .collect(),
                    },
                ));
            }
        }
        lines.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        lines.into_iter().map(|(_, _, line)| line).collect()
    }

    /// The limit line, in the chart's unit.
    #[must_use]
    pub fn limit_line(&self) -> Option<super::chart::Limit> {
        let ((_, label), value) = self.spec.limit.zip(self.limit)?;
        Some(super::chart::Limit {
            value: self.spec.unit.convert(value),
            label,
        })
    }

    /// The latest value of the chart's first metric for `key`, in the chart's unit.
    fn latest(&self, key: &SeriesKey) -> Option<(i64, f64)> {
        let (_, series) = self.series.first()?;
        series
            .iter()
            .filter(|s| &SeriesKey::of(s) == key)
            .filter_map(|s| s.points.last().copied())
            .max_by_key(|&(t, _)| t)
            .map(|(t, v)| (t, self.spec.unit.convert(v)))
    }
}

/// The state of an alert, from the kind of its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Its condition holds but not yet for its `for` duration.
    Pending,
    /// It fires.
    Firing,
    /// It fired and its condition cleared.
    Resolved,
    /// It was pending and its condition cleared before it fired.
    Cancelled,
    /// A kind this build does not know (`alert.` + the rest).
    #[serde(untagged)]
    Other(String),
}

impl AlertState {
    fn of_kind(kind: &str) -> Self {
        match kind.strip_prefix("alert.").unwrap_or(kind) {
            "pending" => Self::Pending,
            "firing" => Self::Firing,
            "resolved" => Self::Resolved,
            "cancelled" => Self::Cancelled,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether an alert in this state needs attention.
    #[must_use]
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Pending | Self::Firing)
    }

    /// The word shown in the page.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s,
        }
    }
}

/// One alert event, with its payload's fields pulled out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// The event's id in the log.
    pub id: i64,
    /// When (unix ms).
    pub at_ms: i64,
    /// The state it entered.
    pub state: AlertState,
    /// Identifies the alert across its events.
    pub fingerprint: String,
    /// The rule's name.
    pub alert: String,
    /// `critical`, `warning`, ...
    pub severity: String,
    /// The instance it is about.
    pub instance: String,
    /// The release it is about.
    pub release: String,
    /// One line on what is wrong.
    pub summary: String,
    /// More on what is wrong.
    pub description: String,
}

impl AlertEvent {
    fn from_event(event: &Event) -> Self {
        let field = |name: &str| text_field(&event.payload, name).unwrap_or_default();
        let alert = field("alert");
        let instance = field("instance");
        let release = text_field(&event.payload, "release")
            .or_else(|| event.release.clone())
            .unwrap_or_default();
        let fingerprint = text_field(&event.payload, "fingerprint")
            .unwrap_or_else(|| format!("{alert}/{release}/{instance}"));
        Self {
            id: event.id,
            at_ms: event.at_ms,
            state: AlertState::of_kind(&event.kind),
            fingerprint,
            alert,
            severity: field("severity"),
            instance,
            release,
            summary: field("summary"),
            description: field("description"),
        }
    }
}

/// A deploy, rollback or instance event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEvent {
    /// The event's id in the log.
    pub id: i64,
    /// When (unix ms).
    pub at_ms: i64,
    /// Its kind (`deploy.finished`, ...).
    pub kind: String,
    /// The release it concerns, if any.
    pub release: String,
    /// The instance it concerns, if any.
    pub instance: String,
    /// Its payload's summary, if it has one.
    pub summary: String,
}

/// A string field of a JSON payload; numbers and booleans are shown as text.
fn text_field(payload: &serde_json::Value, name: &str) -> Option<String> {
    match payload.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The kinds of events listed beside the alerts, and drawn as markers when they
/// are deploys or rollbacks.
const LOG_KINDS: [&str; 4] = ["deploy.", "rollback.", "instance.", "control."];
/// How many events of each kind a page reads at most.
const EVENT_LIMIT: u32 = 2_000;
/// How many alert events are read to find the active alerts.
const ALERT_SCAN_LIMIT: u32 = 10_000;

/// The alerts: which are active now, and the events of the range, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Alerts {
    /// Alerts whose latest event is pending or firing; firing first, newest first.
    pub active: Vec<AlertEvent>,
    /// Alert events in the range, newest first.
    pub history: Vec<AlertEvent>,
}

/// Reads the alerts for `selection`'s range. Active alerts are not limited to the
/// range: an alert firing since last week is still firing.
pub fn read_alerts(store: &Store, selection: &Selection) -> warden_store::Result<Alerts> {
    let recent = store.events(&EventFilter {
        kind_prefix: Some("alert.".to_owned()),
        newest: Some(ALERT_SCAN_LIMIT),
        ..EventFilter::default()
    })?;
    let mut latest: HashMap<String, AlertEvent> = HashMap::new();
    // Newest first: the first event seen for a fingerprint is its latest.
    for event in &recent {
        let alert = AlertEvent::from_event(event);
        latest.entry(alert.fingerprint.clone()).or_insert(alert);
    }
    let mut active: Vec<AlertEvent> = latest
        .into_values()
        .filter(|a| a.state.is_active())
        .collect();
    active.sort_by(|a, b| {
        (b.state == AlertState::Firing)
            .cmp(&(a.state == AlertState::Firing))
            .then(b.id.cmp(&a.id))
    });
    let history = store
        .events(&EventFilter {
            since_ms: Some(selection.from_ms),
            until_ms: Some(selection.to_ms.saturating_add(1)),
            kind_prefix: Some("alert.".to_owned()),
            newest: Some(EVENT_LIMIT),
        })?
        .iter()
        .map(AlertEvent::from_event)
        .collect();
    Ok(Alerts { active, history })
}

/// Everything the page shows, read in one go.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Each chart's series.
    pub charts: Vec<ChartData>,
    /// The colour of each series key.
    pub colors: Colors,
    /// Releases and instances with data in the range, ignoring the filters.
    pub releases: Vec<String>,
    /// See `releases`.
    pub instances: Vec<String>,
    /// The latest `up` sample of each key in the range (filtered).
    pub up: BTreeMap<SeriesKey, (i64, f64)>,
    /// Deploy, rollback and alert markers in the range (filtered).
    pub markers: Vec<Marker>,
    /// The alerts.
    pub alerts: Alerts,
    /// Deploy, rollback and instance events in the range (filtered), newest first.
    pub events: Vec<LogEvent>,
}

/// How long an instance may go unscraped before its last `up` sample is no longer
/// taken as its state (six scrapes at the default interval).
pub const STALE_AFTER_MS: i64 = 30_000;

/// What the instances table says of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Its latest scrape answered.
    Up,
    /// Its latest scrape failed.
    Down,
    /// The supervisor stopped it (a rollback, the end of a bake window, shutdown).
    Stopped,
    /// It exited on its own (a crash) and was not seen again.
    Exited,
    /// Found dead, e.g. when the control plane restarted after a crash.
    Lost,
    /// Not scraped for [`STALE_AFTER_MS`]: its last state is no longer known.
    Stale,
    /// Never scraped in the range.
    Unknown,
}

impl InstanceStatus {
    /// The word shown, also the badge's CSS class.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Stopped => "stopped",
            Self::Exited => "exited",
            Self::Lost => "lost",
            Self::Stale => "stale",
            Self::Unknown => "unknown",
        }
    }

    /// From the latest `up` sample and the latest instance event of one instance:
    /// an event that ends the instance and is not older than the sample wins; a
    /// sample older than [`STALE_AFTER_MS`] is stale.
    fn of(up: Option<(i64, f64)>, event: Option<&LogEvent>, now_ms: i64) -> Self {
        if let Some(event) = event
            && event.kind != "instance.started"
            && up.is_none_or(|(t, _)| event.at_ms >= t)
        {
            return match event.kind.as_str() {
                "instance.stopped" => Self::Stopped,
                "instance.exited" => Self::Exited,
                _ => Self::Lost,
            };
        }
        match up {
            Some((t, _)) if now_ms.saturating_sub(t) > STALE_AFTER_MS => Self::Stale,
            Some((_, v)) if v >= 0.5 => Self::Up,
            Some(_) => Self::Down,
            None => Self::Unknown,
        }
    }
}

/// The current values of one series key, for the instances table.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Which series.
    pub key: SeriesKey,
    /// Its colour in the charts.
    pub color: String,
    /// Whether it runs, from its latest `up` sample and instance event.
    pub status: InstanceStatus,
    /// When it was last scraped (unix ms).
    pub last_seen_ms: Option<i64>,
    /// Latest value of each chart's first metric, formatted; `None` if absent.
    pub readings: Vec<Option<String>>,
}

impl Snapshot {
    /// Reads what `selection` asks for: every chart (or only `only`), and the
    /// events.
    pub fn read(
        store: &Store,
        selection: &Selection,
        only: Option<&'static ChartSpec>,
    ) -> warden_store::Result<Self> {
        let (from, to) = (selection.from_ms, selection.to_ms);
        let matchers = selection.matchers();
        let specs: Vec<&'static ChartSpec> = match only {
            Some(spec) => vec![spec],
            None => CHARTS.iter().collect(),
        };
        let mut charts = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut series = Vec::with_capacity(spec.queries.len());
            for query in spec.queries {
                let mut all = matchers.clone();
                all.extend_from_slice(query.matchers);
                series.push((query, store.query(query.name, &all, from, to)?));
            }
            let limit = match spec.limit {
                Some((metric, _)) => store
                    .query(metric, &matchers, from, to)?
                    .iter()
                    .filter_map(|s| s.points.last().map(|&(_, v)| v))
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .reduce(f64::min),
                None => None,
            };
            charts.push(ChartData {
                spec,
                series,
                limit,
            });
        }

        let up_all = store.query("up", &[], from, to)?;
        let keys_all: BTreeSet<SeriesKey> = up_all
            .iter()
            .map(SeriesKey::of)
            .chain(charts.iter().flat_map(|c| {
                c.series
                    .iter()
                    .flat_map(|(_, s)| s.iter().map(SeriesKey::of))
            }))
            .collect();
        let colors = Colors::new(&keys_all);
        let distinct = |pick: fn(&SeriesKey) -> &String| -> Vec<String> {
            keys_all
                .iter()
                .map(pick)
                .filter(|v| !v.is_empty())
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let releases = distinct(|k| &k.release);
        let instances = distinct(|k| &k.instance);
        let up = up_all
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
            })
            .filter_map(|s| Some((SeriesKey::of(s), *s.points.last()?)))
            .fold(BTreeMap::new(), |mut map, (key, point)| {
                let entry = map.entry(key).or_insert(point);
                if point.0 > entry.0 {
                    *entry = point;
                }
                map
            });

        let alerts = read_alerts(store, selection)?;
        let mut markers: Vec<Marker> = alerts
            .history
            .iter()
            .filter(|a| {
                selection.admits(Some(&a.release), Some(&a.instance))
                    && matches!(a.state, AlertState::Firing | AlertState::Resolved)
            })
            .map(|a| Marker {
                at_ms: a.at_ms,
                kind: if a.state == AlertState::Firing {
                    MarkerKind::AlertFiring
                } else {
                    MarkerKind::AlertResolved
                },
                description: format!(
                    "alert {} {}: {} · {} · {}",
                    a.state.as_str(),
                    a.alert,
                    nonempty_or(&a.summary, "(no summary)"),
                    key_text(&a.release, &a.instance),
                    super::time_text(a.at_ms)
                ),
            })
            .collect();

        let mut events = Vec::new();
        for prefix in LOG_KINDS {
            for event in store.events(&EventFilter {
                since_ms: Some(from),
                until_ms: Some(to.saturating_add(1)),
                kind_prefix: Some(prefix.to_owned()),
                newest: Some(EVENT_LIMIT),
            })? {
                let instance = text_field(&event.payload, "instance");
                if !selection.admits(event.release.as_deref(), instance.as_deref()) {
                    continue;
                }
                events.push(LogEvent {
                    id: event.id,
                    at_ms: event.at_ms,
                    summary: ["summary", "reason", "message"]
                        .iter()
                        .find_map(|f| text_field(&event.payload, f))
                        .unwrap_or_default(),
                    kind: event.kind,
                    release: event.release.unwrap_or_default(),
                    instance: instance.unwrap_or_default(),
                });
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        for event in &events {
            let kind = if event.kind.starts_with("deploy.") {
                MarkerKind::Deploy
            } else if event.kind.starts_with("rollback.") {
                MarkerKind::Rollback
            } else if event.kind == warden_store::kinds::CONTROL_RESTARTED {
                MarkerKind::Restart
            } else {
                continue;
            };
            let mut description = event.kind.clone();
            for part in [&event.release, &event.summary] {
                if !part.is_empty() {
                    description.push_str(" · ");
                    description.push_str(part);
                }
            }
            description.push_str(" · ");
            description.push_str(&super::time_text(event.at_ms));
            markers.push(Marker {
                at_ms: event.at_ms,
                kind,
                description,
            });
        }

        Ok(Self {
            charts,
            colors,
            releases,
            instances,
            up,
            markers,
            alerts,
            events,
        })
    }

    /// The time of the oldest sample read, if any.
    #[must_use]
    pub fn first_ms(&self) -> Option<i64> {
        self.charts
            .iter()
            .flat_map(|c| c.series.iter().flat_map(|(_, s)| s.iter()))
            .filter_map(|s| s.points.first().map(|&(t, _)| t))
            .min()
    }

    /// One row per series key with data in the (filtered) range, as of `now_ms`.
    #[must_use]
    pub fn instance_rows(&self, now_ms: i64) -> Vec<InstanceRow> {
        let keys: BTreeSet<SeriesKey> = self
            .up
            .keys()
            .cloned()
            .chain(self.charts.iter().flat_map(|c| {
                c.series
                    .iter()
                    .flat_map(|(_, s)| s.iter().map(SeriesKey::of))
            }))
            .collect();
        keys.into_iter()
            .map(|key| {
                let up = self.up.get(&key).copied();
                let last_seen_ms = self
                    .charts
                    .iter()
                    .filter_map(|c| c.latest(&key).map(|(t, _)| t))
                    .chain(up.map(|(t, _)| t))
                    .max();
                // Newest first: the first one of this instance is its latest.
                let event = self.events.iter().find(|e| {
                    e.kind.starts_with("instance.")
                        && e.release == key.release
                        && e.instance == key.instance
                });
                InstanceRow {
                    color: self.colors.of(&key),
                    status: InstanceStatus::of(up, event, now_ms),
                    last_seen_ms,
                    readings: self
                        .charts
                        .iter()
                        .map(|c| c.latest(&key).map(|(_, v)| c.spec.unit.format_reading(v)))
                        .collect(),
                    key,
                }
            })
            .collect()
    }
}

fn nonempty_or<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.is_empty() { fallback } else { text }
}

fn key_text(release: &str, instance: &str) -> String {
    SeriesKey {
        release: release.to_owned(),
        instance: instance.to_owned(),
    }
    .label()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn event(kind: &str, payload: serde_json::Value) -> Event {
        Event {
            id: 1,
            at_ms: 0,
            kind: kind.to_owned(),
            release: Some("v9".to_owned()),
            payload,
        }
    }

    #[test]
    fn alert_states_come_from_the_event_kind() {
        assert_eq!(AlertState::of_kind("alert.firing"), AlertState::Firing);
        assert!(AlertState::of_kind("alert.pending").is_active());
        assert!(!AlertState::of_kind("alert.resolved").is_active());
        let odd = AlertState::of_kind("alert.silenced");
        assert_eq!(odd.as_str(), "silenced");
        assert_eq!(serde_json::to_value(&odd).unwrap(), "silenced");
        assert_eq!(serde_json::to_value(AlertState::Firing).unwrap(), "firing");
    }

    #[test]
    fn an_alert_without_a_fingerprint_is_identified_by_its_labels() {
        let alert = AlertEvent::from_event(&event(
            "alert.firing",
            serde_json::json!({"alert": "MemoryLeak", "instance": "h:1", "summary": 5}),
        ));
        assert_eq!(alert.fingerprint, "MemoryLeak/v9/h:1");
        assert_eq!(
            alert.release, "v9",
            "from the event when the payload has none"
        );
        assert_eq!(alert.summary, "5");
        assert_eq!(alert.severity, "");
    }
}
