//! Scraping: each target's `/metrics` in the Prometheus text format, the RSS of the
//! processes Warden runs from `/proc`, and the derived per-instance series the rules
//! and the dashboard read (request rate, 5xx ratio, p50/p99 latency), computed from
//! the difference between two scrapes the way Prometheus' `rate()` and
//! `histogram_quantile()` would.
//!
//! Only the series Warden charts and alerts on are stored (see [`DEFAULT_KEEP`], and
//! `keep_metrics` in the config for more): histogram buckets are summed into the
//! derived series at scrape time instead, which keeps a week of 100 instances in a
//! small SQLite file. Full-fidelity metrics are Prometheus' job (`ops/prometheus/`).
//!
//! A target that does not answer is recorded as `up = 0` (and, if Warden runs the
//! process, its RSS is still read from `/proc`), never silently dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use warden_store::{Labels, Sample};

/// The histogram the traffic series are derived from.
const DURATION_HISTOGRAM: &str = "http_server_request_duration_seconds";
/// Routes that are the monitoring's own traffic, left out of request rate and latency.
const INFRA_ROUTES: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// Names of the series derived at each scrape.
pub mod series {
    /// Resident set size as the process reports it.
    pub const RSS: &str = "process_resident_memory_bytes";
    /// RSS read by Warden from `/proc` for processes it runs (available even when the
    /// process does not answer).
    pub const PROC_RSS: &str = "warden_instance_rss_bytes";
    /// jemalloc heap statistics; `kind="allocated"` is the live heap.
    pub const HEAP: &str = "warden_heap_bytes";
    /// The process's memory limit.
    pub const LIMIT: &str = "warden_memory_limit_bytes";
    /// 1 when the last scrape succeeded, else 0.
    pub const UP: &str = "up";
    /// How long the scrape took, in seconds.
    pub const SCRAPE_DURATION: &str = "scrape_duration_seconds";
    /// Requests per second between the last two scrapes (monitoring routes excluded).
    pub const REQUEST_RATE: &str = "warden:request_rate";
    /// Share of those requests answered with a 5xx status (0 to 1).
    pub const ERROR_RATIO: &str = "warden:error_ratio";
    /// Median request duration in seconds.
    pub const LATENCY_P50: &str = "warden:latency_p50_seconds";
    /// 99th percentile request duration in seconds.
    pub const LATENCY_P99: &str = "warden:latency_p99_seconds";
}

/// Metrics stored by default, besides `up`, `scrape_duration_seconds` and the derived
/// series.
pub const DEFAULT_KEEP: [&str; 8] = [
    series::RSS,
    series::HEAP,
    series::LIMIT,
    "warden_build_info",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "http_server_active_requests",
];

/// Something to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `host:port`, the `instance` label.
    pub instance: String,
    /// The metrics URL, e.g. `http://127.0.0.1:9001/metrics`.
    pub url: String,
    /// The release it runs, the `release` label.
    #[serde(default = "unknown")]
    pub release: String,
    /// The process id when Warden runs it, for RSS from `/proc`.
    #[serde(skip)]
    pub pid: Option<u32>,
}

fn unknown() -> String {
    "unknown".to_owned()
}

/// Memory figures of one instance at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Memory {
    /// RSS in bytes (from `/proc` when Warden runs the process, else as reported).
    pub rss: Option<f64>,
    /// Live heap in bytes (jemalloc `allocated`).
    pub heap_allocated: Option<f64>,
    /// The memory limit the process reports.
    pub limit: Option<f64>,
}

/// Traffic of one instance between two scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Requests per second.
    pub request_rate: f64,
    /// 5xx share of requests, 0 when there were none.
    pub error_ratio: f64,
    /// Median duration in seconds; `None` without requests.
    pub p50: Option<f64>,
    /// 99th percentile duration in seconds; `None` without requests.
    pub p99: Option<f64>,
}

/// The result of scraping one target.
#[derive(Debug, Clone)]
pub struct InstanceScrape {
    /// What was scraped.
    pub target: Target,
    /// When (unix ms).
    pub at_ms: i64,
    /// Whether `/metrics` answered with something parseable.
    pub up: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Memory figures.
    pub memory: Memory,
    /// Traffic since the previous scrape; `None` on the first scrape, after a counter
    /// reset (restart) or when the target is down.
    pub traffic: Option<Traffic>,
    /// Every sample to store: the target's own, `up`, and the derived series.
    pub samples: Vec<Sample>,
}

