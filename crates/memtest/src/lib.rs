//! Testing the API under load: a load generator, the memory test and the benchmarks
//! built on them.
//!
//! - [`load`] drives keep-alive connections, closed loop or at a fixed rate, for a
//!   bounded time and records latency in an HDR histogram.
//! - [`nginx`] runs nginx as the peer of the side-by-side benchmarks.
//! - [`target`] starts an API process (or attaches to a running one) and reads its
//!   memory: heap from `/metrics`, RSS from `/proc`.
//! - [`scenario`] is the realistic workload the memory test repeats in rounds.
//! - [`stats`] fits robust trends (Theil–Sen, Mann–Kendall) to memory readings.
//! - [`memtest`] is `warden memtest`: the leak verdict, its report and [`chart`].
//! - [`gate`] is `warden gate`: a build with updated dependencies against the
//!   current one, interleaved, with a verdict table.
//! - [`bench`] is `warden bench api`: the API's throughput and latency side by side
//!   with a bare axum server (the framework's ceiling) in one run.

pub mod bench;
pub mod chart;
pub mod gate;
pub mod load;
pub mod memtest;
pub mod nginx;
pub mod scenario;
pub mod stats;
pub mod target;
