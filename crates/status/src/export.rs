//! `warden status export DIR`: the status page, each incident's page, the JSON and
//! the feeds as static files, to serve from anywhere (a CDN, object storage, a
//! second machine) when the console should not face the internet or is down.
//!
//! Layout of DIR: `index.html`, `incidents/ID.html`, `api/v2/*.json` (the same
//! paths as the console's), `history.atom`, `history.rss`. Links between the
//! pages are relative; set `page.url` in the status config for absolute links in
//! the JSON and feeds.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use warden_store::Store;

use crate::StatusConfig;
use crate::http::{Document, render};
use crate::statuspage::{Links, Snapshot};

/// Writes every file into `dir` (created if needed) as of `now_ms`; returns the
/// paths written.
///
/// # Errors
/// The store cannot be read or a file cannot be written; the error names it.
pub fn export(
    store: &Store,
    config: &StatusConfig,
    dir: &Path,
    now_ms: i64,
) -> anyhow::Result<Vec<PathBuf>> {
    let snapshot =
        Snapshot::read(store, now_ms).context("cannot read the control plane's store")?;
    let base = config.public_url().unwrap_or_default().to_owned();
    let root_links = Links {
        base: base.clone(),
        static_files: true,
    };
    // Pages under incidents/ reach the root one level up.
    let incident_links = Links {
        base: if base.is_empty() { "..".into() } else { base },
        static_files: true,
    };
    let mut files: Vec<(PathBuf, Document, &Links)> = vec![
        ("index.html".into(), Document::Page, &root_links),
        ("history.atom".into(), Document::Atom, &root_links),
        ("history.rss".into(), Document::Rss, &root_links),
    ];
    for (document, path) in Document::JSON {
        files.push((Path::new("api/v2").join(path), document, &root_links));
    }
    for incident in snapshot.incidents.iter().chain(&snapshot.maintenances) {
        // Ids are generated, but a file name is built from this one: be sure.
        if crate::model::check_id(&incident.id).is_ok() {
            files.push((
                Path::new("incidents").join(format!("{}.html", incident.id)),
                Document::Incident(incident.id.clone()),
                &incident_links,
            ));
        }
    }
    let mut written = Vec::new();
    for (relative, document, links) in files {
        let Some(rendered) = render(&document, &snapshot, config, links)
            .map_err(|e| anyhow::anyhow!("cannot render {}: {e}", relative.display()))?
        else {
            continue;
        };
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, rendered.body)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
