//! Rollback: releases, the supervisor of API instances, the front proxy, deploys and
//! rollbacks.
//!
//! - [`release`] is the release registry: immutable releases with their binary,
//!   build identity and dependency list.
//! - [`supervisor`] runs an API instance as a child process, waits until it is ready,
//!   restarts it with backoff when it dies, and publishes it as a scrape target.

pub mod release;
pub mod supervisor;
