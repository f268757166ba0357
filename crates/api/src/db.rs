//! Storage: one connection pool over SQLite or PostgreSQL, chosen by URL.
//!
//! sqlx's `Any` driver lets one set of queries serve both databases: every query uses
//! `$N` placeholders (which SQLite also understands) and only portable types (`i64`,
//! `String`). Timestamps are Unix milliseconds. Each backend has its own embedded
//! migrations, since DDL is where the two dialects differ.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The API's connection pools. Cheap to clone.
///
/// SQLite allows one writer at a time and makes others wait by sleeping and
/// retrying (the busy timeout), which turns concurrent writes into latency spikes.
/// So on SQLite, writes go through a pool of exactly one connection and queue in
/// the process instead; reads use the main pool, in parallel thanks to WAL. On
/// PostgreSQL both are the same pool. Item reads on a SQLite file skip sqlx
/// altogether (see [`InlineReader`]).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
    reader: Option<Arc<InlineReader>>,
}

/// Reads from a SQLite file on the calling thread, with pooled rusqlite connections.
///
/// sqlx gives every SQLite connection a worker thread and passes each query and
/// row over a channel: two thread wake-ups per query, which a profile of
/// `GET /v1/items/{id}` showed costing more than the query itself. A lookup by
/// primary key in a WAL database takes microseconds and does not wait for the
/// writer, so it runs here directly, the way an in-memory cache lookup would.
struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    max_idle: usize,
}

impl InlineReader {
    fn run<T>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open().map_err(reader_error)?,
        };
        let result = query(&conn).map_err(reader_error);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Readers of a WAL database only wait while it recovers after a crash;
        // keep that wait short, since it blocks an async worker thread.
        conn.busy_timeout(Duration::from_millis(250))?;
        Ok(conn)
    }
}

/// Maps a rusqlite failure onto the sqlx errors the rest of the API handles:
/// a busy or unopenable file is "unavailable" (503), anything else is internal.
fn reader_error(error: rusqlite::Error) -> sqlx::Error {
    use rusqlite::ffi::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            sqlx::Error::Io(std::io::Error::other(error))
        }
        _ => sqlx::Error::Protocol(format!("SQLite read failed: {error}")),
    }
}

fn item_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<ItemRow> {
    Ok(ItemRow {
        id: row.get(0)?,
        title: row.get(1)?,
        data: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

/// A user row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
}

/// An item row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    pub id: i64,
    pub title: String,
    pub data: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

async fn open_pool(url: &str, backend: Backend, max_connections: u32) -> anyhow::Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // Pinging a local SQLite file before every use costs a round trip to its
        // worker thread and finds nothing; a PostgreSQL connection can die with the
        // network, so it is checked.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                         PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
}

/// The file behind a SQLite URL; `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    SqliteConnectOptions::from_str(url)
        .ok()
        .map(|o| o.get_filename().to_owned())
        // An in-memory database is private to the connection that made it.
        .filter(|path| !path.as_os_str().is_empty() && path != &PathBuf::from(":memory:"))
}

/// Whether a SQLite URL asks for its file to be created when missing (`mode=rwc`).
fn creates_file(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.eq_ignore_ascii_case("mode=rwc"))
    })
}