/// Cumulative request counts of one instance, summed over routes, methods and
/// statuses.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    /// `(le, cumulative count)`, sorted by `le`.
    buckets: Vec<(f64, f64)>,
    count: f64,
    errors: f64,
    at: Option<Instant>,
}

/// Scrapes targets, remembering each one's previous counters to derive rates.
pub struct Scraper {
    client: reqwest::Client,
    previous: HashMap<String, Totals>,
    keep: std::collections::HashSet<String>,
}

impl Scraper {
    /// A scraper whose requests time out after `timeout`, storing the
    /// [`DEFAULT_KEEP`] metrics plus `extra_keep` (names; a histogram's buckets are
    /// `NAME_bucket`).
    pub fn new(timeout: Duration, extra_keep: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()?,
            previous: HashMap::new(),
            keep: DEFAULT_KEEP
                .iter()
                .map(|s| (*s).to_owned())
                .chain(extra_keep.iter().cloned())
                .collect(),
        })
    }

    /// Scrapes every target concurrently.
    pub async fn scrape_all(&mut self, targets: &[Target]) -> Vec<InstanceScrape> {
        let mut fetches = tokio::task::JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let (client, url) = (self.client.clone(), target.url.clone());
            fetches.spawn(async move { (index, fetch(&client, &url).await) });
        }
        let mut bodies: Vec<(Result<String, String>, Duration)> = targets
            .iter()
            .map(|_| (Err("scrape did not finish".to_owned()), Duration::ZERO))
            .collect();
        while let Some(joined) = fetches.join_next().await {
            if let Ok((index, body)) = joined {
                bodies[index] = body;
            }
        }
        let now = warden_store::now_ms();
        let live: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.instance.as_str()).collect();
        self.previous.retain(|k, _| live.contains(k.as_str()));
        targets
            .iter()
            .zip(bodies)
            .map(|(target, (body, took))| self.absorb(target, now, body, took))
            .collect()
    }

    /// Turns one fetched body (or error) into an [`InstanceScrape`].
    fn absorb(
        &mut self,
        target: &Target,
        at_ms: i64,
        body: Result<String, String>,
        took: Duration,
    ) -> InstanceScrape {
        let base = Labels::from([
            ("instance".to_owned(), target.instance.clone()),
            ("release".to_owned(), target.release.clone()),
        ]);
        let proc_rss = target
            .pid
            .and_then(warden_memtest::target::rss_bytes)
            .map(|b| b as f64);
        let parsed = body.and_then(|text| {
            let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
                .map_err(|e| format!("not in the Prometheus text format: {e}"))?;
            // The parser skips lines it does not understand; a body with no sample at
            // all (an HTML page at the wrong URL, say) is a failed scrape.
            if scrape.samples.is_empty() {
                return Err(format!(
                    "{} has no metrics in the Prometheus text format",
                    target.url
                ));
            }
            Ok(scrape)
        });
        let mut samples = Vec::new();
        let mut push = |name: &str, extra: &[(&str, &str)], value: f64| {
            let mut labels = base.clone();
            for (k, v) in extra {
                labels.insert((*k).to_owned(), (*v).to_owned());
            }
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        };
        push(series::SCRAPE_DURATION, &[], took.as_secs_f64());
        if let Some(rss) = proc_rss {
            push(series::PROC_RSS, &[], rss);
        }
        let (up, error, memory, traffic) = match parsed {
            Err(error) => {
                push(series::UP, &[], 0.0);
                self.previous.remove(&target.instance);
                let memory = Memory {
                    rss: proc_rss,
                    ..Memory::default()
                };
                (false, Some(error), memory, None)
            }
            Ok(scrape) => {
                push(series::UP, &[], 1.0);
                let mut memory = Memory::default();
                let mut totals = Totals::default();
                for sample in &scrape.samples {
                    if let prometheus_parse::Value::Histogram(buckets) = &sample.value
                        && sample.metric == DURATION_HISTOGRAM
                    {
                        totals.add(&sample.labels, buckets);
                    }
                    let stored = match &sample.value {
                        prometheus_parse::Value::Histogram(_) => {
                            format!("{}_bucket", sample.metric)
                        }
                        _ => sample.metric.clone(),
                    };
                    if !self.keep.contains(&stored) {
                        continue;
                    }
                    let extra: Vec<(&str, &str)> = sample
                        .labels
                        .iter()
                        .filter(|(k, _)| k.as_str() != "instance" && k.as_str() != "release")
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    match &sample.value {
                        prometheus_parse::Value::Counter(v)
                        | prometheus_parse::Value::Gauge(v)
                        | prometheus_parse::Value::Untyped(v) => {
                            push(&sample.metric, &extra, *v);
                            match sample.metric.as_str() {
                                series::RSS => memory.rss = Some(*v),
                                series::LIMIT => memory.limit = Some(*v),
                                series::HEAP if sample.labels.get("kind") == Some("allocated") => {
                                    memory.heap_allocated = Some(*v);
                                }
                                _ => {}
                            }
                        }
                        prometheus_parse::Value::Histogram(buckets) => {
                            for bucket in buckets {
                                let le = format_le(bucket.less_than);
                                let mut labels = extra.clone();
                                labels.push(("le", &le));
                                push(&stored, &labels, bucket.count);
                            }
                        }
                        prometheus_parse::Value::Summary(quantiles) => {
                            for q in quantiles {
                                let quantile = q.quantile.to_string();
                                let mut labels = extra.clone();
                                labels.push(("quantile", &quantile));
                                push(&sample.metric, &labels, q.count);
                            }
                        }
                    }
                }
                if proc_rss.is_some() {
                    memory.rss = proc_rss;
                }
                totals.at = Some(Instant::now());
                let traffic = self
                    .previous
                    .insert(target.instance.clone(), totals.clone())
                    .and_then(|before| traffic_between(&before, &totals));
                if let Some(t) = traffic {
                    push(series::REQUEST_RATE, &[], t.request_rate);
                    push(series::ERROR_RATIO, &[], t.error_ratio);
                    if let Some(p50) = t.p50 {
                        push(series::LATENCY_P50, &[], p50);
                    }
                    if let Some(p99) = t.p99 {
                        push(series::LATENCY_P99, &[], p99);
                    }
                }
                (true, None, memory, traffic)
            }
        };
        InstanceScrape {
            target: target.clone(),
            at_ms,
            up,
            error,
            memory,
            traffic,
            samples,
        }
    }
}

