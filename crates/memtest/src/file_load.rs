//! Load from a scenario file the user wrote ([Hurl](crate::hurl)): `--concurrency`
//! virtual users, each running the file's entries in a loop with its own captures,
//! as closed-loop workers of [`load::run`]. One iteration of a virtual user is one
//! operation of the load generator; latency is recorded per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::hurl::{self, Scenario, VirtualUser};
use crate::load::{self, Answer, LoadPlan};
use crate::scenario::RoundLoad;

/// The virtual users of one target, kept from round to round (their setup entries —
/// a registration, a login — run once, in the warm-up round).
pub struct FileLoad {
    base: String,
    users: Mutex<Vec<VirtualUser>>,
    /// The first unexpected answer seen, to say what went wrong.
    first_failure: Mutex<Option<hurl::Failure>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FileLoad {
    /// `users` virtual users of `scenario` against `base`, with the `--var` values.
    pub fn new(
        scenario: &Arc<Scenario>,
        vars: &BTreeMap<String, String>,
        base: &str,
        users: usize,
    ) -> Self {
        Self {
            base: base.to_owned(),
            users: Mutex::new(
                (0..users)
                    .map(|vu| VirtualUser::new(Arc::clone(scenario), vars.clone(), vu))
                    .collect(),
            ),
            first_failure: Mutex::new(None),
        }
    }

    /// The first unexpected answer so far, as `line N (GET ...): what`.
    pub fn first_failure(&self) -> Option<String> {
        lock(&self.first_failure).as_ref().map(ToString::to_string)
    }

    /// Runs one round under `plan` on fresh connections, closed at its end; `sent`
    /// counts every request as its iteration completes.
    pub async fn round(
        self: &Arc<Self>,
        plan: LoadPlan,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<RoundLoad> {
        let client = hurl::client()?;
        // Latency of each request, 1 µs to 60 s, 3 significant figures.
        let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
            1, 60_000_000, 3,
        )?));
        let totals = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (this, recorded, counted) = (Arc::clone(self), Arc::clone(&latency), Arc::clone(&totals));
        // No more iterations at once than virtual users.
        let plan = LoadPlan {
            concurrency: plan.concurrency.min(lock(&self.users).len()).max(1),
            ..plan
        };
        let report = load::run(plan, move |_| {
            let (this, client) = (Arc::clone(&this), client.clone());
            let (recorded, counted, sent) =
                (Arc::clone(&recorded), Arc::clone(&counted), Arc::clone(&sent));
            async move {
                let Some(mut user) = lock(&this.users).pop() else {
                    return Answer { ok: true, timed: false };
                };
                let outcome = user.run_once(&client, &this.base).await;
                lock(&this.users).insert(0, user);
                {
                    let mut histogram = lock(&recorded);
                    for result in outcome.results.iter().filter(|r| r.sent) {
                        let micros = u64::try_from(result.latency.as_micros()).unwrap_or(u64::MAX);
                        histogram.saturating_record(micros.max(1));
                    }
                }
                counted.0.fetch_add(outcome.requests, Ordering::Relaxed);
                counted.1.fetch_add(outcome.unexpected, Ordering::Relaxed);
                sent.fetch_add(outcome.requests, Ordering::Relaxed);
                if let Some(failure) = outcome.first_failure {
                    lock(&this.first_failure).get_or_insert(failure);
                }
                Answer {
                    ok: outcome.unexpected == 0,
                    timed: false,
                }
            }
        })
        .await?;
        let histogram = lock(&latency);
        let (requests, errors) = (
            totals.0.load(Ordering::Relaxed),
            totals.1.load(Ordering::Relaxed),
        );
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Ok(RoundLoad {
            requests,
            errors,
            load: load::LoadReport {
                requests,
                errors,
                elapsed_s: report.elapsed_s,
                requests_per_s: requests as f64 / report.elapsed_s.max(f64::EPSILON),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            },
        })
    }
}
