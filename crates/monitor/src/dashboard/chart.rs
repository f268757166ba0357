//! Time-series line charts as self-contained SVG, drawn on the server.
//!
//! The dashboard must work with JavaScript off and without any asset from the
//! network, so every chart is a string of SVG written here: one path per series,
//! dashed vertical markers for deploys, rollbacks and alerts, axes with units, and a
//! legend. The same string is inlined in the page and served alone as
//! `/charts/{metric}.svg`.
//!
//! A week of raw samples is far more points than a chart is pixels wide, so each
//! series is thinned to the lowest and highest value per pixel column: the path stays
//! small, and a spike or a dip one sample wide still shows. A pause in a series (an
//! instance that was down, a scrape that failed) breaks the line instead of drawing
//! a straight bridge across it.
//!
//! Every string that came from the store (labels, event kinds, summaries) is
//! escaped on its way into the SVG.

use std::fmt::Write as _;

/// Height of the plot area.
const PLOT_HEIGHT: f64 = 180.0;
const RIGHT_MARGIN: f64 = 14.0;
const LEGEND_ROW: f64 = 18.0;
/// Roughly how wide a character of the 11–12 px system font is, to lay out labels.
const CHAR_WIDTH: f64 = 6.2;
const FONT_STACK: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const TEXT: &str = "#334155";
const MUTED: &str = "#64748b";
const GRID: &str = "#e2e8f0";

/// The unit a chart shows its values in; samples are converted from the store's
/// base units (bytes, ratios, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes shown as megabytes (10^6, as in the Grafana dashboard).
    Megabytes,
    /// Requests per second.
    RequestsPerSecond,
    /// A ratio 0..1 shown as a percentage.
    Percent,
    /// Seconds shown as milliseconds.
    Milliseconds,
}

impl Unit {
    /// Converts a stored value to this unit.
    #[must_use]
    pub fn convert(self, value: f64) -> f64 {
        match self {
            Self::Megabytes => value / 1e6,
            Self::RequestsPerSecond => value,
            Self::Percent => value * 100.0,
            Self::Milliseconds => value * 1e3,
        }
    }

    /// The unit's symbol as shown after a number.
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Megabytes => "MB",
            Self::RequestsPerSecond => "req/s",
            Self::Percent => "%",
            Self::Milliseconds => "ms",
        }
    }

    /// The smallest span of the y axis, so a flat line is not blown up into noise.
    fn min_span(self) -> f64 {
        match self {
            Self::Megabytes => 1.0,
            Self::RequestsPerSecond => 1.0,
            Self::Percent => 1.0,
            Self::Milliseconds => 1.0,
        }
    }

    /// Formats a value in this unit with `decimals` digits after the point.
    #[must_use]
    pub fn format(self, value: f64, decimals: usize) -> String {
        let number = group_thousands(&format!("{value:.decimals$}"));
        match self {
            Self::Percent => format!("{number}%"),
            _ => format!("{number} {}", self.symbol()),
        }
    }

    /// Formats a current value with a precision that suits its size.
    #[must_use]
    pub fn format_reading(self, value: f64) -> String {
        let magnitude = value.abs();
        let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
            0
        } else if magnitude >= 10.0 {
            1
        } else {
            2
        };
        self.format(value, decimals)
    }
}

/// What a vertical marker stands for; each kind has its own colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkerKind {
    /// A `deploy.*` event.
    Deploy,
    /// A `rollback.*` event.
    Rollback,
    /// An `alert.firing` event.
    AlertFiring,
    /// An `alert.resolved` event.
    AlertResolved,
    /// A `control.restarted` event: the control plane came back after a crash.
    Restart,
}

impl MarkerKind {
    /// Every kind, in legend order.
    pub const ALL: [Self; 5] = [
        Self::Deploy,
        Self::Rollback,
        Self::AlertFiring,
        Self::AlertResolved,
        Self::Restart,
    ];

