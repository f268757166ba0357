//! Reading series from a Prometheus server's HTTP query API instead of scraping.
//!
//! Beyond one machine, Prometheus already scrapes every instance (same metric names,
//! see `ops/prometheus/`). With `[monitor] prometheus_url` set, the control plane asks
//! it instead of scraping: every evaluation it runs instant queries for each
//! instance's memory, `up` and traffic, and on start it backfills the leak windows
//! with `query_range`, so the detector has its history at once. The verdicts come from
//! the same [`crate::detector`] on the same kind of points.
//!
//! Series are matched by `selector`, a PromQL label matcher list such as
//! `job="warden"`; the `instance` label names an instance and the `release` target
//! label (if the scrape config sets one) names its release.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::scrape::{InstanceScrape, Memory, Target, Traffic, series};

/// A Prometheus server to query.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    client: reqwest::Client,
    base: String,
    selector: String,
}

/// Memory history of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryHistory {
    /// `instance` label.
    pub instance: String,
    /// `release` label, or `unknown`.
    pub release: String,
    /// `(unix seconds, bytes)` of `warden_heap_bytes{kind="allocated"}`.
    pub heap: Vec<(f64, f64)>,
    /// `(unix seconds, bytes)` of `process_resident_memory_bytes`.
    pub rss: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl PrometheusSource {
    /// A source at `base` (e.g. `http://127.0.0.1:9090`) for series matching
    /// `selector` (e.g. `job="warden"`; empty for all).
    pub fn new(base: &str, selector: &str, timeout: Duration) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("monitor.prometheus_url {base:?} is not a URL: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "monitor.prometheus_url must be http(s)"
        );
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_owned(),
            selector: selector.to_owned(),
        })
    }

    /// `name{selector, extra}` as a PromQL vector selector.
    fn select(&self, name: &str, extra: &str) -> String {
        let parts: Vec<&str> = [self.selector.as_str(), extra]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        format!("{name}{{{}}}", parts.join(","))
    }

    async fn call(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Vec<Series>> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Prometheus at {}: {e}", self.base))?;
        let status = response.status();
        let answer: Answer = response.json().await.map_err(|e| {
            anyhow::anyhow!("Prometheus answered {status} with no readable JSON: {e}")
        })?;
        if answer.status != "success" {
            anyhow::bail!(
                "Prometheus refused the query: {}",
                answer.error.unwrap_or_else(|| status.to_string())
            );
        }
        Ok(answer.data.map(|d| d.result).unwrap_or_default())
    }

    /// `query_range` of `query` over the last `window`, one point per `step`.
    async fn range(
        &self,
        query: &str,
        end_s: f64,
        window: Duration,
        step: Duration,
    ) -> anyhow::Result<Vec<Series>> {
        self.call(
            "/api/v1/query_range",
            &[
                ("query", query.to_owned()),
                ("start", format!("{:.3}", end_s - window.as_secs_f64())),
                ("end", format!("{end_s:.3}")),
                ("step", format!("{}ms", step.as_millis().max(1))),
            ],
        )
        .await
    }

    /// Instant query at `at_s`: `(labels, value)` per series.
    async fn instant(
        &self,
        query: &str,
        at_s: f64,
    ) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        Ok(self
            .call(
                "/api/v1/query",
                &[("query", query.to_owned()), ("time", format!("{at_s:.3}"))],
            )
            .await?
            .into_iter()
            .filter_map(|s| {
                let value = s.value?.1.parse::<f64>().ok().filter(|v| v.is_finite())?;
                Some((s.metric, value))
            })
            .collect())
    }

    /// Heap and RSS history of every matching instance over `window` up to `end_s`.
    pub async fn memory_history(
        &self,
        end_s: f64,
        window: Duration,
        step: Duration,
    ) -> anyhow::Result<Vec<MemoryHistory>> {
        let heap = self
            .range(
                &self.select(series::HEAP, "kind=\"allocated\""),
                end_s,
                window,
                step,
            )
            .await?;
        let rss = self
            .range(&self.select(series::RSS, ""), end_s, window, step)
            .await?;
        let mut out: BTreeMap<String, MemoryHistory> = BTreeMap::new();
        for (list, is_heap) in [(heap, true), (rss, false)] {
            for s in list {
                let Some(instance) = s.metric.get("instance").cloned() else {
                    continue;
                };
                let entry = out
                    .entry(instance.clone())
                    .or_insert_with(|| MemoryHistory {
                        instance,
                        release: s
                            .metric
                            .get("release")
                            .cloned()
                            .unwrap_or_else(|| "unknown".to_owned()),
                        ..MemoryHistory::default()
                    });
                let points: Vec<(f64, f64)> = s
                    .values
                    .iter()
                    .filter_map(|(t, v)| {
                        Some((*t, v.parse::<f64>().ok().filter(|v| v.is_finite())?))
                    })
                    .collect();
                if is_heap {
                    entry.heap = points;
                } else {
                    entry.rss = points;
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// One evaluation's worth of readings per instance, shaped like a scrape so the
    /// rules engine treats both sources alike.
    pub async fn scrape(&self) -> anyhow::Result<Vec<InstanceScrape>> {
        let now_ms = warden_store::now_ms();
        let at = now_ms as f64 / 1000.0;
        let http = |extra: &str| self.select("http_server_request_duration_seconds_count", extra);
        let real = "http_route!~\"/metrics|/healthz|/readyz\"";
        let bucket = self.select("http_server_request_duration_seconds_bucket", real);
        let queries = [
            self.select(series::UP, ""),
            self.select(series::HEAP, "kind=\"allocated\""),
            self.select(series::RSS, ""),
            self.select(series::LIMIT, ""),
            format!("sum by (instance) (rate({}[1m]))", http(real)),
            format!(
                "sum by (instance) (rate({}[1m])) / sum by (instance) (rate({}[1m]))",
                http(&format!("{real},http_response_status_code=~\"5..\"")),
                http(real)
            ),
            format!("histogram_quantile(0.5, sum by (instance, le) (rate({bucket}[1m])))"),
            format!("histogram_quantile(0.99, sum by (instance, le) (rate({bucket}[1m])))"),
        ];
        let mut answers = Vec::new();
        for query in &queries {
            answers.push(self.instant(query, at).await?);
        }
        let mut by_instance: BTreeMap<String, InstanceScrape> = BTreeMap::new();
        for (labels, value) in &answers[0] {
            let Some(instance) = labels.get("instance") else {
                continue;
            };
            by_instance.insert(
                instance.clone(),
                InstanceScrape {
                    target: Target {
                        instance: instance.clone(),
                        url: format!("{}/api/v1/query", self.base),
                        release: labels
                            .get("release")
                            .cloned()
                            .unwrap_or_else(|| "unknown".to_owned()),
                        pid: None,
                    },
                    at_ms: now_ms,
                    up: *value >= 1.0,
                    error: (*value < 1.0).then(|| "Prometheus reports up == 0".to_owned()),
                    memory: Memory::default(),
                    traffic: None,
                    samples: Vec::new(),
                },
            );
        }
        let value_of = |index: usize, instance: &str| {
            answers[index]
                .iter()
                .find(|(l, _)| l.get("instance").is_some_and(|i| i == instance))
                .map(|(_, v)| *v)
        };
        for (instance, scrape) in &mut by_instance {
            scrape.memory = Memory {
                heap_allocated: value_of(1, instance),
                rss: value_of(2, instance),
                limit: value_of(3, instance).filter(|l| *l > 0.0),
            };
            scrape.traffic = value_of(4, instance).map(|rate| Traffic {
                request_rate: rate,
                error_ratio: value_of(5, instance).unwrap_or(0.0),
                p50: value_of(6, instance),
                p99: value_of(7, instance),
            });
            // The same derived series the scraper stores, so the dashboard works
            // with either source.
            let labels = warden_store::Labels::from([
                ("instance".to_owned(), instance.clone()),
                ("release".to_owned(), scrape.target.release.clone()),
            ]);
            let traffic = scrape.traffic.unwrap_or_default();
            let readings = [
                (series::UP, Some(if scrape.up { 1.0 } else { 0.0 })),
                (series::RSS, scrape.memory.rss),
                (series::LIMIT, scrape.memory.limit),
                (series::REQUEST_RATE, scrape.traffic.map(|t| t.request_rate)),
                (series::ERROR_RATIO, scrape.traffic.map(|t| t.error_ratio)),
                (series::LATENCY_P50, traffic.p50),
                (series::LATENCY_P99, traffic.p99),
            ];
            for (name, value) in readings {
                if let Some(value) = value {
                    scrape.samples.push(warden_store::Sample {
                        name: name.to_owned(),
                        labels: labels.clone(),
                        value,
                    });
                }
            }
            if let Some(heap) = scrape.memory.heap_allocated {
                let mut labels = labels.clone();
                labels.insert("kind".to_owned(), "allocated".to_owned());
                scrape.samples.push(warden_store::Sample {
                    name: series::HEAP.to_owned(),
                    labels,
                    value: heap,
                });
            }
        }
        Ok(by_instance.into_values().collect())
    }
}
