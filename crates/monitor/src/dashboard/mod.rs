//! The monitoring dashboard on the console port: memory, traffic, errors and latency
//! per release and instance, with deploys, rollbacks and alerts marked on every
//! chart, and the alerts that are active now.
//!
//! It is a pure view of the [`Store`]: it writes nothing, keeps no state of its own,
//! and renders everything on the server — HTML from askama templates and charts as
//! inline SVG — so it works with JavaScript off, needs no asset from the network,
//! and a page saved during an incident still shows what was seen. A small inline
//! script reloads the page every few seconds while it is visible.
//!
//! Routes (see [`router`]):
//!
//! - `GET /` and `GET /dashboard`: the page. Query: `range` (`15m`, `1h` (default),
//!   `6h`, `24h`, `7d`), `release`, `instance`.
//! - `GET /charts/{metric}.svg`: one chart alone (`rss`, `heap`, `request-rate`,
//!   `error-ratio`, `latency`), same query.
//! - `GET /api/alerts`: the active alerts and the alert events of the range, as JSON.
//!
//! A bad query is a 400 that says what is accepted. When the store cannot be read
//! the page still renders, says so, and answers 503; the details go to the log.

pub mod chart;
mod data;

use std::fmt::Write as _;
use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_store::Store;

use self::chart::{Chart, Framing, MarkerKind};
use self::data::{AlertEvent, CHARTS, ChartSpec, Selection, Snapshot};

/// What the dashboard needs: the store it reads.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// The control plane's store; only read.
    pub store: Store,
    /// How often the page reloads itself while visible, in seconds; 0 never.
    pub refresh_seconds: u32,
}

impl DashboardState {
    /// A dashboard over `store` that reloads every 15 seconds.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            store,
            refresh_seconds: 15,
        }
    }
}

/// The dashboard's routes, ready to be merged into the console's router.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dashboard", get(page))
        .route("/charts/{file}", get(chart_svg))
        .route("/api/alerts", get(alerts_json))
        .with_state(state)
}

/// The time ranges the dashboard offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Minutes15,
    Hour1,
    Hours6,
    Hours24,
    Days7,
}

impl Range {
    const ALL: [Self; 5] = [
        Self::Minutes15,
        Self::Hour1,
        Self::Hours6,
        Self::Hours24,
        Self::Days7,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Minutes15 => "15m",
            Self::Hour1 => "1h",
            Self::Hours6 => "6h",
            Self::Hours24 => "24h",
            Self::Days7 => "7d",
        }
    }

    fn millis(self) -> i64 {
        const MINUTE: i64 = 60_000;
        match self {
            Self::Minutes15 => 15 * MINUTE,
            Self::Hour1 => 60 * MINUTE,
            Self::Hours6 => 6 * 60 * MINUTE,
            Self::Hours24 => 24 * 60 * MINUTE,
            Self::Days7 => 7 * 24 * 60 * MINUTE,
        }
    }

    /// Parses `15m`, `1h`, `6h`, `24h` or `7d`; a missing or empty value is 1 hour.
    fn parse(text: Option<&str>) -> Result<Self, String> {
        let text = text.map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Ok(Self::Hour1);
        }
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown range {text:?}: use one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// The shortest range a view fitted to its data shows.
const FIT_MIN_MS: i64 = 5 * 60_000;

/// The query every route takes.
#[derive(Debug, Default, Deserialize)]
struct Params {
    range: Option<String>,
    release: Option<String>,
    instance: Option<String>,
}

/// A query, checked.
#[derive(Debug, Clone)]
struct View {
    range: Range,
    /// Whether the query named the range; without one, the hour shrinks to the data
    /// of a new install (see [`View::fit`]).
    explicit: bool,
    /// Whether [`View::fit`] shortened the range.
    fitted: bool,
    selection: Selection,
    now_ms: i64,
}

