//! The control plane's store: one SQLite file in the data directory.
//!
//! It holds two things the rest of Warden is built on:
//!
//! - **Metric series** scraped from the API instances: raw samples for a day, then
//!   five-minute rollups (min, max, mean, last) for the retention period (7 days by
//!   default), so a week of history stays small and a chart of last Tuesday is cheap.
//! - **The event log**: every deploy, alert transition, rollback, incident update and
//!   notification, append-only, with a time, a kind, the release and a JSON payload.
//!   The dashboard's markers, the status page's automation and the postmortem's
//!   timeline are views of it.
//!
//! It also holds **the release registry**: each release's binary hash, build
//! identity and dependency list, recorded once and never changed.
//!
//! The file runs in WAL mode with `synchronous = FULL`: a write that returned is on
//! disk, so nothing acknowledged is lost on kill -9. Samples are written in one
//! transaction per scrape, which keeps the cost of that to one sync per scrape.
//!
//! The API is synchronous (rusqlite). Callers on an async runtime run it on a
//! blocking thread; see [`Store::blocking`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

mod clients;
pub mod datadir;
pub mod kinds;
mod status;
mod subscribers;
pub use clients::*;
pub use status::*;
pub use subscribers::*;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON document could not be read or written.
    #[error("store: bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The file was written by a newer Warden.
    #[error(
        "store: schema version {found} is newer than this build knows ({known}); upgrade Warden"
    )]
    TooNew {
        /// The file's schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// Something with that identity is already recorded and cannot change.
    #[error("store: {0} already exists and cannot be changed; choose another name")]
    Exists(String),
    /// The file could not be created.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("store: background task failed: {0}")]
    Task(String),
}

/// Result type of the store.
pub type Result<T> = std::result::Result<T, Error>;

/// A series' labels, sorted by name so the same set always has one identity.
pub type Labels = BTreeMap<String, String>;

/// One sample to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `process_resident_memory_bytes`.
    pub name: String,
    /// Labels, including `instance` and `release`.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// The points of one series in a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesData {
    /// Metric name.
    pub name: String,
    /// Labels of the series.
    pub labels: Labels,
    /// `(unix ms, value)`, oldest first. Raw samples where they are still kept; the
    /// mean of each five-minute rollup before that.
    pub points: Vec<(i64, f64)>,
}

/// An event to append to the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened, dotted: `alert.firing`, `alert.resolved`, `deploy.finished`, ...
    pub kind: String,
    /// The release it concerns, if any.
    pub release: Option<String>,
    /// Free-form details.
    pub payload: serde_json::Value,
}

/// An event in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log: strictly increasing.
    pub id: i64,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// What happened.
    pub kind: String,
    /// The release it concerns, if any.
    pub release: Option<String>,
    /// Details.
    pub payload: serde_json::Value,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// Only events before this time (unix ms).
    pub until_ms: Option<i64>,
    /// Only kinds starting with this prefix (`alert.` for every alert transition).
    pub kind_prefix: Option<String>,
    /// At most this many, newest first when set; otherwise all, oldest first.
    pub newest: Option<u32>,
}

/// How long data is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Raw samples older than this are folded into five-minute rollups (ms).
    pub raw_ms: i64,
    /// Rollups older than this are deleted (ms).
    pub rollup_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw_ms: 24 * 3600 * 1000,
            rollup_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Compaction {
    /// Raw samples folded into rollups and removed.
    pub folded: u64,
    /// Rollups removed because they were past retention.
    pub expired: u64,
}

/// Width of a rollup bucket.
pub const ROLLUP_MS: i64 = 5 * 60 * 1000;