    /// The marker's colour.
    #[must_use]
    pub fn color(self) -> &'static str {
        match self {
            Self::Deploy => "#0369a1",
            Self::Rollback => "#7c3aed",
            Self::AlertFiring => "#dc2626",
            Self::AlertResolved => "#16a34a",
            Self::Restart => "#d97706",
        }
    }

    /// The name shown in legends.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::AlertFiring => "alert firing",
            Self::AlertResolved => "alert resolved",
            Self::Restart => "control plane restart",
        }
    }

    /// The CSS class suffix (`marker-deploy`, ...).
    #[must_use]
    pub fn slug(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::AlertFiring => "alert-firing",
            Self::AlertResolved => "alert-resolved",
            Self::Restart => "restart",
        }
    }
}

/// A vertical line at the time something happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// When (unix ms).
    pub at_ms: i64,
    /// What kind of thing.
    pub kind: MarkerKind,
    /// What is shown on hover: the event, its release, its time.
    pub description: String,
}

/// One line on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The legend's text for it, e.g. `v2 · 127.0.0.1:9001`.
    pub label: String,
    /// Its colour (a CSS colour from the dashboard's palette).
    pub color: String,
    /// Dashed (a secondary line of the same series, e.g. the p50 beside the p99).
    pub dashed: bool,
    /// `(unix ms, value in the chart's unit)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// A horizontal line at a limit, e.g. the memory limit an instance is killed at.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Its value in the chart's unit.
    pub value: f64,
    /// What it is, as the legend says it (`memory limit`).
    pub label: &'static str,
}

const LIMIT_COLOR: &str = "#b91c1c";
/// A limit this many times above the highest value is not drawn (it would flatten
/// every line to the bottom); the chart says where it is instead.
const LIMIT_SHOWN_WITHIN: f64 = 4.0;

/// Everything a chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// The chart's title (drawn inside the SVG only when it stands alone).
    pub title: &'a str,
    /// The unit of the y axis.
    pub unit: Unit,
    /// Whether the y axis starts at zero, so a rise is seen at its true size.
    pub zero_based: bool,
    /// Whether a few extreme values (a start-up latency spike) may run off the top of
    /// the axis instead of squashing every other value into its bottom.
    pub clip_outliers: bool,
    /// A horizontal line for a limit the values must stay under (the memory limit),
    /// in the chart's unit.
    pub limit: Option<Limit>,
    /// The time range shown (unix ms).
    pub from_ms: i64,
    /// The end of the time range shown (unix ms).
    pub to_ms: i64,
    /// The lines.
    pub lines: Vec<Line>,
    /// Vertical markers; those outside the range are left out.
    pub markers: &'a [Marker],
}

/// How a chart is embedded.
///
/// In the page an SVG scales to its column, text included, so a chart laid out for
/// a laptop's column would have 6-pixel labels on a phone. The page therefore holds
/// each chart twice, wide and narrow, and its stylesheet shows the one that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// In the page, for a column of a laptop's screen (class `chart-wide`).
    Wide,
    /// In the page, for a phone's screen (class `chart-narrow`): fewer time ticks.
    Narrow,
    /// A document of its own: with its title, size and background.
    Standalone,
}

impl Framing {
    /// Width of the chart's coordinate system.
    fn width(self) -> f64 {
        match self {
            Self::Wide | Self::Standalone => 640.0,
            Self::Narrow => 360.0,
        }
    }

    fn max_time_ticks(self) -> i64 {
        match self {
            Self::Wide | Self::Standalone => 7,
            Self::Narrow => 4,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Self::Wide => "chart chart-wide",
            Self::Narrow => "chart chart-narrow",
            Self::Standalone => "chart",
        }
    }
}

/// Renders `chart` as SVG. A chart with no points says so instead of drawing an
/// empty frame.
#[must_use]
pub fn render(chart: &Chart<'_>, framing: Framing) -> String {
    let has_points = chart.lines.iter().any(|l| {
        l.points
            .iter()
            .any(|&(t, v)| in_range(chart, t) && v.is_finite())
    });
    if !has_points {
        return message(chart.title, "No data in this range", framing);
    }
    Plot::new(chart, framing).draw()
}

