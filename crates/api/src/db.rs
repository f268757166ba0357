//! Storage: one connection pool over SQLite or PostgreSQL, chosen by URL.
//!
//! sqlx's `Any` driver lets one set of queries serve both databases: every query uses
//! `$N` placeholders (which SQLite also understands) and only portable types (`i64`,
//! `String`). Timestamps are Unix milliseconds. Each backend has its own embedded
//! migrations, since DDL is where the two dialects differ.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
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
/// PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
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
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections open and idle, for the pool gauges.
    pub fn pool_stats(&self) -> (u32, usize) {
        let (mut open, mut idle) = (self.pool.size(), self.pool.num_idle());
        if self.backend == Backend::Sqlite {
            open += self.writer.size();
            idle += self.writer.num_idle();
        }
        (open, idle)
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