/// Holds an exclusive lock on `DB.migrate-lock` beside the database until dropped,
/// so one process at a time migrates it.
fn migration_lock(db: PathBuf) -> anyhow::Result<std::fs::File> {
    let mut name = db.into_os_string();
    name.push(".migrate-lock");
    let path = PathBuf::from(name);
    let file = crate::private::open_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the migration lock {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

impl Db {
    /// Connects, applies pragmas (SQLite: WAL, foreign keys, busy timeout) and runs
    /// the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        // Several instances may start at once on one SQLite file (replicas, or a new
        // release beside the old one); sqlx takes no lock there, so they would race to
        // switch it to WAL (which fails with "database is locked" rather than wait)
        // and to create the same tables. PostgreSQL migrations hold an advisory lock.
        let _lock = match (backend, sqlite_path(url)) {
            (Backend::Sqlite, Some(path)) => {
                let creates = creates_file(url);
                Some(
                    tokio::task::spawn_blocking(move || {
                        let lock = migration_lock(path.clone())?;
                        // SQLite would make it 0644 less the umask, and its -wal and
                        // -shm files after it: they copy the database's permissions.
                        if creates {
                            crate::private::open_file(&path).map_err(|e| {
                                anyhow::anyhow!(
                                    "cannot create the database {}: {e}",
                                    path.display()
                                )
                            })?;
                        }
                        anyhow::Ok(lock)
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("the migration lock task failed: {e}"))??,
                )
            }
            _ => None,
        };
        let pool = open_pool(url, backend, max_connections).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while a write is in progress; the mode is
            // persistent in the file, so setting it once is enough.
            pool.execute("PRAGMA journal_mode = WAL;").await?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
        let writer = match backend {
            Backend::Sqlite => open_pool(url, backend, 1).await?,
            Backend::Postgres => pool.clone(),
        };
        let reader = match backend {
            Backend::Sqlite => sqlite_path(url).map(|path| {
                Arc::new(InlineReader {
                    path,
                    idle: Mutex::new(Vec::new()),
                    max_idle: max_connections as usize,
                })
            }),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            writer,
            backend,
            reader,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections open and idle, for the pool gauges; `None` when the pool's own
    /// counters disagree (sqlx 0.8 could wrap its idle count below zero under load,
    /// which exported a garbage gauge, and overflowed the sum here).
    pub fn pool_stats(&self) -> Option<(u32, u32)> {
        let counts = |pool: &AnyPool| {
            let (open, idle) = (pool.size(), u32::try_from(pool.num_idle()).ok()?);
            (idle <= open).then_some((open, idle))
        };
        let (mut open, mut idle) = counts(&self.pool)?;
        if self.backend == Backend::Sqlite {
            let (writer_open, writer_idle) = counts(&self.writer)?;
            open = open.checked_add(writer_open)?;
            idle = idle.checked_add(writer_idle)?;
        }
        Some((open, idle))
    }

    /// Closes every connection (on shutdown).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Inserts a user; `Ok(None)` when the email is taken.
    pub async fn insert_user(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let created_at = now_ms();
        let result = sqlx::query_scalar::<_, i64>(
            "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .bind(created_at)
        .fetch_one(&self.writer)
        .await;
        match result {
            Ok(id) => Ok(Some(UserRow {
                id,
                email: email.to_owned(),
                password_hash: password_hash.to_owned(),
                created_at,
            })),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn insert_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.writer)
        .await
        .map(drop)
    }

    /// The user and expiry time of an unexpired session.
    pub async fn session_user(
        &self,
        token_sha256: &str,
    ) -> Result<Option<(i64, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT user_id, expires_at FROM sessions WHERE token_sha256 = $1 AND expires_at > $2",
        )
        .bind(token_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn delete_session(&self, token_sha256: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// Removes expired sessions; returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64, sqlx::Error> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
    }

    pub async fn insert_item(
        &self,
        user_id: i64,
        title: &str,
        data: &str,
    ) -> Result<ItemRow, sqlx::Error> {
        let now = now_ms();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO items (user_id, title, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(title)
        .bind(data)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(ItemRow {
            id,
            title: title.to_owned(),
            data: data.to_owned(),
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn item(&self, user_id: i64, id: i64) -> Result<Option<ItemRow>, sqlx::Error> {
        if let Some(reader) = &self.reader {
            return reader.run(|conn| {
                use rusqlite::OptionalExtension;
                conn.prepare_cached(
                    "SELECT id, title, data, created_at, updated_at FROM items \
                     WHERE id = ?1 AND user_id = ?2",
                )?
                .query_row((id, user_id), item_from)
                .optional()
            });
        }
        sqlx::query_as(
            "SELECT id, title, data, created_at, updated_at FROM items WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Up to `limit` of the user's items with id below `before`, newest first.
    pub async fn items_before(
        &self,
        user_id: i64,
        before: i64,
        limit: i64,
    ) -> Result<Vec<ItemRow>, sqlx::Error> {
        if let Some(reader) = &self.reader {
            return reader.run(|conn| {
                conn.prepare_cached(
                    "SELECT id, title, data, created_at, updated_at FROM items \
                     WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                )?
                .query_map((user_id, before, limit), item_from)?
                .collect()
            });
        }
        sqlx::query_as(
            "SELECT id, title, data, created_at, updated_at FROM items \
             WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn update_item(
        &self,
        user_id: i64,
        id: i64,
        title: &str,
        data: &str,
    ) -> Result<Option<ItemRow>, sqlx::Error> {
        let affected = sqlx::query(
            "UPDATE items SET title = $1, data = $2, updated_at = $3 WHERE id = $4 AND user_id = $5",
        )
        .bind(title)
        .bind(data)
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&self.writer)
        .await?
        .rows_affected();
        if affected == 0 {
            return Ok(None);
        }
        self.item(user_id, id).await
    }

    /// Deletes the user's item; false when there was none.
    pub async fn delete_item(&self, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
        sqlx::query("DELETE FROM items WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
    }
}
