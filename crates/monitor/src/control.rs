//! The monitoring loop of the control plane: scrape every target, store the series,
//! evaluate the rules, write every alert transition to the event log and notify on
//! firing and resolved.
//!
//! Nothing here may stop the loop: a store that fails to write is logged and counted
//! (`warden_store_errors_total` on the console's `/metrics`), and alerting carries on
//! from the in-memory windows; a notifier that fails is retried by the dispatcher.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use warden_store::{NewEvent, Retention, Store};

use crate::compare::{self, Lookup};
use crate::notify::{AlertStatus, ChannelConfig, Dispatcher, Notification, RetryPolicy};
use crate::prometheus::PrometheusSource;
use crate::rules::{ActiveAlert, AlertRules, Engine, Phase, Transition};
use crate::scrape::{Scraper, Target};

/// The monitoring part of Warden's config file (`warden.toml`).
///
/// ```toml
/// [monitor]
/// scrape_interval = "5s"
/// retention = "7d"
///
/// [[monitor.targets]]          # extra targets beyond the instances Warden runs
/// instance = "10.0.0.7:8080"
/// url = "http://10.0.0.7:8080/metrics"
/// release = "v41"
///
/// [alerts.leak]
/// horizon = "2h"
/// memory_limit = 2147483648
///
/// [[notifiers]]
/// type = "webhook"
/// name = "on-call"
/// url = "https://hooks.example.com/warden"
/// secret = "…"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Scraping and storage.
    pub monitor: ScrapeConfig,
    /// Alert rules.
    pub alerts: AlertRules,
    /// Where notifications go.
    pub notifiers: Vec<ChannelConfig>,
}

/// The `[monitor]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// How often targets are scraped and rules evaluated.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// How long one scrape may take.
    #[serde(with = "humantime_serde")]
    pub scrape_timeout: Duration,
    /// Raw samples are kept this long, then folded into five-minute rollups.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Duration,
    /// Rollups are kept this long.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Extra targets named in config.
    pub targets: Vec<Target>,
    /// Metrics to store beyond the defaults (memory, build info, process figures and
    /// the derived traffic series); a histogram's buckets are `NAME_bucket`.
    pub keep_metrics: Vec<String>,
    /// Don't send the same notification again within this.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Read series from this Prometheus server's query API instead of scraping
    /// (e.g. `http://prometheus:9090`).
    pub prometheus_url: Option<String>,
    /// Which series to read from Prometheus: a PromQL label matcher list.
    pub prometheus_selector: String,
    /// Link put in notifications (the console's address as people reach it).
    pub external_url: Option<String>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(5),
            scrape_timeout: Duration::from_secs(4),
            raw_retention: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            targets: Vec::new(),
            keep_metrics: Vec::new(),
            repeat_interval: Duration::from_secs(4 * 3600),
            prometheus_url: None,
            prometheus_selector: "job=~\"warden.*\"".to_owned(),
            external_url: None,
        }
    }
}

impl MonitorConfig {
    /// Reads `path`, or the defaults when `path` is `None`. Errors name the file and
    /// the key.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let config: Self = match path {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.monitor.scrape_interval < Duration::from_millis(100) {
            anyhow::bail!("monitor.scrape_interval must be at least 100ms");
        }
        if self.monitor.raw_retention > self.monitor.retention {
            anyhow::bail!("monitor.raw_retention must not exceed monitor.retention");
        }
        self.alerts.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// The control plane's own metrics, served on the console's `/metrics`.
#[derive(Clone)]
pub struct MonitorStatus {
    registry: prometheus::Registry,
    scrapes: prometheus::IntCounter,
    store_errors: prometheus::IntCounter,
    alerts: prometheus::IntGaugeVec,
    transitions: tokio::sync::broadcast::Sender<Transition>,
}

