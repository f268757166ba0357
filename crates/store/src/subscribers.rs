//! Status page subscribers (email and webhook) and the deliveries owed to them.
//!
//! This module only stores. Who may subscribe, what a delivery says and when one is
//! retried or a subscriber quarantined is the `warden-status` crate's job.
//!
//! Deliveries form an outbox: one row per (subscriber, event) — the unique key is
//! what makes enqueuing idempotent — moved along `pending` → `sending` →
//! `delivered` | `failed` | `dropped`. A named cursor remembers the last event of
//! the log that was turned into deliveries, written in the same transaction as the
//! deliveries themselves, so a restart neither repeats nor skips an event.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Result, StatusTx, Store};

/// Migration 4.
pub(crate) const MIGRATION: &str = "CREATE TABLE status_subscribers (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        address TEXT NOT NULL,
        components TEXT NOT NULL,
        secret TEXT,
        token TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        confirmed_ms INTEGER,
        updated_ms INTEGER NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE UNIQUE INDEX status_subscribers_address ON status_subscribers (kind, address);
    CREATE TABLE status_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id TEXT NOT NULL REFERENCES status_subscribers(id),
        event_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        delivered_ms INTEGER,
        UNIQUE (subscriber_id, event_id)
    );
    CREATE INDEX status_deliveries_due ON status_deliveries (state, next_attempt_ms);
    CREATE TABLE status_cursors (
        name TEXT PRIMARY KEY,
        event_id INTEGER NOT NULL
    );
    ALTER TABLE status_incidents ADD COLUMN postmortem_body TEXT;
    ALTER TABLE status_incidents ADD COLUMN postmortem_published_ms INTEGER";

/// A subscriber of the status page.
///
/// `Debug` shows neither the webhook secret nor the token (it confirms and
/// unsubscribes).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Stable identifier.
    pub id: String,
    /// `email` or `webhook`.
    pub kind: String,
    /// The email address or the webhook URL.
    pub address: String,
    /// Component ids it wants to hear about; empty means all.
    pub components: Vec<String>,
    /// The HMAC secret of a webhook.
    pub secret: Option<String>,
    /// The secret of its confirm and unsubscribe links.
    pub token: String,
    /// `pending` (awaiting confirmation), `active`, `unsubscribed` or `quarantined`.
    pub state: String,
    /// When it signed up (unix ms).
    pub created_ms: i64,
    /// When it confirmed (unix ms).
    pub confirmed_ms: Option<i64>,
    /// When its row last changed (unix ms).
    pub updated_ms: i64,
    /// Deliveries given up on in a row.
    pub failures: i64,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

/// One notification owed to one subscriber for one event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberDelivery {
    /// Stable identifier: receivers may use it to drop a repeat.
    pub id: i64,
    pub subscriber_id: String,
    /// The event it tells of.
    pub event_id: i64,
    /// `pending`, `sending`, `delivered`, `failed` (given up) or `dropped` (the
    /// subscriber left or was quarantined first).
    pub state: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// Not before this time (unix ms).
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

const SUBSCRIBER_COLUMNS: &str = "id, kind, address, components, secret, token, state, \
     created_ms, confirmed_ms, updated_ms, failures, last_error";

fn subscriber_row(row: &Row<'_>) -> rusqlite::Result<(Subscriber, String)> {
    Ok((
        Subscriber {
            id: row.get(0)?,
            kind: row.get(1)?,
            address: row.get(2)?,
            components: Vec::new(),
            secret: row.get(4)?,
            token: row.get(5)?,
            state: row.get(6)?,
            created_ms: row.get(7)?,
            confirmed_ms: row.get(8)?,
            updated_ms: row.get(9)?,
            failures: row.get(10)?,
            last_error: row.get(11)?,
        },
        row.get(3)?,
    ))
}

fn subscribers_where(
    conn: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Subscriber>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers {clause} ORDER BY created_ms, id"
    ))?;
    let rows = stmt
        .query_map(args, subscriber_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(mut subscriber, components)| {
            subscriber.components = serde_json::from_str(&components)?;
            Ok(subscriber)
        })
        .collect()
}

