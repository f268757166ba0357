//! What the event log says about releases: which is active, which was the last
//! known good one, which were marked bad and why, and when each was deployed.
//!
//! The registry itself never changes (a release is immutable); a release's state is
//! a view of the `deploy.*`, `rollback.*` and `release.*` events, like every other
//! view in Warden.

use std::collections::BTreeMap;

use serde::Serialize;
use warden_store::{Event, EventFilter, Release, Store};

pub use warden_store::kinds::{DEPLOYED, MARKED_BAD, ROLLED_BACK};

/// A release with its state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseState {
    /// The release's name (serialized with the release itself, see [`Listed`]).
    #[serde(skip)]
    pub name: String,
    /// `active`, `last known good`, `bad` or `recorded` (never deployed, or older).
    pub state: &'static str,
    /// Why it was marked bad.
    pub bad_reason: Option<String>,
    /// When traffic last moved to it (unix ms).
    pub deployed_ms: Option<i64>,
}

/// A release with its state: one entry of `warden release list --json`.
#[derive(Debug, Serialize)]
pub struct Listed<'a> {
    #[serde(flatten)]
    pub release: &'a Release,
    #[serde(flatten)]
    pub state: &'a ReleaseState,
}

/// Activations and verdicts read from the event log, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Releases traffic moved to, with the time, oldest first.
    pub activations: Vec<(String, i64)>,
    /// Releases marked bad after their last activation, with the reason.
    pub bad: BTreeMap<String, String>,
}

impl History {
    /// Reads the history from the store.
    pub fn load(store: &Store) -> warden_store::Result<Self> {
        let mut events = Vec::new();
        for prefix in ["deploy.", "rollback.", "release."] {
            events.extend(store.events(&EventFilter {
                kind_prefix: Some(prefix.to_owned()),
                ..EventFilter::default()
            })?);
        }
        events.sort_by_key(|e| e.id);
        Ok(Self::from_events(&events))
    }

    /// Builds the history from events, oldest first.
    #[must_use]
    pub fn from_events(events: &[Event]) -> Self {
        let mut history = Self::default();
        for event in events {
            let Some(release) = &event.release else {
                continue;
            };
            match event.kind.as_str() {
                DEPLOYED | ROLLED_BACK => history.activated(release, event.at_ms),
                MARKED_BAD => {
                    let reason = event.payload["reason"]
                        .as_str()
                        .unwrap_or("no reason recorded")
                        .to_owned();
                    history.bad.insert(release.clone(), reason);
                }
                _ => {}
            }
        }
        history
    }

    /// Records that traffic moved to `release`; deploying it again clears a bad mark.
    pub fn activated(&mut self, release: &str, at_ms: i64) {
        self.activations.push((release.to_owned(), at_ms));
        self.bad.remove(release);
    }

    /// The release traffic went to last.
    #[must_use]
    pub fn active(&self) -> Option<&str> {
        self.activations.last().map(|(name, _)| name.as_str())
    }

    /// The newest release other than the active one that served traffic and was not
    /// marked bad: where a rollback goes.
    #[must_use]
    pub fn last_known_good(&self) -> Option<&str> {
        let active = self.active();
        self.activations
            .iter()
            .rev()
            .map(|(name, _)| name.as_str())
            .find(|name| Some(*name) != active && !self.bad.contains_key(*name))
    }

    /// Every recorded release with its state, in registry order.
    #[must_use]
    pub fn states(&self, releases: &[Release]) -> Vec<ReleaseState> {
        let active = self.active();
        let good = self.last_known_good();
        releases
            .iter()
            .map(|r| {
                let name = r.name.as_str();
                let bad_reason = self.bad.get(name).cloned();
                let state = if Some(name) == active {
                    "active"
                } else if bad_reason.is_some() {
                    "bad"
                } else if Some(name) == good {
                    "last known good"
                } else {
                    "recorded"
                };
                ReleaseState {
                    name: r.name.clone(),
                    state,
                    bad_reason,
                    deployed_ms: self
                        .activations
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, at)| *at),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(id: i64, kind: &str, release: &str, payload: serde_json::Value) -> Event {
        Event {
            id,
            at_ms: id * 1000,
            kind: kind.to_owned(),
            release: Some(release.to_owned()),
            payload,
        }
    }

    #[test]
    fn a_rollback_marks_the_new_release_bad_and_returns_to_the_old() {
        let events = [
            event(1, DEPLOYED, "v1", serde_json::json!({})),
            event(2, "deploy.started", "v2", serde_json::json!({})),
            event(3, DEPLOYED, "v2", serde_json::json!({})),
            event(4, ROLLED_BACK, "v1", serde_json::json!({})),
            event(5, MARKED_BAD, "v2", serde_json::json!({"reason": "leak"})),
        ];
        let history = History::from_events(&events);
        assert_eq!(history.active(), Some("v1"));
        assert_eq!(history.last_known_good(), None, "v2 is bad, v1 is active");
        let release = |name: &str| Release {
            name: name.to_owned(),
            added_ms: 0,
            version: String::new(),
            git_commit: String::new(),
            build_lockfile_sha256: String::new(),
            lockfile_sha256: String::new(),
            binary_sha256: String::new(),
            binary_path: String::new(),
            args: vec![],
            dependencies: vec![],
        };
        let states = history.states(&[release("v1"), release("v2"), release("v3")]);
        assert_eq!(states[0].state, "active");
        assert_eq!(states[0].deployed_ms, Some(4000));
        assert_eq!(states[1].state, "bad");
        assert_eq!(states[1].bad_reason.as_deref(), Some("leak"));
        assert_eq!(states[2].state, "recorded");
        assert_eq!(states[2].deployed_ms, None);
    }

    #[test]
    fn the_last_known_good_is_the_newest_earlier_release_not_marked_bad() {
        let mut history = History::default();
        history.activated("v1", 1);
        history.activated("v2", 2);
        history.activated("v3", 3);
        assert_eq!(history.last_known_good(), Some("v2"));
        history.bad.insert("v2".into(), "errors".into());
        assert_eq!(history.last_known_good(), Some("v1"));
        history.activated("v2", 4);
        assert!(
            !history.bad.contains_key("v2"),
            "redeploying clears the mark"
        );
        assert_eq!(history.last_known_good(), Some("v3"));
    }
}
