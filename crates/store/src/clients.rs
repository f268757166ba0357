//! Distinct clients the front proxy saw per time window, and those of them that got a
//! failed or slow response.
//!
//! The proxy names a client by a keyed hash (of its bearer token, else of its
//! address), never by the token itself, and counts them in a [`ClientSketch`]: an
//! Apache DataSketches HyperLogLog with 2^12 registers. Up to
//! [`ClientSketch::EXACT_UP_TO`] distinct clients it keeps every client's coupon and
//! its count is exact; above that it switches to the registers (4 KiB in memory,
//! about 2 KiB stored) and estimates within about 1.6% (one standard error). Either
//! way its size is bounded, two sketches merge into the sketch of the union, and it
//! reads and writes the DataSketches binary format.
//!
//! Each completed window (a minute by default) is one row of `client_windows`, with
//! both sketches, so [`Store::users_between`] can count the distinct users of any
//! span of windows, and the share of them affected, without counting a user twice
//! because they came back in the next minute.

use datasketches::hll::{HllSketch, HllType, HllUnion};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, Store};

/// Migration 5.
pub(crate) const MIGRATION: &str = "CREATE TABLE client_windows (
        start_ms INTEGER PRIMARY KEY,
        end_ms INTEGER NOT NULL,
        clients INTEGER NOT NULL,
        affected INTEGER NOT NULL,
        clients_sketch BLOB NOT NULL,
        affected_sketch BLOB NOT NULL
    );
    CREATE INDEX client_windows_end ON client_windows (end_ms)";

/// A set of clients, counted in bounded memory: exact while small, a HyperLogLog
/// estimate above [`ClientSketch::EXACT_UP_TO`]. Clients are given as 64-bit keyed
/// hashes; the sketch keeps 32 bits of a hash of each (none above the threshold),
/// so nothing in it leads back to a token.
#[derive(Clone)]
pub struct ClientSketch {
    // A union is an updatable sketch that also takes other sketches (of any
    // register width), so one type serves counting and merging.
    union: HllUnion,
}

/// Bytes that are not a client sketch.
#[derive(Debug, thiserror::Error)]
#[error("not a client sketch: {0}")]
pub struct SketchError(String);

impl ClientSketch {
    /// log2 of the number of registers: 4096, a standard error of 1.04/√4096 ≈ 1.6%.
    pub const LG_K: u8 = 12;
    /// Up to this many distinct clients the count is exact (the sketch keeps a list,
    /// then a hash set of coupons until it holds 3/4 of 2^(LG_K−3) of them).
    pub const EXACT_UP_TO: u64 = 384;

    /// An empty sketch.
    #[must_use]
    pub fn new() -> Self {
        match HllUnion::new(Self::LG_K) {
            Ok(union) => Self { union },
            // LG_K is a constant inside DataSketches' range [4, 21].
            Err(error) => unreachable!("ClientSketch::LG_K is valid: {error}"),
        }
    }

    /// Adds a client, named by a keyed hash of its identity.
    #[inline]
    pub fn insert(&mut self, client: u64) {
        self.union.update_value(client);
    }

    /// Adds every client of `other`: afterwards this counts the union of both.
    pub fn merge(&mut self, other: &ClientSketch) {
        if !other.union.is_empty() {
            self.union.update(&other.union.to_sketch(HllType::Hll8));
        }
    }

    /// Whether no client was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.union.is_empty()
    }

    /// The number of distinct clients: exact up to [`Self::EXACT_UP_TO`], an
    /// estimate above.
    #[must_use]
    pub fn estimate(&self) -> u64 {
        let estimate = self.union.estimate();
        if estimate.is_finite() && estimate > 0.0 {
            estimate.round() as u64
        } else {
            0
        }
    }

    /// The sketch in DataSketches' binary format (4-bit registers once it has them).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.union.to_sketch(HllType::Hll4).serialize()
    }

    /// Reads [`Self::to_bytes`]' format (any register width, and `lg_k` up to 21,
    /// which is reduced to [`Self::LG_K`]).
    ///
    /// # Errors
    ///
    /// [`SketchError`] when the bytes are truncated or not an HLL sketch.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, SketchError> {
        let sketch = HllSketch::deserialize(bytes).map_err(|e| SketchError(e.to_string()))?;
        let mut read = Self::new();
        read.union.update(&sketch);
        Ok(read)
    }
}