/// A chart that shows only a message (no data, or data that could not be read).
#[must_use]
pub fn message(title: &str, text: &str, framing: Framing) -> String {
    let title_height = if framing == Framing::Standalone {
        28.0
    } else {
        0.0
    };
    let height = title_height + 120.0;
    let mut svg = String::new();
    open_svg(&mut svg, title, height, framing, "chart-empty");
    if framing == Framing::Standalone {
        title_text(&mut svg, title);
    }
    let _ = write!(
        svg,
        r##"<rect x="1" y="{y}" width="{w}" height="118" rx="6" fill="#f8fafc" stroke="{GRID}" stroke-dasharray="4 4"/><text class="empty-message" x="{cx}" y="{ty}" text-anchor="middle" font-size="13" fill="{MUTED}">{text}</text></svg>"##,
        y = f(title_height + 1.0),
        w = f(framing.width() - 2.0),
        cx = f(framing.width() / 2.0),
        ty = f(title_height + 64.0),
        text = escape(text),
    );
    svg
}

fn in_range(chart: &Chart<'_>, t: i64) -> bool {
    (chart.from_ms..=chart.to_ms).contains(&t)
}

/// The layout of one chart with data.
struct Plot<'c, 'a> {
    chart: &'c Chart<'a>,
    framing: Framing,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    y_axis: Axis,
    /// The limit line, when it is close enough to the values to be drawn.
    limit_drawn: Option<&'c Limit>,
    /// Values above the axis' top: how many, and the highest.
    clipped: Option<(usize, f64)>,
}

impl<'c, 'a> Plot<'c, 'a> {
    fn new(chart: &'c Chart<'a>, framing: Framing) -> Self {
        let values: Vec<f64> = chart
            .lines
            .iter()
            .flat_map(|l| {
                l.points
                    .iter()
                    .filter(|&&(t, v)| in_range(chart, t) && v.is_finite())
                    .map(|&(_, v)| v)
            })
            .collect();
        let highest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let limit_drawn = chart
            .limit
            .as_ref()
            .filter(|l| l.value.is_finite() && l.value > 0.0)
            .filter(|l| l.value <= highest.max(0.0) * LIMIT_SHOWN_WITHIN);
        let top = if chart.clip_outliers {
            outlier_ceiling(&values)
        } else {
            None
        };
        let axis_values = values
            .iter()
            .copied()
            .map(|v| top.map_or(v, |top| v.min(top)))
            .chain(limit_drawn.map(|l| l.value));
        let y_axis = Axis::for_values(axis_values, chart.unit, chart.zero_based);
        let above = values.iter().filter(|&&v| v > y_axis.max).count();
        let clipped = (above > 0).then_some((above, highest));
        let widest_label = y_axis
            .ticks()
            .map(|v| chart.unit.format(v, y_axis.decimals).chars().count())
            .max()
            .unwrap_or(4);
        let left = (widest_label as f64).mul_add(CHAR_WIDTH, 14.0).max(44.0);
        let top = if framing == Framing::Standalone {
            40.0
        } else {
            10.0
        };
        Self {
            chart,
            framing,
            left,
            right: framing.width() - RIGHT_MARGIN,
            top,
            bottom: top + PLOT_HEIGHT,
            y_axis,
            limit_drawn,
            clipped,
        }
    }

    fn x(&self, t: i64) -> f64 {
        let span = (self.chart.to_ms - self.chart.from_ms).max(1) as f64;
        self.left + (t - self.chart.from_ms) as f64 / span * (self.right - self.left)
    }

    fn y(&self, v: f64) -> f64 {
        let span = (self.y_axis.max - self.y_axis.min).max(f64::EPSILON);
        let v = v.clamp(self.y_axis.min, self.y_axis.max);
        self.bottom - (v - self.y_axis.min) / span * (self.bottom - self.top)
    }

