//! Rollback: releases, the supervisor of API instances, the front proxy, deploys and
//! rollbacks.
//!
//! - [`release`] is the release registry: immutable releases with their binary,
//!   build identity and dependency list.
//! - [`history`] reads release states (active, last known good, bad) from the event log.
//! - [`supervisor`] runs an API instance as a child process, waits until it is ready,
//!   restarts it with backoff when it dies, and publishes it as a scrape target.
//! - [`proxy`] is the front proxy users reach: round robin over the ready instances
//!   of the active release, a canary share, one retry on another instance, per-release
//!   metrics.
//! - [`controller`] deploys (ready, switch, warm previous release, drain) and rolls
//!   back, by hand or automatically on alerts during the bake window.
//! - [`recovery`] records the control plane's own runs (`control.started`,
//!   `control.stopped`) and, after a crash, what it left (`control.restarted`,
//!   `instance.lost`), stopping the instances it orphaned.
//! - [`admin`] is the console's deploy API and the client of the CLI.
//! - [`drill`] is `warden drill rollback`, the practice run; [`drill_leak`] is
//!   `warden drill leak`, the replay of the whole outage with its scorecard.
//! - [`bench`] is `warden bench proxy` (the front proxy next to nginx) and
//!   `warden bench rollback` (rollback time as users see it).

pub mod admin;
pub mod bench;
pub mod controller;
pub mod drill;
pub mod drill_leak;
pub mod history;
pub mod proxy;
pub mod recovery;
pub mod release;
pub mod supervisor;