impl View {
    fn parse(query: Result<Query<Params>, QueryRejection>) -> Result<Self, String> {
        let Query(params) = query.map_err(|e| format!("bad query string: {}", e.body_text()))?;
        let range = Range::parse(params.range.as_deref())?;
        let filter = |v: Option<String>| {
            v.map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && s.len() <= 256)
        };
        let now_ms = warden_store::now_ms();
        Ok(Self {
            range,
            explicit: params
                .range
                .as_deref()
                .is_some_and(|r| !r.trim().is_empty()),
            fitted: false,
            selection: Selection {
                from_ms: now_ms - range.millis(),
                to_ms: now_ms,
                release: filter(params.release),
                instance: filter(params.instance),
            },
            now_ms,
        })
    }

    /// Without a range in the query, and with data over less than half of it, starts
    /// the range a little before the oldest sample, so a new install's first minutes
    /// fill the chart instead of being a sliver at its right edge; never less than
    /// [`FIT_MIN_MS`].
    fn fit(&mut self, first_ms: Option<i64>) {
        let Some(first) = first_ms.filter(|_| !self.explicit) else {
            return;
        };
        let to = self.selection.to_ms;
        // Data over half the range or more reads well as it is.
        if to - first >= (to - self.selection.from_ms) / 2 {
            return;
        }
        let from = first.saturating_sub((to - first) / 20).min(to - FIT_MIN_MS);
        if from > self.selection.from_ms {
            self.selection.from_ms = from;
            self.fitted = true;
        }
    }

    /// This view's query string: its filters, and its range unless it was fitted.
    fn href_current(&self) -> String {
        let href = self.href(self.range);
        if !self.fitted {
            return href;
        }
        match href.split_once('&') {
            Some((_, filters)) => format!("?{filters}"),
            None => String::new(),
        }
    }

    /// A query string for this view with another range.
    fn href(&self, range: Range) -> String {
        let mut href = format!("?range={}", range.as_str());
        for (name, value) in [
            ("release", &self.selection.release),
            ("instance", &self.selection.instance),
        ] {
            if let Some(value) = value {
                let _ = write!(href, "&{name}={}", percent_encode(value));
            }
        }
        href
    }
}

async fn page(
    State(state): State<DashboardState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let mut view = match View::parse(query) {
        Ok(view) => view,
        Err(message) => return bad_request_page(&message),
    };
    let selection = view.selection.clone();
    let read = state
        .store
        .blocking(move |store| Snapshot::read(store, &selection, None))
        .await;
    if let Ok(snapshot) = &read {
        view.fit(snapshot.first_ms());
    }
    let (status, snapshot, problem) = match read {
        Ok(snapshot) => (StatusCode::OK, Some(snapshot), None),
        Err(error) => {
            tracing::error!(%error, "dashboard: cannot read the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some(
                    "The control plane's store could not be read, so there is nothing to \
                     show right now. The proxy and the API keep serving; details are in \
                     Warden's log. This page retries on its own."
                        .to_owned(),
                ),
            )
        }
    };
    let page = DashboardPage::new(&state, &view, snapshot.as_ref(), problem);
    match page.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, "dashboard: cannot render the page");
            problem_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Dashboard unavailable",
                "The dashboard page could not be rendered; details are in Warden's log.",
            )
        }
    }
}