    fn draw(&self) -> String {
        let legend = self.legend_items();
        let rows = legend_rows(&legend, self.left, self.right);
        let legend_top = self.bottom + 38.0;
        let height = (rows.len() as f64).mul_add(LEGEND_ROW, legend_top) + 4.0;
        let mut svg = String::with_capacity(16 * 1024);
        open_svg(&mut svg, self.chart.title, height, self.framing, "");
        if self.framing == Framing::Standalone {
            title_text(&mut svg, self.chart.title);
        }
        self.grid_and_axes(&mut svg);
        self.markers(&mut svg);
        self.limit(&mut svg);
        self.lines(&mut svg);
        self.notes(&mut svg);
        draw_legend(&mut svg, &rows, legend_top);
        svg.push_str("</svg>");
        svg
    }

    fn grid_and_axes(&self, svg: &mut String) {
        svg.push_str(r#"<g class="y-axis">"#);
        for v in self.y_axis.ticks() {
            let y = self.y(v);
            let _ = write!(
                svg,
                r#"<line x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="{GRID}"/><text x="{tx}" y="{ty}" text-anchor="end" fill="{MUTED}">{label}</text>"#,
                l = f(self.left),
                r = f(self.right),
                y = f(y),
                tx = f(self.left - 6.0),
                ty = f(y + 3.5),
                label = escape(&self.chart.unit.format(v, self.y_axis.decimals)),
            );
        }
        svg.push_str(r#"</g><g class="x-axis">"#);
        let ticks = time_ticks(
            self.chart.from_ms,
            self.chart.to_ms,
            self.framing.max_time_ticks(),
        );
        for &(t, ref label) in &ticks {
            let x = self.x(t);
            let _ = write!(
                svg,
                r#"<line x1="{x}" x2="{x}" y1="{top}" y2="{b}" stroke="{GRID}" stroke-dasharray="2 3"/><line x1="{x}" x2="{x}" y1="{b}" y2="{bt}" stroke="{MUTED}"/><text x="{x}" y="{ty}" text-anchor="middle" fill="{MUTED}">{label}</text>"#,
                x = f(x),
                top = f(self.top),
                b = f(self.bottom),
                bt = f(self.bottom + 4.0),
                ty = f(self.bottom + 17.0),
                label = escape(label),
            );
        }
        let _ = write!(
            svg,
            r#"<line x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="{MUTED}"/><text x="{r}" y="{ty}" text-anchor="end" fill="{MUTED}" font-size="10">UTC</text></g>"#,
            l = f(self.left),
            r = f(self.right),
            b = f(self.bottom),
            ty = f(self.bottom + 30.0),
        );
    }

    fn markers(&self, svg: &mut String) {
        let mut markers: Vec<&Marker> = self
            .chart
            .markers
            .iter()
            .filter(|m| in_range(self.chart, m.at_ms))
            .collect();
        // Alerts over deploys, so the most urgent colour is on top.
        markers.sort_by_key(|m| (m.kind, m.at_ms));
        for marker in markers {
            let x = self.x(marker.at_ms);
            let color = marker.kind.color();
            let _ = write!(
                svg,
                r#"<g class="marker marker-{slug}"><title>{title}</title><line x1="{x}" x2="{x}" y1="{top}" y2="{b}" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/><path d="M{xl} {ty}h8l-4 6z" fill="{color}"/><rect x="{xl}" y="{top}" width="8" height="{h}" fill="transparent"/></g>"#,
                slug = marker.kind.slug(),
                title = escape(&marker.description),
                x = f(x),
                xl = f(x - 4.0),
                top = f(self.top),
                ty = f(self.top - 6.0),
                b = f(self.bottom),
                h = f(self.bottom - self.top),
            );
        }
    }

    fn lines(&self, svg: &mut String) {
        let columns = (self.right - self.left).round().max(1.0) as usize;
        for line in &self.chart.lines {
            let points: Vec<(i64, f64)> = line
                .points
                .iter()
                .copied()
                .filter(|&(t, v)| in_range(self.chart, t) && v.is_finite())
                .collect();
            if points.is_empty() {
                continue;
            }
            let segments = split_at_gaps(&points);
            let mut d = String::new();
            let mut dots = String::new();
            for segment in &segments {
                let thinned = thin(segment, self.chart.from_ms, self.chart.to_ms, columns);
                if let [(t, v)] = thinned.as_slice() {
                    let _ = write!(
                        dots,
                        r#"<circle cx="{}" cy="{}" r="2.5" fill="{}"/>"#,
                        f(self.x(*t)),
                        f(self.y(*v)),
                        &line.color
                    );
                    continue;
                }
                for (i, &(t, v)) in thinned.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{} {}",
                        if i == 0 { 'M' } else { 'L' },
                        f(self.x(t)),
                        f(self.y(v))
                    );
                }
            }
            let dash = if line.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r#"<g class="line"><title>{label}</title>"#,
                label = escape(&line.label)
            );
            if !d.is_empty() {
                let _ = write!(
                    svg,
                    r#"<path class="series" data-points="{n}" d="{d}" fill="none" stroke="{color}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"{dash}/>"#,
                    n = points.len(),
                    color = &line.color,
                );
            }
            svg.push_str(&dots);
            svg.push_str("</g>");
        }
    }

    fn limit(&self, svg: &mut String) {
        let Some(limit) = self.limit_drawn else {
            return;
        };
        let y = self.y(limit.value);
        let _ = write!(
            svg,
            r#"<g class="limit"><title>{label}: {value}</title><line x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="{LIMIT_COLOR}" stroke-width="1.5" stroke-dasharray="8 3 2 3"/><text x="{r}" y="{ty}" text-anchor="end" fill="{LIMIT_COLOR}" font-size="10.5">{label} {value}</text></g>"#,
            label = escape(limit.label),
            value = escape(&self.chart.unit.format_reading(limit.value)),
            l = f(self.left),
            r = f(self.right - 2.0),
            y = f(y),
            ty = f(y - 4.0),
        );
    }

    /// What the plot cannot show: values above its top, a limit far above it.
    fn notes(&self, svg: &mut String) {
        let mut notes = Vec::new();
        if let Some((count, highest)) = self.clipped {
            notes.push(format!(
                "↑ {count} {} above the axis, up to {}",
                if count == 1 { "value" } else { "values" },
                self.chart.unit.format_reading(highest)
            ));
        }
        if let Some(limit) = &self.chart.limit
            && self.limit_drawn.is_none()
            && limit.value.is_finite()
            && limit.value > 0.0
        {
            notes.push(format!(
                "{} {}: far above this axis",
                limit.label,
                self.chart.unit.format_reading(limit.value)
            ));
        }
        for (i, note) in notes.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<text class="chart-note" x="{x}" y="{y}" fill="{MUTED}" font-size="10.5">{text}</text>"#,
                x = f(self.left + 6.0),
                y = f((i as f64).mul_add(13.0, self.top + 11.0)),
                text = escape(note),
            );
        }
    }

    fn legend_items(&self) -> Vec<LegendItem> {
        let mut items: Vec<LegendItem> = self
            .chart
            .lines
            .iter()
            .filter(|l| l.points.iter().any(|&(t, _)| in_range(self.chart, t)))
            .map(|l| LegendItem {
                text: l.label.clone(),
                color: l.color.clone(),
                swatch: if l.dashed {
                    Swatch::Dashed
                } else {
                    Swatch::Solid
                },
            })
            .collect();
        // In the page, one legend above the charts explains the markers.
        if self.framing != Framing::Standalone {
            return items;
        }
        for kind in MarkerKind::ALL {
            if self
                .chart
                .markers
                .iter()
                .any(|m| m.kind == kind && in_range(self.chart, m.at_ms))
            {
                items.push(LegendItem {
                    text: kind.label().to_owned(),
                    color: kind.color().to_owned(),
                    swatch: Swatch::Marker,
                });
            }
        }
        items
    }
}

