//! Monitoring: memory first.
//!
//! - [`detector`] decides whether a memory series is leaking: a robust trend on the
//!   floor of the series, sustained across the window, with a forecast of exhaustion.
//! - [`compare`] compares a young release's memory with the release it replaced at
//!   the same age, which catches a leaking deploy in minutes rather than ten.
//! - [`notify`] delivers alert notifications: signed webhooks, Slack, email.
//! - [`scrape`] reads each target's `/metrics` and `/proc` RSS and derives request
//!   rate, 5xx ratio and latency quantiles.
//! - [`prometheus`] reads the same series from a Prometheus server's query API.
//! - [`rules`] evaluates the alert rules with a pending → firing → resolved lifecycle.
//! - [`control`] is the loop `warden up` runs: scrape, store, evaluate, record, notify.
//! - [`bench`] is `warden bench detector`: the detector and the canonical PromQL rule
//!   scored on a labelled corpus of memory series; [`bench_scrape`] is
//!   `warden bench scrape`, the CPU cost of monitoring 100 targets.

pub mod bench;
pub mod bench_scrape;
pub mod compare;
pub mod control;
pub mod dashboard;
pub mod detector;
pub mod notify;
pub mod prometheus;
pub mod rules;
pub mod scrape;