impl Totals {
    fn add(
        &mut self,
        labels: &prometheus_parse::Labels,
        buckets: &[prometheus_parse::HistogramCount],
    ) {
        if labels
            .get("http_route")
            .is_some_and(|r| INFRA_ROUTES.contains(&r))
        {
            return;
        }
        let total = buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count);
        self.count += total;
        if labels
            .get("http_response_status_code")
            .is_some_and(|s| s.starts_with('5'))
        {
            self.errors += total;
        }
        for bucket in buckets {
            match self
                .buckets
                .iter_mut()
                .find(|(le, _)| le.total_cmp(&bucket.less_than).is_eq())
            {
                Some((_, count)) => *count += bucket.count,
                None => self.buckets.push((bucket.less_than, bucket.count)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
}

/// Rates and quantiles between two cumulative readings; `None` after a counter reset.
fn traffic_between(before: &Totals, after: &Totals) -> Option<Traffic> {
    let seconds = after.at?.checked_duration_since(before.at?)?.as_secs_f64();
    let requests = after.count - before.count;
    let errors = after.errors - before.errors;
    if seconds <= 0.0 || requests < 0.0 || errors < 0.0 {
        return None;
    }
    let deltas: Vec<(f64, f64)> = after
        .buckets
        .iter()
        .map(|(le, count)| {
            let old = before
                .buckets
                .iter()
                .find(|(l, _)| l.total_cmp(le).is_eq())
                .map_or(0.0, |(_, c)| *c);
            (*le, count - old)
        })
        .collect();
    if deltas.iter().any(|(_, d)| *d < 0.0) {
        return None;
    }
    Some(Traffic {
        request_rate: requests / seconds,
        error_ratio: if requests > 0.0 {
            errors / requests
        } else {
            0.0
        },
        p50: quantile(0.5, &deltas),
        p99: quantile(0.99, &deltas),
    })
}

/// The `q` quantile of a cumulative histogram, interpolated linearly inside the
/// bucket it falls in, as PromQL's `histogram_quantile` does (the `+Inf` bucket
/// answers with the highest finite bound).
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let fraction = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

fn format_le(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".to_owned()
    } else {
        le.to_string()
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> (Result<String, String>, Duration) {
    let started = Instant::now();
    let result = async {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        response
            .text()
            .await
            .map_err(|e| format!("cannot read {url}: {e}"))
    }
    .await;
    (result, started.elapsed())
}