impl MonitorStatus {
    /// Registers `warden_control_scrapes_total`, `warden_store_errors_total` and
    /// `warden_alerts_active{phase}`.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let scrapes = prometheus::IntCounter::new(
            "warden_control_scrapes_total",
            "Scrape rounds completed.",
        )?;
        let store_errors =
            prometheus::IntCounter::new("warden_store_errors_total", "Store writes that failed.")?;
        let alerts = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "warden_alerts_active",
                "Alerts pending or firing, by phase.",
            ),
            &["phase"],
        )?;
        registry.register(Box::new(scrapes.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        Ok(Self {
            registry,
            scrapes,
            store_errors,
            alerts,
            transitions: tokio::sync::broadcast::channel(256).0,
        })
    }

    /// The registry the console's `/metrics` serves; other parts of the control plane
    /// (the front proxy) register their metrics here.
    #[must_use]
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Every alert transition from now on, as the rules produce them (automatic
    /// rollback listens here).
    #[must_use]
    pub fn transitions(&self) -> tokio::sync::broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }

    /// Records one completed round.
    fn round(&self, active: &[ActiveAlert], failed_writes: u64) {
        self.scrapes.inc();
        self.store_errors.inc_by(failed_writes);
        let firing = active
            .iter()
            .filter(|a| a.last.phase == Phase::Firing)
            .count();
        for (phase, count) in [("firing", firing), ("pending", active.len() - firing)] {
            self.alerts
                .with_label_values(&[phase])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut out,
        ) {
            tracing::error!(%error, "could not encode the control plane's metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The notifiers of `config` behind one dispatcher; each delivery is recorded as a
/// `notification.delivery` event in `store`. Alerts go through it, and so can
/// anything else that must reach the on-call channel (the status page's update
/// reminders).
///
/// # Errors
/// A notifier's settings are unusable.
pub fn dispatcher(config: &MonitorConfig, store: Store) -> anyhow::Result<Dispatcher> {
    Dispatcher::new(
        config.notifiers.clone(),
        RetryPolicy::default(),
        config.monitor.repeat_interval,
        Arc::new(move |delivery| {
            let event = NewEvent {
                kind: "notification.delivery".to_owned(),
                release: None,
                payload: serde_json::to_value(&delivery).unwrap_or_default(),
            };
            // The sink runs on a runtime worker: keep SQLite's sync off it.
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.append_event(&event) {
                    tracing::warn!(%error, "could not record a notification delivery");
                }
            });
        }),
    )
}

/// Runs the monitoring loop until the task is dropped. `targets` is the current list
/// of instances (the supervisor updates it); the config's extra targets are added.
/// Alerts are sent through `dispatcher` (see [`dispatcher`]).
pub async fn run(
    config: MonitorConfig,
    store: Store,
    mut targets: watch::Receiver<Vec<Target>>,
    status: MonitorStatus,
    dispatcher: Dispatcher,
) -> anyhow::Result<()> {
    let mut scraper = Scraper::new(config.monitor.scrape_timeout, &config.monitor.keep_metrics)?;
    let mut engine = Engine::new(config.alerts.clone());
    let retention = Retention {
        raw_ms: millis(config.monitor.raw_retention),
        rollup_ms: millis(config.monitor.retention),
    };
    let mut ticker = tokio::time::interval(config.monitor.scrape_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_compaction = tokio::time::Instant::now();
    let prometheus = match &config.monitor.prometheus_url {
        Some(url) => Some(PrometheusSource::new(
            url,
            &config.monitor.prometheus_selector,
            config.monitor.scrape_timeout,
        )?),
        None => None,
    };
    let mut backfilled = false;
    loop {
        ticker.tick().await;
        let scrapes = match &prometheus {
            None => {
                let mut list = targets.borrow_and_update().clone();
                list.extend(config.monitor.targets.iter().cloned());
                scraper.scrape_all(&list).await
            }
            Some(source) => {
                if !backfilled {
                    backfilled = backfill(source, &mut engine, &config).await;
                }
                match source.scrape().await {
                    Ok(scrapes) => scrapes,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read from Prometheus; no evaluation this round");
                        continue;
                    }
                }
            }
        };
        let at_ms = scrapes
            .first()
            .map_or_else(warden_store::now_ms, |s| s.at_ms);
        let samples: Vec<_> = scrapes.iter().flat_map(|s| s.samples.clone()).collect();
        let write = store
            .blocking(move |s| s.append_samples(at_ms, &samples))
            .await;
        let transitions = engine.evaluate(&scrapes);
        for release in engine.releases_to_compare() {
            let period = config.alerts.leak.compare.period;
            let name = release.clone();
            match store
                .blocking(move |s| compare::load_baseline(s, &name, period))
                .await
            {
                Ok(Lookup::NotYet) => {}
                Ok(Lookup::Nothing) => engine.set_baseline(&release, None),
                Ok(Lookup::Found(baseline)) => {
                    tracing::info!(
                        %release,
                        previous = %baseline.release,
                        "release {release} is compared with {} at the same age",
                        baseline.release
                    );
                    engine.set_baseline(&release, Some(baseline));
                }
                Err(error) => {
                    tracing::warn!(%error, %release, "cannot read the previous release's memory");
                }
            }
        }
        let mut failed = u64::from(write.is_err());
        if let Err(error) = write {
            tracing::warn!(%error, "could not store samples; alerting carries on");
        }
        for transition in &transitions {
            tracing::info!(
                alert = transition.alert,
                phase = ?transition.phase,
                instance = %transition.instance,
                release = %transition.release,
                "{}",
                transition.summary
            );
            let event = alert_event(transition, config.monitor.external_url.as_deref());
            if let Err(error) = store.blocking(move |s| s.append_event(&event)).await {
                failed += 1;
                tracing::warn!(%error, "could not record an alert transition");
            }
            // Nobody listening is fine.
            let _ = status.transitions.send(transition.clone());
            if let Some(notification) =
                notification(transition, config.monitor.external_url.as_deref())
            {
                dispatcher.dispatch(notification);
            }
        }
        status.round(&engine.active(), failed);
        if last_compaction.elapsed() >= Duration::from_secs(600) {
            last_compaction = tokio::time::Instant::now();
            let now = warden_store::now_ms();
            match store.blocking(move |s| s.compact(now, retention)).await {
                Ok(done) => tracing::debug!(?done, "store compacted"),
                Err(error) => tracing::warn!(%error, "could not compact the store"),
            }
        }
    }
}

/// Seeds the leak windows from Prometheus' history; true once done.
async fn backfill(source: &PrometheusSource, engine: &mut Engine, config: &MonitorConfig) -> bool {
    let end = warden_store::now_ms() as f64 / 1000.0;
    match source
        .memory_history(
            end,
            config.alerts.leak.rule.window,
            config.monitor.scrape_interval,
        )
        .await
    {
        Ok(history) => {
            for h in history {
                engine.backfill(&h.instance, &h.release, &h.heap, &h.rss);
            }
            true
        }
        Err(error) => {
            tracing::warn!(%error, "cannot backfill memory history from Prometheus");
            false
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The event-log entry for a transition.
fn alert_event(t: &Transition, external_url: Option<&str>) -> NewEvent {
    NewEvent {
        kind: t.phase.event_kind().to_owned(),
        release: Some(t.release.clone()),
        payload: serde_json::json!({
            "fingerprint": t.fingerprint,
            "alert": t.alert,
            "severity": t.severity,
            "instance": t.instance,
            "release": t.release,
            "summary": t.summary,
            "description": t.description,
            "labels": t.labels,
            "details": t.details,
            "dashboard_url": external_url,
        }),
    }
}

/// The notification for a transition: firing and resolved go out, pending and
/// cancelled only reach the event log.
fn notification(t: &Transition, external_url: Option<&str>) -> Option<Notification> {
    let status = match t.phase {
        Phase::Firing => AlertStatus::Firing,
        Phase::Resolved => AlertStatus::Resolved,
        Phase::Pending | Phase::Cancelled => return None,
    };
    Some(Notification {
        fingerprint: t.fingerprint.clone(),
        status,
        alert: t.alert.to_owned(),
        severity: t.severity.to_owned(),
        summary: t.summary.clone(),
        description: t.description.clone(),
        labels: t.labels.clone(),
        starts_at_ms: t.at_ms,
        ends_at_ms: (t.phase == Phase::Resolved).then_some(t.at_ms),
        dashboard_url: external_url.map(str::to_owned),
    })
}

/// The console's monitoring routes: the dashboard, `/healthz`, and the control
/// plane's own `/metrics` (scrape rounds, store errors, active alerts).
pub fn console(store: Store, status: MonitorStatus) -> axum::Router {
    use axum::routing::get;
    let metrics = move || {
        let body = status.render();
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
        }
    };
    crate::dashboard::router(crate::dashboard::DashboardState::new(store))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_example_config_loads_and_matches_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../ops/warden.example.toml"
        ));
        let config = MonitorConfig::load(Some(path)).unwrap();
        let defaults = MonitorConfig::default();
        assert_eq!(
            config.alerts, defaults.alerts,
            "the example documents the defaults"
        );
        assert_eq!(
            config.monitor.scrape_interval,
            defaults.monitor.scrape_interval
        );
        assert_eq!(config.monitor.retention, defaults.monitor.retention);
        assert_eq!(config.notifiers.len(), 3);
    }

    #[test]
    fn bad_config_names_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "[monitor]\nscrape_intervl = \"5s\"\n").unwrap();
        let error = MonitorConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            error.contains("warden.toml") && error.contains("scrape_intervl"),
            "{error}"
        );
        std::fs::write(&path, "[monitor]\nscrape_interval = \"fast\"\n").unwrap();
        let error = MonitorConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("scrape_interval"), "{error}");
        std::fs::write(&path, "[alerts.error_ratio]\nthreshold = 2\nfor = \"1m\"\n").unwrap();
        let error = MonitorConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("error_ratio"), "{error}");
        assert!(MonitorConfig::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
