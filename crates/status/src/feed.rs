//! The incident history as feeds: `/history.atom` (Atom 1.0) and `/history.rss`
//! (RSS 2.0), one entry per incident or maintenance, newest first, its updates as
//! the entry's HTML content — what Statuspage's feeds carry, so a feed reader or
//! a chat integration subscribed to one can follow Warden's.
//!
//! Text is escaped twice on purpose: once as HTML (the entry's content is HTML),
//! then as XML (the HTML is carried as text in the document).

use std::fmt::Write as _;

use time::format_description::well_known::{Rfc2822, Rfc3339};
use warden_store::{KIND_MAINTENANCE, StatusIncident};

use crate::StatusConfig;
use crate::datetime;
use crate::model::{IncidentStatus, MaintenanceStatus};
use crate::page::escape;
use crate::statuspage::{Links, Snapshot};

fn entries(snapshot: &Snapshot) -> Vec<&StatusIncident> {
    let mut all: Vec<&StatusIncident> = snapshot
        .incidents
        .iter()
        .chain(snapshot.maintenances.iter())
        .collect();
    all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
    all.truncate(crate::statuspage::LIST_LIMIT as usize);
    all
}

/// The entry's content: each update, newest first, as HTML.
fn content_html(incident: &StatusIncident) -> String {
    let maintenance = incident.kind == KIND_MAINTENANCE;
    let mut html = String::new();
    for update in incident.updates.iter().rev() {
        let label = if maintenance {
            update
                .status
                .parse::<MaintenanceStatus>()
                .map_or("Update", MaintenanceStatus::label)
        } else {
            update
                .status
                .parse::<IncidentStatus>()
                .map_or("Update", IncidentStatus::label)
        };
        let _ = write!(
            html,
            "<p><small>{}</small><br><strong>{label}</strong> - {}</p>",
            escape(&crate::human_time(update.display_ms)),
            escape(&update.body)
        );
    }
    html
}

fn rfc3339(ms: i64) -> String {
    datetime(ms)
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn rfc2822(ms: i64) -> String {
    datetime(ms)
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_default()
}

/// The Atom feed.
#[must_use]
pub fn atom(snapshot: &Snapshot, config: &StatusConfig, links: &Links) -> String {
    let name = escape(&config.page.name);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        xml,
        "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\n\
         <id>tag:warden,2025:{page_id}:history</id>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"{home}\"/>\n\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"{self_href}\"/>\n\
         <title>{name} status - incident history</title>\n\
         <updated>{updated}</updated>\n\
         <author><name>{name}</name></author>\n",
        page_id = escape(&config.page.id),
        home = escape(&links.home()),
        self_href = escape(&links.root("history.atom")),
        updated = rfc3339(snapshot.updated_ms()),
    );
    for incident in entries(snapshot) {
        let _ = write!(
            xml,
            "<entry>\n\
             <id>tag:warden,2025:{page_id}:incident:{id}</id>\n\
             <published>{published}</published>\n\
             <updated>{updated}</updated>\n\
             <link rel=\"alternate\" type=\"text/html\" href=\"{href}\"/>\n\
             <title>{title}</title>\n\
             <content type=\"html\">{content}</content>\n\
             </entry>\n",
            page_id = escape(&config.page.id),
            id = escape(&incident.id),
            published = rfc3339(incident.created_ms),
            updated = rfc3339(incident.updated_ms),
            href = escape(&links.incident(&incident.id)),
            title = escape(&incident.name),
            content = escape(&content_html(incident)),
        );
    }
    xml.push_str("</feed>\n");
    xml
}

/// The RSS 2.0 feed.
#[must_use]
pub fn rss(snapshot: &Snapshot, config: &StatusConfig, links: &Links) -> String {
    let name = escape(&config.page.name);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        xml,
        "<rss version=\"2.0\">\n<channel>\n\
         <title>{name} status - incident history</title>\n\
         <link>{home}</link>\n\
         <description>Statuspage-style incident history of {name}</description>\n\
         <pubDate>{updated}</pubDate>\n",
        home = escape(&links.home()),
        updated = rfc2822(snapshot.updated_ms()),
    );
    for incident in entries(snapshot) {
        let _ = write!(
            xml,
            "<item>\n\
             <title>{title}</title>\n\
             <description>{content}</description>\n\
             <pubDate>{published}</pubDate>\n\
             <link>{href}</link>\n\
             <guid isPermaLink=\"false\">{page_id}:incident:{id}</guid>\n\
             </item>\n",
            title = escape(&incident.name),
            content = escape(&content_html(incident)),
            published = rfc2822(incident.created_ms),
            href = escape(&links.incident(&incident.id)),
            page_id = escape(&config.page.id),
            id = escape(&incident.id),
        );
    }
    xml.push_str("</channel>\n</rss>\n");
    xml
}
