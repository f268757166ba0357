//! Testing the API under load: a load generator and the benchmarks built on it.
//!
//! - [`load`] drives a fixed number of keep-alive connections for a bounded time and
//!   records latency in an HDR histogram.
//! - [`bench`] is `warden bench api`: the API's throughput and latency side by side
//!   with a bare axum server (the framework's ceiling) in one run.

pub mod bench;
pub mod load;