const MIGRATIONS: &[&str] = &[
    // 1: series, samples, rollups, events.
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        UNIQUE (name, labels)
    );
    CREATE TABLE samples (
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE INDEX samples_ts ON samples (ts);
    CREATE TABLE rollups (
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts INTEGER NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        sum REAL NOT NULL,
        count INTEGER NOT NULL,
        last REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        release TEXT,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_at ON events (at_ms);",
    // 2: the release registry.
    "CREATE TABLE releases (
        name TEXT PRIMARY KEY,
        added_ms INTEGER NOT NULL,
        version TEXT NOT NULL,
        git_commit TEXT NOT NULL,
        build_lockfile_sha256 TEXT NOT NULL,
        lockfile_sha256 TEXT NOT NULL,
        binary_sha256 TEXT NOT NULL,
        binary_path TEXT NOT NULL,
        args TEXT NOT NULL,
        dependencies TEXT NOT NULL
    );",
    // 3: the status page: components, their state changes, incidents and scheduled
    // maintenances with their updates (see status.rs).
    "CREATE TABLE status_components (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT,
        group_id TEXT,
        is_group INTEGER NOT NULL DEFAULT 0,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        showcase INTEGER NOT NULL DEFAULT 1,
        only_show_if_degraded INTEGER NOT NULL DEFAULT 0,
        archived INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE status_component_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        component_id TEXT NOT NULL REFERENCES status_components(id),
        at_ms INTEGER NOT NULL,
        old_status TEXT NOT NULL,
        new_status TEXT NOT NULL,
        incident_id TEXT
    );
    CREATE INDEX status_component_changes_at ON status_component_changes (at_ms);
    CREATE TABLE status_incidents (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        impact TEXT NOT NULL,
        components TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        monitoring_ms INTEGER,
        resolved_ms INTEGER,
        scheduled_for_ms INTEGER,
        scheduled_until_ms INTEGER
    );
    CREATE INDEX status_incidents_created ON status_incidents (created_ms);
    CREATE TABLE status_incident_updates (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES status_incidents(id),
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        affected_components TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        display_ms INTEGER NOT NULL
    );
    CREATE INDEX status_incident_updates_incident ON status_incident_updates (incident_id);",
    // 4: status page subscribers and their deliveries; incidents' postmortems.
    subscribers::MIGRATION,
    // 5: distinct clients seen by the front proxy, per window.
    clients::MIGRATION,
];

/// A release as recorded in the registry: immutable once added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Unique name, e.g. `v1` or `0.1.0-4dcda4b`.
    pub name: String,
    /// When it was added (unix ms).
    pub added_ms: i64,
    /// The binary's version.
    pub version: String,
    /// The git commit the binary was built from.
    pub git_commit: String,
    /// SHA-256 of the Cargo.lock the binary was built with (embedded in it).
    pub build_lockfile_sha256: String,
    /// SHA-256 of the Cargo.lock recorded with the release.
    pub lockfile_sha256: String,
    /// SHA-256 of the binary: its name in the content-addressed store.
    pub binary_sha256: String,
    /// Where the stored binary is.
    pub binary_path: String,
    /// Extra arguments the release's instances run with.
    pub args: Vec<String>,
    /// `(name, version)` of every package in the recorded lockfile, sorted.
    pub dependencies: Vec<(String, String)>,
}