fn open_svg(svg: &mut String, title: &str, height: f64, framing: Framing, extra_class: &str) {
    let size = if framing == Framing::Standalone {
        format!(r#" width="{}" height="{}""#, f(framing.width()), f(height))
    } else {
        String::new()
    };
    let class = if extra_class.is_empty() {
        framing.class().to_owned()
    } else {
        format!("{} {extra_class}", framing.class())
    };
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="{class}" viewBox="0 0 {w} {h}"{size} role="img" aria-label="{title}" font-family="{FONT_STACK}" font-size="11">"#,
        w = f(framing.width()),
        h = f(height),
        title = escape(title),
    );
    if framing == Framing::Standalone {
        svg.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    }
}

fn title_text(svg: &mut String, title: &str) {
    let _ = write!(
        svg,
        r#"<text x="2" y="18" font-size="15" font-weight="600" fill="{TEXT}">{}</text>"#,
        escape(title)
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swatch {
    Solid,
    Dashed,
    Marker,
}

struct LegendItem {
    text: String,
    color: String,
    swatch: Swatch,
}

impl LegendItem {
    fn width(&self) -> f64 {
        (self.text.chars().count() as f64).mul_add(CHAR_WIDTH, 22.0 + 14.0)
    }
}

/// Lays legend items out in rows that fit between `left` and `right`; each placed
/// item is `(x, item)`.
fn legend_rows(items: &[LegendItem], left: f64, right: f64) -> Vec<Vec<(f64, &LegendItem)>> {
    let start = (left - 40.0).max(4.0);
    let mut rows: Vec<Vec<(f64, &LegendItem)>> = Vec::new();
    let mut x = start;
    for item in items {
        let fits = x + item.width() <= right + 16.0;
        match rows.last_mut() {
            Some(row) if fits || row.is_empty() => row.push((x, item)),
            _ => {
                x = start;
                rows.push(vec![(x, item)]);
            }
        }
        x += item.width();
    }
    rows
}

fn draw_legend(svg: &mut String, rows: &[Vec<(f64, &LegendItem)>], top: f64) {
    svg.push_str(r#"<g class="legend" font-size="11.5">"#);
    for (r, row) in rows.iter().enumerate() {
        let y = (r as f64).mul_add(LEGEND_ROW, top);
        for &(x, item) in row {
            let mid = y + 5.0;
            match item.swatch {
                Swatch::Solid | Swatch::Dashed => {
                    let dash = if item.swatch == Swatch::Dashed {
                        r#" stroke-dasharray="4 3""#
                    } else {
                        ""
                    };
                    let _ = write!(
                        svg,
                        r#"<line x1="{x}" x2="{x2}" y1="{mid}" y2="{mid}" stroke="{c}" stroke-width="2.5"{dash}/>"#,
                        x = f(x),
                        x2 = f(x + 16.0),
                        mid = f(mid),
                        c = &item.color,
                    );
                }
                Swatch::Marker => {
                    let _ = write!(
                        svg,
                        r#"<line class="legend-marker" x1="{cx}" x2="{cx}" y1="{y1}" y2="{y2}" stroke="{c}" stroke-width="1.5" stroke-dasharray="3 2"/><path d="M{xl} {y1}h8l-4 5z" fill="{c}"/>"#,
                        cx = f(x + 8.0),
                        xl = f(x + 4.0),
                        y1 = f(y - 2.0),
                        y2 = f(y + 11.0),
                        c = &item.color,
                    );
                }
            }
            let _ = write!(
                svg,
                r#"<text x="{tx}" y="{ty}" fill="{TEXT}">{text}</text>"#,
                tx = f(x + 22.0),
                ty = f(y + 9.0),
                text = escape(&item.text),
            );
        }
    }
    svg.push_str("</g>");
}

/// A y axis: its bounds and tick step, on round numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    step: f64,
    decimals: usize,
}

impl Axis {
    fn for_values(values: impl Iterator<Item = f64>, unit: Unit, zero_based: bool) -> Self {
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if zero_based {
            lo = lo.min(0.0);
            // Air above, so a flat line at its maximum does not hide in the frame.
            hi += (hi - lo) * 0.05;
        } else {
            // A little air above and below, so the line does not run along the frame.
            let pad = (hi - lo) * 0.08;
            lo -= pad;
            hi += pad;
            if lo < 0.0 && lo + pad >= 0.0 {
                lo = 0.0;
            }
        }
        if hi - lo < unit.min_span() {
            if zero_based {
                hi = lo + unit.min_span();
            } else {
                let mid = f64::midpoint(lo, hi);
                lo = mid - unit.min_span() / 2.0;
                hi = mid + unit.min_span() / 2.0;
                if lo < 0.0 && mid >= 0.0 {
                    (lo, hi) = (0.0, unit.min_span());
                }
            }
        }
        let step = nice_step((hi - lo) / 5.0);
        let min = (lo / step).floor() * step;
        let max = (hi / step).ceil() * step;
        let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        Self {
            min,
            max,
            step,
            decimals,
        }
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = ((self.max - self.min) / self.step).round() as usize;
        (0..=count).map(move |i| (i as f64).mul_add(self.step, self.min))
    }
}

/// The top of the axis when a few values would otherwise set it: when the highest
/// value is more than three times the 98th percentile, the axis ends at 1.5 times
/// that percentile and the few values above run off its top. A sustained rise
/// (more than 2% of the values) moves the percentile and is never cut.
fn outlier_ceiling(values: &[f64]) -> Option<f64> {
    if values.len() < 20 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * 0.98).round() as usize;
    let typical = sorted[index];
    let highest = sorted[sorted.len() - 1];
    (typical > 0.0 && highest > typical * 3.0).then_some(typical * 1.5)
}

/// The round number (1, 2 or 5 times a power of ten) at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    // A hair of tolerance: 0.2 / 0.1 is 2.0000000000000004.
    let normalized = raw / magnitude - 1e-9;
    let nice = if normalized <= 1.0 {
        1.0
    } else if normalized <= 2.0 {
        2.0
    } else if normalized <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Ticks on round times (UTC) for the range, labelled `HH:MM`, or with the date at
/// midnight and when ticks are a day apart.
fn time_ticks(from_ms: i64, to_ms: i64, max_ticks: i64) -> Vec<(i64, String)> {
    const STEPS: [i64; 13] = [
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        7 * DAY,
    ];
    let span = (to_ms - from_ms).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max_ticks)
        .unwrap_or(7 * DAY);
    let mut t = from_ms.div_euclid(step) * step;
    if t < from_ms {
        t += step;
    }
    let mut ticks = Vec::new();
    while t <= to_ms {
        let label = if t.rem_euclid(DAY) == 0 {
            format_day(t)
        } else {
            format_hm(t)
        };
        ticks.push((t, label));
        t += step;
    }
    ticks
}

