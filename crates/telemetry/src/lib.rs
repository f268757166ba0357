//! What every Warden process reports about itself.
//!
//! The outage Warden was built from was a memory leak that nobody saw for an hour,
//! because the only signals were latency and errors. This crate makes memory a
//! first-class signal in every process:
//!
//! - [`Telemetry`] owns a Prometheus registry with the standard `process_*` metrics,
//!   the jemalloc heap gauges (`warden_heap_*_bytes`), request metrics and
//!   `warden_build_info` and `warden_memory_limit_bytes`, and renders it in the Prometheus text format for `/metrics`.
//! - [`http::track_requests`] is an axum middleware that records
//!   `http_server_request_duration_seconds` (labelled by the *route template*, never
//!   the raw path, so cardinality stays bounded) and `http_server_active_requests`.
//! - [`heap::HeapStats`] reads allocated/active/resident/retained bytes from jemalloc.
//!   Allocated bytes are what tell a real leak from allocator caching: RSS can stay
//!   high after a burst because the allocator keeps pages, allocated bytes cannot.
//! - [`logging::init`] sets up `tracing` (JSON when stdout is not a terminal), and
//!   [`spawn_memory_log`] writes one structured line with RSS and heap every interval.
//! - [`serve`] serves HTTP/1.1 with a header-read and an idle timeout, so a slow or
//!   idle client cannot hold a connection open for ever.

pub mod heap;
pub mod http;
pub mod limit;
pub mod logging;
pub mod output;
#[cfg(feature = "probe")]
pub mod probe;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub use heap::HeapStats;
pub use limit::{LimitSource, MemoryLimit, memory_limit};

/// The identity of a build, which ties a memory curve to a dependency set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildInfo {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// The git commit the binary was built from, or `unknown`.
    pub git_commit: &'static str,
    /// SHA-256 of the `Cargo.lock` the binary was built with, or `unknown`.
    pub lockfile_sha256: &'static str,
}

/// A gauge that mirrors outside state (database pool size, for instance), read before
/// each scrape.
struct FnGauge {
    name: String,
    gauge: IntGauge,
    read: Box<dyn Fn() -> Option<i64> + Send + Sync>,
}

/// The metrics of one process. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    heap: IntGaugeVec,
    gauges: std::sync::RwLock<Vec<FnGauge>>,
    gauge_errors: IntCounterVec,
    pub(crate) http: http::HttpMetrics,
}

impl Telemetry {
    /// Creates the registry with process, heap, HTTP and build-identity metrics.
    pub fn new(build: &BuildInfo) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let info = IntGaugeVec::new(
            Opts::new(
                "warden_build_info",
                "The build's identity: version, git commit and Cargo.lock SHA-256. Always 1.",
            ),
            &["version", "git_commit", "lockfile_sha256"],
        )?;
        info.with_label_values(&[build.version, build.git_commit, build.lockfile_sha256])
            .set(1);
        registry.register(Box::new(info))?;

        let heap = IntGaugeVec::new(
            Opts::new(
                "warden_heap_bytes",
                "jemalloc heap statistics in bytes by kind: allocated (live objects), \
                 active (pages holding them), resident (physically mapped), retained \
                 (kept for reuse, not returned to the OS).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(heap.clone()))?;

        let limit = IntGauge::new(
            "warden_memory_limit_bytes",
            "The memory this process may use: its cgroup limit, else the machine's RAM.",
        )?;
        // Exported only when known: a limit of 0 would make every instance "full".
        if let Some(found) = memory_limit(None) {
            limit.set(i64::try_from(found.bytes).unwrap_or(i64::MAX));
            registry.register(Box::new(limit))?;
        }

        let gauge_errors = IntCounterVec::new(
            Opts::new(
                "warden_metrics_gauge_errors_total",
                "Scrapes at which a gauge could not be read (it was left out of them).",
            ),
            &["gauge"],
        )?;
        registry.register(Box::new(gauge_errors.clone()))?;

        let http = http::HttpMetrics::new(&registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                heap,
                gauges: std::sync::RwLock::new(Vec::new()),
                gauge_errors,
                http,
            }),
        })
    }

    /// Registers an integer gauge whose value is read from `read` at every scrape.
    ///
    /// A reading of `None` (or a reader that panics) leaves the gauge out of that
    /// scrape and counts it in `warden_metrics_gauge_errors_total{gauge}`: one broken
    /// gauge never takes the rest of `/metrics` down with it.
    pub fn register_gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> Option<i64> + Send + Sync + 'static,
    ) -> Result<(), prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        self.inner.registry.register(Box::new(gauge.clone()))?;
        if let Ok(mut list) = self.inner.gauges.write() {
            list.push(FnGauge {
                name: name.to_owned(),
                gauge,
                read: Box::new(read),
            });
        }
        Ok(())
    }

    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        if let Some(stats) = HeapStats::read() {
            for (kind, value) in stats.by_kind() {
                self.inner
                    .heap
                    .with_label_values(&[kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        let mut unread = Vec::new();
        if let Ok(list) = self.inner.gauges.read() {
            for FnGauge { name, gauge, read } in list.iter() {
                let reading = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
                match reading {
                    Ok(Some(value)) => gauge.set(value),
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            gauge = name,
                            "could not read a gauge; left out of this scrape"
                        );
                        self.inner.gauge_errors.with_label_values(&[name]).inc();
                        unread.push(name.clone());
                    }
                }
            }
        }
        let mut families = self.inner.registry.gather();
        families.retain(|family| !unread.iter().any(|name| name == family.name()));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and every
        // family here comes from the registry's own validated constructors.
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The content type of [`Telemetry::render`]'s output.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}

/// Resident set size of this process in bytes, from `/proc/self/status` (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Logs RSS and heap once per `interval` until the runtime shuts down, so that a leak
/// is visible in the logs even where nobody scrapes `/metrics`.
pub fn spawn_memory_log(interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let rss = resident_memory_bytes();
            match HeapStats::read() {
                Some(heap) => tracing::info!(
                    rss_bytes = rss,
                    heap_allocated_bytes = heap.allocated,
                    heap_resident_bytes = heap.resident,
                    heap_retained_bytes = heap.retained,
                    "memory"
                ),
                None => tracing::info!(rss_bytes = rss, "memory"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: BuildInfo = BuildInfo {
        version: "0.0.0",
        git_commit: "test",
        lockfile_sha256: "test",
    };

    #[test]
    fn a_gauge_that_cannot_be_read_is_left_out_and_counted() {
        let telemetry = Telemetry::new(&BUILD).unwrap();
        telemetry
            .register_gauge("test_good", "Reads.", || Some(7))
            .unwrap();
        telemetry
            .register_gauge("test_missing", "Has no value.", || None)
            .unwrap();
        telemetry
            .register_gauge("test_panics", "Panics.", || panic!("a broken reader"))
            .unwrap();
        for scrape in 1..=2 {
            let text = telemetry.render();
            assert!(text.contains("test_good 7"), "{text}");
            for gauge in ["test_missing", "test_panics"] {
                assert!(!text.contains(&format!("# TYPE {gauge} ")), "{text}");
                assert!(!text.contains(&format!("\n{gauge} ")), "{text}");
            }
            assert!(text.contains("warden_build_info"), "{text}");
            for gauge in ["test_missing", "test_panics"] {
                let line =
                    format!("warden_metrics_gauge_errors_total{{gauge=\"{gauge}\"}} {scrape}");
                assert!(text.contains(&line), "{line} in\n{text}");
            }
        }
    }
}
