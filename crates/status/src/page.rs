//! The HTML status page and each incident's page, rendered on the server.
//!
//! No script, no font or stylesheet from elsewhere, nothing that needs JavaScript:
//! the uptime bars are inline SVG whose days carry a `<title>` tooltip, the history
//! folds with `<details>`. Every text that came from a person (names, update
//! bodies) goes through askama's HTML escaping; the SVG is built here from numbers,
//! dates and escaped names only. The layout is one column that fits a phone.

use std::fmt::Write as _;

use askama::Template;
use warden_store::{KIND_MAINTENANCE, StatusComponent, StatusIncident};

use crate::model::{ComponentStatus, Impact, IncidentStatus, MaintenanceStatus};
use crate::statuspage::{Links, Snapshot};
use crate::uptime::{self, DAYS, Day};
use crate::{StatusConfig, human_time, json_time};

/// How the page explains its uptime figures.
pub const UPTIME_NOTE: &str = "Uptime counts the minutes of the last 90 days (UTC) since \
    the component was first tracked: a minute of major outage counts fully as down, a \
    minute of partial outage counts as 30% down, and degraded performance and scheduled \
    maintenance count as up — the convention Atlassian Statuspage uses.";

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage<'a> {
    page_name: &'a str,
    indicator: &'static str,
    description: &'static str,
    updated_text: String,
    updated_iso: String,
    links: PageLinks,
    active: Vec<IncidentView>,
    groups: Vec<GroupView>,
    upcoming: Vec<IncidentView>,
    history: Vec<IncidentView>,
    uptime_note: &'static str,
    /// The email sign-up form; empty when it is closed (and in a static export).
    subscribe_href: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage<'a> {
    page_name: &'a str,
    links: PageLinks,
    incident: IncidentView,
    /// The published postmortem's page, empty when none.
    postmortem_href: String,
}

struct PageLinks {
    home: String,
    summary: String,
    atom: String,
    rss: String,
}

struct GroupView {
    name: Option<String>,
    status: &'static str,
    status_label: &'static str,
    components: Vec<ComponentView>,
}

struct ComponentView {
    name: String,
    description: String,
    status: &'static str,
    status_label: &'static str,
    showcase: bool,
    bars: String,
    uptime_text: String,
}

struct IncidentView {
    href: String,
    name: String,
    maintenance: bool,
    status_label: &'static str,
    impact: String,
    impact_label: String,
    when_text: String,
    when_iso: String,
    window_text: String,
    components_text: String,
    updates: Vec<UpdateView>,
}

struct UpdateView {
    status_label: &'static str,
    body: String,
    at_text: String,
    at_iso: String,
    changes: Vec<String>,
}

/// The status page as HTML.
///
/// # Errors
/// The template failed to render.
pub fn render_status(
    snapshot: &Snapshot,
    config: &StatusConfig,
    links: &Links,
) -> Result<String, askama::Error> {
    let indicator = snapshot.indicator();
    let updated = snapshot.updated_ms();
    let mut active: Vec<IncidentView> = snapshot
        .unresolved_incidents()
        .map(|i| incident_view(snapshot, links, i))
        .collect();
    active.extend(
        snapshot
            .active_maintenances()
            .map(|m| incident_view(snapshot, links, m)),
    );
    let history_cutoff = snapshot.now_ms - (DAYS as i64) * 86_400_000;
    let mut history: Vec<&StatusIncident> = snapshot
        .incidents
        .iter()
        .filter(|i| {
            i.status
                .parse::<IncidentStatus>()
                .is_ok_and(IncidentStatus::is_closed)
        })
        .chain(
            snapshot
                .maintenances
                .iter()
                .filter(|m| m.status == MaintenanceStatus::Completed.as_str()),
        )
        .filter(|i| i.started_ms >= history_cutoff)
        .collect();
    history.sort_by_key(|i| std::cmp::Reverse(i.started_ms));
    StatusPage {
        page_name: &config.page.name,
        indicator: indicator.as_str(),
        description: indicator.description(),
        updated_text: human_time(updated),
        updated_iso: json_time(updated),
        links: page_links(links),
        active,
        groups: groups(snapshot),
        upcoming: snapshot
            .upcoming_maintenances()
            .into_iter()
            .map(|m| incident_view(snapshot, links, m))
            .collect(),
        history: history
            .into_iter()
            .map(|i| incident_view(snapshot, links, i))
            .collect(),
        uptime_note: UPTIME_NOTE,
        subscribe_href: if links.static_files || !config.subscribers.email_signup_open() {
            String::new()
        } else {
            links.root("subscribe")
        },
    }
    .render()
}