fn format_hm(ms: i64) -> String {
    let of_day = ms.rem_euclid(DAY);
    format!("{:02}:{:02}", of_day / HOUR, (of_day % HOUR) / MINUTE)
}

fn format_day(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(at) => format!(
            "{} {}",
            MONTHS[usize::from(u8::from(at.month())) - 1],
            at.day()
        ),
        Err(_) => format_hm(ms),
    }
}

/// Splits a series where it paused: a gap much longer than its usual interval.
fn split_at_gaps(points: &[(i64, f64)]) -> Vec<&[(i64, f64)]> {
    if points.len() < 3 {
        return vec![points];
    }
    let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let usual = gaps[gaps.len() / 2].max(1);
    let limit = usual.saturating_mul(4).max(2_500);
    let mut segments = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].0 - points[i - 1].0 > limit {
            segments.push(&points[start..i]);
            start = i;
        }
    }
    segments.push(&points[start..]);
    segments
}

/// Keeps, per pixel column, the first, lowest, highest and last point in time order,
/// which draws the same line as all the points when there are more than the chart
/// is wide.
fn thin(points: &[(i64, f64)], from_ms: i64, to_ms: i64, columns: usize) -> Vec<(i64, f64)> {
    if points.len() <= columns * 2 {
        return points.to_vec();
    }
    let span = (to_ms - from_ms).max(1) as f64;
    let column_of = |t: i64| (((t - from_ms) as f64 / span) * columns as f64) as i64;
    let mut out = Vec::with_capacity(columns * 4);
    let mut bucket: Vec<(i64, f64)> = Vec::new();
    let mut current = None;
    let mut flush = |bucket: &mut Vec<(i64, f64)>| {
        if bucket.is_empty() {
            return;
        }
        let first = 0;
        let last = bucket.len() - 1;
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in bucket.iter().enumerate() {
            if p.1 < bucket[lo].1 {
                lo = i;
            }
            if p.1 > bucket[hi].1 {
                hi = i;
            }
        }
        let mut keep = [first, lo, hi, last];
        keep.sort_unstable();
        let mut previous = None;
        for i in keep {
            if previous != Some(i) {
                out.push(bucket[i]);
                previous = Some(i);
            }
        }
        bucket.clear();
    };
    for &point in points {
        let column = column_of(point.0);
        if current != Some(column) {
            flush(&mut bucket);
            current = Some(column);
        }
        bucket.push(point);
    }
    flush(&mut bucket);
    out
}