const DELIVERY_COLUMNS: &str = "id, subscriber_id, event_id, state, attempts, next_attempt_ms, \
     last_error, created_ms, delivered_ms";

fn delivery_row(row: &Row<'_>) -> rusqlite::Result<SubscriberDelivery> {
    Ok(SubscriberDelivery {
        id: row.get(0)?,
        subscriber_id: row.get(1)?,
        event_id: row.get(2)?,
        state: row.get(3)?,
        attempts: row.get(4)?,
        next_attempt_ms: row.get(5)?,
        last_error: row.get(6)?,
        created_ms: row.get(7)?,
        delivered_ms: row.get(8)?,
    })
}

impl Store {
    /// Every subscriber, oldest first.
    pub fn subscribers(&self) -> Result<Vec<Subscriber>> {
        subscribers_where(&self.conn(), "", [])
    }

    /// The subscriber whose confirm/unsubscribe token is `token`.
    pub fn subscriber_by_token(&self, token: &str) -> Result<Option<Subscriber>> {
        Ok(
            subscribers_where(&self.conn(), "WHERE token = ?1", [token])?
                .into_iter()
                .next(),
        )
    }

    /// The position of cursor `name` in the event log (0 before the first event).
    pub fn cursor(&self, name: &str) -> Result<i64> {
        Ok(self
            .conn()
            .query_row(
                "SELECT event_id FROM status_cursors WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Deliveries due at `now_ms`, at most `limit`, oldest first: of each
    /// subscriber only its oldest unfinished one, so that a subscriber hears of
    /// events in order even when one of them needs retries.
    pub fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<SubscriberDelivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM status_deliveries
             WHERE id IN (SELECT MIN(id) FROM status_deliveries
                          WHERE state IN ('pending', 'sending') GROUP BY subscriber_id)
               AND state = 'pending' AND next_attempt_ms <= ?1
             ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![now_ms, limit], delivery_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Subscriber `subscriber`'s oldest unfinished delivery, when it is due at
    /// `now_ms`: what it may be sent next without overtaking anything queued
    /// before it.
    pub fn next_due_delivery(
        &self,
        subscriber: &str,
        now_ms: i64,
    ) -> Result<Option<SubscriberDelivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM status_deliveries
             WHERE subscriber_id = ?1 AND state IN ('pending', 'sending')
             ORDER BY id LIMIT 1"
        ))?;
        let oldest = stmt
            .query_row(params![subscriber], delivery_row)
            .optional()?;
        Ok(oldest.filter(|d| d.state == "pending" && d.next_attempt_ms <= now_ms))
    }

    /// The deliveries of event `event_id`, by id.
    pub fn deliveries_of_event(&self, event_id: i64) -> Result<Vec<SubscriberDelivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM status_deliveries WHERE event_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([event_id], delivery_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Puts deliveries that were being sent when the process stopped back in the
    /// queue; returns how many. Their receivers may see them twice (with the same
    /// delivery id) — the alternative, losing them, is worse.
    pub fn requeue_interrupted_deliveries(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE status_deliveries SET state = 'pending' WHERE state = 'sending'",
            [],
        )?)
    }
}

