//! A load generator over keep-alive connections: `concurrency` workers, each sending
//! its next request as soon as the previous one is answered (closed loop) or at a
//! fixed overall rate, until the time or request budget runs out.

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
    /// Requests per second across all workers; `None` sends as fast as answers come.
    /// At a fixed rate, latency counts from when a request was due, so a stalled
    /// server is not hidden by requests that were never sent (coordinated omission).
    pub rate: Option<f64>,
}

/// What a request came to: whether the answer was the expected one, and whether
/// its latency belongs in the histogram (not for deliberately slow operations, such
/// as a login that computes a password hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub timed: bool,
}

impl From<bool> for Answer {
    fn from(ok: bool) -> Self {
        Self { ok, timed: true }
    }
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub requests: u64,
    /// Requests that failed in transport or got an answer other than expected.
    pub errors: u64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadReport {
    /// One round's progress line: `round 2/5: nginx   12345 req/s  p50 ... ms`.
    #[must_use]
    pub fn round_line(&self, round: usize, rounds: usize, name: &str) -> String {
        let errors = if self.errors > 0 {
            format!("  {} errors", self.errors)
        } else {
            String::new()
        };
        format!(
            "round {round}/{rounds}: {name:<6} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms{errors}",
            self.requests_per_s, self.p50_ms, self.p99_ms,
        )
    }
}

/// Runs `send(sequence_number)` under `plan`; `send` answers whether the request got
/// the expected answer (a `bool` will do) and whether to time it.
pub async fn run<F, Fut, A>(plan: LoadPlan, send: F) -> anyhow::Result<LoadReport>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = A> + Send,
    A: Into<Answer>,
{
    let period = plan
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
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
            let (mut errors, mut untimed) = (0u64, 0u64);
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= plan.max_requests || Instant::now() >= deadline {
                    break;
                }
                let due = match period {
                    Some(period) => {
                        let due =
                            started + period.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let answer: Answer = send(n).await.into();
                if answer.timed {
                    let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                    histogram.saturating_record(micros.max(1));
                } else {
                    untimed += 1;
                }
                if !answer.ok {
                    errors += 1;
                }
            }
            anyhow::Ok((histogram, errors, untimed))
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut untimed) = (0, 0);
    for worker in workers {
        let (histogram, worker_errors, worker_untimed) = worker.await??;
        total.add(histogram)?;
        errors += worker_errors;
        untimed += worker_untimed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = total.len() + untimed;
    Ok(LoadReport {
        requests,
        errors,
        elapsed_s: elapsed,
        requests_per_s: requests as f64 / elapsed.max(f64::EPSILON),
        p50_ms: total.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: total.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// One target of a side-by-side benchmark over interleaved rounds: medians over the
/// rounds, totals, and each round's figures in order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub name: String,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests that failed or got another answer than expected.
    pub errors: u64,
    pub requests: u64,
    /// Throughput of each round, in order.
    pub rounds_requests_per_s: Vec<f64>,
    /// p99 of each round, in order.
    pub rounds_p99_ms: Vec<f64>,
}

/// Summarises the rounds `runs` of target `name` into a [`Side`].
#[must_use]
pub fn summarise(name: &str, runs: &[LoadReport]) -> Side {
    let median = |pick: fn(&LoadReport) -> f64| {
        crate::stats::median(&mut runs.iter().map(pick).collect::<Vec<_>>())
    };
    Side {
        name: name.to_owned(),
        requests_per_s: median(|r| r.requests_per_s),
        p50_ms: median(|r| r.p50_ms),
        p99_ms: median(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        requests: runs.iter().map(|r| r.requests).sum(),
        rounds_requests_per_s: runs.iter().map(|r| r.requests_per_s).collect(),
        rounds_p99_ms: runs.iter().map(|r| r.p99_ms).collect(),
    }
}