/// A coordinate with one decimal, without a trailing `.0`.
fn f(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

fn group_thousands(number: &str) -> String {
    let (sign, rest) = number
        .strip_prefix('-')
        .map_or(("", number), |rest| ("-", rest));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Escapes text for SVG/XML content and attribute values.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn chart(lines: Vec<Line>, markers: &[Marker]) -> Chart<'_> {
        Chart {
            title: "Resident memory",
            unit: Unit::Megabytes,
            zero_based: false,
            clip_outliers: false,
            limit: None,
            from_ms: 0,
            to_ms: HOUR,
            lines,
            markers,
        }
    }

    #[test]
    fn axis_ticks_are_round_numbers_around_the_data() {
        let axis = Axis::for_values([101.0, 139.0].into_iter(), Unit::Megabytes, false);
        assert_eq!(axis.step, 10.0);
        assert!(axis.min <= 101.0 && axis.max >= 139.0);
        assert_eq!(axis.decimals, 0);
        let axis = Axis::for_values([0.0, 0.3].into_iter(), Unit::Percent, true);
        assert_eq!((axis.min, axis.max), (0.0, 1.0));
        assert_eq!((axis.step, axis.decimals), (0.2, 1));
        assert_eq!(Unit::Percent.format(0.25, 2), "0.25%");
        assert_eq!(Unit::Megabytes.format(1250.0, 0), "1,250 MB");
    }

    #[test]
    fn time_ticks_fall_on_round_minutes() {
        let ticks = time_ticks(DAY + 7 * MINUTE, DAY + HOUR + 7 * MINUTE, 7);
        assert_eq!(ticks[0], (DAY + 10 * MINUTE, "00:10".to_owned()));
        assert_eq!(ticks.len(), 6);
        let week = time_ticks(0, 7 * DAY, 7);
        assert_eq!(week[0].1, "Jan 1");
        assert_eq!(week.len(), 8);
    }

    #[test]
    fn a_pause_breaks_the_line() {
        let points: Vec<(i64, f64)> = (0..10)
            .map(|i| (i * 5_000, 1.0))
            .chain((0..10).map(|i| (600_000 + i * 5_000, 2.0)))
            .collect();
        assert_eq!(split_at_gaps(&points).len(), 2);
    }

    #[test]
    fn thinning_keeps_the_extremes_of_each_column() {
        let mut points: Vec<(i64, f64)> = (0..10_000).map(|i| (i, 1.0)).collect();
        points[5_000].1 = 50.0;
        let thinned = thin(&points, 0, 10_000, 100);
        assert!(thinned.len() <= 400);
        assert!(thinned.contains(&(5_000, 50.0)));
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let lines = vec![Line {
            label: "<script>alert(1)</script>".into(),
            color: "#000".into(),
            dashed: false,
            points: vec![(0, 1e8), (60_000, 1.1e8)],
        }];
        let markers = [Marker {
            at_ms: 30_000,
            kind: MarkerKind::AlertFiring,
            description: "\"><img src=x>".into(),
        }];
        let svg = render(&chart(lines, &markers), Framing::Standalone);
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("<img"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("marker-alert-firing"));
    }

    #[test]
    fn a_chart_without_points_says_so() {
        let svg = render(&chart(Vec::new(), &[]), Framing::Wide);
        assert!(svg.contains("No data in this range"));
        assert!(!svg.contains("<path"));
    }
}