/// One incident's or maintenance's page as HTML.
///
/// # Errors
/// The template failed to render.
pub fn render_incident(
    snapshot: &Snapshot,
    config: &StatusConfig,
    links: &Links,
    incident: &StatusIncident,
) -> Result<String, askama::Error> {
    let postmortem_href = match snapshot.postmortem(&incident.id) {
        Some(_) => links.postmortem(&incident.id),
        None => String::new(),
    };
    IncidentPage {
        page_name: &config.page.name,
        links: page_links(links),
        incident: incident_view(snapshot, links, incident),
        postmortem_href,
    }
    .render()
}

fn page_links(links: &Links) -> PageLinks {
    PageLinks {
        home: links.home(),
        summary: links.root("api/v2/summary.json"),
        atom: links.root("history.atom"),
        rss: links.root("history.rss"),
    }
}

fn groups(snapshot: &Snapshot) -> Vec<GroupView> {
    // (group id, view): a group's components gather under it; ungrouped components
    // next to each other share one unnamed block.
    let mut out: Vec<(Option<&str>, GroupView)> = Vec::new();
    for component in &snapshot.components {
        let status = snapshot.component_status(component);
        if component.is_group {
            out.push((
                Some(component.id.as_str()),
                GroupView {
                    name: Some(component.name.clone()),
                    status: status.as_str(),
                    status_label: status.label(),
                    components: Vec::new(),
                },
            ));
            continue;
        }
        if component.only_show_if_degraded && status == ComponentStatus::Operational {
            continue;
        }
        let view = component_view(snapshot, component, status);
        let key = component.group_id.as_deref();
        let existing = match key {
            Some(group) => out.iter_mut().find(|(k, _)| *k == Some(group)),
            None => out.last_mut().filter(|(k, _)| k.is_none()),
        };
        match existing {
            Some((_, group)) => group.components.push(view),
            None => out.push((
                key,
                GroupView {
                    name: None,
                    status: "",
                    status_label: "",
                    components: vec![view],
                },
            )),
        }
    }
    out.into_iter()
        .map(|(_, group)| group)
        .filter(|g| !g.components.is_empty())
        .collect()
}

fn component_view(
    snapshot: &Snapshot,
    component: &StatusComponent,
    status: ComponentStatus,
) -> ComponentView {
    let uptime = uptime::compute(component, &snapshot.changes, snapshot.now_ms);
    ComponentView {
        name: component.name.clone(),
        description: component.description.clone().unwrap_or_default(),
        status: status.as_str(),
        status_label: status.label(),
        showcase: component.showcase,
        bars: bars_svg(&component.name, &uptime),
        uptime_text: uptime
            .percent_text()
            .map_or_else(|| "No data yet".to_owned(), |p| format!("{p} uptime")),
    }
}