/// The store. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    series_ids: Mutex<HashMap<(String, String), i64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed, owner-only) the store at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        // SQLite would create it readable by everyone (0644 less the umask), and its
        // -wal and -shm files after it: they take the database file's permissions.
        datadir::create_file(path)?;
        Self::init(Connection::open(path)?)
    }

    /// A store in memory, for tests and dry runs.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                series_ids: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Runs `work` on a blocking thread with a clone of the store, for async callers.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (it rolls
        // back an open transaction on drop), so a poisoned lock is safe to reuse.
        self.inner
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one scrape's samples at `ts_ms` in one transaction. A sample for a
    /// series and time already stored replaces it.
    pub fn append_samples(&self, ts_ms: i64, samples: &[Sample]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut ids = self
                .inner
                .series_ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?1, ?2, ?3)",
            )?;
            for sample in samples {
                if !sample.value.is_finite() {
                    continue;
                }
                let labels = serde_json::to_string(&sample.labels)?;
                let key = (sample.name.clone(), labels);
                let id = match ids.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id = series_id(&tx, &key.0, &key.1)?;
                        ids.insert(key, id);
                        id
                    }
                };
                insert.execute(params![id, ts_ms, sample.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The series named `name` whose labels include every `(key, value)` in
    /// `matchers`, with their points in `[from_ms, to_ms]`.
    pub fn query(
        &self,
        name: &str,
        matchers: &[(&str, &str)],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>> {
        let conn = self.conn();
        let mut list = conn.prepare_cached("SELECT id, labels FROM series WHERE name = ?1")?;
        let candidates = list
            .query_map(params![name], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut raw = conn.prepare_cached(
            "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts",
        )?;
        let mut rolled = conn.prepare_cached(
            "SELECT ts, sum / count FROM rollups WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 \
             AND ts < COALESCE((SELECT MIN(ts) FROM samples WHERE series_id = ?1), ?3 + 1) ORDER BY ts",
        )?;
        let mut out = Vec::new();
        for (id, labels) in candidates {
            let labels: Labels = serde_json::from_str(&labels)?;
            if !matchers
                .iter()
                .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
            {
                continue;
            }
            let mut points = rolled
                .query_map(params![id, from_ms, to_ms], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            points.extend(
                raw.query_map(params![id, from_ms, to_ms], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            );
            if !points.is_empty() {
                out.push(SeriesData {
                    name: name.to_owned(),
                    labels,
                    points,
                });
            }
        }
        Ok(out)
    }

    /// Folds raw samples older than `retention.raw_ms` into five-minute rollups and
    /// deletes rollups older than `retention.rollup_ms`, relative to `now_ms`.
    pub fn compact(&self, now_ms: i64, retention: Retention) -> Result<Compaction> {
        let raw_cutoff = now_ms - retention.raw_ms;
        // Only whole buckets are folded, so a bucket is never half raw, half rolled.
        let raw_cutoff = raw_cutoff - raw_cutoff.rem_euclid(ROLLUP_MS);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO rollups (series_id, ts, min, max, sum, count, last)
             SELECT series_id, b, MIN(value), MAX(value), SUM(value), COUNT(*),
                    (SELECT s2.value FROM samples s2 WHERE s2.series_id = s.series_id
                       AND s2.ts >= b AND s2.ts < b + ?2 ORDER BY s2.ts DESC LIMIT 1)
             FROM (SELECT series_id, value, ts - (ts % ?2) AS b FROM samples WHERE ts < ?1) s
             GROUP BY series_id, b
             ON CONFLICT (series_id, ts) DO UPDATE SET
                min = MIN(min, excluded.min), max = MAX(max, excluded.max),
                sum = sum + excluded.sum, count = count + excluded.count, last = excluded.last",
            params![raw_cutoff, ROLLUP_MS],
        )?;
        let folded = tx.execute("DELETE FROM samples WHERE ts < ?1", params![raw_cutoff])?;
        let expired = tx.execute(
            "DELETE FROM rollups WHERE ts < ?1",
            params![now_ms - retention.rollup_ms],
        )?;
        tx.commit()?;
        Ok(Compaction {
            folded: folded as u64,
            expired: expired as u64,
        })
    }

    /// Appends an event now and returns it as stored.
    pub fn append_event(&self, event: &NewEvent) -> Result<Event> {
        self.append_event_at(now_ms(), event)
    }

    /// Appends an event at a given time (for importing and tests).
    pub fn append_event_at(&self, at_ms: i64, event: &NewEvent) -> Result<Event> {
        let payload = serde_json::to_string(&event.payload)?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO events (at_ms, kind, release, payload) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![at_ms, event.kind, event.release, payload])?;
        Ok(Event {
            id: conn.last_insert_rowid(),
            at_ms,
            kind: event.kind.clone(),
            release: event.release.clone(),
            payload: event.payload.clone(),
        })
    }

    /// Reads events matching `filter`.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let order = if filter.newest.is_some() {
            "DESC"
        } else {
            "ASC"
        };
        let sql = format!(
            "SELECT id, at_ms, kind, release, payload FROM events
             WHERE at_ms >= ?1 AND at_ms < ?2 AND substr(kind, 1, length(?3)) = ?3
             ORDER BY id {order} LIMIT ?4"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(
                params![
                    filter.since_ms.unwrap_or(i64::MIN),
                    filter.until_ms.unwrap_or(i64::MAX),
                    filter.kind_prefix.as_deref().unwrap_or(""),
                    filter.newest.map_or(-1, i64::from),
                ],
                raw_event,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode_event).collect()
    }

    /// Up to `limit` events after event `after_id`, oldest first: how a follower of
    /// the log reads on from where it stopped.
    pub fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at_ms, kind, release, payload FROM events
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after_id, limit], raw_event)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode_event).collect()
    }

    /// Adds `release`; fails with [`Error::Exists`] when the name is taken, because
    /// a release never changes once recorded.
    pub fn add_release(&self, release: &Release) -> Result<()> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO releases (name, added_ms, version, git_commit,
                 build_lockfile_sha256, lockfile_sha256, binary_sha256, binary_path, args,
                 dependencies) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                release.name,
                release.added_ms,
                release.version,
                release.git_commit,
                release.build_lockfile_sha256,
                release.lockfile_sha256,
                release.binary_sha256,
                release.binary_path,
                serde_json::to_string(&release.args)?,
                serde_json::to_string(&release.dependencies)?,
            ])?;
        if inserted == 0 {
            return Err(Error::Exists(format!("release {:?}", release.name)));
        }
        Ok(())
    }

    /// Every release, oldest first.
    pub fn releases(&self) -> Result<Vec<Release>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, added_ms, version, git_commit, build_lockfile_sha256,
             lockfile_sha256, binary_sha256, binary_path, args, dependencies
             FROM releases ORDER BY added_ms, name",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    (
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ),
                    (
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, String>(7)?,
                        row.get::<_, String>(8)?,
                        row.get::<_, String>(9)?,
                    ),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(
                |(
                    (name, added_ms, version, git_commit, build_lockfile_sha256),
                    (lockfile_sha256, binary_sha256, binary_path, args, dependencies),
                )| {
                    Ok(Release {
                        name,
                        added_ms,
                        version,
                        git_commit,
                        build_lockfile_sha256,
                        lockfile_sha256,
                        binary_sha256,
                        binary_path,
                        args: serde_json::from_str(&args)?,
                        dependencies: serde_json::from_str(&dependencies)?,
                    })
                },
            )
            .collect()
    }

    /// When the newest sample was scraped (unix ms), if any: the last sign of life
    /// of a control plane that stopped recording.
    pub fn last_sample_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row("SELECT MAX(ts) FROM samples", [], |row| row.get(0))
            .optional()?
            .flatten())
    }

    /// The newest event, if any (a cheap change marker for pages that poll).
    pub fn last_event_id(&self) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row("SELECT MAX(id) FROM events", [], |row| row.get(0))
            .optional()?
            .flatten())
    }
}