impl Default for ClientSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ClientSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSketch")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl FromSql for ClientSketch {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Self::from_bytes(value.as_blob()?).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// The clients of one time window: everyone the proxy answered, and those of them
/// who got a failed (5xx, reset, timeout) or slow (over the latency objective)
/// response.
#[derive(Debug, Clone, Default)]
pub struct ClientWindow {
    /// Start of the window (unix ms), inclusive.
    pub start_ms: i64,
    /// End of the window (unix ms), exclusive; earlier than a full window for the
    /// partial one written at shutdown.
    pub end_ms: i64,
    /// Every client seen.
    pub clients: ClientSketch,
    /// The clients that got at least one failed or slow response.
    pub affected: ClientSketch,
}

impl ClientWindow {
    /// An empty window `[start_ms, end_ms)`.
    #[must_use]
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        Self {
            start_ms,
            end_ms,
            ..Self::default()
        }
    }

    /// Adds the clients of `other` (the same window counted elsewhere).
    pub fn merge(&mut self, other: &ClientWindow) {
        self.start_ms = self.start_ms.min(other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        self.clients.merge(&other.clients);
        self.affected.merge(&other.affected);
    }
}

/// How many distinct users (clients) were seen over a span of windows, and how many
/// of them were affected by a failed or slow response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsersSeen {
    /// Distinct clients over the span (each counted once, however many windows).
    pub clients: u64,
    /// Distinct clients that got at least one failed or slow response.
    pub affected: u64,
    /// Windows that overlapped the span.
    pub windows: u64,
}

impl UsersSeen {
    /// The share of users affected (`affected / clients`), `None` without clients.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        (self.clients > 0).then(|| self.affected as f64 / self.clients as f64)
    }
}

/// One recorded window's counts, without its sketches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    /// Start (unix ms), inclusive.
    pub start_ms: i64,
    /// End (unix ms), exclusive.
    pub end_ms: i64,
    /// Distinct clients.
    pub clients: u64,
    /// Distinct clients affected.
    pub affected: u64,
}

impl Store {
    /// Records a completed window. A window already recorded with the same start
    /// (the partial window written at shutdown, then the rest of that minute after a
    /// restart) is merged with it: a client seen in both halves counts once.
    pub fn record_client_window(&self, window: &ClientWindow) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing = tx
            .prepare_cached(
                "SELECT end_ms, clients_sketch, affected_sketch FROM client_windows
                 WHERE start_ms = ?1",
            )?
            .query_row(params![window.start_ms], |row| {
                Ok(ClientWindow {
                    start_ms: window.start_ms,
                    end_ms: row.get(0)?,
                    clients: row.get(1)?,
                    affected: row.get(2)?,
                })
            })
            .optional()?;
        let merged;
        let window = match existing {
            Some(mut stored) => {
                stored.merge(window);
                merged = stored;
                &merged
            }
            None => window,
        };
        let (clients, affected) = counts(window);
        tx.prepare_cached(
            "INSERT OR REPLACE INTO client_windows
             (start_ms, end_ms, clients, affected, clients_sketch, affected_sketch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            window.start_ms,
            window.end_ms,
            clamp_i64(clients),
            clamp_i64(affected),
            window.clients.to_bytes(),
            window.affected.to_bytes(),
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// Distinct users between `from_ms` and `to_ms` (unix ms, inclusive), and how
    /// many of them were affected: the union of every window overlapping the span,
    /// so the span is widened to whole windows. A sketch that cannot be read is an
    /// error (nothing is guessed).
    pub fn users_between(&self, from_ms: i64, to_ms: i64) -> Result<UsersSeen> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT clients_sketch, affected_sketch FROM client_windows
             WHERE start_ms <= ?2 AND end_ms > ?1 ORDER BY start_ms",
        )?;
        let mut rows = stmt.query(params![from_ms, to_ms])?;
        let mut all = ClientWindow::default();
        let mut windows = 0;
        while let Some(row) = rows.next()? {
            all.clients.merge(&row.get::<_, ClientSketch>(0)?);
            all.affected.merge(&row.get::<_, ClientSketch>(1)?);
            windows += 1;
        }
        let (clients, affected) = counts(&all);
        Ok(UsersSeen {
            clients,
            affected,
            windows,
        })
    }