async fn chart_svg(
    State(state): State<DashboardState>,
    Path(file): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Some(spec) = file.strip_suffix(".svg").and_then(data::chart_spec) else {
        return problem_json(
            StatusCode::NOT_FOUND,
            "No such chart",
            &format!(
                "there is no chart {file:?}; charts: {}",
                CHARTS
                    .iter()
                    .map(|c| format!("{}.svg", c.slug))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    };
    let mut view = match View::parse(query) {
        Ok(view) => view,
        Err(message) => return problem_json(StatusCode::BAD_REQUEST, "Bad query", &message),
    };
    let selection = view.selection.clone();
    let read = state
        .store
        .blocking(move |store| Snapshot::read(store, &selection, Some(spec)))
        .await;
    if let Ok(snapshot) = &read {
        view.fit(snapshot.first_ms());
    }
    let (status, body) = match read {
        Ok(snapshot) => (
            StatusCode::OK,
            render_chart(spec, &view, &snapshot, Framing::Standalone),
        ),
        Err(error) => {
            tracing::error!(%error, chart = spec.slug, "dashboard: cannot read the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                chart::message(
                    spec.title,
                    "Data unavailable: the store could not be read",
                    Framing::Standalone,
                ),
            )
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    common_headers(headers, "default-src 'none'; style-src 'unsafe-inline'");
    response
}

/// The JSON document of `/api/alerts`.
#[derive(Debug, Serialize)]
struct AlertsDocument {
    generated_at_ms: i64,
    range: &'static str,
    from_ms: i64,
    to_ms: i64,
    /// Alerts whose latest event is pending or firing.
    active: Vec<AlertEvent>,
    /// Alert events in the range, newest first (at most [`HISTORY_LIMIT`]).
    history: Vec<AlertEvent>,
}

/// How many alert events the page and the API list.
const HISTORY_LIMIT: usize = 200;

async fn alerts_json(
    State(state): State<DashboardState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let view = match View::parse(query) {
        Ok(view) => view,
        Err(message) => return problem_json(StatusCode::BAD_REQUEST, "Bad query", &message),
    };
    let selection = view.selection.clone();
    let read = state
        .store
        .blocking(move |store| data::read_alerts(store, &selection))
        .await;
    match read {
        Ok(mut alerts) => {
            alerts.history.truncate(HISTORY_LIMIT);
            let document = AlertsDocument {
                generated_at_ms: view.now_ms,
                range: view.range.as_str(),
                from_ms: view.selection.from_ms,
                to_ms: view.selection.to_ms,
                active: alerts.active,
                history: alerts.history,
            };
            let mut response = axum::Json(document).into_response();
            common_headers(response.headers_mut(), "default-src 'none'");
            response
        }
        Err(error) => {
            tracing::error!(%error, "dashboard: cannot read the store");
            problem_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                "the control plane's store could not be read; details are in Warden's log",
            )
        }
    }
}

fn render_chart(spec: &ChartSpec, view: &View, snapshot: &Snapshot, framing: Framing) -> String {
    let Some(data) = snapshot.charts.iter().find(|c| c.spec.slug == spec.slug) else {
        return chart::message(spec.title, "No data in this range", framing);
    };
    chart::render(
        &Chart {
            title: spec.title,
            unit: spec.unit,
            zero_based: spec.zero_based,
            clip_outliers: spec.clip_outliers,
            limit: data.limit_line(),
            from_ms: view.selection.from_ms,
            to_ms: view.selection.to_ms,
            lines: data.lines(&snapshot.colors),
            markers: &snapshot.markers,
        },
        framing,
    )
}

fn chart_in_page(
    spec: &ChartSpec,
    view: &View,
    snapshot: Option<&Snapshot>,
    framing: Framing,
) -> String {
    match snapshot {
        Some(snapshot) => render_chart(spec, view, snapshot, framing),
        None => chart::message(
            spec.title,
            "Data unavailable: the store could not be read",
            framing,
        ),
    }
}

/// The page reloads itself while visible, but not while the filter form is in use.
const RELOAD_SCRIPT: &str = "(function(){var s=+document.documentElement.dataset.refresh;\
if(s>0)setInterval(function(){if(document.visibilityState==='visible'&&\
!document.querySelector('form :focus'))location.reload();},s*1000);})();";

/// The script's hash for the Content-Security-Policy: nothing else may run.
static PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64(&Sha256::digest(RELOAD_SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
});

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    generated: String,
    refresh_seconds: u32,
    script: &'static str,
    ranges: Vec<RangeLink>,
    range: &'static str,
    /// Says so when the default hour was shortened to the data.
    fitted: Option<String>,
    release_options: Vec<FilterOption>,
    instance_options: Vec<FilterOption>,
    filtered: bool,
    problem: Option<String>,
    charts: Vec<ChartView>,
    columns: Vec<&'static str>,
    instances: Vec<InstanceView>,
    active: Vec<AlertView>,
    history: Vec<AlertView>,
    history_more: usize,
    events: Vec<EventView>,
    marker_legend: Vec<(&'static str, &'static str)>,
}

struct RangeLink {
    label: &'static str,
    href: String,
    current: bool,
}

struct FilterOption {
    value: String,
    selected: bool,
}

struct ChartView {
    slug: &'static str,
    title: &'static str,
    caption: &'static str,
    svg_href: String,
    /// The chart laid out for a laptop's column, then for a phone.
    svg_wide: String,
    svg_narrow: String,
}

struct InstanceView {
    color: String,
    release: String,
    instance: String,
    status: &'static str,
    last_seen: String,
    readings: Vec<String>,
}

struct AlertView {
    state: String,
    alert: String,
    severity: String,
    release: String,
    instance: String,
    summary: String,
    description: String,
    at: String,
    at_full: String,
    at_iso: String,
    ago: String,
}

struct EventView {
    kind: String,
    class: &'static str,
    release: String,
    summary: String,
    at: String,
    at_full: String,
    at_iso: String,
}

impl DashboardPage {
    fn new(
        state: &DashboardState,
        view: &View,
        snapshot: Option<&Snapshot>,
        problem: Option<String>,
    ) -> Self {
        let now = view.now_ms;
        let options = |values: &[String], current: &Option<String>| {
            let mut values = values.to_vec();
            if let Some(c) = current
                && !values.contains(c)
            {
                values.push(c.clone());
            }
            values
                .into_iter()
                .map(|value| FilterOption {
                    selected: current.as_ref() == Some(&value),
                    value,
                })
                .collect()
        };
        let charts = CHARTS
            .iter()
            .map(|spec| ChartView {
                slug: spec.slug,
                title: spec.title,
                caption: spec.caption,
                svg_href: format!("charts/{}.svg{}", spec.slug, view.href_current()),
                svg_wide: chart_in_page(spec, view, snapshot, Framing::Wide),
                svg_narrow: chart_in_page(spec, view, snapshot, Framing::Narrow),
            })
            .collect();
        let alert_view = |a: &AlertEvent| AlertView {
            state: a.state.as_str().to_owned(),
            alert: a.alert.clone(),
            severity: a.severity.clone(),
            release: a.release.clone(),
            instance: a.instance.clone(),
            summary: a.summary.clone(),
            description: a.description.clone(),
            at: short_time_text(now, a.at_ms),
            at_full: time_text(a.at_ms),
            at_iso: iso_text(a.at_ms),
            ago: ago_text(now, a.at_ms),
        };
        let (active, history, history_more, instances, events) = match snapshot {
            Some(s) => (
                s.alerts.active.iter().map(alert_view).collect(),
                s.alerts
                    .history
                    .iter()
                    .take(HISTORY_LIMIT)
                    .map(alert_view)
                    .collect(),
                s.alerts.history.len().saturating_sub(HISTORY_LIMIT),
                s.instance_rows(now)
                    .into_iter()
                    .map(|row| InstanceView {
                        color: row.color,
                        release: row.key.release,
                        instance: row.key.instance,
                        status: row.status.as_str(),
                        last_seen: row
                            .last_seen_ms
                            .map_or_else(|| "never".to_owned(), |t| ago_text(now, t)),
                        readings: row
                            .readings
                            .into_iter()
                            .map(|r| r.unwrap_or_else(|| "–".to_owned()))
                            .collect(),
                    })
                    .collect(),
                s.events
                    .iter()
                    .take(HISTORY_LIMIT)
                    .map(|e| EventView {
                        class: if e.kind.starts_with("deploy.") {
                            "deploy"
                        } else if e.kind.starts_with("rollback.") {
                            "rollback"
                        } else if e.kind.starts_with("control.") {
                            "control"
                        } else {
                            "instance"
                        },
                        kind: e.kind.clone(),
                        release: e.release.clone(),
                        summary: e.summary.clone(),
                        at: short_time_text(now, e.at_ms),
                        at_full: time_text(e.at_ms),
                        at_iso: iso_text(e.at_ms),
                    })
                    .collect(),
            ),
            None => (Vec::new(), Vec::new(), 0, Vec::new(), Vec::new()),
        };
        let (releases, instances_all) =
            snapshot.map_or((&[][..], &[][..]), |s| (&s.releases[..], &s.instances[..]));
        Self {
            generated: time_text(now),
            refresh_seconds: state.refresh_seconds,
            script: RELOAD_SCRIPT,
            ranges: Range::ALL
                .into_iter()
                .map(|r| RangeLink {
                    label: r.as_str(),
                    href: view.href(r),
                    current: !view.fitted && r == view.range,
                })
                .collect(),
            range: if view.fitted { "" } else { view.range.as_str() },
            fitted: view.fitted.then(|| {
                format!(
                    "since the first sample, {}",
                    ago_text(now, view.selection.from_ms)
                )
            }),
            release_options: options(releases, &view.selection.release),
            instance_options: options(instances_all, &view.selection.instance),
            filtered: view.selection.release.is_some() || view.selection.instance.is_some(),
            problem,
            charts,
            columns: vec!["RSS", "Heap", "Requests", "5xx", "p99"],
            instances,
            active,
            history,
            history_more,
            events,
            marker_legend: MarkerKind::ALL
                .into_iter()
                .map(|k| (k.label(), k.color()))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard_error.html")]
struct ErrorPage {
    message: String,
    ranges: Vec<RangeLink>,
}

fn bad_request_page(message: &str) -> Response {
    let page = ErrorPage {
        message: message.to_owned(),
        ranges: Range::ALL
            .into_iter()
            .map(|r| RangeLink {
                label: r.as_str(),
                href: format!("?range={}", r.as_str()),
                current: false,
            })
            .collect(),
    };
    match page.render() {
        Ok(body) => html(StatusCode::BAD_REQUEST, body),
        Err(_) => problem_json(StatusCode::BAD_REQUEST, "Bad query", message),
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    common_headers(headers, &PAGE_CSP);
    response
}

fn problem_json(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    common_headers(headers, "default-src 'none'");
    response
}

fn common_headers(headers: &mut axum::http::HeaderMap, csp: &str) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

fn datetime(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Formats `ms` with `format`, or `None` when it is out of range.
fn formatted(
    ms: i64,
    format: &[time::format_description::BorrowedFormatItem<'_>],
) -> Option<String> {
    datetime(ms)?.format(format).ok()
}

/// `2025-01-02 13:04:05 UTC` (what notifications print too).
pub(crate) fn time_text(ms: i64) -> String {
    formatted(
        ms,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC"),
    )
    .unwrap_or_else(|| format!("{ms} ms"))
}

/// `13:04:05` on the day of `now_ms` (UTC), else `Jan 2 13:04:05`.
fn short_time_text(now_ms: i64, ms: i64) -> String {
    let same_day = datetime(now_ms)
        .zip(datetime(ms))
        .is_some_and(|(now, t)| now.date() == t.date());
    let text = if same_day {
        formatted(
            ms,
            time::macros::format_description!("[hour]:[minute]:[second]"),
        )
    } else {
        formatted(
            ms,
            time::macros::format_description!(
                "[month repr:short] [day padding:none] [hour]:[minute]:[second]"
            ),
        )
    };
    text.unwrap_or_else(|| time_text(ms))
}

/// `2025-01-02T13:04:05Z`, for `<time datetime>`.
fn iso_text(ms: i64) -> String {
    formatted(
        ms,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    )
    .unwrap_or_default()
}

/// `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
fn ago_text(now_ms: i64, ms: i64) -> String {
    let seconds = (now_ms - ms).max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_default_to_an_hour() {
        assert_eq!(Range::parse(None), Ok(Range::Hour1));
        assert_eq!(Range::parse(Some("")), Ok(Range::Hour1));
        assert_eq!(Range::parse(Some("7d")), Ok(Range::Days7));
        assert_eq!(Range::parse(Some("15M")), Ok(Range::Minutes15));
        let error = Range::parse(Some("2y")).err().unwrap_or_default();
        assert!(error.contains("15m, 1h, 6h, 24h, 7d"), "{error}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(time_text(86_400_000 + 3_723_000), "1970-01-02 01:02:03 UTC");
        assert_eq!(iso_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(short_time_text(3_600_000, 3_723_000), "01:02:03");
        assert_eq!(short_time_text(86_400_000, 3_723_000), "Jan 1 01:02:03");
        assert_eq!(ago_text(10_000_000, 10_000_000 - 301_000), "5 min ago");
    }

    #[test]
    fn filter_values_are_percent_encoded_in_links() {
        assert_eq!(percent_encode("v2 &x=1"), "v2%20%26x%3D1");
        assert_eq!(percent_encode("127.0.0.1:9001"), "127.0.0.1:9001");
    }
}
