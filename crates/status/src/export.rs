//! `warden status export DIR`: the status page, each incident's page, each
//! published postmortem, the JSON and the feeds as static files, to serve from
//! anywhere (a CDN, object storage, a second machine) when the console should not
//! face the internet or is down.
//!
//! Layout of DIR: `index.html`, `incidents/ID.html`, `postmortems/ID.html` (with
//! its memory chart inline), `api/v2/*.json` (the same paths as the console's),
//! `history.atom`, `history.rss`. Links between the pages are relative, so the
//! files work wherever they are put; with a base URL (`--base-url`, else `page.url`
//! of the status config) every link is absolute on it instead. No link points at the
//! console.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use warden_store::Store;

use crate::StatusConfig;
use crate::http::{Document, render};
use crate::statuspage::{Links, Snapshot};

/// Writes every file into `dir` (created if needed) as of `now_ms`, with links on
/// `base_url` (else `page.url`, else relative); returns the paths written.
///
/// # Errors
/// The base URL is not `http(s)://...`, the store cannot be read or a file cannot
/// be written; the error names it.
pub fn export(
    store: &Store,
    config: &StatusConfig,
    dir: &Path,
    now_ms: i64,
    base_url: Option<&str>,
) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(url) = base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        anyhow::bail!("--base-url: {url:?} must start with http:// or https://");
    }
    let snapshot =
        Snapshot::read(store, now_ms).context("cannot read the control plane's store")?;
    let base = base_url
        .or(config.public_url())
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let root_links = Links {
        base: base.clone(),
        static_files: true,
    };
    // Pages under incidents/ and postmortems/ reach the root one level up.
    let nested_links = Links {
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
                &nested_links,
            ));
        }
    }
    let mut written = Vec::new();
    let mut put = |relative: &Path, body: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for (relative, document, links) in files {
        let Some(rendered) = render(&document, &snapshot, config, links)
            .map_err(|e| anyhow::anyhow!("cannot render {}: {e}", relative.display()))?
        else {
            continue;
        };
        put(&relative, rendered.body.as_bytes())?;
    }
    for published in &snapshot.postmortems {
        let id = &published.incident_id;
        if crate::model::check_id(id).is_err() {
            continue;
        }
        let relative = Path::new("postmortems").join(format!("{id}.html"));
        let page = crate::postmortem::published_page(store, config, &nested_links, id, now_ms)
            .map_err(|e| anyhow::anyhow!("cannot render {}: {e}", relative.display()))?;
        if let Some(page) = page {
            put(&relative, page.as_bytes())?;
        }
    }
    Ok(written)
}
