//! Rollback: releases, the supervisor of API instances, the front proxy, deploys and
//! rollbacks.
//!
//! - [`supervisor`] runs an API instance as a child process, waits until it is ready,
//!   restarts it with backoff when it dies, and publishes it as a scrape target.

pub mod supervisor;