impl StatusTx<'_> {
    /// The subscriber `id`.
    pub fn subscriber(&self, id: &str) -> Result<Option<Subscriber>> {
        Ok(subscribers_where(&self.tx, "WHERE id = ?1", [id])?
            .into_iter()
            .next())
    }

    /// The subscriber of `kind` at `address`.
    pub fn subscriber_at(&self, kind: &str, address: &str) -> Result<Option<Subscriber>> {
        Ok(subscribers_where(
            &self.tx,
            "WHERE kind = ?1 AND address = ?2",
            [kind, address],
        )?
        .into_iter()
        .next())
    }

    /// Active subscribers, oldest first.
    pub fn active_subscribers(&self) -> Result<Vec<Subscriber>> {
        subscribers_where(&self.tx, "WHERE state = 'active'", [])
    }

    /// Pending (unconfirmed) subscribers whose row last changed before `before_ms`,
    /// oldest first: the sign-ups whose confirmation link has not been followed since.
    pub fn pending_subscribers_before(&self, before_ms: i64) -> Result<Vec<Subscriber>> {
        subscribers_where(
            &self.tx,
            "WHERE state = 'pending' AND updated_ms < ?1",
            [before_ms],
        )
    }

    /// How many subscribers signed up (by email) at or after `since_ms`.
    pub fn sign_ups_since(&self, since_ms: i64) -> Result<i64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM status_subscribers WHERE kind = 'email' AND updated_ms >= ?1 \
             AND state = 'pending'",
            [since_ms],
            |row| row.get(0),
        )?)
    }

    /// Inserts `subscriber`, or replaces the row with its id.
    pub fn put_subscriber(&self, subscriber: &Subscriber) -> Result<()> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO status_subscribers ({SUBSCRIBER_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET kind = ?2, address = ?3, components = ?4,
                    secret = ?5, token = ?6, state = ?7, created_ms = ?8, confirmed_ms = ?9,
                    updated_ms = ?10, failures = ?11, last_error = ?12"
            ))?
            .execute(params![
                subscriber.id,
                subscriber.kind,
                subscriber.address,
                serde_json::to_string(&subscriber.components)?,
                subscriber.secret,
                subscriber.token,
                subscriber.state,
                subscriber.created_ms,
                subscriber.confirmed_ms,
                subscriber.updated_ms,
                subscriber.failures,
                subscriber.last_error,
            ])?;
        Ok(())
    }

    /// Removes subscriber `id` and its deliveries; true when there was one.
    pub fn delete_subscriber(&self, id: &str) -> Result<bool> {
        self.tx.execute(
            "DELETE FROM status_deliveries WHERE subscriber_id = ?1",
            [id],
        )?;
        Ok(self
            .tx
            .execute("DELETE FROM status_subscribers WHERE id = ?1", [id])?
            > 0)
    }

    /// Queues one delivery of event `event_id` to each of `subscribers` (those
    /// already queued are left alone).
    pub fn enqueue_deliveries(
        &self,
        event_id: i64,
        subscribers: &[String],
        at_ms: i64,
    ) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO status_deliveries
                (subscriber_id, event_id, state, next_attempt_ms, created_ms)
             VALUES (?1, ?2, 'pending', ?3, ?3)",
        )?;
        for subscriber in subscribers {
            stmt.execute(params![subscriber, event_id, at_ms])?;
        }
        Ok(())
    }

    /// Moves cursor `name` to `event_id`.
    pub fn set_cursor(&self, name: &str, event_id: i64) -> Result<()> {
        self.tx.execute(
            "INSERT INTO status_cursors (name, event_id) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET event_id = ?2",
            params![name, event_id],
        )?;
        Ok(())
    }

    /// Delivery `id`.
    pub fn delivery(&self, id: i64) -> Result<Option<SubscriberDelivery>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM status_deliveries WHERE id = ?1"),
                [id],
                delivery_row,
            )
            .optional()?)
    }

    /// Writes a delivery's state back.
    pub fn put_delivery(&self, delivery: &SubscriberDelivery) -> Result<()> {
        self.tx.execute(
            "UPDATE status_deliveries SET state = ?2, attempts = ?3, next_attempt_ms = ?4,
                last_error = ?5, delivered_ms = ?6 WHERE id = ?1",
            params![
                delivery.id,
                delivery.state,
                delivery.attempts,
                delivery.next_attempt_ms,
                delivery.last_error,
                delivery.delivered_ms,
            ],
        )?;
        Ok(())
    }

    /// Drops the deliveries still queued for `subscriber`; returns how many.
    pub fn drop_pending_deliveries(&self, subscriber: &str) -> Result<usize> {
        Ok(self.tx.execute(
            "UPDATE status_deliveries SET state = 'dropped'
             WHERE subscriber_id = ?1 AND state IN ('pending', 'sending')",
            [subscriber],
        )?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn subscriber(id: &str, address: &str) -> Subscriber {
        Subscriber {
            id: id.into(),
            kind: "email".into(),
            address: address.into(),
            components: vec!["api".into()],
            secret: None,
            token: format!("token-{id}"),
            state: "active".into(),
            created_ms: 1,
            confirmed_ms: Some(2),
            updated_ms: 2,
            failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn deliveries_are_queued_once_with_the_cursor_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .status_write(|tx| {
                    tx.put_subscriber(&subscriber("a", "a@example.com"))?;
                    tx.put_subscriber(&subscriber("b", "b@example.com"))?;
                    tx.enqueue_deliveries(7, &["a".into(), "b".into()], 100)?;
                    // Queuing the same event again changes nothing.
                    tx.enqueue_deliveries(7, &["a".into()], 200)?;
                    tx.set_cursor("subscribers", 7)?;
                    Ok::<_, crate::Error>(())
                })
                .unwrap();
            let due = store.due_deliveries(100, 10).unwrap();
            assert_eq!(due.len(), 2);
            let mut sending = due[0].clone();
            sending.state = "sending".into();
            store.status_write(|tx| tx.put_delivery(&sending)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cursor("subscribers").unwrap(), 7);
        assert_eq!(store.cursor("other").unwrap(), 0);
        assert_eq!(store.due_deliveries(100, 10).unwrap().len(), 1);
        assert_eq!(store.requeue_interrupted_deliveries().unwrap(), 1);
        assert_eq!(
            store.due_deliveries(99, 10).unwrap().len(),
            0,
            "not yet due"
        );
        assert_eq!(store.due_deliveries(100, 10).unwrap().len(), 2);
        store
            .status_write(|tx| tx.enqueue_deliveries(8, &["a".into()], 300))
            .unwrap();
        // A subscriber's next one is its oldest unfinished, once due.
        let next = store.next_due_delivery("a", 100).unwrap().unwrap();
        assert_eq!(next.event_id, 7);
        let mut delivered = next.clone();
        delivered.state = "delivered".into();
        store
            .status_write(|tx| tx.put_delivery(&delivered))
            .unwrap();
        assert_eq!(store.next_due_delivery("a", 299).unwrap(), None);
        assert_eq!(
            store
                .next_due_delivery("a", 300)
                .unwrap()
                .map(|d| d.event_id),
            Some(8)
        );
        let dropped = store
            .status_write(|tx| tx.drop_pending_deliveries("a"))
            .unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(store.deliveries_of_event(7).unwrap().len(), 2);
    }

    #[test]
    fn subscribers_are_found_by_token_and_address_and_hide_secrets() {
        let store = Store::in_memory().unwrap();
        let mut hook = subscriber("h", "http://127.0.0.1:9/hook");
        hook.kind = "webhook".into();
        hook.secret = Some("s3cret".into());
        store
            .status_write(|tx| {
                tx.put_subscriber(&hook)?;
                tx.put_subscriber(&subscriber("a", "a@example.com"))
            })
            .unwrap();
        assert_eq!(
            store.subscriber_by_token("token-h").unwrap(),
            Some(hook.clone())
        );
        assert!(!format!("{hook:?}").contains("s3cret"));
        assert!(!format!("{hook:?}").contains("token-h"));
        let found = store
            .status_write(|tx| tx.subscriber_at("email", "a@example.com"))
            .unwrap();
        assert_eq!(found.map(|s| s.id), Some("a".to_owned()));
        assert!(store.status_write(|tx| tx.delete_subscriber("a")).unwrap());
        assert_eq!(store.subscribers().unwrap(), [hook]);
    }

    #[test]
    fn pending_subscribers_are_found_by_when_they_last_changed() {
        let store = Store::in_memory().unwrap();
        let pending = |id: &str, updated_ms| Subscriber {
            state: "pending".into(),
            confirmed_ms: None,
            updated_ms,
            ..subscriber(id, &format!("{id}@example.com"))
        };
        let (old, new) = (pending("old", 100), pending("new", 200));
        let mut active = subscriber("active", "active@example.com");
        active.updated_ms = 50;
        let found = store
            .status_write(|tx| {
                for s in [&old, &new, &active] {
                    tx.put_subscriber(s)?;
                }
                tx.pending_subscribers_before(200)
            })
            .unwrap();
        assert_eq!(found, [old]);
        let all = store
            .status_write(|tx| tx.pending_subscribers_before(201))
            .unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
    }
}