fn incident_view(snapshot: &Snapshot, links: &Links, incident: &StatusIncident) -> IncidentView {
    let maintenance = incident.kind == KIND_MAINTENANCE;
    let status_label = if maintenance {
        incident
            .status
            .parse::<MaintenanceStatus>()
            .map_or("Unknown", MaintenanceStatus::label)
    } else {
        incident
            .status
            .parse::<IncidentStatus>()
            .map_or("Unknown", IncidentStatus::label)
    };
    let impact_label = if maintenance {
        "Maintenance".to_owned()
    } else {
        match incident.impact.parse::<Impact>() {
            Ok(Impact::None) => "No impact".to_owned(),
            Ok(impact) => format!("{} impact", capitalized(impact.as_str())),
            Err(_) => String::new(),
        }
    };
    let window_text = match (incident.scheduled_for_ms, incident.scheduled_until_ms) {
        (Some(from), Some(until)) => format!("{} – {}", human_time(from), human_time(until)),
        _ => String::new(),
    };
    let names: Vec<&str> = incident
        .components
        .iter()
        .map(|id| {
            snapshot
                .components
                .iter()
                .find(|c| &c.id == id)
                .map_or(id.as_str(), |c| c.name.as_str())
        })
        .collect();
    IncidentView {
        href: links.incident(&incident.id),
        name: incident.name.clone(),
        maintenance,
        status_label,
        impact: incident.impact.clone(),
        impact_label,
        when_text: human_time(incident.started_ms),
        when_iso: json_time(incident.started_ms),
        window_text,
        components_text: names.join(", "),
        updates: incident
            .updates
            .iter()
            .rev()
            .map(|u| UpdateView {
                status_label: if maintenance {
                    u.status
                        .parse::<MaintenanceStatus>()
                        .map_or("Update", MaintenanceStatus::label)
                } else {
                    u.status
                        .parse::<IncidentStatus>()
                        .map_or("Update", IncidentStatus::label)
                },
                body: u.body.clone(),
                at_text: human_time(u.display_ms),
                at_iso: json_time(u.display_ms),
                changes: u
                    .affected
                    .iter()
                    .map(|a| {
                        format!(
                            "{}: {} → {}",
                            a.name,
                            label_of(&a.old_status),
                            label_of(&a.new_status)
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn label_of(status: &str) -> &'static str {
    status
        .parse::<ComponentStatus>()
        .map_or("unknown", ComponentStatus::label)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

const BAR_WIDTH: i64 = 3;
const BAR_GAP: i64 = 2;
const BAR_HEIGHT: i64 = 30;

/// 90 days of uptime as a row of bars, one a day, each with a tooltip.
#[must_use]
pub fn bars_svg(name: &str, uptime: &uptime::Uptime) -> String {
    let width = DAYS as i64 * (BAR_WIDTH + BAR_GAP) - BAR_GAP;
    let mut svg = String::with_capacity(DAYS * 160);
    let _ = write!(
        svg,
        "<svg class=\"bars\" viewBox=\"0 0 {width} {BAR_HEIGHT}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{} uptime, last {DAYS} days: {}\">",
        escape(name),
        uptime.percent_text().unwrap_or_else(|| "no data".into())
    );
    for (index, day) in uptime.days.iter().enumerate() {
        let x = index as i64 * (BAR_WIDTH + BAR_GAP);
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"0\" width=\"{BAR_WIDTH}\" height=\"{BAR_HEIGHT}\" rx=\"1\" \
             fill=\"{}\"><title>{}</title></rect>",
            bar_color(day),
            escape(&day_title(day))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Green with no downtime; yellow, orange, red as weighted downtime grows; grey
/// without data.
fn bar_color(day: &Day) -> &'static str {
    if day.observed_ms == 0 {
        return "#cbd5e1";
    }
    let down_minutes = day.down_ms / 60_000.0;
    if down_minutes <= 0.0 {
        "#16a34a"
    } else if down_minutes < 30.0 {
        "#eab308"
    } else if down_minutes < 240.0 {
        "#f97316"
    } else {
        "#dc2626"
    }
}

fn day_title(day: &Day) -> String {
    let date = crate::datetime(day.start_ms).map_or_else(String::new, |t| t.date().to_string());
    let Some(up) = day.uptime() else {
        return format!("{date}: no data");
    };
    let mut text = format!("{date}: {} uptime", uptime::percent(up));
    for (ms, what) in [
        (day.major_ms, "major outage"),
        (day.partial_ms, "partial outage"),
        (day.degraded_ms, "degraded"),
        (day.maintenance_ms, "maintenance"),
    ] {
        if ms > 0 {
            let _ = write!(text, ", {} min {what}", (ms + 59_999) / 60_000);
        }
    }
    text
}

/// Escapes text for HTML and XML: `&`, `<`, `>`, `"` and `'`.
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
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn bars_have_one_rect_a_day_and_escape_the_name() {
        let uptime = uptime::Uptime {
            days: vec![Day::default(); DAYS],
            fraction: None,
        };
        let svg = bars_svg("<b>API</b>", &uptime);
        assert_eq!(svg.matches("<rect").count(), DAYS);
        assert!(svg.contains("&lt;b&gt;API&lt;/b&gt;"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("no data"));
    }

    #[test]
    fn colors_follow_weighted_downtime() {
        let day = |down_minutes: f64| Day {
            observed_ms: 86_400_000,
            down_ms: down_minutes * 60_000.0,
            ..Day::default()
        };
        assert_eq!(bar_color(&Day::default()), "#cbd5e1");
        assert_eq!(bar_color(&day(0.0)), "#16a34a");
        assert_eq!(bar_color(&day(5.0)), "#eab308");
        assert_eq!(bar_color(&day(105.0)), "#f97316");
        assert_eq!(bar_color(&day(600.0)), "#dc2626");
    }

    #[test]
    fn escape_covers_html_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
