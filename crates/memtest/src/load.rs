//! A closed-loop load generator: `concurrency` workers, each sending its next request
//! as soon as the previous one is answered, over keep-alive connections, until the
//! time or request budget runs out.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How much load to apply. Both bounds apply; whichever is reached first ends the run.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
}

/// What one request produced: an HTTP status, or a transport error.
pub type Outcome = Result<u16, reqwest::Error>;

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub requests: u64,
    /// Transport errors plus responses with a status other than expected.
    pub errors: u64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `send(sequence_number)` under `plan`; a request counts as an error when it
/// fails in transport or answers a status other than `expect_status`.
pub async fn run<F, Fut>(plan: LoadPlan, expect_status: u16, send: F) -> anyhow::Result<LoadReport>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let send = Arc::new(send);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let send = Arc::clone(&send);
        let issued = Arc::clone(&issued);
        workers.push(tokio::spawn(async move {
            // Latency in microseconds, 1 µs to 60 s, 3 significant figures.
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= plan.max_requests || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let outcome = send(n).await;
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
                if !matches!(outcome, Ok(status) if status == expect_status) {
                    errors += 1;
                }
            }
            anyhow::Ok((histogram, errors))
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for worker in workers {
        let (histogram, worker_errors) = worker.await??;
        total.add(histogram)?;
        errors += worker_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = total.len();
    Ok(LoadReport {
        requests,
        errors,
        elapsed_s: elapsed,
        requests_per_s: requests as f64 / elapsed.max(f64::EPSILON),
        p50_ms: total.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: total.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