/// An event row before its payload is parsed.
type RawEvent = (i64, i64, String, Option<String>, String);

fn raw_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode_event((id, at_ms, kind, release, payload): RawEvent) -> Result<Event> {
    Ok(Event {
        id,
        at_ms,
        kind,
        release,
        payload: serde_json::from_str(&payload)?,
    })
}

fn series_id(conn: &Connection, name: &str, labels: &str) -> Result<i64> {
    conn.prepare_cached("INSERT OR IGNORE INTO series (name, labels) VALUES (?1, ?2)")?
        .execute(params![name, labels])?;
    Ok(conn
        .prepare_cached("SELECT id FROM series WHERE name = ?1 AND labels = ?2")?
        .query_row(params![name, labels], |row| row.get(0))?)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::TooNew {
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            index + 1
        ))?;
    }
    Ok(())
}

/// The current time in unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample(name: &str, instance: &str, value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: Labels::from([("instance".into(), instance.into())]),
            value,
        }
    }

    #[test]
    fn samples_round_trip_and_filter_by_label() {
        let store = Store::in_memory().unwrap();
        for i in 0..10 {
            store
                .append_samples(
                    i * 1000,
                    &[sample("rss", "a", i as f64), sample("rss", "b", 100.0)],
                )
                .unwrap();
        }
        let a = store
            .query("rss", &[("instance", "a")], 2000, 5000)
            .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].points,
            vec![(2000, 2.0), (3000, 3.0), (4000, 4.0), (5000, 5.0)]
        );
        assert_eq!(store.query("rss", &[], 0, 10_000).unwrap().len(), 2);
        assert!(store.query("heap", &[], 0, 10_000).unwrap().is_empty());
    }

    #[test]
    fn compaction_folds_old_samples_into_rollups_and_expires_them() {
        let store = Store::in_memory().unwrap();
        let minute = 60_000;
        // Two hours of one sample a minute, values 0..120.
        for i in 0..120 {
            store
                .append_samples(i * minute, &[sample("rss", "a", i as f64)])
                .unwrap();
        }
        let retention = Retention {
            raw_ms: 60 * minute,
            rollup_ms: 100 * minute,
        };
        let done = store.compact(120 * minute, retention).unwrap();
        assert_eq!(done.folded, 60, "the first hour is folded");
        assert_eq!(done.expired, 4, "buckets before minute 20 expire");
        let points = &store.query("rss", &[], 0, 200 * minute).unwrap()[0].points;
        // Rollups from minute 20 to 55 (8 buckets of 5, means 22, 27, ...), then raw.
        assert_eq!(points[0], (20 * minute, 22.0));
        assert_eq!(points[7], (55 * minute, 57.0));
        assert_eq!(points[8], (60 * minute, 60.0));
        assert_eq!(points.len(), 8 + 60);
        // Compacting again changes nothing.
        assert_eq!(
            store.compact(120 * minute, retention).unwrap(),
            Compaction::default()
        );
    }

    #[test]
    fn events_append_filter_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        {
            let store = Store::open(&path).unwrap();
            for (at, kind) in [
                (1, "alert.pending"),
                (2, "alert.firing"),
                (3, "deploy.finished"),
            ] {
                store
                    .append_event_at(
                        at,
                        &NewEvent {
                            kind: kind.into(),
                            release: Some("v1".into()),
                            payload: serde_json::json!({"n": at}),
                        },
                    )
                    .unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let alerts = store
            .events(&EventFilter {
                kind_prefix: Some("alert.".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(
            alerts.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["alert.pending", "alert.firing"]
        );
        let newest = store
            .events(&EventFilter {
                newest: Some(1),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(newest[0].kind, "deploy.finished");
        assert_eq!(newest[0].payload["n"], 3);
        assert_eq!(store.last_event_id().unwrap(), Some(3));
    }

    #[test]
    fn releases_are_recorded_once_and_read_back() {
        let store = Store::in_memory().unwrap();
        let release = Release {
            name: "v1".into(),
            added_ms: 5,
            version: "0.1.0".into(),
            git_commit: "abc".into(),
            build_lockfile_sha256: "l1".into(),
            lockfile_sha256: "l1".into(),
            binary_sha256: "b1".into(),
            binary_path: "/data/releases/b1/warden".into(),
            args: vec!["--flag".into()],
            dependencies: vec![("serde_json".into(), "1.0.120".into())],
        };
        store.add_release(&release).unwrap();
        let again = Release {
            binary_sha256: "b2".into(),
            ..release.clone()
        };
        assert!(matches!(store.add_release(&again), Err(Error::Exists(_))));
        assert_eq!(store.releases().unwrap(), [release]);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(Error::TooNew { found: 99, .. })
        ));
    }
}