    /// The recorded windows overlapping `[from_ms, to_ms]`, oldest first, with
    /// their counts (for charts).
    pub fn client_windows(&self, from_ms: i64, to_ms: i64) -> Result<Vec<WindowCounts>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT start_ms, end_ms, clients, affected FROM client_windows
             WHERE start_ms <= ?2 AND end_ms > ?1 ORDER BY start_ms",
        )?;
        let rows = stmt
            .query_map(params![from_ms, to_ms], |row| {
                Ok(WindowCounts {
                    start_ms: row.get(0)?,
                    end_ms: row.get(1)?,
                    clients: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    affected: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// A window's counts; the affected are clients too, so an estimate of them above
/// the estimate of all clients is capped.
fn counts(window: &ClientWindow) -> (u64, u64) {
    let clients = window.clients.estimate();
    (clients, window.affected.estimate().min(clients))
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Distinct, well-spread client keys, as the proxy's keyed hash gives.
    fn client(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5151_5151
    }

    fn sketch_of(range: std::ops::Range<u64>) -> ClientSketch {
        let mut sketch = ClientSketch::new();
        for i in range {
            sketch.insert(client(i));
        }
        sketch
    }

    #[test]
    fn exact_up_to_the_threshold_and_close_above() {
        for n in [0, 1, 2, 7, 8, 9, 50, 200, ClientSketch::EXACT_UP_TO] {
            let mut sketch = sketch_of(0..n);
            // Seeing the same clients again changes nothing.
            for i in 0..n {
                sketch.insert(client(i));
            }
            assert_eq!(sketch.estimate(), n, "n = {n}");
        }
        for n in [1_000u64, 10_000, 100_000] {
            let estimate = sketch_of(0..n).estimate() as f64;
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error < 0.05, "n = {n}: estimate {estimate}, error {error}");
        }
    }

    #[test]
    fn merge_is_the_union() {
        // Small: exact.
        let mut a = sketch_of(0..200);
        a.merge(&sketch_of(100..300));
        assert_eq!(a.estimate(), 300);
        // Merging with an empty sketch or with itself changes nothing.
        a.merge(&ClientSketch::new());
        a.merge(&a.clone());
        assert_eq!(a.estimate(), 300);
        // Large: within a few percent, duplicates not double-counted.
        let mut b = sketch_of(0..30_000);
        b.merge(&sketch_of(20_000..50_000));
        let error = (b.estimate() as f64 - 50_000.0).abs() / 50_000.0;
        assert!(error < 0.05, "{} for 50000", b.estimate());
        // Small into large and large into small agree.
        let mut c = sketch_of(49_990..50_010);
        c.merge(&b);
        let mut d = b.clone();
        d.merge(&sketch_of(49_990..50_010));
        assert!(c.estimate().abs_diff(d.estimate()) < 500);
    }

    #[test]
    fn bytes_round_trip() {
        for n in [0, 5, 300, 5_000] {
            let sketch = sketch_of(0..n);
            let bytes = sketch.to_bytes();
            let back = ClientSketch::from_bytes(&bytes).unwrap();
            assert_eq!(back.estimate(), sketch.estimate(), "n = {n}");
            // Adding to what was read goes on counting the same set.
            let mut more = back;
            more.insert(client(n));
            more.insert(client(0));
            if n < ClientSketch::EXACT_UP_TO {
                assert_eq!(more.estimate(), n + 1);
            }
        }
        // Bounded: a sketch of many clients stays small.
        assert!(sketch_of(0..100_000).to_bytes().len() < 4096);
    }

    #[test]
    fn bad_bytes_are_an_error_not_a_panic() {
        assert!(ClientSketch::from_bytes(b"").is_err());
        assert!(ClientSketch::from_bytes(b"not a sketch at all").is_err());
        let good = [sketch_of(0..5), sketch_of(0..300), sketch_of(0..5_000)];
        for sketch in &good {
            let bytes = sketch.to_bytes();
            for cut in 0..bytes.len().min(64) {
                // Truncated: never a panic (an error, or a smaller valid sketch).
                let _ = ClientSketch::from_bytes(&bytes[..cut]);
            }
            assert!(ClientSketch::from_bytes(&bytes[..7]).is_err());
        }
        // Random corruption of valid images: errors or sketches, never a panic.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3_000 {
            let mut bytes = good[round % good.len()].to_bytes();
            for _ in 0..1 + round % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if let Ok(mut sketch) = ClientSketch::from_bytes(&bytes) {
                sketch.merge(&good[2]);
                let _ = (sketch.estimate(), sketch.to_bytes());
            }
        }
    }

    fn window(start_ms: i64, clients: std::ops::Range<u64>, affected: &[u64]) -> ClientWindow {
        let mut window = ClientWindow::new(start_ms, start_ms + 60_000);
        window.clients = sketch_of(clients);
        for &i in affected {
            window.affected.insert(client(i));
        }
        window
    }

    #[test]
    fn users_between_unions_the_windows_it_overlaps_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        let minute = 60_000;
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(
                store.users_between(0, i64::MAX).unwrap(),
                UsersSeen {
                    clients: 0,
                    affected: 0,
                    windows: 0
                }
            );
            assert_eq!(store.users_between(0, i64::MAX).unwrap().ratio(), None);
            // Minute 0: clients 0..10, none affected. Minute 1: 5..20, 3 affected.
            // Minute 2: 15..25, 15 and 16 affected (15 again).
            store.record_client_window(&window(0, 0..10, &[])).unwrap();
            store
                .record_client_window(&window(minute, 5..20, &[5, 6, 15]))
                .unwrap();
            store
                .record_client_window(&window(2 * minute, 15..25, &[15, 16]))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let all = store.users_between(0, 3 * minute).unwrap();
        assert_eq!(
            all,
            UsersSeen {
                clients: 25,
                affected: 4,
                windows: 3
            }
        );
        assert_eq!(all.ratio(), Some(4.0 / 25.0));
        // A span inside minute 1 takes that whole window.
        let one = store.users_between(minute + 10, minute + 20).unwrap();
        assert_eq!((one.clients, one.affected, one.windows), (15, 3, 1));
        // A window's end is exclusive: minute 1 ends where minute 2 starts.
        let from_two = store.users_between(2 * minute, 10 * minute).unwrap();
        assert_eq!((from_two.clients, from_two.windows), (10, 1));
        assert_eq!(
            store.users_between(5 * minute, 9 * minute).unwrap().windows,
            0
        );
        assert_eq!(
            store.client_windows(0, minute).unwrap(),
            [
                WindowCounts {
                    start_ms: 0,
                    end_ms: minute,
                    clients: 10,
                    affected: 0
                },
                WindowCounts {
                    start_ms: minute,
                    end_ms: 2 * minute,
                    clients: 15,
                    affected: 3
                }
            ]
        );
    }

    #[test]
    fn a_window_recorded_twice_is_merged() {
        let store = Store::in_memory().unwrap();
        // Shutdown 20 s into the minute, restart, the rest of the minute.
        let mut first = window(0, 0..10, &[1]);
        first.end_ms = 20_000;
        store.record_client_window(&first).unwrap();
        store
            .record_client_window(&window(0, 5..15, &[1, 2]))
            .unwrap();
        let seen = store.users_between(0, 1).unwrap();
        assert_eq!((seen.clients, seen.affected, seen.windows), (15, 2, 1));
        assert_eq!(store.client_windows(0, 1).unwrap()[0].end_ms, 60_000);
    }

    #[test]
    fn a_corrupt_sketch_in_the_store_is_an_error() {
        let store = Store::in_memory().unwrap();
        store.record_client_window(&window(0, 0..10, &[])).unwrap();
        store
            .conn()
            .execute("UPDATE client_windows SET clients_sketch = x'00ff00ff'", [])
            .unwrap();
        let error = store.users_between(0, 1).unwrap_err();
        assert!(error.to_string().contains("not a client sketch"), "{error}");
        assert!(store.record_client_window(&window(0, 0..1, &[])).is_err());
    }
}
